"""Draw which processes live in which namespaces, from the live ``/proc/*/ns`` links.

Boxes are processes; processes that share *all* their namespaces are one box (the host's
processes are one big box). Ellipses are namespaces, labelled with their kind and inode number;
the host's initial namespaces sit in a dashed cluster. An edge means "is a member of"; a
faint dashed edge, "shares this namespace with the host".

    from minidocker.diagrams.namespaces import namespace_graph, render
    render(namespace_graph(), "namespaces")      # -> <repo>/diagrams/namespaces.svg
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import graphviz

from minidocker.namespaces import (KINDS, comm, host_reference, is_kernel_thread, normalize_kinds,
                                   ns_ids)

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT_DIR = REPO_ROOT / "diagrams"

COLORS = {  # one pastel colour per kind, so a container's own namespaces stand out
    "pid": "#fde2e4", "mnt": "#e2ece9", "uts": "#fff1c1", "ipc": "#dfe7fd",
    "net": "#cddafd", "user": "#f8d7ff", "cgroup": "#e9f5db",
}
MAX_NAMES = 4  # processes listed in one box before "+N more"


def _groups(pids: Iterable[int] | None, kinds: tuple[str, ...]) -> dict[tuple[int, ...], list[int]]:
    """``{(ns id per kind): [pids]}`` — processes with identical namespaces grouped together."""
    if pids is None:
        pids = (int(d) for d in os.listdir("/proc") if d.isdigit())
        pids = [p for p in pids if not is_kernel_thread(p)]
    groups: dict[tuple[int, ...], list[int]] = {}
    for pid in sorted(pids):
        try:
            ids = ns_ids(pid)
        except (ProcessLookupError, PermissionError):  # gone, or out of our reach
            continue
        groups.setdefault(tuple(ids.get(k, 0) for k in kinds), []).append(pid)
    return groups


def _box_label(pids: list[int], is_host: bool) -> str:
    lines = [f"host processes ({len(pids)})"] if is_host else []
    lines += [f"pid {p}  {comm(p)}" for p in pids[:MAX_NAMES]]
    if len(pids) > MAX_NAMES:
        lines.append(f"… +{len(pids) - MAX_NAMES} more")
    return "\n".join(lines)


def namespace_graph(pids: Iterable[int] | None = None, kinds: Iterable[str] | None = None) -> graphviz.Digraph:
    """A graph of processes (``pids``, default: every user-space process) and their namespaces."""
    kinds = normalize_kinds(kinds)
    host_ids = ns_ids(host_reference())
    host = tuple(host_ids.get(k, 0) for k in kinds)

    g = graphviz.Digraph("namespaces", graph_attr={"rankdir": "LR", "fontname": "Helvetica",
                                                   "fontsize": "10", "nodesep": "0.15"},
                         node_attr={"fontname": "Helvetica", "fontsize": "10"},
                         edge_attr={"arrowsize": "0.5", "color": "#888888"})
    used: set[tuple[str, int]] = set()
    for i, (ids, members) in enumerate(sorted(_groups(pids, kinds).items(), key=lambda kv: kv[1][0])):
        is_host = ids == host
        g.node(f"p{i}", _box_label(members, is_host), shape="box", style="rounded,filled",
               fillcolor="#eeeeee" if is_host else "white")
        for kind, ino in zip(kinds, ids):
            shared = host_ids.get(kind) == ino  # shared with the host: drawn faint
            g.edge(f"p{i}", f"ns_{kind}_{ino}", color="#cccccc" if shared else "#333333",
                   style="dashed" if shared and not is_host else "solid")
            used.add((kind, ino))

    with g.subgraph(name="cluster_host") as cluster:
        cluster.attr(label="host (initial) namespaces", style="dashed", color="#999999")
        for kind in kinds:
            if (kind, host_ids.get(kind)) in used:
                cluster.node(f"ns_{kind}_{host_ids[kind]}", f"{kind}\n{host_ids[kind]}",
                             shape="ellipse", style="filled", fillcolor="#f4f4f4")
    for kind, ino in sorted(used):
        if host_ids.get(kind) != ino:
            g.node(f"ns_{kind}_{ino}", f"{kind}\n{ino}", shape="ellipse", style="filled",
                   fillcolor=COLORS[kind])
    return g


def render(graph: graphviz.Digraph, name: str) -> Path:
    """Write ``graph`` as ``<repo>/diagrams/NAME.svg`` (created if missing); return the path."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / f"{name}.svg"
    tmp = path.with_suffix(".svg.tmp")
    tmp.write_bytes(graph.pipe(format="svg"))
    tmp.replace(path)  # readers see the old or the new drawing, never half of one
    return path


__all__ = ["namespace_graph", "render", "OUTPUT_DIR", "KINDS"]
