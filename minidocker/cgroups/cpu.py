"""The cpu, cpuacct and cpuset controllers: bandwidth, weight, accounting, placement.

``--cpus 1.5`` is CFS *bandwidth control* (sched-bwc.rst): in every period of 100 ms the group may
run 150 ms of CPU time (summed over CPUs); once spent, its threads are *throttled* until the next
period — visible as ``nr_throttled`` / ``throttled_time`` in cpu.stat.

v1                                    v2
cpu.cfs_quota_us + cpu.cfs_period_us  cpu.max "QUOTA PERIOD" ("max PERIOD" = unlimited)
cpu.shares (2..262144, default 1024)  cpu.weight (1..10000, default 100)
cpuacct.usage (ns)                    cpu.stat usage_usec
cpuset.cpus (+ cpuset.mems!)          cpuset.cpus

Shares become a weight as runc converts them (libcontainer/cgroups/utils.go):
``weight = 1 + (shares - 2) * 9999 / 262142`` — 2 -> 1, 1024 -> 39, 262144 -> 10000.
"""
from __future__ import annotations

from .driver import read, read_int, read_keyed, write


def shares_to_weight(shares: int) -> int:
    return 0 if shares == 0 else 1 + ((shares - 2) * 9999) // 262142


def apply_v1(cpu_dir: str, lim) -> list[str]:
    if lim.cpu_shares:
        write(cpu_dir, "cpu.shares", lim.cpu_shares)
    if lim.cpu_period:
        write(cpu_dir, "cpu.cfs_period_us", lim.cpu_period)
    if lim.cpu_quota:
        write(cpu_dir, "cpu.cfs_quota_us", lim.cpu_quota)
    return []


def apply_cpuset_v1(cpuset_dir: str, parent_dir: str, lim) -> None:
    """A new v1 cpuset group starts with *empty* cpus and mems, and a task cannot join a group with
    no CPUs (ENOSPC): copy the parent's before anything joins, then narrow the CPUs."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not read(cpuset_dir, name):
            write(cpuset_dir, name, read(parent_dir, name))
    if lim is not None and lim.cpuset_cpus:
        write(cpuset_dir, "cpuset.cpus", lim.cpuset_cpus)


def apply_v2(d: str, lim) -> list[str]:
    if lim.cpu_shares:
        write(d, "cpu.weight", shares_to_weight(lim.cpu_shares))
    if lim.cpu_quota or lim.cpu_period:
        quota = lim.cpu_quota or "max"
        write(d, "cpu.max", f"{quota} {lim.cpu_period or 100000}")
    if lim.cpuset_cpus:
        write(d, "cpuset.cpus", lim.cpuset_cpus)
    return []


def stats_v1(cpu_dir: str, cpuacct_dir: str) -> dict:
    stat = read_keyed(cpu_dir, "cpu.stat")
    acct = read_keyed(cpuacct_dir, "cpuacct.stat")  # in USER_HZ ticks
    tick_ns = 10**9 // 100
    percpu = [int(x) for x in read(cpuacct_dir, "cpuacct.usage_percpu").split()]
    return {"usage_ns": read_int(cpuacct_dir, "cpuacct.usage"), "percpu_ns": percpu,
            "user_ns": acct.get("user", 0) * tick_ns, "system_ns": acct.get("system", 0) * tick_ns,
            "periods": stat.get("nr_periods", 0), "throttled_periods": stat.get("nr_throttled", 0),
            "throttled_ns": stat.get("throttled_time", 0)}


def stats_v2(d: str) -> dict:
    stat = read_keyed(d, "cpu.stat")
    return {"usage_ns": stat.get("usage_usec", 0) * 1000, "percpu_ns": [],
            "user_ns": stat.get("user_usec", 0) * 1000, "system_ns": stat.get("system_usec", 0) * 1000,
            "periods": stat.get("nr_periods", 0), "throttled_periods": stat.get("nr_throttled", 0),
            "throttled_ns": stat.get("throttled_usec", 0) * 1000}
