"""Registry authentication: anonymous, Basic, and the Bearer token flow; docker's config.json.

What this teaches
-----------------
A registry says *how* to authenticate only when it refuses a request: ``401 Unauthorized`` with a
``WWW-Authenticate`` challenge (RFC 9110 §11.6.1). Two schemes matter:

* ``Basic realm="..."`` -- send ``Authorization: Basic base64(user:password)`` on every request
  (RFC 7617). Only safe over TLS.
* ``Bearer realm="https://auth.example/token",service="registry.example",scope="repository:bb:pull"``
  -- the token flow Docker Hub uses (distribution's ``docs/spec/auth/token.md``): GET the realm with
  ``?service=...&scope=...`` (with Basic credentials if we have any, anonymously otherwise), receive
  ``{"token": "<JWT>", "expires_in": 300}``, and send ``Authorization: Bearer <JWT>`` to the registry.
  A token is good for one *scope* (repository + actions), so tokens are cached per scope and
  fetched again when they expire.

``docker login`` stores credentials in ``~/.docker/config.json`` (``{"auths": {"host": {"auth":
base64("user:pass")}}}``), or hands them to a *credential helper* program
(``docker-credential-<name> store|get|erase``, JSON on stdin/stdout) named by ``credsStore`` or
``credHelpers``. This module reads and writes that file exactly so; it uses only the standard
library because the CLI imports it.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass

DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"  # the key docker uses for Docker Hub


class AuthError(Exception):
    """Credentials were refused, or the token server failed."""


@dataclass
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # an OAuth refresh token some registries hand out instead of a password

    def __bool__(self) -> bool:
        return bool(self.username or self.identity_token)

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    # ---- the Engine API's X-Registry-Auth header: base64url(JSON) ---------------------------
    def to_header(self, server: str = "") -> str:
        obj = {"username": self.username, "password": self.password, "serveraddress": server}
        if self.identity_token:
            obj["identitytoken"] = self.identity_token
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode()

    @classmethod
    def from_header(cls, value: str | None) -> "Credentials":
        """Decode X-Registry-Auth. Docker sends base64url, sometimes unpadded; "e30=" is ``{}``."""
        if not value:
            return cls()
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            obj = json.loads(raw)
        except ValueError as e:
            raise AuthError(f"invalid X-Registry-Auth header: {e}") from None
        if not isinstance(obj, dict):
            raise AuthError("invalid X-Registry-Auth header: not a JSON object")
        return cls(obj.get("username") or "", obj.get("password") or "",
                   obj.get("identitytoken") or "")


# ---- WWW-Authenticate -------------------------------------------------------------------------
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))\s*,?')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="x",service="y",scope="z"`` -> ``("bearer", {"realm": "x", ...})``."""
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for m in _PARAM.finditer(rest):
        params[m.group(1).lower()] = m.group(2).replace('\\"', '"') if m.group(2) is not None else m.group(3)
    return scheme.lower(), params


def decode_jwt(token: str) -> dict:
    """The claims of a JWT, *unverified* (for showing what a token grants, not for trusting it)."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        return json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return {}


class TokenCache:
    """Bearer tokens per (realm, service, scope), dropped a little before they expire."""

    def __init__(self):
        self._tokens: dict[tuple, tuple[str, float]] = {}

    def get(self, key: tuple) -> str | None:
        hit = self._tokens.get(key)
        if hit and hit[1] > time.monotonic():
            return hit[0]
        self._tokens.pop(key, None)
        return None

    def put(self, key: tuple, token: str, expires_in: float) -> None:
        # token.md: the default lifetime is 60 s; keep a margin so a request never carries a stale one
        self._tokens[key] = (token, time.monotonic() + max(expires_in - 10, 1))


# ---- ~/.docker/config.json --------------------------------------------------------------------
def config_path() -> str:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def config_key(registry: str) -> str:
    """docker.io is stored under its historical v1 URL; every other registry under its host[:port]."""
    return DOCKER_HUB_CONFIG_KEY if registry in ("docker.io", "index.docker.io", "registry-1.docker.io") else registry


def _read_config(path: str) -> dict:
    try:
        with open(path) as f:
            cfg = json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise AuthError(f"{path} is not valid JSON: {e}") from None
    return cfg if isinstance(cfg, dict) else {}


def _write_config(path: str, cfg: dict) -> None:
    # Atomic, private (it holds passwords): tmp file with 0600, then rename.
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f, indent="\t")
        f.write("\n")
    os.rename(tmp, path)


def _helper_for(cfg: dict, key: str) -> str | None:
    return (cfg.get("credHelpers") or {}).get(key) or cfg.get("credsStore") or None


def _run_helper(helper: str, action: str, payload: str) -> str:
    exe = shutil.which(f"docker-credential-{helper}")
    if exe is None:
        raise AuthError(f"credential helper docker-credential-{helper} (named in {config_path()}) "
                        "is not installed")
    r = subprocess.run([exe, action], input=payload.encode(), capture_output=True, timeout=30)
    if r.returncode != 0:
        raise AuthError(f"docker-credential-{helper} {action}: {(r.stdout or r.stderr).decode().strip()}")
    return r.stdout.decode()


def load_credentials(registry: str, path: str | None = None) -> Credentials:
    """What ``docker login <registry>`` stored; empty Credentials when nothing is."""
    path = path or config_path()
    cfg, key = _read_config(path), config_key(registry)
    helper = _helper_for(cfg, key)
    if helper and shutil.which(f"docker-credential-{helper}"):
        try:
            out = json.loads(_run_helper(helper, "get", key))
        except (AuthError, ValueError):
            return Credentials()  # "credentials not found in native keychain"
        if out.get("Username") == "<token>":
            return Credentials(identity_token=out.get("Secret", ""))
        return Credentials(out.get("Username", ""), out.get("Secret", ""))
    entry = (cfg.get("auths") or {}).get(key) or {}
    creds = Credentials(identity_token=entry.get("identitytoken", ""))
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except ValueError as e:
            raise AuthError(f"{path}: bad auth entry for {key}: {e}") from None
        creds.username, creds.password = user, password
    return creds


def store_credentials(registry: str, creds: Credentials, path: str | None = None) -> str:
    """Save as ``docker login`` does; return where they went (the file or the helper's name)."""
    path = path or config_path()
    cfg, key = _read_config(path), config_key(registry)
    helper = _helper_for(cfg, key)
    if helper:
        secret = creds.identity_token or creds.password
        user = "<token>" if creds.identity_token else creds.username
        _run_helper(helper, "store", json.dumps({"ServerURL": key, "Username": user, "Secret": secret}))
        cfg.setdefault("auths", {})[key] = {}  # docker keeps an empty entry to remember the login
        _write_config(path, cfg)
        return f"docker-credential-{helper}"
    entry = {"auth": base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()}
    if creds.identity_token:
        entry = {"auth": "", "identitytoken": creds.identity_token}
    cfg.setdefault("auths", {})[key] = entry
    _write_config(path, cfg)
    return path


def erase_credentials(registry: str, path: str | None = None) -> bool:
    """``docker logout``: forget the credentials; False if there were none."""
    path = path or config_path()
    cfg, key = _read_config(path), config_key(registry)
    helper = _helper_for(cfg, key)
    found = key in (cfg.get("auths") or {})
    if helper and shutil.which(f"docker-credential-{helper}"):
        try:
            _run_helper(helper, "erase", key)
            found = True
        except AuthError:
            pass
    if key in (cfg.get("auths") or {}):
        del cfg["auths"][key]
        _write_config(path, cfg)
    return found
