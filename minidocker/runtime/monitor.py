"""The per-container monitor: the container's parent, which outlives the daemon (as conmon / shim).

What this teaches
-----------------
If the daemon were the container's parent, restarting or crashing the daemon would take every
container with it, and nobody would be left to collect the exit status. So the daemon starts one
small process per container, *detached* (own session, re-parented to init), and that monitor:

* creates the container through the runtime's in-process API (``runtime.create``: the container's
  init is forked as *our* child — we are a child subreaper — and stops just before exec), and
  holds its pidfd: ``kill`` signals go through it, so a recycled pid is never signalled;
* owns the container's stdio — pipes, or a pty with ``-t`` — writes every line to the log file in
  docker's json-file format and copies it to every attached client;
* serves a small control socket (``ctl.sock`` in the container directory) where the daemon — this
  one, or a restarted one — asks to ``attach``, ``start``, ``wait``, ``resize``, or reads ``state``;
* when the container's pid 1 exits, drains its output, writes ``exit.json`` atomically, answers
  every waiter and leaves.

Control protocol (one JSON line per connection, then):
``{"op":"attach","stdin":b,"stdout":b,"stderr":b[,"raw":b]}`` -> ``ok`` line, then the stream: docker's
8-byte framed stdout/stderr (raw bytes with a TTY, or when ``raw`` asks so) from the monitor, stdin bytes to it; the client's
half-close closes the container's stdin when StdinOnce. ``{"op":"start"}`` -> ``{"pid":N}`` once
the container was told to exec. ``{"op":"wait"}`` -> the exit record when it exits.
``{"op":"resize","h":H,"w":W}``, ``{"op":"kill","signal":N}`` and ``{"op":"state"}`` -> one JSON line.

Options (conmon's command-line flags, here ``monitor`` in the daemon's ``container.json`` or the
exec's ``config.json``): ``tty``, ``open_stdin``, ``stdin_once``, ``console_size``.

The daemon starts it as ``python -S -c … DIR READY_FD`` (see :func:`spawn_monitor`): ``-S`` skips
site-packages scanning, which halves the interpreter's start-up time.
"""
from __future__ import annotations

import errno
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

from .. import kernel as K
from ..util import atomic_write_json, now_rfc3339, read_json
from ..wire import STDERR, STDOUT, encode_frame

LOG_LINE_MAX = 16 * 1024  # docker's json-file splits longer lines into partial messages too


def short_unix_path(directory: str, name: str) -> tuple[str, int]:
    """A UNIX socket path for DIR/NAME that fits sun_path's 108 bytes however deep DIR is.

    Opens DIR with O_PATH and names the socket through ``/proc/self/fd/N/NAME`` (conmon's trick).
    The caller closes the returned fd after bind() or connect()."""
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{name}", fd


def connect_ctl(container_dir: str, timeout: float | None = None) -> socket.socket:
    path, fd = short_unix_path(container_dir, "ctl.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(path)
    except BaseException:
        s.close()
        raise
    finally:
        os.close(fd)
    return s


DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q, docker's default


def parse_detach_keys(spec: str | None) -> bytes:
    """docker's ``--detach-keys`` syntax: ``ctrl-p,ctrl-q``, ``a,ctrl-x``... -> the bytes to watch for."""
    if spec is None:
        return DEFAULT_DETACH_KEYS
    out = b""
    for key in [k.strip() for k in spec.split(",") if k.strip()]:
        if key.lower().startswith("ctrl-") and len(key) == 6:
            c = key[5].lower()
            table = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}
            out += bytes([ord(c) - ord("a") + 1]) if c.isalpha() else bytes([table.get(c, 0)])
        elif len(key) == 1:
            out += key.encode()
        else:
            raise ValueError(f"Invalid detach keys ({spec}) provided")
    return out


class Attacher:
    def __init__(self, sock: socket.socket, req: dict):
        self.sock = sock
        self.stdin = bool(req.get("stdin"))
        self.stdout = req.get("stdout", True)
        self.stderr = req.get("stderr", True)
        # Detach keys: bytes matching a prefix of the sequence are held back until we know whether
        # the whole sequence follows (then the client detaches) or not (then they are passed on).
        self.detach_keys = parse_detach_keys(req.get("detach_keys")) if self.stdin else b""
        self.held = b""
        # "raw": the client's own framing choice (an exec start's Tty, as dockerd follows it);
        # None follows the process: raw bytes from a pty, 8-byte frames otherwise.
        self.raw = req.get("raw")

    def filter_stdin(self, data: bytes) -> tuple[bytes, bool]:
        """-> (bytes for the container, whether the client typed the detach sequence)."""
        if not self.detach_keys:
            return data, False
        out = bytearray()
        for b in data:
            candidate = self.held + bytes([b])
            # Not the sequence after all: pass on what was held, as little as needed for the rest
            # to be a prefix again (ctrl-p ctrl-p ctrl-q passes one ctrl-p and detaches).
            while candidate and not self.detach_keys.startswith(candidate):
                out += candidate[:1]
                candidate = candidate[1:]
            self.held = candidate
            if candidate == self.detach_keys:
                self.held = b""
                return bytes(out), True
        return bytes(out), False

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False


