"""``minidocker build``: send a build context to ``POST /build`` and print the progress.

Like the docker CLI, the client does the context work: it tars the directory with
``.dockerignore`` applied (minidocker/build/context.py), adds a Dockerfile from elsewhere (``-f``
outside the context, or ``-f -``) under a name of its own, and streams the tar while it is being
written (a pipe and a writer thread): the context is never held in memory or on disk. ``-`` as the
context reads a tar context, or a lone Dockerfile, from stdin.
"""
from __future__ import annotations

import os
import secrets
import sys
import threading

from .client import APIError


def _split_args(items: list[str]) -> dict:
    out = {}
    for item in items or []:
        k, eq, v = item.partition("=")
        if not eq:                      # --build-arg NAME: the client's environment value
            if k in os.environ:
                out[k] = os.environ[k]
            continue
        out[k] = v
    return out


def _context_body(a):
    """(file object with the tar, name of the Dockerfile in it)."""
    if a.context == "-":
        data = sys.stdin.buffer.read()
        if data[257:262] == b"ustar" or data[:2] in (b"\x1f\x8b", b"BZ") or data[:6] == b"\xfd7zXZ\x00":
            import io
            return io.BytesIO(data), a.file or "Dockerfile"
        return _streamed(None, ("Dockerfile", data)), "Dockerfile"
    if not os.path.isdir(a.context):
        raise SystemExit(f"unable to prepare context: path {a.context!r} not found")
    extra, name = None, "Dockerfile"
    if a.file == "-":
        name = f".dockerfile.{secrets.token_hex(10)}"
        extra = (name, sys.stdin.buffer.read())
    elif a.file:
        path = os.path.abspath(a.file)
        ctx = os.path.abspath(a.context)
        if path.startswith(ctx + os.sep):
            name = os.path.relpath(path, ctx)
        else:                           # outside the context: sent inside it under a new name
            name = f".dockerfile.{secrets.token_hex(10)}"
            with open(path, "rb") as f:
                extra = (name, f.read())
    return _streamed(a.context, extra), name


def _streamed(root, extra):
    from ..build.context import write_tar     # imported by this verb only (CLI start-up time)
    r, w = os.pipe()

    def writer():
        with os.fdopen(w, "wb") as out:
            try:
                write_tar(root, out, dockerfile=extra)
            except BrokenPipeError:
                pass
    threading.Thread(target=writer, daemon=True).start()
    return os.fdopen(r, "rb")


def cmd_build(c, a) -> int:
    body, dockerfile = _context_body(a)
    query = [("t", t) for t in a.tag or []] + [
        ("dockerfile", dockerfile), ("q", a.quiet or None), ("nocache", a.no_cache or None),
        ("target", a.target or None), ("buildargs", _split_args(a.build_arg) or None),
        ("labels", _split_args(a.label) or None), ("rm", "0" if a.rm == "false" else None),
        ("forcerm", a.force_rm or None), ("networkmode", a.network or None),
        ("platform", a.platform or None), ("pull", a.pull or None)]
    rc, image_id = 0, ""
    try:
        with body:
            for msg in c.stream("POST", "/build", query=query, body=body,
                                headers={"Content-Type": "application/x-tar"}):
                if msg.get("error") or msg.get("errorDetail"):
                    print(msg.get("error") or msg["errorDetail"].get("message"), file=sys.stderr)
                    rc = (msg.get("errorDetail") or {}).get("code") or 1
                elif "aux" in msg:
                    image_id = (msg["aux"] or {}).get("ID", image_id)
                elif "stream" in msg and not a.quiet:
                    print(msg["stream"], end="", flush=True)
    except APIError as e:
        print(f"Error response from daemon: {e}", file=sys.stderr)
        return 1
    if a.quiet and image_id and rc == 0:
        print(image_id)
    return rc


def add_build(sub, verb: str) -> None:
    b = sub.add_parser(verb, help="build an image from a Dockerfile")
    b.add_argument("-t", "--tag", action="append", help="name:tag (repeatable)")
    b.add_argument("-f", "--file", help="the Dockerfile (default: CONTEXT/Dockerfile; - for stdin)")
    b.add_argument("--build-arg", action="append", help="NAME=VALUE (or NAME: from the environment)")
    b.add_argument("--label", action="append", help="KEY=VALUE on the image")
    b.add_argument("--target", help="the stage to build")
    b.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    b.add_argument("--no-cache", action="store_true")
    b.add_argument("--pull", action="store_true")
    b.add_argument("--rm", default="true", choices=["true", "false"])
    b.add_argument("--force-rm", action="store_true")
    b.add_argument("--network", help="default or none")
    b.add_argument("--platform")
    b.add_argument("context", help="a directory, or - (a tar or a Dockerfile on stdin)")
    b.set_defaults(fn=cmd_build)
