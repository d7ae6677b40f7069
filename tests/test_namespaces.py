"""The namespaces chapter against the real kernel, looking from inside and from outside.

Every process a test starts is a ``with spawn(...) as p`` (leaving the block kills and reaps it)
or goes through ``run``/``run_in`` (which wait, and kill on timeout).
"""
from __future__ import annotations

import errno
import importlib.util
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from conftest import need_root, need_tool
from minidocker import kernel as k
from minidocker import namespaces as ns

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / "labs" / "01-namespaces"
MAP = [ns.IdMap(0, 100000, 65536)]
privileged = pytest.mark.privileged


def wait_until(condition, timeout=3.0, interval=0.01):
    """Poll ``condition()`` until it returns something truthy; return that (or the last falsy)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def read_line(fd: int, timeout: float = 5.0) -> str:
    """Read one line from a pipe, giving up after ``timeout`` seconds."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError(f"no line within {timeout} s (got {data!r})")
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return data.decode()


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# --- unit tests: no new namespaces -------------------------------------------------------------

def test_kinds_and_names():
    assert ns.KINDS == ("pid", "mnt", "uts", "ipc", "net", "user", "cgroup")
    assert set(ns.PROC_NAMES) == set(ns.KINDS)
    assert all(os.path.exists(f"/proc/self/ns/{ns.PROC_NAMES[kind]}") for kind in ns.KINDS)
    assert ns.normalize_kinds(["network", "mount", "pid"]) == ("pid", "mnt", "net")
    assert ns.normalize_kinds("uts") == ("uts",)
    with pytest.raises(ValueError, match="unknown namespace 'bogus'"):
        ns.normalize_kinds(["bogus"])


def test_unshare_flags():
    assert ns.unshare_flags([]) == 0
    assert ns.unshare_flags(["pid", "uts"]) == k.CLONE_NEWPID | k.CLONE_NEWUTS
    assert ns.unshare_flags(["mnt"]) == k.CLONE_NEWNS          # "mnt" is CLONE_NEWNS, for history
    every = ns.unshare_flags(ns.KINDS)
    for flag in (k.CLONE_NEWPID, k.CLONE_NEWNS, k.CLONE_NEWUTS, k.CLONE_NEWIPC, k.CLONE_NEWNET,
                 k.CLONE_NEWUSER, k.CLONE_NEWCGROUP):
        assert every & flag
    assert not every & k.CLONE_NEWTIME


def test_ns_ids_of_self_are_the_link_inodes():
    ids = ns.ns_ids()
    assert set(ids) == set(ns.KINDS)
    for kind, ino in ids.items():
        assert os.readlink(f"/proc/self/ns/{kind}") == f"{kind}:[{ino}]"
    assert ns.ns_ids(os.getpid()) == ids
    assert all(ns.same_namespaces("self", os.getpid()).values())


def test_ns_ids_of_missing_process():
    with pytest.raises(ProcessLookupError):
        ns.ns_ids(2 ** 22 + 1)  # above pid_max's ceiling: never a process


def test_exit_code():
    assert ns.exit_code(0) == 0
    assert ns.exit_code(3 << 8) == 3
    assert ns.exit_code(signal.SIGKILL) == 137
    assert ns.exit_code(signal.SIGTERM) == 143


def test_map_text_checks_ranges():
    assert ns.map_text([ns.IdMap(0, 100000, 65536)]) == "0 100000 65536\n"
    assert ns.map_text([ns.IdMap(0, 1000, 1), ns.IdMap(1, 100000, 10)]) == "0 1000 1\n1 100000 10\n"
    with pytest.raises(ValueError, match="overlapping"):
        ns.map_text([ns.IdMap(0, 1000, 10), ns.IdMap(5, 2000, 10)])
    with pytest.raises(ValueError):
        ns.map_text([])


def test_write_id_maps_sequence_as_root(monkeypatch):
    monkeypatch.setattr(ns, "_has_capability", lambda cap: True)
    rec = k.Recorder()
    ns.write_id_maps(4242, MAP, MAP, rec)
    assert [(c.name, c.args) for c in rec.calls] == [
        ("write_file", ("/proc/4242/uid_map", "0 100000 65536\n")),
        ("write_file", ("/proc/4242/gid_map", "0 100000 65536\n")),
    ]


