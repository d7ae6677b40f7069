"""The runtime's in-process API on a plain OCI bundle (as ``runc spec`` writes one): runc's verbs.

No daemon: a bundle directory with config.json and a busybox rootfs, a state root of the test's own,
a cgroup under a parent of the test's own (removed at the end).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket

import pytest

from conftest import need_root, remove_cgroup_parent


@pytest.fixture
def bundle(tmp_path):
    need_root()
    from minidocker.images.busybox import DEFAULT_BUSYBOX, busybox_available
    assert busybox_available(), "busybox-static is needed (make setup installs it)"
    root = tmp_path / "bundle" / "rootfs"
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp"):
        (root / d).mkdir(parents=True)
    shutil.copy(DEFAULT_BUSYBOX, root / "bin" / "busybox")
    for applet in ("sh", "sleep", "cat", "echo", "id", "grep", "hostname"):
        os.symlink("busybox", root / "bin" / applet)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    parent = f"mdtest-runtime-{os.getpid()}"
    yield tmp_path / "bundle", tmp_path / "state", parent
    remove_cgroup_parent(parent)


def write_spec(bundle, parent, cid, args, **process):
    from minidocker.runtime import spec as S
    spec = S.example(args, terminal=False)
    spec["process"].update(process)
    spec["root"]["readonly"] = False
    spec["linux"]["cgroupsPath"] = f"{parent}/{cid}"
    assert S.validate(spec) == []
    (bundle / "config.json").write_text(json.dumps(spec))
    return spec


def test_create_start_state_kill_delete(bundle):
    from minidocker import runtime
    b, state, parent = bundle
    write_spec(b, parent, "c1", ["sleep", "30"])
    r, w = os.pipe()
    proc = runtime.create(str(state), "c1", str(b), stdio=(None, w, w))
    os.close(w)
    try:
        st = runtime.state(str(state), "c1")
        assert st["status"] == "created" and st["pid"] == proc.pid and st["bundle"] == str(b)
        from minidocker.runtime import spec as S
        assert S.validate(st, "state-schema.json") == []
        # created: only the init exists, it is our child, and it has not exec'd yet
        with open(f"/proc/{proc.pid}/status") as f:
            assert f"PPid:\t{os.getpid()}" in f.read()
        assert "sleep" not in open(f"/proc/{proc.pid}/cmdline").read()
        runtime.start(str(state), "c1")
        assert runtime.state(str(state), "c1")["status"] == "running"
        with pytest.raises(runtime.ContainerError):
            runtime.start(str(state), "c1")
        assert runtime.ps(str(state), "c1") == [proc.pid]
        runtime.pause(str(state), "c1")
        assert runtime.state(str(state), "c1")["status"] == "paused"
        runtime.resume(str(state), "c1")
        runtime.kill(str(state), "c1", signal.SIGKILL)
        assert proc.wait(10) == 128 + signal.SIGKILL
        assert runtime.state(str(state), "c1")["status"] == "stopped"
        assert [s["id"] for s in runtime.list_containers(str(state))] == ["c1"]
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        runtime.delete(str(state), "c1", force=True)
        os.close(r)
    assert not os.path.exists(state / "c1")
    with pytest.raises(runtime.ContainerError):
        runtime.state(str(state), "c1")


def test_the_spec_is_applied_inside(bundle):
    from minidocker import runtime
    b, state, parent = bundle
    spec = write_spec(b, parent, "c2", ["sh", "-c", "hostname; id -u; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; "
                                                    "cat /proc/self/cgroup | grep -c ':/$'; grep -c ' /run tmpfs ' /proc/self/mounts; "
                                                    "echo x > /proc/sys/kernel/domainname"])
    spec["mounts"].append({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m"]})
    (b / "config.json").write_text(json.dumps(spec))
    r, w = os.pipe()
    proc = runtime.create(str(state), "c2", str(b), stdio=(None, w, w))
    os.close(w)
    try:
        runtime.start(str(state), "c2")
        code = proc.wait(10)
        out = os.read(r, 65536).decode()
    finally:
        runtime.delete(str(state), "c2", force=True)
        os.close(r)
    lines = out.splitlines()
    assert code == 1 and lines[0] == "runc" and lines[1] == "0", out
    assert lines[2].split() == ["CapEff:", "0000000020000420"] and lines[3].split() == ["NoNewPrivs:", "1"], out
    assert int(lines[4]) >= 1, out                        # in a cgroup namespace: its own group is "/"
    assert lines[5] == "1", out                           # a mount of the spec's beyond the usual ones
    assert "Read-only file system" in out, out


def test_a_setup_error_is_a_create_error_and_leaves_nothing(bundle):
    from minidocker import runtime
    b, state, parent = bundle
    spec = write_spec(b, parent, "c3", ["true"])
    spec["mounts"].append({"destination": "/data", "type": "no-such-fs", "source": "x"})
    (b / "config.json").write_text(json.dumps(spec))
    with pytest.raises(Exception, match="/data"):
        runtime.create(str(state), "c3", str(b))
    assert not os.path.exists(state / "c3" / runtime.STATE_FILE)
    # Fields this runtime cannot honour are refused (or, harmless ones, named in a warning).
    spec = write_spec(b, parent, "c3", ["true"])
    spec["hooks"] = {"prestart": [{"path": "/bin/true"}]}
    (b / "config.json").write_text(json.dumps(spec))
    with pytest.raises(runtime.ContainerError, match="hooks"):
        runtime.create(str(state), "c3", str(b))
    from minidocker.runtime import spec as S
    spec.pop("hooks")
    spec["process"]["apparmorProfile"] = "x"
    spec["linux"]["resources"]["hugepageLimits"] = [{"pageSize": "2MB", "limit": 1}]
    assert S.unsupported(spec) == ([], ["process.apparmorProfile", "linux.resources.hugepageLimits"])


def test_terminal_through_a_console_socket_and_exec(bundle):
    from minidocker import runtime
    b, state, parent = bundle
    write_spec(b, parent, "c4", ["sh", "-c", "tty; sleep 30"], terminal=True)
    ours, theirs = socket.socketpair()
    proc = runtime.create(str(state), "c4", str(b), console_socket=theirs.fileno())
    theirs.close()
    try:
        _, fds, _, _ = socket.recv_fds(ours, 16, 1)
        master = fds[0]
        runtime.start(str(state), "c4")
        buf = b""
        while b"\n" not in buf:
            buf += os.read(master, 1024)
        assert buf.startswith(b"/dev/pts/"), buf
        r, w = os.pipe()
        ex = runtime.exec_process(str(state), "c4", {"args": ["cat", "/proc/1/cmdline"], "cwd": "/", "env": [],
                                                      "user": {"uid": 0, "gid": 0}}, stdio=(None, w, w))
        os.close(w)
        assert ex.wait(10) == 0
        assert os.read(r, 1024) == b"sleep\x0030\x00", "exec runs in the container's pid namespace (sh exec'd sleep)"
        os.close(r)
        os.close(master)
    finally:
        runtime.kill(str(state), "c4", signal.SIGKILL, all=True)
        proc.wait(10)
        runtime.delete(str(state), "c4", force=True)
        ours.close()


def test_kernel_tiocsctty_is_the_termios_constant():
    """The init and exec use kernel.TIOCSCTTY (no termios import on the start-up path): it must be
    the number this platform's termios has, or a container with a terminal gets no controlling tty."""
    import termios

    from minidocker import kernel as K
    assert K.TIOCSCTTY == termios.TIOCSCTTY


