"""Checks for lab 01 (namespaces): run them against your skeleton.py or the reference module.

    .venv/bin/python labs/01-namespaces/check.py              # your labs/01-namespaces/skeleton.py
    .venv/bin/python labs/01-namespaces/check.py --reference  # minidocker.namespaces
    minidocker lab check 01 [--reference]                     # the same, through the CLI

Each check drives the real kernel (so: run as root) and compares with what the kernel says,
measured independently of your code (os.stat, util-linux's unshare(1), /proc).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from minidocker.kernel import Linux, Recorder
from minidocker.labs import expect as _expect
from minidocker.labs import run_checks, script_main

REFERENCE = "minidocker.namespaces"
NEEDS_ROOT = "it creates real namespaces"
TIMEOUT = 30   # seconds per check: a spawn that deadlocks fails its check, naming where it hung
KINDS = ("pid", "mnt", "uts", "ipc", "net", "user", "cgroup")
HERE = Path(__file__).resolve().parent

Result = tuple[str, bool, str]


# --- measuring without the student's code ----------------------------------------------------------

def _ids(pid) -> dict[str, int]:
    return {kind: os.stat(f"/proc/{pid}/ns/{kind}").st_ino for kind in KINDS}


def _helper(*unshare_args: str) -> subprocess.Popen:
    """A `sleep` in new namespaces made by util-linux's unshare(1) (which execs sleep: same pid).
    Returns once the namespaces exist."""
    proc = subprocess.Popen(["unshare", *unshare_args, "sleep", "30"])
    mine = _ids("self")
    deadline = time.monotonic() + 5
    while _ids(proc.pid) == mine:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"unshare {' '.join(unshare_args)} did not start")
        time.sleep(0.005)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _eventually(what: str, get: Callable, want, timeout: float = 3.0) -> str:
    """Like _expect, but give a just-forked process a moment to exec."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = get()
        except (OSError, StopIteration) as e:
            got = f"<{type(e).__name__}>"
        if got == want or time.monotonic() > deadline:
            return _expect(what, got, want)
        time.sleep(0.01)


def _run(module, argv, kinds, timeout=10, **kwargs) -> tuple[int, str]:
    """module.spawn(argv, kinds) with stdout captured; (exit code, output). Always reaps."""
    with tempfile.TemporaryFile() as out:
        proc = module.spawn(argv, kinds, stdout=out, **kwargs)
        try:
            code = proc.wait(timeout)
        finally:
            _cleanup(proc)
        out.seek(0)
        return code, out.read().decode()


def _cleanup(proc) -> None:
    if getattr(proc, "returncode", None) is None:
        try:
            proc.kill(signal.SIGKILL)
            proc.wait(5)
        except Exception:
            pass


# --- the checks ------------------------------------------------------------------------------------

def check_ns_ids_self(m) -> str:
    return _expect("ns_ids()", m.ns_ids(), _ids("self")) and "matches /proc/self/ns"


def check_ns_ids_other(m) -> str:
    helper = _helper("--uts", "--net")
    try:
        got = m.ns_ids(helper.pid)
        _expect(f"ns_ids({helper.pid})", got, _ids(helper.pid))
        return "matches /proc/PID/ns of a process in new uts+net namespaces"
    finally:
        _stop(helper)


def check_same_namespaces(m) -> str:
    helper = _helper("--uts", "--net")
    try:
        want = {kind: kind not in ("uts", "net") for kind in KINDS}
        _expect("same_namespaces(self, helper)", m.same_namespaces(os.getpid(), helper.pid), want)
        _expect("same_namespaces(self, self)", m.same_namespaces("self", os.getpid()),
                {kind: True for kind in KINDS})
        return "uts and net differ, the rest is shared"
    finally:
        _stop(helper)


def check_write_id_maps_real(m) -> str:
    helper = _helper("--user")
    try:
        m.write_id_maps(helper.pid, [m.IdMap(0, 100000, 65536)], [m.IdMap(0, 200000, 1000)], Linux())
        _expect("uid_map", _read(f"/proc/{helper.pid}/uid_map").split(), ["0", "100000", "65536"])
        _expect("gid_map", _read(f"/proc/{helper.pid}/gid_map").split(), ["0", "200000", "1000"])
        return "the kernel shows 0 100000 65536 / 0 200000 1000"
    finally:
        _stop(helper)


