"""Lab 08 — the daemon's rules. Fill in every TODO; `minidocker lab check 08` tells you how far you are.

The reference is minidocker/daemon/rules.py (try not to read it before your checks pass).
"""
from __future__ import annotations

import struct  # noqa: F401  (you will want it)

STDOUT, STDERR = 1, 2


def encode_frame(stream: int, payload: bytes) -> bytes:
    """docker's multiplexed-stream frame: [stream u8][0 0 0][length u32 big-endian] + payload."""
    raise NotImplementedError("TODO: pack the 8-byte header (struct format '>BxxxI') and append the payload")


def decode_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split data into complete frames -> ([(stream, payload), ...], rest). Keep an incomplete frame
    (header or payload cut short) in ``rest``: the next read from the socket completes it."""
    raise NotImplementedError("TODO: loop while at least 8 bytes remain and the whole payload is there")


def api_bool(value: str | None, default: bool = False) -> bool:
    """dockerd's rule for boolean query parameters: None -> default; "", "0", "no", "false", "none"
    (any case) -> False; everything else ("1", "True", "yes", ...) -> True."""
    raise NotImplementedError("TODO: dockerd's boolean rule")


def split_version(path: str) -> tuple[str | None, str]:
    """"/v1.50/containers/json" -> ("1.50", "/containers/json"); "/_ping" -> (None, "/_ping").
    Any version number is accepted: docker-py uses whatever the daemon reports."""
    raise NotImplementedError("TODO: a regular expression for /vX.Y/...")


def next_backoff(previous: float, ran_for: float) -> float:
    """Seconds to wait before the next policy restart: 0.1 the first time (previous == 0), then twice
    the previous delay, never more than 60; back to 0.1 if the container ran for 10 s or more."""
    raise NotImplementedError("TODO: docker's restart back-off")


def should_restart(policy: str, max_retries: int, restart_count: int, exit_code: int,
                   manually_stopped: bool) -> bool:
    """"no", "always", "unless-stopped", "on-failure" (max_retries 0 = unlimited). A container a user
    stopped or killed is never restarted by its policy."""
    raise NotImplementedError("TODO: docker's restartmanager.ShouldRestart")


def next_state(state: str, verb: str) -> str | None:
    """The container state machine. States: created, running, paused, restarting, exited, dead,
    removing. Verbs: start, stop, kill, exit (the process ended), pause, unpause, restart, policy (a
    restart policy fires), rm, "rm -f" (both lead to "removing"), destroy (a removal is done: "removed").
    Return the next state, or None when docker refuses the verb in that state (e.g. "rm" of a running container, "start" of a running one)."""
    raise NotImplementedError("TODO: a table state -> verb -> next state")
