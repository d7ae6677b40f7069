"""Lab 05 — copy-on-write: your own version of three pieces of minidocker/cow.py.

Fill in the functions marked TODO; the rest is the reference's, imported below.

Check your work (as root):   minidocker lab check 05
                       or:   .venv/bin/python labs/05-copy-on-write/check.py
"""
from __future__ import annotations

import os  # noqa: F401
import stat  # noqa: F401
import tarfile  # noqa: F401

from minidocker.cow import KIND_CODES, OVERLAY_XATTR_PREFIX, WHITEOUT_PREFIX, Change  # noqa: F401
from minidocker.unionfs import is_opaque, is_whiteout, lookup, merged_listdir  # noqa: F401

__all__ = ["Change", "overlay_changes", "tree_changes", "write_layer"]


# --- Task 1 ---------------------------------------------------------------------------------------------

def overlay_changes(upper: str, lowers: list[str]) -> list[Change]:
    """``docker diff`` from an overlay's upper directory and its lower layers (top-most first):
    sorted Change(path, "A"|"C"|"D") with paths like "/etc/passwd"."""
    raise NotImplementedError("TODO task 1: overlay_changes")


# --- Task 2 ---------------------------------------------------------------------------------------------

def tree_changes(new_root: str, old_root: str | None) -> list[Change]:
    """The same list, from two complete trees (the copy driver): the container's and its parent's."""
    raise NotImplementedError("TODO task 2: tree_changes")


# --- Task 3 ---------------------------------------------------------------------------------------------

def write_layer(change_list: list[Change], root: str, out) -> int:
    """Write the changes as an uncompressed OCI layer tar to the binary file ``out``, reading added
    and changed entries from ``root``. Deterministic. Returns the number of entries."""
    raise NotImplementedError("TODO task 3: write_layer")
