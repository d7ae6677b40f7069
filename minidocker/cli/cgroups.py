"""CLI of the cgroups chapter: docker's resource flags, ``pause``/``unpause`` and ``stats``.

Standard library only (the CLI's rule). Units are docker's (go-units ``RAMInBytes``): ``64m``,
``1g``, ``1.5g``, ``512k``, a plain number is bytes, suffixes are binary (1k = 1024).
``--cpus 1.5`` becomes ``NanoCpus`` = 1.5e9, which the daemon turns into a quota per 100 ms period.
"""
from __future__ import annotations

import argparse
import re
import sys
import threading
import time

UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)b?$", re.IGNORECASE)


def ram_in_bytes(text: str) -> int:
    """``64m`` -> 67108864. ``-1`` is kept (unlimited, for --memory-swap)."""
    s = str(text).strip()
    if s == "-1":
        return -1
    m = SIZE_RE.match(s)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid size: '{text}' (use a number with an optional unit "
                                         "b, k, m, g: 64m, 1.5g)")
    return int(float(m.group(1)) * UNITS[m.group(2).lower()])


def nano_cpus(text: str) -> int:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid argument \"{text}\" for \"--cpus\" flag: failed to parse "
                                         f"{text} as a rational number") from None
    return int(round(v * 1e9))


def limit_opts(p) -> None:
    g = p.add_argument_group("resources (cgroups)")
    g.add_argument("-m", "--memory", type=ram_in_bytes, help="memory limit (64m, 1g)")
    g.add_argument("--memory-swap", type=ram_in_bytes, help="memory + swap limit; -1 = unlimited swap")
    g.add_argument("--cpus", type=nano_cpus, help="number of CPUs (1.5 = 150 ms per 100 ms)")
    g.add_argument("-c", "--cpu-shares", type=int, help="relative CPU weight (v1 shares; 1024 = default)")
    g.add_argument("--cpu-period", type=int, help="CFS period in µs")
    g.add_argument("--cpu-quota", type=int, help="CFS quota in µs per period")
    g.add_argument("--cpuset-cpus", help="CPUs allowed (0-2,4)")
    g.add_argument("--pids-limit", type=int, help="maximum number of processes (-1 = unlimited)")
    g.add_argument("--blkio-weight", type=int, help="block I/O weight (10..1000)")
    g.add_argument("--cgroup-parent", help="parent cgroup of the container's cgroup")


def host_config(a) -> dict:
    """The flags given -> docker's HostConfig fields (absent flags are not sent)."""
    pairs = (("Memory", "memory"), ("MemorySwap", "memory_swap"), ("NanoCpus", "cpus"),
             ("CpuShares", "cpu_shares"), ("CpuPeriod", "cpu_period"), ("CpuQuota", "cpu_quota"),
             ("CpusetCpus", "cpuset_cpus"), ("PidsLimit", "pids_limit"), ("BlkioWeight", "blkio_weight"),
             ("CgroupParent", "cgroup_parent"))
    return {key: getattr(a, attr) for key, attr in pairs if getattr(a, attr, None) is not None}


# ---- pause, unpause -----------------------------------------------------------------------------
def cmd_pause(c, a):
    from .containers import for_each
    return for_each(c, a.containers, "POST", "/containers/{}/" + a.verb)


# ---- stats --------------------------------------------------------------------------------------
def cpu_percent(s: dict) -> float:
    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get("total_usage", 0)
    sysdelta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or []) or 1
    return delta / sysdelta * online * 100.0 if delta > 0 and sysdelta > 0 else 0.0


def memory_usage(s: dict) -> tuple[int, int]:
    """Usage minus the inactive file cache, as docker's CLI computes it (v1 and v2 key names)."""
    m = s.get("memory_stats") or {}
    usage, st = m.get("usage", 0), m.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        if key in st and st[key] < usage:
            usage -= st[key]
            break
    return usage, m.get("limit", 0)


