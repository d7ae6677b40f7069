"""Draw which defence stopped which attack, from measured probe runs (chapter 10).

Input: ``runs`` = {defence name: {attack name: result}}, where a result is "OK" (the attack worked
under that defence alone) or an errno name; the run named ``baseline`` (no defence) must show each
attack working, else the attack proves nothing and is drawn grey. An edge goes from an attack to
each defence that stopped it on its own, labelled with the errno the attacker saw; an attack that
no single layer stops has none (red). Redundancy is visible at a glance: most attacks have two
edges, and that is the point of layering.

    >>> from minidocker.diagrams import security
    >>> security.render(security.defence_graph(runs), "10-defences")   # -> diagrams/10-defences.svg
"""
from __future__ import annotations

import graphviz

from .mounts import render  # noqa: F401  (one renderer for every diagram of the rootfs/security chapters)

_LAYER_COLOUR = "#8ecae6"
_STOPPED, _OPEN, _VOID = "#d8f3dc", "#f8d7da", "#e9ecef"


def defence_graph(runs: dict[str, dict[str, str]], baseline: str = "baseline",
                  title: str = "which layer stopped which attack") -> graphviz.Digraph:
    base = runs[baseline]
    layers = [name for name in runs if name != baseline]
    g = graphviz.Digraph("defences", graph_attr={"rankdir": "LR", "label": title, "labelloc": "t",
                                                 "fontname": "Helvetica", "nodesep": "0.15"},
                         node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                                    "fontsize": "10"},
                         edge_attr={"fontname": "Helvetica", "fontsize": "9"})
    with g.subgraph(name="cluster_attacks") as a:
        a.attr(label="attack (works without defences?)", style="dashed")
        for attack in base:
            works = base[attack] == "OK"
            stoppers = [layer for layer in layers if works and runs[layer].get(attack, "OK") != "OK"]
            colour = _VOID if not works else _STOPPED if stoppers else _OPEN
            a.node(f"a_{attack}", f"{attack}\n(baseline: {base[attack]})", fillcolor=colour)
    with g.subgraph(name="cluster_layers") as d:
        d.attr(label="defence", style="dashed")
        for layer in layers:
            d.node(f"d_{layer}", layer, fillcolor=_LAYER_COLOUR, shape="box3d")
    for attack in base:
        if base[attack] != "OK":
            continue
        for layer in layers:
            result = runs[layer].get(attack, "OK")
            if result != "OK":
                g.edge(f"a_{attack}", f"d_{layer}", label=result, color="#2d6a4f")
    return g
