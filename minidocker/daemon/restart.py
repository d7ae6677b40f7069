"""Restart policies: ``--restart no|on-failure[:N]|always|unless-stopped``, as dockerd applies them.

What this teaches
-----------------
When a container's process exits, the engine asks :meth:`Restarts.should_restart` (the decision
itself is the pure ``rules.should_restart``, rewritten in lab 08): never after a user's stop or
kill, never while it is being removed. A restart is not immediate: the container sits in
``restarting`` for a back-off (``rules.next_backoff``: 100 ms, doubled each time, at most a minute,
back to 100 ms after 10 s of healthy running) — moby's ``restartmanager``. A stop or rm during the
back-off cancels the pending restart (:meth:`Restarts.cancel_restart`); one that arrives while the
restart is half-way through ``start`` lets it finish first (:meth:`Restarts.settle_restart`).
:func:`validate_restart_policy` is dockerd's check of ``HostConfig.RestartPolicy`` at create and
update (API v1.50, ``RestartPolicy``).
"""
from __future__ import annotations

import asyncio
import logging

from . import rules, state as states
from .errors import InvalidRequest

log = logging.getLogger("minidockerd")

RESTART_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")


class Restarts:
    """The engine's restart-policy methods (a mixin of ``engine.Engine``)."""

    def should_restart(self, c, code: int) -> bool:
        """docker's restartmanager.ShouldRestart: never after a user's stop/kill."""
        name, max_retries = c.restart_policy
        if c.state["Status"] == states.REMOVING:
            return False
        return rules.should_restart(name, max_retries, c.restart_count, code, c.manually_stopped)

    def schedule_restart(self, c, ran_for: float) -> None:
        """Back-off: 100 ms, doubled after every restart, at most a minute; back to 100 ms when the
        container had run for 10 s or more (it was healthy for a while)."""
        c.backoff = rules.next_backoff(c.backoff, ran_for)
        self.transition(c, "policy")

        async def later(delay=c.backoff):
            await asyncio.sleep(delay)
            if c.state["Status"] != states.RESTARTING or c.id not in self.containers:
                return
            c.restart_count += 1
            c.restart_starting = True
            try:
                # Shielded: a start cut in half would leave a paused process behind. stop/rm wait
                # for it instead (settle_restart).
                await asyncio.shield(self.start(c.id, restarting=True))
                if c.state["Status"] == states.RUNNING:  # (it may have exited already)
                    self.transition(c, "restart")
            except Exception as e:
                log.warning("restart of %s failed: %s", c.id[:12], e)
                if c.state["Status"] == states.RESTARTING:
                    self.transition(c, "exit", dict(Error=str(e)), exitCode=c.state["ExitCode"])
            finally:
                c.restart_starting = False

        c.restart_task = asyncio.create_task(later())

    async def settle_restart(self, c) -> None:
        """If a policy restart is half-way through start(), let it finish (then stop it normally)."""
        if c.restart_task and not c.restart_task.done() and getattr(c, "restart_starting", False):
            try:
                await asyncio.shield(c.restart_task)
            except Exception:
                pass

    def cancel_restart(self, c) -> bool:
        """Stop a pending restart (stop/rm during the back-off). True if there was one."""
        if c.state["Status"] != states.RESTARTING:
            return False
        if c.restart_task:
            c.restart_task.cancel()
        self.transition(c, "stop")
        return True


def validate_restart_policy(host: dict) -> None:
    """dockerd's checks on HostConfig.RestartPolicy (and its clash with AutoRemove)."""
    p = host.get("RestartPolicy") or {}
    if not isinstance(p, dict):
        raise InvalidRequest("RestartPolicy must be an object")
    name, count = p.get("Name") or "", p.get("MaximumRetryCount") or 0
    if name not in RESTART_POLICIES:
        raise InvalidRequest(f"invalid restart policy: unknown policy '{name}'; use one of "
                             "'no', 'always', 'on-failure', or 'unless-stopped'")
    if not isinstance(count, int) or count < 0:
        raise InvalidRequest("invalid restart policy: maximum retry count must be a positive integer")
    if count and name != "on-failure":
        raise InvalidRequest(f"invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if host.get("AutoRemove") and name not in ("", "no"):
        raise InvalidRequest("can't create 'AutoRemove' container with restart policy")
