"""Checker for lab 08 (the daemon's rules). Pure functions: no root, no daemon needed.

    minidocker lab check 08                                    # your copy (after `minidocker lab start 08`)
    .venv/bin/python labs/08-daemon-api/check.py [FILE]        # checks FILE (default: the skeleton)
    .venv/bin/python labs/08-daemon-api/check.py --reference   # checks minidocker.daemon.rules
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:
    sys.path.insert(0, str(HERE.parents[1]))

from minidocker.labs import expect, run_checks, script_main  # noqa: E402

REFERENCE = "minidocker.daemon.rules"
TIMEOUT = 10


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
]


def check(module) -> list:
    return run_checks(CHECKS, module, timeout=TIMEOUT)


if __name__ == "__main__":
    sys.exit(script_main(sys.argv[1:], check, REFERENCE, HERE / "skeleton.py", "lab 08 (daemon rules)"))
