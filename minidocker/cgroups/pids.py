"""The pids controller: a cap on the number of tasks (processes *and* threads) in a group.

Same file names in v1 and v2 (cgroup-v1/pids.rst, cgroup-v2.rst "PID"): ``pids.max`` ("max" or
N), ``pids.current``, and ``pids.events`` whose ``max`` counter says how many fork()/clone() calls
were refused with EAGAIN — the trace a contained fork bomb leaves.
"""
from __future__ import annotations

from .driver import read, read_int, read_keyed, write


def apply(d: str, lim) -> list[str]:
    if lim.pids_limit:
        write(d, "pids.max", lim.pids_limit)
    return []


def stats(d: str) -> dict:
    limit = read(d, "pids.max")
    return {"current": read_int(d, "pids.current"), "limit": 0 if limit in ("", "max") else int(limit),
            "refused": read_keyed(d, "pids.events").get("max", 0)}
