"""CLI of the networking chapter: ``run``/``create`` flags (``--network``, ``-p``, ``-P``, ``--ip``,
``--network-alias``, ``--dns*``, ``--add-host``, ``--mac-address``, ``--expose``), the ``network``
verbs (ls, create, inspect, rm, prune, connect, disconnect) and ``port``. Standard library only.

``-p`` follows docker's syntax: ``[ip:][host_port:]container_port[/tcp|udp]``; an empty or absent
host port lets the daemon pick a free one (``-p 80``, ``-p 127.0.0.1::80``).
"""
from __future__ import annotations

import json
import sys


def net_opts(p) -> None:
    p.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:][HOST:]PORT[/PROTO]")
    p.add_argument("-P", "--publish-all", action="store_true")
    p.add_argument("--expose", action="append", default=[])
    p.add_argument("--ip")
    p.add_argument("--network-alias", action="append", default=[])
    p.add_argument("--dns", action="append", default=[])
    p.add_argument("--dns-search", action="append", default=[])
    p.add_argument("--dns-option", action="append", default=[])
    p.add_argument("--add-host", action="append", default=[])
    p.add_argument("--mac-address")
    p.add_argument("--link", action="append", default=[])


def parse_publish(spec: str) -> tuple[str, dict]:
    """``127.0.0.1:8080:80/udp`` -> ("80/udp", {"HostIp": "127.0.0.1", "HostPort": "8080"})."""
    rest, _, proto = spec.partition("/")
    parts = rest.rsplit(":", 2)
    ip, host = ("", "") if len(parts) == 1 else ("", parts[0]) if len(parts) == 2 else (parts[0], parts[1])
    port = parts[-1]
    if not port.isdigit() or (host and not host.isdigit()):
        raise SystemExit(f"invalid argument \"{spec}\" for \"-p, --publish\" flag: invalid port specification")
    return f"{port}/{proto or 'tcp'}", {"HostIp": ip.strip("[]"), "HostPort": host}


def apply(body: dict, a) -> None:
    """Add the network flags to a ContainerCreate body (docker's field names)."""
    host = body["HostConfig"]
    bindings: dict = {}
    for spec in a.publish:
        key, b = parse_publish(spec)
        bindings.setdefault(key, []).append(b)
    if bindings:
        host["PortBindings"] = bindings
    exposed = {k: {} for k in bindings}
    exposed.update({(e if "/" in e else e + "/tcp"): {} for e in a.expose})
    if exposed:
        body["ExposedPorts"] = exposed
    if a.publish_all:
        host["PublishAllPorts"] = True
    for key, flag in (("Dns", "dns"), ("DnsSearch", "dns_search"), ("DnsOptions", "dns_option"),
                      ("ExtraHosts", "add_host"), ("Links", "link")):
        if getattr(a, flag):
            host[key] = list(getattr(a, flag))
    net = host.get("NetworkMode") or "default"
    ep = {}
    if a.ip:
        ep["IPAMConfig"] = {"IPv4Address": a.ip}
    if a.network_alias:
        ep["Aliases"] = list(a.network_alias)
    if a.mac_address:
        ep["MacAddress"] = a.mac_address
    if ep:
        body["NetworkingConfig"] = {"EndpointsConfig": {net: ep}}


def format_ports(ports: list[dict]) -> str:
    """ps's PORTS column: ``127.0.0.1:8080->80/tcp, 53/udp``."""
    out = []
    for p in sorted(ports or [], key=lambda p: (p.get("PrivatePort", 0), p.get("Type", ""))):
        if p.get("PublicPort"):
            out.append(f"{p.get('IP') or '0.0.0.0'}:{p['PublicPort']}->{p['PrivatePort']}/{p['Type']}")
        else:
            out.append(f"{p['PrivatePort']}/{p['Type']}")
    return ", ".join(out)


# ---- verbs --------------------------------------------------------------------------------------
def add_network(sub, verb: str) -> None:
    n = sub.add_parser(verb, help="manage networks")
    nv = n.add_subparsers(dest="network_verb", metavar="COMMAND")
    ls = nv.add_parser("ls", aliases=["list"], help="list networks")
    ls.add_argument("-f", "--filter", action="append", default=[])
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("--no-trunc", action="store_true")
    ls.add_argument("--format")
    ls.set_defaults(fn=cmd_ls)
    cr = nv.add_parser("create", help="create a network")
    cr.add_argument("-d", "--driver", default="bridge")
    cr.add_argument("--subnet")
    cr.add_argument("--gateway")
    cr.add_argument("--ip-range")
    cr.add_argument("--internal", action="store_true")
    cr.add_argument("--label", action="append", default=[])
    cr.add_argument("-o", "--opt", action="append", default=[])
    cr.add_argument("name")
    cr.set_defaults(fn=cmd_create)
    ins = nv.add_parser("inspect", help="show networks")
    ins.add_argument("-f", "--format")
    ins.add_argument("networks", nargs="+")
    ins.set_defaults(fn=cmd_inspect)
    rm = nv.add_parser("rm", aliases=["remove"], help="remove networks")
    rm.add_argument("networks", nargs="+")
    rm.set_defaults(fn=cmd_rm)
    pr = nv.add_parser("prune", help="remove unused networks")
    pr.add_argument("-f", "--force", action="store_true")
    pr.add_argument("--filter", action="append", default=[])
    pr.set_defaults(fn=cmd_prune)
    for verb in ("connect", "disconnect"):
        x = nv.add_parser(verb, help=f"{verb} a container to/from a network")
        if verb == "connect":
            x.add_argument("--ip")
            x.add_argument("--alias", action="append", default=[])
        else:
            x.add_argument("-f", "--force", action="store_true")
        x.add_argument("network")
        x.add_argument("container")
        x.set_defaults(fn=cmd_connect if verb == "connect" else cmd_disconnect)
    n.set_defaults(fn=lambda c, a: (n.print_help(), 0)[1])


