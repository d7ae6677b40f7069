"""``POST /containers/{id}/update`` (``docker update``): new resource limits and restart policy for a
container, applied live (Docker Engine API v1.50 "ContainerUpdate", moby daemon/update.go).

What this teaches
-----------------
Limits are not baked into a process: they live in its cgroup, so a running container's memory,
CPU and pids limits can change under it (``runc update``). The daemon checks the new values with
the same rules as at create (cgroups chapter), asks the runtime to write them into the running
container's cgroup, and then records them — in its own record and in the OCI bundle's
``linux.resources`` — so the next start applies them too. Fields left zero mean "unchanged", as
in docker; the restart policy is only bookkeeping (the engine reads it at the next exit).
"""
from __future__ import annotations

import asyncio
import os

from .. import http, runtime
from ..util import atomic_write_json, read_json
from .config import ConfigError, resource_limits
from .errors import Conflict, InvalidRequest
from .restart import validate_restart_policy

# What minidocker's cgroups chapter can set (cgroups.limits.parse_host_config reads these).
UPDATABLE = ("Memory", "MemorySwap", "NanoCpus", "CpuShares", "CpuPeriod", "CpuQuota", "CpusetCpus",
             "PidsLimit", "BlkioWeight")
OCI_KEYS = ("memory", "cpu", "pids", "blockIO")


def register(api, server) -> None:
    from .api import errors
    engine = api.engine

    async def update(req):
        c = engine.get(req.match["id"])
        body = req.json() or {}
        if not isinstance(body, dict):
            raise InvalidRequest("invalid JSON: the request body must be an object")
        given = {k: body[k] for k in UPDATABLE if body.get(k) not in (None, 0, "")}
        if (given.get("PidsLimit") or 0) < 0:
            raise InvalidRequest("minidocker cannot lift a pids limit with update yet (PidsLimit < 0)")
        # Anything else set is refused rather than ignored.
        other = sorted(k for k, v in body.items() if k not in UPDATABLE and k != "RestartPolicy"
                       and v not in (None, 0, "", [], {}))
        if other:
            raise InvalidRequest(f"minidocker cannot update {', '.join(other)}: only "
                                 f"{', '.join(UPDATABLE)} and RestartPolicy")
        host = dict(c.request.get("HostConfig") or {})
        policy = body.get("RestartPolicy") or {}
        async with c.lock:
            if c.state["Status"] == "removing":
                raise Conflict(f"Container {c.id} is marked for removal and cannot be \"update\"")
            if policy.get("Name"):
                if host.get("AutoRemove") and policy["Name"] != "no":
                    raise InvalidRequest("Restart policy cannot be updated because AutoRemove is "
                                         "enabled for the container")
                validate_restart_policy({"RestartPolicy": policy})
                host["RestartPolicy"] = {"Name": policy["Name"],
                                         "MaximumRetryCount": policy.get("MaximumRetryCount") or 0}
            host.update(given)
            try:
                limits, warnings = resource_limits(host)
            except ConfigError as e:
                raise InvalidRequest(str(e))
            oci = limits_oci(limits)
            if given and c.running:
                try:  # the runtime's update: the running container's cgroup gets the new limits
                    missing = await asyncio.to_thread(runtime.update, os.path.dirname(c.dir), c.id, oci)
                except (runtime.ContainerError, OSError) as e:
                    raise http.HTTPError(500, f"Cannot update container {c.id}: {e}")
                warnings += [f"Your kernel does not support {m}: the limit was not applied" for m in missing or []]
            await asyncio.to_thread(record, c, host, limits, oci)
        engine.emit(c, "update")
        return http.json_response({"Warnings": warnings or None})

    server.route("POST", r"/containers/(?P<id>[^/]+)/update", errors(update))


def limits_oci(limits: dict) -> dict:
    from ..cgroups import Limits
    return Limits.from_dict(limits).to_oci()


def record(c, host: dict, limits: dict, oci: dict) -> None:
    """The daemon's record and the bundle's spec say the new values (the next start applies them)."""
    c.request["HostConfig"] = host
    c.cfg.resources = limits
    rec = read_json(os.path.join(c.dir, "container.json")) or {}
    rec.update(request=c.request, runtime=c.cfg.to_dict())
    atomic_write_json(os.path.join(c.dir, "container.json"), rec)
    spec_path = os.path.join(c.dir, "config.json")
    spec = read_json(spec_path)
    if spec is not None:
        res = spec.setdefault("linux", {}).setdefault("resources", {})
        for key in OCI_KEYS:
            res.pop(key, None)
        res.update(oci)
        atomic_write_json(spec_path, spec)
