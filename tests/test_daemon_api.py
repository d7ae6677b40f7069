"""The daemon and API chapter, driven by the real docker CLI and docker-py (and raw HTTP for the
corners): lifecycle, logs, exec, attach/TTY, events, restart policies, cp, ps filters, API hygiene,
concurrency. Daemon restarts (kill -9) and TLS are in test_daemon_persistence.py."""
from __future__ import annotations

import json
import os
import pty
import select
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from conftest import need_tool

pytestmark = pytest.mark.privileged


def docker(daemon, *args, input=None, timeout=60):
    return subprocess.run([need_tool("docker"), *args], input=input, capture_output=True,
                          env=daemon.env(), timeout=timeout)


def ok(r) -> str:
    assert r.returncode == 0, (r.args, r.stdout, r.stderr)
    return r.stdout.decode()


def until(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_in_pty(argv, env, steps, settle=1.0):
    """Run ``argv`` on a pseudo-terminal (as a user at a terminal would); ``steps`` = [(wait_for, send)]:
    wait until the output contains ``wait_for``, then type ``send``. Returns (output, exit code)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(argv[0], argv, env)
    import fcntl
    import struct
    import termios
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # the "terminal" is 30x100
    out = b""

    def read_until(token, timeout):
        nonlocal out
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (token is None or token not in out):
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    return
                if not data:
                    return
                out += data

    try:
        for token, data in steps:
            read_until(token, 20)
            assert token is None or token in out, f"never saw {token!r} in {out[-500:]!r}"
            os.write(fd, data)
        read_until(None, settle)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return out, os.waitstatus_to_exitcode(status)
            read_until(None, 0.2)
        raise AssertionError(f"{argv} did not exit: {out[-500:]!r}")
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


# ---- the "done when", with the docker CLI and with docker-py -----------------------------
def test_done_when_with_the_docker_cli(daemon):
    cid = ok(docker(daemon, "run", "-d", "--name", "web", "busybox", "sh", "-c",
                    "while true; do date; sleep 1; done")).strip()
    try:
        assert len(cid) == 64
        # logs -f streams: lines keep arriving while we read
        p = subprocess.Popen([need_tool("docker"), "logs", "-f", "web"], stdout=subprocess.PIPE,
                             env=daemon.env())
        try:
            first = p.stdout.readline()
            t0 = time.monotonic()
            lines = [p.stdout.readline() for _ in range(2)]
            assert first.strip() and all(l.strip() for l in lines)
            assert time.monotonic() - t0 > 0.5  # they came over time, not all at once
        finally:
            p.kill()
            p.wait()
        assert ok(docker(daemon, "exec", "web", "hostname")).strip() == cid[:12]
        ok(docker(daemon, "stop", "-t", "1", "web"))
        st = json.loads(ok(docker(daemon, "inspect", "web")))[0]["State"]
        assert st["Status"] == "exited" and st["ExitCode"] == 137  # sh ignores SIGTERM: SIGKILL after 1 s
        ok(docker(daemon, "rm", "web"))
        assert docker(daemon, "inspect", "web").returncode == 1
    finally:
        docker(daemon, "rm", "-f", "web")


def test_done_when_with_docker_py(daemon):
    dk = pytest.importorskip("docker")
    client = dk.DockerClient(base_url=daemon.host)
    try:
        c = client.containers.run("busybox", ["sh", "-c", "while true; do date; sleep 1; done"],
                                  name="pyweb", detach=True)
        stream = c.logs(stream=True, follow=True)
        assert next(stream).strip()
        assert next(stream).strip()
        stream.close()
        code, out = c.exec_run(["hostname"])
        assert (code, out.strip().decode()) == (0, c.id[:12])
        code, out = c.exec_run(["sh", "-c", "echo $A; exit 4"], environment={"A": "x"})
        assert (code, out) == (4, b"x\n")
        c.stop(timeout=1)
        c.reload()
        assert c.status == "exited"
        c.remove()
        with pytest.raises(dk.errors.NotFound):
            client.containers.get("pyweb")
        # wait, kill, restart, rename through the SDK
        c = client.containers.run("busybox", ["sleep", "100"], detach=True, labels={"suite": "py"})
        assert [x.id for x in client.containers.list(filters={"label": "suite=py"})] == [c.id]
        c.rename("pyweb2")
        c.restart(timeout=0)
        c.reload()
        assert c.name == "pyweb2" and c.status == "running"
        c.kill()
        assert c.wait()["StatusCode"] == 137
        c.remove(force=True)
    finally:
        for name in ("pyweb", "pyweb2"):
            try:
                client.containers.get(name).remove(force=True)
            except Exception:
                pass
        client.close()


# ---- exec -----------------------------------------------------------------------------------------
def test_exec_flags_and_exit_codes(daemon):
    ok(docker(daemon, "run", "-d", "--name", "ex", "-e", "BASE=1", "busybox", "sleep", "300"))
    try:
        out = ok(docker(daemon, "exec", "-e", "X=2", "-w", "/tmp", "-u", "nobody", "ex", "sh", "-c",
                        'echo $BASE $X; pwd; id -u'))
        assert out.split() == ["1", "2", "/tmp", "65534"]
        assert docker(daemon, "exec", "ex", "sh", "-c", "exit 9").returncode == 9
        r = docker(daemon, "exec", "ex", "no-such-binary")
        assert r.returncode == 127 and b"no-such-binary" in r.stderr
        assert ok(docker(daemon, "exec", "-i", "ex", "sort", input=b"b\na\n")) == "a\nb\n"
        # the exec'd process is in the container: same pid namespace (pid 1 is sleep), same cgroup
        assert ok(docker(daemon, "exec", "ex", "cat", "/proc/1/cmdline")).startswith("sleep")
        out = ok(docker(daemon, "exec", "ex", "sh", "-c", "cat /proc/1/cgroup; echo ==; cat /proc/self/cgroup"))
        mine, theirs = out.split("==\n")
        assert mine == theirs and mine.strip()
        # -d: runs in the background
        ok(docker(daemon, "exec", "-d", "ex", "sh", "-c", "echo bg > /tmp/bg"))
        until(lambda: docker(daemon, "exec", "ex", "cat", "/tmp/bg").stdout == b"bg\n", what="detached exec")
        ids = json.loads(ok(docker(daemon, "inspect", "ex")))[0]["ExecIDs"]
        assert len(ids) >= 5
        st, info = daemon.api("GET", f"/exec/{ids[0]}/json")
        assert st == 200 and info["Running"] is False and info["ExitCode"] == 0
    finally:
        docker(daemon, "rm", "-f", "ex")
    r = docker(daemon, "exec", "ex", "true")
    assert r.returncode != 0 and b"No such container" in r.stderr


def test_env_without_equals_is_kept_and_unsets(daemon):
    """``-e FOO`` (FOO unset on the client) reaches the daemon as ``FOO``: docker keeps it so in
    Config.Env, and for the process it means "no FOO" (also for HOSTNAME, and for an exec)."""
    env = {k: v for k, v in daemon.env().items() if k not in ("FOO", "HOSTNAME")}
    r = subprocess.run([need_tool("docker"), "run", "-d", "--name", "envbare", "-e", "FOO", "-e", "BAR=1",
                        "-e", "HOSTNAME", "busybox", "sleep", "300"], capture_output=True, env=env, timeout=60)
    ok(r)
    try:
        cfg_env = daemon.api("GET", "/containers/envbare/json")[1]["Config"]["Env"]
        assert "FOO" in cfg_env and "HOSTNAME" in cfg_env and "BAR=1" in cfg_env, cfg_env
        assert not any(e.startswith(("FOO=", "HOSTNAME=")) for e in cfg_env), cfg_env
        seen = ok(docker(daemon, "exec", "envbare", "env")).splitlines()
        assert "BAR=1" in seen and not any(e.startswith(("FOO", "HOSTNAME")) for e in seen), seen
        seen = ok(docker(daemon, "exec", "-e", "BAR", "-e", "BAZ=2", "envbare", "env")).splitlines()
        assert "BAZ=2" in seen and not any(e.startswith(("BAR", "FOO")) for e in seen), seen
    finally:
        docker(daemon, "rm", "-f", "envbare")


def test_exec_in_a_stopped_container_is_a_conflict(daemon):
    ok(docker(daemon, "create", "--name", "exstopped", "busybox", "true"))
    try:
        st, body = daemon.api("POST", "/containers/exstopped/exec", {"Cmd": ["true"]})
        assert st == 409 and "is not running" in body["message"]
    finally:
        docker(daemon, "rm", "-f", "exstopped")


def test_exec_tty_through_a_pty(daemon):
    ok(docker(daemon, "run", "-d", "--name", "extty", "busybox", "sleep", "300"))
    try:
        out, code = run_in_pty([need_tool("docker"), "exec", "-it", "extty", "sh"], daemon.env(),
                               [(b"# ", b"echo $((6*7)); [ -t 0 ] && echo IS-A-TTY\r"), (b"IS-A-TTY", b"exit 3\r")])
        assert b"42" in out and code == 3
        out, code = run_in_pty([need_tool("docker"), "exec", "-it", "extty", "stty", "size"], daemon.env(), [])
        assert b"30 100" in out and code == 0  # ConsoleSize / exec resize
    finally:
        docker(daemon, "rm", "-f", "extty")


# ---- run -it, detach keys, attach ----------------------------------------------------------------
def test_run_it_is_interactive_and_detach_keys_leave_it_running(daemon):
    out, code = run_in_pty([need_tool("docker"), "run", "-it", "--rm", "busybox", "sh"], daemon.env(),
                           [(b"# ", b"echo $((6*7)); stty size; tty\r"), (b"42", b"exit 5\r")])
    assert code == 5 and b"42" in out
    assert b"30 100" in out  # the client's window size reached the container's pty (POST /resize)
    assert b"/dev/pts/0" in out  # the pty is the container's own (made from its /dev/ptmx)
    try:
        out, code = run_in_pty([need_tool("docker"), "run", "-it", "--name", "det", "busybox", "sh"],
                               daemon.env(), [(b"# ", b"echo hello\r"), (b"hello", b"\x10\x11")])
        assert code == 0
        assert json.loads(ok(docker(daemon, "inspect", "det")))[0]["State"]["Running"] is True
        # and minidocker's own CLI detaches the same way
        out, code = run_in_pty([sys.executable, "-m", "minidocker.cli.main", "attach", "det"],
                               daemon.env(), [(None, b"\r"), (b"# ", b"echo again\r"), (b"again", b"\x10\x11")])
        assert json.loads(ok(docker(daemon, "inspect", "det")))[0]["State"]["Running"] is True
        # docker attach, then the shell exits: attach ends with the container's exit code
        out, code = run_in_pty([need_tool("docker"), "attach", "det"], daemon.env(),
                               [(None, b"\r"), (b"# ", b"exit 7\r")])
        assert code == 7
        assert json.loads(ok(docker(daemon, "inspect", "det")))[0]["State"]["ExitCode"] == 7
    finally:
        docker(daemon, "rm", "-f", "det")


def test_stdin_close_semantics(daemon):
    # -i: stdin reaches the container and its EOF closes the container's stdin (StdinOnce)
    assert ok(docker(daemon, "run", "-i", "--rm", "busybox", "sort", input=b"c\na\nb\n")) == "a\nb\nc\n"
    # without -i the container's stdin is /dev/null
    assert ok(docker(daemon, "run", "--rm", "busybox", "cat", input=b"ignored")) == ""


# ---- restart policies, stop signal, wait conditions ----------------------------------------------
def test_restart_policy_on_failure_counts_and_backs_off(daemon):
    ok(docker(daemon, "run", "-d", "--name", "rp", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo x; exit 3"))
    try:
        until(lambda: json.loads(docker(daemon, "inspect", "rp").stdout)[0]["RestartCount"] == 2
              and json.loads(docker(daemon, "inspect", "rp").stdout)[0]["State"]["Status"] == "exited",
              what="two restarts then exited")
        time.sleep(1)  # no third restart
        info = json.loads(ok(docker(daemon, "inspect", "rp")))[0]
        assert info["RestartCount"] == 2 and info["State"]["ExitCode"] == 3
        assert ok(docker(daemon, "logs", "rp")).count("x") == 3
        # the back-off doubles: the starts are >= 100 ms then >= 200 ms apart
        time.sleep(1.1)
        evs = [json.loads(l) for l in ok(docker(daemon, "events", "--since", "1m", "--until", "0s",
                                                "--filter", "container=rp", "--filter", "event=start",
                                                "--format", "{{json .}}")).splitlines()]
        t = [e["timeNano"] / 1e9 for e in evs]
        assert len(t) == 3 and t[1] - t[0] >= 0.1 and t[2] - t[1] >= 0.2, t
    finally:
        docker(daemon, "rm", "-f", "rp")


def test_restart_always_and_stop_disarms_it(daemon):
    ok(docker(daemon, "run", "-d", "--name", "ra", "--restart", "always", "busybox", "sh", "-c", "sleep 0.2"))
    try:
        until(lambda: json.loads(docker(daemon, "inspect", "ra").stdout)[0]["RestartCount"] >= 2, what="restarts")
        ok(docker(daemon, "stop", "ra"))
        n = json.loads(ok(docker(daemon, "inspect", "ra")))[0]["RestartCount"]
        time.sleep(1)
        info = json.loads(ok(docker(daemon, "inspect", "ra")))[0]
        assert info["State"]["Status"] == "exited" and info["RestartCount"] == n
    finally:
        docker(daemon, "rm", "-f", "ra")


def test_invalid_restart_policies_are_refused(daemon):
    r = docker(daemon, "run", "-d", "--restart", "sometimes", "busybox", "true")
    assert r.returncode == 125 and b"invalid restart policy" in r.stderr
    st, body = daemon.api("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"], "HostConfig": {
        "AutoRemove": True, "RestartPolicy": {"Name": "always"}}})
    assert st == 400 and "AutoRemove" in body["message"]


def test_stop_uses_the_stop_signal_and_wait_conditions(daemon):
    ok(docker(daemon, "run", "-d", "--name", "sig", "--stop-signal", "USR1", "busybox", "sh", "-c",
              "trap 'exit 42' USR1; echo trapped; while true; do sleep 0.1; done"))
    try:
        # `run -d` returns before sh has installed its trap, and pid 1 ignores a signal it has no
        # handler for: stop only once the container says the trap is there.
        with subprocess.Popen([need_tool("docker"), "logs", "-f", "sig"], stdout=subprocess.PIPE,
                              env=daemon.env()) as follow:
            try:
                assert follow.stdout.readline() == b"trapped\n"
            finally:
                follow.kill()
        ok(docker(daemon, "stop", "sig"))
        assert ok(docker(daemon, "wait", "sig")).strip() == "42"  # not-running: returns at once
    finally:
        docker(daemon, "rm", "-f", "sig")
    st, body = daemon.api("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"]})
    cid = body["Id"]
    result = {}
    t = threading.Thread(target=lambda: result.update(r=daemon.api("POST", f"/containers/{cid}/wait?condition=removed")))
    t.start()
    time.sleep(0.3)
    assert t.is_alive()
    daemon.api("DELETE", f"/containers/{cid}")
    t.join(10)
    assert result["r"][0] == 200


# ---- cp, top, ps, logs, events, prune, df, info ---------------------------------------------------
def test_cp_both_ways_running_and_stopped(daemon, tmp_path):
    (tmp_path / "in.txt").write_text("to the container\n")
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "f").write_text("deep\n")
    ok(docker(daemon, "run", "-d", "--name", "cpr", "busybox", "sleep", "300"))
    ok(docker(daemon, "create", "--name", "cps", "busybox", "cat", "/in.txt"))
    try:
        ok(docker(daemon, "cp", str(tmp_path / "in.txt"), "cpr:/tmp/"))
        ok(docker(daemon, "cp", str(tmp_path / "d"), "cpr:/root/"))
        assert ok(docker(daemon, "exec", "cpr", "cat", "/tmp/in.txt", "/root/d/sub/f")) == "to the container\ndeep\n"
        ok(docker(daemon, "cp", "cpr:/etc/hostname", str(tmp_path / "hn")))
        assert (tmp_path / "hn").read_text().strip() == json.loads(ok(docker(daemon, "inspect", "cpr")))[0]["Id"][:12]
        ok(docker(daemon, "cp", "cpr:/root/d", str(tmp_path / "back")))
        assert (tmp_path / "back" / "sub" / "f").read_text() == "deep\n"
        # a stopped container: into its writable layer, visible when it runs
        ok(docker(daemon, "cp", str(tmp_path / "in.txt"), "cps:/in.txt"))
        ok(docker(daemon, "cp", "cps:/bin/busybox", str(tmp_path / "bb")))
        assert (tmp_path / "bb").stat().st_size > 100000
        assert ok(docker(daemon, "start", "-a", "cps")) == "to the container\n"
        r = docker(daemon, "cp", "cpr:/no/such", str(tmp_path))
        assert r.returncode == 1 and b"Could not find the file /no/such" in r.stderr
        # a symlink pointing "out" resolves inside the container, never on the host
        ok(docker(daemon, "exec", "cpr", "ln", "-s", "/", "/tmp/escape"))
        ok(docker(daemon, "cp", "cpr:/tmp/escape/etc/hostname", str(tmp_path / "hn2")))
        assert (tmp_path / "hn2").read_text() == (tmp_path / "hn").read_text()
    finally:
        docker(daemon, "rm", "-f", "cpr", "cps")
    assert not [l for l in open("/proc/self/mountinfo") if daemon.root in l]


def test_top_lists_the_containers_processes(daemon):
    ok(docker(daemon, "run", "-d", "--name", "tp", "busybox", "sh", "-c", "sleep 301 & sleep 302"))
    try:
        until(lambda: "sleep 302" in docker(daemon, "top", "tp").stdout.decode(), what="top")
        out = ok(docker(daemon, "top", "tp"))
        assert out.splitlines()[0].split()[:3] == ["UID", "PID", "PPID"]
        # sh exec'd its last command: pid 1 is "sleep 302", its child "sleep 301"
        assert "sleep 301" in out and "sleep 302" in out and len(out.splitlines()) == 3
    finally:
        docker(daemon, "rm", "-f", "tp")


def test_ps_filters_quiet_last_and_format(daemon):
    ok(docker(daemon, "run", "-d", "--name", "psa", "-l", "tier=web", "busybox", "sleep", "300"))
    ok(docker(daemon, "create", "--name", "psb", "-l", "tier=db", "busybox", "true"))
    try:
        names = lambda *a: ok(docker(daemon, "ps", *a, "--format", "{{.Names}}")).split()
        assert "psa" in names() and "psb" not in names()
        assert "psb" in names("-a")
        assert names("-a", "--filter", "label=tier=db") == ["psb"]
        assert names("-a", "--filter", "status=created", "--filter", "name=ps") == ["psb"]
        assert set(names("-a", "--filter", "ancestor=busybox", "--filter", "name=ps")) == {"psa", "psb"}
        assert names("-a", "-n", "1") == ["psb"]
        ids = ok(docker(daemon, "ps", "-q", "--filter", "name=psa")).split()
        assert len(ids) == 1 and len(ids[0]) == 12
        row = json.loads(ok(docker(daemon, "ps", "--filter", "name=psa", "--format", "{{json .}}")))
        assert row["Names"] == "psa" and row["Labels"] == "tier=web" and row["State"] == "running"
        # the same through minidocker's own CLI
        r = daemon.cli("ps", "-a", "--filter", "label=tier=db", "--format", "{{json .}}")
        assert json.loads(r.stdout)["Names"] == "psb"  # docker's row fields, as `docker ps --format`
        r = daemon.cli("ps", "-a", "--filter", "name=ps", "--format", "table {{.Names}}\t{{.State}}")
        assert r.stdout.decode().split("\n")[0].split() == ["NAMES", "STATE"]
        assert "psa" in daemon.cli("ps").stdout.decode().splitlines()[1]
    finally:
        docker(daemon, "rm", "-f", "psa", "psb")


def test_logs_tail_since_timestamps(daemon):
    ok(docker(daemon, "run", "--name", "lg", "busybox", "sh", "-c", "echo one; echo two >&2; sleep 1.2; echo three"))
    try:
        r = docker(daemon, "logs", "lg")
        assert r.stdout == b"one\nthree\n" and r.stderr == b"two\n"
        assert ok(docker(daemon, "logs", "--tail", "1", "lg")) == "three\n"
        out = ok(docker(daemon, "logs", "-t", "lg"))
        assert out.splitlines()[0].endswith("Z one") and out.startswith("20")
        t_three = out.splitlines()[1].split()[0]
        assert ok(docker(daemon, "logs", "--since", t_three, "lg")) == "three\n"
        assert ok(docker(daemon, "logs", "--until", t_three[:19] + "Z", "lg")) == "one\n"
    finally:
        docker(daemon, "rm", "-f", "lg")


def test_events_stream_live_with_filters(daemon):
    p = subprocess.Popen([need_tool("docker"), "events", "--filter", "container=evc", "--format", "{{json .}}"],
                         stdout=subprocess.PIPE, env=daemon.env())
    try:
        time.sleep(0.5)
        assert docker(daemon, "run", "--name", "evc", "busybox", "sh", "-c", "exit 2").returncode == 2
        ok(docker(daemon, "rm", "evc"))
        actions = []
        while "destroy" not in actions:
            actions.append(json.loads(p.stdout.readline())["Action"])
        assert actions == ["create", "attach", "start", "die", "destroy"], actions
    finally:
        p.kill()
        p.wait()
    # since/until: history from the ring, ends by itself; the die event carries the exit code.
    # (The docker CLI sends whole seconds: "--until 0s" excludes events of the current second.)
    time.sleep(1.1)
    out = ok(docker(daemon, "events", "--since", "1m", "--until", "0s", "--filter", "event=die",
                    "--filter", "container=evc", "--format", "{{json .}}"))
    ev = json.loads(out.splitlines()[-1])
    assert ev["Actor"]["Attributes"]["exitCode"] == "2" and ev["Type"] == "container"


def test_abandoned_long_polls_are_cleaned_up(daemon):
    base = daemon.api("GET", "/info")[1]["NEventsListener"]
    socks = []
    for path in ("/events", "/events?since=0"):
        s = socket.socket(socket.AF_UNIX)
        s.connect(daemon.sock)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 200")
        socks.append(s)
    assert daemon.api("GET", "/info")[1]["NEventsListener"] == base + 2
    for s in socks:
        s.close()
    until(lambda: daemon.api("GET", "/info")[1]["NEventsListener"] == base, what="listeners to go away")


def test_rename_prune_df_and_info_counts(daemon):
    ok(docker(daemon, "create", "--name", "old", "busybox", "true"))
    ok(docker(daemon, "rename", "old", "new"))
    assert json.loads(ok(docker(daemon, "inspect", "new")))[0]["Name"] == "/new"
    r = docker(daemon, "rename", "new", "bad name!")
    assert r.returncode == 1 and b"Invalid container name" in r.stderr
    ok(docker(daemon, "run", "-d", "--name", "keep", "busybox", "sleep", "300"))
    try:
        info = json.loads(ok(docker(daemon, "info", "--format", "{{json .}}")))
        assert info["ContainersRunning"] >= 1 and info["ContainersStopped"] >= 1
        assert info["Containers"] == info["ContainersRunning"] + info["ContainersStopped"] + info["ContainersPaused"]
        df = ok(docker(daemon, "system", "df"))
        assert df.splitlines()[0].split()[0] == "TYPE" and "Containers" in df
        out = ok(docker(daemon, "container", "prune", "-f"))
        assert "Deleted Containers" in out
        assert docker(daemon, "inspect", "new").returncode == 1
        assert json.loads(ok(docker(daemon, "inspect", "keep")))[0]["State"]["Running"]
    finally:
        docker(daemon, "rm", "-f", "keep", "new")


def test_minidocker_cli_verbs(daemon, tmp_path):
    cli = daemon.cli
    assert cli("run", "-d", "--name", "mc", "busybox", "sleep", "300").returncode == 0
    try:
        assert cli("exec", "mc", "sh", "-c", "echo in; exit 6").returncode == 6
        assert cli("exec", "mc", "hostname").stdout.strip() == cli("inspect", "-f", "{{.Id}}", "mc").stdout.strip()[:12]
        (tmp_path / "x").write_text("x\n")
        assert cli("cp", str(tmp_path / "x"), "mc:/x").returncode == 0
        assert cli("cp", "mc:/x", str(tmp_path / "y")).returncode == 0 and (tmp_path / "y").read_text() == "x\n"
        assert "sleep 300" in cli("top", "mc").stdout.decode()
        assert cli("restart", "-t", "0", "mc").returncode == 0
        assert cli("rename", "mc", "mc2").returncode == 0
        ev = cli("events", "--since", "1m", "--until", "0s", "--filter", "container=mc2", "--filter", "event=rename")
        assert b"rename" in ev.stdout
        assert b"TYPE" in cli("system", "df").stdout
    finally:
        cli("rm", "-f", "mc", "mc2")


# ---- API hygiene ---------------------------------------------------------------------------------
def raw(daemon, request: bytes) -> bytes:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(daemon.sock)
    s.sendall(request)
    out = b""
    while b"\r\n\r\n" not in out:
        out += s.recv(65536)
    s.close()
    return out


def test_bad_requests_get_dockers_statuses_and_messages(daemon):
    head = raw(daemon, b"POST /v1.50/containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 9\r\nConnection: close\r\n\r\n{\"Image\":")
    assert head.startswith(b"HTTP/1.1 400") and b"invalid JSON" in head
    cases = [
        ("POST", "/containers/create", {"Image": "busybox", "Cmd": 5}, 400,
         "invalid JSON: json: cannot unmarshal number into Go struct field CreateRequest.Cmd"),
        ("POST", "/containers/create?name=a%20b", {"Image": "busybox", "Cmd": ["true"]}, 400, "Invalid container name"),
        ("POST", "/containers/create", {"Image": "nosuchimage", "Cmd": ["true"]}, 404, "No such image"),
        ("POST", "/containers/create", {"Cmd": ["true"]}, 400, "No image"),
        ("GET", "/containers/nosuch/json", None, 404, "No such container: nosuch"),
        ("POST", "/containers/nosuch/start", None, 404, "No such container"),
        ("POST", "/exec/nosuch/start", {}, 404, "No such exec instance"),
        ("GET", "/containers/json?filters=notjson", None, 400, "invalid filter"),
        ("POST", "/containers/x/wait?condition=sometime", None, 404, "No such container"),
        ("GET", "/events?since=yesterday", None, 400, "invalid timestamp"),
        ("GET", "/nothing/here", None, 404, "page not found"),
    ]
    for method, path, body, status, msg in cases:
        st, reply = daemon.api(method, "/v1.50" + path, body)
        assert st == status and msg in reply["message"], (path, st, reply)
    # unknown fields are ignored, as dockerd's JSON decoding does
    st, reply = daemon.api("POST", "/containers/create?name=dup", {"Image": "busybox", "Cmd": ["true"], "Bogus": 1})
    assert st == 201
    try:
        st, reply = daemon.api("POST", "/containers/create?name=dup", {"Image": "busybox", "Cmd": ["true"]})
        assert st == 409 and 'The container name "/dup" is already in use' in reply["message"]
        daemon.api("POST", "/containers/dup/start")
        st, _ = daemon.api("POST", "/containers/dup/wait")
        st, reply = daemon.api("POST", "/containers/dup/kill")
        assert st == 409 and "is not running" in reply["message"]
    finally:
        daemon.api("DELETE", "/containers/dup?force=True")


def test_versions_headers_and_booleans(daemon):
    head = raw(daemon, b"HEAD /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"API-Version: 1.50" in head and b"OSType: linux" in head
    for prefix in ("", "/v1.24", "/v1.41", "/v1.50"):
        st, body = daemon.api("GET", prefix + "/version")
        assert st == 200 and body["ApiVersion"] == "1.50"
    for prefix, word in (("/v1.99", "new"), ("/v99999999999999999999", "new"), ("/v1.23", "old")):
        st, body = daemon.api("GET", prefix + "/version")  # outside the range served: dockerd's 400
        assert st == 400 and f"is too {word}" in body["message"], (prefix, body)
    st, body = daemon.api("POST", "/containers/create?name=boolc", {"Image": "busybox", "Cmd": ["sleep", "30"]})
    daemon.api("POST", "/containers/boolc/start")
    st, body = daemon.api("DELETE", "/containers/boolc?force=False")
    assert st == 409  # False is false
    st, body = daemon.api("DELETE", "/containers/boolc?v=False&link=False&force=True")
    assert st == 204  # True is true (docker-py's spelling)


def test_wait_omits_error_when_there_is_none(daemon):
    st, _ = daemon.api("POST", "/containers/create?name=waitc", {"Image": "busybox", "Cmd": ["sh", "-c", "exit 3"]})
    assert st == 201
    try:
        assert daemon.api("POST", "/containers/waitc/start")[0] == 204
        st, body = daemon.api("POST", "/containers/waitc/wait")
        assert (st, body) == (200, {"StatusCode": 3})  # dockerd: no "Error": null
    finally:
        daemon.api("DELETE", "/containers/waitc?force=1")


def test_socket_is_0660_with_the_minidocker_group(daemon):
    import grp
    st = os.stat(daemon.sock)
    assert stat.S_IMODE(st.st_mode) == 0o660
    try:
        gid = grp.getgrnam("minidocker").gr_gid
    except KeyError:
        from conftest import need
        need(False, "the minidocker group (make setup creates it)")
    assert st.st_gid == gid


def test_twenty_clients_at_once(daemon):
    dk = pytest.importorskip("docker")
    errors, outputs = [], {}
    before = set(os.listdir(os.path.join(daemon.root, "containers")))

    def worker(i):
        client = dk.DockerClient(base_url=daemon.host)
        try:
            c = client.containers.run("busybox", ["sh", "-c", f"echo client-{i}"], name=f"conc{i}", detach=True)
            outputs[i] = (c.wait()["StatusCode"], c.logs())
            c.remove()
        except Exception as e:
            errors.append(repr(e))
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert outputs == {i: (0, f"client-{i}\n".encode()) for i in range(20)}
    assert set(os.listdir(os.path.join(daemon.root, "containers"))) == before  # nothing leaked
    assert not [c for c in daemon.api("GET", "/containers/json?all=1")[1] if c["Names"][0].startswith("/conc")]


def test_logs_follow_ends_at_until(daemon):
    """`logs -f --until T` follows a running container's output and stops once T has passed."""
    st, created = daemon.api("POST", "/containers/create?name=ticker",
                             {"Image": "busybox", "Cmd": ["sh", "-c", "while :; do echo tick; sleep 0.1; done"]})
    assert st == 201, created
    try:
        assert daemon.api("POST", "/containers/ticker/start")[0] == 204
        t0 = time.time()
        st, body = daemon.api("GET", f"/containers/ticker/logs?stdout=1&follow=1&until={int(t0) + 2}", timeout=20)
        assert st == 200
        assert time.time() - t0 < 15  # it ended (the container still runs)
        assert body.count(b"tick") >= 2
        assert daemon.api("GET", "/containers/ticker/json")[1]["State"]["Running"] is True
    finally:
        daemon.api("DELETE", "/containers/ticker?force=1")
