"""Runs *inside* the qemu guest (pure cgroup v2): the same limit checks as on the v1 host, through
the same code the container monitor uses (``runtime.resources``). Prints one JSON line.

Each workload is a busybox shell that waits on its stdin before it execs the real command — like a
container's pid 1 waiting before exec — so it is in its cgroup before the workload runs.
"""
import json
import os
import subprocess
import sys
import time
import traceback

sys.path.insert(0, sys.argv[1])

from minidocker import cgroups  # noqa: E402
from minidocker.cgroups.cpu import shares_to_weight  # noqa: E402
from minidocker.cgroups.driver import read, read_keyed  # noqa: E402
from minidocker.runtime import resources  # noqa: E402
from minidocker.runtime.config import ContainerConfig  # noqa: E402

PARENT = "minidocker-v2test"
results = {}


def cfg(name, host):
    lim, warnings = cgroups.parse_host_config(host)
    c = ContainerConfig(id=name, name=name, image_id="", image_ref="", argv=[], env=[],
                        resources=lim.to_dict(), cgroup_parent=PARENT)
    return c, warnings


def start(c, script):
    p = subprocess.Popen(["/bin/busybox", "sh", "-c", f"read go; exec /bin/busybox sh -c '{script}'"],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resources.setup(c, p.pid)
    p.stdin.write(b"go\n")
    p.stdin.close()
    return p


def cgdir(c):
    return os.path.join("/sys/fs/cgroup", PARENT, c.id)


def check(name):
    def deco(fn):
        try:
            results[name] = {"ok": True, **fn()}
        except Exception as e:
            results[name] = {"ok": False, "error": f"{e}", "trace": traceback.format_exc()[-1500:]}
        return fn
    return deco


@check("layout")
def _():
    layout = cgroups.detect()
    return {"mode": layout.mode, "controllers": sorted(layout.controllers()),
            "support": cgroups.limits.host_support(layout)}


@check("oom")
def _():
    c, warnings = cfg("oom", {"Memory": 32 << 20})
    p = start(c, "x=a; while true; do x=$x$x; done")
    code = p.wait(60)
    d = cgdir(c)
    peak, events, limit = read(d, "memory.peak"), read_keyed(d, "memory.events"), read(d, "memory.max")
    oom = resources.finish(c)
    return {"returncode": code, "oom_killed": oom, "memory.max": limit, "memory.peak": int(peak or 0),
            "memory.events": events, "warnings": warnings, "removed": not os.path.exists(d)}


@check("pids")
def _():
    c, warnings = cfg("pids", {"PidsLimit": 20})
    p = start(c, "f(){ f|f & }; f; sleep 4")
    time.sleep(3)
    d = cgdir(c)
    out = {"pids.max": read(d, "pids.max"), "pids.current": int(read(d, "pids.current")),
           "pids.events": read_keyed(d, "pids.events"), "warnings": warnings}
    resources.kill_tree(c)
    p.wait(30)
    resources.finish(c)
    out["removed"] = not os.path.exists(d)
    return out


@check("cpu")
def _():
    c, warnings = cfg("cpu", {"NanoCpus": 200_000_000, "CpuShares": 512})
    p = start(c, "while :; do :; done")
    d = cgdir(c)
    u0, t0 = read_keyed(d, "cpu.stat").get("usage_usec", 0), time.monotonic()
    time.sleep(3)
    st, t1 = read_keyed(d, "cpu.stat"), time.monotonic()
    out = {"cpu.max": read(d, "cpu.max"), "cpu.weight": int(read(d, "cpu.weight")),
           "expected_weight": shares_to_weight(512), "nr_throttled": st.get("nr_throttled", 0),
           "share_of_a_core": (st.get("usage_usec", 0) - u0) / 1e6 / (t1 - t0), "warnings": warnings}
    resources.kill_tree(c)
    p.wait(30)
    resources.finish(c)
    return out


@check("freeze")
def _():
    c, warnings = cfg("freeze", {"Memory": 64 << 20})
    p = start(c, "while :; do sleep 0.1; done")
    d = cgdir(c)
    resources.pause(c)
    frozen = read_keyed(d, "cgroup.events").get("frozen")
    stats = resources.stats(c, True)
    resources.unpause(c)
    thawed = read_keyed(d, "cgroup.events").get("frozen")
    resources.kill_tree(c)  # cgroup.kill: the whole tree
    code = p.wait(30)
    resources.finish(c)
    return {"frozen": frozen, "thawed": thawed, "killed_returncode": code,
            "stats_memory_limit": stats["memory_stats"].get("limit"),
            "stats_pids": stats["pids_stats"].get("current"), "removed": not os.path.exists(d)}


@check("cleanup")
def _():
    parent = os.path.join("/sys/fs/cgroup", PARENT)
    left = [x for x in os.listdir(parent) if os.path.isdir(os.path.join(parent, x))] if os.path.isdir(parent) else []
    if os.path.isdir(parent) and not left:
        os.rmdir(parent)
    return {"left": left}


print("MINIDOCKER-V2-RESULTS " + json.dumps(results), flush=True)
