"""The daemon's rules, as small pure functions: what the wire and the state machine must obey.

What this teaches
-----------------
Most of a container daemon is bookkeeping, and the bookkeeping follows a handful of precise rules
that the real clients depend on. Each is here, on its own, so it can be read (and, in lab 08,
rewritten) without a kernel or a socket:

* :func:`encode_frame` / :func:`decode_frames` — docker's multiplexed stream for non-TTY output:
  ``[stream u8][0 0 0][length u32 big-endian]`` then the payload (1 = stdout, 2 = stderr);
* :func:`api_bool` — how dockerd reads a boolean query parameter (docker-py sends ``True``, the Go
  CLI ``1``);
* :func:`split_version` — ``/v1.50/containers/json`` -> ("1.50", "/containers/json"); the range
  of versions served is checked separately;
* :func:`version_error` — dockerd's 400 for a ``/vX.Y`` outside [MIN_API_VERSION, API_VERSION]: the
  daemon's HTTP server calls it on every request (``main.serve``), which is how a client's version
  negotiation ends up in range;

(these five live in ``minidocker/wire.py``, shared with the CLI and the monitor; they are
re-exported here so that lab 08 finds all the rules in one module)
* :func:`next_backoff` / :func:`should_restart` — restart policies as docker's restartmanager
  applies them;
* :func:`next_state` — the container state machine: which verb is allowed in which state.

The engine (``restart.py``, ``state.py``) and the HTTP layer call these; the lab's checker compares yours with them.
"""
from __future__ import annotations

from ..wire import (FALSE_WORDS, api_bool, decode_frames, encode_frame, split_version,  # noqa: F401 (the lab
                    version_error)  # checks them here)

STDOUT, STDERR = 1, 2
MIN_BACKOFF, MAX_BACKOFF, HEALTHY_AFTER = 0.1, 60.0, 10.0


def next_backoff(previous: float, ran_for: float) -> float:
    """100 ms at first, doubled after every restart, at most a minute; back to 100 ms once the
    container had stayed up for 10 s (docker's restartmanager)."""
    if previous <= 0 or ran_for >= HEALTHY_AFTER:
        return MIN_BACKOFF
    return min(previous * 2, MAX_BACKOFF)


def should_restart(policy: str, max_retries: int, restart_count: int, exit_code: int,
                   manually_stopped: bool) -> bool:
    """Never after a user's stop/kill; ``always``/``unless-stopped`` always; ``on-failure[:N]`` on a
    non-zero exit while fewer than N restarts were made (N = 0: no limit); ``no`` never."""
    if manually_stopped:
        return False
    if policy in ("always", "unless-stopped"):
        return True
    if policy == "on-failure":
        return exit_code != 0 and (max_retries == 0 or restart_count < max_retries)
    return False


# The container state machine: state -> action -> the state once the action is done. Absent: docker
# refuses the action in that state (409, or 304 for a start of a running container / a stop of a
# stopped one). The engine enforces this very table (``daemon/state.py``: every change of
# ``State.Status`` goes through ``state.transition``); notebook 08 draws it; lab 08 rewrites it.
# ``exit`` is the process ending on its own (event ``die``), ``policy`` a restart policy firing,
# ``destroy`` the end of a removal. ``kill``/``stop``/``rm -f`` of a live container only *ask* the
# process to end: the container gets to "exited" through the ``exit`` that follows.
TRANSITIONS: dict[str, dict[str, str]] = {
    "created": {"start": "running", "rm": "removing", "rm -f": "removing"},
    "running": {"exit": "exited", "stop": "exited", "kill": "exited", "pause": "paused",
                "restart": "running", "rm -f": "removing"},
    "paused": {"unpause": "running", "exit": "exited", "kill": "exited", "stop": "exited",
               "rm -f": "removing"},
    "restarting": {"start": "running", "exit": "exited", "stop": "exited", "rm -f": "removing"},
    "exited": {"start": "running", "restart": "running", "policy": "restarting", "rm": "removing",
               "rm -f": "removing"},
    "dead": {"rm": "removing", "rm -f": "removing"},
    "removing": {"destroy": "removed"},
}


def next_state(state: str, verb: str) -> str | None:
    """The state after ``verb``, or None if docker refuses it in ``state``."""
    return TRANSITIONS.get(state, {}).get(verb)
