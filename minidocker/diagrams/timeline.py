"""Draw "how a container starts" from the transcript ``minidocker run --explain`` prints.

The transcript (``runtime/init.py``'s ``explain``, through ``GET /containers/ID/explain``) is the list of
kernel calls a start would make, in order, under ``# monitor: ...`` and ``# pid 1 ...`` headings. This
groups consecutive calls into steps (namespaces, cgroup, root filesystem, /dev, pivot_root, exec ...)
and draws them top to bottom in two lanes, one per process that makes them, each step labelled with
how many calls it is and the first of them. Only the text is read: no daemon, no runtime import.

    >>> from minidocker.diagrams import timeline
    >>> timeline.render_to(timeline.timeline_graph(text), "diagrams/gallery/container-start.svg")
"""
from __future__ import annotations

import re

import graphviz

from ..util import atomic_write

#: (step, pattern on the call) — the first that matches names the step; order matters. ``$X/rootfs``:
#: the transcript names the container's directory once (``# $B = ...``) and writes ``$B`` after.
STEPS = [
    ("new namespaces", r"^unshare\((?!CLONE_NEWCGROUP\))"),
    ("cgroup: create", r"^mkdir -p /sys/fs/cgroup"),
    ("cgroup: move pid 1 in", r"^write .*cgroup\.procs$"),
    ("cgroup: limits, device rules", r"^write .*/sys/fs/cgroup/"),
    ("cgroup namespace", r"^unshare\(CLONE_NEWCGROUP\)"),
    ("session keyring", r"^keyctl"),
    ("loopback up", r"^ioctl\('SIOCSIFFLAGS'"),
    ("private mounts", r"^mount\(None, '/'"),
    ("root filesystem (overlay)", r"^mount\('overlay'|^mount\('\$[A-Z]/rootfs', '\$[A-Z]/rootfs'"),
    ("/proc and /sys", r"\$[A-Z]/rootfs/(proc|sys)'"),
    ("/dev: tmpfs, nodes, pts, shm", r"\$[A-Z]/rootfs/dev"),
    ("/etc: hostname, hosts, resolv.conf", r"\$[A-Z]/rootfs/etc|^mount\('\$[A-Z]/(hostname|hosts|resolv)"),
    ("pivot_root", r"^(chdir\('\$[A-Z]/rootfs'\)|pivot_root|umount2\('\.')"),
    ("cgroupfs, read-only", r"'/sys/fs/cgroup"),
    ("masked and read-only paths", r"^mount\(.*'/(proc|sys)/"),
    ("hostname", r"^sethostname"),
    ("seccomp filter", r"^seccomp|PR_SET_NO_NEW_PRIVS"),
    ("user, groups", r"^(setgroups|setres[ug]id)"),
    ("capabilities dropped", r"^(prctl\(PR_(CAPBSET_DROP|SET_KEEPCAPS|CAP_AMBIENT)|capset)"),
    ("exec the command", r"^execve"),
]
COLOURS = {"runtime": "#ffe8cc", "pid 1": "#d8f3dc"}


def parse(text: str) -> list[tuple[str, str, int, str]]:
    """[(actor, step, number of calls, first call)] in order, consecutive calls of a step merged;
    actor "runtime" (the process that creates the container) or "pid 1"."""
    actor, out = None, []
    for line in text.splitlines():
        if line.startswith(("# monitor", "# runtime")):   # the process outside, before and after chapter 9
            actor = "runtime"
            continue
        if line.startswith("# pid 1"):
            actor = "pid 1"
            continue
        if line.strip().startswith("#") or not line.strip() or actor is None:   # comments, legends
            continue
        call = re.sub(r"^\s*\d+\s+", "", line).strip()
        call = re.sub(r"^write\s+", "write ", call)
        step = next((name for name, pattern in STEPS if re.search(pattern, call)), "other")
        if step == "other" and call.startswith("chdir(") and out and out[-1][0] == actor:
            step = out[-1][1]   # a chdir finishes the step before it (pivot_root; the working dir)
        if out and out[-1][0] == actor and out[-1][1] == step:
            a, s, n, first = out[-1]
            out[-1] = (a, s, n + 1, first)
        else:
            out.append((actor, step, 1, call))
    return out


def _short(call: str, n: int = 48) -> str:
    call = re.sub(r"/sys/fs/cgroup/[^ ]*/([^/ ]+)$", r"…/\1", call)
    call = re.sub(r"[0-9a-f]{64}", "ID", call)
    return call if len(call) <= n else call[: n - 1] + "…"


def timeline_graph(text: str, title: str = "how a container starts: minidocker run --explain") -> graphviz.Digraph:
    steps = parse(text)
    if not steps:
        raise ValueError("no kernel calls in this text: expected the output of minidocker run --explain")
    g = graphviz.Digraph("timeline", graph_attr={"rankdir": "TB", "label": title, "labelloc": "t",
                                                 "fontname": "Helvetica", "nodesep": "0.2", "ranksep": "0.25"},
                         node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                                    "fontsize": "10"})
    for actor in COLOURS:
        with g.subgraph(name=f"cluster_{actor.replace(' ', '')}") as lane:
            lane.attr(label=actor, style="rounded", color="#999999")
            for i, (a, step, n, first) in enumerate(steps):
                if a == actor:
                    calls = f"{n} calls" if n > 1 else "1 call"
                    lane.node(f"s{i}", f"{i + 1}. {step}\\n{calls}: {_short(first)}", fillcolor=COLOURS[actor])
    for i in range(len(steps) - 1):
        g.edge(f"s{i}", f"s{i + 1}")
    return g


def render_to(graph: graphviz.Digraph, path: str) -> str:
    """Write ``graph`` as SVG at ``path`` (atomically); return the path."""
    atomic_write(path, graph.pipe(format="svg"), fsync=False)
    return path


__all__ = ["parse", "timeline_graph", "render_to", "STEPS"]
