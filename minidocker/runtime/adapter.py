"""The one place where ``minidocker-runtime`` (cli.py) meets the runtime's Python API (``runtime/__init__``).

What this teaches
-----------------
runc's *process model*, which is what lets conmon (podman's monitor) or minidocker's own monitor be a
container's parent although a separate program made it:

* ``create`` forks the container's init into its namespaces and cgroup; the init prepares
  everything (root filesystem, hostname, terminal, credentials) and then **blocks opening the exec
  fifo** for writing. ``runtime.create`` makes this process a child subreaper, so the init is our
  child; when this command exits, the init is re-parented to *our* nearest subreaper — conmon
  (``prctl(PR_SET_CHILD_SUBREAPER)``), which from then on collects its exit status.
* ``start`` opens the fifo for reading: the init writes a byte and execs. "created" vs "running" is
  just: does the fifo still exist?
* ``state`` derives the status from the kernel, not from a daemon: pid *and start time* (a recycled
  pid is not ours), a zombie counts as stopped, a frozen cgroup is "paused".

This module adapts the API's names and errors to runc's (one exception type, runc's messages and
checks where the API is more lenient), writes the pid files, and waits for foreground processes
forwarding signals as ``runc run`` does. Nothing here touches the kernel beyond signals.
"""
from __future__ import annotations

import os
import signal
from contextlib import contextmanager

DEFAULT_ROOT = "/run/minidocker-runtime"


class RuntimeFailure(Exception):
    """An error for the user: the message is what runc would print (exit status 1)."""


@contextmanager
def _runc_errors():
    """The API's errors (ContainerError, SpecError, ValueError, KernelError...) as one failure."""
    try:
        yield
    except RuntimeFailure:
        raise
    except (RuntimeError, ValueError, OSError) as e:
        raise RuntimeFailure(str(e) or type(e).__name__) from None


def signal_number(name: str | int) -> int:
    """runc's signal syntax: ``KILL``, ``SIGKILL``, ``9``."""
    text = str(name).upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(getattr(signal.Signals, text))
    except AttributeError:
        raise RuntimeFailure(f"unknown signal {name!r}") from None


def _write_pid(path: str | None, pid: int) -> None:
    if path:
        from ..util import atomic_write
        atomic_write(os.path.abspath(path), str(pid), fsync=False)  # a live pid: no use after a reboot


class Runtime:
    """runc's verbs over a state directory (``--root``)."""

    def __init__(self, root: str = DEFAULT_ROOT):
        self.root = os.path.abspath(root)

    @staticmethod
    def _api():
        from .. import runtime
        return runtime

    def state(self, cid: str) -> dict:
        with _runc_errors():
            return self._api().state(self.root, cid)

    def list(self) -> list[dict]:
        with _runc_errors():
            return self._api().list_containers(self.root)

    def create(self, cid: str, bundle: str, *, pid_file: str | None = None,
               console_socket: str | None = None, preserve_fds: int = 0, no_new_keyring: bool = False):
        """-> the init (a ``namespaces.Process``, our child until we exit)."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        with _runc_errors():
            return self._api().create(self.root, cid, bundle, console_socket=console_socket,
                                      pid_file=pid_file and os.path.abspath(pid_file),
                                      no_new_keyring=no_new_keyring, preserve_fds=preserve_fds)

    def start(self, cid: str) -> None:
        with _runc_errors():
            self._api().start(self.root, cid)

    def kill(self, cid: str, sig: int = signal.SIGTERM, all_: bool = False) -> None:
        with _runc_errors():
            self._api().kill(self.root, cid, sig, all=all_)

    def delete(self, cid: str, force: bool = False) -> None:
        """As runc: a directory without a record (an aborted create) is removed; ``--force`` on a
        container that does not exist succeeds (callers clean up after failures with it)."""
        d = os.path.join(self.root, cid)
        if "/" not in cid and os.path.isdir(d) and not os.path.exists(os.path.join(d, self._api().STATE_FILE)):
            import shutil
            shutil.rmtree(d, ignore_errors=True)
            if not force:
                raise RuntimeFailure(f"container {cid} does not exist")
            return
        if force and not os.path.isdir(d):
            return
        with _runc_errors():
            self._api().delete(self.root, cid, force)

    def pause(self, cid: str) -> None:
        if self.state(cid)["status"] not in ("running", "created"):
            raise RuntimeFailure("container not running")
        with _runc_errors():
            self._api().pause(self.root, cid)

    def resume(self, cid: str) -> None:
        if self.state(cid)["status"] != "paused":
            raise RuntimeFailure("container not paused")
        with _runc_errors():
            self._api().resume(self.root, cid)

    def update(self, cid: str, resources: dict) -> list[str]:
        if self.state(cid)["status"] == "stopped":
            raise RuntimeFailure("container not running")
        with _runc_errors():
            return self._api().update(self.root, cid, resources)

    def pids(self, cid: str) -> list[int]:
        with _runc_errors():
            return self._api().ps(self.root, cid)

    def bundle_process(self, cid: str) -> dict:
        """The container's own ``process`` (what ``exec COMMAND`` starts from, as runc does)."""
        with _runc_errors():
            from .spec import load
            return dict(load(self.state(cid)["bundle"])["process"])

    def exec(self, cid: str, process: dict, *, pid_file: str | None = None,
             console_socket: str | None = None, preserve_fds: int = 0):
        """-> the new process (our child until we exit: then the caller's subreaper's)."""
        if preserve_fds:
            raise RuntimeFailure("exec --preserve-fds is not supported yet")
        with _runc_errors():
            proc = self._api().exec_process(self.root, cid, process, console_socket=console_socket)
        _write_pid(pid_file, proc.pid)
        return proc


def wait_child(proc) -> int:
    """Wait for our own child (``run``, ``exec`` without -d), forwarding signals to it as runc
    does; -> its exit code, 128+N when killed by signal N."""
    def forward(sig, _frame):
        proc.kill(sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                signal.SIGUSR2, signal.SIGWINCH):
        signal.signal(sig, forward)
    return proc.wait()
