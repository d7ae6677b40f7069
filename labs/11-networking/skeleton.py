"""Lab 11 — wire namespaces to a bridge. Fill in every TODO; `minidocker lab check 11` tells you how
far you are. The reference is minidocker/network/links.py (try not to read it before your checks pass).

Netlink through pyroute2: ``with IPRoute() as ipr:`` then ``ipr.link("add", ifname=..., kind=...)``,
``ipr.link_lookup(ifname=...)`` -> [index], ``ipr.link("set", index=..., master=/state=/net_ns_fd=/
ifname=/address=...)``, ``ipr.addr("add", index=..., address=..., prefixlen=...)``,
``ipr.route("add", dst="0.0.0.0/0", gateway=...)``. A netlink socket works in the namespace of the
thread that created it: for work *inside* a namespace, create the IPRoute in
``minidocker.network.netns.in_netns(path, fn)``.
"""
from __future__ import annotations

from minidocker.network import netns  # noqa: F401  (in_netns: run a function inside a namespace)


def create_bridge(name: str, gateway: str, prefixlen: int, mtu: int = 1500) -> None:
    """A bridge ``name`` with the address ``gateway/prefixlen``, up (``ip link add NAME type bridge``,
    ``ip addr add``, ``ip link set up``). An existing bridge is reused."""
    raise NotImplementedError("TODO: add the bridge (kind='bridge'), give it the gateway address, bring it up")


def attach(netns_path: str, bridge: str, host_name: str, ifname: str, address: str, prefixlen: int,
           gateway: str | None, mac: str | None = None, mtu: int = 1500, default_route: bool = True) -> str:
    """A veth pair: ``host_name`` enslaved to ``bridge`` and up; the peer moved into the namespace
    pinned at ``netns_path`` (open the file, pass the fd as ``net_ns_fd``), renamed ``ifname``, given
    ``address/prefixlen``, up, with ``lo`` up and a default route via ``gateway``. Returns the
    inner end's MAC address."""
    raise NotImplementedError("TODO: veth pair (kind='veth', peer={'ifname': ...}), master, move, then the inside")


def delete(name: str, ns: str | None = None) -> None:
    """Delete the link ``name`` (in the namespace ``ns``, or the host's); missing is not an error."""
    raise NotImplementedError("TODO: look the index up; ipr.link('del', index=...) when found")
