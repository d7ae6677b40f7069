"""Lab 12 — volumes: your own version of three pieces of minidocker/volumes/spec.py.

Fill in the functions marked TODO; the rest is the reference's, imported below.

Check your work:   minidocker lab check 12
             or:   .venv/bin/python labs/12-volumes/check.py
"""
from __future__ import annotations

import os  # noqa: F401

from minidocker.volumes.spec import (DEFAULT_TMPFS_OPTIONS, PROPAGATIONS, MountError, MountPoint,  # noqa: F401
                                     check_volume_name)

__all__ = ["parse_bind", "check_duplicates", "oci_mounts"]


# --- Task 1 ---------------------------------------------------------------------------------------------

def parse_bind(spec: str) -> MountPoint:
    """One ``-v`` value -> a MountPoint: "/host:/dst[:mode]" (bind), "name:/dst[:mode]" (volume),
    "/dst" (anonymous volume). MountError with docker's message for what is wrong."""
    raise NotImplementedError("TODO task 1: parse_bind")


# --- Task 2 ---------------------------------------------------------------------------------------------

def check_duplicates(points: list[MountPoint]) -> None:
    """MountError("Duplicate mount point: /dst") when two mounts have the same destination."""
    raise NotImplementedError("TODO task 2: check_duplicates")


# --- Task 3 ---------------------------------------------------------------------------------------------

def oci_mounts(points: list[MountPoint]) -> list[dict]:
    """OCI runtime-spec ``mounts`` entries, parents before children; binds and volumes
    {"type": "bind", "options": ["rbind", "rprivate"(, "ro")]}, tmpfs with docker's default options."""
    raise NotImplementedError("TODO task 3: oci_mounts")
