"""The walking skeleton end to end: minidocker CLI -> minidockerd -> monitor -> a container.

Every test looks at the container from inside (like crun's probe tests) or tries to break isolation.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO, need_tool

pytestmark = pytest.mark.privileged


def run(daemon, *args, **kw):
    return daemon.cli("run", *args, **kw)


def out(r) -> str:
    return r.stdout.decode()


def test_pid_1_is_the_workload_and_hostname_is_not_the_hosts(daemon):
    r = run(daemon, "--rm", "busybox", "sh", "-c", "echo $$; hostname")
    assert r.returncode == 0, r.stderr
    pid, hostname = out(r).split()
    assert pid == "1"
    assert hostname != socket.gethostname()
    assert len(hostname) == 12  # docker's default: the short container id


def test_hostname_flag_env_and_workdir(daemon):
    r = run(daemon, "--rm", "--hostname", "box1", "-e", "GREETING=hi there", "-w", "/tmp/work",
            "busybox", "sh", "-c", 'hostname; echo "$GREETING"; pwd; cat /etc/hostname')
    assert r.returncode == 0, r.stderr
    assert out(r).splitlines() == ["box1", "hi there", "/tmp/work", "box1"]


def test_host_processes_are_invisible(daemon):
    r = run(daemon, "--rm", "busybox", "sh", "-c", "ls /proc | grep -E '^[0-9]+$'")
    pids = [int(p) for p in out(r).split()]
    # Only the shell and ls: pid 1 and its child. The host has hundreds.
    assert 1 in pids and len(pids) <= 4, pids
    assert os.getpid() not in pids or len(pids) <= 3


def test_host_mounts_are_invisible(daemon):
    r = run(daemon, "--rm", "busybox", "cat", "/proc/self/mountinfo")
    text = out(r)
    assert r.returncode == 0, r.stderr
    # The container's mount table holds its own mounts only. (Overlay's options still name host
    # directories, as with docker: that is the filesystem's configuration, not a reachable path.)
    # Besides the basic ones: Docker's masked and read-only paths (each its own mount) and the
    # container's own read-only cgroupfs (one mount per hierarchy under /sys/fs/cgroup).
    from minidocker.security import masks
    targets = {line.split()[4] for line in text.splitlines()}
    protected = targets & (set(masks.MASKED_PATHS) | set(masks.READONLY_PATHS))
    cgroupfs = {t for t in targets if t == "/sys/fs/cgroup" or t.startswith("/sys/fs/cgroup/")}
    assert "/proc/sys" in protected and "/sys/fs/cgroup" in cgroupfs, targets
    assert targets - protected - cgroupfs == {"/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue",
                                              "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}, targets
    with open("/proc/self/mountinfo") as f:
        host_targets = {line.split()[4] for line in f}
    assert not (host_targets - {"/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm"} - cgroupfs) & targets
    # The container's own mounts did not propagate to the host.
    with open("/proc/self/mountinfo") as f:
        assert daemon.root not in f.read()


def test_only_loopback_network(daemon):
    r = run(daemon, "--rm", "--network", "none", "busybox", "sh", "-c",
            "ls /sys/class/net; cat /proc/net/dev | tail -n +3 | cut -d: -f1")
    names = set(out(r).split())
    assert names == {"lo"}, names


def test_cannot_escape_with_chroot(daemon):
    """The classic chroot escape finds nothing: pivot_root detached the host's root."""
    script = ("mkdir -p /x && chroot /x /bin/busybox true 2>/dev/null; "
              "cd / && for i in 1 2 3 4 5 6 7 8; do cd ..; done; ls /")
    r = run(daemon, "--rm", "busybox", "sh", "-c", script)
    listing = set(out(r).split())
    assert "bin" in listing and "work" not in listing


def test_exit_codes_pass_through(daemon):
    assert run(daemon, "--rm", "busybox", "true").returncode == 0
    assert run(daemon, "--rm", "busybox", "sh", "-c", "exit 3").returncode == 3
    # The workload killed by SIGKILL: 128 + 9 (with --init, since pid 1 can't be killed from inside).
    r = run(daemon, "--rm", "--init", "busybox", "sh", "-c", "kill -9 $$")
    assert r.returncode == 137, r.stderr


