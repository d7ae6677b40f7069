"""API routes of the copy-on-write chapter: ``GET /containers/{id}/changes`` and ``POST /commit``.

Shapes follow the Docker Engine API v1.50 (ContainerChanges, ImageCommit): changes are
``[{"Path": "/new", "Kind": 1}]`` (0 changed, 1 added, 2 deleted); commit takes ``container``,
``repo``, ``tag``, ``comment``, ``author``, ``changes`` (repeatable Dockerfile instructions) and an
optional body with run-config fields that override the container's, and answers ``{"Id": ...}``.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile

from .. import cow
from ..images import parents
from ..images.commit import ChangeError, commit_image
from ..images.reference import InvalidReference, parse_reference
from .. import http
from .errors import InvalidRequest
from .userns import container_id_mappings

RUN_CONFIG_KEYS = ("Cmd", "Entrypoint", "Env", "WorkingDir", "User", "Labels", "ExposedPorts",
                   "Volumes", "StopSignal", "Healthcheck")


def register(api, server) -> None:
    from .api import errors
    routes = [("GET", r"/containers/(?P<id>[^/]+)/changes", changes),
              ("POST", r"/commit", commit)]
    for method, pattern, handler in routes:
        server.route(method, pattern, errors(_bind(handler, api.engine)))


def _bind(handler, engine):
    async def h(req):
        return await handler(engine, req)
    h.__name__ = handler.__name__
    return h


def _container_changes(engine, c) -> list[cow.Change]:
    if not c.cfg.rootfs_mounts:
        raise InvalidRequest(f"container {c.id[:12]} predates the snapshotter: no changes to show")
    return cow.changes(engine.snapshotter_for(c.cfg.storage_driver), c.id)


async def changes(engine, req):
    c = engine.get(req.match["id"])
    found = await asyncio.to_thread(_container_changes, engine, c)
    return http.json_response([ch.api() for ch in found])


def run_config(engine, c, base_config: dict, body) -> dict:
    """docker commit's starting point: the container's own run config (over the image's)."""
    req = c.request
    cfg = dict(base_config or {})
    cfg.update(Env=list(c.cfg.env), User=c.cfg.user, Labels={**(cfg.get("Labels") or {}), **c.cfg.labels})
    if req.get("Cmd") is not None or req.get("Entrypoint") is not None:
        cfg["Cmd"] = req.get("Cmd") if req.get("Cmd") else (None if req.get("Entrypoint") is not None else cfg.get("Cmd"))
    if req.get("Entrypoint") is not None:
        cfg["Entrypoint"] = req["Entrypoint"] if req["Entrypoint"] != [""] else None
    if req.get("WorkingDir"):
        cfg["WorkingDir"] = req["WorkingDir"]
    if req.get("Healthcheck"):  # the container's own check goes into the image, as docker commits it
        cfg["Healthcheck"] = req["Healthcheck"]
    if isinstance(body, dict):
        cfg.update({k: body[k] for k in RUN_CONFIG_KEYS if body.get(k) is not None})
    return cfg


def _commit(engine, c, ref, changes_list, comment, author, body) -> str:
    snap = engine.snapshotter_for(c.cfg.storage_driver)
    found = _container_changes(engine, c)
    base = engine.images.resolve(c.cfg.image_id)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-commit-", dir=engine.images.root)
    try:
        with os.fdopen(fd, "wb") as out:
            cow.write_layer(found, cow.layer_root(snap, c.id), out, id_mappings=container_id_mappings(c.dir))
        image = commit_image(engine.images, base, tmp, run_config(engine, c, base.config.get("config"), body),
                             changes=changes_list, comment=comment, author=author,
                             created_by=f"minidocker commit {c.name}", ref=ref)
        parents.record(engine.images.root, image.id, base.id)  # dockerd's local "parent" metadata
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return image.id


async def commit(engine, req):
    name = req.query.get("container", "")
    if not name:
        raise InvalidRequest("the container to commit is missing (container=)")
    c = engine.get(name)
    repo, tag = req.query.get("repo", ""), req.query.get("tag", "")
    ref = None
    if repo:
        ref = f"{repo}:{tag}" if tag else repo
        try:
            named = parse_reference(ref)
        except (InvalidReference, ValueError) as e:
            raise InvalidRequest(str(e))
        if named.digest is not None:
            raise InvalidRequest(f"refusing to create a tag with a digest reference: {ref}")
    elif tag:
        raise InvalidRequest("a tag without a repository")
    changes_list = [ch for ch in req.query_all.get("changes", []) if ch.strip()]
    try:
        body = req.json()
    except Exception:
        body = None
    try:
        image_id = await asyncio.to_thread(_commit, engine, c, ref, changes_list,
                                           req.query.get("comment", ""), req.query.get("author", ""), body)
    except ChangeError as e:
        raise InvalidRequest(str(e))
    return http.json_response({"Id": image_id}, status=201)


