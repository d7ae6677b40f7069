"""``Networks``: the daemon's networks, endpoints and published ports, built from this chapter's
pieces and recorded so that every object can be removed — also after a crash.

State (``Settings.state_dir``, atomic JSON writes):
* ``networks.json``  id -> the network (name, driver, subnet, gateway, internal, labels, bridge);
* ``ipam.json``      the allocator (``ipam.Allocator``);
* ``sandboxes.json`` container id -> its netns path, endpoints (network, veth, address, MAC,
                     aliases) and published ports;
* ``netns/<id>``     the pinned namespaces.

Derived: the nftables table — rewritten whole (``nft.apply``) only when the set of live networks
changes, while a container's published ports come and go as its own small transaction
(``nft.add_ports``/``delete_ports``) — the DNS sockets and the proxies (``recover`` reopens them
for the containers still running after a daemon restart and removes what belonged to dead ones).
The ``ip_forward`` hold (``sysctl``) is taken while a bridge exists and released when the last
one goes.

A container start on an existing bridge is therefore: a thread that creates and pins the
namespace (and brings ``lo`` up), one thread with two netlink sockets that wires the veth pair
(``links.attach``), an address from the allocator — and no nft process unless it publishes ports.
Its exit gives the address back and unpins the namespace; the kernel destroys the veth pair with
the namespace, and a background thread deletes whatever is left (``_reap``), so nobody waits for
the ~20 ms ``synchronize_net()`` a link deletion costs.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import threading

from ..util import atomic_write_json, new_id, now_rfc3339, read_json
from . import Settings, ipam, links, netns, nft, sysctl
from .dns import Server as DNSServer
from .proxy import Proxy

DEFAULT = "bridge"


class NetworkError(ValueError):
    """Bad request (400)."""


class NotFound(LookupError):
    pass


class Conflict(RuntimeError):
    pass


def _mtu(net: dict) -> int:
    """``-o com.docker.network.driver.mtu=N``: the bridge's and its veths' MTU (default 1500)."""
    return int(net["Options"].get("com.docker.network.driver.mtu", 1500))


class Networks:
    def __init__(self, settings: Settings):
        self.s = settings
        os.makedirs(os.path.join(settings.state_dir, "netns"), exist_ok=True)
        self.lock = threading.RLock()
        self.nets: dict = read_json(self._p("networks.json"), {}) or {}
        self.boxes: dict = read_json(self._p("sandboxes.json"), {}) or {}
        self.ipam = ipam.Allocator(self._p("ipam.json"))
        self.proxies: dict[str, list[Proxy]] = {}
        self._dns: DNSServer | None = None
        self._applied: list | None = None      # the networks the nft table was last written for
        self._bridges_ready: set[str] = set()  # bridges made (or found) and held for, this run
        self._reapers: list[threading.Thread] = []
        self._adopt_names()
        if not any(n["Name"] == DEFAULT for n in self.nets.values()):
            self._new(DEFAULT, bridge=settings.bridge, subnet=settings.default_subnet,
                      gateway=settings.default_gateway,
                      options={"com.docker.network.bridge.default_bridge": "true",
                               "com.docker.network.bridge.name": settings.bridge})

    def _adopt_names(self) -> None:
        """A restart with another table or bridge name: what the old names made is ours, remove it."""
        path = self._p("names.json")
        old = read_json(path, {}) or {}
        if old.get("table") and old["table"] != self.s.table:
            nft.remove(old["table"])
            sysctl.release("net.ipv4.ip_forward", old["table"])
        for n in self.nets.values():
            if n["Name"] == DEFAULT and n["bridge"] != self.s.bridge:
                links.delete(n["bridge"])
                n["bridge"] = self.s.bridge
                n["Options"]["com.docker.network.bridge.name"] = self.s.bridge
                self._save()
        if old != {"table": self.s.table, "bridge": self.s.bridge}:
            atomic_write_json(path, {"table": self.s.table, "bridge": self.s.bridge})

    # ---- records ---------------------------------------------------------------------------------
    def _p(self, name):
        return os.path.join(self.s.state_dir, name)

    def _save(self, nets: bool = True):
        """Networks durably; sandboxes atomically but without fsync — they describe running
        containers, and after a power cut nothing runs (``recover`` then releases them all)."""
        if nets:
            atomic_write_json(self._p("networks.json"), self.nets)
        atomic_write_json(self._p("sandboxes.json"), self.boxes, fsync=False)

    def get(self, ref: str) -> dict:
        """A network by full id, name, or unique id prefix (docker's rule)."""
        with self.lock:
            if ref in self.nets:
                return self.nets[ref]
            for n in self.nets.values():
                if n["Name"] == ref:
                    return n
            found = [n for i, n in self.nets.items() if ref and i.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise NetworkError(f"network {ref} is ambiguous ({len(found)} matches found based on ID prefix)")
            raise NotFound(f"network {ref} not found")

    def list(self) -> list[dict]:
        with self.lock:
            return [dict(n) for n in self.nets.values()]

    def _new(self, name, bridge="", subnet="", gateway="", ip_range="", internal=False, labels=None,
             options=None) -> dict:
        nid = new_id()
        others = [n["Subnet"] for n in self.nets.values()]
        auto = not subnet
        if not subnet:
            subnet = ipam.pick_subnet(others + [str(s) for s in links.host_subnets()])
        self.ipam.add_network(nid, subnet, gateway, ip_range, others=others)
        pool = self.ipam.pools[nid]
        bridge = bridge or f"mdbr-{nid[:10]}"
        if len(bridge) > 15:
            raise NetworkError(f"bridge name {bridge!r} is longer than 15 characters")
        net = {"Name": name, "Id": nid, "Created": now_rfc3339(), "Driver": "bridge", "Internal": bool(internal),
               "Subnet": pool["subnet"], "Gateway": pool["gateway"], "IPRange": ip_range or "",
               "Labels": dict(labels or {}), "Options": dict(options or {}), "bridge": bridge, "auto": auto}
        self.nets[nid] = net
        self._save()
        return net

    def create(self, name: str, subnet="", gateway="", ip_range="", internal=False, labels=None,
               options=None) -> dict:
        with self.lock:
            if name in ("host", "none", DEFAULT) or any(n["Name"] == name for n in self.nets.values()):
                raise Conflict(f"network with name {name} already exists")
            options = dict(options or {})
            unknown = [k for k in options if k not in ("com.docker.network.bridge.name",
                                                         "com.docker.network.driver.mtu")]
            if unknown:
                raise NetworkError(f"network option {unknown[0]} is not supported by minidocker")
            mtu = options.get("com.docker.network.driver.mtu", "1500")
            if not str(mtu).isdigit() or not 68 <= int(mtu) <= 65535:
                raise NetworkError(f"invalid MTU {mtu!r}: expected a number from 68 to 65535")
            bridge = options.get("com.docker.network.bridge.name", "")
            if bridge and (bridge == self.s.bridge or any(n["bridge"] == bridge for n in self.nets.values())):
                raise Conflict(f"bridge name {bridge} is already in use")
            try:
                return self._new(name, bridge, subnet, gateway, ip_range, internal, labels, options)
            except ipam.IPAMError as e:
                raise NetworkError(str(e)) from None

    def endpoints_of(self, nid: str) -> dict:
        """container id -> endpoint on network ``nid``."""
        with self.lock:
            return {cid: b["endpoints"][nid] for cid, b in self.boxes.items() if nid in b["endpoints"]}

    def remove(self, ref: str) -> None:
        with self.lock:
            net = self.get(ref)
            if net["Name"] == DEFAULT:
                raise Conflict(f"bridge is a pre-defined network and cannot be removed")
            if self.endpoints_of(net["Id"]):
                raise Conflict(f"error while removing network: network {net['Name']} id {net['Id']} has active endpoints")
            del self.nets[net["Id"]]
            self.ipam.remove_network(net["Id"])
            self._save()
            links.delete(net["bridge"])
            self.sync()

    # ---- sandboxes and endpoints -----------------------------------------------------------------
    def sandbox(self, cid: str) -> str:
        """The container's network namespace (created once, pinned under the state dir)."""
        with self.lock:
            box = self.boxes.get(cid)
            if box and netns.is_pinned(box["netns"]):
                return box["netns"]
            path = self._p(f"netns/{cid}")
            netns.remove(path)
            netns.create(path, loopback_up=True)
            self.boxes[cid] = {"netns": path, "endpoints": {}, "ports": [], **(box or {}), "netns": path}
            self._save(nets=False)
            return path

    def _veth(self, cid, nid):
        return "md" + hashlib.sha256(f"{cid}/{nid}".encode()).hexdigest()[:10]

    def _ensure_bridge(self, net):
        if net["bridge"] in self._bridges_ready and links.exists(net["bridge"]):
            return  # made (or checked) and held for by this run already: nothing to ask the kernel
        if not links.exists(net["bridge"]) and net.get("auto") and not self.endpoints_of(net["Id"]):
            # Chosen before its bridge existed: another daemon may have taken the subnet since.
            others = [n["Subnet"] for n in self.nets.values() if n is not net]
            routed = [str(r) for r in links.host_subnets()]
            if any(ipam.overlaps(net["Subnet"], r) for r in routed):
                self.ipam.remove_network(net["Id"])
                pool = self.ipam.add_network(net["Id"], ipam.pick_subnet(others + routed))
                net.update(Subnet=pool["subnet"], Gateway=pool["gateway"])
                self._save()
        links.create_bridge(net["bridge"], net["Gateway"], ipaddress.ip_network(net["Subnet"]).prefixlen,
                            mtu=_mtu(net))
        sysctl.hold("net.ipv4.ip_forward", "1", self.s.table)
        self._bridges_ready.add(net["bridge"])

    def connect(self, cid: str, ref: str, name: str = "", aliases=(), ip: str = "", mac: str = "") -> dict:
        """Attach the container's sandbox to a network: veth, address, route; DNS names."""
        with self.lock:
            net = self.get(ref)
            nid = net["Id"]
            path = self.sandbox(cid)
            box = self.boxes[cid]
            if nid in box["endpoints"]:
                raise Conflict(f"endpoint with name {name or cid[:12]} already exists in network {net['Name']}")
            if ip and net["Name"] == DEFAULT:
                raise NetworkError("user specified IP address is supported on user defined networks only")
            self._ensure_bridge(net)
            try:
                addr = self.ipam.allocate(nid, cid, ip)
            except ipam.IPAMError as e:
                raise NetworkError(str(e)) from None
            try:
                ifname = f"eth{len(box['endpoints'])}"
                veth = self._veth(cid, nid)
                first = not box["endpoints"]
                got_mac = links.attach(path, net["bridge"], veth, ifname, addr,
                                       ipaddress.ip_network(net["Subnet"]).prefixlen, net["Gateway"], mac or None,
                                       mtu=_mtu(net), default_route=first and not net["Internal"])
            except BaseException:
                self.ipam.release(nid, addr)
                raise
            ep = {"NetworkID": nid, "EndpointID": new_id(), "IPAddress": addr, "Gateway": net["Gateway"],
                  "IPPrefixLen": ipaddress.ip_network(net["Subnet"]).prefixlen, "MacAddress": got_mac,
                  "veth": veth, "ifname": ifname, "Aliases": [a for a in aliases if a],
                  "name": name, "DNSNames": [x for x in [name, *aliases, cid[:12]] if x]}
            box["endpoints"][nid] = ep
            self._save(nets=False)
            self.sync()
            if net["Name"] != DEFAULT:
                self.dns().add(cid, path)
            return ep

    def disconnect(self, cid: str, ref: str, force: bool = False) -> None:
        with self.lock:
            net = self.get(ref)
            box = self.boxes.get(cid)
            ep = (box or {}).get("endpoints", {}).pop(net["Id"], None)
            if ep is None:
                if force:
                    return
                raise NotFound(f"container {cid[:12]} is not connected to network {net['Name']}")
            links.delete(ep["veth"])
            self.ipam.release(net["Id"], ep["IPAddress"])
            self._save(nets=False)
            self.sync()

    def release(self, cid: str) -> None:
        """Everything of a container: proxies, DNS socket, endpoints, addresses, its namespace."""
        with self.lock:
            for p in self.proxies.pop(cid, []):
                p.close()
            if self._dns:
                self._dns.remove(cid)
            box = self.boxes.pop(cid, None)
            if not box:
                return
            veths = [i for ep in box["endpoints"].values() if (i := links.index(ep["veth"])) is not None]
            for nid, ep in box["endpoints"].items():
                self.ipam.release(nid, ep["IPAddress"])
            netns.remove(box["netns"])
            self._save(nets=False)
            if not self.sync() and box["ports"]:
                self._ports("delete", box["ports"])
            if veths:
                self._reap(veths)

    def _reap(self, indexes: list[int]) -> None:
        """Delete host veth ends in the background. With the namespace unpinned and the container
        gone the kernel destroys each pair by itself; this covers a namespace something still
        holds (a ``--network container:`` joiner) — by index, so a same-named successor is safe."""
        self._reapers = [t for t in self._reapers if t.is_alive()]
        t = threading.Thread(target=links.delete_index, args=(indexes,), name="veth-reaper", daemon=True)
        t.start()
        self._reapers.append(t)

    def _ports(self, verb: str, ports: list[dict]) -> None:
        """One container's DNAT elements in or out; if the table disagrees (someone flushed it),
        rewrite it whole from the state instead."""
        try:
            (nft.add_ports if verb == "add" else nft.delete_ports)(self.s.table, ports)
        except RuntimeError:
            self._applied = None
            self.sync()

    # ---- published ports ---------------------------------------------------------------------------
    def publish(self, cid: str, bindings: list[dict]) -> list[dict]:
        """Open proxies (and DNAT rules) for ``bindings`` [{proto, host_ip, host_port, port}] on the
        container's first network; host_port 0 = a free one. Returns them with the ports chosen."""
        with self.lock:
            box = self.boxes[cid]
            if not box["endpoints"]:
                raise NetworkError("published ports need a bridge network")
            ep = next(iter(box["endpoints"].values()))
            bridge = self.nets[ep["NetworkID"]]["bridge"]
            opened, out = [], []
            try:
                for b in bindings:
                    p = Proxy(b["proto"], b.get("host_ip") or "0.0.0.0", int(b.get("host_port") or 0),
                              ep["IPAddress"], int(b["port"]))
                    opened.append(p)
                    out.append({**b, "host_ip": b.get("host_ip") or "0.0.0.0", "host_port": p.host_port,
                                "ip": ep["IPAddress"], "bridge": bridge})
            except OSError:
                for p in opened:
                    p.close()
                raise
            self.proxies.setdefault(cid, []).extend(opened)
            old, box["ports"] = box["ports"], out
            self._save(nets=False)
            if not self.sync():
                if old:
                    self._ports("delete", old)
                self._ports("add", out)
            return out

    def unpublish(self, cid: str) -> None:
        with self.lock:
            for p in self.proxies.pop(cid, []):
                p.close()
            if cid in self.boxes and self.boxes[cid]["ports"]:
                old, self.boxes[cid]["ports"] = self.boxes[cid]["ports"], []
                self._save(nets=False)
                if not self.sync():
                    self._ports("delete", old)

    # ---- names -------------------------------------------------------------------------------------
    def dns(self) -> DNSServer:
        if self._dns is None:
            self._dns = DNSServer(self.lookup, self.s.upstreams)
        return self._dns

    def lookup(self, cid: str, name: str):
        """Addresses for ``name`` as seen from container ``cid``: names on its user networks."""
        with self.lock:
            box = self.boxes.get(cid)
            if not box:
                return None
            found = []
            for nid in box["endpoints"]:
                if self.nets.get(nid, {}).get("Name") == DEFAULT:
                    continue
                for other, ep in self.endpoints_of(nid).items():
                    if name in [n.lower() for n in ep["DNSNames"]] and ep["IPAddress"] not in found:
                        found.append(ep["IPAddress"])
            return found or None

    # ---- the derived state -------------------------------------------------------------------------
    def sync(self) -> bool:
        """Rebuild the nft table from the state when the live networks changed (or it was never
        written by this run); take or drop the ip_forward hold. True when it rewrote (or removed)
        the table — the published ports of the state are then in it already."""
        with self.lock:
            live = [{"bridge": n["bridge"], "subnet": n["Subnet"], "internal": n["Internal"]}
                    for n in self.nets.values() if links.exists(n["bridge"])]
            if live == self._applied:
                return False
            if live:
                nft.apply(self.s.table, live, [p for b in self.boxes.values() for p in b["ports"]])
            else:
                nft.remove(self.s.table)
                sysctl.release("net.ipv4.ip_forward", self.s.table)
                self._bridges_ready.clear()
            self._applied = live
            return True

    def recover(self, running: set[str]) -> None:
        """After a (re)start: keep running containers' networking (DNS sockets, proxies, rules),
        remove what belonged to the others."""
        with self.lock:
            for cid in list(self.boxes):
                if cid not in running or not netns.is_pinned(self.boxes[cid]["netns"]):
                    self.release(cid)
                    continue
                box = self.boxes[cid]
                if any(self.nets.get(n, {}).get("Name") != DEFAULT for n in box["endpoints"]):
                    self.dns().add(cid, box["netns"])
                if box["ports"]:
                    self.publish(cid, [{k: p[k] for k in ("proto", "host_ip", "host_port", "port")} for p in box["ports"]])
            for name in os.listdir(self._p("netns")):
                if name not in self.boxes:
                    netns.remove(self._p(f"netns/{name}"))
            for nid, pool in self.ipam.pools.items():  # allocated, but the endpoint never recorded
                for addr, owner in list(pool["used"].items()):
                    if owner != "gateway" and owner not in self.boxes:
                        self.ipam.release(nid, addr)
            if self.boxes:
                self._applied = None  # rewritten whole from the state: what a dead daemon left is gone
                self.sync()

    def shutdown(self) -> None:
        """Clean daemon stop: close the sockets; remove bridges no container uses, and when none
        is left, the table and the sysctl hold (containers that keep running keep their network)."""
        with self.lock:
            for cid in list(self.proxies):
                for p in self.proxies.pop(cid):
                    p.close()
            if self._dns:
                self._dns.close()
                self._dns = None
            for t in self._reapers:
                t.join(10)
            used = {nid for b in self.boxes.values() for nid in b["endpoints"]}
            for n in self.nets.values():
                if n["Id"] not in used:
                    links.delete(n["bridge"])
            self._applied = None
            self.sync()
            links.stop_offload()   # the daemon's netlink helper process (if it ran one) ends
