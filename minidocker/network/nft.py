"""Packet filtering and NAT in ONE nftables table that minidocker owns (nft(8), libnftables-json(5)).

The table is *derived*: ``ruleset()`` computes it from the networks and published ports, and
``apply()`` replaces it in one nft transaction (add table, delete table, add everything again:
atomic, so no packet ever sees half a ruleset). Nothing outside the table is touched; removing
minidocker's networking is ``delete table``. Chains (priorities as iptables' nat/filter tables):

* ``prerouting`` (nat, dstnat): packets for a *local* address (``fib daddr type local``) jump to
  ``ports``, where each published port is a DNAT to ``container:port`` — for traffic arriving from
  other interfaces or namespaces. Connections the host itself makes (loopback included) reach the
  userland proxy instead (see ``proxy``: DNAT of 127.0.0.1 would need ``route_localnet``);
* ``postrouting`` (nat, srcnat): traffic from a bridge's subnet leaving by another interface is
  masqueraded (gets the outgoing interface's address), unless the network is ``--internal``;
* ``forward`` (filter): a bridge may not forward to another of our bridges (networks are
  isolated from each other: each pair gets a drop), and an internal network's bridge forwards
  nothing in or out.

nft's JSON is used rather than its text syntax so that no value is ever spliced into a command
language: every name and address is a JSON string.
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


def ruleset(table: str, networks: list[dict], ports: list[dict]) -> list[dict]:
    """The table's commands. ``networks``: {bridge, subnet, internal}; ``ports``: {proto, host_ip,
    host_port, ip, port, bridge}."""
    T = {"family": "ip", "table": table}
    cmds = [{"add": {"table": {"family": "ip", "name": table}}},
            {"delete": {"table": {"family": "ip", "name": table}}},
            {"add": {"table": {"family": "ip", "name": table}}}]

    def chain(name, **base):
        c = {**T, "name": name}
        if base:
            c.update(base)
        cmds.append({"add": {"chain": c}})

    def rule(ch, *expr, comment=None):
        r = {**T, "chain": ch, "expr": list(expr)}
        if comment:
            r["comment"] = comment
        cmds.append({"add": {"rule": r}})

    chain("prerouting", type="nat", hook="prerouting", prio=-100, policy="accept")
    chain("postrouting", type="nat", hook="postrouting", prio=100, policy="accept")
    chain("forward", type="filter", hook="forward", prio=0, policy="accept")
    chain("ports")
    rule("prerouting", _m({"fib": {"result": "type", "flags": ["daddr"]}}, "local"), {"jump": {"target": "ports"}})
    for p in ports:
        ip = p.get("host_ip") or "0.0.0.0"
        if ip.startswith("127."):
            continue  # loopback: only the host's own connections reach it, via the proxy
        expr = [_m(_meta("iifname"), p["bridge"], "!=")]
        if ip != "0.0.0.0":
            expr.append(_m(_pay("ip", "daddr"), ip))
        expr += [_m(_pay(p["proto"], "dport"), int(p["host_port"])),
                 {"dnat": {"addr": p["ip"], "port": int(p["port"])}}]
        rule("ports", *expr, comment=f"{ip}:{p['host_port']}/{p['proto']}")
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
    return cmds


def _nft(doc: dict | None, *args: str) -> str:
    r = subprocess.run(["nft", "-j", *args] + (["-f", "-"] if doc is not None else []),
                       input=json.dumps(doc).encode() if doc is not None else None, capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"nft: {r.stderr.decode().strip()}")
    return r.stdout.decode()


def apply(table: str, networks: list[dict], ports: list[dict]) -> None:
    """Replace the table with the ruleset for this state, in one transaction."""
    _nft({"nftables": ruleset(table, networks, ports)})


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
