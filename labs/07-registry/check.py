"""Checker for lab 07 (a pull client). Starts minidocker's registry server on 127.0.0.1 (without and
with Basic auth) and a tiny token server, pushes busybox with the real client, and pulls it with
your functions.

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
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:
    sys.path.insert(0, str(HERE.parents[1]))

from minidocker.images.busybox import build_busybox  # noqa: E402
from minidocker.images.store import ImageStore  # noqa: E402
from minidocker.registry.auth import Credentials  # noqa: E402
from minidocker.registry.client import Registry  # noqa: E402

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


def _run(name: str, fn) -> Result:
    try:
        return (name, True, fn() or "")
    except NotImplementedError as e:
        return (name, False, f"not implemented yet: {e}")
    except Exception as e:  # the student's bug, shown as text
        return (name, False, f"{type(e).__name__}: {e}")


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def check(m) -> list[Result]:
    results: list[Result] = []

    def challenge():
        got = m.parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                                'scope="repository:library/busybox:pull"')
        _expect(got == ("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                                   "scope": "repository:library/busybox:pull"}), f"got {got!r}")
        got = m.parse_challenge('Basic realm="Registry Realm"')
        _expect(got == ("basic", {"realm": "Registry Realm"}), f"got {got!r}")
        return "Bearer and Basic challenges"
    results.append(_run("parse_challenge", challenge))

    def platform():
        index = {"manifests": [{"digest": "sha256:" + "a" * 64, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                               {"digest": "sha256:" + "b" * 64, "platform": {"os": "linux", "architecture": "amd64"}}]}
        _expect(m.select_platform(index, {"os": "linux", "architecture": "amd64"})["digest"].endswith("b" * 64), "amd64")
        _expect(m.select_platform(index, {"os": "linux", "architecture": "arm64", "variant": "v8"})["digest"].endswith("a" * 64), "arm64")
        try:
            m.select_platform(index, {"os": "linux", "architecture": "s390x"})
        except NotImplementedError:
            raise
        except Exception as e:
            _expect("no matching manifest" in str(e), f"the error should say 'no matching manifest': {e}")
            return "amd64, arm64/v8, and an error for s390x"
        raise AssertionError("no error for a platform the index does not have")
    results.append(_run("select_platform", platform))

    def verify():
        data = b"hello"
        good = "sha256:" + hashlib.sha256(data).hexdigest()
        _expect(m.verify(data, good) == data, "verify must return the data")
        try:
            m.verify(b"hellO", good)
        except ValueError as e:
            _expect("digest mismatch" in str(e), f"the error should say 'digest mismatch': {e}")
            return "match and mismatch"
        raise AssertionError("no error for a byte that changed")
    results.append(_run("verify", verify))

    def token():
        seen: list = []
        srv = _token_server(seen)
        try:
            realm = f"http://127.0.0.1:{srv.server_address[1]}/token"
            tok = m.fetch_token({"realm": realm, "service": "reg"}, "bb", "alice", "pw")
            _expect(tok == "the-token", f"got {tok!r}")
            path, auth = seen[-1]
            _expect("service=reg" in path and "scope=repository%3Abb%3Apull" in path.replace(":", "%3A"), f"asked {path}")
            _expect(auth == "Basic " + base64.b64encode(b"alice:pw").decode(), f"Authorization was {auth!r}")
        finally:
            srv.shutdown()
            srv.server_close()
        return "token fetched with service, scope and Basic credentials"
    results.append(_run("fetch_token", token))

    work = tempfile.mkdtemp(prefix="md-lab07-")
    servers = []
    try:
        source = ImageStore(os.path.join(work, "source"))
        image = build_busybox(source)

        def plain():
            srv = _Server(os.path.join(work, "reg1"))
            servers.append(srv)
            Registry(srv.host).push("bb", "1", source, image)
            dest = ImageStore(os.path.join(work, "dest1"))
            digest = m.pull(srv.host, "bb", "1", dest, tag_as=f"{srv.host}/bb:1")
            _expect(digest == image.manifest_digest, f"pulled {digest}, pushed {image.manifest_digest}")
            _expect(dest.resolve(f"{srv.host}/bb:1").id == image.id, "the image is not tagged in the store")
            by_digest = m.pull(srv.host, "bb", image.manifest_digest, ImageStore(os.path.join(work, "dest2")))
            _expect(by_digest == image.manifest_digest, "pull by digest")
            return "by tag and by digest"
        results.append(_run("pull without auth", plain))

        def basic():
            htpasswd = shutil.which("htpasswd")
            _expect(htpasswd is not None, "htpasswd (apache2-utils) is needed for this check")
            path = os.path.join(work, "htpasswd")
            with open(path, "w") as f:
                f.write(subprocess.run([htpasswd, "-Bbn", "alice", "pw"], capture_output=True, text=True,
                                       check=True).stdout)
            srv = _Server(os.path.join(work, "reg2"), path)
            servers.append(srv)
            Registry(srv.host, Credentials("alice", "pw")).push("bb", "1", source, image)
            dest = ImageStore(os.path.join(work, "dest3"))
            digest = m.pull(srv.host, "bb", "1", dest, username="alice", password="pw")
            _expect(digest == image.manifest_digest, f"pulled {digest}")
            return "Basic credentials after the 401 challenge"
        results.append(_run("pull with Basic auth", basic))
    finally:
        for srv in servers:
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    import importlib
    import importlib.util
    if "--reference" in sys.argv:
        module = importlib.import_module(REFERENCE)
    else:
        path = next((a for a in sys.argv[1:] if a.endswith(".py")), str(HERE / "skeleton.py"))
        spec = importlib.util.spec_from_file_location("student", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    rows = check(module)
    for name, ok, detail in rows:
        print(f"{'PASS' if ok else 'FAIL'}  {name:24} {detail}")
    sys.exit(0 if all(ok for _, ok, _ in rows) else 1)