def test_write_id_maps_denies_setgroups_only_without_cap_setgid(monkeypatch):
    monkeypatch.setattr(ns, "_has_capability", lambda cap: False)
    rec = k.Recorder()
    ns.write_id_maps(7, [ns.IdMap(0, 1000, 1)], [ns.IdMap(0, 1000, 1)], rec)
    assert [c.args[0] for c in rec.calls] == ["/proc/7/uid_map", "/proc/7/setgroups", "/proc/7/gid_map"]
    assert rec.calls[1].args[1] == "deny"


def test_become_root_sequence():
    rec = k.Recorder()
    ns.become_root(rec, MAP, MAP, setgroups_allowed=True)
    assert [str(c) for c in rec.calls] == [
        "setgroups([])", "setresgid(0)", "setresuid(0)", "prctl(PR_SET_DUMPABLE, 1)"]
    rec = k.Recorder()
    ns.become_root(rec, MAP, MAP, setgroups_allowed=False)  # after "deny", setgroups(2) fails
    assert rec.names() == ["setresgid", "setresuid", "prctl"]
    rec = k.Recorder()
    ns.become_root(rec, [ns.IdMap(1000, 100000, 1)], None)  # 0 not mapped: stay who we are
    assert rec.calls == []


@privileged
def test_unshare_failure_is_reported_with_the_flags():
    need_root()
    rec = k.Recorder(fail={"unshare": errno.EPERM})   # A's unshare fails as the kernel would
    before = open_fds()
    with pytest.raises(ns.SpawnError) as info:
        ns.spawn(["true"], ["pid", "uts"], kernel=rec)
    assert info.value.errno == errno.EPERM
    assert "unshare(CLONE_NEWUTS|CLONE_NEWPID) failed: EPERM" in str(info.value)
    assert open_fds() == before


# --- each kind, for real -------------------------------------------------------------------------

@privileged
@pytest.mark.parametrize("kind", ns.KINDS)
def test_each_kind_gives_a_new_namespace(kind):
    need_root()
    mine = ns.ns_ids()
    with ns.spawn(["sleep", "10"], [kind]) as a, ns.spawn(["sleep", "10"], [kind]) as b:
        ids_a, ids_b = ns.ns_ids(a.pid), ns.ns_ids(b.pid)
        assert ids_a[kind] != mine[kind]
        assert ids_a[kind] != ids_b[kind]
        # and only that kind: every other namespace is still ours
        assert {x for x, same in ns.same_namespaces("self", a.pid).items() if not same} == {kind}


@privileged
def test_pid_1_inside():
    need_root()
    shell = "/bin/busybox" if os.path.exists("/bin/busybox") else None
    argv = [shell, "sh", "-c", "echo $$"] if shell else ["sh", "-c", "echo $$"]
    result = ns.run(argv, ["pid"])
    assert (result.code, result.stdout) == (0, "1\n"), result


@privileged
def test_pid_namespace_seen_from_inside_with_its_own_proc():
    need_root()
    need_tool("ps")
    result = ns.run(["ps", "-e", "-o", "pid=,comm="], ["pid", "mnt"], setup=ns.remount_proc)
    assert result.code == 0, result
    assert result.stdout.split() == ["1", "ps"]


@privileged
def test_uts_hostname_is_private():
    need_root()
    host = socket.gethostname()
    kernel = k.Linux()

    def rename_and_report():
        kernel.sethostname("inside-box")
        os.write(1, os.uname().nodename.encode())
        return 0

    result = ns.run(rename_and_report, ["uts"])
    assert (result.code, result.stdout) == (0, "inside-box")
    assert socket.gethostname() == host


@privileged
def test_net_namespace_has_only_lo():
    need_root()
    result = ns.run(["cat", "/proc/net/dev"], ["net"])  # /proc/net -> /proc/self/net: per process
    names = [line.split(":")[0].strip() for line in result.stdout.splitlines()[2:]]
    assert names == ["lo"], result.stdout
    with open("/proc/net/dev") as f:  # the host has more than lo, or the test would prove nothing
        assert len(f.read().splitlines()[2:]) >= 1


