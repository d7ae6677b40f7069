"""A small registry server: ``minidocker registry serve [--port] [--root] [--htpasswd]``.

What this teaches
-----------------
The server side of the OCI distribution API (distribution-spec/spec.md), on the same HTTP/1.1
package as minidockerd (minidocker/http). Storage on disk, content-addressed:

    ROOT/blobs/<alg>/<hex>                      every blob once, under its sha256 or sha512 digest
    ROOT/repositories/<name>/_layers/<key>      "this repository may serve that blob" (an empty file)
    ROOT/repositories/<name>/_manifests/<key>   the manifests pushed to the repository
    ROOT/repositories/<name>/_tags/<tag>        a tag: the manifest digest it points at
    ROOT/_uploads/<uuid>                        an upload session's bytes so far (+ .repo)

(``<key>`` is the hex of a sha256 digest, ``sha512-<hex>`` for a sha512 one.) Uploads stream to
disk as they arrive (the HTTP layer spools request bodies to files); closing an upload hashes the
file and *renames* it into ``blobs/``, so a blob is written once, never held in memory. This is why
the registry keeps its own small blob store instead of images.store.ContentStore (sha256 only, and
it copies what it ingests): a registry must accept every digest algorithm the spec registers.

Endpoints (spec.md "Endpoints" table): end-1 ``GET /v2/``; end-2/3 ``GET|HEAD`` blobs and
manifests; end-4a/4b ``POST`` uploads (session, or monolithic with ``?digest=``); end-5
``PATCH`` chunks with ``Content-Range``; end-6 ``PUT ?digest=`` closes a session; end-7 ``PUT``
manifest; end-8a/8b tags list with ``n``/``last`` pagination and a ``Link`` header; end-9
``DELETE`` manifest; end-10 ``DELETE`` blob; end-11 ``POST ?mount=&from=`` cross-repository mount;
end-12 ``GET /v2/<name>/referrers/<digest>`` (OCI 1.1: manifests whose ``subject`` is that digest).
Every blob is verified against its digest before it becomes visible; a manifest is accepted only
if the blobs (or, for an index, the manifests) it references are in the repository.

Digests (image-spec descriptor.md "Digests"): ``sha256:<64 hex>`` and ``sha512:<128 hex>``; the
``Docker-Content-Digest`` answer uses the algorithm the client used. A digest that is well-formed
but names nothing here (another algorithm, a length no algorithm has) is 404 on GET/HEAD/DELETE
and 400 DIGEST_INVALID where content must be verified.

Authentication: ``--htpasswd FILE`` (``htpasswd -Bbn user pass``; bcrypt, checked with the ``bcrypt``
library -- Python's ``crypt`` module is deprecated and gone in 3.13) turns on Basic auth; without it
the registry is open (fine on 127.0.0.1 in a classroom). Like distribution, only bcrypt entries count.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import logging
import os
import re
import secrets

from .. import http
from ..util import atomic_write

log = logging.getLogger("minidocker.registry")

NAME = r"(?P<name>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}
STREAM_ABOVE = 1 << 20  # blobs bigger than this are sent in 1 MiB pieces
ALGORITHMS = {"sha256": 64, "sha512": 128}  # the registered algorithms and their hex lengths
# The digest grammar (image-spec descriptor.md): algorithm ":" encoded.
DIGEST_GRAMMAR = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
# Layers a registry need not hold: their descriptors carry `urls` to fetch them from elsewhere.
NONDISTRIBUTABLE = ("application/vnd.oci.image.layer.nondistributable.v1.tar",
                    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")


class RegistryFailure(Exception):
    """An error in distribution's shape: HTTP status + code (BLOB_UNKNOWN, ...) + message."""

    def __init__(self, status: int, code: str, message: str, detail=None):
        super().__init__(message)
        self.status, self.code, self.message, self.detail = status, code, message, detail

    def response(self) -> http.Response:
        body = {"errors": [{"code": self.code, "message": self.message, "detail": self.detail}]}
        headers = dict(HEADERS)
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="minidocker-registry"'
        return http.json_response(body, self.status, headers)


