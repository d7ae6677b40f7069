"""Ctrl-C (SIGINT) ends the streaming verbs at once with docker's exit code: ``stats``, ``events`` and
``logs -f`` exit 130 (128 + SIGINT, as the docker CLI 28 does when a signal cancels it); ``attach``
passes the signal to the container (sig-proxy) and exits with the container's code, or, with
``--sig-proxy=false``, ends at once with 130 and leaves the container running.

Each CLI starts with SIGINT *ignored*, as a background job or some CI runners start it: the case that
used to make ``minidocker stats`` run on for seconds. Each test waits for the first output (no sleeps),
then sends SIGINT."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO

pytestmark = pytest.mark.privileged

PROMPT = 3.0  # seconds: "at once", with room for a loaded machine


def start(daemon, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "minidocker.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=daemon.env(), cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))


def first_output(p: subprocess.Popen, want: bytes, timeout: float = 30) -> bytes:
    """Read the CLI's stdout until ``want`` has appeared (fails if it exits or stays silent)."""
    out, deadline = b"", time.monotonic() + timeout
    while want not in out:
        left = deadline - time.monotonic()
        assert left > 0 and select.select([p.stdout], [], [], left)[0], f"no {want!r} in time: {out!r}"
        chunk = os.read(p.stdout.fileno(), 65536)
        assert chunk, f"exited {p.wait()} before printing {want!r}: {out!r} {p.stderr.read()!r}"
        out += chunk
    return out


def interrupt(p: subprocess.Popen) -> tuple[int, float, bytes]:
    t = time.monotonic()
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("the CLI did not end within 15 s of SIGINT")
    return p.returncode, time.monotonic() - t, err


@pytest.fixture
def talker(daemon):
    """A container that prints a line every 0.2 s (and whose shell dies of SIGINT)."""
    name = f"sig-{os.getpid()}-{time.monotonic_ns()}"
    daemon.cli("run", "-d", "--name", name, "busybox", "sh", "-c",
               "while :; do echo tick; sleep 0.2; done", check=True)
    yield name
    daemon.cli("rm", "-f", name)


def test_stats_ends_on_sigint(daemon, talker):
    p = start(daemon, "stats", talker)
    first_output(p, talker.encode())              # the first screen names the container
    code, took, err = interrupt(p)
    assert code == 130 and took < PROMPT, (code, took, err)
    assert b"Traceback" not in err


def test_events_ends_on_sigint(daemon, talker):
    p = start(daemon, "events", "--since", "1", "--filter", f"container={talker}", "--format",
              "{{.Action}} {{.Actor.Attributes.name}}")
    first_output(p, f"create {talker}".encode())  # the recorded create event, replayed
    code, took, err = interrupt(p)
    assert code == 130 and took < PROMPT, (code, took, err)
    assert b"Traceback" not in err


def test_logs_follow_ends_on_sigint(daemon, talker):
    p = start(daemon, "logs", "-f", talker)
    first_output(p, b"tick\n")
    code, took, err = interrupt(p)
    assert code == 130 and took < PROMPT, (code, took, err)
    assert b"Traceback" not in err
    assert json.loads(daemon.cli("inspect", talker, check=True).stdout)[0]["State"]["Running"]


def test_attach_passes_sigint_to_the_container(daemon, talker):
    p = start(daemon, "attach", talker)
    first_output(p, b"tick\n")
    code, took, err = interrupt(p)
    state = json.loads(daemon.cli("inspect", talker, check=True).stdout)[0]["State"]
    assert not state["Running"] and state["ExitCode"] == 130, state   # the signal reached the shell
    assert code == 130 and took < PROMPT, (code, took, err)            # ... and attach ended with it


def test_attach_without_sig_proxy_ends_and_leaves_the_container(daemon):
    name = f"sigign-{os.getpid()}"
    daemon.cli("run", "-d", "--name", name, "busybox", "sh", "-c",
               "trap '' INT; while :; do echo tock; sleep 0.2; done", check=True)
    try:
        p = start(daemon, "attach", "--sig-proxy=false", name)
        first_output(p, b"tock\n")
        code, took, err = interrupt(p)
        assert code == 130 and took < PROMPT, (code, took, err)
        assert json.loads(daemon.cli("inspect", name, check=True).stdout)[0]["State"]["Running"]
    finally:
        daemon.cli("rm", "-f", name)
