"""The cgroup v2 driver, for real, in a qemu guest with a pure v2 hierarchy (one boot for all).

This host is hybrid (see tests/guest/vm.py for why v2 controllers cannot be had here). The guest
runs tests/guest/cgroup_v2_checks.py through the same ``runtime.resources`` calls the container
monitor makes, and reports what the kernel's files said; each test below asserts one part.
"""
import os

import pytest

# One boot (~1-2 min under software emulation) serves every test of this module.
pytestmark = [pytest.mark.slow, pytest.mark.privileged, pytest.mark.timeout(600)]

from conftest import need, need_root, need_tool


@pytest.fixture(scope="module")
def guest():
    need_root()
    need_tool("qemu-system-x86_64")
    need_tool("apt-get")
    need(os.path.exists("/bin/busybox"), "/bin/busybox (busybox-static)")
    from guest.vm import run_guest
    results, log = run_guest(timeout=540)
    assert results is not None, f"the guest printed no results; console:\n{log[-4000:]}"
    return results


def ok(results, name):
    r = results[name]
    assert r["ok"], f"guest check {name} failed: {r.get('error')}\n{r.get('trace', '')}"
    return r


def test_guest_is_pure_v2_with_controllers(guest):
    r = ok(guest, "layout")
    assert r["mode"] == "v2"
    assert {"memory", "pids", "cpu"} <= set(r["controllers"])
    assert r["support"]["memory"] and r["support"]["pids"] and r["support"]["cpu_quota"]


def test_memory_max_oom_kill(guest):
    r = ok(guest, "oom")
    assert r["memory.max"] == str(32 << 20)
    assert r["returncode"] == -9                       # SIGKILL: what makes a container exit 137
    assert r["oom_killed"] is True and r["memory.events"]["oom_kill"] >= 1
    assert r["memory.peak"] <= 32 << 20 and r["memory.peak"] > 16 << 20
    assert r["removed"]


def test_pids_max_stops_a_fork_bomb(guest):
    r = ok(guest, "pids")
    assert r["pids.max"] == "20"
    assert r["pids.current"] <= 20
    assert r["pids.events"]["max"] > 0                 # refused forks were counted
    assert r["removed"]


def test_cpu_max_throttles(guest):
    r = ok(guest, "cpu")
    assert r["cpu.max"] == "20000 100000"              # --cpus 0.2
    assert r["cpu.weight"] == r["expected_weight"]     # --cpu-shares 512 converted as runc does
    assert r["nr_throttled"] > 0
    assert r["share_of_a_core"] < 0.6                  # unthrottled, a busy loop would take ~1.0


def test_freeze_kill_and_stats(guest):
    r = ok(guest, "freeze")
    assert r["frozen"] == 1 and r["thawed"] == 0
    assert r["killed_returncode"] == -9                # cgroup.kill
    assert r["stats_memory_limit"] == 64 << 20 and r["stats_pids"] >= 1
    assert r["removed"]


def test_device_cgroup_is_an_ebpf_program_on_v2(guest):
    r = ok(guest, "devices")
    assert r["output"] == ["null-ok", "zero-denied"], r


def test_daemon_end_to_end_on_v2(guest):
    """minidockerd, the monitor and the API in the guest: OOMKilled, pids.max, pause, stats, rm."""
    r = ok(guest, "daemon")
    assert r["inspect_oom"] == [True, 137]
    assert r["fb_pids_max"] == "20" and r["fb_refused"] > 0
    assert r["fb_frozen"] == 1 and r["fb_status"] == "paused"
    assert r["fb_stats_pids"] == {"current": 20, "limit": 20}
    assert r["fb_removed"] and r["create_ok"] == 201 and r["left"] == []


def test_guest_left_no_cgroups(guest):
    assert ok(guest, "cleanup")["left"] == []


def test_security_device_program_and_readonly_cgroupfs(guest):
    """Chapter 10 on pure v2 (no devices.* files there): the eBPF program security.devices assembles
    stops opening a node outside Docker's rules while mknod and /dev/null work, and stops nothing once
    detached; a read-only cgroup2 mount refuses a pids.max write that a read-write one allows."""
    r = ok(guest, "security")
    assert r["prog_id"] > 0
    assert r["confined"] == {"null": "OK", "kmsg": "EPERM", "mknod": "OK"}
    assert r["free"]["kmsg"] == "OK" and r["detached"]["kmsg"] == "OK"
    assert r["ro_pids_max"] == "EROFS" and r["rw_pids_max"] == "OK"
