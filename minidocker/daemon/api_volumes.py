"""The volumes chapter in the daemon: the ``/volumes`` routes and a container's mounts.

Routes (Engine API v1.50): ``GET /volumes`` (filters dangling, name, label, driver), ``POST
/volumes/create``, ``GET /volumes/{name}``, ``DELETE /volumes/{name}`` (409 while a container uses
it), ``POST /volumes/prune`` (anonymous volumes only unless the filter ``all=true``).

A container's own mounts (resolving ``-v``/``--mount``/``--tmpfs``, copy-up, release) are the
engine's business: ``daemon/volumes.py``.
"""
from __future__ import annotations

import asyncio

from .. import http
from ..volumes import VolumeConflict, VolumeError, VolumeNotFound
from .validate import parse_filters
from .errors import Conflict, InvalidRequest, NotFound


def register(api, server) -> None:
    from .api import errors

    def guard(fn):
        async def h(req):
            try:
                return await fn(req)
            except VolumeNotFound as e:
                raise NotFound(str(e)) from None
            except VolumeConflict as e:
                raise Conflict(str(e)) from None
            except VolumeError as e:
                raise InvalidRequest(str(e)) from None
        h.__name__ = fn.__name__
        return errors(h)

    class _Store:                     # the engine's VolumeStore, looked up when a request comes
        def __getattr__(self, name):
            return getattr(api.engine.volumes, name)

    store = _Store()

    async def listing(req):
        vols = await asyncio.to_thread(store.list, parse_filters(req.query.get("filters")))
        return http.json_response({"Volumes": vols, "Warnings": []})

    async def create(req):
        body = req.json() or {}
        v = await asyncio.to_thread(store.create, body.get("Name") or None, body.get("Driver"),
                                    body.get("DriverOpts"), body.get("Labels"))
        return http.json_response(v, status=201)

    async def inspect(req):
        return http.json_response(store.inspect(req.match["name"]))

    async def remove(req):
        await asyncio.to_thread(store.remove, req.match["name"], req.bool_param("force"))
        return http.empty(204)

    async def prune(req):
        deleted, reclaimed = await asyncio.to_thread(store.prune, parse_filters(req.query.get("filters")))
        return http.json_response({"VolumesDeleted": deleted, "SpaceReclaimed": reclaimed})

    for method, pattern, handler in (
            ("GET", r"/volumes", listing), ("POST", r"/volumes/create", create),
            ("POST", r"/volumes/prune", prune),
            ("GET", r"/volumes/(?P<name>[^/]+)", inspect), ("DELETE", r"/volumes/(?P<name>[^/]+)", remove)):
        server.route(method, pattern, guard(handler))
