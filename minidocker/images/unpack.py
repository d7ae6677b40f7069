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

A committed layer stays while anything is stacked on it (a layer above, a container) or an image
names its ChainID; :func:`prune` removes the rest.
"""
from __future__ import annotations

import contextlib
import secrets

from ..unionfs import SnapshotExists, Snapshotter, apply_target
from .layers import LayerError, apply_layer
from .store import Image, ImageStore


def unpack(store: ImageStore, snapshotter: Snapshotter, image: Image) -> str:
    """Make sure every layer of ``image`` is a committed snapshot; return the top ChainID."""
    parent = None
    for layer, diff_id, chain_id in zip(image.manifest["layers"], image.diff_ids, image.chain_ids):
        if not snapshotter.exists(chain_id):
            key = f"extract-{secrets.token_hex(6)}-{chain_id[7:19]}"
            snapshotter.prepare(key, parent)
            try:
                target, whiteouts = apply_target(snapshotter, key)
                with store.content.open(layer["digest"]) as f:
                    result = apply_layer(f, target, whiteouts=whiteouts)
                if result.diff_id != diff_id:
                    raise LayerError(f"layer {layer['digest']}: its uncompressed content is "
                                     f"{result.diff_id} but the image config says {diff_id}")
                snapshotter.commit(chain_id, key, labels={"diff_id": diff_id,
                                                          "layer_digest": layer["digest"]})
            except SnapshotExists:
                snapshotter.remove(key)      # another unpacker committed the same layer first
            except BaseException:
                with contextlib.suppress(Exception):
                    snapshotter.remove(key)
                raise
        parent = chain_id
    return parent


def prune(store: ImageStore, snapshotter: Snapshotter) -> list[str]:
    """Remove committed layers no image names and nothing is stacked on."""
    keep = {c for image in store.list() for c in image.chain_ids}
    return snapshotter.prune(keep)
