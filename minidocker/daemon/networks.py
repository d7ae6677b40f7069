"""The daemon's side of networking (chapter 11): Docker's API objects -> the network chapter.

* at **create**: ``plan`` validates ``HostConfig.NetworkMode`` (default/bridge, host, none,
  container:<name|id>, a network name), ``NetworkingConfig.EndpointsConfig``, ``PortBindings`` and
  ``PublishAllPorts``, and returns what the OCI spec gets: the path of the container's network
  namespace (``linux.namespaces`` ``{"type": "network", "path": …}``) — the runtime only joins it;
* at **start**: ``setup`` creates and pins that namespace, attaches it to its networks (veth,
  address, route, DNS names), writes /etc/hosts and /etc/resolv.conf as docker does, and publishes
  the ports; at **exit** and **rm**: ``teardown`` removes all of it (docker, too, gives the address
  back when a container stops);
* ``settings``/``summary_ports`` are inspect's ``NetworkSettings`` and ps's ``Ports``
  (API v1.50); ``connect``/``disconnect`` serve the /networks routes (api_networks.py).
"""
from __future__ import annotations

import logging
import os
import shutil

from .. import rootfs
from ..network import Settings
from ..network import manager as M
from ..timing import mark
from ..util import atomic_write_json, read_json
from .errors import Conflict, InvalidRequest, NotFound

log = logging.getLogger("minidockerd.network")


def mode_of(host: dict) -> str:
    mode = (host or {}).get("NetworkMode") or "default"
    return "bridge" if mode == "default" else mode


def port_key(key: str) -> tuple[int, str]:
    """"80/tcp" -> (80, "tcp"); docker's errors for what is not a port."""
    port, _, proto = str(key).partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise InvalidRequest(f"invalid proto: {proto}")
    if "-" in port:
        raise InvalidRequest(f"port ranges ({key}) are not supported by minidocker")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidRequest(f"invalid port specification: \"{key}\"")
    return int(port), proto


