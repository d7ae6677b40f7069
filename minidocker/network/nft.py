"""Packet filtering and NAT in ONE nftables table that minidocker owns (nft(8), libnftables-json(5)).

Two kinds of change, two kinds of transaction:

* **networks** (a bridge comes or goes: rare) change the table's *rules*. ``apply()`` replaces the
  whole table in one nft transaction (add table, delete table, add everything again: atomic, so no
  packet ever sees half a ruleset), derived from the networks and the published ports;
* **published ports** (every ``run -p``: frequent) change only what is the container's own: its
  elements of the table's two maps and its chain. ``add_ports()``/``delete_ports()`` add or
  remove them in one small transaction; nothing else changes. A verdict map is one hash lookup
  however many ports are published, where a rule per port would be a list walked rule by rule.

Nothing outside the table is touched; removing minidocker's networking is ``delete table``.
Chains (priorities as iptables' nat/filter tables):

* ``prerouting`` (nat, dstnat): packets for a *local* address (``fib daddr type local``) jump to
  ``ports``, where two verdict maps send a published port's packets to the chain of the container
  behind it: ``pub_any`` (proto . port) for ports published on every address, ``pub_addr``
  (host address . proto . port) for ports published on one address. A container's chain
  ``to-<its address>`` first returns packets that come from its own bridge (hairpin: such a
  connection reaches the userland proxy, as docker's ``! -i docker0``), then DNATs each port to
  ``container:port``. Connections the host itself makes (loopback included) reach the userland
  proxy instead (see ``proxy``: DNAT of 127.0.0.1 would need ``route_localnet``), so ports
  published on 127/8 get no element and no rule;
* ``postrouting`` (nat, srcnat): traffic from a bridge's subnet leaving by another interface is
  masqueraded (gets the outgoing interface's address), unless the network is ``--internal``;
* ``forward`` (filter): a bridge may not forward to another of our bridges (networks are
  isolated from each other: each pair gets a drop), and an internal network's bridge forwards
  nothing in or out.

nft's JSON is used rather than its text syntax so that no value is ever spliced into a command
language: every name and address is a JSON string. One ``nft -j -f -`` process per transaction.
"""
from __future__ import annotations

import json
import subprocess


def _m(left, right, op="=="):
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key):
    return {"meta": {"key": key}}


def _pay(proto, field):
    return {"payload": {"protocol": proto, "field": field}}


def _prefix(cidr: str):
    addr, length = cidr.split("/")
    return {"prefix": {"addr": addr, "len": int(length)}}


_L4 = [_meta("l4proto"), _pay("th", "dport")]
MAPS = {"pub_any": ["inet_proto", "inet_service"], "pub_addr": ["ipv4_addr", "inet_proto", "inet_service"]}


def _owners(ports: list[dict]) -> dict[str, list[dict]]:
    """Container address -> its ports that get DNAT (not those on 127/8)."""
    out: dict[str, list[dict]] = {}
    for p in ports:
        if not (p.get("host_ip") or "0.0.0.0").startswith("127."):
            out.setdefault(p["ip"], []).append(p)
    return out


def _container_cmds(verb: str, table: str, ports: list[dict]) -> list[dict]:
    """``add``: each container's chain, its rules and its map elements; ``delete``: the elements,
    then the emptied chains. ``ports`` may hold several containers' ports."""
    T = {"family": "ip", "table": table}
    adds, dels = [], []
    for ip, mine in _owners(ports).items():
        chain = {**T, "name": f"to-{ip}"}
        rules = [[_m(_meta("iifname"), mine[0]["bridge"]), {"return": None}]]
        elems: dict[str, list] = {}
        for p in mine:
            host_ip, key = p.get("host_ip") or "0.0.0.0", [p["proto"], int(p["host_port"])]
            match = [] if host_ip == "0.0.0.0" else [_m(_pay("ip", "daddr"), host_ip)]
            rules.append(match + [_m(_meta("l4proto"), p["proto"]), _m(_pay("th", "dport"), int(p["host_port"])),
                                  {"dnat": {"addr": ip, "port": int(p["port"])}}])
            name, key = ("pub_any", key) if host_ip == "0.0.0.0" else ("pub_addr", [host_ip, *key])
            elems.setdefault(name, []).append({"concat": key})
        adds += [{"add": {"chain": chain}}, {"flush": {"chain": chain}}]  # again after a restart: no doubles
        adds += [{"add": {"rule": {**T, "chain": chain["name"], "expr": r}}} for r in rules]
        for name, keys in elems.items():
            adds.append({"add": {"element": {**T, "name": name,
                                             "elem": [[k, {"goto": {"target": chain["name"]}}] for k in keys]}}})
            dels.append({"delete": {"element": {**T, "name": name, "elem": keys}}})
        dels += [{"flush": {"chain": chain}}, {"delete": {"chain": chain}}]
    return adds if verb == "add" else dels


