"""Unpack an image into a snapshotter: each layer extracted once, keyed by its ChainID.

What this teaches
-----------------
containerd's unpacker walks an image's layers bottom-up. For each layer it asks the snapshotter
whether the ChainID ("this layer on top of those", image-spec config.md) is already committed; if
not it *prepares* an active snapshot on the parent chain, applies the layer tar into it (layers.py
``apply_layer``: overlay whiteouts for the overlay driver, deletions for the copy driver), checks
that the uncompressed bytes hash to the DiffID the config promises, and *commits* it under the
ChainID. Images that share a base share its snapshots; two unpackers racing on the same layer
both extract, one commit wins and the loser removes its copy.

This happens once, when an image arrives (pull, load, import, commit: ``ImageStore.add_image``
calls :func:`unpack` before recording the image); ``run`` then only prepares an empty writable
snapshot on top. A pull can even extract *while* it downloads (:func:`stream_layer`): the bytes
go through the digest check into the blob file and, through a pipe, into the extractor at the
same time; the snapshot is committed only once the blob's digest and the layer's DiffID match,
so nothing unverified ever becomes visible.

In the daemon's store (``ImageStore(init_layers=True)``, :func:`unpack_image`) an image also
gets docker's **init layer** (:func:`ensure_init_layer`): the empty mount
points the runtime binds over (``/etc/hostname``, ``/etc/hosts``, ``/etc/resolv.conf``, ``/proc``,
``/sys``, ``/dev``) committed on the image's top layer as ``init-<top ChainID>``. dockerd makes one
per container (``<id>-init``); its content is the same for every container of an image, so it is
made once, shared by every container's writable layer, and goes with the image. Not with the
copy driver: there every snapshot is a full copy of the tree, so a shared init layer would be a
second copy of every image, made even for images never run; it keeps dockerd's per-container one.

A committed layer stays while anything is stacked on it (a layer above, a container), an image
names its ChainID (or, for an init layer, its top), or a lease holds it. :func:`remove_image`
frees what a deleted image alone used (``rmi``); :func:`collect` frees everything unreferenced (``image prune``, daemon start);
:func:`migrate` moves the layers an older daemon kept in ``images/snapshots`` into the snapshotter.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import shutil
import threading

from ..unionfs import OverlaySnapshotter, SnapshotExists, Snapshotter, add_placeholders, apply_target
from .layers import LayerError, apply_layer
from .store import GCResult, Image, ImageStore

log = logging.getLogger(__name__)
PIPE_SIZE = 1 << 20   # F_SETPIPE_SZ: let the downloader run ahead of the extractor by 1 MiB


# What the runtime mounts over (rootfs.py, OCI runtime spec "Default Filesystems" and docker's
# /etc files): created as empty placeholders in an image's init layer and in the builder's RUN layers.
PLACEHOLDER_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")
PLACEHOLDER_DIRS = ("/proc", "/sys", "/dev")
INIT_LABEL = "init_of"


def init_key(top: str | None) -> str:
    """The key of the init layer shared by the containers of an image whose top layer is ``top``
    (None: an image without layers)."""
    return "init-" + (top or "scratch")


def _is_layer(info) -> bool:
    """Image layers carry a DiffID label, init layers the top they belong to; container snapshots
    ("<id>", and "<id>-init" of older daemons) carry neither and go with their container, never
    by a prune."""
    return "diff_id" in info.labels or INIT_LABEL in info.labels


def shares_init_layer(snapshotter: Snapshotter) -> bool:
    """Does this driver keep one init layer per image (cheap: overlay, btrfs), not one per container?"""
    return snapshotter.driver != "copy"


def ensure_init_layer(snapshotter: Snapshotter, top: str | None) -> str:
    """The init layer on ``top``, committed if it is not there yet; returns its key. The caller
    leases ``top`` and the key (a prune must not take either before a container stacks on them).
    Two creators racing both make one, one commit wins and the loser removes its copy."""
    key = init_key(top)
    if snapshotter.exists(key):
        return key
    work = f"{key[:24]}-{secrets.token_hex(6)}-active"
    snapshotter.prepare(work, top)
    try:
        add_placeholders(snapshotter, work, files=PLACEHOLDER_FILES, dirs=PLACEHOLDER_DIRS)
        snapshotter.commit(key, work, labels={INIT_LABEL: top})
    except SnapshotExists:
        snapshotter.remove(work)
    except BaseException:
        with contextlib.suppress(Exception):
            snapshotter.remove(work)
        raise
    return key


def _extract(snapshotter: Snapshotter, chain_id: str, parent: str | None, layer_digest: str,
             diff_id: str, feed) -> bool:
    """Prepare, ``feed(target, whiteouts) -> ApplyResult``, check the DiffID, commit as ``chain_id``.
    Returns False if another unpacker committed the same layer first."""
    key = f"extract-{secrets.token_hex(6)}-{chain_id[7:19]}"
    snapshotter.prepare(key, parent)
    try:
        result = feed(*apply_target(snapshotter, key))
        if result.diff_id != diff_id:
            raise LayerError(f"layer {layer_digest}: its uncompressed content is "
                             f"{result.diff_id} but the image config says {diff_id}")
        snapshotter.commit(chain_id, key, labels={"diff_id": diff_id, "layer_digest": layer_digest})
        return True
    except SnapshotExists:
        snapshotter.remove(key)      # another unpacker committed the same layer first
        return False
    except BaseException:
        with contextlib.suppress(Exception):
            snapshotter.remove(key)
        raise


def unpack(store: ImageStore, snapshotter: Snapshotter, image: Image) -> str:
    """Make sure every layer of ``image`` is a committed snapshot; return the top ChainID."""
    parent = None
    with snapshotter.lease(*image.chain_ids):  # layer n must survive until layer n+1 stacks on it
        for layer, diff_id, chain_id in zip(image.manifest["layers"], image.diff_ids, image.chain_ids):
            if not snapshotter.exists(chain_id):
                def from_blob(target, whiteouts, digest=layer["digest"]):
                    with store.content.open(digest) as f:
                        return apply_layer(f, target, whiteouts=whiteouts)
                _extract(snapshotter, chain_id, parent, layer["digest"], diff_id, from_blob)
            parent = chain_id
    return parent


def unpack_image(store: ImageStore, snapshotter: Snapshotter, image: Image) -> str:
    """What an image arriving in ``store`` gets: its layers, and its init layer when the store
    keeps them (``ImageStore(init_layers=True)``: the daemon's)."""
    return (container_base if store.init_layers else unpack)(store, snapshotter, image)


def container_base(store: ImageStore, snapshotter: Snapshotter, image: Image) -> str:
    """:func:`unpack`, then the image's init layer: returns what a container's writable layer
    stacks on — the init layer's key, or with a driver that keeps init layers per container
    (copy) the top ChainID. An image arriving in the daemon's store gets both (:func:`unpack_image`);
    one stored by a daemon before shared init layers gets its own at its first container."""
    with snapshotter.lease(*image_keys(image)):
        top = unpack(store, snapshotter, image)
        return ensure_init_layer(snapshotter, top) if shares_init_layer(snapshotter) else top


class _Tee:
    """A reader that hands every chunk it reads to a pipe as well (the extractor's end)."""

    def __init__(self, src, fd: int):
        self.src, self.fd, self.broken, self.fed = src, fd, False, 0

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        self.fed += len(data)
        if data and not self.broken:
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self.fd, view):]
            except BrokenPipeError:   # the extractor failed: keep storing the blob, report later
                self.broken = True
        return data


