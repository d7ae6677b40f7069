"""Links, addresses and routes through netlink (rtnetlink(7)), via pyroute2 — the same messages
``ip link``/``ip addr``/``ip route`` send; a library because netlink's attribute encoding is long and
unilluminating to write by hand, and pyroute2 is the maintained Python binding.

* a **bridge** is a virtual switch: a host device that forwards frames between its ports; it gets
  the network's gateway address, so the host routes the subnet through it;
* a **veth pair** is a virtual cable: what enters one end leaves the other. One end (``md…``) is
  enslaved to the bridge; the other is moved into the container's namespace *by fd* and renamed
  ``eth0`` there, given its address, brought up with ``lo``, and a default route via the gateway.

pyroute2 is imported inside ``_ipr`` only: importing it costs most of a second (host-facts).
Man pages: ip-link(8), veth(4), bridge(8), ip-address(8), ip-route(8).
"""
from __future__ import annotations

import ipaddress
import os


def _ipr(netns: str | None = None):
    from pyroute2 import IPRoute  # lazy: see the module docstring
    return IPRoute(netns=netns) if netns else IPRoute()


def _index(ipr, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def exists(name: str, netns: str | None = None) -> bool:
    with _ipr(netns) as ipr:
        return _index(ipr, name) is not None


def names(prefix: str = "", netns: str | None = None) -> list[str]:
    """Every link name starting with ``prefix`` (the leak check: ``names("md")``)."""
    with _ipr(netns) as ipr:
        return sorted(n for n in (l.get("ifname") for l in ipr.get_links()) if n and n.startswith(prefix))


def create_bridge(name: str, gateway: str, prefixlen: int, mtu: int = 1500) -> None:
    """A bridge with the gateway address, up. An existing one (after a restart) is reused."""
    with _ipr() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
            idx = _index(ipr, name)
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=2)}
        if (gateway, prefixlen) not in have:
            ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen)
        ipr.link("set", index=idx, state="up")


def delete(name: str, netns: str | None = None) -> None:
    """Delete a link (a veth takes its peer along). Missing is not an error."""
    with _ipr(netns) as ipr:
        idx = _index(ipr, name)
        if idx is not None:
            ipr.link("del", index=idx)


def attach(netns_path: str, bridge: str, host_name: str, ifname: str, address: str, prefixlen: int,
           gateway: str | None, mac: str | None = None, mtu: int = 1500, default_route: bool = True) -> str:
    """Wire a namespace to a bridge: veth ``host_name`` (on the bridge) <-> ``ifname`` (inside).
    Returns the inner end's MAC address."""
    peer_tmp = "mdp" + host_name[2:]
    with _ipr() as ipr:
        if _index(ipr, host_name) is not None:  # a leftover of a crash: start clean
            ipr.link("del", index=_index(ipr, host_name))
        ipr.link("add", ifname=host_name, kind="veth", peer={"ifname": peer_tmp, "mtu": mtu}, mtu=mtu)
        try:
            br = _index(ipr, bridge)
            host_idx = _index(ipr, host_name)
            ipr.link("set", index=host_idx, master=br)
            ipr.link("set", index=host_idx, state="up")
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                ipr.link("set", index=_index(ipr, peer_tmp), net_ns_fd=fd)
            finally:
                os.close(fd)
        except BaseException:
            delete(host_name)
            raise
    with _ipr(netns_path) as ns:
        idx = _index(ns, peer_tmp)
        kw = {"ifname": ifname}
        if mac:
            kw["address"] = mac
        ns.link("set", index=idx, **kw)
        ns.addr("add", index=idx, address=address, prefixlen=prefixlen)
        ns.link("set", index=idx, state="up")
        ns.link("set", index=_index(ns, "lo"), state="up")
        if gateway and default_route:
            ns.route("add", dst="0.0.0.0/0", gateway=gateway)
        return ns.get_links(idx)[0].get_attr("IFLA_ADDRESS")


def inner_names(netns_path: str) -> list[str]:
    return names("", netns_path)


def routes(netns: str | None = None) -> list[str]:
    """IPv4 routes as ``dst/len`` (``default`` for 0/0) — what the topology drawing shows."""
    with _ipr(netns) as ipr:
        out = []
        for r in ipr.get_routes(family=2, table=254):
            dst = r.get_attr("RTA_DST")
            out.append(f"{dst}/{r['dst_len']}" if dst else "default")
        return out


def host_subnets() -> list[ipaddress.IPv4Network]:
    """Networks the host already routes (main table), read from /proc/net/route — no netlink needed,
    so IPAM does not pay pyroute2's import."""
    out = []
    with open("/proc/net/route") as f:
        next(f)
        for line in f:
            p = line.split()
            dst, mask = int(p[1], 16), int(p[7], 16)
            if mask == 0:
                continue  # the default route covers everything; it does not make a subnet taken
            to_ip = lambda v: ipaddress.IPv4Address(int.from_bytes(v.to_bytes(4, "little"), "big"))
            out.append(ipaddress.IPv4Network(f"{to_ip(dst)}/{to_ip(mask)}", strict=False))
    return out