@privileged
def test_user_namespace_maps_root_to_100000():
    need_root()
    result = ns.run(["sh", "-c", "id -u; id -g; cat /proc/self/uid_map"], ["user"],
                    uid_map=MAP, gid_map=MAP)
    lines = result.stdout.split("\n")
    assert result.code == 0, result
    assert lines[:2] == ["0", "0"]
    assert lines[2].split() == ["0", "100000", "65536"]
    with ns.spawn(["sleep", "10"], ["user", "pid"], uid_map=MAP, gid_map=MAP) as p:
        assert ns.status_field(p.pid, "Uid").split() == ["100000"] * 4   # seen from the host
        assert ns.status_field(p.pid, "Gid").split() == ["100000"] * 4
        assert ns.read_id_map(p.pid, "uid") == MAP
        assert ns.read_id_map(p.pid, "gid") == MAP


@privileged
def test_user_namespace_without_maps_is_nobody():
    need_root()
    result = ns.run(["id", "-u"], ["user"])
    assert result.stdout.strip() == "65534"


# --- joining ------------------------------------------------------------------------------------

@privileged
def test_enter_calls_setns_user_first_mount_last():
    need_root()
    with ns.spawn(["sleep", "10"], ns.KINDS, uid_map=MAP, gid_map=MAP) as target:
        before = open_fds()
        rec = k.Recorder()                      # records, changes nothing in this process
        joined = ns.enter(target.pid, kernel=rec)
        assert joined == ["user", "cgroup", "ipc", "uts", "net", "pid", "mnt"]
        assert rec.names() == ["setns"] * 7
        assert [c.args[1] for c in rec.calls] == [ns.CLONE_FLAGS[kind] for kind in joined]
        assert open_fds() == before            # the namespace fds were closed again
        assert ns.enter(target.pid, ["net", "uts"], kernel=k.Recorder()) == ["uts", "net"]
    assert ns.enter(os.getpid(), kernel=k.Recorder()) == []   # nothing to join in our own


@privileged
def test_nsenter_joins_a_running_process():
    need_root()
    kernel = k.Linux()
    kinds = ["pid", "mnt", "uts", "ipc", "net"]
    with ns.spawn(["sleep", "10"], kinds, setup=lambda: kernel.sethostname("target-box")) as target:
        result = ns.run_in(target.pid, ["sh", "-c", "hostname; echo $$"])
        assert result.stdout.split() == ["target-box", "2"]   # pid 2: the target is pid 1
        with ns.spawn_in(target.pid, ["sleep", "10"]) as joined:
            assert all(ns.same_namespaces(target.pid, joined.pid).values())
            assert not ns.same_namespaces("self", joined.pid)["net"]
        assert ns.nsenter(target.pid, ["sh", "-c", "exit 5"]) == 5
        assert ns.nsenter(target.pid, ["nosuch-command"]) == 127


@privileged
def test_nsenter_into_a_user_namespace_becomes_its_root():
    need_root()
    with ns.spawn(["sleep", "10"], ["user", "pid", "uts"], uid_map=MAP, gid_map=MAP) as target:
        result = ns.run_in(target.pid, ["id", "-u"])
        assert result.stdout.strip() == "0", result
        with ns.spawn_in(target.pid, ["sleep", "10"]) as joined:
            assert ns.status_field(joined.pid, "Uid").split()[0] == "100000"
            assert ns.same_namespaces(target.pid, joined.pid)["user"]


# --- errors and exit codes ------------------------------------------------------------------------

@privileged
def test_missing_command_gives_127_and_a_message():
    need_root()
    result = ns.run(["nosuch-command"], ["pid", "uts"])
    assert result.code == 127
    assert result.stderr == "minidocker: exec 'nosuch-command': No such file or directory\n"
    with ns.spawn(["nosuch-command"], ["pid"], stderr=open(os.devnull, "w")) as p:
        assert p.wait(5) == 127
        assert p.exec_error == "minidocker: exec 'nosuch-command': No such file or directory"


@privileged
def test_not_executable_gives_126(tmp_path):
    need_root()
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)                        # no x bit: even root may not execute it
    result = ns.run([str(script)], ["pid"])
    assert result.code == 126
    assert result.stderr == f"minidocker: exec '{script}': Permission denied\n"


@privileged
def test_callable_target():
    need_root()
    result = ns.run(lambda: print("from python, pid", os.getpid()) or 4, ["pid"])
    assert (result.code, result.stdout) == (4, "from python, pid 1\n")
    result = ns.run(lambda: 1 / 0, ["pid"])
    assert result.code == 1 and "ZeroDivisionError" in result.stderr


