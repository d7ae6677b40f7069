"""Lab 01 — namespaces. Fill in the four functions marked TODO.

The names and signatures are those of minidocker/namespaces.py (the reference solution), so
`check.py` can run the same checks against your file and against the real module. Read the
chapter notebook (notebooks/01-namespaces.ipynb) first; man pages: namespaces(7), unshare(2),
user_namespaces(7), pid_namespaces(7).

Run the checks (as root):  .venv/bin/python labs/01-namespaces/check.py
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

from minidocker.kernel import NAMESPACE_FLAGS, Linux

KINDS = ("pid", "mnt", "uts", "ipc", "net", "user", "cgroup")


# --- given: you do not need to change these --------------------------------------------------------

@dataclass(frozen=True)
class IdMap:
    """One line of /proc/PID/uid_map: ids container_id.. inside are host_id.. outside."""
    container_id: int
    host_id: int
    size: int = 1


def exit_code(waitstatus: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128+N when killed by signal N."""
    code = os.waitstatus_to_exitcode(waitstatus)
    return 128 - code if code < 0 else code


class Process:
    """What spawn() returns. ``pid``: the workload (B) as the host sees it; ``monitor_pid``: the
    child A that waits for it and exits the same way — the process we wait() for."""

    def __init__(self, pid: int, monitor_pid: int):
        self.pid = pid
        self.monitor_pid = monitor_pid
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            done, status = os.waitpid(self.monitor_pid, os.WNOHANG)
            if done:
                self.returncode = exit_code(status)
            elif deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"process {self.pid} still running after {timeout} s")
            else:
                time.sleep(0.005)
        return self.returncode

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def __enter__(self) -> "Process":
        return self

    def __exit__(self, *exc) -> None:
        if self.returncode is None:
            self.kill()
            self.wait()


# --- task 1 ---------------------------------------------------------------------------------------

def ns_ids(pid: int | str = "self") -> dict[str, int]:
    """Return {kind: namespace id} for every kind in KINDS, for process ``pid``.

    The id of a namespace is the inode number of the symbolic link /proc/PID/ns/KIND.
    """
    # Hint: `ls -l /proc/self/ns` shows links like  pid -> 'pid:[4026531836]'.
    # Hint: os.stat() follows the link; its .st_ino is the number between the brackets.
    raise NotImplementedError("TODO: ns_ids — read the inode of each /proc/PID/ns/KIND")


# --- task 2 ---------------------------------------------------------------------------------------

def same_namespaces(a: int | str, b: int | str) -> dict[str, bool]:
    """Return {kind: True if processes a and b are in the same namespace of that kind}."""
    # Hint: two calls to ns_ids and one dict comprehension.
    raise NotImplementedError("TODO: same_namespaces — compare ns_ids(a) and ns_ids(b) kind by kind")


# --- task 3 ---------------------------------------------------------------------------------------

def write_id_maps(pid, uid_map: list[IdMap] | None, gid_map: list[IdMap] | None, kernel=None) -> None:
    """Write /proc/PID/uid_map and /proc/PID/gid_map for a process that has just unshared a user
    namespace. Each map is one line per IdMap: "container_id host_id size\\n".

    Write through the kernel object: kernel.write_file(path, text) — the checker replays your
    calls on a Recorder. Order: uid_map first, then gid_map.
    """
    # Hint: kernel = kernel or Linux()
    # Hint: the kernel wants the whole map in ONE write(2), and accepts it only once.
    # Hint: /proc/PID/setgroups must get "deny" before gid_map only when the writer lacks
    #       CAP_SETGID (unprivileged). We are root: do not write it (it would stop setgroups(2)
    #       inside the container for good). See user_namespaces(7), "Interaction with setgroups".
    raise NotImplementedError("TODO: write_id_maps — write uid_map then gid_map via kernel.write_file")


# --- task 4 ---------------------------------------------------------------------------------------

def spawn(target: list[str], namespaces, *, uid_map=None, gid_map=None, kernel=None,
          stdin=None, stdout=None, stderr=None, pass_fds=()) -> Process:
    """Run the argv ``target`` in new namespaces of the given kinds; return a Process.

    The shape (see the notebook for why each step is there):
      parent --fork--> A: kernel.unshare(flags)
                          [user ns: tell the parent, wait until it wrote the id maps]
                       A --fork--> B: pid 1 of the new pid namespace
                          [user ns: setresgid(0), setresuid(0) through the kernel object]
                          dup2 stdout onto fd 1 if given; os.execvp(target[0], target)
                       A: send B's pid to the parent; waitpid(B); exit with B's code
      parent: read B's pid, return Process(pid=B, monitor_pid=A)
    """
    # Hints:
    # * flags: OR together NAMESPACE_FLAGS[kind] for each kind (imported above).
    # * Two pipes: one child->parent ("ready for maps", then B's pid), one parent->A ("maps done").
    #   A pipe end you do not use must be closed in each process, or reads never see EOF.
    # * In every forked child, finish with os._exit(code) inside try/finally: a child that
    #   returns runs the caller's code a second time (here: the checker, or pytest!).
    # * CLONE_NEWUSER: the parent writes /proc/A/uid_map with your write_id_maps(A, ...).
    # * If execvp fails, write a message to fd 2 and os._exit(127).
    # * A: after waitpid(B), os._exit(exit_code(status)) — 137 when B was SIGKILLed is fine.
    raise NotImplementedError("TODO: spawn — fork, unshare, (id maps), fork again, exec")
