"""HTTP to a registry: TLS or plain, authentication, redirects, retries -- one request at a time.

What this teaches
-----------------
Everything a registry client needs *below* the distribution API, on the standard library's
``http.client``:

* **Which scheme.** HTTPS always, verified against the system CAs plus ``<certs.d>/<host:port>/*.crt``
  (docker's ``/etc/docker/certs.d`` layout). Plain HTTP only for an *insecure registry*: by default
  ``localhost`` and 127.0.0.0/8 (as dockerd's ``insecure-registries`` default), more via
  ``MINIDOCKER_INSECURE_REGISTRIES=host:port,...``. For those, HTTPS is still tried first and plain
  HTTP is the fallback, exactly as docker does.
* **Authentication** (auth.py): ``GET /v2/`` once; a 401 tells the scheme. Then every request
  carries Basic credentials or a Bearer token for its *scope*; a 401 later (token expired) fetches
  a new token and repeats the request once.
* **Redirects.** Blob GETs are often answered ``307`` to a CDN/S3 URL. Follow them for GET/HEAD,
  and never send our Authorization header to another host.
* **Retries.** ``429 Too Many Requests`` and ``5xx`` are retried after ``Retry-After`` seconds (or an
  exponential back-off), a dropped connection is retried on a fresh one -- but only requests whose
  body can be sent again.
"""
from __future__ import annotations

import errno
import glob
import http.client
import ipaddress
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse

from .auth import AuthError, Credentials, TokenCache, parse_challenge

DEFAULT_CERTS_D = "/etc/docker/certs.d"
RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_RETRIES = 4
MAX_RETRY_AFTER = 30.0
TIMEOUT = 60.0


class RegistryError(Exception):
    """A request the registry refused, with its error code (``MANIFEST_UNKNOWN``...) when it sent one."""

    def __init__(self, message: str, status: int = 0, code: str = ""):
        super().__init__(message)
        self.status, self.code = status, code
        self.registry_message = ""


def is_insecure(host: str) -> bool:
    """May we talk plain HTTP to ``host[:port]``? localhost, 127.0.0.0/8, ::1 and the configured list."""
    extra = [h.strip() for h in os.environ.get("MINIDOCKER_INSECURE_REGISTRIES", "").split(",") if h.strip()]
    if host in extra:
        return True
    return _loopback(host)


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if not host.endswith("]") else host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def registry_error(status: int, body: bytes, what: str) -> RegistryError:
    """Turn distribution's ``{"errors": [{"code", "message", "detail"}]}`` into one readable line."""
    code, message = "", ""
    try:
        errs = json.loads(body).get("errors") or []
        if errs:
            code, message = errs[0].get("code", ""), errs[0].get("message", "")
    except (ValueError, AttributeError):
        message = body[:200].decode(errors="replace").strip()
    text = f"{what}: {status} {http.client.responses.get(status, '')}".rstrip()
    if code or message:
        text += f" ({code.lower().replace('_', ' ') + ': ' if code else ''}{message})"
    err = RegistryError(text, status, code)
    err.registry_message = message
    return err


def dial_error(scheme: str, host: str, e: Exception) -> str:
    """A failed connection in the words of Go's net/http, which dockerd passes on:
    ``Get "https://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused``."""
    name, _, port = host.rpartition(":") if host.rpartition(":")[2].isdigit() else (host, "", "")
    addr = f"{name}:{port or (443 if scheme == 'https' else 80)}"
    if isinstance(e, ConnectionRefusedError):
        why = f"dial tcp {addr}: connect: connection refused"
    elif isinstance(e, socket.gaierror):
        why = f"dial tcp: lookup {name}: no such host"
    elif isinstance(e, (TimeoutError, socket.timeout)):
        why = f"dial tcp {addr}: i/o timeout"
    elif isinstance(e, OSError) and e.strerror:
        why = f"dial tcp {addr}: connect: {e.strerror.lower()}"
    else:
        why = str(e)
    return f'Get "{scheme}://{host}/v2/": {why}'


