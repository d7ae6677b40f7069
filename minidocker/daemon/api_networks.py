"""API routes of the networking chapter (Docker Engine API v1.50, "Network" section):

* ``GET /networks`` (filters: name, id, driver, label, type custom|builtin, dangling) and
  ``GET /networks/{id}``: the Network object, with ``Containers`` (endpoint, MAC, address/prefix)
  of the running containers attached;
* ``POST /networks/create`` {Name, Driver bridge, Internal, IPAM.Config[{Subnet, Gateway,
  IPRange}], Options (com.docker.network.bridge.name), Labels} -> 201 {Id, Warning};
* ``POST /networks/{id}/connect`` {Container, EndpointConfig{IPAMConfig.IPv4Address, Aliases}},
  ``/disconnect`` {Container, Force}; ``DELETE /networks/{id}``; ``POST /networks/prune``.

``host`` and ``none`` are listed as docker lists them (drivers ``host`` and ``null``); they are
modes of the container's namespace, not bridges, so they cannot be created, removed or connected.
"""
from __future__ import annotations

import asyncio

from .. import http
from ..network import manager as M
from ..util import now_rfc3339
from .validate import parse_filters
from .errors import Conflict, InvalidRequest, NotFound

BUILTIN = ("bridge", "host", "none")


class _Deferred:
    """Attribute access forwarded to an object found only when first used."""

    def __init__(self, find):
        self._find = find

    def __getattr__(self, name):
        return getattr(self._find(), name)


