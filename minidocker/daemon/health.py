"""Health checks: ``HEALTHCHECK`` / ``Config.Healthcheck`` run by the daemon (docker's daemon/health.go).

What this teaches
-----------------
A health check is nothing but an *exec* the daemon starts on a timer: the same runtime exec path
as ``docker exec`` (same namespaces, capabilities, seccomp filter, user), with a timeout. Its exit
status is the verdict — 0 healthy, anything else a failure — and ``Retries`` failures in a row make
the container ``unhealthy``. Failures during ``StartPeriod`` (probed every ``StartInterval``) do not
count until a first success. The last 5 results (start, end, exit code, the first 4 KiB of output)
are kept in ``State.Health.Log``; every change of status is a ``health_status: …`` event and shows
in ``docker ps`` (``Up 3 minutes (healthy)``). The timers belong to the daemon: after a daemon
restart, they are re-armed for every container still running.

``Test``: ``["NONE"]`` disables a check inherited from the image, ``["CMD", argv...]`` runs argv,
``["CMD-SHELL", "command"]`` runs it with the container's shell (``/bin/sh -c``). Durations are in
nanoseconds; 0 means "inherit from the image, else docker's default".
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import time

from ..util import now_rfc3339

log = logging.getLogger("minidockerd.health")

SECOND = 1_000_000_000
DEFAULTS = {"Interval": 30 * SECOND, "Timeout": 30 * SECOND, "StartPeriod": 0, "StartInterval": 5 * SECOND}
DEFAULT_RETRIES = 3
MAX_LOG_ENTRIES = 5
MAX_OUTPUT = 4096
DURATIONS = ("Interval", "Timeout", "StartPeriod", "StartInterval")


def validate(hc: dict | None) -> None:
    """dockerd's checks on create (daemon/container.go): ValueError with its wording."""
    if not hc:
        return
    for key in DURATIONS:
        v = hc.get(key) or 0
        if v != 0 and v < 1_000_000:
            raise ValueError(f"{key} in Healthcheck cannot be less than 1ms")
    if (hc.get("Retries") or 0) < 0:
        raise ValueError("Retries in Healthcheck cannot be negative")
    test = hc.get("Test") or []
    if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        raise ValueError(f"unknown health check type: {test[0]}")


def resolve(config: dict, image_config: dict) -> dict | None:
    """The check to run: the container's, with fields it leaves zero taken from the image's
    (docker merges them the same way); None when there is none or it is ``NONE``."""
    own, img = config.get("Healthcheck") or {}, image_config.get("Healthcheck") or {}
    merged = dict(img)
    merged.update({k: v for k, v in own.items() if v})
    test = merged.get("Test") or []
    if not test or test[0] == "NONE" or len(test) < 2:
        return None
    return merged


def argv_of(test: list[str], shell: list[str] | None) -> list[str]:
    if test[0] == "CMD-SHELL":
        return list(shell or ["/bin/sh", "-c"]) + [" ".join(test[1:])]
    return list(test[1:])


def _get(hc: dict, key: str) -> int:
    return hc.get(key) or DEFAULTS[key]


