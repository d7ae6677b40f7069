"""Images in and out of the store: docker-archive, OCI layout, OCI archive, and ``import``.

What this teaches
-----------------
An image travels as files, in one of three shapes:

* **OCI image layout** (image-layout.md): a directory with ``oci-layout``, ``index.json`` and
  ``blobs/sha256/<hex>``; an **OCI archive** is that directory as a tar. ``skopeo copy``,
  ``umoci`` and ``podman save --format oci-archive`` speak it. The name of an image in a layout is
  the ``org.opencontainers.image.ref.name`` annotation of its index entry, which by convention is
  just the *tag* (``skopeo copy ... oci:DIR:latest``); docker and containerd add the full name as
  ``io.containerd.image.name``.
* **docker-archive** (``docker save``/``docker load``): a tar with ``manifest.json`` — a list of
  ``{"Config": path, "RepoTags": [...], "Layers": [paths of *uncompressed* layer tars]}`` — and a
  ``repositories`` file ``{"busybox": {"latest": "<top layer id>"}}`` for pre-1.10 loaders.
  Since docker 25, ``docker save`` writes its files at ``blobs/sha256/<hex>`` and adds
  ``oci-layout`` + ``index.json``, so one tar is both formats. :func:`save` writes exactly that.
* **a root filesystem** (``docker import``): a tar (or a directory) becomes a one-layer image with
  a config we make up.

Loading verifies every blob against its digest before it enters the store (ContentStore), and a
name is only set after all blobs of the image are in, so a bad archive leaves no image behind.
Archive paths are looked up by name, never extracted to disk, so ``../`` in an archive cannot do
harm here (layers are applied later by layers.py, which has its own defences).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass, field

from . import model
from .layers import ZSTD_MAGIC, GZIP_MAGIC, LayerError, clean_member_name, uncompressed_stream
from .reference import InvalidReference, parse_reference
from .store import Image, ImageStore, REF_NAME_ANNOTATION, sha256_digest, validate_digest
from ..util import now_rfc3339

CONTAINERD_NAME_ANNOTATION = "io.containerd.image.name"
_CHUNK = 1 << 20


class ArchiveError(ValueError):
    """An archive or layout that cannot be loaded; the message says which file and why."""


@dataclass
class LoadResult:
    images: list[Image] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # "Loaded image: busybox:latest", as docker


# ============================================================================================
# Reading archives: a uniform "open a path inside" over a tar file or a directory.


class _Source:
    """Files of an archive or a layout directory, by path. Only regular files are returned."""

    def __init__(self, path: str):
        self.path = path
        self.tar = None if os.path.isdir(path) else _open_tar(path)
        if self.tar is not None:
            self.members = {}
            for m in self.tar.getmembers():
                self.members[posixpath.normpath(m.name.lstrip("./") or ".")] = m

    def has(self, name: str) -> bool:
        name = posixpath.normpath(name)
        if self.tar is None:
            return os.path.isfile(self._dir_path(name))
        m = self.members.get(name)
        return m is not None and m.isreg()

    def _dir_path(self, name: str) -> str:
        cleaned = clean_member_name(name)
        full = os.path.realpath(os.path.join(self.path, cleaned))
        if not full.startswith(os.path.realpath(self.path) + os.sep):
            raise ArchiveError(f"{name!r} points outside the layout directory")
        return full

    def open(self, name: str):
        name = posixpath.normpath(name)
        if self.tar is None:
            try:
                return open(self._dir_path(name), "rb")
            except FileNotFoundError:
                raise ArchiveError(f"{name} is missing from {self.path}") from None
        m = self.members.get(name)
        if m is None or not m.isreg():
            raise ArchiveError(f"{name} is missing from the archive (or is not a regular file)")
        return self.tar.extractfile(m)

    def read_json(self, name: str):
        with self.open(name) as f:
            data = f.read(64 << 20)
        try:
            return json.loads(data)
        except ValueError as e:
            raise ArchiveError(f"{name} is not valid JSON: {e}") from None

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()


def _open_tar(path: str) -> tarfile.TarFile:
    """A tar, maybe gzip-compressed (docker load accepts both)."""
    try:
        return tarfile.open(path, mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ArchiveError(f"not a tar archive: {e}") from None


# ============================================================================================
# Loading


def load(store: ImageStore, path: str, name: str | None = None) -> LoadResult:
    """Load a docker-archive, an OCI archive or an OCI layout directory into ``store``.

    ``name`` names images of an OCI layout whose entries carry only a tag (``oci:DIR:tag``):
    they are stored as ``name:tag``. Without it such images are loaded untagged (docker does
    the same).
    """
    src = _Source(path)
    try:
        if src.has("manifest.json"):
            return _load_docker(store, src)
        if src.has("index.json") and src.has("oci-layout"):
            return _load_oci(store, src, name)
        raise ArchiveError("neither a docker-archive (no manifest.json) nor an OCI layout "
                           "(no oci-layout + index.json)")
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as e:
        raise ArchiveError(f"cannot read the archive: {e}") from None
    finally:
        src.close()


def _blob_path(digest: str) -> str:
    algorithm, _, encoded = digest.partition(":")
    return f"blobs/{algorithm}/{encoded}"


def _ingest(store: ImageStore, src: _Source, desc: dict, what: str) -> None:
    digest = desc.get("digest", "")
    try:
        validate_digest(digest)
        with src.open(_blob_path(digest)) as f:
            store.content.ingest(f, digest, desc.get("size"))
    except ArchiveError:
        raise
    except ValueError as e:
        raise ArchiveError(f"{what}: {e}") from None


def _load_oci(store: ImageStore, src: _Source, name: str | None) -> LoadResult:
    layout = src.read_json("oci-layout")
    model.validate(layout, model.OCI_LAYOUT_HEADER, "oci-layout")
    index = src.read_json("index.json")
    _validate(index, model.OCI_INDEX, "index.json")
    result = LoadResult()
    for entry in index.get("manifests") or []:
        annotations = entry.get("annotations") or {}
        ref = _name_for(annotations, name)
        manifest_desc = entry
        if entry.get("mediaType") in model.INDEX_TYPES:  # a nested index: pick our platform
            _ingest(store, src, entry, "image index")
            nested = model.parse(store.content.read(entry["digest"]), "nested index")
            manifest_desc = model.select_manifest(nested)
        elif entry.get("mediaType", model.OCI_MANIFEST) not in model.MANIFEST_TYPES:
            continue  # unknown media types are ignored (image-layout.md)
        image = _load_manifest(store, src, manifest_desc, ref)
        result.images.append(image)
        result.messages.append(f"Loaded image: {parse_reference(ref).familiar()}" if ref
                               else f"Loaded image ID: {image.id}")
    if not result.images:
        raise ArchiveError("index.json lists no image manifest")
    return result


def _name_for(annotations: dict, name: str | None) -> str | None:
    """The full reference an OCI layout entry should get, or None (load untagged).

    ``org.opencontainers.image.ref.name`` is usually just a tag; the repository then comes from
    containerd's ``io.containerd.image.name`` or the ``name`` the caller gave. Tools that add tags
    to a layout (umoci, skopeo) copy the other annotations along, so the tag in ref.name wins
    over the tag inside the containerd name.
    """
    full = annotations.get(CONTAINERD_NAME_ANNOTATION)
    ref = annotations.get(REF_NAME_ANNOTATION)
    repo = None
    try:
        if full:
            repo = parse_reference(full).repository
        if ref and ("/" in ref or ":" in ref):  # a whole reference, as in our own store
            named = parse_reference(ref)
            return str(named) if named.tag else None
        if ref and (repo or name):
            return str(parse_reference(f"{repo or name}:{ref}"))
        if full:
            named = parse_reference(full)
            return str(named) if named.tag else None
    except InvalidReference as e:
        raise ArchiveError(f"cannot name the image from its annotations {annotations}: {e}") from None
    return None


def _validate(doc, media_type: str, what: str) -> None:
    try:
        model.validate(doc, media_type, what)
    except model.InvalidDocument as e:
        raise ArchiveError(str(e)) from None


def _load_manifest(store: ImageStore, src: _Source, desc: dict, ref: str | None) -> Image:
    _ingest(store, src, desc, "manifest")
    manifest_bytes = store.content.read(desc["digest"])
    manifest = model.parse(manifest_bytes, "manifest")
    _validate(manifest, model.media_type_of(manifest, desc.get("mediaType")), "manifest")
    _ingest(store, src, manifest["config"], "image config")
    config = model.parse(store.content.read(manifest["config"]["digest"]), "image config")
    _validate(config, model.OCI_CONFIG, "image config")
    for n, layer in enumerate(manifest.get("layers") or [], 1):
        _ingest(store, src, layer, f"layer {n}")
    try:
        return store.add_image(manifest_bytes, ref)
    except ValueError as e:
        raise ArchiveError(str(e)) from None


def _load_docker(store: ImageStore, src: _Source) -> LoadResult:
    entries = src.read_json("manifest.json")
    if not isinstance(entries, list) or not entries:
        raise ArchiveError("manifest.json must be a non-empty list of images")
    # docker >= 25 also writes an OCI index: reuse its manifests (same config digest) so the
    # manifest digest survives the round trip.
    oci_manifests = _oci_manifests_by_config(src)
    result = LoadResult()
    for n, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers"), list):
            raise ArchiveError(f"manifest.json entry {n} needs Config (a path) and Layers (a list)")
        config_bytes = src.open(entry["Config"]).read(64 << 20)
        config = model.parse(config_bytes, entry["Config"])
        _validate(config, model.OCI_CONFIG, f"image config {entry['Config']}")
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(entry["Layers"]):
            raise ArchiveError(f"{entry['Config']} lists {len(diff_ids)} diff_ids but manifest.json "
                               f"entry {n} has {len(entry['Layers'])} layers")
        config_digest = store.content.put(config_bytes)
        image = None
        known = oci_manifests.get(config_digest)
        if known is not None:
            try:
                image = _load_manifest(store, src, known, None)
            except ArchiveError:
                image = None  # fall back to the layer tars manifest.json names
        if image is None:
            layers = [_ingest_layer(store, src, path, diff_id)
                      for path, diff_id in zip(entry["Layers"], diff_ids)]
            manifest = {"schemaVersion": 2, "mediaType": model.OCI_MANIFEST,
                        "config": {"mediaType": model.OCI_CONFIG, "digest": config_digest,
                                   "size": len(config_bytes)},
                        "layers": layers}
            image = store.add_image(_canonical(manifest))
        tags = entry.get("RepoTags") or []
        for tag in tags:
            try:
                store.tag(image, tag)
            except InvalidReference as e:
                raise ArchiveError(f"manifest.json entry {n}: bad RepoTag: {e}") from None
            result.messages.append(f"Loaded image: {parse_reference(tag).familiar()}")
        if not tags:
            result.messages.append(f"Loaded image ID: {image.id}")
        result.images.append(store.resolve(image.id))
    return result


def _oci_manifests_by_config(src: _Source) -> dict[str, dict]:
    if not (src.has("index.json") and src.has("oci-layout")):
        return {}
    out = {}
    try:
        todo = list(src.read_json("index.json").get("manifests") or [])
        while todo:
            desc = todo.pop()
            if not src.has(_blob_path(desc.get("digest", ""))):
                continue
            doc = src.read_json(_blob_path(desc["digest"]))
            if desc.get("mediaType") in model.INDEX_TYPES:
                todo.extend(doc.get("manifests") or [])
            elif desc.get("mediaType") in model.MANIFEST_TYPES:
                out[(doc.get("config") or {}).get("digest")] = desc
    except (ArchiveError, AttributeError, TypeError):
        return {}
    return out


def _ingest_layer(store: ImageStore, src: _Source, path: str, diff_id: str) -> dict:
    """Store one layer tar of a docker-archive and check its DiffID; return its descriptor."""
    h, size = hashlib.sha256(), 0
    with src.open(path) as f, tempfile.NamedTemporaryFile(dir=store.content.blob_dir,
                                                         prefix=".load-") as tmp:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            tmp.write(chunk)
            size += len(chunk)
        tmp.flush()
        got, compression = _diff_id_of(tmp.name, f"layer {path}")
        if got != diff_id:
            raise ArchiveError(f"layer {path}: its content is {got} but the image config says "
                               f"{diff_id}")
        digest = "sha256:" + h.hexdigest()
        with open(tmp.name, "rb") as again:
            store.content.ingest(again, digest, size)
    return {"mediaType": _LAYER_MEDIA_TYPE[compression], "digest": digest, "size": size}


_LAYER_MEDIA_TYPE = {"gzip": model.OCI_LAYER_GZIP, "zstd": model.OCI_LAYER_ZSTD, None: model.OCI_LAYER}


def _diff_id_of(path: str, what: str, check_names: bool = False) -> tuple[str, str | None]:
    """(DiffID, compression) of a layer file: sha256 of its uncompressed tar. With
    ``check_names``, also refuse members whose names climb out of the root."""
    with open(path, "rb") as f:
        magic = f.read(4)
    compression = "gzip" if magic.startswith(GZIP_MAGIC) else "zstd" if magic == ZSTD_MAGIC else None
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            plain = uncompressed_stream(f)
            if not check_names:
                while chunk := plain.read(_CHUNK):
                    h.update(chunk)
            else:
                stream = _Hashing(plain, h)
                with tarfile.open(fileobj=io.BufferedReader(stream, _CHUNK), mode="r|") as tar:
                    count = 0
                    for m in tar:  # every name, not just the first
                        clean_member_name(m.name)
                        count += 1
                    if count == 0:
                        raise ArchiveError(f"{what}: the archive is empty")
                while stream.read(_CHUNK):
                    pass
    except (tarfile.TarError, EOFError, OSError, gzip.BadGzipFile) as e:
        raise ArchiveError(f"{what}: not a (complete) tar archive: {e}") from None
    except LayerError as e:
        raise ArchiveError(f"{what}: {e}") from None
    return "sha256:" + h.hexdigest(), compression


class _Hashing(io.RawIOBase):
    def __init__(self, inner, h):
        self.inner, self.h = inner, h

    def readable(self):
        return True

    def readinto(self, b):
        data = self.inner.read(len(b))
        self.h.update(data)
        b[:len(data)] = data
        return len(data)


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# ============================================================================================
# Writing


def _blob_files(store: ImageStore, images: list[Image]) -> list[str]:
    digests = []
    for image in images:
        for d in [image.manifest_digest, image.id] + [l["digest"] for l in image.manifest["layers"]]:
            if d not in digests:
                digests.append(d)
    return digests


def _index_entries(store: ImageStore, images_and_refs: list[tuple[Image, str | None]]) -> list[dict]:
    entries = []
    for image, ref in images_and_refs:
        desc = {"mediaType": image.manifest.get("mediaType", model.OCI_MANIFEST),
                "digest": image.manifest_digest,
                "size": store.content.size(image.manifest_digest)}
        if ref:
            named = parse_reference(ref)
            desc["annotations"] = {CONTAINERD_NAME_ANNOTATION: str(named),
                                   REF_NAME_ANNOTATION: named.tag or "latest"}
        entries.append(desc)
    return entries


def _select(store: ImageStore, names: list[str]) -> list[tuple[Image, str | None]]:
    """Resolve the names ``save`` was given: a name keeps its tag; an id (or a digest reference)
    saves the image alone, with no tag (dockerd: ``RepoTags`` null for ``docker save <id>``)."""
    out: list[tuple[Image, str | None]] = []
    for name in names:
        image = store.resolve(name)
        refs: list[str | None]
        try:
            named = parse_reference(name)
            refs = [str(named)] if str(named) in image.refs else [None]
        except InvalidReference:
            refs = [None]
        for ref in refs:
            if (image.manifest_digest, ref) not in [(i.manifest_digest, r) for i, r in out]:
                out.append((image, ref))
    return out


def export_layout(store: ImageStore, names: list[str], dest: str) -> list[Image]:
    """Write an OCI image layout directory at ``dest`` (created or added to)."""
    chosen = _select(store, names)
    os.makedirs(os.path.join(dest, "blobs", "sha256"), exist_ok=True)
    for digest in _blob_files(store, [i for i, _ in chosen]):
        target = os.path.join(dest, _blob_path(digest))
        if not os.path.exists(target):
            tmp = target + ".tmp"
            shutil.copyfile(store.content.path(digest), tmp)
            os.rename(tmp, target)
    with open(os.path.join(dest, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    index_path = os.path.join(dest, "index.json")
    old = []
    if os.path.exists(index_path):
        with open(index_path) as f:
            old = json.load(f).get("manifests") or []
    new = _index_entries(store, chosen)
    new_names = {(e.get("annotations") or {}).get(REF_NAME_ANNOTATION) for e in new}
    kept = [e for e in old if (e.get("annotations") or {}).get(REF_NAME_ANNOTATION) not in new_names]
    with open(index_path + ".tmp", "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": model.OCI_INDEX, "manifests": kept + new}, f)
    os.rename(index_path + ".tmp", index_path)
    return [i for i, _ in chosen]


def save(store: ImageStore, names: list[str], out, fmt: str = "docker-archive") -> None:
    """Write ``names`` to the binary file ``out`` as a docker-archive (also a valid OCI layout,
    as docker >= 25 writes it) or an ``oci-archive``."""
    if fmt not in ("docker-archive", "oci-archive"):
        raise ValueError(f"unknown archive format {fmt!r} (docker-archive or oci-archive)")
    chosen = _select(store, names)
    images = []
    for image, _ in chosen:
        if image not in images:
            images.append(image)
    mtime = 0  # docker writes the epoch for the metadata files; it makes archives reproducible
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        def add_bytes(name: str, data: bytes) -> None:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = len(data), mtime, 0o644
            tar.addfile(ti, io.BytesIO(data))

        def add_dir(name: str) -> None:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mtime, ti.mode = tarfile.DIRTYPE, mtime, 0o755
            tar.addfile(ti)

        add_dir("blobs")
        add_dir("blobs/sha256")
        written = set()

        def add_blob(digest: str, path: str | None = None) -> None:
            if digest in written:
                return
            written.add(digest)
            src = path or store.content.path(digest)
            ti = tarfile.TarInfo(_blob_path(digest))
            ti.size, ti.mtime, ti.mode = os.path.getsize(src), mtime, 0o644
            with open(src, "rb") as f:
                tar.addfile(ti, f)

        for digest in _blob_files(store, images):
            add_blob(digest)
        manifest_json, repositories = [], {}
        if fmt == "docker-archive":
            for image in images:
                layer_paths = []
                for layer, diff_id in zip(image.manifest["layers"], image.diff_ids):
                    if layer["digest"] != diff_id:  # compressed: docker-archive layers are plain tars
                        plain = _uncompressed_copy(store, layer["digest"], diff_id)
                        try:
                            add_blob(diff_id, plain)
                        finally:
                            os.unlink(plain)
                    layer_paths.append(_blob_path(diff_id))
                tags = [parse_reference(r).familiar() for i, r in chosen if i is image and r]
                manifest_json.append({"Config": _blob_path(image.id), "RepoTags": tags or None,
                                      "Layers": layer_paths})
                for r in (r for i, r in chosen if i is image and r):
                    named = parse_reference(r)
                    repositories.setdefault(named.familiar_name, {})[named.tag] = \
                        image.diff_ids[-1].split(":", 1)[1]
        index = {"schemaVersion": 2, "mediaType": model.OCI_INDEX,
                 "manifests": _index_entries(store, chosen)}
        add_bytes("index.json", _canonical(index))
        if fmt == "docker-archive":
            add_bytes("manifest.json", _canonical(manifest_json))
            if repositories:
                add_bytes("repositories", _canonical(repositories))
        add_bytes("oci-layout", _canonical({"imageLayoutVersion": "1.0.0"}))


def _uncompressed_copy(store: ImageStore, digest: str, diff_id: str) -> str:
    """Decompress a layer blob into a temporary file in the store (the caller removes it)."""
    h = hashlib.sha256()
    with store.content.open(digest) as f, tempfile.NamedTemporaryFile(
            dir=store.root, prefix=".save-", delete=False) as out:
        try:
            plain = uncompressed_stream(f)
            while chunk := plain.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
        except BaseException:
            os.unlink(out.name)
            raise
    if "sha256:" + h.hexdigest() != diff_id:
        os.unlink(out.name)
        raise LayerError(f"layer {digest} does not decompress to its DiffID {diff_id}")
    return out.name


# ============================================================================================
# import: a root filesystem (tarball or directory) -> a one-layer image


def _tar_directory(directory: str, out) -> None:
    """A deterministic tar of a directory's contents (sorted, numeric owners, no parent dir)."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(directory):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                full = os.path.join(dirpath, name)
                arc = os.path.relpath(full, directory)
                ti = tar.gettarinfo(full, arc)
                ti.uname = ti.gname = ""
                if ti.isreg():
                    with open(full, "rb") as f:
                        tar.addfile(ti, f)
                else:
                    tar.addfile(ti)


