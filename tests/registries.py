"""Registries the registry tests start and stop themselves (by PID), all on 127.0.0.1.

* ``DistributionRegistry`` -- Debian's ``docker-registry`` (distribution 2.8) with a config of our
  own: no auth, htpasswd Basic auth, or token auth trusting ``TokenServer``'s certificate.
* ``TokenServer`` -- a tiny token service (distribution docs/spec/auth/token.md): checks Basic
  credentials and signs RS256 JWTs with ``openssl`` (the certificate goes in the JWT's ``x5c``).
* ``MinidockerRegistry`` -- ``python -m minidocker.registry.server``.
* ``FaultyProxy`` -- forwards to a registry, and can flip a byte of a blob, drop the connection
  mid-blob, or answer 503/429 with Retry-After a few times.
"""
from __future__ import annotations

import http.server
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: str, timeout: float = 20) -> None:
    import ssl
    ctx = ssl._create_unverified_context()  # only to see that it answers
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited {proc.returncode}: {open(log).read()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2, context=ctx)
            return
        except urllib.error.HTTPError:
            return  # 401 is an answer too
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer: {open(log).read()[-2000:]}")


class _Process:
    proc: subprocess.Popen | None = None
    base: str = ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class DistributionRegistry(_Process):
    """``docker-registry serve CONFIG`` on a free port; auth = None | "htpasswd" | "token"."""

    def __init__(self, base: str, auth: str | None = None, users: dict | None = None, token_server=None,
                 port: int | None = None, tls: bool = False):
        self.base, self.auth, self.users, self.token_server = base, auth, users or {}, token_server
        self.tls = tls  # serve HTTPS with a self-signed certificate for 127.0.0.1 (self.cert)
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"

    def config(self) -> str:
        cfg = ["version: 0.1", "log:", "  level: warn", "storage:", "  filesystem:",
               f"    rootdirectory: {self.base}/data", "  delete:", "    enabled: true",
               "http:", f"  addr: 127.0.0.1:{self.port}", "  secret: minidocker-tests"]
        if self.tls:
            self.cert, key = os.path.join(self.base, "tls.crt"), os.path.join(self.base, "tls.key")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
                            self.cert, "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                            "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
            cfg += ["  tls:", f"    certificate: {self.cert}", f"    key: {key}"]
        if self.auth == "htpasswd":
            path = os.path.join(self.base, "htpasswd")
            with open(path, "w") as f:
                for user, password in self.users.items():
                    f.write(subprocess.run(["htpasswd", "-Bbn", user, password], check=True,
                                           capture_output=True, text=True).stdout.strip() + "\n")
            cfg += ["auth:", "  htpasswd:", "    realm: minidocker-tests", f"    path: {path}"]
        elif self.auth == "token":
            t = self.token_server
            cfg += ["auth:", "  token:", f"    realm: {t.url}/token", f"    service: {t.service}",
                    f"    issuer: {t.issuer}", f"    rootcertbundle: {t.cert}"]
        return "\n".join(cfg) + "\n"

    def start(self) -> "DistributionRegistry":
        os.makedirs(self.base, exist_ok=True)
        path = os.path.join(self.base, "config.yml")
        with open(path, "w") as f:
            f.write(self.config())
        log = os.path.join(self.base, "registry.log")
        self.proc = subprocess.Popen(["docker-registry", "serve", path], stdout=open(log, "ab"),
                                     stderr=subprocess.STDOUT)
        wait_http(f"{'https' if self.tls else 'http'}://{self.host}/v2/", self.proc, log)
        return self


class MinidockerRegistry(_Process):
    def __init__(self, base: str, htpasswd_users: dict | None = None, port: int | None = None):
        self.base, self.users = base, htpasswd_users
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"

    def start(self) -> "MinidockerRegistry":
        os.makedirs(self.base, exist_ok=True)
        args = [sys.executable, "-m", "minidocker.cli.main", "registry", "serve", "--port", str(self.port),
                "--root", os.path.join(self.base, "data")]
        if self.users:
            path = os.path.join(self.base, "htpasswd")
            with open(path, "w") as f:
                for user, password in self.users.items():
                    f.write(subprocess.run(["htpasswd", "-Bbn", user, password], check=True,
                                           capture_output=True, text=True).stdout.strip() + "\n")
            args += ["--htpasswd", path]
        log = os.path.join(self.base, "registry.log")
        self.proc = subprocess.Popen(args, stdout=open(log, "ab"), stderr=subprocess.STDOUT, cwd=REPO)
        wait_http(f"http://{self.host}/v2/", self.proc, log)
        return self


