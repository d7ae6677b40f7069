"""Lab 00 — the kernel-call layer: your own small ``minidocker/kernel.py``.

Fill in every ``raise NotImplementedError("TODO ...")``. The names and behaviour are those of
``minidocker.kernel`` (the reference: try not to read it until your checks pass). Given: the
constants, ``describe_call`` (how a call is shown in messages) and ``Call`` (one recorded call: name,
args; ``str()`` is describe_call), imported from the reference.
"""
from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass, field
from typing import Any

from minidocker.kernel import (CLONE_NEWNS, CLONE_NEWUTS, MS_BIND, MS_PRIVATE, MS_REC,  # noqa: F401
                               MS_RDONLY, Call, describe_call)


# --- Task 1 ---------------------------------------------------------------------------------------

def flag_names(value: int, names: dict[int, str]) -> str:
    """A bit mask as ``A|B``, in increasing bit order, using ``names`` (bit value -> name); bits with
    no name are shown as one hex number at the end (``A|0x30``); 0 is ``"0"``."""
    raise NotImplementedError("TODO task 1: flag_names")


# --- Task 2 ---------------------------------------------------------------------------------------

class KernelError(OSError):
    """A failed system call: an OSError (``.errno`` set) whose ``str()`` names the call, its arguments
    and the errno by name, e.g. ``pivot_root('/x', '/x/.old') failed: EINVAL (Invalid argument)``."""

    def __init__(self, err: int, call: str, args: tuple):
        raise NotImplementedError("TODO task 2: KernelError.__init__ (call OSError.__init__ with the errno)")

    def __str__(self) -> str:
        raise NotImplementedError("TODO task 2: KernelError.__str__ (no '[Errno N]' prefix)")


# --- Task 3 ---------------------------------------------------------------------------------------

class Linux:
    """The real kernel, through glibc: one method, one system call."""

    def sethostname(self, name: str) -> None:
        """sethostname(2) in this process's UTS namespace. -1 from libc means: read errno, raise
        KernelError(errno, "sethostname", (name,))."""
        raise NotImplementedError("TODO task 3: Linux.sethostname via ctypes")

    def unshare(self, flags: int) -> None:
        """unshare(2): move the calling thread into new namespaces."""
        raise NotImplementedError("TODO task 3: Linux.unshare via ctypes")

    def mount(self, source: str | None, target: str, fstype: str | None = None,
              flags: int = 0, data: str | None = None) -> None:
        """mount(2). None becomes a NULL pointer; strings are passed as bytes (os.fsencode)."""
        raise NotImplementedError("TODO task 3: Linux.mount via ctypes")


# --- Task 4 ---------------------------------------------------------------------------------------

@dataclass
class Recorder:
    """The recording twin: every method of Linux, none of its effects. Each call is appended to
    ``calls`` as Call(name, args) (keyword arguments' values after the positional ones) and returns 0.
    ``fail`` maps a call name to an errno: the first such call raises KernelError, later ones do not.
    An attribute that is not a method of Linux is an AttributeError."""
    calls: list[Call] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError("TODO task 4: Recorder.__getattr__")

    def names(self) -> list[str]:
        return [c.name for c in self.calls]