def stream_layer(store: ImageStore, snapshotter: Snapshotter, src, desc: dict, diff_id: str,
                 chain_id: str, parent: str | None) -> bool:
    """Store blob ``desc`` from reader ``src`` and extract it as snapshot ``chain_id`` in one pass.

    The download thread writes each chunk into the blob's temporary file (hashed, ContentStore.ingest)
    and into a pipe; an extractor thread applies the tar from the pipe into an active snapshot.
    The blob is renamed into place only if its digest matches, and the snapshot is committed only
    after that *and* a DiffID match. Returns False (blob stored, nothing extracted) when the layer
    cannot be extracted yet (its parent is not committed) or is already there."""
    with snapshotter.lease(*[k for k in (parent, chain_id) if k]):
        if (parent is not None and not snapshotter.exists(parent)) or snapshotter.exists(chain_id):
            store.content.ingest(src, desc["digest"], desc.get("size"))
            return False
        return _extract(snapshotter, chain_id, parent, desc["digest"], diff_id,
                        lambda target, whiteouts: _tee_into(store, src, desc, target, whiteouts))


def _tee_into(store: ImageStore, src, desc: dict, target: str, whiteouts: str):
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(wfd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    outcome: dict = {}
    done = threading.Thread(target=_drain_into, args=(rfd, target, whiteouts, outcome),
                            name="extract-" + desc["digest"][7:19])
    done.start()
    tee = _Tee(src, wfd)
    try:
        store.content.ingest(tee, desc["digest"], desc.get("size"))
    finally:
        os.close(wfd)             # end of stream for the extractor (or an early end on failure)
        done.join()
    if not tee.fed:               # another puller stored the blob first: ingest read nothing
        with store.content.open(desc["digest"]) as f:
            return apply_layer(f, target, whiteouts=whiteouts)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def _drain_into(rfd: int, target: str, whiteouts: str, outcome: dict) -> None:
    with os.fdopen(rfd, "rb") as r:
        try:
            outcome["result"] = apply_layer(r, target, whiteouts=whiteouts)
        except BaseException as e:  # noqa: BLE001 - handed to the downloading thread
            outcome["error"] = e
        finally:
            with contextlib.suppress(OSError):
                while r.read(1 << 16):  # let the writer finish even if the tar ended or failed
                    pass


def _keep(store: ImageStore) -> set[str]:
    """What the stored images name: their layers and the init layer on each one's top."""
    return {k for image in store.list() for k in image_keys(image)}


def image_keys(image: Image) -> list[str]:
    """The snapshots an unpacked image consists of: its layers and its init layer."""
    return [*image.chain_ids, init_key(image.chain_ids[-1] if image.chain_ids else None)]


def prune(store: ImageStore, snapshotter: Snapshotter) -> list[str]:
    """Remove committed layers no image names, nothing is stacked on and no lease holds."""
    return snapshotter.prune(_keep(store), only=_is_layer)


def remove_image(store: ImageStore, snapshotters: list[Snapshotter], image: Image) -> GCResult:
    """After ``store.delete(image)`` (``rmi``): its blobs and layer snapshots that no other image
    needs go too (dockerd's layer store releases a layer when its last reference goes)."""
    blobs = [image.manifest_digest, image.id, *(layer["digest"] for layer in image.manifest["layers"])]
    result = store.gc(among=blobs)
    keep = _keep(store)
    for snapshotter in snapshotters:
        snapshotter.prune(keep, only=lambda i: _is_layer(i) and i.key in image_keys(image))
    return result


def collect(store: ImageStore, snapshotters: list[Snapshotter], grace: float = 0.0) -> GCResult:
    """Garbage-collect everything unreferenced: blobs no index entry reaches (and no lease holds)
    and layer snapshots no image names (``image prune``, ``system prune``, daemon start)."""
    result = store.gc(grace=grace)
    keep = _keep(store)
    for snapshotter in snapshotters:
        snapshotter.prune(keep, only=_is_layer)
    return result


def migrate(store: ImageStore, snapshotter: Snapshotter, legacy: str) -> list[str]:
    """Older daemons extracted every layer a second time into ``legacy`` (``images/snapshots/
    <chainid hex>/fs``, overlay whiteouts). Move those directories into the snapshotter as its
    committed layers where they fit (overlay keeps the same on-disk form: a rename, no copy), unpack
    the rest of every image from its blobs, then delete ``legacy``. Returns the ChainIDs adopted."""
    adopted: list[str] = []
    if not os.path.isdir(legacy):
        return adopted
    overlay = isinstance(snapshotter, OverlaySnapshotter)
    for image in store.list():
        with snapshotter.lease(*image.chain_ids):
            parent = None
            for layer, diff_id, chain_id in zip(image.manifest["layers"], image.diff_ids,
                                                image.chain_ids):
                old = os.path.join(legacy, chain_id[7:], "fs")
                if overlay and not snapshotter.exists(chain_id) and os.path.isdir(old):
                    key = f"migrate-{secrets.token_hex(6)}-{chain_id[7:19]}"
                    snapshotter.prepare(key, parent)
                    fs = snapshotter.fs(key)
                    os.rmdir(fs)
                    os.rename(old, fs)
                    snapshotter.commit(chain_id, key, labels={"diff_id": diff_id,
                                                              "layer_digest": layer["digest"]})
                    adopted.append(chain_id)
                parent = chain_id
            try:
                unpack_image(store, snapshotter, image)
            except (LayerError, OSError) as e:   # a broken image must not stop the daemon
                log.warning("image %s: %s", image.short_id, e)
    shutil.rmtree(legacy, ignore_errors=True)
    return adopted