def test_start_of_a_short_workload_reaped_at_once(bundle, monkeypatch):
    """start() must hold the init's pidfd before it opens the exec fifo: the open lets the init
    exec, and ``true`` can exit and be reaped by the caller's monitor before the next line runs.
    The stand-in for pidfd_open makes that interleaving certain: if it is called while the fifo is
    already open, it first waits until the monitor's thread has reaped the init."""
    import threading
    from minidocker import runtime
    b, state, parent = bundle
    write_spec(b, parent, "c1", ["sh", "-c", "exit 0"])
    proc = runtime.create(str(state), "c1", str(b), stdio=(None, None, None))
    reaped = threading.Event()
    threading.Thread(target=lambda: (proc.wait(), reaped.set()), daemon=True).start()   # the monitor's waiter
    fifo = os.path.realpath(os.path.join(str(state), "c1", runtime.FIFO))
    real_pidfd_open = os.pidfd_open

    def pidfd_open_after_the_fifo(pid, *args):
        fds = os.listdir("/proc/self/fd")
        if any(os.path.realpath(f"/proc/self/fd/{fd}") == fifo for fd in fds if os.path.exists(f"/proc/self/fd/{fd}")):
            assert reaped.wait(30), "the init did not run once the fifo was open"
        return real_pidfd_open(pid, *args)

    monkeypatch.setattr(os, "pidfd_open", pidfd_open_after_the_fifo)
    try:
        runtime.start(str(state), "c1")
        monkeypatch.undo()
        assert reaped.wait(30) and proc.returncode == 0
    finally:
        monkeypatch.undo()
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        runtime.delete(str(state), "c1", force=True)


def test_detach_keys_filter_passes_near_misses_and_typed_text():
    """The monitor's detach-key filter (docker's escape proxy): bytes that only start the
    sequence are held until it is known; a repeated first key passes one copy and still detaches;
    text typed before the sequence reaches the container; the sequence split over reads works."""
    from minidocker.runtime.monitor import Attacher
    a = Attacher(None, {"stdin": True})                      # default ctrl-p ctrl-q
    assert a.filter_stdin(b"ls\r") == (b"ls\r", False)
    assert a.filter_stdin(b"x\x10") == (b"x", False)          # ctrl-p held back
    assert a.filter_stdin(b"\x10") == (b"\x10", False)        # ctrl-p ctrl-p: the first goes, the second is held
    assert a.filter_stdin(b"\x11") == (b"", True)             # … and ctrl-q completes the sequence
    b = Attacher(None, {"stdin": True, "detach_keys": "ctrl-a,b,c"})
    assert b.filter_stdin(b"echo\x01b\x01bc") == (b"echo\x01b", True)
