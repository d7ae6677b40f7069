"""The daemon's image store, kept in the OCI image-layout format.

What this teaches
-----------------
An image is three kinds of *content-addressed* blobs (OCI image-spec: descriptor.md "Digests",
manifest.md, config.md, layer.md) and one mutable file of names (image-layout.md "index.json"):

    ROOT/oci-layout              {"imageLayoutVersion": "1.0.0"}
    ROOT/index.json              an image index; each tag is a manifest descriptor whose annotation
                                 org.opencontainers.image.ref.name = "docker.io/library/busybox:latest"
    ROOT/blobs/sha256/<hex>      manifests, configs, layers: the file name IS the sha256 of the bytes

Extracted layers are not kept here: they are the snapshotter's committed snapshots, named by
ChainID (unionfs.py, images/unpack.py). A store given a snapshotter extracts each layer into it
once, when an image is added (pull, load, import, commit), before the image gets its index entry.

Three ids to keep apart:

* the *manifest digest* (what a registry serves, ``busybox@sha256:...``);
* the *image id* = the digest of the config blob (what ``docker images`` shows);
* a layer's *DiffID* (digest of its uncompressed tar, listed in the config) and the *ChainID*
  that names "this layer applied on top of those" (config.md "Layer ChainID").

Rules the code follows:

* A blob becomes visible only once its bytes are known to match its name: write a temporary file in
  the blob directory, hash while writing, compare digest and size, fsync, rename. A mismatch raises
  :class:`DigestMismatch` and leaves nothing behind. Two writers of the same blob are harmless:
  both renames put identical bytes in place.
* index.json is replaced atomically (util.atomic_write) under an flock, so readers see the old or
  the new list of tags and concurrent taggers do not lose each other's updates.
* An image whose last tag is removed or moved stays in the index without a name (docker's
  "dangling" ``<none>:<none>`` image) until :meth:`ImageStore.delete`.
* Garbage collection (:meth:`ImageStore.gc`) is mark and sweep: mark every blob reachable from
  index.json (index -> manifests -> config + layers), sweep the rest, all under the index lock so
  no tag appears half-way. A blob being ingested right now for an image not yet added is not
  reachable yet: GC skips blobs held by a :meth:`ImageStore.lease` (a pull holds its blobs until
  the image is recorded; containerd's leases, in memory) and blobs younger than ``grace`` seconds
  (an ingest by another process).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable

from ..util import Leases, atomic_write_json, parse_rfc3339, read_json
from .walk import (DigestMismatch, InvalidDigest, InvalidImage, _DIGEST_RE, check_config,  # noqa: F401
                   check_manifest, chain_ids, parse_json, sha256_digest, validate_digest, walk_image)
# (one copy of each, in walk.py; re-exported for the store's users)
from .reference import InvalidReference, Reference, parse_reference

MEDIA_TYPE_LAYOUT_VERSION = "1.0.0"
MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MEDIA_TYPE_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MEDIA_TYPE_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_MEDIA_TYPE_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_MEDIA_TYPES = (MEDIA_TYPE_MANIFEST, DOCKER_MEDIA_TYPE_MANIFEST)
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

_FULL_ID_RE = re.compile(r"(?:sha256:)?([a-f0-9]{64})")
_ID_PREFIX_RE = re.compile(r"(?:sha256:)?([a-f0-9]{4,64})")
_CHUNK = 1 << 20




class BlobNotFound(LookupError):
    """A blob the caller needs is not in the content store."""



class ImageNotFound(LookupError):
    """``No such image: busybox:latest`` (docker's wording; clients key on "No such image")."""


class AmbiguousImage(ImageNotFound):
    """An id prefix that matches more than one image."""


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ============================================================================================
# Blobs


class ContentStore:
    """``ROOT/blobs/sha256/<hex>``: write-once files named by the sha256 of their bytes."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.blob_dir = os.path.join(self.root, "blobs", "sha256")
        os.makedirs(self.blob_dir, exist_ok=True)

    def path(self, digest: str) -> str:
        return os.path.join(self.blob_dir, validate_digest(digest)[len("sha256:"):])

    def has(self, digest: str) -> bool:
        return os.path.isfile(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} is not in the content store") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} is not in the content store") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def delete(self, digest: str) -> bool:
        try:
            os.unlink(self.path(digest))
            return True
        except FileNotFoundError:
            return False

    def verify(self, digest: str) -> bool:
        """Re-hash a stored blob (to detect on-disk corruption)."""
        h = hashlib.sha256()
        with self.open(digest) as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        return "sha256:" + h.hexdigest() == digest

    def put(self, data: bytes, expected: str | None = None) -> str:
        """Store ``data``; return its digest. With ``expected``, a different digest is an error."""
        digest = sha256_digest(data)
        if expected is not None and validate_digest(expected) != digest:
            raise DigestMismatch(f"digest mismatch: expected {expected}, content is {digest} "
                                 f"({len(data)} bytes)")
        if not self.has(digest):
            self._write_verified([data], digest, len(data))
        return digest

    def ingest(self, src, expected_digest: str, expected_size: int | None = None) -> str:
        """Stream a blob from a binary file object or a path, verifying digest and size."""
        validate_digest(expected_digest)
        if isinstance(src, (str, os.PathLike)):
            with open(src, "rb") as f:
                return self.ingest(f, expected_digest, expected_size)
        if self.has(expected_digest) and (expected_size is None
                                          or self.size(expected_digest) == expected_size):
            return expected_digest
        return self._write_verified(iter(lambda: src.read(_CHUNK), b""), expected_digest,
                                    expected_size)

    def _write_verified(self, chunks: Iterable[bytes], expected: str, size: int | None) -> str:
        tmp = os.path.join(self.blob_dir, f".tmp-{expected[7:19]}-{secrets.token_hex(6)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            with os.fdopen(fd, "wb") as out:
                h, written = hashlib.sha256(), 0
                for chunk in chunks:
                    written += len(chunk)
                    if size is not None and written > size:
                        raise DigestMismatch(f"size mismatch for {expected}: more than the "
                                             f"expected {size} bytes")
                    h.update(chunk)
                    out.write(chunk)
                got = "sha256:" + h.hexdigest()
                if size is not None and written != size:
                    raise DigestMismatch(f"size mismatch for {expected}: expected {size} bytes, "
                                         f"got {written}")
                if got != expected:
                    raise DigestMismatch(f"digest mismatch: expected {expected}, content is {got}")
                out.flush()
                os.fsync(out.fileno())
            os.rename(tmp, self.path(expected))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(self.blob_dir)
        return expected


# ============================================================================================
# Images


@dataclass
class Image:
    """One stored image (one manifest). ``id`` is docker's image id: the config blob's digest."""

    id: str
    manifest_digest: str
    manifest: dict
    config: dict
    refs: list[str] = field(default_factory=list)  # full normalized references
    created: int = 0
    size: int = 0
    diff_ids: list[str] = field(default_factory=list)
    chain_ids: list[str] = field(default_factory=list)

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]

    @property
    def repo_tags(self) -> list[str]:
        """Familiar forms (``busybox:latest``), as docker's API reports RepoTags."""
        return [parse_reference(r).familiar() for r in self.refs]

    @property
    def _exec(self) -> dict:
        return self.config.get("config") or {}

    @property
    def cmd(self) -> list[str] | None:
        return self._exec.get("Cmd")

    @property
    def entrypoint(self) -> list[str] | None:
        return self._exec.get("Entrypoint")

    @property
    def env(self) -> list[str]:
        return list(self._exec.get("Env") or [])

    @property
    def working_dir(self) -> str:
        return self._exec.get("WorkingDir") or ""

    @property
    def user(self) -> str:
        return self._exec.get("User") or ""

    @property
    def labels(self) -> dict:
        return dict(self._exec.get("Labels") or {})

    @property
    def architecture(self) -> str:
        return self.config.get("architecture", "")

    @property
    def os(self) -> str:
        return self.config.get("os", "")


def _ref_name(entry: dict) -> str | None:
    return (entry.get("annotations") or {}).get(REF_NAME_ANNOTATION)


class ImageStore:
    """Images and their names in an OCI image layout at ``root``. With a ``snapshotter``
    (unionfs.Snapshotter), every image added has its layers extracted into it first — and, with
    ``init_layers`` (the daemon's store), docker's init layer committed on top (unpack.py)."""

    def __init__(self, root: str, snapshotter=None, init_layers: bool = False):
        self.root = os.path.abspath(root)
        self.init_layers = init_layers
        os.makedirs(self.root, exist_ok=True)
        self.content = ContentStore(self.root)
        self.snapshotter = snapshotter
        self.index_path = os.path.join(self.root, "index.json")
        self._leases = Leases()  # blobs gc leaves be (this process)
        self._lock_path = os.path.join(self.root, ".index.lock")
        self._parsed: dict[str, tuple[dict, dict]] = {}  # manifest digest -> (manifest, config)
        self._init_layout()

    # ---- index.json --------------------------------------------------------------------

    def _init_layout(self) -> None:
        layout = os.path.join(self.root, "oci-layout")
        if read_json(layout) is None:
            atomic_write_json(layout, {"imageLayoutVersion": MEDIA_TYPE_LAYOUT_VERSION})
        with self._locked():
            if read_json(self.index_path) is None:
                self._write_index([])

    @contextlib.contextmanager
    def _locked(self):
        """An exclusive flock: serialises index updates across threads and processes."""
        with open(self._lock_path, "a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def lease(self, digests: Iterable[str]):
        """Hold blobs against :meth:`gc` while an image that needs them is being assembled (a pull
        found a layer already stored and skipped its download: a concurrent ``rmi`` must not take
        it away before the new manifest names it). A context manager."""
        return self._leases.hold(digests)

    def _entries(self) -> list[dict]:
        index = read_json(self.index_path, default={"manifests": []})
        return list(index.get("manifests") or [])

    def _write_index(self, entries: list[dict]) -> None:
        entries = sorted(entries, key=lambda e: (_ref_name(e) is None, _ref_name(e) or "",
                                                 e["digest"]))
        atomic_write_json(self.index_path, {"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX,
                                            "manifests": entries})

    @contextlib.contextmanager
    def _editing(self):
        """Read-modify-write index.json under the lock: ``with self._editing() as entries: ...``."""
        with self._locked():
            entries = self._entries()
            yield entries
            self._write_index(entries)

    # ---- loading images ----------------------------------------------------------------

    def _parse(self, manifest_digest: str) -> tuple[dict, dict]:
        if manifest_digest not in self._parsed:  # blobs never change, so caching is safe
            walk = walk_image(self.content.read, manifest_digest)  # digests checked, as lab 06 does
            self._parsed[manifest_digest] = (walk.manifest, walk.config)
        return self._parsed[manifest_digest]

    def _image(self, manifest_digest: str, refs: Iterable[str]) -> Image:
        manifest, config = self._parse(manifest_digest)
        diff_ids = list(config["rootfs"]["diff_ids"])
        return Image(
            id=manifest["config"]["digest"], manifest_digest=manifest_digest, manifest=manifest,
            config=config, refs=sorted(refs), created=int(parse_rfc3339(config.get("created") or "")),
            size=sum(int(layer.get("size", 0)) for layer in manifest["layers"]),
            diff_ids=diff_ids, chain_ids=chain_ids(diff_ids))

    def _images_from(self, entries: list[dict]) -> list[Image]:
        refs: dict[str, list[str]] = {}
        for e in entries:
            if e.get("mediaType", MEDIA_TYPE_MANIFEST) not in MANIFEST_MEDIA_TYPES:
                continue  # unknown media types must not be an error (image-layout.md)
            names = refs.setdefault(e["digest"], [])
            if _ref_name(e):
                names.append(_ref_name(e))
        return [self._image(d, names) for d, names in refs.items()]

    def list(self) -> list[Image]:
        """All images, newest first (as ``docker images`` sorts)."""
        return sorted(self._images_from(self._entries()), key=lambda i: (-i.created, i.id))

    # ---- adding and naming -------------------------------------------------------------

    def _check_present(self, desc: dict, what: str) -> None:
        digest = validate_digest(desc.get("digest"))
        if not self.content.has(digest):
            raise BlobNotFound(f"{what} {digest} is not in the content store")
        if "size" in desc and self.content.size(digest) != desc["size"]:
            raise DigestMismatch(f"{what} {digest}: stored size {self.content.size(digest)} "
                                 f"differs from the descriptor's {desc['size']}")

    def add_image(self, manifest_bytes: bytes, ref: str | None = None) -> Image:
        """Store a manifest whose config and layers are already blobs; tag it ``ref`` if given."""
        manifest = parse_json(manifest_bytes, "manifest")
        check_manifest(manifest)
        blobs = [d.get("digest") for d in [manifest["config"], *manifest["layers"]]
                 if isinstance(d, dict)]
        with self.lease([*blobs, sha256_digest(manifest_bytes)]):
            self._check_present(manifest["config"], "image config")
            for n, layer in enumerate(manifest["layers"], 1):
                self._check_present(layer, f"layer {n} of {len(manifest['layers'])}")
            config = parse_json(self.content.read(manifest["config"]["digest"]), "image config")
            check_config(config, manifest)
            named = self._taggable(ref) if ref is not None else None
            digest = self.content.put(manifest_bytes)
            desc = {"mediaType": manifest.get("mediaType", MEDIA_TYPE_MANIFEST), "digest": digest,
                    "size": len(manifest_bytes)}
            if config.get("architecture") and config.get("os"):
                desc["platform"] = {"architecture": config["architecture"], "os": config["os"]}
            with self._unpacked(self._image(digest, [])), self._editing() as entries:
                if named is not None:
                    _set_tag(entries, desc, str(named))
                else:
                    _keep_dangling(entries, desc)
        return self._image(digest, self._refs_of(digest))

    @contextlib.contextmanager
    def _unpacked(self, image: Image):
        """docker's order: the layers are registered (extracted, once per ChainID) before the image
        is recorded; their snapshots are leased until the index names them."""
        if self.snapshotter is None:
            yield
            return
        from .unpack import image_keys, unpack_image   # unpack.py builds on this module
        with self.snapshotter.lease(*image_keys(image)):
            unpack_image(self, self.snapshotter, image)
            yield

    @staticmethod
    def _taggable(ref: str) -> Reference:
        named = parse_reference(ref)
        if named.digest is not None:
            raise InvalidReference(f'refusing to create a tag with a digest reference: "{ref}"')
        return named

    def _refs_of(self, manifest_digest: str) -> list[str]:
        return [_ref_name(e) for e in self._entries()
                if e["digest"] == manifest_digest and _ref_name(e)]

    def tag(self, image: Image | str, ref: str) -> str:
        """Point ``ref`` at ``image`` (moving it from any other image); return the full ref."""
        image = image if isinstance(image, Image) else self.resolve(image)
        named = str(self._taggable(ref))
        with self._editing() as entries:
            current = [e for e in entries if e["digest"] == image.manifest_digest]
            if not current:
                raise ImageNotFound(f"No such image: {image.id}")
            _set_tag(entries, _without_ref(current[0]), named)
        image.refs = sorted(set(image.refs) | {named})
        return named

    def untag(self, ref: str) -> bool:
        """Remove the name ``ref``; the image stays (dangling) if it has no other name."""
        named = str(parse_reference(ref))
        with self._editing() as entries:
            gone = [e for e in entries if _ref_name(e) == named]
            entries[:] = [e for e in entries if _ref_name(e) != named]
            for e in gone:
                _keep_dangling(entries, _without_ref(e))
        return bool(gone)

    def delete(self, image: Image | str) -> list[str]:
        """Remove every index entry of the image id; return the refs that were untagged.
        Blobs and snapshots stay: images/unpack.py ``remove_image`` / ``collect`` sweep them."""
        image = image if isinstance(image, Image) else self.resolve(image)
        with self._editing() as entries:
            doomed = [e for e in entries if e["digest"] == image.manifest_digest
                      or self._config_digest(e) == image.id]
            entries[:] = [e for e in entries if e not in doomed]
        return sorted(_ref_name(e) for e in doomed if _ref_name(e))

    def gc(self, grace: float = 0.0, among: Iterable[str] | None = None) -> "GCResult":
        """Sweep the blobs nothing in index.json reaches and no lease holds (only those in ``among``
        if given: ``rmi`` sweeps just the deleted image's blobs); return what was removed."""
        import time
        result = GCResult()
        with self._locked():
            keep = _reachable(self, self._entries())
            now = time.time()
            names = (sorted(os.listdir(self.content.blob_dir)) if among is None
                     else sorted({validate_digest(d)[7:] for d in among}))
            for name in names:
                path = os.path.join(self.content.blob_dir, name)
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                if name.startswith("."):  # an ingest in progress (or one that died long ago)
                    if now - st.st_mtime > max(grace, 3600):
                        os.unlink(path)
                    continue
                with self._leases.lock:   # a lease taken now either came first or sees it gone
                    if "sha256:" + name in keep or "sha256:" + name in self._leases \
                            or now - st.st_mtime < grace:
                        continue
                    os.unlink(path)
                result.removed.append("sha256:" + name)
                result.reclaimed += st.st_size
            self._parsed = {d: v for d, v in self._parsed.items() if d in keep}
        return result

    def _config_digest(self, entry: dict) -> str | None:
        if entry.get("mediaType", MEDIA_TYPE_MANIFEST) not in MANIFEST_MEDIA_TYPES:
            return None
        try:
            return self._parse(entry["digest"])[0]["config"]["digest"]
        except (BlobNotFound, InvalidImage, KeyError):
            return None

    # ---- finding -----------------------------------------------------------------------

    def resolve(self, name_or_id: str) -> Image:
        """Find an image by reference (``busybox``, ``busybox:latest``, full form, ``name@digest``),
        by full id (``sha256:<hex>`` or bare hex) or by an unambiguous id prefix (>= 4 hex digits).
        Order as docker's GetImage: full id, then name, then id prefix."""
        s = name_or_id
        full = _FULL_ID_RE.fullmatch(s)
        if full:
            image_id = "sha256:" + full.group(1)
            found = [i for i in self._images_from(self._entries()) if i.id == image_id]
            if found:
                return found[0]
            raise ImageNotFound(f"No such image: {image_id}")
        named = None
        try:
            named = parse_reference(s)
        except InvalidReference:
            if not _ID_PREFIX_RE.fullmatch(s):
                raise
        if named is not None:
            found = self._by_reference(named)
            if found is not None:
                return found
        prefix = _ID_PREFIX_RE.fullmatch(s)
        if prefix:
            found = self._by_id_prefix(prefix.group(1), s)
            if found is not None:
                return found
        raise ImageNotFound(f"No such image: {named.familiar() if named else s}")

    def _by_reference(self, named: Reference) -> Image | None:
        entries = self._entries()
        if named.digest is not None:  # name@digest: that manifest, known under that repository...
            for image in self._images_from([e for e in entries if e["digest"] == named.digest]):
                # ...or under no name at all: what a pull by digest stores (the digest names the
                # content exactly; this store keeps no separate repository-digest records).
                if not image.refs or any(parse_reference(r).repository == named.repository for r in image.refs):
                    return image
            return None
        wanted = str(named)
        hits = [e for e in entries if _ref_name(e) == wanted]
        if not hits:
            return None
        return self._image(hits[0]["digest"], self._refs_in(entries, hits[0]["digest"]))

    @staticmethod
    def _refs_in(entries: list[dict], digest: str) -> list[str]:
        return [_ref_name(e) for e in entries if e["digest"] == digest and _ref_name(e)]

    def _by_id_prefix(self, hex_prefix: str, shown: str) -> Image | None:
        matches = [i for i in self._images_from(self._entries())
                   if i.id.split(":", 1)[1].startswith(hex_prefix)]
        ids = {i.id for i in matches}
        if len(ids) > 1:
            raise AmbiguousImage(f"No such image: {shown} (the prefix matches {len(ids)} images)")
        return sorted(matches, key=lambda i: i.manifest_digest)[0] if matches else None


@dataclass
class GCResult:
    """What :meth:`ImageStore.gc` removed: blob digests and the bytes they took."""

    removed: list[str] = field(default_factory=list)
    reclaimed: int = 0


def _reachable(store: "ImageStore", entries: list[dict]) -> set[str]:
    """Mark: every digest reachable from the index entries (nested indexes included)."""
    marked: set[str] = set()
    todo = [e.get("digest") for e in entries]
    while todo:
        digest = todo.pop()
        if not isinstance(digest, str) or digest in marked or not _DIGEST_RE.fullmatch(digest):
            continue
        marked.add(digest)
        if not store.content.has(digest) or store.content.size(digest) > (16 << 20):
            continue  # layers are big and never point anywhere: do not parse them
        try:
            doc = json.loads(store.content.read(digest))
        except (ValueError, UnicodeDecodeError):
            continue
        if not isinstance(doc, dict):
            continue
        refs = [d for d in (doc.get("manifests") or []) + (doc.get("layers") or [])
                if isinstance(d, dict)]
        refs += [doc[k] for k in ("config", "subject") if isinstance(doc.get(k), dict)]
        todo.extend(d.get("digest") for d in refs)
    return marked


def _without_ref(entry: dict) -> dict:
    desc = {k: v for k, v in entry.items() if k != "annotations"}
    other = {k: v for k, v in (entry.get("annotations") or {}).items() if k != REF_NAME_ANNOTATION}
    if other:
        desc["annotations"] = other
    return desc


def _keep_dangling(entries: list[dict], desc: dict) -> None:
    """Make sure the manifest still has an entry (an unnamed one if it has no names left)."""
    if not any(e["digest"] == desc["digest"] for e in entries):
        entries.append(_without_ref(desc))


def _set_tag(entries: list[dict], desc: dict, ref: str) -> None:
    moved_from = [e for e in entries if _ref_name(e) == ref]
    entries[:] = [e for e in entries if _ref_name(e) != ref
                  and not (e["digest"] == desc["digest"] and _ref_name(e) is None)]
    named = _without_ref(desc)
    named["annotations"] = {**named.get("annotations", {}), REF_NAME_ANNOTATION: ref}
    entries.append(named)
    for old in moved_from:
        _keep_dangling(entries, old)