class Checker:
    """The timer loop for one running container."""

    def __init__(self, engine, c, hc: dict, shell):
        self.engine, self.c, self.hc, self.shell = engine, c, hc, shell

    async def run(self) -> None:
        c = self.c
        while c.running:
            health = c.state.get("Health") or {}
            starting = health.get("Status") == "starting" and self.in_start_period(time.time())
            await asyncio.sleep((_get(self.hc, "StartInterval") if starting else _get(self.hc, "Interval")) / SECOND)
            if c.state["Status"] != "running":
                continue  # paused: no probe (docker skips them too); exited: the loop ends
            try:
                await self.probe_once()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the exec could not even start: a failed probe, as in docker
                log.debug("health probe of %s failed to run: %s", c.id[:12], e)
                if c.state["Status"] == "running":
                    self.record(now_rfc3339(), -1, str(e), time.time())

    def in_start_period(self, t: float) -> bool:
        from ..util import parse_rfc3339
        return t - parse_rfc3339(self.c.state["StartedAt"]) < _get(self.hc, "StartPeriod") / SECOND

    async def probe_once(self) -> None:
        from . import execs
        from ..runtime import monitor
        c, timeout = self.c, _get(self.hc, "Timeout") / SECOND
        started, t0 = now_rfc3339(), time.time()
        ex = execs.create(self.engine, c.id, {"Cmd": argv_of(self.hc["Test"], self.shell),
                                              "AttachStdout": True, "AttachStderr": True})
        ours, theirs = socket.socketpair()
        creader, cwriter = await asyncio.open_unix_connection(sock=theirs)
        preader, pwriter = await asyncio.open_unix_connection(sock=ours)
        output, code = b"", -1
        try:
            await execs.start(self.engine, ex, (creader, cwriter, {"stdin": False, "stdout": True,
                                                                   "stderr": True, "raw": True}), None)

            async def collect():
                nonlocal output
                while data := await preader.read(65536):
                    output = (output + data)[:MAX_OUTPUT]
                return await ex.done

            try:
                code = await asyncio.wait_for(collect(), timeout)
                text = output.decode(errors="replace")
            except asyncio.TimeoutError:
                try:  # the probe's process, through its monitor (the exec path's own kill)
                    await asyncio.to_thread(monitor.request, ex.dir, {"op": "kill", "signal": 9})
                except OSError:
                    pass
                code, text = -1, f"Health check exceeded timeout ({format_seconds(timeout)})"
        finally:
            pwriter.close()
            self.engine.execs.pop(ex.id, None)
            if ex.id in c.exec_ids:
                c.exec_ids.remove(ex.id)
            if ex.done.done():
                await asyncio.to_thread(shutil.rmtree, ex.dir, True)
        if c.running:
            self.record(started, code, text, t0)

    def record(self, started: str, code: int, output: str, t0: float) -> None:
        c = self.c
        health = c.state.setdefault("Health", {"Status": "starting", "FailingStreak": 0, "Log": []})
        before = health["Status"]
        if code == 0:
            health.update(Status="healthy", FailingStreak=0)
        elif not (before == "starting" and self.in_start_period(t0)):
            health["FailingStreak"] += 1
            if health["FailingStreak"] >= (self.hc.get("Retries") or DEFAULT_RETRIES):
                health["Status"] = "unhealthy"
        health["Log"] = (health.get("Log") or [])[-(MAX_LOG_ENTRIES - 1):] + [
            {"Start": started, "End": now_rfc3339(), "ExitCode": code, "Output": output}]
        if os.path.isdir(c.dir):
            c.save()
        if health["Status"] != before:
            self.engine.emit(c, "health_status: " + health["Status"])


def format_seconds(s: float) -> str:
    return f"{s:g}s"


def begin(engine, c, image_config: dict, resume: bool = False) -> None:
    """Arm the timer of a container that just started (or, ``resume``, that the daemon found
    running at its start: its recorded health is kept)."""
    end(c)
    hc = resolve(c.request, image_config)
    if hc is None:
        c.state.pop("Health", None)
        return
    if not resume or "Health" not in c.state:
        log_ = (c.state.get("Health") or {}).get("Log") or []
        c.state["Health"] = {"Status": "starting", "FailingStreak": 0, "Log": log_}
    shell = c.request.get("Shell") or image_config.get("Shell")
    c.health_task = asyncio.get_running_loop().create_task(Checker(engine, c, hc, shell).run())


def end(c) -> None:
    task = getattr(c, "health_task", None)
    if task is not None and not task.done():
        task.cancel()
    c.health_task = None


def ps_suffix(state: dict) -> str:
    """``docker ps``'s Status suffix: `` (healthy)``, `` (unhealthy)``, `` (health: starting)``."""
    status = (state.get("Health") or {}).get("Status")
    if state.get("Status") != "running" or not status or status == "none":
        return ""
    return " (health: starting)" if status == "starting" else f" ({status})"