def test_missing_command_gives_127_and_a_message(daemon):
    r = run(daemon, "--rm", "busybox", "no-such-command")
    assert r.returncode == 127
    assert b'"no-such-command": executable file not found in $PATH' in r.stderr


def test_init_reaps_zombies(daemon):
    # The inner shell's child is orphaned and re-parented to pid 1; without an init it would stay a
    # zombie once it exits. With --init, pid 1 reaps it.
    script = "sh -c 'sleep 0.2 & exit 0'; sleep 1; ps -o stat,comm | grep -c '^Z' || true"
    r = run(daemon, "--rm", "--init", "busybox", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    assert out(r).strip() == "0"


def test_signals_reach_the_container(daemon):
    """SIGTERM to the client is forwarded (sig-proxy) to the container, whose trap exits 7."""
    p = subprocess.Popen([sys.executable, "-m", "minidocker.cli.main", "run", "--rm", "--init", "busybox",
                          "sh", "-c", "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=daemon.env(), cwd=REPO)
    try:
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGTERM)
        stdout, stderr = p.communicate(timeout=20)
        assert p.returncode == 7, stderr
        assert b"got-term" in stdout
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_stdin_is_passed(daemon):
    r = run(daemon, "--rm", "-i", "busybox", "sort", input=b"b\na\nc\n")
    assert out(r) == "a\nb\nc\n"


def test_stdout_and_stderr_are_separate(daemon):
    r = run(daemon, "--rm", "busybox", "sh", "-c", "echo to-out; echo to-err >&2")
    assert out(r) == "to-out\n"
    assert r.stderr == b"to-err\n"


def test_container_without_rm_stays_and_is_removed_cleanly(daemon):
    r = run(daemon, "--name", "keeper", "busybox", "sh", "-c", "echo kept > /file; exit 5")
    assert r.returncode == 5
    st, info = daemon.api("GET", "/containers/keeper/json")
    assert st == 200 and info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 5
    cdir = os.path.join(daemon.root, "containers", info["Id"])
    # The write landed in the container's writable layer (the snapshotter's), not in the image's.
    upper = info["GraphDriver"]["Data"]["UpperDir"]
    with open(os.path.join(upper, "file")) as f:
        assert f.read() == "kept\n"
    assert daemon.cli("rm", "keeper").returncode == 0
    assert not os.path.exists(cdir) and not os.path.exists(upper)
    st, _ = daemon.api("GET", "/containers/keeper/json")
    assert st == 404


def test_writes_do_not_reach_the_image(daemon):
    run(daemon, "--rm", "busybox", "sh", "-c", "rm /bin/ls; echo x > /etc/passwd")
    r = run(daemon, "--rm", "busybox", "sh", "-c", "ls / >/dev/null && head -1 /etc/passwd")
    assert r.returncode == 0 and out(r).startswith("root:")


def test_detached_run_then_stop(daemon):
    r = run(daemon, "-d", "--name", "sleeper", "busybox", "sleep", "60")
    assert r.returncode == 0, r.stderr
    cid = out(r).strip()
    assert len(cid) == 64
    ps = daemon.cli("ps", "-q").stdout.decode().split()
    assert cid[:12] in ps
    t0 = time.monotonic()
    assert daemon.cli("stop", "-t", "1", "sleeper").returncode == 0
    assert time.monotonic() - t0 < 15
    st, info = daemon.api("GET", f"/containers/{cid}/json")
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 137  # sleep ignores TERM as pid 1
    assert daemon.cli("rm", "sleeper").returncode == 0


def test_logs_of_a_finished_container(daemon):
    r = run(daemon, "--name", "talker", "busybox", "sh", "-c", "echo one; echo two >&2; echo three")
    assert r.returncode == 0
    logs = daemon.cli("logs", "talker")
    assert logs.stdout == b"one\nthree\n" and logs.stderr == b"two\n"
    daemon.cli("rm", "talker", check=True)


def test_explain_prints_the_kernel_calls_and_runs_nothing(daemon):
    before = daemon.api("GET", "/containers/json?all=1")[1]
    r = run(daemon, "--explain", "busybox", "echo", "hello")
    text = out(r)
    assert r.returncode == 0, r.stderr
    for call in ("unshare(", "MS_REC|MS_PRIVATE", "mount('overlay'", "pivot_root('.', '.')",
                 "umount2('.', MNT_DETACH)", "sethostname(", "execve("):
        assert call in text, call
    assert text.index("pivot_root") < text.index("execve(")
    assert "hello" not in text.split("execve(")[0]  # nothing ran
    assert daemon.api("GET", "/containers/json?all=1")[1] == before


def test_unknown_image_is_a_clear_error(daemon):
    r = run(daemon, "--rm", "no-such-image:1")
    assert r.returncode == 125
    assert b"Unable to find image 'no-such-image:1' locally" in r.stderr
    # Then the pull from the default registry (a closed port on loopback in tests: conftest.py) fails,
    # said as docker says it.
    assert b'Get "https://127.0.0.1:1/v2/"' in r.stderr.splitlines()[-1]
    assert b"connection refused" in r.stderr.splitlines()[-1]


def test_invalid_name_is_a_clear_error(daemon):
    r = run(daemon, "--rm", "--name", "bad name!", "busybox", "true")
    assert r.returncode == 125
    assert b"Invalid container name (bad name!)" in r.stderr


def test_duplicate_name_is_a_conflict(daemon):
    daemon.cli("create", "--name", "twin", "busybox", "true", check=True)
    try:
        r = daemon.cli("create", "--name", "twin", "busybox", "true")
        assert r.returncode == 125 and b'Conflict. The container name "/twin" is already in use' in r.stderr
    finally:
        daemon.cli("rm", "twin", check=True)


def test_daemon_not_running_is_a_clear_error(daemon, tmp_path):
    env = daemon.env(MINIDOCKER_HOST=f"unix://{tmp_path}/nothing.sock")
    r = subprocess.run([sys.executable, "-m", "minidocker.cli.main", "ps"], capture_output=True, env=env, cwd=REPO)
    assert r.returncode == 1
    assert b"Cannot connect to the minidocker daemon" in r.stderr and b"Is minidockerd running?" in r.stderr


def test_second_daemon_on_the_same_root_is_refused(daemon, tmp_path):
    r = subprocess.run([sys.executable, "-m", "minidocker.daemon.main", "--root", daemon.root,
                        "-H", f"unix://{tmp_path}/other.sock"], capture_output=True, timeout=30, cwd=REPO)
    assert r.returncode != 0
    assert b"another daemon" in r.stderr


def test_real_docker_cli_runs_a_container(daemon):
    docker = need_tool("docker")
    r = subprocess.run([docker, "run", "--rm", "busybox", "echo", "hi"], capture_output=True,
                       env=daemon.env(), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hi\n"
    r = subprocess.run([docker, "run", "--rm", "busybox", "sh", "-c", "exit 3"], capture_output=True,
                       env=daemon.env(), timeout=60)
    assert r.returncode == 3


def test_docker_py_runs_a_container(daemon):
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=daemon.host)
    try:
        assert client.version()["ApiVersion"] == "1.50"
        output = client.containers.run("busybox", ["echo", "from docker-py"], remove=True)
        assert output == b"from docker-py\n"
    finally:
        client.close()


def test_no_container_state_left_after_rm(daemon):
    r = run(daemon, "--rm", "busybox", "true")
    assert r.returncode == 0
    # Wait for auto-removal bookkeeping, then every remaining directory belongs to a listed container.
    listed = {c["Id"] for c in daemon.api("GET", "/containers/json?all=1")[1]}
    on_disk = set(os.listdir(os.path.join(daemon.root, "containers")))
    assert on_disk <= listed, on_disk - listed
