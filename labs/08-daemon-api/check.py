"""Checker for lab 08 (the daemon's rules). Pure functions first; the last checks plug your
``split_version`` and ``version_error`` into a real minidockerd (its own root, socket, cgroup parent,
bridge and nftables table, in a temporary directory) and compare its answers on the API's version
negotiation (``/_ping``, ``/version``, ``/vX.Y/...``) with those of a minidockerd running the
reference. Those need root (a daemon makes namespaces and mounts): as a user they fail, saying so.

    minidocker lab check 08                                    # your copy (after `minidocker lab start 08`)
    .venv/bin/python labs/08-daemon-api/check.py [FILE]        # checks FILE (default: the skeleton)
    .venv/bin/python labs/08-daemon-api/check.py --reference   # checks minidocker.daemon.rules
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:
    sys.path.insert(0, str(HERE.parents[1]))

from minidocker.labs import expect, run_checks, script_main  # noqa: E402

REFERENCE = "minidocker.daemon.rules"
TIMEOUT = 10
DAEMON_TIMEOUT = 60


def _table(m, fn_name: str, cases) -> str:
    """Call ``m.<fn_name>(*args)`` for each (args, want); the first wrong answer fails with both."""
    fn = getattr(m, fn_name)
    for args, want in cases:
        shown = ", ".join(repr(a) for a in args)
        expect(f"{fn_name}({shown})", fn(*args), want)
    return f"{len(cases)} cases"


def check_encode_small(m) -> str:
    return expect("encode_frame(1, b'hi')", m.encode_frame(1, b"hi"), b"\x01\x00\x00\x00\x00\x00\x00\x02hi")


def check_encode_big(m) -> str:
    return expect("encode_frame(2, 70000 bytes)[:8]", m.encode_frame(2, b"x" * 70000)[:8],
                  b"\x02\x00\x00\x00\x00\x01\x11\x70")


def check_decode(m) -> str:
    cut = m.encode_frame(1, b"partial")[:10]
    data = m.encode_frame(1, b"out\n") + m.encode_frame(2, b"err\n") + m.encode_frame(1, b"") + cut
    expect("decode_frames(3 frames + a cut one)", m.decode_frames(data),
           ([(1, b"out\n"), (2, b"err\n"), (1, b"")], cut))
    return "complete frames out, the cut frame kept"


def check_decode_resume(m) -> str:
    whole = m.encode_frame(2, b"abcdef")
    frames, rest = m.decode_frames(whole[:5])
    expect("decode_frames(first 5 bytes)", (frames, rest), ([], whole[:5]))
    return expect("decode_frames(rest + the other bytes)", m.decode_frames(rest + whole[5:]), ([(2, b"abcdef")], b""))


def check_api_bool(m) -> str:
    cases = [((v,), True) for v in ["1", "True", "true", "yes", "on", "anything"]]
    cases += [((v,), False) for v in ["", "0", "no", "False", "FALSE", "none", " false "]]
    cases += [((None,), False), ((None, True), True)]
    return _table(m, "api_bool", cases)


def check_split_version(m) -> str:
    cases = {"/v1.50/containers/json": ("1.50", "/containers/json"), "/_ping": (None, "/_ping"),
             "/v1.99/version": ("1.99", "/version"), "/v1.24/images/a/b:c/json": ("1.24", "/images/a/b:c/json"),
             "/version": (None, "/version"), "/vx/containers": (None, "/vx/containers")}
    return _table(m, "split_version", [((p,), want) for p, want in cases.items()])


def check_backoff(m) -> str:
    seq, d = [], 0.0
    for _ in range(12):
        d = m.next_backoff(d, 0.5)
        seq.append(round(d, 3))
    expect("first four delays", seq[:4], [0.1, 0.2, 0.4, 0.8])
    expect("longest delay (after 12 crashes)", max(seq), 60.0)
    expect("next_backoff(12.8, 10.0) (it ran 10 s: reset)", m.next_backoff(12.8, 10.0), 0.1)
    return f"delays {seq}"


def check_should_restart(m) -> str:
    return _table(m, "should_restart", [
        (("no", 0, 0, 1, False), False), (("always", 0, 5, 0, False), True),
        (("unless-stopped", 0, 0, 0, False), True), (("always", 0, 0, 0, True), False),
        (("on-failure", 0, 9, 1, False), True), (("on-failure", 0, 0, 0, False), False),
        (("on-failure", 3, 2, 1, False), True), (("on-failure", 3, 3, 1, False), False),
        (("on-failure", 3, 0, 1, True), False)])


def check_next_state(m) -> str:
    return _table(m, "next_state", [
        (("created", "start"), "running"), (("running", "exit"), "exited"), (("running", "start"), None),
        (("running", "rm"), None), (("running", "rm -f"), "removing"), (("exited", "start"), "running"),
        (("exited", "rm"), "removing"), (("removing", "destroy"), "removed"), (("removing", "start"), None), (("running", "pause"), "paused"), (("paused", "unpause"), "running"),
        (("exited", "policy"), "restarting"), (("restarting", "stop"), "exited"), (("created", "pause"), None),
        (("exited", "kill"), None)])


def check_version_error(m) -> str:
    return _table(m, "version_error", [
        (("1.50",), None), (("1.24",), None), (("1.12",), _reference().version_error("1.12")),
        (("1.51",), _reference().version_error("1.51")), (("2.0",), _reference().version_error("2.0")),
        (("1.9",), _reference().version_error("1.9"))])


# ---- a real minidockerd with your functions plugged in ---------------------------------------------

def _reference():
    from minidocker.daemon import rules
    return rules


def _serve(sock: str, base: str, split_version, version_error) -> None:
    """In a forked child: plug the two functions into the wire module the daemon and its HTTP layer
    call, then run minidockerd on a root, socket and network names of its own. Never returns."""
    code = 1
    try:
        from minidocker import wire
        from minidocker.daemon import main as daemon
        wire.split_version, wire.version_error = split_version, version_error
        log = os.open(os.path.join(base, "daemon.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        tag = f"{os.getpid() % 100000:05d}"
        code = daemon.main(["--root", os.path.join(base, "root"), "-H", "unix://" + sock, "--no-base-image",
                            "--cgroup-parent", f"minidocker-lab08-{tag}", "--bridge", f"mdlab{tag}",
                            "--nft-table", f"minidocker_lab08_{tag}"])
    finally:
        os._exit(code or 0)


def _request(sock: str, path: str) -> tuple[int, object]:
    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(20)
            self.sock.connect(sock)
    c = Conn("localhost", timeout=20)
    try:
        c.request("GET", path)
        r = c.getresponse()
        raw = r.read()
    except (http.client.HTTPException, ConnectionError) as e:  # the daemon failed on this request
        return "no answer", f"{type(e).__name__} (your function raised inside the daemon?)"
    finally:
        c.close()
    try:
        return r.status, json.loads(raw) if raw else ""
    except ValueError:
        return r.status, raw.decode(errors="replace")


def _answers(split_version, version_error, paths: list[str]) -> dict[str, tuple]:
    """A real minidockerd with these two functions: GET each path, then stop it and remove its files.
    The answer kept is (status, what matters: the error message, /version's ApiVersion, or the body)."""
    if os.geteuid() != 0:
        raise AssertionError("needs root: a real minidockerd (sudo minidocker lab check 08)")
    base = tempfile.mkdtemp(prefix="lab08-")
    sock = os.path.join(base, "d.sock")
    pid = os.fork()
    if pid == 0:
        _serve(sock, base, split_version, version_error)
    try:
        deadline = time.monotonic() + DAEMON_TIMEOUT - 10
        while not os.path.exists(sock):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                pid = 0
                log = open(os.path.join(base, "daemon.log"), errors="replace").read()[-1500:]
                raise AssertionError(f"minidockerd exited (status {status}) before listening:\n{log}")
            if time.monotonic() > deadline:
                raise AssertionError("minidockerd did not listen on its socket in time")
            time.sleep(0.05)  # polling for a socket file: there is nothing to wait on
        out = {}
        for path in paths:
            status, body = _request(sock, path)
            if isinstance(body, dict) and "message" in body:
                body = body["message"]
            elif isinstance(body, dict) and "ApiVersion" in body:
                body = "ApiVersion " + body["ApiVersion"]
            elif isinstance(body, list):
                body = f"a list of {len(body)}"
            out[path] = (status, body)
        return out
    finally:
        if pid:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
        shutil.rmtree(base, ignore_errors=True)


def _compare(m, paths: list[str]) -> str:
    ref = _reference()
    want = _answers(ref.split_version, ref.version_error, paths)
    got = _answers(m.split_version, m.version_error, paths)
    for path in paths:
        expect(f"GET {path} (status, answer)", got[path], want[path])
    return "; ".join(f"{p} -> {want[p][0]}" for p in paths)


def check_daemon_unversioned(m) -> str:
    return _compare(m, ["/_ping", "/version", "/containers/json"])


def check_daemon_in_range(m) -> str:
    return _compare(m, ["/v1.50/_ping", "/v1.24/version", "/v1.44/containers/json?all=1"])


def check_daemon_out_of_range(m) -> str:
    return _compare(m, ["/v1.12/version", "/v1.51/_ping", "/v2.0/containers/json", "/vx/version"])


CHECKS = [
    ("encode_frame: stdout 'hi'", check_encode_small),
    ("encode_frame: big-endian u32 length", check_encode_big),
    ("decode_frames: a cut frame kept for later", check_decode),
    ("decode_frames: a cut header completed", check_decode_resume),
    ("api_bool: dockerd's rule", check_api_bool),
    ("split_version: any /vX.Y prefix, or none", check_split_version),
    ("next_backoff: 100 ms doubling up to 60 s", check_backoff),
    ("should_restart: the restart policies", check_should_restart),
    ("next_state: the container state machine", check_next_state),
    ("version_error: the versions served, dockerd's messages", check_version_error),
    ("a real minidockerd: /_ping, /version without a prefix", check_daemon_unversioned, DAEMON_TIMEOUT),
    ("a real minidockerd: /v1.24 ... /v1.50 served", check_daemon_in_range, DAEMON_TIMEOUT),
    ("a real minidockerd: too old, too new refused with 400", check_daemon_out_of_range, DAEMON_TIMEOUT),
]


def check(module) -> list:
    return run_checks(CHECKS, module, timeout=TIMEOUT)


if __name__ == "__main__":
    sys.exit(script_main(sys.argv[1:], check, REFERENCE, HERE / "skeleton.py", "lab 08 (daemon rules)"))
