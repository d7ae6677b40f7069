"""Checker for lab 08 (the daemon's rules). Pure functions: no root, no daemon needed.

    .venv/bin/python labs/08-daemon-api/check.py               # checks labs/08-daemon-api/skeleton.py
    .venv/bin/python labs/08-daemon-api/check.py --reference   # checks minidocker.daemon.rules
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:
    sys.path.insert(0, str(HERE.parents[1]))

from minidocker.labs import case  # noqa: E402

REFERENCE = "minidocker.daemon.rules"


def check(m) -> list:
    r = []
    r.append(case("encode_frame: stdout 'hi' is 01 000000 00000002 'hi'",
                  lambda: (m.encode_frame(1, b"hi") == b"\x01\x00\x00\x00\x00\x00\x00\x02hi",
                           repr(m.encode_frame(1, b"hi")))))
    r.append(case("encode_frame: the length is big-endian u32 (70000 bytes of stderr)",
                  lambda: m.encode_frame(2, b"x" * 70000)[:8] == b"\x02\x00\x00\x00\x00\x01\x11\x70"))

    def decode():
        data = m.encode_frame(1, b"out\n") + m.encode_frame(2, b"err\n") + m.encode_frame(1, b"") + m.encode_frame(1, b"partial")[:10]
        frames, rest = m.decode_frames(data)
        return frames == [(1, b"out\n"), (2, b"err\n"), (1, b"")] and rest == m.encode_frame(1, b"partial")[:10], (frames, rest)
    r.append(case("decode_frames: complete frames out, a cut frame kept for later", decode))

    def decode_resume():
        whole = m.encode_frame(2, b"abcdef")
        frames, rest = m.decode_frames(whole[:5])
        frames2, rest2 = m.decode_frames(rest + whole[5:])
        return frames == [] and frames2 == [(2, b"abcdef")] and rest2 == b"", (frames, frames2, rest2)
    r.append(case("decode_frames: a header cut in two is completed by the next read", decode_resume))

    def bools():
        t = ["1", "True", "true", "yes", "on", "anything"]
        f = ["", "0", "no", "False", "FALSE", "none", " false "]
        bad = [v for v in t if m.api_bool(v) is not True] + [v for v in f if m.api_bool(v) is not False]
        return not bad and m.api_bool(None) is False and m.api_bool(None, True) is True, f"wrong for {bad}"
    r.append(case("api_bool: dockerd's rule (docker-py sends True/False, the CLI 1)", bools))

    def versions():
        cases = {"/v1.50/containers/json": ("1.50", "/containers/json"), "/_ping": (None, "/_ping"),
                 "/v1.99/version": ("1.99", "/version"), "/v1.24/images/a/b:c/json": ("1.24", "/images/a/b:c/json"),
                 "/version": (None, "/version"), "/vx/containers": (None, "/vx/containers")}
        bad = {p: m.split_version(p) for p, want in cases.items() if m.split_version(p) != want}
        return not bad, f"wrong: {bad}"
    r.append(case("split_version: any /vX.Y prefix, or none", versions))

    def backoff():
        seq, d = [], 0.0
        for _ in range(12):
            d = m.next_backoff(d, 0.5)
            seq.append(round(d, 3))
        ok = seq[:4] == [0.1, 0.2, 0.4, 0.8] and seq[-1] == 60.0 and max(seq) == 60.0
        return ok and m.next_backoff(12.8, 10.0) == 0.1, f"delays {seq}"
    r.append(case("next_backoff: 100 ms doubling up to a minute, reset after 10 s up", backoff))

    def policies():
        want = [(("no", 0, 0, 1, False), False), (("always", 0, 5, 0, False), True),
                (("unless-stopped", 0, 0, 0, False), True), (("always", 0, 0, 0, True), False),
                (("on-failure", 0, 9, 1, False), True), (("on-failure", 0, 0, 0, False), False),
                (("on-failure", 3, 2, 1, False), True), (("on-failure", 3, 3, 1, False), False),
                (("on-failure", 3, 0, 1, True), False)]
        bad = [args for args, exp in want if m.should_restart(*args) is not exp]
        return not bad, f"wrong for {bad}"
    r.append(case("should_restart: no / always / unless-stopped / on-failure:N / stopped by a user", policies))

    def states():
        want = [("created", "start", "running"), ("running", "exit", "exited"), ("running", "start", None),
                ("running", "rm", None), ("running", "rm -f", "removed"), ("exited", "start", "running"),
                ("exited", "rm", "removed"), ("running", "pause", "paused"), ("paused", "unpause", "running"),
                ("exited", "policy", "restarting"), ("restarting", "stop", "exited"), ("created", "pause", None),
                ("exited", "kill", None)]
        bad = [(s, v, m.next_state(s, v)) for s, v, exp in want if m.next_state(s, v) != exp]
        return not bad, f"wrong: {bad}"
    r.append(case("next_state: docker's container state machine", states))
    return r


if __name__ == "__main__":
    from minidocker import labs
    sys.exit(labs.main(["check", "08", *sys.argv[1:]]))
