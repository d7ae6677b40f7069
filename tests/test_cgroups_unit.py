"""The cgroups chapter's logic without a kernel: limits validation, unit conversions, and both
drivers on a *fake cgroupfs* (a plain directory tree standing in for /sys/fs/cgroup)."""
from __future__ import annotations

import argparse
import os

import pytest

from minidocker import cgroups
from minidocker.cgroups import driver, limits
from minidocker.cgroups.cpu import shares_to_weight
from minidocker.cgroups.io import blkio_to_io_weight
from minidocker.cgroups.stats import docker_stats
from minidocker.cgroups.v1 import V1Cgroup
from minidocker.cgroups.v2 import V2Cgroup
from minidocker.cli.cgroups import cpu_percent, host_config, memory_usage, nano_cpus, ram_in_bytes

ALL = {k: True for k in ("memory", "swap", "cpu_quota", "cpu_shares", "cpuset", "pids", "blkio_weight")}
HYBRID = """31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""


def parse(host, support=ALL, cpus=frozenset({0, 1}), swap=True):
    return limits.parse_host_config(host, support=support, cpus=set(cpus), swap=swap)


# ---- detection -----------------------------------------------------------------------------------
def test_detect_hybrid_v1_and_v2(tmp_path):
    mi = tmp_path / "mountinfo"
    mi.write_text(HYBRID)
    lay = cgroups.detect(str(mi))
    assert lay.mode == "hybrid" and lay.unified == "/sys/fs/cgroup/unified"
    assert lay.v1["cpu"] == lay.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert "systemd" not in lay.v1 and "name=systemd" not in lay.v1
    mi.write_text("\n".join(l for l in HYBRID.splitlines() if "cgroup2" not in l))
    assert cgroups.detect(str(mi)).mode == "v1"
    mi.write_text("41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n")
    assert cgroups.detect(str(mi)) == cgroups.Layout("v2", {}, "/sys/fs/cgroup")
    mi.write_text("1 0 0:1 / / rw - ext4 /dev/vda rw\n")
    with pytest.raises(OSError, match="no cgroup filesystem"):
        cgroups.detect(str(mi))


# ---- limits ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("host, message", [
    ({"Memory": -1}, "must not be negative"),
    ({"Memory": 1 << 20}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": 64 << 20, "MemorySwap": 32 << 20}, "larger than memory limit"),
    ({"MemorySwap": 64 << 20}, "always set the Memory limit"),
    ({"NanoCpus": 3 * 10**9}, "only 2 CPUs available"),
    ({"NanoCpus": -5}, "must not be negative"),
    ({"NanoCpus": 10**9, "CpuQuota": 50000}, "Conflicting options"),
    ({"CpuQuota": 500}, "less than 1ms"),
    ({"CpuPeriod": 2_000_000}, "larger than 1s"),
    ({"CpuShares": -2}, "must not be negative"),
    ({"CpusetCpus": "0-3"}, "Requested CPUs are not available - requested 0-3, available: 0,1"),
    ({"CpusetCpus": "x"}, "Invalid value x for cpuset cpus"),
    ({"BlkioWeight": 5}, "from 10 to 1000"),
    ({"PidsLimit": -7}, "unlimited"),
    ({"Memory": "64m"}, "not an integer"),
])
def test_invalid_limits_are_refused_with_a_clear_message(host, message):
    with pytest.raises(limits.LimitError, match=message.replace("(", r"\(")):
        parse(host)


def test_docker_units_become_kernel_units():
    lim, warnings = parse({"Memory": 64 << 20, "NanoCpus": 1_500_000_000, "CpuShares": 512,
                           "CpusetCpus": "1", "PidsLimit": 20, "BlkioWeight": 300})
    assert warnings == []
    assert (lim.memory, lim.cpu_quota, lim.cpu_period) == (64 << 20, 150000, 100000)
    assert (lim.cpu_shares, lim.cpuset_cpus, lim.pids_limit, lim.blkio_weight) == (512, "1", 20, 300)
    assert parse({"PidsLimit": -1})[0].pids_limit == 0        # -1 = unlimited
    assert parse({"CpuShares": 1})[0].cpu_shares == 2          # clamped, with a warning
    assert "out of range" in parse({"CpuShares": 1})[1][0]


def test_limits_the_host_cannot_enforce_are_warnings_and_dropped():
    lim, warnings = parse({"Memory": 64 << 20, "MemorySwap": 128 << 20, "BlkioWeight": 300, "PidsLimit": 5},
                          support=dict(ALL, blkio_weight=False, pids=False), swap=False)
    assert lim.blkio_weight == 0 and lim.pids_limit == 0 and lim.memory == 64 << 20
    text = "\n".join(warnings)
    assert "Block I/O weight" in text and "PIDs limit" in text and "no swap" in text
    lim, warnings = parse({"Memory": 64 << 20}, support=dict(ALL, memory=False))
    assert lim.memory == 0 and "memory limit" in warnings[0]


def test_conversions_as_runc_does():
    assert [shares_to_weight(s) for s in (0, 2, 1024, 262144)] == [0, 1, 39, 10000]
    assert [blkio_to_io_weight(w) for w in (10, 500, 1000)] == [1, 4950, 10000]
    assert limits.parse_cpu_list("0-2,5") == {0, 1, 2, 5}


def test_cli_units():
    assert ram_in_bytes("64m") == 64 << 20 and ram_in_bytes("1.5g") == 3 << 29
    assert ram_in_bytes("512k") == 512 << 10 and ram_in_bytes("100") == 100 and ram_in_bytes("2MB") == 2 << 20
    assert ram_in_bytes("-1") == -1
    with pytest.raises(argparse.ArgumentTypeError, match="invalid size"):
        ram_in_bytes("lots")
    assert nano_cpus("0.2") == 200_000_000
    ns = argparse.Namespace(memory=1, memory_swap=None, cpus=None, cpu_shares=None, cpu_period=None,
                            cpu_quota=None, cpuset_cpus="0", pids_limit=3, blkio_weight=None, cgroup_parent=None)
    assert host_config(ns) == {"Memory": 1, "CpusetCpus": "0", "PidsLimit": 3}


# ---- drivers on a fake cgroupfs ------------------------------------------------------------------------
@pytest.fixture
def fake(tmp_path):
    root = str(tmp_path)
    driver.FAKE_ROOTS.append(root)
    yield root
    driver.FAKE_ROOTS.remove(root)


def test_v1_driver_writes_each_hierarchy(fake):
    mounts = {c: os.path.join(fake, c) for c in ("memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "freezer")}
    for m in mounts.values():
        os.makedirs(m)
    with open(os.path.join(mounts["cpuset"], "cpuset.cpus"), "w") as f:
        f.write("0-1\n")
    with open(os.path.join(mounts["cpuset"], "cpuset.mems"), "w") as f:
        f.write("0\n")
    open(os.path.join(mounts["memory"], "memory.memsw.limit_in_bytes"), "w").close()
    cg = V1Cgroup(cgroups.Layout("v1", mounts, None), "/minidocker/c1")
    cg.create()
    # The memsw file only "exists" in the child on a real kernel; create it in the fake one.
    open(os.path.join(mounts["memory"], "minidocker/c1/memory.memsw.limit_in_bytes"), "w").close()
    lim, _ = parse({"Memory": 32 << 20, "NanoCpus": 500_000_000, "CpuShares": 512, "PidsLimit": 20,
                    "CpusetCpus": "1"})
    cg.apply(lim)
    cg.add(4242)
    rd = lambda c, n: driver.read(os.path.join(mounts[c], "minidocker/c1"), n)  # noqa: E731
    assert rd("memory", "memory.limit_in_bytes") == str(32 << 20)
    assert rd("memory", "memory.memsw.limit_in_bytes") == str(64 << 20)   # docker's default: 2 x memory
    assert (rd("cpu", "cpu.cfs_quota_us"), rd("cpu", "cpu.cfs_period_us"), rd("cpu", "cpu.shares")) == ("50000", "100000", "512")
    assert rd("pids", "pids.max") == "20"
    assert rd("cpuset", "cpuset.cpus") == "1" and rd("cpuset", "cpuset.mems") == "0"
    assert driver.read(os.path.join(mounts["cpuset"], "minidocker"), "cpuset.cpus") == "0-1"  # parent initialised
    assert all(rd(c, "cgroup.procs") == "4242" for c in mounts)
    with open(os.path.join(mounts["memory"], "minidocker/c1/memory.oom_control"), "w") as f:
        f.write("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    assert cg.oom_kills() == 1


def test_v2_driver_enables_controllers_down_the_tree(fake):
    with open(os.path.join(fake, "cgroup.controllers"), "w") as f:
        f.write("cpu io memory pids hugetlb\n")
    cg = V2Cgroup(fake, "/minidocker/c2")
    cg.create()
    # One write per controller (the fake file keeps the last; the kernel accumulates them).
    assert driver.RECORDING is not None
    driver.RECORDING.writes = writes = []
    V2Cgroup(fake, "/minidocker/c2b").create()
    driver.RECORDING.writes = None
    assert [v for p, v in writes if p == os.path.join(fake, "cgroup.subtree_control")] == \
           ["+cpu", "+memory", "+pids", "+io"]
    for d in (os.path.join(fake, "minidocker"), cg.dir):
        with open(os.path.join(d, "cgroup.controllers"), "w") as f:
            f.write("cpu io memory pids\n")
    open(os.path.join(cg.dir, "memory.swap.max"), "w").close()
    open(os.path.join(cg.dir, "io.weight"), "w").close()
    lim, _ = parse({"Memory": 32 << 20, "MemorySwap": -1, "NanoCpus": 200_000_000, "CpuShares": 1024,
                    "PidsLimit": 20, "BlkioWeight": 500, "CpusetCpus": "0"})
    missing = cg.apply(lim)
    assert missing == ["the cpuset controller is not available in " + cg.dir + ": cpuset discarded"]
    rd = lambda n: driver.read(cg.dir, n)  # noqa: E731
    assert (rd("memory.max"), rd("memory.swap.max"), rd("cpu.max"), rd("cpu.weight")) == \
           (str(32 << 20), "max", "20000 100000", "39")
    assert (rd("pids.max"), rd("io.weight")) == ("20", "default 4950")
    with open(os.path.join(cg.dir, "memory.events"), "w") as f:
        f.write("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
    assert cg.oom_kills() == 1
    with open(os.path.join(cg.dir, "cpu.stat"), "w") as f:
        f.write("usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 10\nnr_throttled 4\nthrottled_usec 900\n")
    with open(os.path.join(cg.dir, "memory.current"), "w") as f:
        f.write("1048576\n")
    st = cg.stats()
    assert st["cpu"]["usage_ns"] == 2_000_000 and st["cpu"]["throttled_periods"] == 4
    assert st["memory"]["usage"] == 1 << 20 and st["memory"]["limit"] == 32 << 20


def test_v2_driver_without_controllers_says_what_it_dropped(fake):
    cg = V2Cgroup(fake, "/minidocker/c3")
    cg.create()
    missing = cg.apply(parse({"Memory": 32 << 20, "PidsLimit": 5})[0])
    assert [m.split()[1] for m in missing] == ["memory", "pids"]


def test_docker_stats_shape_and_cli_columns():
    raw = {"memory": {"usage": 10 << 20, "max_usage": 12 << 20, "limit": 32 << 20,
                      "stats": {"total_inactive_file": 2 << 20}},
           "cpu": {"usage_ns": 5 * 10**8, "user_ns": 0, "system_ns": 0, "periods": 3, "throttled_periods": 2,
                   "throttled_ns": 7, "percpu_ns": [1, 2]},
           "pids": {"current": 3, "limit": 20}, "blkio": []}
    first = docker_stats(raw, cid="c" * 64, name="web")
    second = docker_stats(dict(raw, cpu=dict(raw["cpu"], usage_ns=6 * 10**8)), cid="c" * 64, name="web", pre=first)
    for key in ("read", "preread", "pids_stats", "blkio_stats", "cpu_stats", "precpu_stats", "memory_stats"):
        assert key in second
    assert second["precpu_stats"] == first["cpu_stats"] and second["name"] == "/web"
    assert second["cpu_stats"]["throttling_data"]["throttled_periods"] == 2
    assert second["pids_stats"] == {"current": 3, "limit": 20}
    assert memory_usage(second) == (8 << 20, 32 << 20)
    assert cpu_percent(second) >= 0
    stopped = docker_stats(None, cid="c", name="x")
    assert stopped["read"].startswith("0001") and stopped["memory_stats"] == {}
