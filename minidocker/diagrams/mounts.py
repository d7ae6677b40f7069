"""Draw a mount namespace's mount tree from live kernel state (/proc/PID/mountinfo).

Each node is one mount: its mount point, filesystem type, source and per-mount options; an edge goes
from a parent mount to the mounts on top of it. The colour shows propagation (mount_namespaces(7)):
shared mounts (events go to and come from peers) orange, slaves (receive only) blue, private grey,
unbindable red. Compare the host's tree with a container's: after pivot_root the container's root
mount has no parent in its own namespace — the host's tree it came from has been detached.

    >>> from minidocker.diagrams import mounts
    >>> mounts.render(mounts.mount_tree_graph("self"), "host-mounts")   # -> diagrams/host-mounts.svg
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import graphviz

from ..rootfs import MountEntry, mountinfo
from ..util import atomic_write

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT_DIR = REPO_ROOT / "diagrams"

_COLOURS = {"shared": "#f4a261", "master": "#8ecae6", "unbindable": "#e76f51", "private": "#e9ecef"}
_SHORT = 48  # characters of an option string shown on a node


def _propagation_kind(p: str) -> str:
    for kind in ("shared", "master", "unbindable"):
        if kind in p:
            return kind
    return "private"


def _short(text: str, n: int = _SHORT) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _label(e: MountEntry) -> str:
    lines = [e.mountpoint, f"{e.fstype}  from {_short(e.source, 30)}"]
    if e.root != "/":
        lines.append(f"root {_short(e.root, 40)}")          # a bind mount of a subdirectory
    lines.append(_short(e.options))
    lines.append(f"propagation: {e.propagation}")
    return "\n".join(lines)


def mount_tree_graph(pid: int | str = "self", entries: Iterable[MountEntry] | None = None,
                     title: str | None = None) -> graphviz.Digraph:
    """The mount tree of ``pid``'s mount namespace (or of already-read ``entries``, e.g. ones a
    container process returned) as a graphviz Digraph, parents above children."""
    rows = list(entries) if entries is not None else mountinfo(pid)
    ids = {e.id for e in rows}
    g = graphviz.Digraph("mounts", graph_attr={"rankdir": "LR", "fontname": "Helvetica",
                                               "label": title or f"mount tree of pid {pid}",
                                               "labelloc": "t"},
                         node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                                    "fontsize": "10"})
    for e in rows:
        kind = _propagation_kind(e.propagation)
        g.node(str(e.id), _label(e), fillcolor=_COLOURS[kind],
               penwidth="2" if e.readonly else "1", color="#d62828" if e.readonly else "black")
        if e.parent in ids and e.parent != e.id:
            g.edge(str(e.parent), str(e.id))
        else:
            # The root of this namespace's tree: its parent is outside what this process can see
            # (the detached old root in a container, or the namespace's own root on the host).
            g.node(f"p{e.id}", f"parent {e.parent}\n(not visible)", shape="plaintext", style="")
            g.edge(f"p{e.id}", str(e.id), style="dashed")
    with g.subgraph(name="cluster_legend") as leg:
        leg.attr(label="propagation (red border: read-only)", fontsize="9")
        for kind, colour in _COLOURS.items():
            leg.node(f"legend_{kind}", kind, fillcolor=colour, fontsize="9")
    return g


def render(graph: graphviz.Digraph, name: str) -> str:
    """Write ``graph`` as ``diagrams/NAME.svg`` at the repository root (created if missing; the
    directory is generated output) and return the path. Needs graphviz's ``dot`` program."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / f"{name}.svg"
    atomic_write(str(path), graph.pipe(format="svg"), fsync=False)
    return os.fspath(path)
