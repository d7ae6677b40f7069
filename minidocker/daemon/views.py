"""The containers as docker shows them: ``docker inspect``, ``docker ps`` and their filters.

What this teaches
-----------------
The record (``record.Container``) is the daemon's; these are the JSON shapes clients read, field
for field those of the Engine API v1.50 (``ContainerInspectResponse`` for ``GET
/containers/{id}/json``, ``ContainerSummary`` for ``GET /containers/json``). A view is computed
from the record on every request — the create request as sent, the resolved config, the state,
the image's config for what the request left out (``Cmd``, ``Entrypoint``, ``Healthcheck``) — and
never stored. ``ps``'s ``Status`` column ("Up 3 minutes", "Exited (0) 2 seconds ago") is docker's
wording (go-units' ``HumanDuration``); :func:`matches_filters` is ``docker ps --filter`` (``status``,
``name``, ``id``, ``label``, ``ancestor``, ``health``).
"""
from __future__ import annotations

import os
import time

from ..units import human_duration
from ..util import parse_rfc3339
from . import health


class Views:
    """The engine's JSON views (a mixin of ``engine.Engine``)."""

    def inspect(self, ref: str) -> dict:
        c = self.get(ref)
        req = c.request
        host = dict(req.get("HostConfig") or {})
        host.setdefault("NetworkMode", "default")
        log_config = host.get("LogConfig") or {}  # validate.py admits json-file, local and none
        host["LogConfig"] = {"Type": log_config.get("Type") or "json-file", "Config": log_config.get("Config") or {}}
        host.setdefault("AutoRemove", c.cfg.auto_remove)
        host.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
        try:
            image_cfg = self.images.resolve(c.cfg.image_id).config.get("config", {})
        except Exception:
            image_cfg = {}
        return {
            "Id": c.id, "Created": c.created, "Path": c.cfg.argv[0], "Args": c.cfg.argv[1:],
            "State": dict(c.state), "Image": c.cfg.image_id,
            "ResolvConfPath": os.path.join(c.dir, "resolv.conf"),
            "HostnamePath": os.path.join(c.dir, "hostname"), "HostsPath": os.path.join(c.dir, "hosts"),
            "LogPath": os.path.join(c.dir, "container.log"), "Name": "/" + c.name,
            "RestartCount": c.restart_count, "Driver": c.cfg.storage_driver or "overlay", "Platform": "linux",
            "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": list(c.exec_ids) or None,
            "HostConfig": host,
            "GraphDriver": graph_driver(c),
            "Mounts": _mounts_of(c),
            "Config": {
                "Hostname": c.cfg.hostname, "Domainname": c.cfg.domainname, "User": c.cfg.user,
                "AttachStdin": bool(req.get("AttachStdin")), "AttachStdout": bool(req.get("AttachStdout")),
                "AttachStderr": bool(req.get("AttachStderr")), "Tty": c.cfg.tty,
                "OpenStdin": c.cfg.open_stdin, "StdinOnce": c.cfg.stdin_once, "Env": c.cfg.env,
                "Cmd": req.get("Cmd") if req.get("Cmd") else image_cfg.get("Cmd"),
                "Image": c.cfg.image_ref, "Volumes": req.get("Volumes"), "WorkingDir": c.cfg.working_dir,
                "Entrypoint": req.get("Entrypoint") if req.get("Entrypoint") is not None else image_cfg.get("Entrypoint"),
                "OnBuild": None, "Labels": c.cfg.labels, "StopSignal": c.cfg.stop_signal,
                **({"StopTimeout": req["StopTimeout"]} if req.get("StopTimeout") is not None else {}),
                **({"Healthcheck": hc} if (hc := req.get("Healthcheck") or image_cfg.get("Healthcheck")) else {})},
            "NetworkSettings": self.net.settings(c),
        }

    def summary(self, c) -> dict:
        st = c.state
        if st["Status"] in ("running", "paused"):
            status = "Up " + human_duration(time.time() - parse_rfc3339(st["StartedAt"]))
            status += " (Paused)" if st["Status"] == "paused" else health.ps_suffix(st)
        elif st["Status"] == "restarting":
            status = f"Restarting ({st['ExitCode']}) " + human_duration(time.time() - parse_rfc3339(st["FinishedAt"])) + " ago"
        elif st["Status"] == "exited":
            status = f"Exited ({st['ExitCode']}) " + human_duration(time.time() - parse_rfc3339(st["FinishedAt"])) + " ago"
        else:
            status = st["Status"].capitalize()
        return {"Id": c.id, "Names": ["/" + c.name], "Image": c.cfg.image_ref, "ImageID": c.cfg.image_id,
                "Command": " ".join(c.cfg.argv), "Created": int(parse_rfc3339(c.created)),
                "Ports": self.net.summary_ports(c), "Labels": c.cfg.labels, "State": st["Status"], "Status": status,
                "HostConfig": {"NetworkMode": (c.request.get("HostConfig") or {}).get("NetworkMode") or "default"},
                "NetworkSettings": {"Networks": self.net.summary_networks(c)}, "Mounts": _mounts_of(c)}

    def list(self, all_: bool = False, filters: dict | None = None, limit: int = -1) -> list[dict]:
        items = sorted(self.containers.values(), key=lambda c: c.created, reverse=True)
        out = []
        for c in items:
            if not all_ and not c.running and not filters:
                continue
            if filters and not matches_filters(c, filters):
                continue
            out.append(self.summary(c))
        return out[:limit] if limit and limit > 0 else out