def register(api, server) -> None:
    from .api import errors
    engine = api.engine
    # Looked up per request, not here: routes are also listed without an engine (the validation
    # tests walk every served route).
    glue = _Deferred(lambda: engine.net)
    m = _Deferred(lambda: engine.net.m)

    def translate(fn):
        async def wrapped(req):
            try:
                return await fn(req)
            except M.NotFound as e:
                raise NotFound(str(e)) from None
            except M.Conflict as e:
                raise Conflict(str(e)) from None
            except M.NetworkError as e:
                raise InvalidRequest(str(e)) from None
        return wrapped

    def special(name: str) -> dict:
        return {"Name": name, "Id": glue._id_of(name), "Created": now_rfc3339(engine.started), "Scope": "local",
                "Driver": "host" if name == "host" else "null", "EnableIPv4": True, "EnableIPv6": False,
                "IPAM": {"Driver": "default", "Options": None, "Config": None}, "Internal": False,
                "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
                "Containers": {}, "Options": {}, "Labels": {}}

    def view(net: dict, containers: bool = True) -> dict:
        out = {"Name": net["Name"], "Id": net["Id"], "Created": net["Created"], "Scope": "local",
               "Driver": "bridge", "EnableIPv4": True, "EnableIPv6": False,
               "IPAM": {"Driver": "default", "Options": None,
                        "Config": [{"Subnet": net["Subnet"], "Gateway": net["Gateway"],
                                    **({"IPRange": net["IPRange"]} if net["IPRange"] else {})}]},
               "Internal": net["Internal"], "Attachable": False, "Ingress": False,
               "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": {},
               "Options": net["Options"], "Labels": net["Labels"]}
        if containers:
            for cid, ep in m.endpoints_of(net["Id"]).items():
                c = engine.containers.get(cid)
                out["Containers"][cid] = {"Name": c.name if c else ep.get("name", ""), "EndpointID": ep["EndpointID"],
                                          "MacAddress": ep["MacAddress"],
                                          "IPv4Address": f"{ep['IPAddress']}/{ep['IPPrefixLen']}", "IPv6Address": ""}
        return out

    def all_views() -> list[dict]:
        nets = [view(n) for n in m.list()]
        return nets + [special("host"), special("none")]

    def matches(n: dict, f: dict) -> bool:
        def any_of(key, test):
            vals = f.get(key)
            return not vals or any(test(v) for v in vals)
        builtin = n["Name"] in BUILTIN
        return (any_of("name", lambda v: v in n["Name"]) and any_of("id", lambda v: n["Id"].startswith(v))
                and any_of("driver", lambda v: v == n["Driver"])
                and any_of("type", lambda v: (v == "builtin") == builtin)
                and any_of("dangling", lambda v: (v in ("1", "true")) == (not builtin and not n["Containers"]))
                and any_of("label", lambda v: (lambda k, _, val: k in n["Labels"] and (not _ or n["Labels"][k] == val))(
                    *v.partition("="))))

    def find(ref: str) -> dict:
        for n in (special("host"), special("none")):
            if ref in (n["Name"], n["Id"]):
                return n
        return view(m.get(ref))

    async def list_(req):
        f = parse_filters(req.query.get("filters"))
        return http.json_response([n for n in await asyncio.to_thread(all_views) if matches(n, f)])

    async def inspect(req):
        return http.json_response(await asyncio.to_thread(find, req.match["id"]))

    async def create(req):
        body = req.json() or {}
        name = body.get("Name")
        if not name:
            raise InvalidRequest("network name is required")
        driver = body.get("Driver") or "bridge"
        if driver != "bridge":
            raise InvalidRequest(f"plugin \"{driver}\" not found" if driver not in ("host", "null", "overlay", "macvlan", "ipvlan")
                                 else f"the {driver} driver is not supported by minidocker (only bridge)")
        if body.get("EnableIPv6"):
            raise InvalidRequest("IPv6 networks are not supported by minidocker yet")
        if body.get("Attachable") or body.get("Ingress") or body.get("ConfigOnly") or body.get("ConfigFrom"):
            raise InvalidRequest("swarm options (attachable, ingress, config-only/from) are not supported by minidocker")
        configs = ((body.get("IPAM") or {}).get("Config") or [])
        if len(configs) > 1:
            raise InvalidRequest("minidocker supports one IPv4 subnet per network")
        cfg = configs[0] if configs else {}
        if cfg.get("AuxiliaryAddresses"):
            raise InvalidRequest("--aux-address is not supported by minidocker")
        if cfg.get("Gateway") and not cfg.get("Subnet"):
            raise InvalidRequest("a gateway needs a subnet (--subnet)")
        net = await asyncio.to_thread(m.create, name, cfg.get("Subnet") or "", cfg.get("Gateway") or "",
                                      cfg.get("IPRange") or "", bool(body.get("Internal")), body.get("Labels"),
                                      body.get("Options"))
        engine.events.emit("network", "create", net["Id"], {"name": name, "type": "bridge"})
        return http.json_response({"Id": net["Id"], "Warning": ""}, 201)

    async def remove(req):
        ref = req.match["id"]
        if ref in ("host", "none"):
            raise http.HTTPError(403, f"{ref} is a pre-defined network and cannot be removed")
        net = m.get(ref)
        if net["Name"] == "bridge":
            raise http.HTTPError(403, "bridge is a pre-defined network and cannot be removed")
        await asyncio.to_thread(m.remove, net["Id"])
        engine.events.emit("network", "destroy", net["Id"], {"name": net["Name"], "type": "bridge"})
        return http.empty(204)

    async def connect(req):
        body = req.json() or {}
        net = m.get(req.match["id"]) if req.match["id"] not in ("host", "none") else None
        if net is None:
            raise http.HTTPError(403, f"container cannot be connected to the {req.match['id']} network")
        c = engine.get(body.get("Container") or "")
        await asyncio.to_thread(glue.connect, c, net["Id"], body.get("EndpointConfig") or {})
        engine.events.emit("network", "connect", net["Id"], {"container": c.id, "name": net["Name"], "type": "bridge"})
        return http.empty(200)

    async def disconnect(req):
        body = req.json() or {}
        net = m.get(req.match["id"])
        c = engine.get(body.get("Container") or "")
        await asyncio.to_thread(glue.disconnect, c, net["Id"], bool(body.get("Force")))
        engine.events.emit("network", "disconnect", net["Id"], {"container": c.id, "name": net["Name"], "type": "bridge"})
        return http.empty(200)

    async def prune(req):
        f = parse_filters(req.query.get("filters"))
        unknown = set(f) - {"label", "label!", "until"}
        if unknown:
            raise InvalidRequest(f"invalid filter '{sorted(unknown)[0]}'")
        from .events import parse_timestamp
        from ..util import parse_rfc3339
        until = None
        for v in f.get("until") or []:
            until = parse_timestamp(v)  # ns since the epoch, as container prune reads it
        deleted = []
        for n in await asyncio.to_thread(all_views):
            if until is not None and parse_rfc3339(n["Created"]) * 1e9 > until:
                continue
            if n["Name"] in BUILTIN or n["Containers"]:
                continue
            if any(glue.endpoint_in_config(c, n["Name"]) for c in engine.containers.values()):
                continue  # a stopped container still names it (docker keeps those too)
            if not matches(n, {k: v for k, v in f.items() if k == "label"}):
                continue
            if f.get("label!") and any(matches(n, {"label": [v]}) for v in f["label!"]):
                continue
            await asyncio.to_thread(m.remove, n["Id"])
            engine.events.emit("network", "destroy", n["Id"], {"name": n["Name"], "type": "bridge"})
            deleted.append(n["Name"])
        return http.json_response({"NetworksDeleted": deleted or None})

    N = r"/networks/(?P<id>[^/]+)"
    for method, pattern, fn in (("GET", r"/networks", list_), ("GET", r"/networks/json", list_),
                                ("POST", r"/networks/create", create), ("POST", r"/networks/prune", prune),
                                ("GET", N, inspect), ("DELETE", N, remove),
                                ("POST", N + r"/connect", connect), ("POST", N + r"/disconnect", disconnect)):
        server.route(method, pattern, errors(translate(fn)))