@privileged
def test_setup_error_is_raised_in_the_caller():
    need_root()
    before = open_fds()

    def broken():
        raise k.KernelError(errno.EBUSY, "mount", ("a", "/b", None, 0, None))

    with pytest.raises(ns.SpawnError, match=r"setup: mount\('a', '/b'.*EBUSY") as info:
        ns.spawn(["true"], ["pid", "mnt"], setup=broken)
    assert info.value.errno == errno.EBUSY
    assert open_fds() == before


@privileged
@pytest.mark.parametrize("script,code", [("exit 0", 0), ("exit 3", 3), ("kill -9 $$", 137),
                                        ("kill -TERM $$", 143)])
def test_exit_codes_pass_through(script, code):
    need_root()
    # no pid namespace: as pid 1, the shell could not even kill itself (next test)
    with ns.spawn(["sh", "-c", script], ["uts", "ipc"]) as p:
        assert p.wait(5) == code


@privileged
def test_pid_1_cannot_be_killed_from_inside():
    need_root()
    result = ns.run(["sh", "-c", "kill -9 $$; echo survived"], ["pid"])
    assert (result.code, result.stdout) == (0, "survived\n")


@privileged
def test_kill_and_timeout():
    need_root()
    with ns.spawn(["sleep", "10"], ["pid"]) as p:
        assert p.poll() is None
        with pytest.raises(TimeoutError):
            p.wait(0.05)
        p.kill()
        assert p.wait(5) == 137
        p.kill()                        # after the end: nothing happens
    assert p.returncode == 137


@privileged
def test_pid_1_without_handler_ignores_sigterm():
    need_root()
    with ns.spawn(["sleep", "10"], ["pid"]) as p:
        p.kill(signal.SIGTERM)
        with pytest.raises(TimeoutError):
            p.wait(0.3)                 # pid_namespaces(7): no handler, no delivery
        p.kill(signal.SIGKILL)          # SIGKILL from an ancestor namespace always arrives
        assert p.wait(5) == 137


@privileged
def test_spawn_leaks_no_fds_into_the_container():
    need_root()
    before = open_fds()
    stray = os.open("/", os.O_RDONLY)   # like runc's CVE-2024-21626: a host directory fd
    os.set_inheritable(stray, True)
    try:
        result = ns.run(["ls", "/proc/self/fd"], ["pid"])
    finally:
        os.close(stray)
    assert sorted(result.stdout.split()) == ["0", "1", "2", "3"]  # 3: ls's own directory fd
    for _ in range(5):
        ns.run(["true"], ["pid", "user"], uid_map=MAP, gid_map=MAP)
    assert open_fds() == before


@privileged
def test_pass_fds_are_kept():
    need_root()
    r, w = os.pipe()
    try:
        result = ns.run(["ls", "/proc/self/fd"], ["pid"], pass_fds=[w])
    finally:
        os.close(r)
        os.close(w)
    assert str(w) in result.stdout.split() and str(r) not in result.stdout.split()


@privileged
def test_monitor_forwards_signals():
    need_root()
    r, w = os.pipe()
    try:
        script = 'trap "exit 9" TERM; echo ready; while :; do sleep 0.02; done'
        with ns.spawn(["sh", "-c", script], ["pid", "uts"], stdout=w) as p:
            os.close(w)
            w = -1
            assert read_line(r) == "ready\n"
            os.kill(p.monitor_pid, signal.SIGTERM)   # the monitor passes it on to the workload,
            assert p.wait(5) == 9                    # pid 1 with a handler (the trap): delivered
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


# --- pid 1: init ------------------------------------------------------------------------------------

@privileged
@pytest.mark.parametrize("script,code", [("true", 0), ("exit 3", 3), ("kill -9 $$", 137)])
def test_init_returns_the_workload_code(script, code):
    need_root()
    with ns.spawn(ns.init_target(["sh", "-c", script]), ["pid"]) as p:
        assert p.wait(5) == code


@privileged
def test_init_forwards_sigterm():
    need_root()
    r, w = os.pipe()
    try:
        script = 'trap "exit 7" TERM; echo ready; while :; do sleep 0.02; done'
        with ns.spawn(ns.init_target(["sh", "-c", script]), ["pid"], stdout=w) as p:
            os.close(w)
            w = -1
            assert read_line(r) == "ready\n"           # the trap is set
            p.kill(signal.SIGTERM)                     # to pid 1 (init), which has a handler
            assert p.wait(5) == 7
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


