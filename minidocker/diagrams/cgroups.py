"""Draw the cgroup tree of running containers from the live filesystem, with usage and limits.

One node per cgroup under the containers' parent (``minidocker`` by default): memory usage against
its limit, pids against ``pids.max``, the CPU quota, and whether it is frozen (blue) or near its
memory limit (orange). The numbers are read through the same drivers the engine uses, so the same
code draws a v1, v2 or hybrid host.

    >>> from minidocker.diagrams import cgroups as cgd
    >>> cgd.render(cgd.cgroup_tree_graph("minidocker", names={...}), "03-cgroups")
"""
from __future__ import annotations

import os

import graphviz

from .. import cgroups
from ..cgroups.driver import read
from .mounts import OUTPUT_DIR, render  # noqa: F401  (render: the shared svg writer)


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def children(layout: cgroups.Layout, parent: str) -> list[str]:
    """Names of the cgroups directly under ``parent`` (read from one hierarchy: v2's, or v1 pids)."""
    base = layout.unified if layout.mode == "v2" else (layout.v1.get("pids") or next(iter(layout.v1.values())))
    d = os.path.join(base, parent.strip("/"))
    return sorted(x for x in os.listdir(d) if os.path.isdir(os.path.join(d, x))) if os.path.isdir(d) else []


def describe(cg) -> dict:
    """Usage and limits of one cgroup, in plain numbers."""
    st = cg.stats()
    mem, pids, cpu = st.get("memory") or {}, st.get("pids") or {}, st.get("cpu") or {}
    if cg.version == "v1":
        quota = int(read(cg.dir("cpu"), "cpu.cfs_quota_us") or -1) if cg.dir("cpu") else -1
        period = int(read(cg.dir("cpu"), "cpu.cfs_period_us") or 100000) if cg.dir("cpu") else 100000
    else:
        q, _, p = read(cg.dir, "cpu.max", "max 100000").partition(" ")
        quota, period = (-1 if q == "max" else int(q)), int(p or 100000)
    return {"memory": mem.get("usage", 0), "memory_limit": mem.get("limit", 0),
            "pids": pids.get("current", 0), "pids_limit": pids.get("limit", 0),
            "cpus": quota / period if quota > 0 else 0, "throttled": cpu.get("throttled_periods", 0),
            "frozen": cg.frozen()}


def cgroup_tree_graph(parent: str = cgroups.DEFAULT_PARENT, names: dict[str, str] | None = None,
                      layout: cgroups.Layout | None = None) -> graphviz.Digraph:
    layout = layout or cgroups.detect()
    names = names or {}
    g = graphviz.Digraph("cgroups", graph_attr={"rankdir": "LR", "fontname": "Helvetica", "labelloc": "t",
                                                "label": f"cgroup tree under /{parent} ({layout.mode} host)"},
                         node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                                    "fontsize": "10"})
    hierarchies = ", ".join(sorted(layout.v1)) if layout.mode != "v2" else "unified"
    g.node("root", f"/ (hierarchy root)\n{hierarchies}", fillcolor="#e9ecef")
    g.node("parent", f"/{parent}", fillcolor="#e9ecef")
    g.edge("root", "parent")
    for cid in children(layout, parent):
        d = describe(cgroups.open_cgroup(cgroups.cgroup_path(parent, cid), layout))
        lines = [f"{names.get(cid, '')} {cid[:12]}".strip()]
        lim = d["memory_limit"]
        lines.append(f"memory {_mib(d['memory'])}" + (f" / {_mib(lim)}" if lim and lim < 2**50 else " (no limit)"))
        lines.append(f"pids {d['pids']}" + (f" / {d['pids_limit']}" if d["pids_limit"] else " (no limit)"))
        lines.append(f"cpus {d['cpus']:g}, throttled {d['throttled']} periods" if d["cpus"] else "cpus: no quota")
        if d["frozen"]:
            lines.append("FROZEN (paused)")
        near = lim and d["memory"] > 0.8 * lim
        colour = "#8ecae6" if d["frozen"] else ("#f4a261" if near else "#d8f3dc")
        g.node(cid, "\n".join(lines), fillcolor=colour)
        g.edge("parent", cid)
    return g
