"""A container's stdio over a hijacked connection: ``exec``, ``attach`` and the plumbing ``run`` shares.

What this teaches
-----------------
``POST /containers/ID/attach`` and ``POST /exec/ID/start`` answer ``101 UPGRADED`` and hand the
socket over (the *hijack*): from then on it carries the process's stdin one way and its output the
other, multiplexed in docker's 8-byte frames (stream, 0, 0, 0, size) unless the process has a TTY
(then the bytes are raw). The client's part, here:

* :func:`copy_output` demultiplexes the frames to fds 1 and 2 (or copies a TTY's bytes as they are);
* :func:`pump_stdin` copies the terminal to the socket, half-closes it at EOF, and notices the detach
  keys (ctrl-p ctrl-q) — the daemon watches for them too and ends the stream, the container runs on;
* :func:`raw_terminal` puts the terminal in raw mode (termios(3)) while a TTY is attached, so
  ctrl-c, ctrl-d and the arrows reach the container instead of the local line discipline;
* :func:`stream` is the session made of them, for ``run``, ``start -a``, ``exec`` and ``attach``.

``exec`` = ``POST /containers/ID/exec`` + ``POST /exec/ID/start`` (hijacked) + ``GET /exec/ID/json``
for the exit code; ``attach`` registers ``wait`` before attaching, as docker does, and reads the
exit code from it. Standard library only, like the rest of the CLI.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading

from .client import APIError, Client, read_frames
from .signals import exit_on_interrupt, proxy_signals

DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q (the daemon watches for them too and ends the stream)


def pump_stdin(conn, detached=None) -> None:
    """stdin -> the connection until EOF (then half-close), or until the detach keys (sets ``detached``)."""
    recent = b""
    try:
        while True:
            data = os.read(0, 65536)
            if not data:
                break
            conn.send(data)
            recent = (recent + data)[-len(DETACH_KEYS):]
            if detached is not None and recent == DETACH_KEYS:
                detached.set()
                return
    except OSError:
        pass
    finally:
        try:
            conn.close_write()
        except OSError:
            pass


def raw_terminal():
    """Raw mode on the controlling terminal; returns the function that restores it."""
    import termios
    import tty
    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    tty.setraw(fd)
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, old)


# ---- exec and attach ----------------------------------------------------------------------------
def cmd_exec(c: Client, a) -> int:
    from .run import parse_env  # (-e as run takes it; run imports this module, so not at the top)
    body = {"AttachStdin": a.interactive and not a.detach, "AttachStdout": not a.detach,
            "AttachStderr": not a.detach, "Tty": a.tty, "Cmd": a.command, "Env": parse_env(a.env),
            "WorkingDir": a.workdir or "", "User": a.user or "", "DetachKeys": a.detach_keys or "",
            "Privileged": a.privileged}
    if a.tty:
        try:
            sz = os.get_terminal_size(sys.stdout.fileno())
            body["ConsoleSize"] = [sz.lines, sz.columns]
        except OSError:
            pass
    eid = c.request("POST", f"/containers/{a.container}/exec", body=body).check().json()["Id"]
    if a.detach:
        c.request("POST", f"/exec/{eid}/start", body={"Detach": True, "Tty": a.tty}).check()
        return 0
    conn = c.hijack("POST", f"/exec/{eid}/start", body={"Detach": False, "Tty": a.tty,
                                                        "ConsoleSize": body.get("ConsoleSize")})
    restore = raw_terminal() if a.tty and sys.stdin.isatty() else None
    stream(conn, a.tty, a.interactive, restore, watch_detach=False)  # (the daemon handles exec's DetachKeys)
    info = Client(c.host).request("GET", f"/exec/{eid}/json").check().json()
    return int(info.get("ExitCode") or 0)


def copy_output(conn, tty: bool) -> None:
    """The process's output -> fds 1 and 2: docker's frames demultiplexed, or a TTY's bytes as they are."""
    if tty:
        while True:
            data = conn.read()
            if not data:
                return
            os.write(1, data)
    for stream, payload in read_frames(conn.read):
        os.write(2 if stream == 2 else 1, payload)


def stream(conn, tty: bool, stdin: bool, restore=None, watch_detach: bool = True) -> bool:
    """The session on a hijacked connection: stdin pumped to it (with ``stdin``; else its write side
    closed at once), its output copied out until it ends; then the terminal put back (``restore``)
    and the connection closed. True when the user typed the detach keys (``watch_detach``)."""
    detached = threading.Event()
    if stdin:
        threading.Thread(target=pump_stdin, args=(conn, detached if watch_detach else None), daemon=True).start()
    else:
        conn.close_write()
    try:
        copy_output(conn, tty)
    finally:
        if restore:
            restore()
        conn.close()
    return detached.is_set()


def cmd_attach(c: Client, a) -> int:
    info = c.request("GET", f"/containers/{a.container}/json").check().json()
    if not info["State"]["Running"]:
        raise APIError(409, "You cannot attach to a stopped container, start it first")
    tty, stdin = info["Config"]["Tty"], info["Config"]["OpenStdin"] and not a.no_stdin
    q = {"stream": True, "stdout": True, "stderr": True, "stdin": stdin}
    if a.detach_keys:
        q["detachKeys"] = a.detach_keys
    # Registered before attaching (as docker does): the exit code is read from it when the output ends.
    wait = Client(c.host).open_stream("POST", f"/containers/{info['Id']}/wait", query={"condition": "not-running"})
    conn = c.hijack("POST", f"/containers/{a.container}/attach", query=q)
    if a.sig_proxy and not tty:
        proxy_signals(c, info["Id"])  # Ctrl-C goes to the container; we end with its output
    else:
        exit_on_interrupt()           # --sig-proxy=false (or a TTY): Ctrl-C ends the attach, 130
    detached = stream(conn, tty, stdin, raw_terminal() if tty and sys.stdin.isatty() else None)
    if detached or (stdin and a.detach_keys):  # detached: the container runs on
        wait.close()
        return 0
    try:
        return int(json.loads(b"".join(wait) or b"{}").get("StatusCode", 0))
    except ValueError:
        return 0


# ---- the parsers --------------------------------------------------------------------------------
def add_exec(sub, verb: str) -> None:
    x = sub.add_parser(verb, help="run a command in a running container")
    x.add_argument("-i", "--interactive", action="store_true")
    x.add_argument("-t", "--tty", action="store_true")
    x.add_argument("-d", "--detach", action="store_true")
    x.add_argument("-e", "--env", action="append", default=[])
    x.add_argument("-w", "--workdir")
    x.add_argument("-u", "--user")
    x.add_argument("--privileged", action="store_true", help="give extended privileges to the command")
    x.add_argument("--detach-keys")
    x.add_argument("container")
    x.add_argument("command", nargs=argparse.REMAINDER)
    x.set_defaults(fn=cmd_exec)


def add_attach(sub, verb: str) -> None:
    at = sub.add_parser(verb, help="attach to a running container's stdio")
    at.add_argument("--no-stdin", action="store_true")
    at.add_argument("--detach-keys")
    at.add_argument("--sig-proxy", type=_bool_flag, nargs="?", const=True, default=True, metavar="BOOL",
                    help="proxy received signals to the container (default true; --sig-proxy=false)")
    at.add_argument("container")
    at.set_defaults(fn=cmd_attach)


def _bool_flag(text: str) -> bool:
    """Go's strconv.ParseBool, as docker's boolean flags take it (--sig-proxy=false)."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")
