"""A container's layers: the image's snapshots, docker's init layer, the writable layer on top.

What this teaches
-----------------
An image's layers are unpacked once into the snapshotter (chapter 4, ``unionfs``), each committed
under its ChainID (OCI image spec, "Layer ChainID"). A container adds two snapshots of its own,
as dockerd's graph drivers do:

* ``<id>-init``: the mount points the runtime binds over (``/etc/hostname``, ``/etc/hosts``,
  ``/etc/resolv.conf``, ``/proc``, ``/sys``, ``/dev``) as empty placeholders, committed on the
  image's top layer — kept out of ``docker diff`` and ``docker commit``;
* ``<id>``: the writable layer (overlay's ``upperdir``), what ``diff``, ``commit`` and ``cp`` see.

Both go with the container; layers no image names any more follow (``images.unpack.prune``).
Leases (``Snapshotter.lease``) keep a concurrent prune off a snapshot being assembled. After a
crash :meth:`Snapshots.sweep_snapshots` removes the active snapshots nobody owns (containerd's
garbage collection of snapshots without a lease or a reference does the same).
"""
from __future__ import annotations

import logging
import os

from .. import unionfs
from ..images.unpack import collect, migrate, prune

log = logging.getLogger("minidockerd")

# What the runtime mounts over (rootfs.py): created in each container's init layer.
PLACEHOLDER_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")
PLACEHOLDER_DIRS = ("/proc", "/sys", "/dev")


class Snapshots:
    """The engine's snapshot methods (a mixin of ``engine.Engine``)."""

    def snapshotter_for(self, driver: str) -> unionfs.Snapshotter:
        """One snapshot root per driver: a daemon restarted with the other driver still finds the
        layers of containers created before."""
        current = getattr(self, "snapshotter", None)
        if current is not None and current.driver == (driver or "overlay"):
            return current
        return unionfs.new_snapshotter(driver or "overlay", os.path.join(self.root, "snapshots", driver or "overlay"))

    def snapshotters(self) -> list[unionfs.Snapshotter]:
        """The snapshotter of every driver this root has used (layers may be in each)."""
        base = os.path.join(self.root, "snapshots")
        drivers = [d for d in unionfs.DRIVERS if os.path.isdir(os.path.join(base, d))]
        return [self.snapshotter_for(d) for d in sorted(set(drivers) | {self.driver})]

    def prepare_snapshots(self, cid: str, image_top: str) -> list:
        """docker's two layers per container: "ID-init" (mount points the runtime binds over, kept
        out of diff and commit) committed on the image, and the writable "ID" on top of it."""
        snap = self.snapshotter
        # Leased from its commit until the writable layer stacks on it: between the two nothing
        # uses "ID-init", and a prune running meanwhile (another container's removal) must skip it.
        with snap.lease(cid + "-init"):
            snap.prepare(cid + "-init-active", image_top)
            try:
                unionfs.add_placeholders(snap, cid + "-init-active", files=PLACEHOLDER_FILES,
                                         dirs=PLACEHOLDER_DIRS)
                snap.commit(cid + "-init", cid + "-init-active")
            except BaseException:
                snap.remove(cid + "-init-active")
                raise
            try:
                return snap.prepare(cid, cid + "-init", labels={"container": cid})
            except BaseException:
                snap.remove(cid + "-init")
                raise

    def release_snapshot(self, c) -> None:
        """The container's writable layer goes with it; layers no image names any more follow."""
        snap = self.snapshotter_for(c.cfg.storage_driver)
        for key in (c.id, c.id + "-init"):
            try:
                snap.remove(key)
            except unionfs.SnapshotNotFound:
                pass
            except unionfs.SnapshotError as e:
                log.warning("container %s: %s", c.id[:12], e)
        try:
            prune(self.images, snap)
        except Exception as e:  # a broken image must not fail an rm
            log.warning("pruning layers: %s", e)

    def sweep_snapshots(self) -> list[str]:
        """After a crash: active snapshots no container owns (a half-done unpack, an init layer
        being prepared, a container directory that is gone) are removed, then unused layers."""
        removed = []
        snap = self.snapshotter
        for info in sorted(snap.list(), key=lambda i: -int(i.id)):   # children before parents
            owner = info.key.removesuffix("-init")
            if info.kind == unionfs.KIND_COMMITTED and not info.key.endswith("-init"):
                continue
            if owner in self.containers:
                continue
            try:
                snap.remove(info.key)
                removed.append(info.key)
            except unionfs.SnapshotError as e:
                log.warning("sweeping snapshot %s: %s", info.key, e)
        # Roots of older daemons kept a second copy of every layer in images/snapshots: adopt
        # it as the snapshotter's layers (or drop it), then free what nothing references.
        migrate(self.images, snap, os.path.join(self.images.root, "snapshots"))
        collect(self.images, self.snapshotters(), grace=60)
        return removed
