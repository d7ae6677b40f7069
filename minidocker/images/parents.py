"""Image parents: which local image a committed image was made from (``docker image inspect``'s
``Parent``, ``docker images``' ``ParentId``).

What this teaches
-----------------
An image config (image-spec config.md) does not name a parent: two images that share layers are
related only by their ``rootfs.diff_ids``. dockerd keeps the parent as *local metadata* of its
image store (``image/fs/metadata/sha256/<id>/parent``), written by ``commit`` and ``build`` and never
pushed; a pulled or loaded image has none. We keep the same, one JSON file beside the store's
index: ``{child image id: parent image id}``.
"""
from __future__ import annotations

import os

from ..util import atomic_write_json, read_json

FILE = "parents.json"


def _path(store_root: str) -> str:
    return os.path.join(store_root, FILE)


def record(store_root: str, child: str, parent: str) -> None:
    parents = read_json(_path(store_root)) or {}
    if parents.get(child) != parent:
        parents[child] = parent
        atomic_write_json(_path(store_root), parents)


def parent_of(store_root: str, image_id: str, present=None) -> str:
    """The parent's id, or "" (none recorded, or ``present`` says it is gone: dockerd forgets a
    deleted parent as well)."""
    parent = (read_json(_path(store_root)) or {}).get(image_id, "")
    if parent and present is not None and not present(parent):
        return ""
    return parent
