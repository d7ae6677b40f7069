"""The volumes chapter in the daemon: the ``/volumes`` routes and a container's mounts.

Routes (Engine API v1.50): ``GET /volumes`` (filters dangling, name, label, driver), ``POST
/volumes/create``, ``GET /volumes/{name}``, ``DELETE /volumes/{name}`` (409 while a container uses
it), ``POST /volumes/prune`` (anonymous volumes only unless the filter ``all=true``).

For containers (called by the engine): :func:`resolve` turns ``HostConfig.Binds/Mounts/Tmpfs/
VolumesFrom``, the request's ``Volumes`` and the image's ``VOLUME``s into mount points (creating
named and anonymous volumes, taking a reference on each), in docker's order and with its
duplicate check; :func:`copy_up` fills empty volumes from the image; :func:`release` lets go (and
removes the anonymous volumes for ``rm -v`` / ``--rm``).
"""
from __future__ import annotations

import asyncio
import os
import re
import shutil

from .. import http, unionfs
from ..rootfs import secure_join
from ..volumes import MountError, MountPoint, VolumeConflict, VolumeError, VolumeNotFound, spec
from ..volumes.store import fill
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


# ---- a container's mounts ------------------------------------------------------------------------

def resolve(engine, body: dict, image_config: dict, cid: str) -> list[MountPoint]:
    """The container's mount points, volumes created and referenced. Raises InvalidRequest/NotFound;
    on error every reference taken is given back and the anonymous volumes made are removed."""
    host = body.get("HostConfig") or {}
    points: list[MountPoint] = []
    try:
        for b in host.get("Binds") or []:
            points.append(spec.parse_bind(b))
        for m in host.get("Mounts") or []:
            points.append(spec.parse_mount(m))
        spec.check_duplicates(points)
        taken = {p.destination for p in points}
        for path, opts in (host.get("Tmpfs") or {}).items():
            p = spec.parse_tmpfs(path, opts)
            if p.destination in taken:
                raise MountError(f"Duplicate mount point: {p.destination}")
            points.append(p)
            taken.add(p.destination)
    except MountError as e:
        raise InvalidRequest(str(e)) from None
    for ref in host.get("VolumesFrom") or []:
        name, _, mode = ref.partition(":")
        if mode not in ("", "ro", "rw"):
            raise InvalidRequest(f"invalid mode for volumes-from: {mode}")
        other = engine.get(name)        # NotFound: "No such container: NAME"
        for d in getattr(other.cfg, "volume_mounts", None) or []:
            p = MountPoint.from_dict(d)
            if p.type == "tmpfs" or p.destination in taken:
                continue
            if mode:
                p.rw = mode == "rw"
            p.nocopy = True
            points.append(p)
            taken.add(p.destination)
    for path in [*(image_config.get("Volumes") or {}), *(body.get("Volumes") or {})]:
        if re.fullmatch(r"[a-zA-Z0-9]:/.+", path) and path in (body.get("Volumes") or {}):
            # The docker CLI reads "v:/data" as a Windows drive letter and sends it as an anonymous
            # volume; dockerd then refuses it. It is a one-letter volume name: mount it as such.
            p = spec.parse_bind(path)
            if p.destination in taken:
                raise InvalidRequest(f"Duplicate mount point: {p.destination}")
            points.append(p)
            taken.add(p.destination)
            continue
        if not path.startswith("/"):
            raise InvalidRequest(f'invalid mount config for type "volume": invalid mount path: '
                                 f"'{path}' mount path must be absolute")
        dest = os.path.normpath(path)
        if dest not in taken:
            points.append(MountPoint(type="volume", destination=dest))
            taken.add(dest)
    made, acquired = [], []
    try:
        for p in points:
            if p.type == "bind":
                if not os.path.exists(p.source):
                    os.makedirs(p.source, 0o755)     # -v only: --mount refused it in parse_mount
                p.host_path = p.source
            elif p.type == "volume":
                if not p.source:
                    p.source = engine.volumes.create(anonymous=True)["Name"]
                    made.append(p.source)
                elif not engine.volumes.exists(p.source):
                    engine.volumes.create(p.source, p.driver, p.volume_options, p.volume_labels)
                p.host_path = engine.volumes.acquire(p.source, cid)
                acquired.append(p.source)
    except VolumeNotFound as e:
        _undo(engine, cid, acquired, made)
        raise NotFound(str(e)) from None
    except (VolumeError, OSError) as e:
        _undo(engine, cid, acquired, made)
        raise InvalidRequest(str(e)) from None
    return points


def _undo(engine, cid: str, acquired: list[str], made: list[str]) -> None:
    for name in acquired:
        engine.volumes.release(name, cid)
    for name in made:
        engine.volumes.remove(name, force=True)


def copy_up(engine, points: list[MountPoint], rootfs_mounts: list) -> None:
    """Copy the image's content at each empty volume's destination into it (once, unless nocopy).
    The container's root is mounted in a throw-away child's private mount namespace to read it."""
    todo = [p for p in points if p.type == "volume" and not p.nocopy and engine.volumes.wants_copy_up(p.source)]
    if not todo:
        return
    target = os.path.join(engine.root, "tmp", f"copyup-{os.getpid()}-{id(points)}")
    os.makedirs(target)
    jobs = [(engine.volumes.mountpoint(p.source), p.destination) for p in todo]
    try:
        unionfs.run_mounted(rootfs_mounts, target,
                            lambda t: [fill(data, secure_join(t, dest)) for data, dest in jobs])
    except unionfs.SnapshotError as e:
        raise InvalidRequest(f"copying the image's content into a volume: {e}") from None
    finally:
        shutil.rmtree(target, ignore_errors=True)
    for p in todo:
        engine.volumes.mark_populated(p.source)


def release(engine, cid: str, volume_mounts: list[dict], remove_anonymous: bool) -> None:
    """Give back the container's references; ``rm -v``/``--rm``: its anonymous volumes go too
    (those no other container uses)."""
    for d in volume_mounts or []:
        p = MountPoint.from_dict(d)
        if p.type != "volume":
            continue
        engine.volumes.release(p.source, cid)
        if remove_anonymous and engine.volumes.exists(p.source) and engine.volumes.anonymous(p.source):
            try:
                engine.volumes.remove(p.source)
            except VolumeConflict:
                pass


def reacquire(engine, cid: str, volume_mounts: list[dict]) -> None:
    """At daemon start: the references of a container read back from disk."""
    for d in volume_mounts or []:
        p = MountPoint.from_dict(d)
        if p.type == "volume" and engine.volumes.exists(p.source):
            engine.volumes.acquire(p.source, cid)


def inspect_mounts(volume_mounts: list[dict]) -> list[dict]:
    return [MountPoint.from_dict(d).api() for d in volume_mounts or []]
