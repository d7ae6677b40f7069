"""Lab 13 — a tiny builder on the Engine API. Fill in every TODO; `minidocker lab check 13` tells you how far you are.

The reference is minidocker/build/tiny.py (try not to read it before your checks pass).
"""
from __future__ import annotations

import http.client
import io
import json
import os
import socket
import tarfile
import urllib.parse


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: comments and blank lines dropped, a trailing
    backslash joins the next line, the instruction word upper-cased."""
    raise NotImplementedError("TODO: split lines, skip '#' and blanks, join continuations, partition on the first space")


def api(sock: str, method: str, path: str, body=None, ctype: str = "application/json"):
    """One request over the daemon's UNIX socket -> (status, parsed JSON or None)."""
    class Conn(http.client.HTTPConnection):   # given: HTTP over a UNIX socket
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(sock)
    c = Conn("localhost", timeout=120)
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    c.request(method, path, body=data, headers={"Content-Type": ctype} if data is not None else {})
    r = c.getresponse()
    raw = r.read()
    c.close()
    return r.status, (json.loads(raw) if raw[:1] in (b"{", b"[") else None)


def step(sock: str, image: str, cmd: list[str] | None = None, changes: list[str] = (),
         files: tuple[str, bytes] | None = None) -> str:
    """One container on ``image``: optional ``files`` = (directory, tar bytes) put into it, optional
    ``cmd`` run to the end (non-zero exit: RuntimeError), then committed with ``changes``; the
    container is removed in every case. Returns the new image id."""
    raise NotImplementedError("TODO: POST /containers/create, PUT .../archive?path=, start + wait, "
                              "POST /commit?container=&changes=, DELETE ?force=1 (in a finally)")


def context_tar(context_dir: str, source: str, dest: str = "/") -> bytes:
    """A tar holding ``source`` (a file or directory in the context) as ``dest``/its base name
    (names relative to /: the tar is put into the container's root, parents are created)."""
    raise NotImplementedError("TODO: tarfile.open(fileobj=BytesIO, mode='w').add(path, arcname=dest/basename without the leading /)")


def build(sock: str, text: str, context_dir: str) -> str:
    """Run FROM/COPY/RUN/ENV/CMD; return the final image id. COPY src /dir/ puts src into /dir."""
    raise NotImplementedError("TODO: one step() per instruction; FROM sets the starting image")
