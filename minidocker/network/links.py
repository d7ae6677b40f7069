"""Links, addresses and routes through netlink (rtnetlink(7)), via pyroute2 — the same messages
``ip link``/``ip addr``/``ip route`` send; a library because netlink's attribute encoding is long and
unilluminating to write by hand, and pyroute2 is the maintained Python binding.

* a **bridge** is a virtual switch: a host device that forwards frames between its ports; it gets
  the network's gateway address, so the host routes the subnet through it;
* a **veth pair** is a virtual cable: what enters one end leaves the other. One end (``md…``) is
  enslaved to the bridge; the other is *created inside* the container's namespace (the peer's
  ``IFLA_NET_NS_FD``), already named ``eth0``, then given its address, brought up with ``lo``, and
  a default route via the gateway.

Cost is the lesson of ``attach``: one request for the pair (enslaved and up as it is made), a
few for the inside, all on two netlink sockets opened once — one in the host's namespace, one in
the container's — by one thread. Creating the peer in place rather than moving it afterwards
saves the move's ``synchronize_net()`` (~20 ms here), and there is no temporary name to rename.
Deleting a veth costs that grace period too: the daemon leaves it to the kernel, which destroys
both ends with the namespace (``manager``), or deletes it off the critical path.

pyroute2 is imported inside ``_ipr`` only: importing it costs most of a second (host-facts) and
~25 MB; a daemon runs these functions in a helper process instead (``offload``, worker.py).
Man pages: ip-link(8), veth(4), bridge(8), ip-address(8), ip-route(8).
"""
from __future__ import annotations

import ipaddress
import os

from . import netns


_worker = None   # a daemon's netlink helper process (worker.py), set by offload()


def offload() -> None:
    """Make the functions below that talk netlink run in a helper process (worker.py): a daemon
    calls this at start so that pyroute2 never loads into it."""
    global _worker
    if _worker is None:
        from .worker import Worker
        _worker = Worker()


def stop_offload() -> None:
    """End the helper process (a daemon's clean stop); a later call starts another."""
    if _worker is not None:
        _worker.stop()


def _netlink(fn):
    """Run ``fn`` in the daemon's helper process when offload() was called (in-process otherwise)."""
    import functools

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if _worker is not None:
            return _worker.call(fn.__name__, *args, **kwargs)
        return fn(*args, **kwargs)
    return call


def _ipr():
    import logging
    from pyroute2 import IPRoute  # lazy: see the module docstring
    logging.getLogger("pyroute2").setLevel(logging.WARNING)  # its DEBUG traces every message
    return IPRoute()


def _in(netns_path: str | None, fn):
    """``fn(ipr)`` with a netlink socket of the namespace at ``netns_path`` (None: the caller's).

    A netlink socket talks to the namespace of the thread that *created* it, so the socket is made
    by a thread that joined the namespace (``netns.in_netns``). pyroute2's own ``netns=`` argument
    forks a helper process instead, and a signal to that fork of a daemon would reach the
    daemon's asyncio signal handling through the inherited wake-up fd. Always a fresh thread:
    pyroute2's synchronous API runs an asyncio loop, which fails in a thread already running one
    (a Jupyter kernel's)."""
    def run():
        with _ipr() as ipr:
            return fn(ipr)
    return netns.in_netns(netns_path, run)


def _index(ipr, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def exists(name: str, ns: str | None = None) -> bool:
    """Whether the link exists; in the caller's namespace /sys/class/net says so without netlink."""
    if ns is None:
        return os.path.exists(f"/sys/class/net/{name}")
    return _exists_in(name, ns)


@_netlink
def _exists_in(name: str, ns: str) -> bool:
    return _in(ns, lambda ipr: _index(ipr, name) is not None)


@_netlink
def names(prefix: str = "", ns: str | None = None) -> list[str]:
    """Every link name starting with ``prefix`` (the leak check: ``names("md")``)."""
    return _in(ns, lambda ipr: sorted(n for n in (l.get("ifname") for l in ipr.get_links())
                                      if n and n.startswith(prefix)))


@_netlink
def create_bridge(name: str, gateway: str, prefixlen: int, mtu: int = 1500) -> None:
    """A bridge with the gateway address, up. An existing one (after a restart) is reused."""
    def go(ipr):
        idx = _index(ipr, name)
        if idx is None:
            ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
            idx = _index(ipr, name)
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=2)}
        if (gateway, prefixlen) not in have:
            ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen)
        ipr.link("set", index=idx, state="up")
    _in(None, go)