def check_write_id_maps_calls(m) -> str:
    rec = Recorder()
    m.write_id_maps(1234, [m.IdMap(0, 100000, 65536)], [m.IdMap(0, 100000, 65536)], rec)
    calls = [(c.name, c.args[0]) for c in rec.calls]
    _expect("kernel calls", calls, [("write_file", "/proc/1234/uid_map"),
                                    ("write_file", "/proc/1234/gid_map")])
    _expect("uid_map text", rec.calls[0].args[1].split(), ["0", "100000", "65536"])
    return "uid_map then gid_map, no setgroups 'deny' (we are root)"


def check_spawn_pid_1(m) -> str:
    code, out = _run(m, ["sh", "-c", "echo $$"], ["pid"])
    _expect("exit code", code, 0)
    return _expect("`echo $$` in a new pid namespace", out.strip(), "1")


def check_spawn_uts(m) -> str:
    host = _read("/proc/sys/kernel/hostname")
    script = "echo lab-box > /proc/sys/kernel/hostname; cat /proc/sys/kernel/hostname"
    code, out = _run(m, ["sh", "-c", script], ["uts"])
    _expect("exit code", code, 0)
    _expect("hostname inside", out.strip(), "lab-box")
    _expect("host's hostname afterwards", _read("/proc/sys/kernel/hostname"), host)
    return "hostname changed inside only"


def check_spawn_exit_code(m) -> str:
    code, _ = _run(m, ["sh", "-c", "exit 3"], ["pid", "uts"])
    return _expect("exit code of `exit 3`", code, 3)


def check_spawn_pid_and_namespaces(m) -> str:
    proc = m.spawn(["sleep", "30"], ["pid", "net"])
    try:
        _eventually("process at .pid", lambda: _read(f"/proc/{proc.pid}/comm").strip(), "sleep")
        mine, theirs = _ids("self"), _ids(proc.pid)
        _expect("kinds that differ from ours", [k for k in KINDS if mine[k] != theirs[k]], ["pid", "net"])
        proc.kill(signal.SIGKILL)
        _expect("exit code after SIGKILL", proc.wait(5), 137)
        return ".pid is the workload, in new pid+net namespaces only"
    finally:
        _cleanup(proc)


def check_spawn_user(m) -> str:
    idmap = [m.IdMap(0, 100000, 65536)]
    code, out = _run(m, ["sh", "-c", "id -u; cat /proc/self/uid_map"], ["user", "pid"],
                     uid_map=idmap, gid_map=idmap)
    _expect("exit code", code, 0)
    lines = out.splitlines()
    _expect("`id -u` inside", lines[:1], ["0"])
    _expect("uid_map inside", lines[1].split() if len(lines) > 1 else None, ["0", "100000", "65536"])
    proc = m.spawn(["sleep", "30"], ["user", "pid"], uid_map=idmap, gid_map=idmap)
    try:
        _eventually("Uid seen from the host", lambda: next(
            line.split()[1] for line in _read(f"/proc/{proc.pid}/status").splitlines()
            if line.startswith("Uid:")), "100000")
    finally:
        _cleanup(proc)
    return "root inside is uid 100000 outside"


CHECKS: list[tuple[str, Callable]] = [
    ("1 ns_ids: own namespaces", check_ns_ids_self),
    ("1 ns_ids: another process", check_ns_ids_other),
    ("2 same_namespaces", check_same_namespaces),
    ("3 write_id_maps: kernel shows the maps", check_write_id_maps_real),
    ("3 write_id_maps: calls in order", check_write_id_maps_calls),
    ("4 spawn: pid 1 inside", check_spawn_pid_1),
    ("4 spawn: own hostname", check_spawn_uts),
    ("4 spawn: exit code passes through", check_spawn_exit_code),
    ("4 spawn: .pid and its namespaces", check_spawn_pid_and_namespaces),
    ("4 spawn: user namespace, root -> 100000", check_spawn_user),
]


def check(module) -> list[Result]:
    """Run every check against ``module``, each in a child of its own with TIMEOUT (minidocker.labs)."""
    return run_checks(CHECKS, module, timeout=TIMEOUT)


if __name__ == "__main__":
    sys.exit(script_main(sys.argv[1:], check, REFERENCE, HERE / "skeleton.py", "lab 01 (namespaces)",
                         needs_root=NEEDS_ROOT))
