"""Lab 03 — control groups: your own version of six pieces of minidocker/cgroups/.

Fill in the six functions marked TODO. The data type ``Layout`` is given (where the cgroup
filesystems are mounted: ``mode`` "v1"/"v2"/"hybrid", ``v1`` = {controller: mount point},
``unified`` = the cgroup2 mount point or None).

Everything here is plain file work: open/read/write/mkdir — no system call of its own.

Check your work (as root):   minidocker lab check 03
                       or:   .venv/bin/python labs/03-cgroups/check.py
"""
from __future__ import annotations

import os  # noqa: F401
import time  # noqa: F401

from minidocker.cgroups import Layout  # noqa: F401

__all__ = ["Layout", "detect", "parse_cpu_list", "shares_to_weight", "join", "set_frozen", "set_limits"]

V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "freezer", "devices")


# --- Task 1 ---------------------------------------------------------------------------------------------

def detect(mountinfo: str = "/proc/self/mountinfo") -> Layout:
    """Read the cgroup mounts from ``mountinfo`` and return the host's Layout.

    A line whose filesystem type (first field after " - ") is "cgroup" is a v1 hierarchy: its super
    options (third field after " - ", e.g. "rw,memory" or "rw,cpu,cpuacct") name its controllers.
    "cgroup2" is the unified tree. v1 controllers + cgroup2 = "hybrid"; only v1 = "v1"; only
    cgroup2 = "v2"; none at all: raise OSError.
    """
    raise NotImplementedError("TODO task 1: detect")


# --- Task 2 ---------------------------------------------------------------------------------------------

def parse_cpu_list(text: str) -> set[int]:
    """cpuset's list format: "0-2,5" -> {0, 1, 2, 5}. Raise ValueError on anything else
    ("", "3-1", "a")."""
    raise NotImplementedError("TODO task 2: parse_cpu_list")


# --- Task 3 ---------------------------------------------------------------------------------------------

def shares_to_weight(shares: int) -> int:
    """v1 ``cpu.shares`` (2..262144, default 1024) -> v2 ``cpu.weight`` (1..10000), as runc does:
    0 stays 0 (unset); 2 -> 1; 262144 -> 10000; linear (integer arithmetic) in between."""
    raise NotImplementedError("TODO task 3: shares_to_weight")


# --- Task 4 ---------------------------------------------------------------------------------------------

def join(layout: Layout, path: str, pid: int) -> None:
    """Create the cgroup ``path`` (e.g. "/minidocker/abc") and move process ``pid`` into it.

    v2: one directory under ``layout.unified``. v1 and hybrid: one directory in *each* v1 hierarchy
    of cpu, cpuacct, cpuset, memory, pids, blkio, freezer that the layout has — and on hybrid also
    under ``layout.unified``. Then write the pid into every ``cgroup.procs``.
    """
    raise NotImplementedError("TODO task 4: join")


# --- Task 5 ---------------------------------------------------------------------------------------------

def set_frozen(layout: Layout, path: str, frozen: bool) -> None:
    """Freeze (``frozen=True``) or thaw the cgroup ``path``. Freezing returns only once every task
    is frozen. v1: the freezer hierarchy's ``freezer.state``; v2: ``cgroup.freeze``."""
    raise NotImplementedError("TODO task 5: set_frozen")


# --- Task 6 ---------------------------------------------------------------------------------------------

def set_limits(layout: Layout, path: str, memory: int = 0, pids: int = 0) -> None:
    """Limit the existing cgroup ``path``: at most ``memory`` bytes of memory **and no swap beyond
    them** (going over must mean the OOM killer, not swapping), at most ``pids`` tasks; 0 = leave
    that limit alone. v1: ``memory.limit_in_bytes`` then ``memory.memsw.limit_in_bytes`` (if the file
    exists) in the memory hierarchy, ``pids.max`` in the pids one; v2: ``memory.max``,
    ``memory.swap.max`` (the swap *beyond* memory.max), ``pids.max``."""
    raise NotImplementedError("TODO task 6: set_limits")
