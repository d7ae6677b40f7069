"""A helper process that holds pyroute2 for a daemon: netlink calls made there, not in minidockerd.

What this teaches
-----------------
A library can be the right tool and still too heavy to load into a long-lived server: importing
pyroute2 loads ~340 modules and ~25 MB, which would stay in minidockerd's memory for its whole life
after the first container on a bridge (issue 11: a daemon idles in ≤ 40 MB; heavy imports lazy or
in helper processes). So the daemon sends its netlink work — the functions of ``links`` that talk
netlink — to one helper process, started at the first call, which imports pyroute2 once and serves
calls one at a time: ``(function name, args, kwargs)`` pickled, length-prefixed, over a socketpair;
the answer is the result or the exception. The helper is a fresh interpreter (not a fork of the
multi-threaded daemon) and exits when the daemon closes its end — also when the daemon dies.

Notebooks, labs and tests call ``links`` in their own process, as before; only a daemon turns this on
(``links.offload()``). Man pages: socketpair(2), unix(7).
"""
from __future__ import annotations

import os
import pickle
import socket
import struct
import subprocess
import sys
import threading

_HEADER = struct.Struct("!I")


def _send(sock: socket.socket, obj) -> None:
    data = pickle.dumps(obj)
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv(sock: socket.socket):
    """One message, or None at end of stream (also one cut short)."""
    head = _read(sock, _HEADER.size)
    body = _read(sock, _HEADER.unpack(head)[0]) if head is not None else None
    return pickle.loads(body) if body is not None else None


def _read(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


class Worker:
    """The daemon's side: ``call(name, *args, **kwargs)`` runs ``links.<name>`` in the helper."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sock: socket.socket | None = None
        self.proc: subprocess.Popen | None = None

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [package_parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from minidocker.network.worker import serve; serve(int(sys.argv[1]))",
             str(theirs.fileno())], pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)   # a Ctrl-C to the daemon's terminal is the daemon's to handle
        theirs.close()
        self.sock = ours

    def call(self, name: str, *args, **kwargs):
        with self.lock:
            if self.sock is None:
                self._start()
            try:
                _send(self.sock, (name, args, kwargs))
                answer = _recv(self.sock)
            except OSError:
                answer = None
            if answer is None:   # the helper died: the next call starts another
                self._stop()
                raise OSError(f"the netlink helper process ended during links.{name}")
            ok, value = answer
            if ok:
                return value
            raise value

    def _stop(self) -> None:
        if self.sock is not None:
            self.sock.close()   # EOF: the helper exits
            self.sock = None
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        with self.lock:
            self._stop()


def serve(fd: int) -> None:
    """The helper's loop: one call at a time until the daemon closes its end."""
    from . import links
    sock = socket.socket(fileno=fd)
    while True:
        try:
            request = _recv(sock)
        except OSError:
            return
        if request is None:
            return
        name, args, kwargs = request
        try:
            answer = (True, getattr(links, name)(*args, **kwargs))
        except Exception as e:  # noqa: BLE001 - handed back to the caller, who raises it
            try:
                pickle.dumps(e)
            except Exception:  # noqa: BLE001 - an exception pickle cannot carry
                e = OSError(getattr(e, "errno", None) or 0, f"{type(e).__name__}: {e}")
            answer = (False, e)
        _send(sock, answer)
