"""The cgroups chapter on this host's real kernel: limits, OOM, fork bomb, freeze, stats, cleanup.

Through the whole stack (CLI -> daemon -> monitor -> cgroup) and, for the v2 core files, directly
on the host's controller-less v2 tree (membership, freeze, kill). The v2 *limits* are tested in a
qemu guest (test_cgroups_v2_guest.py).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from conftest import need, need_root, need_tool
from minidocker import cgroups
from minidocker.cgroups.driver import read, read_keyed
from minidocker.cgroups.v2 import V2Cgroup

pytestmark = pytest.mark.privileged


def cgroup_of(daemon, cid):
    return cgroups.open_cgroup(cgroups.cgroup_path(daemon.cgroup_parent, cid))


def control_dir(cg, controller):
    """The directory holding ``controller``'s files, on v1 or v2."""
    return cg.dir(controller) if cg.version == "v1" else cg.dir


def run_d(daemon, *args):
    r = daemon.cli("run", "-d", *args, check=True)
    return r.stdout.decode().strip()


def inspect(daemon, cid):
    return daemon.api("GET", f"/containers/{cid}/json")[1]


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_memory_limit_oom_kill_exits_137_and_says_oomkilled(daemon):
    script = "x=a; while true; do x=$x$x; done"
    r = daemon.cli("run", "--rm", "-m", "32m", "busybox", "sh", "-c", script, timeout=60)
    assert r.returncode == 137, r.stderr
    r = daemon.cli("run", "--name", "oomer", "-m", "32m", "busybox", "sh", "-c", script, timeout=60)
    try:
        assert r.returncode == 137
        st = inspect(daemon, "oomer")["State"]
        assert st["OOMKilled"] is True and st["ExitCode"] == 137
        assert inspect(daemon, "oomer")["HostConfig"]["Memory"] == 32 << 20
    finally:
        daemon.cli("rm", "-f", "oomer")


def test_kill_9_is_not_an_oom_kill(daemon):
    cid = run_d(daemon, "-m", "32m", "busybox", "sleep", "100")
    try:
        daemon.cli("kill", cid, check=True)
        assert wait_for(lambda: inspect(daemon, cid)["State"]["Status"] == "exited")
        st = inspect(daemon, cid)["State"]
        assert st["ExitCode"] == 137 and st["OOMKilled"] is False
    finally:
        daemon.cli("rm", "-f", cid)


def test_fork_bomb_under_pids_limit_is_contained(daemon):
    # pid 1 starts the bomb, then *execs* sleep: once the bomb has used up the 20 pids, a shell
    # that still needed to fork its own `sleep` would fail and end the container early.
    cid = run_d(daemon, "--pids-limit", "20", "busybox", "sh", "-c", "f(){ f|f & }; f & exec sleep 30")
    try:
        pdir = control_dir(cgroup_of(daemon, cid), "pids")
        assert read(pdir, "pids.max") == "20"
        assert wait_for(lambda: read_keyed(pdir, "pids.events").get("max", 0) > 0), "no fork was refused"
        assert int(read(pdir, "pids.current")) <= 20
        # The host is still responsive: we can fork, and the daemon answers.
        assert subprocess.run(["/bin/true"]).returncode == 0 and daemon.ping()
    finally:
        r = daemon.cli("rm", "-f", cid)
    assert r.returncode == 0, r.stderr
    assert not cgroup_of(daemon, cid).exists()


def test_cpu_quota_throttles_a_busy_loop(daemon):
    cid = run_d(daemon, "--cpus", "0.2", "--cpu-shares", "512", "busybox", "sh", "-c", "while :; do :; done")
    try:
        cg = cgroup_of(daemon, cid)
        d = control_dir(cg, "cpu")
        if cg.version == "v1":
            assert (read(d, "cpu.cfs_quota_us"), read(d, "cpu.cfs_period_us"), read(d, "cpu.shares")) == \
                   ("20000", "100000", "512")
        else:
            assert read(d, "cpu.max") == "20000 100000"
        # Throttling is counted, not timed: within a few periods the quota runs out.
        assert wait_for(lambda: cg.stats()["cpu"]["throttled_periods"] > 0)
    finally:
        daemon.cli("rm", "-f", cid)


