"""Lab 13 — a tiny builder on the Engine API. Fill in every TODO; `minidocker lab check 13` tells you how far you are.

The reference is minidocker/build/tiny.py (try not to read it before your checks pass).
"""
from __future__ import annotations

import io
import os
import tarfile
import urllib.parse

from minidocker.build.tiny import api  # noqa: F401  (given: one HTTP request over the UNIX socket)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: comments and blank lines dropped, a trailing
    backslash joins the next line, the instruction word upper-cased."""
    raise NotImplementedError("TODO: split lines, skip '#' and blanks, join continuations, partition on the first space")


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
