"""The image routes of the Docker Engine API (v1.50): list, inspect, tag, remove, history, save,
load, import, prune.

What this teaches
-----------------
The image verbs are thin over the store (images/store.py) and the archive formats
(images/archive.py); what this module adds is docker's *policy*, which clients depend on:

* ``DELETE /images/{name}`` untags first and deletes only when no name is left. By name it
  removes that one name; by id it refuses an image that has several names ("referenced in multiple
  repositories") unless forced. An image a container uses is not deleted: 409, or with ``force``
  it is only untagged (it stays, dangling, until the container is gone). Deleting the last image
  that uses a layer deletes its blob and its extracted snapshot. The answer lists what happened, ``[{"Untagged": "busybox:latest"}, {"Deleted": "sha256:…"}]``.
* ``GET /images/json`` filters: ``reference`` (a glob on the familiar name), ``dangling``,
  ``label`` (``key`` or ``key=value``), ``before``/``since`` (another image, by creation time).
* ``POST /images/load`` and ``POST /images/create?fromSrc=-`` take a tar as the body and answer a
  newline-delimited JSON stream (``{"stream": "Loaded image: busybox:latest\\n"}``,
  ``{"status": "sha256:…"}``); errors arrive *in* the stream as ``{"errorDetail": …}``, because
  the 200 status has already been sent.
* ``GET /images/get`` streams a docker-archive (``application/x-tar``).
* ``POST /images/prune`` removes dangling images (``dangling=false``: every image no container
  uses), then garbage-collects blobs and layer snapshots nothing references.

See shared/specs/docker-engine-api-v1.50.yaml (tag "Image").
"""
from __future__ import annotations

import asyncio
import fnmatch
import os
import tempfile

from ..images import archive, parents
from ..images.layers import LayerError
from ..images.reference import InvalidReference, familiar, parse_reference
from ..images.store import ImageNotFound
from ..images.unpack import collect, remove_image
from .. import http
from .errors import Conflict, InvalidRequest
from .validate import parse_filters

_CHUNK = 1 << 20


def register(api, server) -> None:
    from .api import errors  # api.py imports this module; import back lazily
    handlers = ImageRoutes(api)
    N = r"/images/(?P<name>.+)"
    routes = [
        ("GET", r"/images/json", handlers.list),
        ("GET", r"/images/get", handlers.save),
        ("POST", r"/images/load", handlers.load),
        ("POST", r"/images/create", handlers.create),
        ("POST", r"/images/prune", handlers.prune),
        # `docker system prune` = containers, networks, images and build cache, in that order.
        # Networks are pruned by api_networks.py; the build cache is api_build.py's.
        ("GET", N + r"/json", handlers.inspect),
        ("GET", N + r"/history", handlers.history),
        ("GET", N + r"/get", handlers.save_one),
        ("POST", N + r"/tag", handlers.tag),
        ("DELETE", N, handlers.delete),
    ]
    for method, pattern, fn in routes:
        server.route(method, pattern, errors(_image_errors(fn)))


def _image_errors(fn):
    async def wrapper(req):
        try:
            return await fn(req)
        except (InvalidReference, archive.ArchiveError, ValueError, LayerError) as e:
            if isinstance(e, ImageNotFound):
                raise
            raise http.HTTPError(400, str(e))
    wrapper.__name__ = fn.__name__
    return wrapper


def repo_digests(img) -> list[str]:
    return sorted({f"{parse_reference(r).familiar_name}@{img.manifest_digest}" for r in img.refs})


def summary(img, containers: int = -1) -> dict:
    labels = (img.config.get("config") or {}).get("Labels") or {}
    return {"Id": img.id, "ParentId": "", "RepoTags": [familiar(r) for r in img.refs],
            "RepoDigests": repo_digests(img), "Created": img.created, "Size": img.size,
            "SharedSize": -1, "Labels": labels, "Containers": containers,
            "Descriptor": {"mediaType": img.manifest.get("mediaType", ""),
                           "digest": img.manifest_digest}}


def _truth(values: list[str], name: str) -> bool:
    v = values[-1].lower()
    if v not in ("true", "false", "1", "0"):
        raise InvalidRequest(f"invalid filter '{name}={values[-1]}'")
    return v in ("true", "1")


