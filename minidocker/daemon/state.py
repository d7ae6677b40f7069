"""The container state machine, enforced: one function moves a container from state to state.

What this teaches
-----------------
``docker ps`` shows a container's ``State.Status``; which verb is allowed in which status is a small
table (``rules.TRANSITIONS``, drawn in notebook 08 and rewritten in lab 08). This module makes that
table the engine's law: every change of status goes through :func:`transition`, which

1. looks the (status, action) pair up in the table — a pair that is not there is refused with
   dockerd's own words (409 Conflict; 304 Not Modified for a start of a running container or a
   stop of a stopped one, as dockerd answers);
2. sets the status and the flags derived from it (``Running``, ``Paused``, ``Restarting``,
   ``Dead``) together with the other fields the caller records (exit code, pid, times);
3. persists the record atomically (``state.json``: temp + fsync + rename);
4. emits the action's event (``start``, ``die``, ``pause``, ``unpause``, ``kill``, ``stop``,
   ``restart``, ``destroy``) — a ``docker events`` watcher sees every change.

``kill``, ``stop`` and ``rm -f`` of a live container are *requests*: they send a signal, and the
container becomes "exited" through the ``exit`` (event ``die``) that follows. ``stop``'s own event
comes after that ``die``, as dockerd orders them.

Messages follow moby's ``daemon/errors.go``, ``pause.go``, ``unpause.go``, ``kill.go``,
``delete.go`` and ``start.go``.
"""
from __future__ import annotations

import os

from .errors import Conflict, NotModified
from .rules import TRANSITIONS

CREATED, RUNNING, PAUSED, RESTARTING = "created", "running", "paused", "restarting"
REMOVING, EXITED, DEAD, REMOVED = "removing", "exited", "dead", "removed"
STATES = (CREATED, RUNNING, PAUSED, RESTARTING, REMOVING, EXITED, DEAD)
LIVE = (RUNNING, PAUSED)          # a process exists (and may be frozen)
STOPPED = (CREATED, EXITED, DEAD)  # what ``container prune`` removes

# The docker event each action emits (None: dockerd emits none for it).
EVENTS = {"start": "start", "exit": "die", "pause": "pause", "unpause": "unpause", "kill": "kill",
          "stop": "stop", "restart": "restart", "policy": None, "rm": None, "rm -f": None,
          "destroy": "destroy"}
REQUESTS = ("kill", "stop", "rm -f")   # on a live container: a signal; "exit" moves the state
AFTER_EXIT = ("stop",)                  # events that dockerd emits after the container's "die"
NOT_MODIFIED = {(RUNNING, "start"), (CREATED, "stop"), (EXITED, "stop"), (DEAD, "stop")}


def refusal(c, action: str) -> Exception:
    """dockerd's answer to ``action`` on a container in a state whose table row lacks it."""
    status, cid = c.state["Status"], c.id
    if (status, action) in NOT_MODIFIED:
        return NotModified()
    restarting = f"Container {cid} is restarting, wait until the container is running"
    if status == REMOVING and action != "destroy":
        if action == "start":
            return Conflict(f"container {cid} is marked for removal and cannot be started")
        return Conflict(f"removal of container {cid} is already in progress")
    if action == "start" and status == PAUSED:
        return Conflict("cannot start a paused container, try unpause instead")
    if action == "pause":
        if status == PAUSED:
            return Conflict(f"Container {cid} is already paused")
        return Conflict(restarting if status == RESTARTING else f"Container {cid} is not running")
    if action == "unpause":
        return Conflict(f"Container {cid} is not paused")
    if action == "kill":
        why = restarting if status == RESTARTING else f"Container {cid} is not running"
        return Conflict(f"Cannot kill container: {cid}: {why}")
    if action == "rm":
        if status == PAUSED:
            why = "container is paused and must be unpaused first"
        else:
            why = f"container is {status}: stop the container before removing or force remove"
        return Conflict(f'cannot remove container "/{c.name}": {why}')
    if status == RESTARTING:
        return Conflict(restarting)
    if status in LIVE:
        return Conflict(f"Container {cid} is {status}: cannot {action} it")
    return Conflict(f"Container {cid} is not running")


def check(c, action: str) -> str:
    """The state ``action`` leads to from ``c``'s status, or dockerd's refusal (raised)."""
    target = TRANSITIONS.get(c.state["Status"], {}).get(action)
    if target is None:
        raise refusal(c, action)
    return target


def flags(status: str) -> dict:
    """The booleans docker derives from the status (a restarting container counts as running)."""
    return {"Status": status, "Running": status in (RUNNING, PAUSED, RESTARTING),
            "Paused": status == PAUSED, "Restarting": status == RESTARTING, "Dead": status == DEAD}


def record(c, **fields) -> None:
    """Record fields that are not the status (an error, an exit code): the status only moves
    through :func:`transition`."""
    if set(fields) & {"Status", "Running", "Paused", "Restarting", "Dead"}:
        raise ValueError("the status changes only through state.transition()")
    c.state.update(fields)
    persist(c)


def persist(c) -> None:
    if os.path.isdir(c.dir):  # after a removal's "destroy" there is nothing left to write to
        c.save()


def transition(c, action: str, emit, fields: dict | None = None, **attrs) -> str:
    """Apply ``action`` to ``c``: check the table, set the status (and ``fields``), persist, emit.

    ``emit(container, event, **attrs)`` publishes the event. Returns the status after the call —
    unchanged for a request (``kill``/``stop``/``rm -f``) on a live container, whose ``exit``
    follows."""
    status = c.state["Status"]
    target = check(c, action)
    if fields and set(fields) & {"Status", "Running", "Paused", "Restarting", "Dead"}:
        raise ValueError("the status is the table's to set, not the caller's")
    event = EVENTS.get(action)
    if action in REQUESTS and status in LIVE:
        target = status
        if event in AFTER_EXIT:
            c.after_exit.append((event, attrs))
            event = None
    c.state.update(fields or {})
    c.state.update(flags(target))
    persist(c)
    if event:
        emit(c, event, **attrs)
    if action == "exit":  # what waited for the exit ("stop") is told now, after "die"
        pending, c.after_exit = c.after_exit, []
        for ev, ev_attrs in pending:
            emit(c, ev, **ev_attrs)
    return target