def check_htpasswd(path: str, user: str, password: str) -> bool:
    """Look ``user`` up in an htpasswd file; only bcrypt entries ($2y$, $2b$, $2a$) count, as in distribution."""
    import bcrypt  # imported here: only a registry with --htpasswd needs it
    with open(path) as f:
        for line in f:
            name, _, hashed = line.strip().partition(":")
            if name == user and hashed:
                if not hashed.startswith(("$2y$", "$2b$", "$2a$")):
                    log.warning("htpasswd entry for %r is not bcrypt (htpasswd -B); refused", user)
                    return False
                try:
                    return bcrypt.checkpw(password.encode(), hashed.encode())
                except ValueError:  # a malformed hash
                    return False
    return False


def parse_digest(s: str) -> tuple[str, str] | None:
    """``sha256:<hex>`` -> ("sha256", hex) when it is a digest we can store; None when it is
    well-formed by the grammar but not one of ours; DIGEST_INVALID (400) when not a digest at all."""
    if not isinstance(s, str) or not DIGEST_GRAMMAR.fullmatch(s):
        raise RegistryFailure(400, "DIGEST_INVALID", f"invalid digest {s!r}")
    alg, _, hexd = s.partition(":")
    if ALGORITHMS.get(alg) != len(hexd) or not re.fullmatch(r"[a-f0-9]+", hexd):
        return None
    return alg, hexd


def digest_key(digest: str) -> str:
    """The file name that stands for a digest in a repository's links."""
    alg, _, hexd = digest.partition(":")
    return hexd if alg == "sha256" else f"{alg}-{hexd}"


def key_digest(key: str) -> str:
    alg, sep, hexd = key.partition("-")
    return f"{alg}:{hexd}" if sep else f"sha256:{key}"


class Blobs:
    """``ROOT/blobs/<alg>/<hex>``: write-once files named by their digest (sha256 or sha512)."""

    def __init__(self, root: str):
        self.root = os.path.join(root, "blobs")
        for alg in ALGORITHMS:
            os.makedirs(os.path.join(self.root, alg), exist_ok=True)

    def path(self, digest: str) -> str:
        alg, _, hexd = digest.partition(":")
        return os.path.join(self.root, alg, hexd)

    def has(self, digest: str) -> bool:
        return os.path.isfile(self.path(digest))

    def size(self, digest: str) -> int:
        return os.path.getsize(self.path(digest))

    def read(self, digest: str) -> bytes:
        with open(self.path(digest), "rb") as f:
            return f.read()

    def put(self, data: bytes, digest: str) -> None:
        if not self.has(digest):
            atomic_write(self.path(digest), data)

    def ingest(self, path: str, digest: str) -> None:
        """Hash the file at ``path``; if it has ``digest``, rename it into place (else DigestMismatch)."""
        alg = digest.partition(":")[0]
        h = hashlib.new(alg)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
            got = f"{alg}:{h.hexdigest()}"
            if got != digest:
                raise DigestMismatch(f"digest mismatch: expected {digest}, content is {got}")
            os.fsync(f.fileno())  # on disk before it becomes visible under its name
        os.rename(path, self.path(digest))  # a blob already there has the same bytes: replacing is harmless


class DigestMismatch(ValueError):
    pass


