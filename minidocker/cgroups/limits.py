"""Docker's resource options -> one :class:`Limits` record, validated against this host.

What this teaches
-----------------
``docker run -m 64m --cpus 1.5 --pids-limit 20`` reaches the daemon as HostConfig fields in plain
units (Memory in bytes, NanoCpus in 1e-9 CPUs, PidsLimit…). The daemon checks them *before*
anything is created, the way moby's ``verifyPlatformContainerResources`` does: values the kernel
would refuse are errors (negative, a memory limit under 6 MB, a quota under 1 ms, a CPU the host
lacks); limits the host cannot enforce (no swap, a controller that is not mounted) are *warnings*
returned in the create response and then dropped — never silently ignored.
"""
from __future__ import annotations

import os

from ..record import Record

MIN_MEMORY = 6 * 1024 * 1024          # moby's linuxMinMemory
MIN_CPU_QUOTA = 1000                  # 1 ms: the kernel's min_cfs_quota_period
MAX_CPU_PERIOD = 1_000_000            # 1 s
DEFAULT_CPU_PERIOD = 100_000          # 100 ms, what --cpus uses
MIN_SHARES, MAX_SHARES = 2, 262144    # the v1 kernel clamps to these


class LimitError(ValueError):
    """A resource option the kernel would refuse; the message names the option."""


class Limits(Record):
    """memory: bytes, 0 = unlimited; memory_swap: memory + swap, bytes, 0 = default (2 x memory),
    -1 = unlimited swap; cpu_quota: µs per period, 0 = unlimited; cpu_period: µs; cpu_shares: v1
    shares (1024 = default), 0 = default; cpuset_cpus: "0-1,3"; pids_limit: 0 = unlimited;
    blkio_weight: 10..1000, 0 = default."""
    _fields = ("memory", "memory_swap", "cpu_quota", "cpu_period", "cpu_shares", "cpuset_cpus",
               "pids_limit", "blkio_weight")

    def __init__(self, memory: int = 0, memory_swap: int = 0, cpu_quota: int = 0, cpu_period: int = 0,
                 cpu_shares: int = 0, cpuset_cpus: str = "", pids_limit: int = 0, blkio_weight: int = 0):
        self.memory, self.memory_swap = memory, memory_swap
        self.cpu_quota, self.cpu_period, self.cpu_shares, self.cpuset_cpus = cpu_quota, cpu_period, cpu_shares, cpuset_cpus
        self.pids_limit, self.blkio_weight = pids_limit, blkio_weight

    def to_dict(self) -> dict:
        return self.as_dict()

    @classmethod
    def from_dict(cls, d: dict | None) -> "Limits":
        d = d or {}
        return cls(**{k: v for k, v in d.items() if k in cls._fields})

    def any(self) -> bool:
        return any(self._values())

    # OCI runtime-spec ``linux.resources`` (config-linux.md "Control groups"): the runtime's input.
    # Same units as Docker's (bytes, µs, shares); OCI's memory.swap is memory+swap, as Docker's
    # MemorySwap; a pids limit of 0 or absent is "no limit" in both.
    def to_oci(self) -> dict:
        """-> ``linux.resources`` without ``devices`` (the security chapter adds those)."""
        res: dict = {}
        mem = {k: v for k, v in (("limit", self.memory), ("swap", self.memory_swap)) if v}
        cpu = {k: v for k, v in (("quota", self.cpu_quota), ("period", self.cpu_period),
                                 ("shares", self.cpu_shares), ("cpus", self.cpuset_cpus)) if v}
        if mem:
            res["memory"] = mem
        if cpu:
            res["cpu"] = cpu
        if self.pids_limit:
            res["pids"] = {"limit": self.pids_limit}
        if self.blkio_weight:
            res["blockIO"] = {"weight": self.blkio_weight}
        return res

    @classmethod
    def from_oci(cls, res: dict | None) -> "Limits":
        """``linux.resources`` -> Limits (fields this chapter does not drive are ignored here; the
        runtime refuses what it cannot apply)."""
        res = res or {}
        mem, cpu = res.get("memory") or {}, res.get("cpu") or {}
        pids = (res.get("pids") or {}).get("limit") or 0
        return cls(memory=int(mem.get("limit") or 0), memory_swap=int(mem.get("swap") or 0),
                   cpu_quota=max(int(cpu.get("quota") or 0), 0), cpu_period=int(cpu.get("period") or 0),
                   cpu_shares=int(cpu.get("shares") or 0), cpuset_cpus=str(cpu.get("cpus") or ""),
                   pids_limit=int(pids) if pids > 0 else 0,
                   blkio_weight=int((res.get("blockIO") or {}).get("weight") or 0))