def test_cpuset_and_memory_files(daemon):
    cid = run_d(daemon, "--cpuset-cpus", "0", "-m", "48m", "busybox", "sleep", "100")
    try:
        cg = cgroup_of(daemon, cid)
        assert read(control_dir(cg, "cpuset"), "cpuset.cpus") == "0"
        mem = control_dir(cg, "memory")
        assert read(mem, "memory.limit_in_bytes" if cg.version == "v1" else "memory.max") == str(48 << 20)
    finally:
        daemon.cli("rm", "-f", cid)


def test_pause_unpause_freezes_the_whole_container(daemon):
    cid = run_d(daemon, "--name", "frozen", "busybox", "sh", "-c",
                "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; usleep 20000; done")
    try:
        daemon.cli("pause", "frozen", check=True)
        cg = cgroup_of(daemon, cid)
        assert cg.frozen()
        st = inspect(daemon, cid)["State"]
        assert st["Status"] == "paused" and st["Paused"] and st["Running"]
        assert "(Paused)" in daemon.cli("ps").stdout.decode()
        assert daemon.api("POST", f"/containers/{cid}/pause")[0] == 409  # already paused
        # Frozen: no process of the container gets CPU time.
        usage = cg.stats()["cpu"]["usage_ns"]
        time.sleep(0.3)
        assert cg.stats()["cpu"]["usage_ns"] == usage
        daemon.cli("unpause", "frozen", check=True)
        assert not cg.frozen() and inspect(daemon, cid)["State"]["Status"] == "running"
        assert wait_for(lambda: cg.stats()["cpu"]["usage_ns"] > usage)
        assert daemon.api("POST", f"/containers/{cid}/unpause")[0] == 409  # not paused
        # A paused container can be removed: its whole tree is killed through the cgroup.
        daemon.cli("pause", "frozen", check=True)
    finally:
        r = daemon.cli("rm", "-f", "frozen", timeout=30)
    assert r.returncode == 0, r.stderr
    assert not cgroup_of(daemon, cid).exists()


def test_stop_of_a_paused_container(daemon):
    cid = run_d(daemon, "busybox", "sleep", "100")
    try:
        daemon.cli("pause", cid, check=True)
        r = daemon.cli("stop", "-t", "5", cid, timeout=30)
        assert r.returncode == 0, r.stderr
        assert inspect(daemon, cid)["State"]["Status"] == "exited"
    finally:
        daemon.cli("rm", "-f", cid)


def test_stats_api_in_docker_shape(daemon):
    cid = run_d(daemon, "--name", "statme", "-m", "64m", "--pids-limit", "50", "busybox", "sh", "-c",
                "while :; do :; done")
    try:
        status, s = daemon.api("GET", f"/containers/{cid}/stats?stream=0")
        assert status == 200
        assert s["id"] == cid and s["name"] == "/statme"
        assert s["memory_stats"]["limit"] == 64 << 20 and s["memory_stats"]["usage"] > 0
        assert s["pids_stats"] == {"current": 1, "limit": 50}
        assert s["cpu_stats"]["cpu_usage"]["total_usage"] > s["precpu_stats"]["cpu_usage"]["total_usage"] > 0
        assert s["cpu_stats"]["system_cpu_usage"] > 0 and s["cpu_stats"]["online_cpus"] >= 1
        assert s["preread"] != "0001-01-01T00:00:00Z"
        status, one = daemon.api("GET", f"/containers/{cid}/stats?stream=0&one-shot=1")
        assert status == 200 and one["precpu_stats"]["cpu_usage"]["total_usage"] == 0
        # Our CLI and docker's both render it.
        r = daemon.cli("stats", "--no-stream", "statme", check=True)
        line = [l for l in r.stdout.decode().splitlines() if "statme" in l][0]
        assert "B / 64MiB" in line and line.split()[-1] == "1"
    finally:
        daemon.cli("rm", "-f", cid)


