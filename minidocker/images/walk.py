"""The manifest walk: from an index (or a manifest) down to the layers, each document checked against
the digest that named it.

What this teaches
-----------------
An image is a chain of documents, each named by the sha256 of its exact bytes (OCI image-spec
descriptor.md "Digests", image-index.md, manifest.md, config.md)::

    index --platform--> manifest --config--> config (rootfs.diff_ids)
                                 \\--layers--> layer blobs (compressed tars)

Walking it is: read the bytes a descriptor names, check that they hash to its digest (and have its
size) *before* parsing them, and follow the next descriptor. The layers are named twice: by the
digest of the blob as stored (compressed), and by the *DiffID* in the config, the digest of the
uncompressed tar (what :func:`minidocker.images.layers.apply_layer` computes while extracting). A
stack of layers is named by its *ChainID* (config.md "Layer ChainID"): ChainID(L0) = DiffID(L0),
ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln)) — what a snapshot is (chapter 5).

:func:`walk_image` is what the image store (``store.py``) uses to read every image it lists, and
the reference of lab 06's manifest walk. ``read_blob(digest) -> bytes`` is any content store: the
walk itself touches no files, so it is the same for a store, a registry or an OCI layout.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Callable

from .model import INDEX_TYPES, MANIFEST_TYPES, InvalidDocument, Platform, parse, select_manifest

MANIFEST_MEDIA_TYPES = MANIFEST_TYPES
_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")


class InvalidDigest(ValueError):
    """Not a ``sha256:<64 lowercase hex>`` string."""


class DigestMismatch(ValueError):
    """Content does not match the digest (or size) it was announced with."""


class InvalidImage(ValueError):
    """A manifest or config that is not a usable OCI image."""


def validate_digest(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise InvalidDigest(f"invalid digest {digest!r}: want sha256:<64 lowercase hex digits>")
    return digest


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_ids(diff_ids) -> list[str]:
    """The ChainID of each layer stack (image-spec config.md, "Layer ChainID"): ChainID(L0) =
    DiffID(L0); ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln)). It names a stack of
    applied layers, what a snapshot is (chapter 5): the same DiffIDs in the same order, the same name."""
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(diff_id if not out else "sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


def parse_json(data: bytes, what: str) -> dict:
    """model.parse, with the store's error (InvalidImage: callers catch that one)."""
    try:
        return parse(data, what)
    except InvalidDocument as e:
        raise InvalidImage(str(e)) from None


def check_manifest(m: dict) -> None:
    """manifest.md: schemaVersion 2, a config descriptor and at least one layer descriptor."""
    if m.get("schemaVersion") != 2:
        raise InvalidImage(f"manifest schemaVersion must be 2, not {m.get('schemaVersion')!r}")
    media_type = m.get("mediaType", MANIFEST_TYPES[0])
    if media_type not in MANIFEST_MEDIA_TYPES:
        raise InvalidImage(f"not an image manifest: mediaType {media_type!r}")
    if not isinstance(m.get("config"), dict):
        raise InvalidImage("manifest has no config descriptor")
    if not isinstance(m.get("layers"), list) or not m["layers"]:
        raise InvalidImage("manifest has no layers")


def check_config(config: dict, manifest: dict) -> None:
    """config.md: rootfs.type is "layers" and there is one DiffID per layer."""
    rootfs = config.get("rootfs") or {}
    if rootfs.get("type") != "layers":
        raise InvalidImage(f"image config rootfs.type must be 'layers', not {rootfs.get('type')!r}")
    diff_ids = rootfs.get("diff_ids") or []
    if len(diff_ids) != len(manifest["layers"]):
        raise InvalidImage(f"image config lists {len(diff_ids)} diff_ids for "
                           f"{len(manifest['layers'])} layers")
    for d in diff_ids:
        validate_digest(d)


def verified(read_blob: Callable[[str], bytes], digest: str, what: str, size: int | None = None) -> bytes:
    """The bytes ``digest`` names, checked: they must hash to it (and be ``size`` long if given)."""
    data = read_blob(validate_digest(digest))
    if sha256_digest(data) != digest:
        raise DigestMismatch(f"{what} {digest}: content hashes to {sha256_digest(data)}")
    if size is not None and len(data) != size:
        raise DigestMismatch(f"{what} {digest}: {len(data)} bytes, the descriptor says {size}")
    return data


@dataclass
class Layer:
    digest: str  # of the blob as stored (maybe compressed)
    media_type: str
    size: int
    diff_id: str  # of the uncompressed tar (from the config)
    chain_id: str  # of the stack up to and including this layer


@dataclass
class ImageWalk:
    manifest_digest: str
    manifest: dict
    config: dict
    layers: list[Layer] = field(default_factory=list)

    @property
    def config_digest(self) -> str:  # the image ID
        return self.manifest["config"]["digest"]


def walk_image(read_blob: Callable[[str], bytes], digest: str, platform: Platform | None = None,
               verify_layers: bool = False) -> ImageWalk:
    """Index (optional) -> manifest -> config -> layers, every document verified against its digest.
    An index is resolved to the manifest for ``platform`` (default: this machine). Layer blobs are
    hashed only with ``verify_layers`` (they are large; the store checks them when it ingests them)."""
    data = verified(read_blob, digest, "manifest")
    doc = parse_json(data, "manifest")
    if doc.get("mediaType") in INDEX_TYPES or ("manifests" in doc and "layers" not in doc):
        desc = select_manifest(doc, platform)
        digest = desc["digest"]
        doc = parse_json(verified(read_blob, digest, "manifest", desc.get("size")), "manifest")
    check_manifest(doc)
    cdesc = doc["config"]
    config = parse_json(verified(read_blob, cdesc.get("digest"), "image config", cdesc.get("size")),
                        "image config")
    check_config(config, doc)
    diff_ids = list(config["rootfs"]["diff_ids"])
    layers = []
    for n, (desc, diff_id, chain_id) in enumerate(zip(doc["layers"], diff_ids, chain_ids(diff_ids)), 1):
        what = f"layer {n} of {len(diff_ids)}"
        if verify_layers:
            verified(read_blob, desc.get("digest"), what, desc.get("size"))
        layers.append(Layer(validate_digest(desc.get("digest")), desc.get("mediaType", ""),
                            int(desc.get("size", 0)), diff_id, chain_id))
    return ImageWalk(digest, doc, config, layers)