def parse_cpu_list(text: str) -> set[int]:
    """cpuset syntax: "0-2,5" -> {0, 1, 2, 5} (cpuset(7) "List format")."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ValueError("empty element")
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(part)
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ValueError(part)
        cpus.update(range(a, b + 1))
    return cpus


def online_cpus() -> set[int]:
    try:
        with open("/sys/devices/system/cpu/online") as f:
            return parse_cpu_list(f.read().strip())
    except (OSError, ValueError):
        return set(range(os.cpu_count() or 1))


def swap_enabled() -> bool:
    try:
        with open("/proc/swaps") as f:
            return len(f.read().strip().splitlines()) > 1
    except OSError:
        return False


def _int(host: dict, key: str) -> int:
    v = host.get(key) or 0
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
        raise LimitError(f"invalid {key}: {v!r} is not an integer")
    return int(v)


def parse_host_config(host: dict, support: dict | None = None, cpus: set[int] | None = None,
                      swap: bool | None = None) -> tuple[Limits, list[str]]:
    """HostConfig -> (Limits, warnings). ``support`` says which limits the host can enforce
    (:func:`host_support`); ``cpus`` and ``swap`` describe the host (read from it when None)."""
    lim = Limits()
    warnings: list[str] = []
    memory, swap_total = _int(host, "Memory"), _int(host, "MemorySwap")
    nano, quota, period = _int(host, "NanoCpus"), _int(host, "CpuQuota"), _int(host, "CpuPeriod")
    shares, pids, weight = _int(host, "CpuShares"), _int(host, "PidsLimit"), _int(host, "BlkioWeight")
    cpuset = host.get("CpusetCpus") or ""
    cpus = online_cpus() if cpus is None else cpus

    # Errors: what the kernel (or docker) refuses.
    if memory < 0:
        raise LimitError(f"invalid memory limit {memory}: it must not be negative")
    if 0 < memory < MIN_MEMORY:
        raise LimitError("Minimum memory limit allowed is 6MB")
    if swap_total < -1:
        raise LimitError(f"invalid memory-swap limit {swap_total}: use -1 for unlimited swap")
    if swap_total > 0 and memory == 0:
        raise LimitError("You should always set the Memory limit when using Memoryswap limit, see usage")
    if swap_total > 0 and swap_total < memory:
        raise LimitError("Minimum memoryswap limit should be larger than memory limit, see usage")
    if nano < 0:
        raise LimitError(f"invalid CPU count {nano / 1e9:g}: it must not be negative")
    if nano and (quota or period):
        raise LimitError("Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set")
    if nano and nano > len(cpus) * 10**9:
        raise LimitError(f"Range of CPUs is from 0.01 to {len(cpus)}.00, as there are only {len(cpus)} CPUs available")
    if nano and nano < 10**7:
        raise LimitError("Range of CPUs is from 0.01 to "
                         f"{len(cpus)}.00, as there are only {len(cpus)} CPUs available")
    if quota < 0 and quota != -1:
        raise LimitError(f"invalid CPU quota {quota}: it must not be negative")
    if 0 < quota < MIN_CPU_QUOTA:
        raise LimitError("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if period < 0 or (period and not MIN_CPU_QUOTA <= period <= MAX_CPU_PERIOD):
        raise LimitError("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    if shares < 0:
        raise LimitError(f"invalid CPU shares {shares}: it must not be negative")
    if weight and not 10 <= weight <= 1000:
        raise LimitError("Range of blkio weight is from 10 to 1000")
    if pids < -1:
        raise LimitError(f"invalid pids limit {pids}: use -1 or 0 for unlimited")
    if cpuset:
        try:
            wanted = parse_cpu_list(cpuset)
        except ValueError:
            raise LimitError(f"Invalid value {cpuset} for cpuset cpus") from None
        if not wanted <= cpus:
            avail = ",".join(str(c) for c in sorted(cpus))
            raise LimitError(f"Requested CPUs are not available - requested {cpuset}, available: {avail}")

    lim.memory = memory
    lim.memory_swap = swap_total
    if nano:
        lim.cpu_period, lim.cpu_quota = DEFAULT_CPU_PERIOD, nano * DEFAULT_CPU_PERIOD // 10**9
    else:
        lim.cpu_quota, lim.cpu_period = max(quota, 0), period
    if shares:
        clamped = min(max(shares, MIN_SHARES), MAX_SHARES)
        if clamped != shares:
            warnings.append(f"CPU shares {shares} out of range, set to {clamped} (the kernel's range is "
                            f"{MIN_SHARES}-{MAX_SHARES})")
        lim.cpu_shares = clamped
    lim.cpuset_cpus = cpuset
    lim.pids_limit = pids if pids > 0 else 0
    lim.blkio_weight = weight

    # Warnings: what this host cannot enforce. The limit is dropped, and the user is told (moby's
    # wording, so that scripts matching docker's warnings keep working).
    support = host_support() if support is None else support
    swap = swap_enabled() if swap is None else swap
    checks = [
        ("memory", lim.memory, "Your kernel does not support memory limit capabilities or the cgroup is "
                               "not mounted. Limitation discarded.", ("memory", "memory_swap")),
        ("swap", lim.memory and lim.memory_swap, "Your kernel does not support swap limit capabilities or "
                                                 "the cgroup is not mounted. Memory limited without swap.",
         ("memory_swap",)),
        ("cpu_quota", lim.cpu_quota or lim.cpu_period, "Your kernel does not support CPU CFS scheduler. "
                                                       "CPU quota and period discarded.", ("cpu_quota", "cpu_period")),
        ("cpu_shares", lim.cpu_shares, "Your kernel does not support CPU shares or the cgroup is not "
                                       "mounted. Shares discarded.", ("cpu_shares",)),
        ("cpuset", lim.cpuset_cpus, "Your kernel does not support cpuset or the cgroup is not mounted. "
                                    "Cpuset discarded.", ("cpuset_cpus",)),
        ("pids", lim.pids_limit, "Your kernel does not support PIDs limit capabilities or the cgroup is "
                                 "not mounted. PIDs limit discarded.", ("pids_limit",)),
        ("blkio_weight", lim.blkio_weight, "Your kernel does not support Block I/O weight or the cgroup is "
                                           "not mounted. Weight discarded.", ("blkio_weight",)),
    ]
    for feature, wanted, message, fields in checks:
        if wanted and not support.get(feature):
            warnings.append(message)
            for f in fields:
                setattr(lim, f, "" if f == "cpuset_cpus" else 0)
    if lim.memory and lim.memory_swap > lim.memory and not swap:
        warnings.append("The host has no swap enabled (see /proc/swaps): --memory-swap cannot give the "
                        "container more than --memory.")
    return lim, warnings


def host_support(layout=None) -> dict[str, bool]:
    """Which limits this host's cgroups can enforce, read from the hierarchy roots."""
    from . import Layout, detect
    try:
        layout = layout or detect()
    except OSError:
        return {}
    if layout.mode == "v2":
        ctl = layout.controllers()
        return {"memory": "memory" in ctl, "swap": "memory" in ctl, "cpu_quota": "cpu" in ctl,
                "cpu_shares": "cpu" in ctl, "cpuset": "cpuset" in ctl, "pids": "pids" in ctl,
                "blkio_weight": "io" in ctl, "freezer": True}  # cgroup.freeze is core, not a controller
    v1 = layout.v1

    def has(ctl, *names):
        return ctl in v1 and any(os.path.exists(os.path.join(v1[ctl], n)) for n in names)

    assert isinstance(layout, Layout)
    return {"memory": "memory" in v1, "swap": has("memory", "memory.memsw.limit_in_bytes"),
            "cpu_quota": has("cpu", "cpu.cfs_quota_us"), "cpu_shares": has("cpu", "cpu.shares"),
            "cpuset": "cpuset" in v1, "pids": "pids" in v1,
            "blkio_weight": has("blkio", "blkio.weight", "blkio.bfq.weight"), "freezer": "freezer" in v1}