def test_streaming_stats_until_exit(daemon):
    cid = run_d(daemon, "busybox", "sleep", "2")
    try:
        import http.client
        import socket

        class Conn(http.client.HTTPConnection):
            def connect(self):
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.settimeout(20)
                self.sock.connect(daemon.sock)

        c = Conn("localhost")
        c.request("GET", f"/containers/{cid}/stats?stream=1")
        r = c.getresponse()
        samples = [json.loads(line) for line in r.read().splitlines() if line.strip()]
        c.close()
        assert len(samples) >= 2
        assert samples[1]["precpu_stats"] == samples[0]["cpu_stats"]
        assert samples[-1]["read"].startswith("0001")  # the last one: the container has exited
    finally:
        daemon.cli("rm", "-f", cid)


def test_docker_cli_stats_no_stream(daemon):
    docker = need_tool("docker")
    cid = run_d(daemon, "--name", "dockerstats", "-m", "40m", "busybox", "sleep", "100")
    try:
        r = subprocess.run([docker, "stats", "--no-stream", "dockerstats"], capture_output=True,
                           env=daemon.env(), timeout=60)
        assert r.returncode == 0, r.stderr
        line = [l for l in r.stdout.decode().splitlines() if "dockerstats" in l][0]
        assert "/ 40MiB" in line and cid[:12] in line
        # Real numbers in every column (docker prints "--" for a sample it could not use).
        cols = line.split()
        assert "--" not in cols, line
        assert cols[2].endswith("%") and float(cols[2][:-1]) >= 0, line             # CPU %
        assert re.fullmatch(r"[0-9.]+[KMG]?i?B", cols[3]) and not cols[3].startswith("0B"), line  # MEM USAGE
        assert cols[-1] == "1", line                                                   # PIDS
        r = subprocess.run([docker, "pause", "dockerstats"], capture_output=True, env=daemon.env(), timeout=60)
        assert r.returncode == 0, r.stderr
        assert inspect(daemon, cid)["State"]["Paused"] is True
        r = subprocess.run([docker, "unpause", "dockerstats"], capture_output=True, env=daemon.env(), timeout=60)
        assert r.returncode == 0 and inspect(daemon, cid)["State"]["Paused"] is False
    finally:
        daemon.cli("rm", "-f", cid)


def test_cgroup_namespace_shows_root(daemon):
    r = daemon.cli("run", "--rm", "-m", "32m", "busybox", "cat", "/proc/self/cgroup", check=True)
    lines = r.stdout.decode().split()
    assert lines and all(l.endswith(":/") for l in lines), lines
    cid = run_d(daemon, "busybox", "sleep", "100")
    try:
        # ...while on the host the same process is in <parent>/<id>.
        pid = inspect(daemon, cid)["State"]["Pid"]
        with open(f"/proc/{pid}/cgroup") as f:
            host_view = f.read()
        assert f"/{daemon.cgroup_parent}/{cid}" in host_view
    finally:
        daemon.cli("rm", "-f", cid)


def test_bad_limits_are_refused_at_create_and_nothing_is_left(daemon):
    before = set(os.listdir(os.path.join(daemon.root, "containers")))
    for flags, message in ((["-m", "1m"], "Minimum memory limit allowed is 6MB"),
                           (["--cpus", "64"], "CPUs available"),
                           (["--cpuset-cpus", "63"], "Requested CPUs are not available"),
                           (["--cpu-quota", "-5"], "must not be negative"),
                           (["--blkio-weight", "1"], "from 10 to 1000")):
        r = daemon.cli("create", *flags, "busybox", "true")
        assert r.returncode != 0 and message in r.stderr.decode(), (flags, r.stderr)
    status, body = daemon.api("POST", "/containers/create", {"Image": "busybox", "HostConfig": {"Memory": -1}})
    assert status == 400 and "must not be negative" in body["message"]
    r = daemon.cli("create", "-m", "lots", "busybox", "true")
    assert r.returncode != 0 and "invalid size" in r.stderr.decode()
    assert set(os.listdir(os.path.join(daemon.root, "containers"))) == before