def _mounts_of(c) -> list[dict]:
    from .api_volumes import inspect_mounts
    return inspect_mounts(c.cfg.volume_mounts)


def graph_driver(c) -> dict:
    """docker inspect's GraphDriver: the driver and the directories its mounts use."""
    data = {"MergedDir": os.path.join(c.dir, "rootfs")}
    for m in c.cfg.rootfs_mounts:
        if m.get("fstype") == "overlay":
            opts = dict(o.partition("=")[::2] for o in (m.get("data") or "").split(","))
            base = m.get("cwd") or ""
            full = lambda p: os.path.join(base, p)  # noqa: E731 - relative paths when options are long
            data.update(LowerDir=":".join(full(p) for p in opts.get("lowerdir", "").split(":")),
                        UpperDir=full(opts.get("upperdir", "")), WorkDir=full(opts.get("workdir", "")))
        else:
            data["UpperDir"] = m.get("source") or ""
    if not c.cfg.rootfs_mounts:
        data.update(LowerDir=":".join(c.cfg.lowerdirs), UpperDir=c.cfg.upperdir, WorkDir=c.cfg.workdir)
    return {"Name": c.cfg.storage_driver or "overlay", "Data": data}


def dir_size(path: str) -> int:
    total = 0
    for base, dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(base, f)).st_size
            except OSError:
                pass
    return total


def matches_filters(c, filters: dict) -> bool:
    def values(key):
        v = filters.get(key)
        if v is None:
            return None
        return list(v.keys()) if isinstance(v, dict) else list(v)

    for key in filters:
        vals = values(key)
        if key == "status" and c.state["Status"] not in vals:
            return False
        if key == "name" and not any(v.lstrip("/") in c.name for v in vals):
            return False
        if key == "id" and not any(c.id.startswith(v) for v in vals):
            return False
        if key == "label":
            for v in vals:
                k, _, want = v.partition("=")
                if k not in c.cfg.labels or (want and c.cfg.labels[k] != want):
                    return False
        if key == "ancestor" and not any(v in (c.cfg.image_ref, c.cfg.image_id) for v in vals):
            return False
        if key == "health" and (c.state.get("Health") or {}).get("Status", "none") not in vals:
            return False  # starting, healthy, unhealthy, or none (no health check)
    return True
