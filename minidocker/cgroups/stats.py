"""Accounting as ``GET /containers/{id}/stats`` returns it (docker's ``container.StatsResponse``).

The numbers come straight from the cgroup files (see memory.py, cpu.py, pids.py, io.py). The shape
is docker's, so ``docker stats`` computes its columns from it the way it always does:
CPU % = Δ``cpu_usage.total_usage`` / Δ``system_cpu_usage`` × ``online_cpus`` × 100 (hence
``precpu_stats``: the previous sample), MEM USAGE = ``usage`` − inactive file cache.
"""
from __future__ import annotations

import os

from ..util import now_rfc3339

USER_HZ = 100
ZERO_TIME = "0001-01-01T00:00:00Z"


def system_cpu_usage() -> int:
    """Host CPU time in ns, from the first line of /proc/stat (proc(5)), as docker computes it."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(x) for x in fields) * (10**9 // USER_HZ)


def host_memory() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def online_cpus() -> int:
    return len(os.sched_getaffinity(0))


def empty_cpu() -> dict:
    return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}


def docker_stats(raw: dict | None, *, cid: str, name: str, pre: dict | None = None) -> dict:
    """One sample in docker's JSON shape. ``raw`` is ``Cgroup.stats()`` (None: not running);
    ``pre`` the previous sample returned by this function (its cpu_stats become precpu_stats)."""
    if raw is None:
        return {"read": ZERO_TIME, "preread": ZERO_TIME, "id": cid, "name": "/" + name, "num_procs": 0,
                "pids_stats": {}, "blkio_stats": {"io_service_bytes_recursive": None},
                "cpu_stats": empty_cpu(), "precpu_stats": empty_cpu(), "memory_stats": {}}
    mem, cpu, pids = raw.get("memory") or {}, raw.get("cpu") or {}, raw.get("pids") or {}
    cpu_stats = {
        "cpu_usage": {"total_usage": cpu.get("usage_ns", 0), "usage_in_kernelmode": cpu.get("system_ns", 0),
                      "usage_in_usermode": cpu.get("user_ns", 0)},
        "system_cpu_usage": system_cpu_usage(), "online_cpus": online_cpus(),
        "throttling_data": {"periods": cpu.get("periods", 0), "throttled_periods": cpu.get("throttled_periods", 0),
                            "throttled_time": cpu.get("throttled_ns", 0)}}
    if cpu.get("percpu_ns"):
        cpu_stats["cpu_usage"]["percpu_usage"] = cpu["percpu_ns"]
    memory_stats = {}
    if mem:
        memory_stats = {"usage": mem.get("usage", 0), "stats": mem.get("stats", {}),
                        "limit": mem.get("limit") or host_memory()}
        if mem.get("max_usage"):
            memory_stats["max_usage"] = mem["max_usage"]
        if "failcnt" in mem:
            memory_stats["failcnt"] = mem["failcnt"]
    pids_stats = {"current": pids.get("current", 0)} if pids else {}
    if pids.get("limit"):
        pids_stats["limit"] = pids["limit"]
    return {
        "read": now_rfc3339(), "preread": pre["read"] if pre else ZERO_TIME, "id": cid, "name": "/" + name,
        "num_procs": 0, "pids_stats": pids_stats,
        "blkio_stats": {"io_service_bytes_recursive": raw.get("blkio") or None, "io_serviced_recursive": None,
                        "io_queue_recursive": None, "io_service_time_recursive": None,
                        "io_wait_time_recursive": None, "io_merged_recursive": None,
                        "io_time_recursive": None, "sectors_recursive": None},
        "cpu_stats": cpu_stats, "precpu_stats": pre["cpu_stats"] if pre else empty_cpu(),
        "memory_stats": memory_stats,
    }