def import_rootfs(store: ImageStore, source: str, ref: str | None = None,
                  changes: list[str] | None = None, message: str = "",
                  source_name: str = "-") -> Image:
    """``docker import``: a tarball (plain, gzip or zstd) or a directory -> a one-layer image."""
    from .commit import apply_changes  # one --change parser, docker's semantics (raises ChangeError)
    exec_config = apply_changes({}, changes or [])
    if ref is not None:
        parse_reference(ref)  # refuse a bad name before doing any work
    work = tempfile.mkdtemp(prefix=".import-", dir=store.root)
    try:
        layer_path = source
        if os.path.isdir(source):
            layer_path = os.path.join(work, "layer.tar")
            with open(layer_path, "wb") as f:
                _tar_directory(source, f)
        diff_id, digest, size, compressed = _check_rootfs_tar(layer_path)
        with open(layer_path, "rb") as f:
            store.content.ingest(f, digest, size)
        created = now_rfc3339()
        config = {"architecture": model.host_platform().architecture, "os": "linux",
                  "created": created, "config": exec_config,
                  "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                  "history": [{"created": created, "created_by": f"Imported from {source_name}",
                               **({"comment": message} if message else {})}]}
        if model.host_platform().variant:
            config["variant"] = model.host_platform().variant
        config_bytes = _canonical(config)
        store.content.put(config_bytes)
        manifest = {"schemaVersion": 2, "mediaType": model.OCI_MANIFEST,
                    "config": {"mediaType": model.OCI_CONFIG, "digest": sha256_digest(config_bytes),
                               "size": len(config_bytes)},
                    "layers": [{"mediaType": _LAYER_MEDIA_TYPE[compressed],
                                "digest": digest, "size": size}]}
        return store.add_image(_canonical(manifest), ref)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_rootfs_tar(path: str) -> tuple[str, str, int, str | None]:
    """Read a layer tar: DiffID, blob digest, size, compression; refuse what is not a tar or
    names a path outside the root (so a bad import stores nothing)."""
    h_blob, size = hashlib.sha256(), os.path.getsize(path)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h_blob.update(chunk)
    diff_id, compression = _diff_id_of(path, f"cannot import {path}", check_names=True)
    return diff_id, "sha256:" + h_blob.hexdigest(), size, compression


__all__ = ["ArchiveError", "LoadResult", "export_layout", "import_rootfs", "load",
           "save"]
