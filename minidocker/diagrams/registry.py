"""Draw a registry conversation as a sequence diagram, from the requests a client really made.

Input: ``Transport.log`` (registry/transport.py), a list of ``(method, url, status)``. One lifeline
per participant (the client, each host it talked to: the registry, a token server, a CDN after a
redirect); one arrow per request, labelled ``METHOD path``, and a dashed arrow back with the status.
Graphviz has no sequence diagrams, so the layout is built from rows: each step is a row of small
points (``rank=same``), a participant's points are joined top to bottom into its lifeline.

    >>> from minidocker.diagrams import registry as rd
    >>> rd.render(rd.sequence_graph(reg.transport.log), "07-pull-sequence")   # diagrams/07-pull-sequence.svg
"""
from __future__ import annotations

import urllib.parse

import graphviz

from .mounts import render  # noqa: F401  (same output directory and atomic write)

_STATUS_COLOURS = {2: "#2a9d8f", 3: "#8ecae6", 4: "#e76f51", 5: "#e63946"}


def _short_path(url: str, n: int = 60) -> str:
    parts = urllib.parse.urlsplit(url)
    text = parts.path + ("?" + parts.query if parts.query else "")
    for token in text.split("/"):
        if token.startswith("sha256:") and len(token) > 19:
            text = text.replace(token, token[:19] + "…")
    return text if len(text) <= n else text[: n - 1] + "…"


def sequence_graph(log: list[tuple[str, str, int]], client: str = "minidocker", title: str | None = None,
                   names: dict[str, str] | None = None) -> graphviz.Digraph:
    """``names`` maps host:port to a role ("registry", "token server") shown under the host."""
    hosts: list[str] = []
    for _, url, _ in log:
        host = urllib.parse.urlsplit(url).netloc
        if host not in hosts:
            hosts.append(host)
    cols = [client] + hosts
    g = graphviz.Digraph("sequence", graph_attr={"rankdir": "TB", "nodesep": "2.2", "ranksep": "0.25",
                                                 "fontname": "Helvetica", "label": title or "", "labelloc": "t"},
                         node_attr={"fontname": "Helvetica", "fontsize": "10"},
                         edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    # the heads
    with g.subgraph() as row:
        row.attr(rank="same")
        for j, name in enumerate(cols):
            label = name if j == 0 else f"{name}\n{(names or {}).get(name, '')}".strip()
            row.node(f"c{j}_h", label, shape="box", style="rounded,filled", fillcolor="#e9ecef")
    steps = len(log) * 2
    for i in range(steps):
        with g.subgraph() as row:
            row.attr(rank="same")
            for j in range(len(cols)):
                row.node(f"c{j}_{i}", "", shape="point", width="0.01")
    for j in range(len(cols)):  # lifelines
        chain = [f"c{j}_h"] + [f"c{j}_{i}" for i in range(steps)]
        for a, b in zip(chain, chain[1:]):
            g.edge(a, b, arrowhead="none", style="dotted", color="#adb5bd")
    for n, (method, url, status) in enumerate(log):
        j = cols.index(urllib.parse.urlsplit(url).netloc)
        colour = _STATUS_COLOURS.get(status // 100, "black")
        g.edge(f"c0_{2 * n}", f"c{j}_{2 * n}", label=f"{n + 1}. {method} {_short_path(url)}", constraint="false")
        g.edge(f"c{j}_{2 * n + 1}", f"c0_{2 * n + 1}", label=str(status), style="dashed", color=colour,
               fontcolor=colour, constraint="false")
    return g
