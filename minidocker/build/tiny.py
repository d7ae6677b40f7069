"""A tiny builder on the Engine API: FROM, COPY, RUN, ENV, CMD -- the reference for lab 13.

What this teaches
-----------------
Everything ``docker build`` does can be done from outside the daemon with the API verbs of the
earlier chapters: a RUN step is ``POST /containers/create`` + ``start`` + ``wait`` + ``POST /commit``;
a COPY step is a container whose filesystem receives a tar (``PUT /containers/{id}/archive``) and is
committed; ENV and CMD are commits with ``changes``. (The real builder, builder.py, works inside the
daemon instead: no API round trips, a content cache, layers committed in place.) Standard library only.
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
    out, pending = [], ""
    for line in text.splitlines():
        if line.strip().startswith("#") or (not line.strip() and not pending):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1]
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    if pending.strip():
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def api(sock: str, method: str, path: str, body=None, ctype: str = "application/json"):
    """One request over the daemon's UNIX socket -> (status, parsed JSON or None)."""
    class Conn(http.client.HTTPConnection):
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


def _ok(status, reply, what):
    if status >= 300:
        raise RuntimeError(f"{what}: {status} {reply}")
    return reply


def step(sock: str, image: str, cmd: list[str] | None = None, changes: list[str] = (),
         files: tuple[str, bytes] | None = None) -> str:
    """One container on ``image``: optional ``files`` = (directory, tar bytes) put into it, optional
    ``cmd`` run to the end (non-zero exit: RuntimeError), then committed with ``changes``; the
    container is removed in every case. Returns the new image id."""
    created = _ok(*api(sock, "POST", "/containers/create", {"Image": image, "Cmd": cmd or ["true"],
                                                          "Entrypoint": [""]}), "create")
    cid = created["Id"]
    try:
        if files is not None:
            path = urllib.parse.quote(files[0])
            _ok(*api(sock, "PUT", f"/containers/{cid}/archive?path={path}", files[1], "application/x-tar"),
                "copy")
        if cmd:
            _ok(*api(sock, "POST", f"/containers/{cid}/start"), "start")
            code = _ok(*api(sock, "POST", f"/containers/{cid}/wait"), "wait")["StatusCode"]
            if code != 0:
                raise RuntimeError(f"The command {cmd} returned a non-zero code: {code}")
        query = "&".join(["container=" + cid] + ["changes=" + urllib.parse.quote(c) for c in changes])
        return _ok(*api(sock, "POST", "/commit?" + query, {}), "commit")["Id"]
    finally:
        api(sock, "DELETE", f"/containers/{cid}?force=1")


def context_tar(context_dir: str, source: str, dest: str = "/") -> bytes:
    """A tar holding ``source`` (a file or directory in the context) as ``dest``/its base name
    (names relative to /: the tar is put into the container's root, parents are created)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        name = os.path.join(dest, os.path.basename(source.rstrip("/"))).lstrip("/")
        t.add(os.path.join(context_dir, source), arcname=name)
    return buf.getvalue()


def build(sock: str, text: str, context_dir: str) -> str:
    """Run FROM/COPY/RUN/ENV/CMD; return the final image id. COPY src /dir/ puts src into /dir."""
    image = None
    for cmd, args in instructions(text):
        if cmd == "FROM":
            image = args
        elif image is None:
            raise ValueError(f"{cmd} before FROM")
        elif cmd == "RUN":
            image = step(sock, image, ["/bin/sh", "-c", args])
        elif cmd == "COPY":
            src, dest = args.split()
            image = step(sock, image, files=("/", context_tar(context_dir, src, dest)))
        elif cmd in ("ENV", "CMD"):
            image = step(sock, image, changes=[f"{cmd} {args}"])
        else:
            raise ValueError(f"unsupported instruction: {cmd}")
    if image is None:
        raise ValueError("no FROM")
    return image
