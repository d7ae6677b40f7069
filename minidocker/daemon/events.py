"""The daemon's event stream (``GET /events``, ``docker events``): what happened, to what, when.

What this teaches
-----------------
Every state change the engine makes — create, start, die, stop, kill, destroy, rename, restart,
exec_create, exec_start, exec_die, attach, resize — is published as an event. Clients use the
stream to react without polling (``docker run`` on old API versions even takes the exit code from
the ``die`` event). Like dockerd, minidockerd keeps the recent events in a bounded in-memory ring
(they are history, not state: a restarted daemon starts with an empty log), answers ``since`` from
the ring, and pushes new events to every subscriber's queue.

The JSON shape is docker's (API v1.50 ``EventMessage``): ``Type``, ``Action``,
``Actor{ID, Attributes}``, ``scope``, ``time`` (seconds) and ``timeNano``, plus the old
``status``/``id``/``from`` fields that older clients still read.

Filters (``filters={"type":{"container":true},"event":{"die":true}}``): ``type``, ``event``,
``container`` (id, id prefix or name), ``image``, ``label`` (``key`` or ``key=value``).
"""
from __future__ import annotations

import asyncio
import collections
import time

RING_SIZE = 1024  # dockerd keeps 256 events per subscriber-less log; a little more is harmless


class Events:
    def __init__(self, size: int = RING_SIZE):
        self.ring: collections.deque[dict] = collections.deque(maxlen=size)
        self.subscribers: set[asyncio.Queue] = set()

    def emit(self, type_: str, action: str, actor_id: str, attributes: dict | None = None) -> dict:
        ns = time.time_ns()
        attrs = {k: str(v) for k, v in (attributes or {}).items()}
        ev = {"Type": type_, "Action": action, "Actor": {"ID": actor_id, "Attributes": attrs},
              "scope": "local", "time": ns // 1_000_000_000, "timeNano": ns}
        if type_ == "container":  # the pre-1.22 fields
            ev.update(status=action, id=actor_id, **({"from": attrs["image"]} if "image" in attrs else {}))
        self.ring.append(ev)
        for q in list(self.subscribers):
            q.put_nowait(ev)
        return ev

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue()
        self.subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self.subscribers.discard(q)

    def history(self, since_ns: int | None, until_ns: int | None) -> list[dict]:
        return [e for e in self.ring if (since_ns is None or e["timeNano"] >= since_ns)
                and (until_ns is None or e["timeNano"] <= until_ns)]


def parse_timestamp(value: str | None) -> int | None:
    """``since``/``until`` as the CLI sends them: unix seconds with an optional fraction
    (``1700000000.123456789``) -> nanoseconds. Empty -> None; garbage -> ValueError."""
    if value in (None, ""):
        return None
    sec, _, frac = str(value).partition(".")
    if not sec.lstrip("-").isdigit() or (frac and not frac.isdigit()):
        raise ValueError(f"invalid timestamp: {value!r} (unix seconds expected)")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def matches(ev: dict, filters: dict, names: dict[str, str] | None = None) -> bool:
    """``names``: container id -> current name, so that ``container=web`` matches by name."""
    def values(key):
        v = filters.get(key)
        if v is None:
            return None
        return list(v.keys()) if isinstance(v, dict) else list(v)

    attrs = ev["Actor"]["Attributes"]
    for key in filters:
        vals = values(key)
        if not vals:
            continue
        if key == "type" and ev["Type"] not in vals:
            return False
        if key == "event" and ev["Action"].split(":")[0] not in vals and ev["Action"] not in vals:
            return False
        if key == "container":
            if ev["Type"] != "container":
                return False
            cid = ev["Actor"]["ID"]
            name = attrs.get("name") or (names or {}).get(cid, "")
            if not any(cid.startswith(v) or v.lstrip("/") == name for v in vals):
                return False
        if key == "image" and attrs.get("image") not in vals and ev["Actor"]["ID"] not in vals:
            return False
        if key == "label":
            for v in vals:
                k, sep, want = v.partition("=")
                if k not in attrs or (sep and attrs[k] != want):
                    return False
    return True
