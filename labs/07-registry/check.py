"""Checker for lab 07 (a pull client). Starts minidocker's registry server on 127.0.0.1 (without and
with Basic auth) and a tiny token server, pushes busybox with the real client, and pulls it with
your functions.

    minidocker lab check 07                                  # your copy (after `minidocker lab start 07`)
    .venv/bin/python labs/07-registry/check.py               # checks labs/07-registry/skeleton.py
    .venv/bin/python labs/07-registry/check.py --reference   # checks minidocker.registry.simple
"""
from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:
    sys.path.insert(0, str(HERE.parents[1]))

from minidocker.images.busybox import build_busybox  # noqa: E402
from minidocker.images.store import ImageStore  # noqa: E402
from minidocker.registry.auth import Credentials  # noqa: E402
from minidocker.registry.client import Registry  # noqa: E402
from minidocker.labs import expect, expect_raises, in_tempdir, run_checks, script_main  # noqa: E402

REFERENCE = "minidocker.registry.simple"
Result = tuple[str, bool, str]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """``python -m minidocker.registry.server`` on a free port, stopped by PID."""

    def __init__(self, base: str, htpasswd: str | None = None):
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "minidocker.registry.server", "--port", str(self.port), "--root", base]
        if htpasswd:
            args += ["--htpasswd", htpasswd]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     cwd=str(HERE.parents[1]))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the registry server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _token_server(seen: list):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            data = json.dumps({"token": "the-token", "expires_in": 60}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
    srv = socketserver.TCPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def check_parse_challenge(m) -> str:
    expect("parse_challenge(Bearer ...)",
           m.parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                             'scope="repository:library/busybox:pull"'),
           ("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                       "scope": "repository:library/busybox:pull"}))
    expect("parse_challenge(Basic ...)", m.parse_challenge('Basic realm="Registry Realm"'),
           ("basic", {"realm": "Registry Realm"}))
    return "Bearer and Basic challenges"


def check_select_platform(m) -> str:
    arm, amd = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    index = {"manifests": [{"digest": arm, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                           {"digest": amd, "platform": {"os": "linux", "architecture": "amd64"}}]}
    expect("digest chosen for linux/amd64", m.select_platform(index, {"os": "linux", "architecture": "amd64"})["digest"], amd)
    expect("digest chosen for linux/arm64/v8",
           m.select_platform(index, {"os": "linux", "architecture": "arm64", "variant": "v8"})["digest"], arm)
    expect_raises("select_platform(linux/s390x)",
                  lambda: m.select_platform(index, {"os": "linux", "architecture": "s390x"}),
                  saying="no matching manifest")
    return "amd64, arm64/v8, and an error for s390x"


def check_verify(m) -> str:
    data = b"hello"
    good = "sha256:" + hashlib.sha256(data).hexdigest()
    expect("verify(data, its digest)", m.verify(data, good), data)
    expect_raises("verify(a changed byte, the digest)", lambda: m.verify(b"hellO", good), ValueError,
                  saying="digest mismatch")
    return "match and mismatch"


def check_fetch_token(m) -> str:
    seen: list = []
    srv = _token_server(seen)
    try:
        realm = f"http://127.0.0.1:{srv.server_address[1]}/token"
        expect("token", m.fetch_token({"realm": realm, "service": "reg"}, "bb", "alice", "pw"), "the-token")
        path, auth = seen[-1]
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query))
        expect("query service and scope", (query.get("service"), query.get("scope")), ("reg", "repository:bb:pull"))
        expect("Authorization header", auth, "Basic " + base64.b64encode(b"alice:pw").decode())
    finally:
        srv.shutdown()
        srv.server_close()
    return "token fetched with service, scope and Basic credentials"


def check_pull_plain(m, work) -> str:
    source = ImageStore(os.path.join(work, "source"))
    image = build_busybox(source)
    srv = _Server(os.path.join(work, "reg1"))
    try:
        Registry(srv.host).push("bb", "1", source, image)
        dest = ImageStore(os.path.join(work, "dest1"))
        expect("pull by tag: digest", m.pull(srv.host, "bb", "1", dest, tag_as=f"{srv.host}/bb:1"), image.manifest_digest)
        expect("image id tagged in the store", dest.resolve(f"{srv.host}/bb:1").id, image.id)
        expect("pull by digest: digest", m.pull(srv.host, "bb", image.manifest_digest,
                                                ImageStore(os.path.join(work, "dest2"))), image.manifest_digest)
    finally:
        srv.stop()
    return "by tag and by digest"


def check_pull_basic(m, work) -> str:
    htpasswd = shutil.which("htpasswd")
    if htpasswd is None:
        raise RuntimeError("htpasswd (apache2-utils) is needed for this check")
    path = os.path.join(work, "htpasswd")
    with open(path, "w") as f:
        f.write(subprocess.run([htpasswd, "-Bbn", "alice", "pw"], capture_output=True, text=True, check=True).stdout)
    source = ImageStore(os.path.join(work, "source"))
    image = build_busybox(source)
    srv = _Server(os.path.join(work, "reg2"), path)
    try:
        Registry(srv.host, Credentials("alice", "pw")).push("bb", "1", source, image)
        dest = ImageStore(os.path.join(work, "dest3"))
        expect("digest", m.pull(srv.host, "bb", "1", dest, username="alice", password="pw"), image.manifest_digest)
    finally:
        srv.stop()
    return "Basic credentials after the 401 challenge"


CHECKS = [
    ("parse_challenge", check_parse_challenge),
    ("select_platform", check_select_platform),
    ("verify", check_verify),
    ("fetch_token", check_fetch_token),
    ("pull without auth", in_tempdir(check_pull_plain, "md-lab07-"), 60),
    ("pull with Basic auth", in_tempdir(check_pull_basic, "md-lab07-"), 60),
]


def check(module) -> list[Result]:
    return run_checks(CHECKS, module)


if __name__ == "__main__":
    sys.exit(script_main(sys.argv[1:], check, REFERENCE, HERE / "skeleton.py", "lab 07 (registry)"))