@_netlink
def delete(name: str, ns: str | None = None) -> None:
    """Delete a link (a veth takes its peer along). Missing is not an error."""
    def go(ipr):
        idx = _index(ipr, name)
        if idx is not None:
            ipr.link("del", index=idx)
    _in(ns, go)


def _session(netns_path: str, fn):
    """``fn(host, inner)``: two netlink sockets, one in the caller's namespace and one in the
    namespace at ``netns_path``, made by one fresh thread (host socket first, then the thread
    joins the namespace and makes the other) and used for every step of a wiring."""
    def run():
        with _ipr() as host:
            netns.join(netns_path)
            with _ipr() as inner:
                return fn(host, inner)
    return netns.in_netns(None, run)


def index(name: str) -> int | None:
    """A host link's index from /sys/class/net (no netlink round trip)."""
    try:
        with open(f"/sys/class/net/{name}/ifindex") as f:
            return int(f.read())
    except (FileNotFoundError, ValueError):
        return None


@_netlink
def attach(netns_path: str, bridge: str, host_name: str, ifname: str, address: str, prefixlen: int,
           gateway: str | None, mac: str | None = None, mtu: int = 1500, default_route: bool = True) -> str:
    """Wire a namespace to a bridge: veth ``host_name`` (on the bridge) <-> ``ifname`` (inside).
    Returns the inner end's MAC address."""
    leftover, master = index(host_name), index(bridge)
    if master is None:
        raise OSError(f"bridge {bridge} does not exist")

    def go(host, inner):
        if leftover is not None:  # a leftover of a crash: start clean
            host.link("del", index=leftover)
        peer = {"ifname": ifname, "mtu": mtu, "net_ns_fd": fd}
        if mac:
            peer["address"] = mac
        host.link("add", ifname=host_name, kind="veth", peer=peer, mtu=mtu, master=master, state="up")
        try:
            [link] = inner.link("get", ifname=ifname)
            idx = link["index"]
            inner.addr("add", index=idx, address=address, prefixlen=prefixlen)
            inner.link("set", index=idx, state="up")
            inner.link("set", index=1, state="up")  # lo: always index 1 in a namespace
            if gateway and default_route:
                inner.route("add", dst="0.0.0.0/0", gateway=gateway)
            return link.get_attr("IFLA_ADDRESS")
        except BaseException:
            host.link("del", index=index(host_name))
            raise
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _session(netns_path, go)
    finally:
        os.close(fd)


@_netlink
def delete_index(indexes: list[int]) -> None:
    """Delete host links by index (missing ones are not an error): the daemon's background cleanup
    of veths whose namespace is gone — by index, so a link of the same name made since is safe."""
    from pyroute2.netlink.exceptions import NetlinkError

    def go(ipr):
        for i in indexes:
            try:
                ipr.link("del", index=i)
            except NetlinkError:
                pass  # gone with its namespace already
    _in(None, go)


@_netlink
def routes(ns: str | None = None) -> list[str]:
    """IPv4 routes as ``dst/len`` (``default`` for 0/0) — what the topology drawing shows."""
    return _in(ns, lambda ipr: [f"{r.get_attr('RTA_DST')}/{r['dst_len']}" if r.get_attr("RTA_DST") else "default"
                                for r in ipr.get_routes(family=2, table=254)])


def host_subnets() -> list[ipaddress.IPv4Network]:
    """Networks the host already routes (main table), read from /proc/net/route — no netlink needed,
    so IPAM does not pay pyroute2's import."""
    out = []
    with open("/proc/net/route") as f:
        next(f, None)  # the header; a host with no IPv4 routes at all may give an empty file
        for line in f:
            p = line.split()
            dst, mask = int(p[1], 16), int(p[7], 16)
            if mask == 0:
                continue  # the default route covers everything; it does not make a subnet taken
            to_ip = lambda v: ipaddress.IPv4Address(int.from_bytes(v.to_bytes(4, "little"), "big"))
            out.append(ipaddress.IPv4Network(f"{to_ip(dst)}/{to_ip(mask)}", strict=False))
    return out