class Transport:
    """Requests to one registry host (``127.0.0.1:5000``), safe to share between threads."""

    def __init__(self, host: str, credentials: Credentials | None = None, certs_d: str | None = None,
                 insecure: bool | None = None):
        self.host = "registry-1.docker.io" if host == "docker.io" else host
        self.credentials = credentials or Credentials()
        self.certs_d = certs_d or os.environ.get("MINIDOCKER_CERTS_D", DEFAULT_CERTS_D)
        self.insecure = is_insecure(host) if insecure is None else insecure
        self.scheme: str | None = None  # decided by ping()
        self.challenge: tuple[str, dict] | None = None  # ("bearer", {realm, service}) or ("basic", {})
        self.tokens = TokenCache()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._token_lock = threading.Lock()
        self.log: list[tuple[str, str, int]] = []  # (method, url, status): the conversation, for teaching

    # ---- connections (one per thread and host, kept alive) ---------------------------------------
    def _ssl_context(self, netloc: str) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        for ca in sorted(glob.glob(os.path.join(self.certs_d, netloc, "*.crt"))):
            ctx.load_verify_locations(ca)
        if self.insecure:  # docker: insecure registries skip verification too
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _conn(self, scheme: str, netloc: str, fresh: bool = False) -> http.client.HTTPConnection:
        pool = self._local.__dict__.setdefault("pool", {})
        key = (scheme, netloc)
        if fresh and key in pool:
            pool.pop(key).close()
        if key not in pool:
            if scheme == "https":
                pool[key] = http.client.HTTPSConnection(netloc, timeout=TIMEOUT, context=self._ssl_context(netloc))
            else:
                pool[key] = http.client.HTTPConnection(netloc, timeout=TIMEOUT)
        return pool[key]

    def close(self) -> None:
        for conn in self._local.__dict__.get("pool", {}).values():
            conn.close()
        self._local.__dict__["pool"] = {}

    # ---- the first request: which scheme, which auth ---------------------------------------------
    def ping(self) -> None:
        """``GET /v2/``: 200 (no auth) or 401 with the challenge. Decides http vs https."""
        if self.scheme is not None:
            return
        with self._lock:
            if self.scheme is not None:
                return
            errors, unreachable = [], {}
            # docker tries HTTPS first even for insecure registries. On the loopback interface nobody
            # can listen in, so we try plain HTTP first there: a TLS server answers a plain request
            # at once with an error, while a plain server may wait forever for a TLS ClientHello's end.
            order = ["https", "http"] if self.insecure else ["https"]
            if self.insecure and _loopback(self.host):
                order.reverse()
            for scheme in order:
                try:
                    conn = self._conn(scheme, self.host, fresh=True)
                    conn.request("GET", "/v2/", headers={"User-Agent": "minidocker"})
                    r = conn.getresponse()
                    r.read()
                except (OSError, http.client.HTTPException) as e:
                    errors.append(f"{scheme}: {e}")
                    if isinstance(e, (ConnectionError, socket.gaierror, TimeoutError)) or \
                            getattr(e, "errno", None) in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                        unreachable.setdefault(scheme, e)
                    self._conn(scheme, self.host).close()
                    continue
                self.log.append(("GET", f"{scheme}://{self.host}/v2/", r.status))
                if r.status == 401:
                    self.challenge = parse_challenge(r.getheader("WWW-Authenticate") or "")
                elif r.status != 200:
                    # e.g. Go's TLS server answering a plain request with 400: try the next scheme
                    errors.append(f"{scheme}: GET /v2/ answered {r.status}, not 200 or 401 (is it a registry?)")
                    continue
                self.scheme = scheme
                return
            if len(unreachable) == len(errors):  # nobody answered at all: say it as dockerd does
                scheme = "https" if "https" in unreachable else order[0]
                raise RegistryError(dial_error(scheme, self.host, unreachable[scheme]))
            hint = "" if self.insecure else " (plain HTTP is allowed only for insecure registries)"
            raise RegistryError(f"cannot reach registry {self.host}: {'; '.join(errors)}{hint}")

    def _authorization(self, scopes: tuple[str, ...], refresh: bool = False) -> str | None:
        if self.challenge is None:
            return None
        scheme, params = self.challenge
        if scheme == "basic":
            if not self.credentials:
                raise AuthError(f"{self.host} wants a username and password: run `minidocker login {self.host}`")
            return self.credentials.basic()
        if scheme != "bearer":
            raise AuthError(f"{self.host}: unsupported authentication scheme {scheme!r}")
        key = (params.get("realm"), params.get("service"), scopes)
        with self._token_lock:  # parallel downloads share one token per scope instead of racing
            token = None if refresh else self.tokens.get(key)
            if token is None:
                token, expires_in = self._fetch_token(params, scopes)
                self.tokens.put(key, token, expires_in)
        return "Bearer " + token

    def _fetch_token(self, params: dict, scopes: tuple[str, ...]) -> tuple[str, float]:
        """token.md: GET realm?service=..&scope=.. (Basic auth when logged in) -> {"token", "expires_in"}."""
        realm = params.get("realm")
        if not realm:
            raise AuthError(f"{self.host}: Bearer challenge without a realm")
        query = [("service", params["service"])] if params.get("service") else []
        query += [("scope", s) for s in scopes]
        url = urllib.parse.urlsplit(realm)
        target = url.path + "?" + "&".join(filter(None, [url.query, urllib.parse.urlencode(query)]))
        headers = {"User-Agent": "minidocker"}
        if self.credentials:
            headers["Authorization"] = self.credentials.basic()
        conn = self._conn(url.scheme, url.netloc)
        try:
            conn.request("GET", target, headers=headers)
            r = conn.getresponse()
            body = r.read()
        except (OSError, http.client.HTTPException) as e:
            self._conn(url.scheme, url.netloc, fresh=True)
            raise AuthError(f"token server {realm}: {e}") from None
        self.log.append(("GET", realm + "?" + urllib.parse.urlencode(query), r.status))
        if r.status in (401, 403):
            raise AuthError(f"unauthorized: the token server {realm} refused "
                            f"{'the credentials of ' + self.credentials.username if self.credentials else 'anonymous access'}"
                            f" for {' '.join(scopes)} (wrong username or password?)")
        if r.status != 200:
            raise AuthError(f"token server {realm} answered {r.status}")
        try:
            obj = json.loads(body)
            token = obj.get("token") or obj["access_token"]
        except (ValueError, KeyError):
            raise AuthError(f"token server {realm} sent no token") from None
        return token, float(obj.get("expires_in") or 60)

    # ---- one request, with everything above ----------------------------------------------------
    def request(self, method: str, url: str, scopes: tuple[str, ...] = (), headers: dict | None = None,
                body=None, ok=(200,), what: str = "") -> http.client.HTTPResponse:
        """Send; return the response (body unread) if its status is in ``ok``; else raise.

        ``url`` is a path on this registry (``/v2/...``) or an absolute URL (a Location header).
        ``body``: bytes, None, or a seekable file (rewound on retry).
        """
        self.ping()
        url = urllib.parse.urljoin(f"{self.scheme}://{self.host}/", url)
        start = body.tell() if hasattr(body, "seek") else 0
        retried_auth = False
        attempt, redirects = 0, 0
        while True:
            parts = urllib.parse.urlsplit(url)
            h = {"User-Agent": "minidocker", **(headers or {})}
            if parts.netloc == self.host:  # never leak credentials to a redirect target elsewhere
                auth = self._authorization(scopes, refresh=retried_auth)
                if auth:
                    h["Authorization"] = auth
            if hasattr(body, "seek"):
                body.seek(start)
            target = parts.path + ("?" + parts.query if parts.query else "")
            try:
                conn = self._conn(parts.scheme, parts.netloc)
                conn.request(method, target, body=body, headers=h)
                r = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                self._conn(parts.scheme, parts.netloc, fresh=True)
                attempt += 1
                if attempt > MAX_RETRIES:
                    raise RegistryError(f"{what or method + ' ' + url}: {e} (gave up after {attempt} tries)") from None
                time.sleep(min(0.2 * 2 ** attempt, 5))
                continue
            self.log.append((method, url, r.status))
            if r.status in ok:
                return r
            data = r.read()
            if r.status == 401 and not retried_auth and self.challenge is not None:
                retried_auth = True  # an expired token: get a fresh one, once
                continue
            if r.status == 401:
                raise AuthError(str(registry_error(r.status, data, what or f"{method} {url}"))
                                + (" -- wrong username or password?" if self.credentials else
                                   f" -- run `minidocker login {self.host}`"))
            if r.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD") and r.getheader("Location"):
                redirects += 1
                if redirects > 10:
                    raise RegistryError(f"{what or url}: too many redirects")
                url = urllib.parse.urljoin(url, r.getheader("Location"))
                continue
            if r.status in RETRY_STATUSES and attempt < MAX_RETRIES and (body is None or isinstance(body, bytes)
                                                                         or hasattr(body, "seek")):
                attempt += 1
                time.sleep(retry_delay(r.getheader("Retry-After"), attempt))
                continue
            raise registry_error(r.status, data, what or f"{method} {url}")


def retry_delay(retry_after: str | None, attempt: int) -> float:
    """Retry-After in seconds (RFC 9110 §10.2.3; the HTTP-date form is rare for registries)."""
    if retry_after:
        try:
            return min(max(float(retry_after), 0.0), MAX_RETRY_AFTER)
        except ValueError:
            pass
    return min(0.25 * 2 ** attempt, 5.0)
