"""Signals in the CLI: what Ctrl-C does to a verb that streams.

* ``stats``, ``events``, ``logs -f`` (and ``attach --sig-proxy=false``): Ctrl-C ends the verb at once
  with 130 = 128 + SIGINT, the code the docker CLI (28) exits with when a signal cancels it;
* ``run`` and ``attach`` without a TTY: the *sig-proxy* — SIGINT, SIGTERM... are sent to the
  container's pid 1 (``POST /containers/ID/kill?signal=…``), and the client ends when the container's
  output does, with its exit code.

A module of its own (not cli/main.py): ``python -m minidocker.cli.main`` runs main.py as ``__main__``,
so a class defined there would exist twice and an ``except`` in one copy would miss the other's.
See signal(7) and Python's ``signal`` module.
"""
from __future__ import annotations

import signal

from .client import Client


class Interrupted(BaseException):
    """Ctrl-C ended a streaming verb; ``code`` is the exit status (see :func:`exit_on_interrupt`)."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def exit_on_interrupt(code: int = 128 + signal.SIGINT) -> None:
    """Make Ctrl-C (SIGINT) end the running verb at once with ``code``: 130, as the docker CLI (28)
    exits when a signal cancels ``stats``, ``events`` or ``logs -f``. The handler is installed
    explicitly: Python maps SIGINT to KeyboardInterrupt only if SIGINT was not ignored when it started,
    and a CLI started as a background job or by some CI runners inherits it ignored (Go's
    signal.Notify, which docker uses, un-ignores it the same way)."""
    def interrupted(_signum, _frame):
        raise Interrupted(code)
    signal.signal(signal.SIGINT, interrupted)


def proxy_signals(c: Client, cid: str) -> None:
    """sig-proxy: signals to this client go to the container's pid 1 (``docker run`` and ``docker
    attach`` without a TTY do the same): Ctrl-C interrupts the container, and the client ends when
    the container's output does."""
    def proxy(signum, _frame):
        try:
            Client(c.host).request("POST", f"/containers/{cid}/kill", query={"signal": signal.Signals(signum).name})
        except Exception:
            pass
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(s, proxy)