def row(s: dict, name: str, no_trunc: bool, container: str = ""):
    """One container's sample as docker's ``stats --format`` sees it ({{.Name}}, {{.CPUPerc}}...)."""
    from ..units import bytes_size as human, human_size
    from .gotemplate import Row
    usage, limit = memory_usage(s)
    blk = (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    rd = sum(e["value"] for e in blk if e.get("op", "").lower() == "read")
    wr = sum(e["value"] for e in blk if e.get("op", "").lower() == "write")
    nets = (s.get("networks") or {}).values()
    rx, tx = sum(n.get("rx_bytes", 0) for n in nets), sum(n.get("tx_bytes", 0) for n in nets)
    cid = s.get("id", "")
    return Row({"BlockIO": f"{human_size(rd)} / {human_size(wr)}", "CPUPerc": f"{cpu_percent(s):.2f}%",
                "Container": container or name, "ID": cid if no_trunc else cid[:12],
                "MemPerc": f"{(usage / limit * 100 if limit else 0):.2f}%",
                "MemUsage": f"{human(usage)} / {human(limit)}", "Name": name,
                "NetIO": f"{human_size(rx)} / {human_size(tx)}",
                "PIDs": str((s.get("pids_stats") or {}).get("current", 0))})


STATS_TABLE = ("{{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}"
               "\t{{.PIDs}}")
STATS_HEADERS = {"Container": "CONTAINER", "Name": "NAME", "ID": "CONTAINER ID", "CPUPerc": "CPU %",
                 "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
                 "PIDs": "PIDS"}


def cmd_stats(c, a):
    from .client import APIError, Client
    from .gotemplate import Template
    from .output import listing
    fmt = a.format or "table"
    Template(fmt[len("table"):] if fmt.startswith("table") else fmt)  # a bad template fails before any request
    refs = a.containers
    if not refs:
        refs = [it["Id"] for it in c.request("GET", "/containers/json", query={"all": a.all or None}).check().json()]
    names, given = {}, {}
    for ref in refs:
        info = c.request("GET", f"/containers/{ref}/json").check().json()
        names[info["Id"]] = info["Name"].lstrip("/")
        given[info["Id"]] = ref
    ids = list(names)

    def screen(latest) -> str:
        rows = [row(latest[cid], names[cid], a.no_trunc, given[cid]) for cid in ids if cid in latest]
        return listing(fmt, rows, STATS_HEADERS, STATS_TABLE)

    if a.no_stream:
        latest = {}

        def one(cid):
            try:
                latest[cid] = Client(c.host).request("GET", f"/containers/{cid}/stats", query={"stream": 0}).check().json()
            except APIError as e:
                print(f"Error response from daemon: {e}", file=sys.stderr)

        threads = [threading.Thread(target=one, args=(cid,)) for cid in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sys.stdout.write(screen(latest))
        return 0 if len(latest) == len(ids) else 1
    from .signals import exit_on_interrupt
    exit_on_interrupt()  # Ctrl-C: exit 130 at once, as docker does
    latest = {}

    def follow(cid):
        try:
            for s in Client(c.host).stream("GET", f"/containers/{cid}/stats", query={"stream": 1}):
                latest[cid] = s
        except (APIError, OSError):
            pass

    for cid in ids:
        threading.Thread(target=follow, args=(cid,), daemon=True).start()
    while True:
        time.sleep(1.0)
        sys.stdout.write("\033[2J\033[H" + screen(latest))
        sys.stdout.flush()


def add_pause(sub, verb: str) -> None:
    """pause and unpause."""
    helptext = {"pause": "freeze all processes of containers", "unpause": "thaw all processes of containers"}
    x = sub.add_parser(verb, help=helptext[verb])
    x.add_argument("containers", nargs="+")
    x.set_defaults(fn=cmd_pause)


def add_stats(sub, verb: str) -> None:
    st = sub.add_parser(verb, help="live resource usage of containers (from their cgroups)")
    st.add_argument("-a", "--all", action="store_true")
    st.add_argument("--no-stream", action="store_true", help="print one sample and exit")
    st.add_argument("--no-trunc", action="store_true")
    st.add_argument("--format", help="Go template ({{.Name}} {{.CPUPerc}}), `table ...` or json")
    st.add_argument("containers", nargs="*")
    st.set_defaults(fn=cmd_stats)
