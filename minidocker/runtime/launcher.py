"""A fork server for container monitors: why a container can start in milliseconds, not a second.

What this teaches
-----------------
Each container gets its own monitor process (``monitor.py``). Starting it as a new Python
interpreter costs an interpreter start-up plus every import — well over 100 ms — on *every*
``docker run``. Android's zygote and Python's ``multiprocessing`` "forkserver" solve the same
problem the same way: start one process early, import everything once, and from then on ``fork()``
it. A forked child shares the parent's already-initialised memory copy-on-write, so it is ready at
once.

The daemon starts one launcher. To start a monitor it sends the container directory plus the write
end of a "ready" pipe over a SOCK_SEQPACKET socket (the file descriptor travels as SCM_RIGHTS
ancillary data: unix(7)). The launcher forks; the child detaches exactly as the stand-alone monitor
does (second fork, new session) and runs the monitor. The launcher itself never touches a container.

Why fork here and not in the daemon? The daemon runs threads (asyncio's executor); forking a
multi-threaded process copies locks held by other threads in an unknown state. The launcher is
single-threaded by construction. It exits when the daemon closes its socket, and also when the
daemon dies (PR_SET_PDEATHSIG) — monitors it started are detached and live on.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading

from .. import kernel as K


def serve(fd: int) -> int:
    """The launcher's loop (runs in its own process)."""
    daemon = os.getppid()  # before the slow imports: the daemon may be gone by the time they end
    from . import exec as _exec, init, monitor  # noqa: F401  — imported once, inherited by every fork
    from .. import namespaces, rootfs  # noqa: F401
    try:  # libseccomp through pyseccomp, loaded once here rather than in every monitor
        from ..security import seccomp
        seccomp.compile_bpf({"defaultAction": "SCMP_ACT_ALLOW"})
    except Exception:  # noqa: BLE001 - a monitor that needs it reports the real error
        pass

    K.Linux().prctl(K.PR_SET_PDEATHSIG, signal.SIGTERM)
    sock = socket.socket(fileno=fd)
    # The daemon's end closing (EOF below) or its death (PDEATHSIG) ends us; the parent check is a
    # third guard, for a daemon that died before the prctl, or whose end of the socket a child of
    # its own still holds: an orphaned launcher would otherwise wait forever.
    sock.settimeout(2.0)
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, 65536, 4)
        except InterruptedError:
            continue
        except TimeoutError:
            if os.getppid() != daemon:
                return 0
            continue
        if not msg:
            return 0  # the daemon closed its end
        request = json.loads(msg)
        ready_fd = fds[0]
        for extra in fds[1:]:
            os.close(extra)
        pid = os.fork()
        if pid == 0:
            sock.close()
            try:
                code = monitor.detach_and_run(request["dir"], ready_fd, request.get("kind", "container"))
            except BaseException:
                code = 1
            os._exit(code)
        os.close(ready_fd)
        os.waitpid(pid, 0)  # the intermediate child exits as soon as the monitor is detached


def python_argv(statement: str, *args: str) -> list[str]:
    """``python -S -c …`` running ``statement`` with this package and our site-packages importable.
    ``-S`` skips the site module (its .pth scanning halves the start-up time), so the paths the
    site module would add — where h11 and pyseccomp live — are given by hand: the site-packages
    already on our path (a ``-S`` process got them from its parent or PYTHONPATH), then the site
    module's own list (under ``-S`` in a venv that is the base interpreter's, not the venv's)."""
    import site
    pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ours = [p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages")]
    paths = list(dict.fromkeys([pkg_parent] + [p for p in ours + site.getsitepackages() if os.path.isdir(p)]))
    code = f"import sys; sys.path[:0] = {paths!r}; {statement}"
    return [sys.executable, "-S", "-c", code, *args]


class Launcher:
    """The daemon's handle on its launcher process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None

    def _ensure(self) -> socket.socket:
        if self._sock is not None and self._proc and self._proc.poll() is None:
            return self._sock
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = python_argv(f"from minidocker.runtime.launcher import serve; sys.exit(serve({theirs.fileno()}))")
        self._proc = subprocess.Popen(argv, pass_fds=(theirs.fileno(),),
                                      stdin=subprocess.DEVNULL, close_fds=True)
        theirs.close()
        self._sock = ours
        return ours

    def request(self, container_dir: str, ready_w: int, kind: str = "container") -> None:
        """Ask for a monitor for ``container_dir``; it reports on ``ready_w`` (which we keep)."""
        with self._lock:
            sock = self._ensure()
            socket.send_fds(sock, [json.dumps({"dir": container_dir, "kind": kind}).encode()], [ready_w])

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            if self._proc is not None:
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
                self._proc = None


_launcher: Launcher | None = None


def enable() -> Launcher:
    """Make :func:`monitor.spawn_monitor` fork monitors from a launcher (the daemon calls this)."""
    global _launcher
    if _launcher is None:
        _launcher = Launcher()
    return _launcher


def current() -> Launcher | None:
    return _launcher


def disable() -> None:
    global _launcher
    if _launcher is not None:
        _launcher.close()
        _launcher = None
