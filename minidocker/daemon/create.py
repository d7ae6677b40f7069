"""``docker create``: from a create request to a container in the ``created`` state — and its name.

What this teaches
-----------------
``POST /containers/create`` (API v1.50, ``ContainerCreateRequest``) does everything but run:

1. resolve the image and check the name (``/name`` unique, docker's ``[a-zA-Z0-9][a-zA-Z0-9_.-]``);
2. merge request and image config into a ``ContainerConfig`` (``config.from_create_request``) and
   check the restart policy and health check;
3. prepare the container's snapshots on the image's layers (``snapshots.py``) and its volumes;
4. write the directory — OCI bundle and the daemon's record (``record.write_bundle``);
5. record ``created`` and emit the ``create`` event.

Every step undoes the ones before it when it fails: a failed create leaves no directory, snapshot
or anonymous volume behind. A container created without a name gets docker's
``adjective_scientist`` one; ``rename`` keeps the same rule of unique names.
"""
from __future__ import annotations

import os

from .. import unionfs
from ..images.layers import LayerError
from ..images.store import ImageNotFound
from ..images.unpack import unpack
from ..timing import mark
from ..util import new_id, now_rfc3339
from . import health
from .config import ConfigError, from_create_request, validate_name
from .errors import Conflict, InvalidRequest, NotFound
from .record import Container, write_bundle
from .restart import validate_restart_policy


class Create:
    """The engine's create and rename (a mixin of ``engine.Engine``)."""

    def create(self, body: dict, name: str | None, rootfs=None) -> tuple[str, list[str]]:
        """``rootfs`` (the builder's hook): (image id, image run config, prepare(cid) -> mounts)
        for a container on a writable snapshot the caller prepares under the key ``cid``."""
        if not isinstance(body, dict):
            raise InvalidRequest("invalid JSON: the request body must be an object")
        image_name = body.get("Image")
        if not image_name:
            raise InvalidRequest("No image was specified")
        try:
            image = self.images.resolve(image_name) if rootfs is None else None
        except ImageNotFound as e:
            raise NotFound(str(e))
        except ValueError as e:
            raise InvalidRequest(str(e))
        image_id, image_config = (image.id, image.config.get("config", {})) if rootfs is None else rootfs[:2]
        if name:
            name = self.check_name_free(name)
        mark("daemon", "create: HTTP request to engine (resolve image)")
        try:
            health.validate(body.get("Healthcheck"))
        except ValueError as e:
            raise InvalidRequest(str(e))
        cid = new_id()
        name = name or self.generate_name()
        directory = os.path.join(self.root, "containers", cid)
        warnings: list[str] = []
        netns_path = self.net.plan(body, cid)
        try:
            cfg = from_create_request(body, cid=cid, name=name, image_id=image_id,
                                      image_ref=image_name, image_config=image_config,
                                      lowerdirs=[], upperdir="", workdir="",
                                      cgroup_parent=self.cgroup_parent, warnings=warnings)
        except ConfigError as e:
            raise InvalidRequest(str(e))
        host = body.get("HostConfig") or {}
        validate_restart_policy(host)
        console = host.get("ConsoleSize")
        console = console if console and any(console) else None
        # The image's layers, unpacked once per ChainID, and a writable snapshot named after us.
        try:
            if rootfs is None:
                with self.snapshotter.lease(*image.chain_ids):  # a concurrent rmi must not take them
                    mounts = self.prepare_snapshots(cid, unpack(self.images, self.snapshotter, image))
            else:
                mounts = rootfs[2](cid)
        except (LayerError, unionfs.SnapshotError, OSError) as e:
            raise InvalidRequest(f"cannot prepare the root filesystem of {image_name}: {e}")
        mark("daemon", "create: config, snapshot prepare")
        cfg.rootfs_mounts = [dict(vars(m)) for m in mounts]
        cfg.storage_driver = self.driver
        from . import api_volumes   # the volumes chapter: -v, --mount, --tmpfs, image VOLUMEs

        def drop_snapshots():
            self.snapshotter.remove(cid)
            if rootfs is None:
                self.snapshotter.remove(cid + "-init")
        # (The builder's RUN containers get no anonymous volumes for the image's VOLUMEs.)
        try:
            points = api_volumes.resolve(self, body, image_config if rootfs is None else {}, cid)
        except BaseException:
            drop_snapshots()
            raise
        cfg.volume_mounts = [p.to_dict() for p in points]
        try:
            api_volumes.copy_up(self, points, mounts)
            write_bundle(directory, cfg, body, console, warnings, netns_path, self.userns_remap)
        except ConfigError as e:
            drop_snapshots()
            api_volumes.release(self, cid, cfg.volume_mounts, remove_anonymous=True)
            raise InvalidRequest(str(e))
        except BaseException:
            drop_snapshots()
            api_volumes.release(self, cid, cfg.volume_mounts, remove_anonymous=True)
            raise
        mark("daemon", "create: specconv, bundle written")
        c = Container(cid, directory, cfg, body, now_rfc3339(), name)
        c.save()
        self.containers[cid] = c
        self.emit(c, "create")
        mark("daemon", "create: record saved")
        return cid, warnings

    def check_name_free(self, name: str) -> str:
        """``name`` checked (docker's pattern, a leading '/' dropped) and not taken, or dockerd's error."""
        try:
            name = validate_name(name)
        except ConfigError as e:
            raise InvalidRequest(str(e))
        for c in self.containers.values():
            if c.name == name:
                raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                               f'"{c.id}". You have to remove (or rename) that container to be able to '
                               "reuse that name.")
        return name

    def generate_name(self) -> str:
        adjectives = ["brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "kind", "lucid", "merry",
                      "nifty", "quirky", "serene", "tender", "vivid", "witty", "zealous", "bold", "keen", "proud"]
        scientists = ["curie", "darwin", "euler", "fermi", "gauss", "hopper", "kepler", "lovelace", "noether",
                      "pascal", "ritchie", "shannon", "thompson", "turing", "torvalds", "wozniak", "babbage"]
        used = {c.name for c in self.containers.values()}
        while True:
            n = f"{adjectives[os.urandom(1)[0] % len(adjectives)]}_{scientists[os.urandom(1)[0] % len(scientists)]}"
            if n not in used:
                return n
            n += str(os.urandom(1)[0])
            if n not in used:
                return n

    def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        if not new_name:
            raise InvalidRequest("Neither old nor new names may be empty")
        try:
            same = validate_name(new_name) == c.name
        except ConfigError as e:
            raise InvalidRequest(str(e))
        if same:
            raise InvalidRequest("Renaming a container with the same name as its current name")
        new_name = self.check_name_free(new_name)
        old, c.name = c.name, new_name
        c.cfg.name = new_name
        c.save()
        self.emit(c, "rename", oldName="/" + old)
