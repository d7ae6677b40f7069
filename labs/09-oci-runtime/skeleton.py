"""Lab 09 — the OCI runtime: your own ``state``, ``start``, ``kill`` and ``delete`` (runc's verbs).

``create`` is given: the checker makes each container with minidocker's own ``runtime.create``,
which forks the container's init into its namespaces and cgroup and leaves it blocked opening
``ROOT/ID/exec.fifo`` for writing, and records it in ``ROOT/ID/runtime.json``::

    {"ociVersion": "1.0.2", "id": "ID", "pid": 4242, "starttime": 123456,
     "bundle": "/path/to/bundle", "rootfs": "/path/to/rootfs", "created": "2026-…Z",
     "annotations": {}, "cgroup": "/lab09-…/ID"}

``starttime`` is field 22 of /proc/PID/stat when the init was created. You write the four verbs
that work on such a record; each takes the state root and the container id, as the reference does.

Check your work (as root):   minidocker lab check 09
                       or:   .venv/bin/python labs/09-oci-runtime/check.py
"""
from __future__ import annotations

import os  # noqa: F401
import select  # noqa: F401
import signal  # noqa: F401

from minidocker.runtime import resources  # noqa: F401  (resources.cgroup_of(path) -> a Cgroup)
from minidocker.util import read_json  # noqa: F401

STATE_FILE = "runtime.json"
FIFO = "exec.fifo"


class ContainerError(RuntimeError):
    """A verb that cannot be done (the message says why, as runc's do)."""


# --- Task 1 ---------------------------------------------------------------------------------------------

def state(root: str, cid: str) -> dict:
    """runc's ``state``: ``{"ociVersion", "id", "pid", "status", "bundle", "rootfs", "created",
    "annotations", "owner"}`` with ``owner`` "" and ``pid`` 0 once stopped.

    status: "stopped" unless the init is alive (its pid exists, is not a zombie, *and* has the
    recorded start time — a recycled pid is somebody else); else "created" while the fifo exists;
    else "paused" if its cgroup is frozen; else "running". Raise ContainerError if there is no record.
    """
    raise NotImplementedError("TODO task 1: read runtime.json and derive the status from the kernel")


# --- Task 2 ---------------------------------------------------------------------------------------------

def start(root: str, cid: str, timeout: float = 30.0) -> None:
    """created -> running: open the exec fifo for reading; the init (blocked opening it for writing)
    writes one byte and execs. Never hang on a dead init: watch its pidfd too. Remove the fifo.
    Raise ContainerError when the container is not "created" or the init died first."""
    raise NotImplementedError("TODO task 2: the exec fifo, guarded by a pidfd")


# --- Task 3 ---------------------------------------------------------------------------------------------

def kill(root: str, cid: str, sig: int = 15, all: bool = False) -> None:  # noqa: A002
    """Send ``sig`` to the init through a pidfd (``all``: to every process of its cgroup).
    Raise ContainerError when the container is stopped."""
    raise NotImplementedError("TODO task 3: pidfd_open + pidfd_send_signal")


# --- Task 4 ---------------------------------------------------------------------------------------------

def delete(root: str, cid: str, force: bool = False) -> None:
    """Remove a stopped or created container (any, with ``force``): kill what runs, remove its cgroup,
    then runtime.json, the fifo and the directory. A running one without ``force``: ContainerError."""
    raise NotImplementedError("TODO task 4: kill, destroy the cgroup, remove the files")