class Monitor:
    log_name: str | None = "container.log"  # json-file log; an exec's output is not logged (as docker)

    def __init__(self, container_dir: str):
        self.dir = container_dir
        self.opts = self.options()
        self.tty = bool(self.opts.get("tty"))
        self.proc = None
        self.sel = selectors.DefaultSelector()
        self.attachers: list[Attacher] = []
        self.waiters: list[socket.socket] = []
        self.pending: dict[socket.socket, bytes] = {}  # connections whose request line is incomplete
        self.log = open(os.path.join(container_dir, self.log_name), "ab", buffering=0) if self.log_name else None
        self.partial = {STDOUT: b"", STDERR: b""}
        self.pid = 0
        self.exit: dict | None = None
        self.started = False

    # ---- container stdio --------------------------------------------------------------------------
    def make_stdio(self):
        """Pipes (or a pty) for the container's fd 0, 1, 2. Returns the child's ends."""
        self.master = self.stdin_w = None
        self.outputs: dict[int, int] = {}
        self.console_sock = self.console_child = None
        if self.tty:
            # The pty is made *inside* the container, from its own /dev/ptmx (runc's console socket):
            # a pty of the host's devpts would not exist in the container's /dev/pts, and `tty` or
            # ttyname(3) would fail there. The container's init sends us the master over this socket.
            self.console_sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            self.console_child = child.detach()
            null = os.open(os.devnull, os.O_RDWR)
            return null, null, null, [null, self.console_child]
        if self.opts.get("open_stdin"):
            stdin_r, self.stdin_w = os.pipe()
        else:
            stdin_r = os.open(os.devnull, os.O_RDONLY)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        for r, stream in ((out_r, STDOUT), (err_r, STDERR)):
            os.set_blocking(r, False)
            self.outputs[r] = stream
        return stdin_r, out_w, err_w, [stdin_r, out_w, err_w]

    def receive_console(self) -> None:
        """The pty master from the container's init (SCM_RIGHTS), once it is ready."""
        _, fds, _, _ = socket.recv_fds(self.console_sock, 16, 1)
        self.console_sock.close()
        if not fds:
            raise RuntimeError("the container did not send its console")
        self.master = fds[0]
        size = self.opts.get("console_size")
        if size:
            self.resize(*size)
        os.set_blocking(self.master, False)
        self.outputs[self.master] = STDOUT

    def resize(self, h: int, w: int) -> None:
        if self.master is not None:
            import fcntl
            import termios
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", int(h), int(w), 0, 0))

    def write_log(self, stream: int, data: bytes) -> None:
        """json-file: one JSON object per line of output, {"log","stream","time"} (docker's format)."""
        buf = self.partial[stream] + data
        lines = buf.split(b"\n")
        self.partial[stream] = lines.pop()
        out = []
        t = now_rfc3339()
        name = "stdout" if stream == STDOUT else "stderr"
        for line in lines:
            out.append(json.dumps({"log": (line + b"\n").decode("utf-8", "replace"), "stream": name, "time": t}))
        if len(self.partial[stream]) >= LOG_LINE_MAX:
            out.append(json.dumps({"log": self.partial[stream].decode("utf-8", "replace"), "stream": name, "time": t}))
            self.partial[stream] = b""
        if out and self.log:
            self.log.write(("\n".join(out) + "\n").encode())

    def flush_log(self) -> None:
        for stream, rest in self.partial.items():
            if rest and self.log:
                name = "stdout" if stream == STDOUT else "stderr"
                self.log.write((json.dumps({"log": rest.decode("utf-8", "replace"), "stream": name,
                                            "time": now_rfc3339()}) + "\n").encode())
                self.partial[stream] = b""

    def on_output(self, fd: int) -> bool:
        """Copy what the container wrote to the log and to every attached client. False at EOF."""
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        except OSError as e:  # a pty master reads EIO once the last slave fd is closed
            if e.errno != errno.EIO:
                raise
            data = b""
        if not data:
            self.sel.unregister(fd)
            os.close(fd)
            del self.outputs[fd]
            return False
        stream = self.outputs[fd]
        self.write_log(stream, data)
        for a in list(self.attachers):
            if not self.tty and not ((stream == STDOUT and a.stdout) or (stream == STDERR and a.stderr)):
                continue
            raw = self.tty if a.raw is None else a.raw
            if not a.send(data if raw else encode_frame(stream, data)):
                self.drop(a)
        return True

    # ---- control socket -------------------------------------------------------------------------
    def on_accept(self, listener: socket.socket) -> None:
        """Take a connection; its request line is read by the selector loop as it arrives.

        Never a blocking read here: this loop is single-threaded, and a client slow to send its line
        would stall every other one — the daemon's ``kill`` behind its own half-sent ``wait``, say."""
        conn, _ = listener.accept()
        conn.setblocking(False)
        self.pending[conn] = b""
        self.sel.register(conn, selectors.EVENT_READ, ("request", conn))

    def on_request_bytes(self, conn: socket.socket) -> None:
        """More of a request line; once it is whole, the request is served."""
        try:  # up to the newline only: what follows (an attach's stdin) is not ours to read
            peek = conn.recv(4096, socket.MSG_PEEK)
            chunk = conn.recv(peek.index(b"\n") + 1 if b"\n" in peek else len(peek))
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        line = self.pending[conn] + chunk
        if chunk and not line.endswith(b"\n") and len(line) < 65536:
            self.pending[conn] = line
            return
        self.sel.unregister(conn)
        del self.pending[conn]
        try:
            req = json.loads(line) if line.endswith(b"\n") else None
        except ValueError:
            req = None
        if not isinstance(req, dict):
            conn.close()
            return
        conn.settimeout(10)
        try:
            self.on_request(conn, req)
        except OSError:  # the client went away before its answer
            conn.close()

    def on_request(self, conn: socket.socket, req: dict) -> None:
        op = req.get("op")
        if op == "attach":
            if self.exit is not None:
                conn.sendall(b"exited\n")
                conn.close()
                return
            a = Attacher(conn, req)
            conn.sendall(b"ok\n")
            self.attachers.append(a)
            self.sel.register(conn, selectors.EVENT_READ, ("stdin", a))
        elif op == "start":
            if not self.started:
                try:
                    self.start_workload()
                except Exception as e:
                    conn.sendall(json.dumps({"error": str(e)}).encode() + b"\n")
                    conn.close()
                    return
                self.started = True
                self.started_at = now_rfc3339()
            conn.sendall(json.dumps({"pid": self.pid, "started_at": self.started_at}).encode() + b"\n")
            conn.close()
        elif op == "kill":  # through the pidfd we hold (namespaces.Process.kill)
            if self.exit is None and self.proc is not None:
                self.proc.kill(int(req.get("signal", signal.SIGTERM)))
            conn.sendall(json.dumps({"ok": self.exit is None}).encode() + b"\n")
            conn.close()
        elif op == "wait":
            if self.exit is not None:
                conn.sendall(json.dumps(self.exit).encode() + b"\n")
                conn.close()
            else:
                self.waiters.append(conn)
                self.sel.register(conn, selectors.EVENT_READ, ("waiter", conn))
        elif op == "resize":
            try:
                self.resize(req.get("h", 24), req.get("w", 80))
                conn.sendall(b'{"ok":true}\n')
            except OSError as e:
                conn.sendall(json.dumps({"error": str(e)}).encode() + b"\n")
            conn.close()
        elif op == "state":
            conn.sendall(json.dumps({"pid": self.pid, "started": self.started, "exit": self.exit}).encode() + b"\n")
            conn.close()
        else:
            conn.sendall(json.dumps({"error": f"unknown op {op!r}"}).encode() + b"\n")
            conn.close()

    def on_stdin(self, a: Attacher) -> None:
        try:
            data = a.sock.recv(65536)
        except OSError:
            data = b""
        if data:
            data, detach = a.filter_stdin(data)
            if a.stdin and data:
                target = self.master if self.tty else self.stdin_w
                if target is not None:
                    try:
                        os.write(target, data)  # blocking on purpose: stdin is back-pressured
                    except OSError:
                        pass
            if detach:  # ctrl-p ctrl-q: this client leaves (what it typed before goes in); the container runs on
                self.drop(a)
            return
        # The client half-closed (or went away). Stop reading from it; keep sending output.
        self.sel.unregister(a.sock)
        if a.stdin and self.opts.get("stdin_once") and self.stdin_w is not None:
            os.close(self.stdin_w)
            self.stdin_w = None

    def drop(self, a: Attacher) -> None:
        if a in self.attachers:
            self.attachers.remove(a)
            try:
                self.sel.unregister(a.sock)
            except (KeyError, ValueError):
                pass
            a.sock.close()

    # ---- lifecycle ------------------------------------------------------------------------------
    # The container's side (runtime.create / start / its cgroup). The exec monitor (exec.py)
    # overrides these: an exec'd process joins the container's cgroups and owns none.
    def options(self) -> dict:
        return (read_json(os.path.join(self.dir, "container.json")) or {}).get("monitor") or {}

    def runtime_id(self) -> tuple[str, str]:
        """(runtime root, container id): the container directory is bundle and state directory."""
        return os.path.dirname(self.dir), os.path.basename(self.dir)

    def create_workload(self, stdin, stdout, stderr):
        """Create the process this monitor watches: the container's init, blocked before exec."""
        from .. import runtime
        root, cid = self.runtime_id()
        try:  # a container started again: the previous run's runtime state goes first
            if runtime.state(root, cid)["status"] == "stopped":
                runtime.delete(root, cid)
        except runtime.ContainerError:
            pass
        return runtime.create(root, cid, self.dir, stdio=(stdin, stdout, stderr),
                              console_socket=self.console_child)

    def start_workload(self) -> None:
        from .. import runtime
        runtime.start(*self.runtime_id())

    def finish_cgroup(self) -> bool:
        """Remove the cgroup; True if the OOM killer killed something in it."""
        from .. import runtime
        from . import resources
        raw = read_json(os.path.join(self.dir, runtime.STATE_FILE)) or {}
        return resources.finish(raw["cgroup"]) if raw.get("cgroup") else False

    def run(self, ready_fd: int) -> int:
        K.Linux().prctl(K.PR_SET_CHILD_SUBREAPER, 1)
        path, dfd = short_unix_path(self.dir, "ctl.sock")
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        os.close(dfd)
        listener.listen(16)

        stdin, stdout, stderr, child_ends = self.make_stdio()
        try:
            self.proc = proc = self.create_workload(stdin, stdout, stderr)
        except Exception as e:
            os.write(ready_fd, json.dumps({"error": str(e) or type(e).__name__}).encode() + b"\n")
            os.close(ready_fd)
            listener.close()
            os.unlink(os.path.join(self.dir, "ctl.sock"))
            return 1
        finally:
            for fd in set(child_ends):
                os.close(fd)
        self.pid = proc.pid
        if self.tty:
            self.receive_console()
        os.write(ready_fd, json.dumps({"pid": self.pid}).encode() + b"\n")
        os.close(ready_fd)
        # Live pids only (meaningless after a reboot): atomic, not fsync'ed.
        atomic_write_json(os.path.join(self.dir, "monitor.json"), {"monitor_pid": os.getpid(), "pid": self.pid},
                          fsync=False)

        # Wait for the container in a thread; a pipe wakes the selector when it has exited.
        done_r, done_w = os.pipe()
        result = {}

        def waiter():
            result["code"] = proc.wait()
            result["finished_at"] = now_rfc3339()
            os.write(done_w, b"x")

        threading.Thread(target=waiter, daemon=True).start()
        self.sel.register(listener, selectors.EVENT_READ, ("accept", listener))
        self.sel.register(done_r, selectors.EVENT_READ, ("done", None))
        for fd in self.outputs:
            self.sel.register(fd, selectors.EVENT_READ, ("output", fd))

        exited = False
        drain_deadline = None
        while True:
            if exited and (not self.outputs or time.monotonic() > drain_deadline):
                break
            timeout = None if not exited else max(0.0, drain_deadline - time.monotonic())
            if not self.started and not exited:
                timeout = 1.0
            for key, _ in self.sel.select(timeout):
                kind, obj = key.data
                if kind == "accept":
                    self.on_accept(obj)
                elif kind == "request":
                    self.on_request_bytes(obj)
                elif kind == "output":
                    self.on_output(obj)
                elif kind == "stdin":
                    self.on_stdin(obj)
                elif kind == "waiter":  # a waiter that goes away is forgotten
                    if not obj.recv(1):
                        self.sel.unregister(obj)
                        self.waiters.remove(obj)
                        obj.close()
                elif kind == "done":
                    self.sel.unregister(done_r)
                    exited = True
                    # Output still buffered in the pipes is read before we report the exit.
                    drain_deadline = time.monotonic() + 2.0
        return self.finish(result, listener)

    def finish(self, result: dict, listener: socket.socket) -> int:
        self.flush_log()
        for fd in list(self.outputs):
            os.close(fd)
        code = result.get("code", 255)
        # The OOM killer's counter tells an OOM kill from a `kill -9`; then the cgroup goes.
        try:
            oom = self.finish_cgroup()
        except Exception as e:
            print(f"cgroup cleanup failed: {e}", file=sys.stderr)
            oom = False
        self.exit = {"exit_code": code, "finished_at": result.get("finished_at") or now_rfc3339(),
                     "oom_killed": oom, "error": ""}
        # Written before anyone is told, so a daemon that restarts later still learns the status.
        atomic_write_json(os.path.join(self.dir, "exit.json"), self.exit)
        listener.close()
        for conn in self.pending:  # a request not sent whole: its client falls back to exit.json
            conn.close()
        try:
            os.unlink(os.path.join(self.dir, "ctl.sock"))
        except FileNotFoundError:
            pass
        line = json.dumps(self.exit).encode() + b"\n"
        for w in self.waiters:
            try:
                w.sendall(line)
            except OSError:
                pass
            w.close()
        for a in self.attachers:
            try:
                a.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            a.sock.close()
        return 0