class Glue:
    def __init__(self, engine, settings: Settings):
        self.engine = engine
        self.m = M.Networks(settings)

    def netns_path(self, cid: str) -> str:
        return os.path.join(self.m.s.state_dir, "netns", cid)

    # ---- create -------------------------------------------------------------------------------
    def plan(self, body: dict, cid: str) -> str | None:
        """Validate; rewrite container:<name> to container:<id>; the netns path for the spec."""
        host = body.get("HostConfig")
        if not isinstance(host, dict):
            host = body["HostConfig"] = {}
        mode = mode_of(host)
        eps = ((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {})
        if host.get("Links"):
            raise InvalidRequest("--link is not supported by minidocker: put the containers on a user-defined "
                                 "network, where they find each other by name (embedded DNS)")
        ports = host.get("PortBindings") or {}
        for key, binds in ports.items():
            port_key(key)
            for b in binds or []:
                hp = (b or {}).get("HostPort") or ""
                if hp and (not hp.isdigit() or not 0 < int(hp) < 65536):
                    raise InvalidRequest(f"invalid port specification: \"{hp}\"" if "-" not in hp else
                                         f"host port ranges ({hp}) are not supported by minidocker")
        for key in (body.get("ExposedPorts") or {}):
            port_key(key)
        if mode == "host":
            return None
        if mode.startswith("container:"):
            if ports or host.get("PublishAllPorts"):
                raise InvalidRequest("conflicting options: port publishing and the container type network mode")
            target = self.engine.get(mode.split(":", 1)[1])
            if target.id == cid:
                raise InvalidRequest("cannot join own network namespace")
            host["NetworkMode"] = f"container:{target.id}"
            if mode_of(target.request.get("HostConfig")) == "host":
                return None
            return self.netns_path(target.id)
        if mode == "none":
            if ports or host.get("PublishAllPorts"):
                log.info("ports are not published with --network none")
            return self.netns_path(cid)
        names = [mode] + [n for n in eps if n not in (mode, "default")]
        for n in names:
            try:
                net = self.m.get(n)
            except M.NotFound:
                raise NotFound(f"network {n} not found") from None
            ep = eps.get(n) or (eps.get("default") if n == "bridge" else None) or {}
            ip = ((ep.get("IPAMConfig") or {}).get("IPv4Address") or "")
            if ip and net["Name"] == M.DEFAULT:
                raise InvalidRequest("user specified IP address is supported on user defined networks only")
            if ep.get("Aliases") and net["Name"] == M.DEFAULT:
                raise InvalidRequest("network-scoped alias is supported only for containers in user defined networks")
        return self.netns_path(cid)

    # ---- start / exit ---------------------------------------------------------------------------
    def endpoint_configs(self, c) -> list[tuple[str, dict]]:
        host = c.request.get("HostConfig") or {}
        mode = mode_of(host)
        eps = ((c.request.get("NetworkingConfig") or {}).get("EndpointsConfig") or {})
        first = eps.get(mode) or (eps.get("default") if mode == "bridge" else None) or {}
        return [(mode, first)] + [(n, e or {}) for n, e in eps.items() if n not in (mode, "default")]

    def bindings(self, c) -> list[dict]:
        host = c.request.get("HostConfig") or {}
        out = []
        for key, binds in (host.get("PortBindings") or {}).items():
            port, proto = port_key(key)
            for b in binds or [{}]:
                out.append({"proto": proto, "port": port, "host_ip": (b or {}).get("HostIp") or "",
                            "host_port": int((b or {}).get("HostPort") or 0)})
        if host.get("PublishAllPorts"):
            for key in self.exposed(c):
                port, proto = port_key(key)
                if not any(b["port"] == port and b["proto"] == proto for b in out):
                    out.append({"proto": proto, "port": port, "host_ip": "", "host_port": 0})
        return out

    def exposed(self, c) -> list[str]:
        keys = list((c.request.get("ExposedPorts") or {}))
        try:
            img = self.engine.images.resolve(c.cfg.image_id).config.get("config", {})
            keys += [k for k in (img.get("ExposedPorts") or {}) if k not in keys]
        except Exception:
            pass
        keys += [k for k in (c.request.get("HostConfig") or {}).get("PortBindings") or {} if k not in keys]
        return keys

    def endpoint_in_config(self, c, name: str) -> bool:
        mode = mode_of(c.request.get("HostConfig"))
        return mode not in ("host", "none") and not mode.startswith("container:") and \
            name in [n for n, _ in self.endpoint_configs(c)]

    def setup(self, c) -> None:
        """Before the runtime starts the container: its namespace, endpoints, /etc files, ports."""
        host = c.request.get("HostConfig") or {}
        mode = mode_of(host)
        if mode == "host":
            return
        if mode.startswith("container:"):
            target = self.engine.get(mode.split(":", 1)[1])
            if not target.running:
                raise Conflict(f"cannot join network namespace of a non running container: {target.id}")
            for f in ("hosts", "resolv.conf"):
                shutil.copyfile(os.path.join(target.dir, f), os.path.join(c.dir, f))
            return
        try:
            self.m.sandbox(c.id)
            mark("daemon", "start: net: request in, namespace created and pinned")
            eps = []
            if mode != "none":
                for name, cfg in self.endpoint_configs(c):
                    eps.append(self.m.connect(c.id, name, name=c.name, aliases=cfg.get("Aliases") or [],
                                              ip=(cfg.get("IPAMConfig") or {}).get("IPv4Address") or "",
                                              mac=cfg.get("MacAddress") or c.request.get("MacAddress") or ""))
                    mark("daemon", f"start: net: endpoint on {name} (address, veth, route, nft, DNS)")
            user = any(self.m.nets[e["NetworkID"]]["Name"] != M.DEFAULT for e in eps)
            rootfs.write_etc_files(
                c.dir, c.cfg.hostname, hosts_extra=host.get("ExtraHosts") or [],
                dns=["127.0.0.11"] if user else (host.get("Dns") or self.m.s.upstreams or None),
                ip=eps[0]["IPAddress"] if eps else None,
                dns_search=host.get("DnsSearch") or [],
                dns_options=(host.get("DnsOptions") or []) + (["ndots:0"] if user else []))
            mark("daemon", "start: net: /etc/hosts and /etc/resolv.conf written")
            if mode != "none" and (b := self.bindings(c)):
                self.m.publish(c.id, b)
                mark("daemon", "start: net: ports published (proxies, nft elements)")
        except M.NetworkError as e:
            self.teardown(c)
            raise InvalidRequest(str(e)) from None
        except M.NotFound as e:  # a network removed since the container was created
            self.teardown(c)
            raise NotFound(str(e)) from None
        except M.Conflict as e:
            self.teardown(c)
            raise Conflict(str(e)) from None
        except OSError as e:
            self.teardown(c)
            raise Conflict(f"driver failed programming external connectivity on endpoint {c.name} "
                           f"({c.id[:12]}): {e.strerror or e}") from None
        except BaseException:
            self.teardown(c)
            raise

    def teardown(self, c) -> None:
        try:
            self.m.release(c.id)
            mark("daemon", "exit: net: released (address, namespace, ports)")
        except Exception as e:  # never let a network leftover fail an exit or an rm
            log.warning("releasing the network of %s: %s", c.id[:12], e)

    # ---- connect / disconnect (the /networks routes) ------------------------------------------------
    def _record(self, c) -> None:
        path = os.path.join(c.dir, "container.json")
        rec = read_json(path)
        if rec is not None:
            rec["request"] = c.request
            atomic_write_json(path, rec)

    def connect(self, c, ref: str, cfg: dict) -> None:
        net = self.m.get(ref)
        mode = mode_of(c.request.get("HostConfig"))
        if mode in ("host", "none") or mode.startswith("container:"):
            raise InvalidRequest(f"container cannot be disconnected from host network or connected to host network"
                                 if mode == "host" else f"container sharing network namespace with another container "
                                 f"or the none network cannot be connected to any other network")
        eps = c.request.setdefault("NetworkingConfig", {}).setdefault("EndpointsConfig", {}) or {}
        c.request["NetworkingConfig"]["EndpointsConfig"] = eps
        if net["Name"] in eps or mode == net["Name"] or (mode == "bridge" and net["Name"] == M.DEFAULT):
            raise Conflict(f"endpoint with name {c.name} already exists in network {net['Name']}")
        ip = ((cfg.get("IPAMConfig") or {}).get("IPv4Address") or "")
        if c.running:
            self.m.connect(c.id, net["Id"], name=c.name, aliases=cfg.get("Aliases") or [], ip=ip)
        eps[net["Name"]] = cfg
        self._record(c)

    def disconnect(self, c, ref: str, force: bool = False) -> None:
        net = self.m.get(ref)
        host = c.request.setdefault("HostConfig", {})
        eps = ((c.request.get("NetworkingConfig") or {}).get("EndpointsConfig") or {})
        configured = [n for n, _ in self.endpoint_configs(c)]
        if net["Name"] not in configured:
            if force:
                return
            raise NotFound(f"container {c.id[:12]} is not connected to network {net['Name']}")
        if c.running:
            self.m.disconnect(c.id, net["Id"], force=force)
        eps.pop(net["Name"], None)
        if mode_of(host) == net["Name"]:
            rest = [n for n in eps if n != "default"]
            host["NetworkMode"] = rest[0] if rest else "none"
        self._record(c)

    # ---- views ----------------------------------------------------------------------------------
    def settings(self, c) -> dict:
        """inspect's NetworkSettings (API v1.50)."""
        box = self.m.boxes.get(c.id) if c.running else None
        mode = mode_of(c.request.get("HostConfig"))
        nets = {}
        if mode == "host":
            nets["host"] = _endpoint({}, self._id_of("host"))
        elif mode == "none":
            nets["none"] = _endpoint({}, self._id_of("none"))
        elif not mode.startswith("container:"):
            for name, cfg in self.endpoint_configs(c):
                try:
                    net = self.m.get(name)
                except M.NotFound:
                    continue
                ep = (box or {}).get("endpoints", {}).get(net["Id"]) or {}
                nets[net["Name"]] = {**_endpoint(ep, net["Id"]),
                                     "IPAMConfig": cfg.get("IPAMConfig"), "Aliases": cfg.get("Aliases") or None,
                                     "DNSNames": ep.get("DNSNames") if ep and net["Name"] != M.DEFAULT else None}
        default = nets.get(M.DEFAULT) or {}
        return {"Bridge": "", "SandboxID": c.id if box else "", "SandboxKey": box["netns"] if box else "",
                "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
                "Ports": self.ports(c), "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
                "EndpointID": default.get("EndpointID", ""), "Gateway": default.get("Gateway", ""),
                "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": default.get("IPAddress", ""),
                "IPPrefixLen": default.get("IPPrefixLen", 0), "IPv6Gateway": "",
                "MacAddress": default.get("MacAddress", ""), "Networks": nets}

    def _id_of(self, name: str) -> str:
        import hashlib
        return hashlib.sha256(f"{self.m.s.table}/{name}".encode()).hexdigest()

    def published(self, c) -> list[dict]:
        box = self.m.boxes.get(c.id) if c.running else None
        return list((box or {}).get("ports") or [])

    def ports(self, c) -> dict:
        out: dict = {}
        if c.running and mode_of(c.request.get("HostConfig")) not in ("host",):
            for key in self.exposed(c):
                port, proto = port_key(key)
                out[f"{port}/{proto}"] = None
        for p in self.published(c):
            out.setdefault(f"{p['port']}/{p['proto']}", None)
            out[f"{p['port']}/{p['proto']}"] = (out[f"{p['port']}/{p['proto']}"] or []) + [
                {"HostIp": p["host_ip"], "HostPort": str(p["host_port"])}]
        return out

    def summary_ports(self, c) -> list[dict]:
        out = [{"IP": p["host_ip"], "PrivatePort": p["port"], "PublicPort": p["host_port"], "Type": p["proto"]}
               for p in self.published(c)]
        seen = {(p["PrivatePort"], p["Type"]) for p in out}
        for key in self.exposed(c):
            port, proto = port_key(key)
            if (port, proto) not in seen:
                out.append({"PrivatePort": port, "Type": proto})
        return out

    def summary_networks(self, c) -> dict:
        return {name: {k: v for k, v in ep.items() if k not in ("IPAMConfig",)}
                for name, ep in self.settings(c)["Networks"].items()}


def _endpoint(ep: dict, net_id: str) -> dict:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": ep.get("MacAddress", ""),
            "DriverOpts": None, "GwPriority": 0, "NetworkID": net_id, "EndpointID": ep.get("EndpointID", ""),
            "Gateway": ep.get("Gateway", ""), "IPAddress": ep.get("IPAddress", ""),
            "IPPrefixLen": ep.get("IPPrefixLen", 0), "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "DNSNames": None}