def test_unenforceable_limits_are_warnings(daemon):
    support = cgroups.limits.host_support()
    status, body = daemon.api("POST", "/containers/create",
                              {"Image": "busybox", "Cmd": ["true"],
                               "HostConfig": {"Memory": 64 << 20, "MemorySwap": 128 << 20, "BlkioWeight": 300}})
    try:
        assert status == 201
        text = " ".join(body["Warnings"] or [])
        assert ("Block I/O weight" in text) == (not support.get("blkio_weight"))
        assert ("no swap" in text) == (not cgroups.limits.swap_enabled())
    finally:
        daemon.api("DELETE", f"/containers/{body['Id']}?force=1")


def test_failed_start_and_rm_leave_no_cgroup(daemon):
    status, body = daemon.api("POST", "/containers/create",
                              {"Image": "busybox", "Cmd": ["true"], "User": "nosuchuser",
                               "HostConfig": {"Memory": 32 << 20}})
    assert status == 201
    cid = body["Id"]
    try:
        status, err = daemon.api("POST", f"/containers/{cid}/start")
        assert status >= 400 and "nosuchuser" in err["message"]
        assert not cgroup_of(daemon, cid).exists()
    finally:
        daemon.api("DELETE", f"/containers/{cid}?force=1")
    cid = run_d(daemon, "-m", "32m", "busybox", "sleep", "100")
    assert cgroup_of(daemon, cid).exists() and cgroup_of(daemon, cid).pids()
    daemon.cli("rm", "-f", cid, check=True)
    assert not cgroup_of(daemon, cid).exists()


def test_exited_container_has_no_cgroup_but_stats_answer(daemon):
    r = daemon.cli("run", "--name", "done1", "busybox", "true")
    try:
        assert r.returncode == 0
        cid = inspect(daemon, "done1")["Id"]
        assert not cgroup_of(daemon, cid).exists()
        status, s = daemon.api("GET", "/containers/done1/stats?stream=0")
        assert status == 200 and s["memory_stats"] == {}
    finally:
        daemon.cli("rm", "-f", "done1")


# ---- the host's controller-less v2 tree: membership, freeze, kill --------------------------------------
@pytest.fixture
def unified_cgroup():
    need_root()
    layout = cgroups.detect()
    need(layout.unified is not None, "a cgroup2 hierarchy (v2 or hybrid host)")
    cg = V2Cgroup(layout.unified, f"/minidocker-unit-{os.getpid()}/g1")
    cg.create()
    yield cg
    try:
        cg.destroy()
    finally:
        os.rmdir(os.path.dirname(cg.dir))


def test_v2_core_files_on_the_unified_tree(unified_cgroup):
    cg = unified_cgroup
    procs = [subprocess.Popen(["/bin/busybox", "sh", "-c", "read x; exec sleep 100"], stdin=subprocess.PIPE)
             for _ in range(2)]
    try:
        for p in procs:
            cg.add(p.pid)
            p.stdin.write(b"go\n")
            p.stdin.close()
        assert cg.pids() == sorted(p.pid for p in procs) and cg.populated()
        with open(f"/proc/{procs[0].pid}/cgroup") as f:
            assert f"0::{cg.path}" in f.read()
        cg.freeze()
        assert cg.frozen()
        cg.thaw()
        assert not cg.frozen()
        cg.kill()  # cgroup.kill
        assert [p.wait(10) for p in procs] == [-9, -9]
        assert wait_for(lambda: not cg.populated())
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    cg.destroy()
    assert not os.path.exists(cg.dir)


def test_clone_into_cgroup_starts_the_child_inside(unified_cgroup):
    from minidocker.cgroups.v2 import spawn_into
    r, w = os.pipe()
    try:
        # The child prints its own cgroup: it never ran anywhere else.
        os.set_inheritable(w, True)
        pid = spawn_into(unified_cgroup.dir, ["/bin/busybox", "sh", "-c", f"cat /proc/self/cgroup >&{w}"])
    finally:
        os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    assert os.waitpid(pid, 0)[1] == 0
    assert f"0::{unified_cgroup.path}" in text.splitlines()


