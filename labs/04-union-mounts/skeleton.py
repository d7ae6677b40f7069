"""Lab 04 — union mounts: your own version of four pieces of minidocker/unionfs.py.

Fill in the functions marked TODO. Everything else (the snapshotter classes, run_mounted, the
drivers) is the reference's, imported below.

Rules of the game (the same as the real module):
* whatever changes kernel state goes through the ``kernel`` argument (``kernel.mount``,
  ``kernel.chdir``), so a ``kernel.Recorder()`` can record what you do;
* reading is fine with plain Python (``os.lstat``, ``os.listdir``, ``os.getxattr``).

Check your work (as root):   minidocker lab check 04
                       or:   .venv/bin/python labs/04-union-mounts/check.py
"""
from __future__ import annotations

import os  # noqa: F401
import stat  # noqa: F401

from minidocker import kernel as K  # noqa: F401
from minidocker.rootfs import Mount  # noqa: F401
from minidocker.unionfs import (OPAQUE_XATTR, CopySnapshotter, OverlaySnapshotter,  # noqa: F401
                                Snapshotter, is_opaque, run_mounted)

__all__ = ["is_whiteout", "lookup", "merged_listdir", "mount_all"]


# --- Task 1 ---------------------------------------------------------------------------------------------

def is_whiteout(st: os.stat_result) -> bool:
    """True if ``st`` (an lstat result) is an overlayfs whiteout: a character device 0:0."""
    raise NotImplementedError("TODO task 1: is_whiteout")


# --- Task 2 ---------------------------------------------------------------------------------------------

def lookup(layers: list[str], path: str) -> tuple[int, os.stat_result] | None:
    """Which layer supplies ``path`` in the merged view? ``layers`` are directories, top-most first.
    Return (index of the layer, its lstat of the path), or None when the path does not exist in the
    merged view (no layer has it, or a whiteout hides it)."""
    raise NotImplementedError("TODO task 2: lookup")


# --- Task 3 ---------------------------------------------------------------------------------------------

def merged_listdir(layers: list[str], path: str) -> dict[str, int]:
    """What ``ls`` of directory ``path`` shows on the merged view: name -> index of the supplying layer."""
    raise NotImplementedError("TODO task 3: merged_listdir")


# --- Task 4 ---------------------------------------------------------------------------------------------

def mount_all(mounts: list[Mount], target: str, kernel=None) -> None:
    """Perform the mounts a snapshotter returned, in order, onto ``target`` (their own ``target``
    field is empty). Honour ``Mount.cwd`` and make read-only binds really read-only. Restore the
    process's working directory afterwards."""
    raise NotImplementedError("TODO task 4: mount_all")


# --- Task 5 ---------------------------------------------------------------------------------------------

def overlay_options(lowers: list[str], upper: str | None = None, work: str | None = None) -> str:
    """The data string of an overlay mount: ``lowerdir=`` the ``lowers`` top-most first, joined by ':';
    with ``upper`` also ``upperdir=`` and ``workdir=`` (without them the mount is read-only).
    ValueError for no lowers, or an upper without a workdir (or the reverse)."""
    raise NotImplementedError("TODO task 5: overlay_options")