def add_port(sub, verb: str) -> None:
    pt = sub.add_parser(verb, help="list a container's published ports")
    pt.add_argument("container")
    pt.add_argument("port", nargs="?")
    pt.set_defaults(fn=cmd_port)


def _filters(items) -> dict:
    f: dict = {}
    for item in items:
        k, _, v = item.partition("=")
        f.setdefault(k, []).append(v)
    return {"filters": json.dumps(f)} if f else {}


NETWORK_TABLE = "{{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
NETWORK_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv6": "IPV6",
                   "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT",
                   "Label": lambda name: name}


def cmd_ls(c, a) -> int:
    from .gotemplate import Row
    from .output import listing
    nets = sorted(c.request("GET", "/networks", query=_filters(a.filter)).check().json(), key=lambda n: n["Name"])
    if a.quiet:
        for n in nets:
            print(n["Id"] if a.no_trunc else n["Id"][:12])
        return 0
    rows = [Row({"ID": n["Id"] if a.no_trunc else n["Id"][:12], "Name": n["Name"], "Driver": n["Driver"],
                 "Scope": n["Scope"], "IPv6": str(n.get("EnableIPv6", False)).lower(),
                 "Internal": str(n.get("Internal", False)).lower(), "CreatedAt": n.get("Created", ""),
                 "Labels": ",".join(f"{k}={v}" for k, v in sorted((n.get("Labels") or {}).items())),
                 "Label": lambda name, n=n: (n.get("Labels") or {}).get(name, "")}) for n in nets]
    sys.stdout.write(listing(a.format or "table", rows, NETWORK_HEADERS, NETWORK_TABLE))
    return 0


def cmd_create(c, a) -> int:
    ipam = {k: v for k, v in (("Subnet", a.subnet), ("Gateway", a.gateway), ("IPRange", a.ip_range)) if v}
    body = {"Name": a.name, "Driver": a.driver, "Internal": a.internal,
            "IPAM": {"Driver": "default", "Config": [ipam] if ipam else []},
            "Labels": dict(l.partition("=")[::2] for l in a.label),
            "Options": dict(o.partition("=")[::2] for o in a.opt)}
    print(c.request("POST", "/networks/create", body=body).check().json()["Id"])
    return 0


def cmd_inspect(c, a) -> int:
    out, rc = [], 0
    for ref in a.networks:
        r = c.request("GET", f"/networks/{ref}")
        if r.status != 200:
            print(f"Error response from daemon: network {ref} not found", file=sys.stderr)
            rc = 1
            continue
        out.append(r.json())
    from .output import print_inspected
    print_inspected(out, a.format)
    return rc


def cmd_rm(c, a) -> int:
    rc = 0
    for ref in a.networks:
        from .client import APIError
        try:
            c.request("DELETE", f"/networks/{ref}").check()
            print(ref)
        except APIError as e:
            print(str(e), file=sys.stderr)
            rc = 1
    return rc


def cmd_prune(c, a) -> int:
    if not a.force:
        print("WARNING! This will remove all custom networks not used by at least one container.\n"
              "Are you sure you want to continue? [y/N] ", end="", flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    r = c.request("POST", "/networks/prune", query=_filters(a.filter)).check().json()
    if r.get("NetworksDeleted"):
        print("Deleted Networks:")
        for n in r["NetworksDeleted"]:
            print(n)
    return 0


def cmd_connect(c, a) -> int:
    ep = {}
    if a.ip:
        ep["IPAMConfig"] = {"IPv4Address": a.ip}
    if a.alias:
        ep["Aliases"] = a.alias
    c.request("POST", f"/networks/{a.network}/connect", body={"Container": a.container, "EndpointConfig": ep}).check()
    return 0


def cmd_disconnect(c, a) -> int:
    c.request("POST", f"/networks/{a.network}/disconnect", body={"Container": a.container, "Force": a.force}).check()
    return 0


def cmd_port(c, a) -> int:
    ports = c.request("GET", f"/containers/{a.container}/json").check().json()["NetworkSettings"]["Ports"] or {}
    want = None
    if a.port:
        want = a.port if "/" in a.port else a.port + "/tcp"
        if not ports.get(want):
            print(f"Error: No public port '{want}' published for {a.container}", file=sys.stderr)
            return 1
    for key in sorted(ports, key=lambda k: (int(k.split("/")[0]), k)):
        for b in ports[key] or []:
            if want is None:
                print(f"{key} -> {b['HostIp'] or '0.0.0.0'}:{b['HostPort']}")
            elif key == want:
                print(f"{b['HostIp'] or '0.0.0.0'}:{b['HostPort']}")
    return 0