class ImageRoutes:
    def __init__(self, api):
        self.api = api

    @property
    def store(self):
        return self.api.engine.images

    def users(self, image_id: str) -> list:
        """Containers created from this image (running or not)."""
        return [c for c in self.api.engine.containers.values() if c.cfg.image_id == image_id]

    # ---- list, inspect, history ---------------------------------------------------------------

    def filtered(self, filters: dict[str, list[str]]) -> list:
        known = {"reference", "dangling", "label", "before", "since", "until"}
        for key in filters:
            if key not in known:
                raise InvalidRequest(f"invalid filter '{key}'")
        images = self.store.list()
        if "dangling" in filters:
            want = _truth(filters["dangling"], "dangling")
            images = [i for i in images if (not i.refs) == want]
        if "reference" in filters:
            def ok(i):
                return any(fnmatch.fnmatchcase(name, pat) for pat in filters["reference"]
                           for r in i.refs for name in (familiar(r),
                                                        familiar(r).rsplit(":", 1)[0]))
            images = [i for i in images if ok(i)]
        for label in filters.get("label", []):
            k, eq, v = label.partition("=")
            images = [i for i in images if k in i.labels and (not eq or i.labels[k] == v)]
        for key, keep in (("before", lambda t, ref: t < ref), ("since", lambda t, ref: t > ref)):
            for name in filters.get(key, []):
                ref = self.store.resolve(name).created
                images = [i for i in images if keep(i.created, ref)]
        return images

    async def list(self, req):
        images = self.filtered(parse_filters(req.query.get("filters")))
        if not req.bool_param("all"):    # the builder's intermediate images: only with -a
            from .api_build import intermediate_images
            hidden = intermediate_images(self.api.engine)
            images = [i for i in images if i.refs or i.id not in hidden]
        counts = {}
        for c in self.api.engine.containers.values():
            counts[c.cfg.image_id] = counts.get(c.cfg.image_id, 0) + 1
        ids = {i.id for i in self.store.list()}
        return http.json_response([dict(summary(i, counts.get(i.id, 0)),
                                        ParentId=parents.parent_of(self.store.root, i.id, ids.__contains__))
                                   for i in images])

    async def inspect(self, req):
        img = self.store.resolve(req.match["name"])
        cfg = img.config
        return http.json_response({
            "Id": img.id, "RepoTags": [familiar(r) for r in img.refs],
            "RepoDigests": repo_digests(img), "Parent": self.parent(img.id), "Comment": _comment(cfg),
            "Created": cfg.get("created", ""), "DockerVersion": cfg.get("docker_version", ""),
            "Author": cfg.get("author", ""), "Config": cfg.get("config") or {},
            "Architecture": cfg.get("architecture", ""), "Variant": cfg.get("variant", ""),
            "Os": cfg.get("os", "linux"), "Size": img.size,
            "GraphDriver": {"Name": "overlay", "Data": {}},
            "RootFS": {"Type": "layers", "Layers": list(img.diff_ids)},
            "Descriptor": {"mediaType": img.manifest.get("mediaType", ""),
                           "digest": img.manifest_digest},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"}})  # Go's zero time: never

    def parent(self, image_id: str) -> str:
        ids = {i.id for i in self.store.list()}
        return parents.parent_of(self.store.root, image_id, present=ids.__contains__)

    async def history(self, req):
        img = self.store.resolve(req.match["name"])
        layers = list(img.manifest["layers"])
        rows = []
        entries = [h for h in img.config.get("history") or [] if isinstance(h, dict)]
        if not entries:  # no history recorded: one row per layer
            entries = [{"created": img.config.get("created", "")} for _ in layers]
        for h in entries:
            size = 0
            if not h.get("empty_layer") and layers:
                size = int(layers.pop(0).get("size", 0))
            rows.append({"Id": "<missing>", "Created": _epoch(h.get("created", "")),
                         "CreatedBy": h.get("created_by", ""), "Tags": None, "Size": size,
                         "Comment": h.get("comment", "")})
        rows.reverse()  # newest first, as docker prints it
        if rows:
            rows[0]["Id"], rows[0]["Tags"] = img.id, [familiar(r) for r in img.refs] or None
        return http.json_response(rows)

    # ---- tag, remove, prune ---------------------------------------------------------------------

    async def tag(self, req):
        repo = req.query.get("repo", "")
        if not repo:
            raise InvalidRequest("repository name must have at least one component")
        tag = req.query.get("tag") or ""
        target = f"{repo}:{tag}" if tag else repo
        img = self.store.resolve(req.match["name"])
        await asyncio.to_thread(self.store.tag, img, target)
        return http.empty(201)

    async def delete(self, req):
        report = await asyncio.to_thread(self.remove, req.match["name"], req.bool_param("force"))
        return http.json_response(report)

    def remove(self, name: str, force: bool) -> list[dict]:
        img = self.store.resolve(name)
        by_name = None
        try:
            named = parse_reference(name)
            if str(named) in img.refs:
                by_name = str(named)
        except InvalidReference:
            pass
        users = self.users(img.id)
        if by_name and len(img.refs) > 1:  # other names remain: only this name goes
            self.store.untag(by_name)
            return [{"Untagged": familiar(by_name)}]
        if by_name is None and len(img.refs) > 1 and not force:
            raise Conflict(f"conflict: unable to delete {img.short_id} (must be forced) - image is "
                           "referenced in multiple repositories")
        if users:
            running = [c for c in users if c.state.get("Status") == "running"]
            if running and not force:
                raise Conflict(f"conflict: unable to delete {img.short_id} (cannot be forced) - "
                               f"image is being used by running container {running[0].id[:12]}")
            if not force:
                what = f"unable to remove repository reference \"{familiar(by_name)}\"" if by_name \
                    else f"unable to delete {img.short_id}"
                raise Conflict(f"conflict: {what} (must force) - container {users[0].id[:12]} is "
                               f"using its referenced image {img.short_id}")
            # forced: untag, but the image stays while a container needs its layers
            for ref in img.refs if by_name is None else [by_name]:
                self.store.untag(ref)
            return [{"Untagged": familiar(r)} for r in (img.refs if by_name is None else [by_name])]
        report = [{"Untagged": familiar(r)} for r in img.refs]
        self.store.delete(img)
        report.append({"Deleted": img.id})
        # Its blobs and extracted layers go with it, unless another image or a container uses them
        # (the snapshotter refuses to remove a layer anything is stacked on; a pull in progress
        # leases the blobs and layers it counts on).
        remove_image(self.store, self.api.engine.snapshotters(), img)
        return report

    async def prune(self, req):
        filters = parse_filters(req.query.get("filters"))
        dangling_only = _truth(filters.pop("dangling"), "dangling") if "dangling" in filters else True
        for key in filters:
            if key not in ("label", "until"):
                raise InvalidRequest(f"invalid filter '{key}'")
        result = await asyncio.to_thread(self.prune_sync, dangling_only, filters.get("label", []))
        return http.json_response(result)

    def prune_sync(self, dangling_only: bool, labels: list[str]) -> dict:
        in_use = {c.cfg.image_id for c in self.api.engine.containers.values()}
        deleted = []
        for img in self.store.list():
            if img.id in in_use or (dangling_only and img.refs):
                continue
            if any(k not in img.labels or (eq and img.labels[k] != v)
                   for k, eq, v in (lbl.partition("=") for lbl in labels)):
                continue
            deleted += [{"Untagged": familiar(r)} for r in img.refs]
            self.store.delete(img)
            deleted.append({"Deleted": img.id})
        gc = collect(self.store, self.api.engine.snapshotters())
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": gc.reclaimed}

    # ---- save, load, import --------------------------------------------------------------------

    async def save(self, req):
        names = req.query_all.get("names") or []
        if not names:
            raise InvalidRequest("no images given to save (names=...)")
        return await self._send_archive(req, names)

    async def save_one(self, req):
        return await self._send_archive(req, [req.match["name"]])

    async def _send_archive(self, req, names: list[str]):
        for name in names:
            self.store.resolve(name)  # a 404 before the 200 goes out
        fmt = "oci-archive" if req.query.get("format") == "oci-archive" else "docker-archive"
        with tempfile.TemporaryFile(dir=self.store.root) as tmp:
            await asyncio.to_thread(archive.save, self.store, names, tmp, fmt)
            tmp.seek(0)
            stream = await req.start_stream(200, "application/x-tar")
            while chunk := tmp.read(_CHUNK):
                await stream.write(chunk)
            await stream.close()
        return None

    async def _spool(self, req) -> str:
        """The request body as a file (the HTTP layer has already put a large one on disk: moved, not copied)."""
        fd, path = tempfile.mkstemp(prefix=".upload-", dir=self.store.root)
        os.close(fd)
        await req.save_body(path)
        return path

    async def load(self, req):
        if not req.body_size:
            raise InvalidRequest("no archive in the request body (docker load reads it from stdin "
                                 "or -i FILE)")
        path = await self._spool(req)
        try:
            stream = await req.start_stream(200, "application/json")
            try:
                result = await asyncio.to_thread(archive.load, self.store, path)
            except (archive.ArchiveError, ValueError, LookupError, OSError, LayerError) as e:
                # dockerd has answered 200 already: the error is the stream's last message
                # (streamformatter.FormatError), which the docker CLI prints and exits 1 on.
                msg = f"failed to load the archive: {e}"
                await stream.write_json({"errorDetail": {"message": msg}, "error": msg})
            else:
                for msg in result.messages:  # docker prints these even with --quiet
                    await stream.write_json({"stream": msg + "\n"})
            await stream.close()
        finally:
            os.unlink(path)
        return None

    async def create(self, req):
        """``fromSrc`` is import (this module); ``fromImage`` is pull (api.py's handler)."""
        if "fromSrc" not in req.query:
            return await self.api.images_create(req)
        if req.query["fromSrc"] != "-":
            raise InvalidRequest("importing from a URL is not supported: minidocker reaches no "
                                 "network but its own; send the tarball as the body (fromSrc=-)")
        repo, tag = req.query.get("repo") or "", req.query.get("tag") or ""
        ref = None
        if repo:
            ref = f"{repo}:{tag}" if tag and "@" not in repo else repo
            parse_reference(ref)
        if not req.body_size:
            raise InvalidRequest("no tarball in the request body")
        path = await self._spool(req)
        try:
            img = await asyncio.to_thread(
                archive.import_rootfs, self.store, path, ref, req.query_all.get("changes") or [],
                req.query.get("message") or "", "-")
        finally:
            os.unlink(path)
        stream = await req.start_stream(200, "application/json")
        await stream.write_json({"status": img.id})
        await stream.close()
        return None


def _comment(cfg: dict) -> str:
    history = cfg.get("history") or []
    return (history[-1].get("comment", "") if history and isinstance(history[-1], dict) else "")


def _epoch(s: str) -> int:
    from ..util import parse_rfc3339
    try:
        return int(parse_rfc3339(s)) if s else 0
    except ValueError:
        return 0
