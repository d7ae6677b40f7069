"""A small token server for docker's Bearer flow (distribution docs/spec/auth/token.md).

What this teaches
-----------------
A registry configured with ``auth.token`` checks no passwords: it trusts JWTs signed by a token
service whose certificate it has (``rootcertbundle``). This server is that service, in a page:
``GET /token?service=<service>&scope=repository:<name>:<actions>`` with optional Basic credentials,
answered with ``{"token": <JWT>, "expires_in": N}``. Anonymous users get ``pull`` only; known users
get what they ask for. The JWT is RS256-signed with ``openssl dgst -sha256 -sign`` (no crypto
library needed), and carries its certificate in the ``x5c`` header, which distribution verifies
against its root bundle.

Used by the tests and the notebook with Debian's docker-registry::

    tokens = TokenServer(workdir, {"alice": "secret"}).start()
    # registry config: auth.token.{realm: tokens.url + "/token", service: tokens.service,
    #                               issuer: tokens.issuer, rootcertbundle: tokens.cert}
"""
from __future__ import annotations

import base64
import http.server
import json
import os
import socketserver
import subprocess
import threading
import time


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues JWTs for a distribution registry configured with ``auth.token``."""

    def __init__(self, base: str, users: dict, expires_in: int = 300):
        self.base, self.users, self.expires_in = base, users, expires_in
        self.service, self.issuer = "minidocker-test-registry", "minidocker-test-issuer"
        self.key, self.cert = os.path.join(base, "token.key"), os.path.join(base, "token.crt")
        self.requests: list[dict] = []  # what clients asked for (service, scope, user)
        self.httpd = None

    def start(self) -> "TokenServer":
        os.makedirs(self.base, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key,
                        "-out", self.cert, "-days", "2", "-subj", "/CN=minidocker-token-issuer"],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", self.cert, "-outform", "DER"], check=True,
                             capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                from urllib.parse import parse_qs, urlsplit
                q = parse_qs(urlsplit(self.path).query)
                user = None
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
                    if outer.users.get(u) != p:
                        return self._send(401, {"details": "wrong username or password"})
                    user = u
                outer.requests.append({"service": q.get("service"), "scope": q.get("scope", []), "user": user})
                access = []
                for scope in q.get("scope", []):
                    kind, name, actions = scope.split(":")
                    # anonymous users may only pull; logged-in users may do what they ask
                    granted = [a for a in actions.split(",") if user or a == "pull"]
                    access.append({"type": kind, "name": name, "actions": granted})
                token = outer.sign(user or "", access)
                self._send(200, {"token": token, "access_token": token, "expires_in": outer.expires_in})

            def _send(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def sign(self, subject: str, access: list) -> str:
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "x5c": [self.x5c]}
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + self.expires_in,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key], input=signing_input.encode(),
                             check=True, capture_output=True).stdout
        return f"{signing_input}.{b64url(sig)}"

    def stop(self) -> None:
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