class Storage:
    """The on-disk layout of the module docstring."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.blobs = Blobs(self.root)
        self.uploads = os.path.join(self.root, "_uploads")
        os.makedirs(self.uploads, exist_ok=True)

    def repo(self, name: str, part: str) -> str:
        return os.path.join(self.root, "repositories", name, part)

    def link(self, name: str, part: str, key: str, value: str = "") -> None:
        os.makedirs(self.repo(name, part), exist_ok=True)
        atomic_write(os.path.join(self.repo(name, part), key), value, fsync=False)

    def linked(self, name: str, part: str, key: str) -> bool:
        return os.path.isfile(os.path.join(self.repo(name, part), key))

    def unlink(self, name: str, part: str, key: str) -> bool:
        try:
            os.unlink(os.path.join(self.repo(name, part), key))
            return True
        except FileNotFoundError:
            return False

    def has_blob(self, name: str, digest: str) -> bool:
        return self.linked(name, "_layers", digest_key(digest)) and self.blobs.has(digest)

    def tags(self, name: str) -> list[str] | None:
        try:
            return sorted(os.listdir(self.repo(name, "_tags")))
        except FileNotFoundError:
            return [] if os.path.isdir(self.repo(name, "_manifests")) else None

    def tag_digest(self, name: str, tag: str) -> str | None:
        try:
            with open(os.path.join(self.repo(name, "_tags"), tag)) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None


class RegistryApp:
    def __init__(self, root: str, htpasswd: str | None = None):
        self.store = Storage(root)
        self.htpasswd = htpasswd

    def register(self, s: http.Server) -> None:
        V = r"/(?P<name>.+?)"
        routes = [
            ("GET", r"/", self.base),
            ("GET", "/" + NAME + r"/tags/list", self.tags_list),
            ("GET", "/" + NAME + r"/manifests/(?P<ref>[^/]+)", self.manifest_get),
            ("PUT", "/" + NAME + r"/manifests/(?P<ref>[^/]+)", self.manifest_put),
            ("DELETE", "/" + NAME + r"/manifests/(?P<ref>[^/]+)", self.manifest_delete),
            ("GET", "/" + NAME + r"/blobs/uploads/(?P<uuid>[a-f0-9]+)", self.upload_status),
            ("PATCH", "/" + NAME + r"/blobs/uploads/(?P<uuid>[a-f0-9]+)", self.upload_patch),
            ("PUT", "/" + NAME + r"/blobs/uploads/(?P<uuid>[a-f0-9]+)", self.upload_put),
            ("DELETE", "/" + NAME + r"/blobs/uploads/(?P<uuid>[a-f0-9]+)", self.upload_cancel),
            ("POST", "/" + NAME + r"/blobs/uploads/?", self.upload_start),
            ("GET", "/" + NAME + r"/blobs/(?P<digest>[^/]+)", self.blob_get),
            ("DELETE", "/" + NAME + r"/blobs/(?P<digest>[^/]+)", self.blob_delete),
            ("GET", "/" + NAME + r"/referrers/(?P<digest>[^/]+)", self.referrers),
            ("GET", V + r"/(?:manifests|blobs|tags)/.*", self.bad_name),
        ]
        for method, pattern, handler in routes:
            s.route(method, pattern, self._wrap(handler))

    def _wrap(self, fn):
        async def handler(req):
            try:
                if req.version != "2":
                    raise RegistryFailure(404, "NOT_FOUND", "not a /v2/ path")
                self._authenticate(req)
                return await fn(req)
            except RegistryFailure as e:
                return e.response()
        handler.__name__ = fn.__name__
        return handler

    def _authenticate(self, req) -> None:
        if not self.htpasswd:
            return
        scheme, _, value = (req.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                user = password = ""
            if user and check_htpasswd(self.htpasswd, user, password):
                return
        raise RegistryFailure(401, "UNAUTHORIZED", "authentication required")

    # ---- end-1 ------------------------------------------------------------------------------
    async def base(self, req):
        return http.json_response({}, 200, HEADERS)

    async def bad_name(self, req):
        raise RegistryFailure(400, "NAME_INVALID", f"invalid repository name {req.match['name']!r}")

    # ---- tags (end-8) -------------------------------------------------------------------------
    async def tags_list(self, req):
        name = req.match["name"]
        tags = self.store.tags(name)
        if tags is None:
            raise RegistryFailure(404, "NAME_UNKNOWN", f"repository name not known to registry: {name}")
        last = req.query.get("last")
        if last:
            tags = [t for t in tags if t > last]
        headers = dict(HEADERS)
        n = req.int_param("n")
        if n is not None and n >= 0 and len(tags) > n:
            tags = tags[:n]
            if tags:
                headers["Link"] = f'</v2/{name}/tags/list?n={n}&last={tags[-1]}>; rel="next"'
        return http.json_response({"name": name, "tags": tags}, 200, headers)

    # ---- manifests (end-3, end-7, end-9) ---------------------------------------------------------
    @staticmethod
    def _is_digest(ref: str) -> bool:
        return ":" in ref  # a tag never has a colon: anything else is meant as a digest

    def _manifest_digest(self, name: str, ref: str) -> str:
        if self._is_digest(ref):
            if parse_digest(ref) is None or not self.store.linked(name, "_manifests", digest_key(ref)):
                raise RegistryFailure(404, "MANIFEST_UNKNOWN", f"manifest unknown: {name}@{ref}")
            return ref
        digest = self.store.tag_digest(name, ref)
        if digest is None:
            raise RegistryFailure(404, "MANIFEST_UNKNOWN", f"manifest unknown: {name}:{ref}")
        return digest

    @staticmethod
    def _digest(s: str) -> str:
        """A digest we must be able to verify (PUT, POST): well-formed and of a supported algorithm."""
        if parse_digest(s) is None:
            raise RegistryFailure(400, "DIGEST_INVALID", f"unsupported digest {s!r} (sha256 and sha512 are)")
        return s

    @staticmethod
    def _known(s: str, code: str) -> str:
        """A digest to look something up by (GET, HEAD, DELETE): one we cannot hold is simply unknown."""
        if parse_digest(s) is None:
            raise RegistryFailure(404, code, f"unknown digest {s}", {"digest": s})
        return s

    async def manifest_get(self, req):
        name = req.match["name"]
        digest = self._manifest_digest(name, req.match["ref"])
        data = self.store.blobs.read(digest)
        media = json.loads(data).get("mediaType") or MANIFEST_TYPES[0]
        return http.Response(200, data, {**HEADERS, "Docker-Content-Digest": digest}, content_type=media)

    def _check_references(self, name: str, manifest: dict, media: str) -> None:
        """Everything a manifest points at must be in the repository, except non-distributable
        layers that say where to fetch them (``urls``): those a registry never holds."""
        if media in INDEX_TYPES:
            for m in manifest.get("manifests") or []:
                if not isinstance(m, dict) or not self.store.linked(name, "_manifests",
                                                                    digest_key(self._digest(m.get("digest", "")))):
                    d = m.get("digest") if isinstance(m, dict) else m
                    raise RegistryFailure(400, "MANIFEST_BLOB_UNKNOWN", f"manifest {d} unknown", {"digest": d})
            return
        config, layers = manifest.get("config") or {}, manifest.get("layers") or []
        if not isinstance(config, dict) or not isinstance(layers, list) or not all(isinstance(x, dict) for x in layers):
            raise RegistryFailure(400, "MANIFEST_INVALID", "config and layers must be descriptors")
        for desc in [config, *layers]:
            d = self._digest(desc.get("digest", ""))
            if desc is not config and desc.get("mediaType") in NONDISTRIBUTABLE and desc.get("urls"):
                urls = desc["urls"]
                if not isinstance(urls, list) or not all(isinstance(u, str) and u.startswith(("http://", "https://"))
                                                         for u in urls):
                    raise RegistryFailure(400, "MANIFEST_INVALID", f"layer {d}: urls must be http(s) URLs")
                continue
            if not self.store.has_blob(name, d):
                raise RegistryFailure(400, "MANIFEST_BLOB_UNKNOWN", f"blob unknown to registry: {d}", {"digest": d})

    async def manifest_put(self, req):
        name, ref = req.match["name"], req.match["ref"]
        if req.body_size > 4 << 20:  # distribution's limit for a manifest
            raise RegistryFailure(400, "SIZE_INVALID", "manifest larger than 4 MiB")
        data = req.body
        try:
            manifest = json.loads(data)
        except ValueError:
            raise RegistryFailure(400, "MANIFEST_INVALID", "manifest is not valid JSON") from None
        if not isinstance(manifest, dict) or manifest.get("schemaVersion") != 2:
            raise RegistryFailure(400, "MANIFEST_INVALID", "manifest schemaVersion must be 2")
        media = manifest.get("mediaType") or (req.headers.get("Content-Type") or "").split(";")[0]
        self._check_references(name, manifest, media)
        if self._is_digest(ref):
            alg = self._digest(ref).partition(":")[0]
            digest = f"{alg}:{hashlib.new(alg, data).hexdigest()}"  # the client's algorithm, echoed back
            if digest != ref:
                raise RegistryFailure(400, "DIGEST_INVALID", f"manifest content has digest {digest}, not {ref}")
        else:
            if not TAG_RE.fullmatch(ref):
                raise RegistryFailure(400, "TAG_INVALID", f"invalid tag {ref!r}")
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.store.blobs.put(data, digest)
        self.store.link(name, "_manifests", digest_key(digest))
        subject = manifest.get("subject")
        if isinstance(subject, dict) and subject.get("digest"):  # OCI 1.1 referrers: "this refers to that"
            self.store.link(name, os.path.join("_referrers", digest_key(self._digest(subject["digest"]))),
                            digest_key(digest))
        if not self._is_digest(ref):
            self.store.link(name, "_tags", ref, digest)
        headers = {**HEADERS, "Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": digest}
        if isinstance(subject, dict):
            headers["OCI-Subject"] = subject.get("digest", "")
        return http.empty(201, headers)

    async def manifest_delete(self, req):
        name, ref = req.match["name"], req.match["ref"]
        if not self._is_digest(ref):
            if not self.store.unlink(name, "_tags", ref):
                raise RegistryFailure(404, "MANIFEST_UNKNOWN", f"manifest unknown: {name}:{ref}")
            return http.empty(202, HEADERS)
        digest = self._manifest_digest(name, ref)
        self.store.unlink(name, "_manifests", digest_key(digest))
        for tag in self.store.tags(name) or []:  # tags pointing at it go too (distribution does the same)
            if self.store.tag_digest(name, tag) == digest:
                self.store.unlink(name, "_tags", tag)
        return http.empty(202, HEADERS)

    async def referrers(self, req):
        """end-12a/b: an image index of the manifests whose ``subject`` is this digest."""
        name, digest = req.match["name"], self._known(req.match["digest"], "MANIFEST_UNKNOWN")
        try:
            found = sorted(os.listdir(self.store.repo(name, os.path.join("_referrers", digest_key(digest)))))
        except FileNotFoundError:
            found = []
        wanted = req.query.get("artifactType")
        descs = []
        for key in found:
            if not self.store.linked(name, "_manifests", key):
                continue  # deleted since
            data = self.store.blobs.read(key_digest(key))
            m = json.loads(data)
            artifact = m.get("artifactType") or (m.get("config") or {}).get("mediaType")
            if wanted and artifact != wanted:
                continue
            desc = {"mediaType": m.get("mediaType") or MANIFEST_TYPES[0], "digest": key_digest(key),
                    "size": len(data), "artifactType": artifact}
            if m.get("annotations"):
                desc["annotations"] = m["annotations"]
            descs.append(desc)
        headers = {**HEADERS, **({"OCI-Filters-Applied": "artifactType"} if wanted else {})}
        return http.Response(200, json.dumps({"schemaVersion": 2, "mediaType": INDEX_TYPES[0],
                                              "manifests": descs}).encode(), headers,
                             content_type=INDEX_TYPES[0])

    # ---- blobs (end-2, end-10) --------------------------------------------------------------------
    async def blob_get(self, req):
        name, digest = req.match["name"], self._known(req.match["digest"], "BLOB_UNKNOWN")
        if not self.store.has_blob(name, digest):
            raise RegistryFailure(404, "BLOB_UNKNOWN", f"blob unknown to registry: {digest}", {"digest": digest})
        headers = {**HEADERS, "Docker-Content-Digest": digest, "Accept-Ranges": "bytes"}
        size = self.store.blobs.size(digest)
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", req.headers.get("Range") or "")
        start, end, status = 0, size - 1, 200
        if m and req.method == "GET":
            start, end = int(m.group(1)), int(m.group(2)) if m.group(2) else size - 1
            if start >= size or end < start:
                return http.Response(416, b"", {**HEADERS, "Content-Range": f"bytes */{size}"})
            end, status = min(end, size - 1), 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        if req.method == "HEAD":  # the length a GET would send, without reading the blob
            return http.Response(200, b"", {**headers, "Content-Length": str(size)},
                                 content_type="application/octet-stream")
        length = end - start + 1
        if length <= STREAM_ABOVE:
            data = await asyncio.to_thread(_read_range, self.store.blobs.path(digest), start, length)
            return http.Response(status, data, headers, content_type="application/octet-stream")
        # A big blob goes out in pieces (chunked transfer coding), never whole in memory.
        stream = await req.start_stream(status, "application/octet-stream", headers)
        with open(self.store.blobs.path(digest), "rb") as f:
            f.seek(start)
            while length > 0:
                data = await asyncio.to_thread(f.read, min(STREAM_ABOVE, length))
                if not data:
                    break
                await stream.write(data)
                length -= len(data)
        await stream.close()
        return None

    async def blob_delete(self, req):
        name, digest = req.match["name"], self._known(req.match["digest"], "BLOB_UNKNOWN")
        if not self.store.unlink(name, "_layers", digest_key(digest)):
            raise RegistryFailure(404, "BLOB_UNKNOWN", f"blob unknown to registry: {digest}", {"digest": digest})
        return http.empty(202, {**HEADERS, "Docker-Content-Digest": digest})

    # ---- uploads (end-4a/4b, end-5, end-6, end-11) --------------------------------------------------
    def _upload_path(self, name: str, uuid: str) -> str:
        path = os.path.join(self.store.uploads, uuid)
        try:
            with open(path + ".repo") as f:
                owner = f.read()
        except FileNotFoundError:
            raise RegistryFailure(404, "BLOB_UPLOAD_UNKNOWN", f"upload {uuid} unknown") from None
        if owner != name:
            raise RegistryFailure(404, "BLOB_UPLOAD_UNKNOWN", f"upload {uuid} belongs to another repository")
        return path

    def _session(self, name: str, uuid: str, status: int = 202) -> http.Response:
        size = os.path.getsize(os.path.join(self.store.uploads, uuid))
        return http.empty(status, {**HEADERS, "Location": f"/v2/{name}/blobs/uploads/{uuid}",
                                   "Range": f"0-{max(size - 1, 0)}", "Docker-Upload-UUID": uuid})

    def _commit(self, name: str, path: str, digest: str) -> http.Response:
        """Verify the uploaded bytes against ``digest`` and make the blob visible in ``name``."""
        try:
            self.store.blobs.ingest(path, digest)
        except DigestMismatch as e:
            raise RegistryFailure(400, "DIGEST_INVALID", str(e)) from None
        finally:
            for p in (path, path + ".repo"):
                if os.path.exists(p):
                    os.unlink(p)
        self.store.link(name, "_layers", digest_key(digest))
        return http.empty(201, {**HEADERS, "Location": f"/v2/{name}/blobs/{digest}",
                                "Docker-Content-Digest": digest})

    def _range_follows(self, req, name: str, uuid: str, size: int) -> http.Response | None:
        """A ``Content-Range`` must start where the upload ends and span the body: else 416."""
        rng = req.headers.get("Content-Range")
        if not rng:
            return None
        m = re.fullmatch(r"(?:bytes[ =])?(\d+)-(\d+)(?:/\d+|/\*)?", rng.strip())
        if m and int(m.group(1)) == size and int(m.group(2)) - int(m.group(1)) + 1 == req.body_size:
            return None
        return http.Response(416, b"", {**HEADERS, "Location": f"/v2/{name}/blobs/uploads/{uuid}",
                                        "Range": f"0-{max(size - 1, 0)}"})

    async def upload_start(self, req):
        name = req.match["name"]
        mount, source = req.query.get("mount"), req.query.get("from")
        if mount and source:
            digest = self._digest(mount)
            if self.store.has_blob(source, digest):
                self.store.link(name, "_layers", digest_key(digest))
                return http.empty(201, {**HEADERS, "Location": f"/v2/{name}/blobs/{digest}",
                                        "Docker-Content-Digest": digest})
        digest = self._digest(req.query["digest"]) if req.query.get("digest") else None
        uuid = secrets.token_hex(16)
        path = os.path.join(self.store.uploads, uuid)
        if digest:  # monolithic: the whole blob in this POST
            await req.save_body(path)
        else:
            open(path, "wb").close()
        with open(path + ".repo", "w") as f:
            f.write(name)
        if digest:
            return await asyncio.to_thread(self._commit, name, path, digest)
        return self._session(name, uuid)

    async def upload_patch(self, req):
        name, uuid = req.match["name"], req.match["uuid"]
        path = self._upload_path(name, uuid)
        refused = self._range_follows(req, name, uuid, os.path.getsize(path))
        if refused:
            return refused
        await req.append_body_to(path)
        return self._session(name, uuid)

    async def upload_put(self, req):
        name, uuid = req.match["name"], req.match["uuid"]
        path = self._upload_path(name, uuid)
        digest = self._digest(req.query.get("digest", ""))
        refused = self._range_follows(req, name, uuid, os.path.getsize(path))
        if refused:
            return refused
        await req.append_body_to(path)
        return await asyncio.to_thread(self._commit, name, path, digest)

    async def upload_status(self, req):
        self._upload_path(req.match["name"], req.match["uuid"])
        return self._session(req.match["name"], req.match["uuid"], 204)

    async def upload_cancel(self, req):
        path = self._upload_path(req.match["name"], req.match["uuid"])
        for p in (path, path + ".repo"):
            os.unlink(p)
        return http.empty(204, HEADERS)


def _read_range(path: str, start: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(length)


async def serve(root: str, host: str = "127.0.0.1", port: int = 5000, htpasswd: str | None = None,
                ready=None) -> None:
    # Large uploads are spooled next to the upload sessions, so that closing one is a rename.
    server = http.Server(spool_dir=os.path.join(os.path.abspath(root), "_uploads"))
    RegistryApp(root, htpasswd).register(server)
    await server.serve_tcp(host, port)
    print(f"minidocker registry listening on http://{host}:{port} (storage {os.path.abspath(root)})", flush=True)
    await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="minidocker registry serve", description="a small OCI registry")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--root", default="/var/lib/minidocker-registry")
    p.add_argument("--htpasswd", help="htpasswd file (bcrypt: htpasswd -Bbn user pass) to require Basic auth")
    a = p.parse_args(argv)
    if a.htpasswd and not os.path.isfile(a.htpasswd):
        p.error(f"--htpasswd {a.htpasswd}: no such file")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        asyncio.run(serve(a.root, a.host, a.port, a.htpasswd))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        print(f"minidocker registry: {e}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
