"""Draw a network topology from live netlink state: namespaces with their interfaces and addresses,
the veth pairs that join them to the host's bridges, and (as a note) the nftables table.

The pairing is read, not assumed: a veth's ``/sys/class/net/NAME/iflink`` on the host is the
ifindex of its peer *inside* the namespace, and the peer's ``iflink`` (read through a netlink
socket made in the namespace) is the host end's ifindex.

    >>> from minidocker.diagrams import network
    >>> network.render(network.topology_graph({"c1": "/run/.../netns/c1"}, table="minidocker"), "11-topology")
"""
from __future__ import annotations

import os

import graphviz

from ..network import links, nft
from .mounts import render  # noqa: F401  (same output directory and atomic write)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def inside(ns_path: str) -> list[dict]:
    """Interfaces in a namespace: name, index, iflink (the peer's index for a veth), IPv4 addresses."""
    def read(ipr):
        addrs: dict[int, list[str]] = {}
        for a in ipr.get_addr(family=2):
            addrs.setdefault(a["index"], []).append(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
        return [{"name": l.get_attr("IFLA_IFNAME"), "index": l["index"], "iflink": l.get_attr("IFLA_LINK"),
                 "addresses": addrs.get(l["index"], [])} for l in ipr.get_links()]
    return links._in(ns_path, read)


def host_bridges(names=None) -> dict[str, list[str]]:
    """Bridge -> its ports, from /sys/class/net (only ``names`` when given)."""
    out = {}
    for br in sorted(os.listdir("/sys/class/net")):
        if os.path.isdir(f"/sys/class/net/{br}/bridge") and (names is None or br in names):
            out[br] = sorted(os.listdir(f"/sys/class/net/{br}/brif"))
    return out


def topology_graph(namespaces: dict[str, str], bridges=None, table: str | None = None,
                   title: str = "network topology (live)") -> graphviz.Graph:
    g = graphviz.Graph("topology", graph_attr={"rankdir": "LR", "fontname": "Helvetica", "label": title,
                                               "labelloc": "t", "compound": "true"},
                       node_attr={"fontname": "Helvetica", "fontsize": "10", "shape": "box", "style": "rounded"})
    peers = {}  # host end ifindex -> node id inside a namespace
    for label, path in namespaces.items():
        with g.subgraph(name=f"cluster_{label}") as sub:
            sub.attr(label=f"netns {label}", style="rounded,filled", fillcolor="#e7f5ff")
            for i in inside(path):
                node = f"{label}_{i['name']}"
                sub.node(node, f"{i['name']}\n" + "\n".join(i["addresses"]))
                if i["iflink"] and i["iflink"] != i["index"]:
                    peers[i["iflink"]] = node
    brs = host_bridges(bridges)
    with g.subgraph(name="cluster_host") as host:
        host.attr(label="host (initial network namespace)", style="rounded,filled", fillcolor="#fff3bf")
        for br, ports in brs.items():
            idx = int(_read(f"/sys/class/net/{br}/ifindex") or 0)
            addrs = links._in(None, lambda ipr: [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                                                 for a in ipr.get_addr(family=2, index=idx)])
            host.node(br, f"bridge {br}\n" + "\n".join(addrs), shape="box3d")
            for p in ports:
                host.node(p, f"veth {p}")
                host.edge(br, p)
        if table and nft.exists(table):
            rules = [line.strip() for line in nft.listing(table).splitlines()
                     if any(w in line for w in ("dnat", "masquerade", "drop"))]
            host.node("nft", f"nft table ip {table}\\l" + "".join(r[:70] + "\\l" for r in rules), shape="note")
    for br, ports in brs.items():
        for p in ports:
            idx = int(_read(f"/sys/class/net/{p}/ifindex") or 0)
            if idx in peers:
                g.edge(p, peers[idx], label="veth pair", style="bold")
    return g
