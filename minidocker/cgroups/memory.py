"""The memory controller: a hard limit, swap, usage and peak, and the OOM killer's record.

v1 (cgroup-v1/memory.rst)                 v2 (cgroup-v2.rst "Memory")
memory.limit_in_bytes                     memory.max
memory.memsw.limit_in_bytes (mem+swap)    memory.swap.max (swap alone)
memory.usage_in_bytes / max_usage_in_bytes memory.current / memory.peak
memory.oom_control "oom_kill N"           memory.events "oom_kill N"

When a group reaches its limit the kernel reclaims; when nothing can be reclaimed, the OOM killer
SIGKILLs the biggest process *in that group* (not on the host) and counts it. A container's pid 1
killed that way exits 128 + 9 = 137; the counter is how the engine tells an OOM kill from ``kill -9``.
The monitor reads it once pid 1 has exited, which is all ``State.OOMKilled`` needs. To be woken *as
it happens*, v1 offers an eventfd registered through ``cgroup.event_control`` ("<eventfd> <fd of
memory.oom_control>"), and v2 a POLLPRI on ``memory.events`` (see v2.py's ``_wait_event``).
(v1's ``memory.failcnt`` is not a substitute: it counts hitting the limit, not kills.)
"""
from __future__ import annotations

from .driver import has, read_int, read_keyed, write


def apply_v1(d: str, lim) -> list[str]:
    if not lim.memory:
        return []
    # memsw must stay >= limit at every moment: set the limit first (memsw starts unlimited).
    write(d, "memory.limit_in_bytes", lim.memory)
    swap_total = lim.memory_swap or 2 * lim.memory       # docker's default: as much swap as memory
    if has(d, "memory.memsw.limit_in_bytes"):
        write(d, "memory.memsw.limit_in_bytes", -1 if swap_total == -1 else swap_total)
    return []


def apply_v2(d: str, lim) -> list[str]:
    if not lim.memory:
        return []
    write(d, "memory.max", lim.memory)
    if has(d, "memory.swap.max"):
        swap_total = lim.memory_swap or 2 * lim.memory
        write(d, "memory.swap.max", "max" if swap_total == -1 else swap_total - lim.memory)
    return []


def stats_v1(d: str) -> dict:
    limit = read_int(d, "memory.limit_in_bytes")
    return {"usage": read_int(d, "memory.usage_in_bytes"), "max_usage": read_int(d, "memory.max_usage_in_bytes"),
            "limit": 0 if limit >= 2**62 else limit, "failcnt": read_int(d, "memory.failcnt"),
            "stats": read_keyed(d, "memory.stat")}


def stats_v2(d: str) -> dict:
    limit = read_int(d, "memory.max")
    return {"usage": read_int(d, "memory.current"), "max_usage": read_int(d, "memory.peak"),
            "limit": 0 if limit == -1 else limit, "stats": read_keyed(d, "memory.stat"),
            "events": read_keyed(d, "memory.events")}


def oom_kills_v1(d: str) -> int:
    return read_keyed(d, "memory.oom_control").get("oom_kill", 0)


def oom_kills_v2(d: str) -> int:
    return read_keyed(d, "memory.events").get("oom_kill", 0)
