"""Checker for lab 03 (control groups). Runs your functions against fake mountinfo files and the
real kernel (as root): every cgroup and process it creates is removed at the end.

    .venv/bin/python labs/03-cgroups/check.py               # checks labs/03-cgroups/skeleton.py
    .venv/bin/python labs/03-cgroups/check.py --reference   # checks minidocker.cgroups (must pass)
    .venv/bin/python labs/03-cgroups/check.py path/to/mine.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(HERE.parents[1]))

from minidocker import cgroups as ref  # noqa: E402  (helpers: reading the real state, cleaning up)

from minidocker.labs import expect, expect_raises, run_checks  # noqa: E402

REFERENCE = "minidocker.cgroups"
Result = tuple[str, bool, str]

HYBRID = """31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V2 = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
NONE = "22 1 8:1 / / rw,relatime - ext4 /dev/vda1 rw\n"


def _fail(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def _mountinfo(text: str) -> str:
    fd, path = tempfile.mkstemp(prefix="lab03-mountinfo-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def check_detect_fake(m) -> str:
    paths = [_mountinfo(t) for t in (HYBRID, V2, NONE, "\n".join(l for l in HYBRID.splitlines() if "cgroup2" not in l))]
    try:
        lay = m.detect(paths[0])
        expect("mode (hybrid mountinfo)", lay.mode, "hybrid")
        expect("unified (hybrid mountinfo)", lay.unified, "/sys/fs/cgroup/unified")
        expect("v1['cpuacct'] (co-mounted with cpu)", lay.v1.get("cpuacct"), "/sys/fs/cgroup/cpu,cpuacct")
        expect("v1 controllers (name=systemd is a named hierarchy, not a controller)", sorted(lay.v1),
               ["cpu", "cpuacct", "memory", "pids"])
        lay = m.detect(paths[1])
        expect("(mode, unified, v1) for pure v2", (lay.mode, lay.unified, lay.v1), ("v2", "/sys/fs/cgroup", {}))
        expect("mode (only v1 hierarchies)", m.detect(paths[3]).mode, "v1")
        expect_raises("detect(no cgroup mount at all)", lambda: m.detect(paths[2]), OSError)
    finally:
        for p in paths:
            os.unlink(p)
    return "hybrid, v2, v1, none"


def check_detect_real(m) -> str:
    mine, want = m.detect(), ref.detect()
    expect("(mode, v1, unified) of this host", (mine.mode, mine.v1, mine.unified), (want.mode, want.v1, want.unified))
    return f"this host: {want.mode}"


def check_parse_cpu_list(m) -> str:
    for text, want in (("0-2,5", {0, 1, 2, 5}), ("7", {7}), ("0,0-1", {0, 1})):
        got = m.parse_cpu_list(text)
        expect(f"parse_cpu_list({text!r})", got, want)
    for bad in ("", "3-1", "a", "1-"):
        expect_raises(f"parse_cpu_list({bad!r})", lambda: m.parse_cpu_list(bad), ValueError)
    return "ok"


def check_shares_to_weight(m) -> str:
    for shares in (0, 2, 512, 1024, 100000, 262144):
        got, want = m.shares_to_weight(shares), ref.shares_to_weight(shares)
        expect(f"shares_to_weight({shares})", got, want)
    return "1024 -> 39"


def _child(script: str) -> subprocess.Popen:
    return subprocess.Popen(["/bin/busybox", "sh", "-c", script], stdin=subprocess.DEVNULL)


def _cleanup(layout, path: str, proc: subprocess.Popen) -> None:
    try:
        ref.open_cgroup(path, layout).thaw()
    except OSError:
        pass
    proc.kill()
    proc.wait()
    try:
        ref.open_cgroup(path, layout).destroy()
    finally:
        roots = set(layout.v1.values()) | ({layout.unified} if layout.unified else set())
        for root in roots:
            for p in (path, os.path.dirname(path)):
                try:
                    os.rmdir(os.path.join(root, p.strip("/")))
                except OSError:
                    pass


def check_join(m) -> str:
    layout = ref.detect()
    path = f"/minidocker-lab03-{os.getpid()}/join"
    proc = _child("sleep 30")
    try:
        m.join(layout, path, proc.pid)
        with open(f"/proc/{proc.pid}/cgroup") as f:
            lines = [l.strip().split(":", 2) for l in f]
        where = {ctl: p for _, ctls, p in lines for ctl in (ctls.split(",") if ctls else [""])}
        wanted = [c for c in ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer") if c in layout.v1]
        if layout.unified:
            wanted.append("")
        wrong = {c or "v2": where.get(c) for c in wanted if where.get(c) != path}
        _fail(not wrong, f"/proc/PID/cgroup should show {path} for these, but: {wrong}"
                         + (" (v1 cpuset: a new group has empty cpuset.cpus/mems — copy the parent's)"
                            if "cpuset" in wrong else ""))
        return f"in {path} in {len(wanted)} hierarchies"
    finally:
        _cleanup(layout, path, proc)


def check_set_frozen(m) -> str:
    layout = ref.detect()
    need_freezer = layout.mode == "v2" or "freezer" in layout.v1 or layout.unified
    _fail(need_freezer, "this host has no freezer")
    path = f"/minidocker-lab03-{os.getpid()}/freeze"
    proc = _child("while :; do :; done")
    try:
        ref.join(layout, path, proc.pid)
        cg = ref.open_cgroup(path, layout)
        m.set_frozen(layout, path, True)
        _fail(cg.frozen(), "after set_frozen(True) the group is not frozen (yet?) — wait until it is")
        used = cg.stats()["cpu"]["usage_ns"]
        time.sleep(0.3)
        _fail(cg.stats()["cpu"]["usage_ns"] == used, "a frozen busy loop still got CPU time")
        m.set_frozen(layout, path, False)
        _fail(not cg.frozen(), "after set_frozen(False) the group is still frozen")
        deadline = time.monotonic() + 5
        while cg.stats()["cpu"]["usage_ns"] == used and time.monotonic() < deadline:
            time.sleep(0.05)
        _fail(cg.stats()["cpu"]["usage_ns"] > used, "the thawed loop does not run")
        return "froze and thawed a busy loop"
    finally:
        _cleanup(layout, path, proc)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _limit_file(layout, path: str, controller: str, v1_name: str, v2_name: str) -> str:
    if controller in layout.v1:
        return os.path.join(layout.v1[controller], path.strip("/"), v1_name)
    return os.path.join(layout.unified, path.strip("/"), v2_name)


def check_set_limits_files(m) -> str:
    layout = ref.detect()
    path = f"/minidocker-lab03-{os.getpid()}/limits"
    proc = _child("sleep 30")
    try:
        ref.join(layout, path, proc.pid)
        m.set_limits(layout, path, memory=48 << 20, pids=7)
        mem = _limit_file(layout, path, "memory", "memory.limit_in_bytes", "memory.max")
        pids = _limit_file(layout, path, "pids", "pids.max", "pids.max")
        expect(os.path.basename(mem), _read(mem), str(48 << 20))
        expect(os.path.basename(pids), _read(pids), "7")
        return f"{os.path.basename(mem)} = 48 MiB, pids.max = 7"
    finally:
        _cleanup(layout, path, proc)


def check_set_limits_oom(m) -> str:
    """A shell that doubles a string forever, in a group limited to 16 MiB: the kernel's OOM killer
    must end it with SIGKILL (not swap it out, not let it run)."""
    layout = ref.detect()
    path = f"/minidocker-lab03-{os.getpid()}/oom"
    proc = subprocess.Popen(["/bin/busybox", "sh", "-c", "read go; x=a; while :; do x=$x$x; done"],
                            stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        ref.join(layout, path, proc.pid)
        m.set_limits(layout, path, memory=16 << 20)
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            code = "still running after 20 s (swapping? memsw / memory.swap.max)"
        expect("the memory hog's end (returncode)", code, -9)
        kills = ref.open_cgroup(path, layout).oom_kills()
        _fail(kills >= 1, f"the group's oom_kill count: expected at least 1, got {kills}")
        return f"killed by the OOM killer (oom_kill {kills})"
    finally:
        _cleanup(layout, path, proc)


CHECKS = [("detect (fake mountinfo)", check_detect_fake), ("detect (this host)", check_detect_real),
          ("parse_cpu_list", check_parse_cpu_list), ("shares_to_weight", check_shares_to_weight),
          ("join (real cgroups)", check_join), ("set_frozen (real freezer)", check_set_frozen),
          ("set_limits: the limit files", check_set_limits_files),
          ("set_limits: an OOM kill at 16 MiB", check_set_limits_oom)]


def check(module) -> list[Result]:
    """Every check against ``module``, each in a child of its own with a timeout (minidocker.labs)."""
    return run_checks(CHECKS, module)



def main(argv: list[str]) -> int:
    from minidocker.labs import script_main
    return script_main(argv, check, REFERENCE, HERE / "skeleton.py", 'lab 03 (control groups)', needs_root='it creates real cgroups')


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
