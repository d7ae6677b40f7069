"""Draw a build: the stages of a Dockerfile (which the target needs, which are skipped, who copies
from whom) and the history of the image it made (one box per step: a layer or config only).

Everything is read from live state: the Dockerfile is parsed by minidocker.build, the history
comes from the image config in the store.

    >>> from minidocker.diagrams import build
    >>> build.render(build.stages_graph(text, target="final"), "stages")
    >>> build.render(build.history_graph(store, "app:1"), "app-history")
"""
from __future__ import annotations

import graphviz

from ..build.builder import find_stage, needed_stages, stages_of
from ..build.dockerfile import parse
from ..images.store import ImageStore
from .mounts import render as _render

USED, SKIPPED, LAYER, EMPTY = "#d1e7dd", "#e9ecef", "#cfe2ff", "#fff3cd"


def stages_graph(text: str, target: str = "", build_args: dict | None = None) -> graphviz.Digraph:
    df = parse(text)
    _, stages = stages_of(df)
    end = find_stage(stages, target, len(stages)).index if target else len(stages) - 1
    need = set(needed_stages(stages, end, dict(build_args or {}), df.escape))
    g = graphviz.Digraph("stages", graph_attr={"rankdir": "LR", "fontname": "Helvetica"},
                         node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica"})
    for st in stages:
        label = f"stage {st.index}{' ' + st.name if st.name else ''}\\nFROM {st.base}\\n{len(st.steps)} steps"
        if st.index not in need:
            label += "\\n(skipped)"
        g.node(f"s{st.index}", label, fillcolor=USED if st.index in need else SKIPPED)
        dep = find_stage(stages, st.base, st.index)
        if dep is not None:
            g.edge(f"s{dep.index}", f"s{st.index}", label="FROM")
        for ins in st.steps:
            if ins.cmd == "COPY" and "from" in ins.flags:
                src = find_stage(stages, ins.flags["from"], st.index)
                if src is not None:
                    g.edge(f"s{src.index}", f"s{st.index}", label="COPY --from", style="dashed")
    return g


def history_graph(store: ImageStore, name: str, limit: int = 30) -> graphviz.Digraph:
    """One box per history entry, bottom-up: blue = a layer (with its DiffID), yellow = config only."""
    image = store.resolve(name)
    diff_ids = iter(image.diff_ids)
    g = graphviz.Digraph("history", graph_attr={"rankdir": "BT", "fontname": "Helvetica"},
                         node_attr={"shape": "box", "style": "filled", "fontname": "Helvetica"})
    entries = (image.config.get("history") or [])[-limit:]
    for n, h in enumerate(entries):
        text = h.get("created_by", "").replace("/bin/sh -c #(nop) ", "")
        text = text if len(text) < 60 else text[:57] + "..."
        if h.get("empty_layer"):
            g.node(f"h{n}", text, fillcolor=EMPTY)
        else:
            d = next(diff_ids, "")
            g.node(f"h{n}", f"{text}\\nlayer {d[7:19]}", fillcolor=LAYER)
        if n:
            g.edge(f"h{n - 1}", f"h{n}")
    return g


def render(graph: graphviz.Digraph, name: str) -> str:
    return _render(graph, name)


__all__ = ["stages_graph", "history_graph", "render"]
