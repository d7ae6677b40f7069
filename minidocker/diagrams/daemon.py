"""Draw the container state machine (``minidocker.daemon.rules.TRANSITIONS``), with live counts.

Each node is a state docker reports in ``State.Status``; each edge a verb (or event: ``exit``, a
restart ``policy`` firing) that moves a container from one state to the next. Pass the daemon's
``GET /containers/json?all=1`` list to colour the states that hold containers right now and show how
many: the diagram is drawn from live state, not from a picture.

    >>> from minidocker.diagrams import daemon
    >>> daemon.render(daemon.state_machine_graph(containers), "08-state-machine")
"""
from __future__ import annotations

from typing import Iterable

import graphviz

from ..daemon.rules import TRANSITIONS
from .mounts import render  # noqa: F401  (same output directory and atomic write)

_ACTIVE = "#90be6d"
_IDLE = "#e9ecef"


def state_machine_graph(containers: Iterable[dict] = (), title: str = "docker's container states") -> graphviz.Digraph:
    counts: dict[str, list[str]] = {}
    for c in containers:
        counts.setdefault(c.get("State", ""), []).append((c.get("Names") or ["?"])[0].lstrip("/"))
    g = graphviz.Digraph("states", graph_attr={"rankdir": "LR", "fontname": "Helvetica", "label": title,
                                               "labelloc": "t"},
                         node_attr={"shape": "ellipse", "style": "filled", "fontname": "Helvetica", "fontsize": "11"},
                         edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    g.node("new", "", shape="point")
    g.edge("new", "created", label="create")
    states = set(TRANSITIONS) | {t for verbs in TRANSITIONS.values() for t in verbs.values()}
    for s in sorted(states):
        names = counts.get(s, [])
        label = s if not names else f"{s}\n{len(names)}: {', '.join(names[:3])}{'…' if len(names) > 3 else ''}"
        g.node(s, label, fillcolor=_ACTIVE if names else _IDLE,
               shape="doublecircle" if s == "removed" else "ellipse")
    for state, verbs in TRANSITIONS.items():
        grouped: dict[str, list[str]] = {}
        for verb, target in verbs.items():
            grouped.setdefault(target, []).append(verb)
        for target, vs in grouped.items():
            g.edge(state, target, label=", ".join(vs))
    return g