def test_docker_py_limits_stats_pause(daemon):
    try:
        import docker
    except ImportError:
        need(False, "docker-py (the 'docker' package in the dev extras)")
    client = docker.DockerClient(base_url=daemon.host)
    ct = client.containers.run("busybox", ["sleep", "100"], detach=True, mem_limit="48m", pids_limit=30,
                               nano_cpus=500_000_000)
    try:
        s = ct.stats(stream=False)
        assert s["memory_stats"]["limit"] == 48 << 20 and s["pids_stats"] == {"current": 1, "limit": 30}
        ct.pause()
        ct.reload()
        assert ct.status == "paused"
        ct.unpause()
        ct.reload()
        assert ct.status == "running"
        assert ct.attrs["HostConfig"]["NanoCpus"] == 500_000_000
    finally:
        ct.remove(force=True)
        client.close()


def test_explain_shows_the_cgroup_writes_in_order(daemon):
    r = daemon.cli("run", "--explain", "-m", "32m", "--pids-limit", "9", "busybox", "true", check=True)
    text = r.stdout.decode()
    limit_file = "memory.limit_in_bytes" if cgroups.detect().mode != "v2" else "memory.max"
    for needle in (f"'{32 << 20}' > ", limit_file, "'9' > ", "pids.max", "cgroup.procs", "CLONE_NEWCGROUP"):
        assert needle in text, needle
    # Limits before the move, the move before pid 1's own steps, its cgroup namespace before exec.
    assert text.index("pids.max") < text.index("cgroup.procs") < text.index("pivot_root")
    assert text.index("unshare(CLONE_NEWCGROUP)") < text.index("execve(")
    assert "CLONE_NEWCGROUP" not in text.splitlines()[2]  # not in the monitor's unshare
    # Nothing was created for real: no cgroup of that container exists anywhere.
    short_id = text.split("container ", 1)[1].split()[0]
    from conftest import cgroup_dirs
    assert not [x for d in cgroup_dirs(daemon.cgroup_parent) for x in os.listdir(d) if x.startswith(short_id)]


def test_stats_cli_streams_until_interrupted(daemon):
    import signal
    import sys
    cid = run_d(daemon, "--name", "streamer", "--cpus", "0.3", "busybox", "sh", "-c", "while :; do :; done")
    try:
        p = subprocess.Popen([sys.executable, "-m", "minidocker.cli.main", "stats", "streamer"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env())
        out = b""
        while out.count(b"\033[2J\033[H") < 3:      # redrawn every second: wait for two full screens
            chunk = os.read(p.stdout.fileno(), 65536)
            assert chunk, p.stderr.read()
            out += chunk
        p.send_signal(signal.SIGINT)
        rest, err = p.communicate(timeout=5)
        assert p.returncode == 130, err              # docker's code for a verb ended by Ctrl-C
        screens = (out + rest).decode().split("\033[2J\033[H")[1:]
        assert "streamer" in screens[1] and "%" in screens[1]
    finally:
        daemon.cli("rm", "-f", cid)


@pytest.mark.privileged
def test_a_clean_daemon_stop_leaves_no_cgroup_parent(tmp_path):
    """The parent a daemon made for its containers (``--cgroup-parent``, by default ``minidocker``)
    goes with the daemon's clean stop once no container runs under it."""
    need_root()
    from conftest import Daemon, cgroup_dirs
    d = Daemon(str(tmp_path))
    d.cgroup_parent = f"minidocker-stoptest-{os.getpid()}"
    d.start()
    try:
        d.cli("run", "--rm", "busybox", "true", check=True)
        assert cgroup_dirs(d.cgroup_parent)            # the parent existed while the daemon ran
    finally:
        d.stop()
    assert cgroup_dirs(d.cgroup_parent) == []
