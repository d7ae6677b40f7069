"""IP address management: which subnet a network gets, which address an endpoint gets.

* **Subnets** come from Docker's default pools — 172.17.0.0/16 … 172.31.0.0/16, then
  192.168.0.0/20 … 192.168.240.0/20 — and a candidate is skipped when it overlaps a subnet the host
  already routes (its LAN, a VPN, another daemon's bridge) or another network of ours: two routes
  for one subnet would send the container's replies to the wrong place.
* **Addresses**: the gateway (first usable address unless given), then the lowest free address of
  the ``--ip-range`` (or of the subnet); the network and broadcast addresses are never handed out.
  A static ``--ip`` must be inside the subnet and free.

The allocator is persisted (one JSON document, atomic writes) so a daemon restart neither forgets
an address that a running container holds nor hands it out twice (a daemon crash loses nothing
that was written). Networks are fsynced too; an address is not: only a running container holds
one, and nothing runs after a power cut — ``manager.recover`` gives back addresses whose owner it
does not know. Pure Python: no netlink here.
"""
from __future__ import annotations

import ipaddress
import threading

from ..util import atomic_write_json, read_json

POOLS = [f"172.{n}.0.0/16" for n in range(17, 32)] + [f"192.168.{n}.0/20" for n in range(0, 256, 16)]


class IPAMError(ValueError):
    pass


def overlaps(a, b) -> bool:
    return ipaddress.ip_network(a).overlaps(ipaddress.ip_network(b))


def pick_subnet(taken, pools=POOLS) -> str:
    """The first pool subnet overlapping none of ``taken`` (host routes and our own networks)."""
    taken = [ipaddress.ip_network(t, strict=False) for t in taken]
    for cand in pools:
        net = ipaddress.ip_network(cand)
        if not any(net.overlaps(t) for t in taken):
            return cand
    raise IPAMError("could not find an available, non-overlapping IPv4 address pool among the "
                    "defaults to assign to the network")


def host_address(subnet, text: str, invalid: str, outside: str):
    """``text`` as an address of a host in ``subnet`` (not its network or broadcast address)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise IPAMError(invalid) from None
    if ip not in subnet or ip in (subnet.network_address, subnet.broadcast_address):
        raise IPAMError(outside)
    return ip


class Allocator:
    """Subnets and addresses of every network, persisted at ``path``."""

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.RLock()
        self.pools: dict = read_json(path, {}) or {}  # net id -> {subnet, gateway, range, used{ip: owner}}

    def _save(self, fsync: bool = True) -> None:
        atomic_write_json(self.path, self.pools, fsync=fsync)

    def add_network(self, net_id: str, subnet: str, gateway: str = "", ip_range: str = "",
                    others=()) -> dict:
        """Register a network's subnet (validated) and reserve its gateway."""
        with self.lock:
            try:
                sn = ipaddress.ip_network(subnet, strict=False)
            except ValueError:
                raise IPAMError(f"invalid subnet {subnet}") from None
            if sn.version != 4:
                raise IPAMError("IPv6 networks are not supported by minidocker yet")
            if sn.prefixlen > 30:
                raise IPAMError(f"subnet {subnet} is too small for a network")
            if str(sn) != subnet.strip():
                raise IPAMError(f"invalid subnet {subnet}: it should be {sn}")
            for other in others:
                if sn.overlaps(ipaddress.ip_network(other)):
                    raise IPAMError("Pool overlaps with other one on this address space")
            if gateway:
                gw = host_address(sn, gateway, f"invalid gateway address {gateway}",
                                  f"no matching subnet for gateway {gateway}")
            else:
                gw = sn.network_address + 1
            if ip_range:
                try:
                    rng = ipaddress.ip_network(ip_range, strict=False)
                except ValueError:
                    raise IPAMError(f"invalid ip-range {ip_range}") from None
                if not rng.subnet_of(sn):
                    raise IPAMError(f"no matching subnet for range {ip_range}")
            self.pools[net_id] = {"subnet": str(sn), "gateway": str(gw), "range": ip_range or "",
                                  "used": {str(gw): "gateway"}}
            self._save()
            return self.pools[net_id]

    def remove_network(self, net_id: str) -> None:
        with self.lock:
            if self.pools.pop(net_id, None) is not None:
                self._save()

    def allocate(self, net_id: str, owner: str, static: str = "") -> str:
        """An address for ``owner`` (an endpoint) on the network; ``static`` asks for one."""
        with self.lock:
            p = self.pools[net_id]
            sn = ipaddress.ip_network(p["subnet"])
            if static:
                ip = host_address(sn, static, f"invalid IPv4 address: {static}",
                                  f"no configured subnet or ip-range contain the IP address {static}")
                if p["used"].get(str(ip), owner) != owner:
                    raise IPAMError(f"Address already in use")
                chosen = str(ip)
            else:
                space = ipaddress.ip_network(p["range"]) if p["range"] else sn
                chosen = next((str(ip) for ip in space.hosts()
                               if str(ip) not in p["used"] and ip != sn.broadcast_address), None)
                if chosen is None:
                    raise IPAMError(f"no available IPv4 addresses on this network's address pools: "
                                    f"{p['subnet']}")
            p["used"][chosen] = owner
            self._save(fsync=False)
            return chosen

    def release(self, net_id: str, address: str) -> None:
        with self.lock:
            p = self.pools.get(net_id)
            if p and p["used"].get(address) not in (None, "gateway"):
                del p["used"][address]
                self._save(fsync=False)
