"""Pull and push over the OCI distribution API (distribution-spec/spec.md).

What this teaches
-----------------
A pull is a handful of HTTP requests (see notebooks/07-registry.ipynb for the real conversation):

1. ``GET /v2/`` -- is this a registry, and how do I authenticate? (transport.py, auth.py)
2. ``GET /v2/<name>/manifests/<tag or digest>`` with an ``Accept`` header listing every manifest
   type we understand. A tag may answer with an *index* (OCI) / *manifest list* (Docker): one
   manifest per platform; we pick ours (``linux/amd64``) and fetch that manifest by digest.
   The bytes are verified against the digest we asked for (or ``Docker-Content-Digest``).
3. ``GET /v2/<name>/blobs/<digest>`` for the config and each layer we do not have yet, in
   parallel (docker: 3 at a time). Each blob streams into the content store, hashed as it arrives;
   it becomes visible only if the digest matches (store.ContentStore.ingest). With a snapshotter
   behind the store, a layer whose parent is already extracted is extracted *as it downloads*
   (images/unpack.py stream_layer), committed only once digest and DiffID match. A dropped connection
   resumes with ``Range: bytes=<received>-`` (a 206 answer), or starts over if the registry ignores it.
4. Record the manifest under its name (ImageStore.add_image).

A push runs the other way (spec.md "Pushing blobs", "Pushing Manifests"):

1. for each blob: ``HEAD /v2/<name>/blobs/<digest>`` -- already there? skip it;
2. else try a *cross-repository mount*: ``POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<other>``
   (201 = done, no bytes sent; 202 = the registry declined and opened an upload session instead);
3. else upload: ``POST .../uploads/`` opens a session (202 + ``Location``), then either one
   ``PUT <location>?digest=<d>`` with the whole blob (monolithic) or several
   ``PATCH <location>`` with ``Content-Range: <start>-<end>`` followed by a closing
   ``PUT <location>?digest=<d>`` (chunked; every answer carries the next Location);
4. ``PUT /v2/<name>/manifests/<tag>`` with the manifest's own Content-Type. The registry answers
   with ``Docker-Content-Digest``: what docker prints as ``<tag>: digest: sha256:... size: N``.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import http.client
import json
import os
import threading
from dataclasses import dataclass
from typing import Callable

from ..images.reference import parse_reference
from ..images.store import (DigestMismatch, Image, ImageStore, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST,
                            DOCKER_MEDIA_TYPE_MANIFEST, chain_ids, sha256_digest, validate_digest)
from ..images.unpack import stream_layer
from .auth import Credentials
from .transport import RegistryError, Transport

DOCKER_MEDIA_TYPE_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_MEDIA_TYPES = (MEDIA_TYPE_INDEX, DOCKER_MEDIA_TYPE_LIST)
ACCEPT = ", ".join([MEDIA_TYPE_MANIFEST, DOCKER_MEDIA_TYPE_MANIFEST, MEDIA_TYPE_INDEX, DOCKER_MEDIA_TYPE_LIST])
CHUNK = 1 << 20
DOWNLOAD_WORKERS = 3  # dockerd's max-concurrent-downloads
UPLOAD_WORKERS = 5  # dockerd's max-concurrent-uploads
MAX_RESUMES = 5
MONOLITHIC_LIMIT = 32 << 20  # blobs bigger than this go up in chunks

# progress(event, id, current, total); events: "resolve", "wait", "exists", "download", "verify",
# "complete", "push", "pushed", "mounted"
Progress = Callable[[str, str, int, int], None]


def _quiet(event: str, ident: str, current: int = 0, total: int = 0) -> None:
    pass


def this_platform() -> dict:
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)
    return {"os": "linux", "architecture": arch, **({"variant": "v8"} if arch == "arm64" else {})}


def parse_platform(s: str | None) -> dict:
    """``linux/arm64/v8`` -> {"os": "linux", "architecture": "arm64", "variant": "v8"}."""
    if not s:
        return this_platform()
    parts = s.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"invalid platform {s!r}: want os/arch[/variant]")
    return {"os": parts[0], "architecture": parts[1], **({"variant": parts[2]} if len(parts) == 3 else {})}


def select_platform(index: dict, want: dict) -> dict:
    """image-index.md: the first manifest whose platform matches os, architecture (and variant)."""
    for m in index.get("manifests") or []:
        p = m.get("platform") or {}
        if p.get("os") == want["os"] and p.get("architecture") == want["architecture"] and (
                "variant" not in want or p.get("variant") in (None, want["variant"])):
            return m
    have = ", ".join("/".join(filter(None, [(m.get("platform") or {}).get(k) for k in ("os", "architecture", "variant")]))
                     for m in index.get("manifests") or [])
    want_s = "/".join(filter(None, [want.get("os"), want.get("architecture"), want.get("variant")]))
    raise RegistryError(f"no matching manifest for {want_s} in the manifest list entries (has: {have or 'none'})")


def digest_as(like: str, data: bytes) -> str:
    """The digest of ``data`` in the algorithm ``like`` uses (the OCI-registered sha256 and sha512)."""
    alg = like.partition(":")[0]
    if alg not in ("sha256", "sha512"):
        raise RegistryError(f"unsupported digest algorithm in {like!r} (sha256 and sha512 are)")
    return f"{alg}:{hashlib.new(alg, data).hexdigest()}"


@dataclass
class PullResult:
    image: Image
    digest: str  # the manifest digest (of the platform manifest)
    downloaded: list[str]  # blob digests fetched
    skipped: list[str]  # blob digests already present


class _BlobReader:
    """A file-like view of a blob download that resumes after a dropped connection."""

    def __init__(self, reg: "Registry", repo: str, desc: dict, progress: Progress, cancel: threading.Event):
        self.reg, self.repo, self.desc, self.progress, self.cancel = reg, repo, desc, progress, cancel
        self.digest, self.size = desc["digest"], int(desc.get("size", -1))
        self.offset, self.resumes = 0, 0
        self.resp: http.client.HTTPResponse | None = None
        self.hash = hashlib.sha256()

    def _open(self) -> None:
        headers = {"Range": f"bytes={self.offset}-"} if self.offset else {}
        r = self.reg.transport.request("GET", f"/v2/{self.repo}/blobs/{self.digest}", self.reg.scopes(self.repo),
                                       headers, ok=(200, 206), what=f"blob {self.digest[:19]}")
        if self.offset and r.status == 200:  # the registry ignored Range: skip what we already have
            left = self.offset
            while left:
                got = r.read(min(left, CHUNK))
                if not got:
                    raise RegistryError(f"blob {self.digest}: connection dropped again while resuming")
                left -= len(got)
        self.resp = r

    def read(self, n: int = CHUNK) -> bytes:
        while True:
            if self.cancel.is_set():
                raise RegistryError("download cancelled")
            try:
                if self.resp is None:
                    self._open()
                data = self.resp.read(n)
            except (OSError, http.client.HTTPException) as e:
                data, why = b"", str(e)
            else:
                why = "connection closed early"
            if data:
                self.offset += len(data)
                self.progress("download", self.digest, self.offset, self.size)
                return data
            if self.size < 0 or self.offset >= self.size:
                return b""
            # Fewer bytes than announced: the connection dropped. Resume on a fresh one.
            self.resp.close() if self.resp else None
            self.resp = None
            self.reg.transport.close()
            self.resumes += 1
            if self.resumes > MAX_RESUMES:
                raise RegistryError(f"blob {self.digest}: {why} at {self.offset} of {self.size} bytes, "
                                    f"gave up after {MAX_RESUMES} resumes")


class _ProgressFile:
    """A blob file that reports how much of it http.client has read (for docker's "Pushing" bars)."""

    def __init__(self, f, report: Callable[[int], None]):
        self.f, self.report, self.last = f, report, 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        pos = self.f.tell()
        if data and pos - self.last >= CHUNK or not data:
            self.last = pos
            self.report(pos)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.f.seek(pos, whence)

    def tell(self) -> int:
        return self.f.tell()


class Registry:
    """A client for one registry host. ``Registry("127.0.0.1:5000", Credentials("u", "p"))``."""

    def __init__(self, host: str, credentials: Credentials | None = None, **transport_options):
        self.host = host
        self.transport = Transport(host, credentials, **transport_options)

    @staticmethod
    def scopes(repo: str, push: bool = False, mount_from: str | None = None) -> tuple[str, ...]:
        out = (f"repository:{repo}:pull,push" if push else f"repository:{repo}:pull",)
        return out + ((f"repository:{mount_from}:pull",) if mount_from else ())

    def check_login(self) -> None:
        """What ``docker login`` verifies: ``GET /v2/`` succeeds with these credentials."""
        self.transport.ping()
        if self.transport.challenge is None:
            return
        if self.transport.challenge[0] == "bearer":
            self.transport._fetch_token(self.transport.challenge[1], ())
            return
        r = self.transport.request("GET", "/v2/", what="login")
        r.read()

    # ---- manifests ---------------------------------------------------------------------------------
    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index, verified."""
        r = self.transport.request("GET", f"/v2/{repo}/manifests/{reference}", self.scopes(repo),
                                   {"Accept": ACCEPT}, what=f"manifest for {self.host}/{repo}:{reference}")
        data = r.read()
        digest = sha256_digest(data)  # the store's name for it
        want = reference if ":" in reference else r.getheader("Docker-Content-Digest")  # a tag has no colon
        if want and want != (got := digest_as(want, data)):
            raise DigestMismatch(f"manifest {repo}@{want}: the registry sent content whose digest is {got}")
        media = (r.getheader("Content-Type") or "").split(";")[0].strip()
        try:
            media = json.loads(data).get("mediaType") or media
        except (ValueError, AttributeError):
            raise RegistryError(f"manifest for {repo}:{reference} is not JSON") from None
        return data, media, digest

    def describe(self, repo: str, reference: str) -> dict:
        """What ``GET /distribution/NAME/json`` answers: the descriptor the name resolves to, and the
        platforms it offers (an index lists them; a single manifest's config says its own)."""
        data, media, digest = self.get_manifest(repo, reference)
        doc = json.loads(data)
        if media in INDEX_MEDIA_TYPES:
            platforms = [m["platform"] for m in doc.get("manifests") or [] if isinstance(m.get("platform"), dict)]
        else:
            reader = _BlobReader(self, repo, doc["config"], _quiet, threading.Event())
            cfg = json.loads(b"".join(iter(reader.read, b"")))
            platforms = [{k: cfg[k] for k in ("architecture", "os", "variant") if cfg.get(k)}]
        return {"Descriptor": {"mediaType": media, "digest": digest, "size": len(data)}, "Platforms": platforms}

    def resolve(self, repo: str, reference: str, platform: dict | None = None, progress: Progress = _quiet
                ) -> tuple[bytes, dict, str]:
        """Tag/digest -> this platform's image manifest (following an index)."""
        data, media, digest = self.get_manifest(repo, reference)
        if media in INDEX_MEDIA_TYPES:
            chosen = select_platform(json.loads(data), platform or this_platform())
            progress("resolve", chosen["digest"], 0, 0)
            data, media, digest = self.get_manifest(repo, chosen["digest"])
        manifest = json.loads(data)
        if media not in (MEDIA_TYPE_MANIFEST, DOCKER_MEDIA_TYPE_MANIFEST) and "layers" not in manifest:
            raise RegistryError(f"{repo}:{reference}: unsupported manifest type {media!r}")
        return data, manifest, digest

    # ---- pull -----------------------------------------------------------------------------------------
    def pull(self, repo: str, reference: str, store: ImageStore, tag_as: str | None = None,
             platform: dict | None = None, progress: Progress = _quiet) -> PullResult:
        data, manifest, digest = self.resolve(repo, reference, platform, progress)
        blobs = [manifest["config"], *manifest["layers"]]
        for b in blobs:
            validate_digest(b["digest"])
        cancel = threading.Event()
        # Leased before looking and until the manifest is recorded: blobs found already stored (a
        # concurrent rmi must not sweep them) and the layers extracted on the way (images/unpack.py).
        with store.lease(b["digest"] for b in blobs):
            missing = [b for b in blobs if not (store.content.has(b["digest"])
                                               and store.content.size(b["digest"]) == b.get("size"))]
            for b in blobs:
                progress("exists" if b not in missing else "wait", b["digest"], 0, int(b.get("size", 0)))
            if manifest["config"] in missing:   # first: its DiffIDs name the snapshots to extract into
                self._download(repo, manifest["config"], store, progress, cancel)
            plan = self._plan_layers(store, manifest)
            snap = store.snapshotter
            with snap.lease(*(c for _, c, _ in plan.values())) if snap else contextlib.nullcontext():
                with concurrent.futures.ThreadPoolExecutor(DOWNLOAD_WORKERS) as pool:
                    futures = [pool.submit(self._download, repo, b, store, progress, cancel,
                                           plan.get(b["digest"]))
                               for b in missing if b is not manifest["config"]]
                    try:
                        for f in concurrent.futures.as_completed(futures):
                            f.result()
                    except BaseException:
                        cancel.set()  # stop the other downloads; ingest removes their partial files
                        raise
                image = store.add_image(data, tag_as)
        return PullResult(image, digest, [b["digest"] for b in missing],
                          [b["digest"] for b in blobs if b not in missing])

    @staticmethod
    def _plan_layers(store: ImageStore, manifest: dict) -> dict:
        """layer digest -> (DiffID, ChainID, parent ChainID): where each layer is extracted while it
        downloads, if the store has a snapshotter and the config is already stored."""
        if store.snapshotter is None or not store.content.has(manifest["config"]["digest"]):
            return {}
        try:
            diff_ids = list(json.loads(store.content.read(manifest["config"]["digest"]))["rootfs"]["diff_ids"])
        except (ValueError, KeyError, TypeError):
            return {}  # add_image reports the bad config
        chains = chain_ids(diff_ids)
        return {layer["digest"]: (diff_id, chain, chains[n - 1] if n else None)
                for n, (layer, diff_id, chain) in enumerate(zip(manifest["layers"], diff_ids, chains))}

    def _download(self, repo: str, desc: dict, store: ImageStore, progress: Progress,
                  cancel: threading.Event, layer: tuple | None = None) -> None:
        reader = _BlobReader(self, repo, desc, progress, cancel)
        try:
            if layer is not None:   # download and extract in one pass (verified before visible)
                stream_layer(store, store.snapshotter, reader, desc, *layer)
            else:
                store.content.ingest(reader, desc["digest"], desc.get("size"))
        except DigestMismatch as e:
            raise DigestMismatch(f"{self.host}/{repo}: {e}; nothing was stored") from None
        finally:
            if reader.resp is not None:
                reader.resp.close()
        progress("complete", desc["digest"], reader.offset, reader.size)

    # ---- push -----------------------------------------------------------------------------------------
    def push(self, repo: str, tag: str, store: ImageStore, image: Image, progress: Progress = _quiet,
             chunk_size: int = MONOLITHIC_LIMIT) -> tuple[str, int]:
        """Upload ``image`` as ``repo:tag``; return (manifest digest, manifest size)."""
        manifest_bytes = store.content.read(image.manifest_digest)
        manifest = json.loads(manifest_bytes)
        sources = [parse_reference(r).path for r in image.refs
                   if parse_reference(r).domain == self.host and parse_reference(r).path != repo]
        blobs = [*manifest["layers"], manifest["config"]]
        with concurrent.futures.ThreadPoolExecutor(UPLOAD_WORKERS) as pool:
            for f in [pool.submit(self._push_blob, repo, b, store, sources, progress, chunk_size) for b in blobs]:
                f.result()
        media = manifest.get("mediaType") or MEDIA_TYPE_MANIFEST
        r = self.transport.request("PUT", f"/v2/{repo}/manifests/{tag}", self.scopes(repo, push=True),
                                   {"Content-Type": media}, manifest_bytes, ok=(201,),
                                   what=f"manifest upload to {self.host}/{repo}:{tag}")
        r.read()
        echoed = r.getheader("Docker-Content-Digest")  # a sha512 registry may answer in sha512
        if echoed and echoed != digest_as(echoed, manifest_bytes):
            raise DigestMismatch(f"the registry stored the manifest as {echoed}, we sent {image.manifest_digest}")
        return image.manifest_digest, len(manifest_bytes)

    def blob_exists(self, repo: str, digest: str) -> bool:
        try:
            r = self.transport.request("HEAD", f"/v2/{repo}/blobs/{digest}", self.scopes(repo, push=True),
                                       ok=(200,), what=f"HEAD blob {digest[:19]}")
            r.read()
            return True
        except RegistryError as e:
            if e.status == 404:
                return False
            raise

    def _push_blob(self, repo: str, desc: dict, store: ImageStore, sources: list[str], progress: Progress,
                   chunk_size: int) -> str:
        digest, size = desc["digest"], int(desc["size"])
        if self.blob_exists(repo, digest):
            progress("exists", digest, size, size)
            return "exists"
        for source in sources:
            r = self.transport.request("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={source}",
                                       self.scopes(repo, True, source), ok=(201, 202), what="blob mount")
            r.read()
            if r.status == 201:
                progress("mounted", digest, size, size)
                return "mounted from " + source
            location = r.getheader("Location")  # declined: an upload session was opened; use it
            break
        else:
            r = self.transport.request("POST", f"/v2/{repo}/blobs/uploads/", self.scopes(repo, push=True),
                                       ok=(202,), what="upload start")
            r.read()
            location = r.getheader("Location")
        if not location:
            raise RegistryError(f"{self.host}: upload session without a Location header")
        with store.content.open(digest) as f:
            if size <= chunk_size:
                self._put(location, digest, _ProgressFile(f, lambda n: progress("push", digest, n, size)), size, repo)
            else:
                offset = 0
                while offset < size:
                    chunk = f.read(chunk_size)
                    r = self.transport.request(
                        "PATCH", location, self.scopes(repo, push=True),
                        {"Content-Type": "application/octet-stream", "Content-Length": str(len(chunk)),
                         "Content-Range": f"{offset}-{offset + len(chunk) - 1}"}, chunk, ok=(202,),
                        what=f"chunk upload of {digest[:19]}")
                    r.read()
                    offset += len(chunk)
                    location = r.getheader("Location") or location
                    progress("push", digest, offset, size)
                self._put(location, digest, None, 0, repo)
        progress("pushed", digest, size, size)
        return "pushed"

    def _put(self, location: str, digest: str, body, size: int, repo: str | None = None) -> None:
        sep = "&" if "?" in location else "?"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        scopes = self.scopes(repo or location.split("/v2/", 1)[-1].split("/blobs/", 1)[0], push=True)
        r = self.transport.request("PUT", f"{location}{sep}digest={digest}", scopes, headers, body,
                                   ok=(201,), what=f"blob upload of {digest[:19]}")
        r.read()
