"""OCI images: references, the content-addressed image store, layers, and an offline busybox image.

Chapter map (read in this order):

* reference.py — ``busybox`` -> ``docker.io/library/busybox:latest`` (docker's normalisation)
* model.py     — media types (OCI and Docker), platform selection in an index, the OCI JSON schemas
* store.py     — blobs, manifests, configs and tags in the OCI image-layout format; image ids,
                 DiffIDs and ChainIDs; extracted layers for overlay's ``lowerdir=``; garbage collection
* layers.py    — applying a layer tar safely: whiteouts, symlinks, hardlinks, ownership, modes;
                 gzip/zstd; independent layers in parallel
* hostile.py   — 30 hostile archives the applier must refuse or contain (tests and lab 06 use them)
* archive.py   — docker-archive (``docker save``/``load``), OCI layout/archive, ``import``
* busybox.py   — a real, reproducible image built offline from Debian's busybox-static
"""
from .busybox import BusyboxMissing, build_busybox, busybox_available
from .layers import ApplyResult, LayerError, apply_layer
from .reference import InvalidReference, Reference, parse_reference
from .store import (AmbiguousImage, BlobNotFound, ContentStore, DigestMismatch, Image,
                    ImageNotFound, ImageStore, InvalidDigest, InvalidImage, chain_ids)

__all__ = [
    "AmbiguousImage", "ApplyResult", "BlobNotFound", "BusyboxMissing", "ContentStore",
    "DigestMismatch", "Image", "ImageNotFound", "ImageStore", "InvalidDigest", "InvalidImage",
    "InvalidReference", "LayerError", "Reference", "apply_layer", "build_busybox",
    "busybox_available", "chain_ids", "parse_reference",
]