@privileged
def test_init_makes_sigterm_work_for_a_plain_workload():
    need_root()
    with ns.spawn(ns.init_target(["sleep", "10"]), ["pid"]) as p:
        wait_until(lambda: [c for c in ns.children(p.pid) if c[2] == "sleep"])
        p.kill(signal.SIGTERM)
        assert p.wait(5) == 143


ORPHANS = "(sleep 0.05 &); (sleep 0.05 &); exec sleep 10"


@privileged
def test_without_init_orphans_stay_zombies():
    need_root()
    with ns.spawn(["sh", "-c", ORPHANS], ["pid"]) as p:
        zombies = wait_until(lambda: [c for c in ns.children(p.pid) if c[1] == "Z"] if
                             len([c for c in ns.children(p.pid) if c[1] == "Z"]) == 2 else None)
        assert zombies and all(c[2] == "sleep" for c in zombies)   # pid 1 is `sleep`: never waits


@privileged
def test_init_reaps_orphans():
    need_root()
    with ns.spawn(ns.init_target(["sh", "-c", ORPHANS]), ["pid"]) as p:
        # The orphans are re-parented to init (pid 1) and exit after 0.05 s. Wait until only the
        # workload is left: anything else still a child after that would be an unreaped zombie.
        time.sleep(0.3)
        kids = wait_until(lambda: (lambda c: c if [x[2] for x in c] == ["sleep"] else None)(ns.children(p.pid)))
        assert kids and kids[0][1] != "Z" and kids[0][2] == "sleep", ns.children(p.pid)
        assert not [c for c in ns.children(p.pid) if c[1] == "Z"]


# --- helpers for the notebook and the diagram -------------------------------------------------------

@privileged
def test_describe_and_processes_by_namespace():
    need_root()
    with ns.spawn(["sleep", "10"], ["net", "uts"]) as p:
        text = ns.describe(p.pid, reference=os.getpid())
        assert "OWN" in text and "shared" in text
        own = [line.split()[0] for line in text.splitlines()[1:] if "OWN" in line]
        assert own == ["uts", "net"]
        by_ns = ns.processes_by_namespace(["net"])
        members = by_ns["net"][ns.ns_ids(p.pid)["net"]]
        assert p.pid in members and p.monitor_pid in members   # the monitor unshared, then forked
        assert os.getpid() in by_ns["net"][ns.ns_ids()["net"]]


@privileged
def test_namespace_diagram(tmp_path):
    need_root()
    graphviz = pytest.importorskip("graphviz")
    from minidocker.diagrams import namespaces as diagram
    need_tool("dot")
    with ns.spawn(["sleep", "10"], ["pid", "net"]) as p:
        g = diagram.namespace_graph([os.getpid(), p.pid])
        assert isinstance(g, graphviz.Digraph)
        assert f"ns_net_{ns.ns_ids(p.pid)['net']}" in g.source
        assert f"pid {p.pid}  sleep" in g.source
        path = diagram.render(g, "test-namespaces")
    try:
        assert path == REPO / "diagrams" / "test-namespaces.svg"
        assert path.read_text().lstrip().startswith(("<?xml", "<svg"))
    finally:
        path.unlink()


# --- the lab ------------------------------------------------------------------------------------------

def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module   # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


@privileged
def test_lab_checker_fails_the_skeleton_and_passes_the_reference():
    need_root()
    need_tool("unshare")
    check = _load("lab01_check", LAB / "check.py")
    skeleton = _load("lab01_skeleton", LAB / "skeleton.py")
    assert check.REFERENCE == "minidocker.namespaces"
    on_skeleton = check.check(skeleton)
    assert on_skeleton and not any(ok for _, ok, _ in on_skeleton), on_skeleton
    assert all(detail.startswith("not implemented yet") for _, _, detail in on_skeleton), on_skeleton
    on_reference = check.check(importlib.import_module(check.REFERENCE))
    assert [name for name, ok, _ in on_reference if not ok] == [], on_reference
    assert [n for n, _, _ in on_reference] == [n for n, _, _ in on_skeleton]