def detach_and_run(container_dir: str, ready_fd: int, kind: str = "container") -> int:
    """Become a detached monitor for ``container_dir`` and run it; report on ``ready_fd``.
    ``kind`` is "container" (the container's pid 1) or "exec" (a process joining it: exec.py)."""
    # Detach: a second fork, so that our parent (the daemon, or the launcher) can reap the first at
    # once and the monitor is re-parented to init. From here on, the daemon may come and go.
    if os.fork():
        return 0
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    log = os.open(os.path.join(container_dir, "monitor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(devnull)
    os.close(log)
    for s in (signal.SIGPIPE, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        if kind == "exec":
            from .exec import ExecMonitor
            code = ExecMonitor(container_dir).run(ready_fd)
        else:
            code = Monitor(container_dir).run(ready_fd)
    except BaseException as e:
        import traceback
        traceback.print_exc()
        try:
            os.write(ready_fd, json.dumps({"error": f"monitor failed: {e}"}).encode() + b"\n")
        except OSError:
            pass
        code = 1
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return detach_and_run(argv[0], int(argv[1]), argv[2] if len(argv) > 2 else "container")


def spawn_monitor(container_dir: str, timeout: float = 30.0, kind: str = "container") -> dict:
    """Start a detached monitor for the container in ``container_dir`` and wait until the container
    is created and paused before exec. Returns ``{"pid": N}``; raises RuntimeError with the
    container's setup error otherwise."""
    from . import launcher
    ready_r, ready_w = os.pipe()
    try:
        if launcher.current() is not None:  # the daemon's fork server: no interpreter start-up
            launcher.current().request(container_dir, ready_w, kind)
        else:  # a fresh interpreter (-S skips site-packages scanning: faster start-up)
            argv = launcher.python_argv("from minidocker.runtime.monitor import main; sys.exit(main())",
                                        container_dir, str(ready_w), kind)
            subprocess.Popen(argv,
                             pass_fds=(ready_w,), stdin=subprocess.DEVNULL, close_fds=True).wait(timeout)
    finally:
        os.close(ready_w)
    try:
        buf = b""
        deadline = time.monotonic() + timeout
        while not buf.endswith(b"\n"):
            import select
            r, _, _ = select.select([ready_r], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                raise RuntimeError("timed out waiting for the container to be created")
            chunk = os.read(ready_r, 4096)
            if not chunk:
                break
            buf += chunk
    finally:
        os.close(ready_r)
    try:
        reply = json.loads(buf or b"{}")
    except ValueError:
        reply = {"error": f"monitor said {buf!r}"}
    if "pid" not in reply:
        raise RuntimeError(reply.get("error") or "the monitor exited without creating the container "
                           f"(see {os.path.join(container_dir, 'monitor.log')})")
    return reply


def request(container_dir: str, req: dict, timeout: float | None = 10) -> dict:
    """One request/one-line answer on the monitor's control socket (start, state, resize, wait)."""
    with connect_ctl(container_dir, timeout) as s:
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf) if buf else {}


if __name__ == "__main__":
    sys.exit(main())
