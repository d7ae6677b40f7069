"""Lab 06 — a safe OCI layer applier. Fill in the TODOs; `minidocker lab check 06` checks it.

Same interface as minidocker/images/layers.py (the reference): ``apply_layer(layer, target_dir)``
applies a layer tar (plain or gzip) with copy-semantics whiteouts and returns an ``ApplyResult``
whose ``diff_id`` is the sha256 of the uncompressed tar; anything hostile raises ``LayerError``
naming the member. Read OCI image-spec layer.md ("Whiteouts") and openat(2) / O_NOFOLLOW first.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
MAX_SYMLINK_HOPS = 40


class LayerError(Exception):
    """A layer could not be applied; the message names the offending member."""


@dataclass
class ApplyResult:
    diff_id: str
    entries: int = 0


# ---- given: reading the stream and hashing it ----------------------------------------------

class HashingReader(io.RawIOBase):
    """Passes bytes through and hashes them: the DiffID comes for free while extracting."""

    def __init__(self, f):
        self._f, self.sha256 = f, hashlib.sha256()

    def readable(self):
        return True

    def readinto(self, b):
        data = self._f.read(len(b))
        self.sha256.update(data)
        b[:len(data)] = data
        return len(data)


def uncompressed(f):
    buffered = f if hasattr(f, "peek") else io.BufferedReader(f)
    return gzip.GzipFile(fileobj=buffered) if buffered.peek(2)[:2] == b"\x1f\x8b" else buffered


# ---- your work --------------------------------------------------------------------------------

def clean_member_name(name: str) -> str:
    """``/a/./b/`` -> ``a/b``; ``.`` for the root itself; LayerError if ``..`` climbs out.

    TODO: strip leading "/", normalise (posixpath.normpath), refuse ".." and "../..."."""
    raise NotImplementedError("TODO: clean_member_name")


def open_dir_in_scope(root_fd: int, parts: list[str], member: str) -> int:
    """Walk ``parts`` from the target root one component at a time and return an O_DIRECTORY fd.

    TODO:
    * each step: os.stat(name, dir_fd=here, follow_symlinks=False); create missing dirs (0755);
    * a symlink is followed *as if the target were /*: read it, an absolute link restarts from
      root_fd, its components are pushed in front of the remaining ones;
    * ".." pops one directory but never above the root; count hops, LayerError after 40
      ("too many levels of symbolic links");
    * a component that is neither a directory nor a symlink: LayerError;
    * open with os.O_DIRECTORY | os.O_NOFOLLOW and close every fd you do not return.
    """
    raise NotImplementedError("TODO: open_dir_in_scope")


def make_entry(tar: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, base: str, root_fd: int) -> None:
    """Create ``base`` in the directory ``pfd`` for the tar member ``m``.

    TODO: an existing entry is removed first (never written through: os.open with O_EXCL and
    O_NOFOLLOW); directories merge. Regular files, directories, symlinks (os.symlink with
    dir_fd), hardlinks (target resolved with clean_member_name + open_dir_in_scope; it must
    exist and not be a directory), fifos, device nodes. Then owner (os.chown(...,
    follow_symlinks=False) when root), mode (not for symlinks), mtime (os.utime with ns=...).
    Directory mode and mtime are best set at the end (why?)."""
    raise NotImplementedError("TODO: make_entry")


def whiteout(pfd: int, name: str, member: str) -> None:
    """``.wh.NAME``: delete NAME (a whole tree if it is a directory, without following symlinks).
    TODO: refuse "", "." and ".." with LayerError ("invalid whiteout name")."""
    raise NotImplementedError("TODO: whiteout")


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The ChainID of each stack of layers, bottom first (image-spec config.md "Layer ChainID"):
    ChainID(L0) = DiffID(L0); ChainID(L0..Ln) = sha256 of ChainID(L0..Ln-1) + " " + DiffID(Ln),
    written "sha256:<hex>"."""
    raise NotImplementedError("TODO: chain_ids")


def apply_layer(layer, target_dir: str) -> ApplyResult:
    """Apply a layer (a binary file object, plain tar or gzip) onto ``target_dir``.

    TODO: stream the members (tarfile.open(fileobj=..., mode="r|")); for each: clean the name,
    open its parent in scope, then whiteout / opaque whiteout / make_entry; remember which paths
    this layer created (an opaque whiteout keeps those). Read the stream to its end for the DiffID.
    Turn tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error and OSError into LayerError
    ("not a valid layer tar", "corrupt gzip layer stream", "layer member 'x': ...")."""
    raise NotImplementedError("TODO: apply_layer")
