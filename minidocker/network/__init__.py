"""Chapter 11: container networking — what `docker run -p 8080:80` and `docker network create` build.

A new network namespace has only a loopback device, and it is down. To put a container on a network
the engine builds, outside the container and through netlink, the same few objects every time:

1. ``netns``  a network namespace that exists before the container does, pinned by a bind mount of
              its nsfs file (so the runtime can *join* it: OCI ``linux.namespaces[].path``);
2. ``links``  a veth pair (a virtual cable) whose one end goes into the namespace as ``eth0``, the
              other end is enslaved to a Linux bridge (a virtual switch) on the host; addresses and
              a default route via the bridge's address;
3. ``ipam``   which subnet a network gets (never one the host already routes) and which address
              each endpoint gets (a persisted allocator: a restart does not hand out an address twice);
4. ``nft``    NAT: masquerade traffic leaving a bridge's subnet, DNAT published ports, isolate
              networks from each other, keep ``--internal`` networks in — all in ONE nftables table
              that minidocker owns, rewritten atomically from the state (nft's JSON interface);
5. ``proxy``  a userland proxy that listens on the host's published address (loopback included);
6. ``dns``    an embedded DNS server at 127.0.0.11 inside each container on a user network;
7. ``sysctl`` the host settings it needs (``ip_forward``), restored when the last bridge goes.

``manager.Networks`` ties them together for the daemon; every object it creates is recorded in its
state directory and removed by ``remove_network``/``detach``/``shutdown``. pyroute2 is imported only
inside the functions that use it (``links``): importing it costs most of a second, which the CLI
and the daemon's start-up should not pay.

Man pages: ip-netns(8), veth(4), bridge(8), ip-route(8), nft(8), libnftables-json(5), resolv.conf(5),
hosts(5); RFC 1035 (DNS).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Settings:
    """Per-daemon names, so two daemons (or a test's) never share a bridge or a table."""
    state_dir: str                      # persisted state: networks, allocations, endpoints, netns pins
    bridge: str = "minidocker0"         # the default network's bridge
    table: str = "minidocker"           # the one nftables table this daemon owns
    default_subnet: str = ""            # "" = the first free pool subnet (172.17.0.0/16 first)
    default_gateway: str = ""           # "" = the subnet's first address
    upstreams: list[str] = field(default_factory=list)   # upstream DNS servers for unknown names
    userland_proxy: bool = True