def ruleset(table: str, networks: list[dict], ports: list[dict]) -> list[dict]:
    """The table's commands. ``networks``: {bridge, subnet, internal}; ``ports``: {proto, host_ip,
    host_port, ip, port, bridge}."""
    T = {"family": "ip", "table": table}
    cmds = [{"add": {"table": {"family": "ip", "name": table}}},
            {"delete": {"table": {"family": "ip", "name": table}}},
            {"add": {"table": {"family": "ip", "name": table}}}]

    def chain(name, **base):
        cmds.append({"add": {"chain": {**T, "name": name, **base}}})

    def rule(ch, *expr):
        cmds.append({"add": {"rule": {**T, "chain": ch, "expr": list(expr)}}})

    for name, key in MAPS.items():
        cmds.append({"add": {"map": {**T, "name": name, "type": key, "map": "verdict"}}})
    chain("prerouting", type="nat", hook="prerouting", prio=-100, policy="accept")
    chain("postrouting", type="nat", hook="postrouting", prio=100, policy="accept")
    chain("forward", type="filter", hook="forward", prio=0, policy="accept")
    chain("ports")
    rule("prerouting", _m({"fib": {"result": "type", "flags": ["daddr"]}}, "local"), {"jump": {"target": "ports"}})
    rule("ports", {"vmap": {"key": {"concat": _L4}, "data": "@pub_any"}})
    rule("ports", {"vmap": {"key": {"concat": [_pay("ip", "daddr"), *_L4]}, "data": "@pub_addr"}})
    bridges = [n["bridge"] for n in networks]
    for n in networks:
        if n.get("internal"):
            rule("forward", _m(_meta("iifname"), n["bridge"]), _m(_meta("oifname"), n["bridge"], "!="), {"drop": None})
            rule("forward", _m(_meta("oifname"), n["bridge"]), _m(_meta("iifname"), n["bridge"], "!="), {"drop": None})
        else:
            rule("postrouting", _m(_pay("ip", "saddr"), _prefix(n["subnet"])),
                 _m(_meta("oifname"), n["bridge"], "!="), {"masquerade": None})
        for other in bridges:
            if other != n["bridge"]:
                rule("forward", _m(_meta("iifname"), n["bridge"]), _m(_meta("oifname"), other), {"drop": None})
    return cmds + _container_cmds("add", table, ports)


def _nft(doc: dict | None, *args: str) -> str:
    r = subprocess.run(["nft", "-j", *args] + (["-f", "-"] if doc is not None else []),
                       input=json.dumps(doc).encode() if doc is not None else None, capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"nft: {r.stderr.decode().strip()}")
    return r.stdout.decode()


def apply(table: str, networks: list[dict], ports: list[dict]) -> None:
    """Replace the table with the ruleset for this state, in one transaction."""
    _nft({"nftables": ruleset(table, networks, ports)})


def add_ports(table: str, ports: list[dict]) -> None:
    """One container's published ports: its chain and map elements, one transaction; the table's
    own rules are not touched."""
    if cmds := _container_cmds("add", table, ports):
        _nft({"nftables": cmds})


def delete_ports(table: str, ports: list[dict]) -> None:
    """Take one container's elements and chain out again (RuntimeError when one is missing)."""
    if cmds := _container_cmds("delete", table, ports):
        _nft({"nftables": cmds})


def remove(table: str) -> None:
    """Delete the table (and so every chain and rule in it); missing is not an error."""
    if exists(table):
        _nft({"nftables": [{"delete": {"table": {"family": "ip", "name": table}}}]})


def exists(table: str) -> bool:
    out = json.loads(_nft(None, "list", "tables") or '{"nftables": []}')
    return any(i.get("table", {}).get("name") == table and i["table"].get("family") == "ip"
               for i in out.get("nftables", []))


def listing(table: str) -> str:
    """The table in nft's text syntax (for people: notebooks, ``network inspect --verbose``)."""
    r = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True, text=True)
    return r.stdout