# ---- token server: minidocker.registry.tokens.TokenServer (a classroom can run it too) ------------
from minidocker.registry.tokens import TokenServer  # noqa: E402,F401


# ---- a misbehaving proxy ---------------------------------------------------------------------------
class FaultyProxy:
    """HTTP proxy in front of a registry. ``mode``:
    "flip" -- flip one byte in the middle of every blob body;
    "drop" -- close the connection half-way through the first blob response (later ones pass);
    "redirect" -- answer blob GETs with 307 to the upstream registry's own URL;
    "503" / "429" -- answer blob GETs with that status (Retry-After: 1) the first ``times`` times.
    """

    def __init__(self, upstream: str, mode: str, times: int = 2):
        self.upstream, self.mode, self.times = upstream, mode, times
        self.faults = 0
        self.seen: list[tuple[str, str, int]] = []  # (method, path, status)
        self.httpd = None

    def start(self) -> "FaultyProxy":
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _forward(self):
                import http.client
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                is_blob = "/blobs/sha256:" in self.path and self.command == "GET"
                if is_blob and outer.mode in ("503", "429") and outer.faults < outer.times:
                    outer.faults += 1
                    outer.seen.append((self.command, self.path, int(outer.mode)))
                    self.send_response(int(outer.mode))
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if is_blob and outer.mode == "redirect":  # as a registry sending blobs to a CDN
                    outer.seen.append((self.command, self.path, 307))
                    self.send_response(307)
                    self.send_header("Location", f"http://{outer.upstream}{self.path}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                c = http.client.HTTPConnection(outer.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                c.request(self.command, self.path, body=body, headers=headers)
                r = c.getresponse()
                data = r.read()
                c.close()
                outer.seen.append((self.command, self.path, r.status))
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length") or (
                            self.command == "HEAD" and k.lower() == "content-length"):
                        self.send_header(k, v)
                if is_blob and r.status in (200, 206) and outer.mode == "drop" and outer.faults < 1 and len(data) > 2:
                    outer.faults += 1
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if is_blob and r.status == 200 and outer.mode == "flip" and data:
                    i = len(data) // 2
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
                    outer.faults += 1
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        self.httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


# ---- small images made for the tests ------------------------------------------------------------------
def layer_tar(files: dict[str, bytes], compress: bool = True) -> tuple[bytes, str]:
    """A layer tarball (gzip unless compress=False) and its DiffID."""
    import gzip
    import hashlib
    import io
    import tarfile
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    return (gzip.compress(tar_bytes, mtime=0, compresslevel=1) if compress else tar_bytes), diff_id


def build_image(store, layers: list[dict[str, bytes]], ref: str | None = None, arch: str = "amd64",
                oci: bool = False, base=None):
    """An image of the given layers (on top of ``base``'s, e.g. busybox) in an ImageStore."""
    from minidocker.images.store import (DOCKER_MEDIA_TYPE_CONFIG, DOCKER_MEDIA_TYPE_LAYER_GZIP,
                                         DOCKER_MEDIA_TYPE_MANIFEST, MEDIA_TYPE_CONFIG,
                                         MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_MANIFEST)
    descs, diff_ids = [], []
    if base is not None:  # one family of media types per manifest (skopeo refuses a mix)
        oci = base.manifest.get("mediaType", MEDIA_TYPE_MANIFEST) == MEDIA_TYPE_MANIFEST
        descs, diff_ids = list(base.manifest["layers"]), list(base.diff_ids)
    for files in layers:
        blob, diff_id = layer_tar(files)
        descs.append({"mediaType": MEDIA_TYPE_LAYER_GZIP if oci else DOCKER_MEDIA_TYPE_LAYER_GZIP,
                      "digest": store.content.put(blob), "size": len(blob)})
        diff_ids.append(diff_id)
    config = json.dumps({"architecture": arch, "os": "linux", "created": "2026-01-01T00:00:00Z",
                         "config": (base.config.get("config") if base is not None else {"Cmd": ["sh"]}),
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}, sort_keys=True).encode()
    manifest = {"schemaVersion": 2,
                "mediaType": MEDIA_TYPE_MANIFEST if oci else DOCKER_MEDIA_TYPE_MANIFEST,
                "config": {"mediaType": MEDIA_TYPE_CONFIG if oci else DOCKER_MEDIA_TYPE_CONFIG,
                           "digest": store.content.put(config), "size": len(config)},
                "layers": descs}
    return store.add_image(json.dumps(manifest, sort_keys=True).encode(), ref)
