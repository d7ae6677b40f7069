"""Engine API routes of the registry chapter: pull, push, login (and minimal tag/rmi).

What this teaches
-----------------
``docker pull`` and ``docker push`` do no registry work themselves: the CLI asks the daemon
(``POST /images/create?fromImage=&tag=``, ``POST /images/{name}/push?tag=``), passing the user's
credentials in the ``X-Registry-Auth`` header (base64url JSON read from ``~/.docker/config.json``),
and the daemon streams its progress back as newline-delimited JSON -- one object per event,
``{"status": "Downloading", "id": "<12 hex>", "progressDetail": {"current": n, "total": m}}`` --
that the CLI draws as one progress bar per layer. ``docker login`` is ``POST /auth``: the daemon
checks the credentials against the registry; the CLI stores them.

The registry work itself runs in a thread (registry/client.py is blocking, stdlib HTTP); progress
events cross into the event loop through ``call_soon_threadsafe``.
"""
from __future__ import annotations

import asyncio
import urllib.parse

from ..images.reference import InvalidReference, parse_reference
from ..images.store import DigestMismatch, ImageNotFound
from ..registry.auth import AuthError, Credentials
from ..registry.client import Registry, parse_platform
from ..registry.transport import RegistryError
from .. import http
from ..units import human_size

DOCKER_HUB = "docker.io"


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def _bar(current: int, total: int, width: int = 50) -> str:
    """docker's progress text: ``[=====>      ]  1.2MB/2.6MB``."""
    if total <= 0:
        return ""
    filled = min(width, int(width * current / total))
    arrow = "=" * max(filled - 1, 0) + (">" if filled else "")
    return f"[{arrow:<{width}}] {human_size(current)}/{human_size(total)}"


def _registry_status(e: Exception) -> int:
    if isinstance(e, AuthError):
        return 401
    if isinstance(e, RegistryError) and e.status == 404:
        return 404
    if isinstance(e, (InvalidReference, ValueError)) and not isinstance(e, DigestMismatch):
        return 400
    return 500


class RegistryRoutes:
    def __init__(self, api):
        self.engine = api.engine
        # Where Docker Hub names are fetched from (--default-registry): Docker Hub itself unless set.
        self.hub = api.info_extra.get("default_registry") or DOCKER_HUB

    def registry_host(self, ref) -> str:
        return self.hub if ref.domain == DOCKER_HUB else ref.domain

    # ---- helpers -----------------------------------------------------------------------------
    @staticmethod
    def credentials(req) -> Credentials:
        try:
            return Credentials.from_header(req.headers.get("X-Registry-Auth"))
        except AuthError as e:
            raise http.HTTPError(400, str(e))

    async def _run_streaming(self, req, work, first: list[dict]):
        """Run ``work(emit)`` in a thread; stream what it emits as NDJSON; errors go in the stream."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def emit(msg: dict) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, msg)

        stream = await req.start_stream(200, "application/json")
        for msg in first:
            await stream.write_json(msg)
        task = asyncio.ensure_future(asyncio.to_thread(work, emit))
        while True:
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait([getter, task], return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                await stream.write_json(getter.result())
                continue
            getter.cancel()
            while not queue.empty():
                await stream.write_json(queue.get_nowait())
            break
        try:
            for msg in task.result():
                await stream.write_json(msg)
        except Exception as e:  # headers are gone: docker's in-stream error
            message = str(e) or type(e).__name__
            await stream.write_json({"errorDetail": {"message": message}, "error": message})
        await stream.close()

    # ---- pull ----------------------------------------------------------------------------------
    async def images_create(self, req):
        name = req.query.get("fromImage", "")
        tag = req.query.get("tag") or ""
        if not name:
            raise http.HTTPError(400, "fromImage is required (importing from a tarball is not supported)")
        try:
            if tag.startswith("sha256:"):
                ref = parse_reference(f"{name}@{tag}")
            elif tag and not ("@" in name or ":" in name.rsplit("/", 1)[-1]):
                ref = parse_reference(f"{name}:{tag}")
            else:
                ref = parse_reference(name)
            platform = parse_platform(req.query.get("platform") or None)
        except ValueError as e:
            raise http.HTTPError(400, str(e))
        if ref.repository == "docker.io/library/busybox":
            return await self._offline_busybox(req, ref)
        registry = Registry(self.registry_host(ref), self.credentials(req))
        reference = ref.digest or ref.tag
        try:  # resolve first, so that "not found" and "unauthorized" are HTTP statuses as dockerd's are
            manifest_bytes, manifest, digest = await asyncio.to_thread(registry.resolve, ref.path, reference, platform)
        except (RegistryError, AuthError, DigestMismatch, ValueError) as e:
            if isinstance(e, RegistryError) and e.status == 404:
                raise http.HTTPError(404, f"manifest for {ref.familiar()} not found: "
                                          f"{e.code.lower().replace('_', ' ') or 'not found'}: {e.registry_message}")
            raise http.HTTPError(_registry_status(e), str(e))
        images = self.engine.images
        layers = {layer["digest"] for layer in manifest["layers"]}
        before = self._current_digest(ref)

        def work(emit):
            def progress(event, digest, current=0, total=0):
                if digest not in layers:
                    return
                ident = _short(digest)
                if event == "exists":
                    emit({"status": "Already exists", "progressDetail": {}, "id": ident})
                elif event == "wait":
                    emit({"status": "Pulling fs layer", "progressDetail": {}, "id": ident})
                elif event == "download":
                    emit({"status": "Downloading", "progressDetail": {"current": current, "total": total},
                          "progress": _bar(current, total), "id": ident})
                elif event == "complete":
                    emit({"status": "Verifying Checksum", "progressDetail": {}, "id": ident})
                    emit({"status": "Download complete", "progressDetail": {}, "id": ident})

            # The store extracts each layer once, into the snapshotter, while it downloads.
            result = registry.pull(ref.path, digest, images, tag_as=None if ref.digest else str(ref),
                                   platform=platform, progress=progress)
            out = [{"status": "Pull complete", "progressDetail": {}, "id": _short(d)}
                   for d in result.downloaded if d in layers]
            out.append({"status": f"Digest: {result.digest}"})
            fresh = before != result.digest
            out.append({"status": f"Status: {'Downloaded newer image' if fresh else 'Image is up to date'} "
                                  f"for {ref.familiar()}"})
            return out

        first = [{"status": f"Pulling from {ref.familiar_name}", "id": ref.digest or ref.tag}]
        await self._run_streaming(req, work, first)
        return None

    def _current_digest(self, ref) -> str | None:
        try:
            return self.engine.images.resolve(str(ref)).manifest_digest
        except (ImageNotFound, ValueError):
            return None

    async def _offline_busybox(self, req, ref):
        """Docker Hub is out of reach here: busybox is built offline from Debian's busybox-static."""
        from ..images import busybox

        def work(emit):
            img = busybox.build_busybox(self.engine.images, ref=str(ref))
            return [{"status": f"Digest: {img.manifest_digest}"},
                    {"status": f"Status: Downloaded newer image for {ref.familiar()}"}]
        await self._run_streaming(req, work, [{"status": f"Building {ref.familiar()} offline from busybox-static"}])
        return None

    # ---- distribution inspect ------------------------------------------------------------------
    async def distribution(self, req):
        """``GET /distribution/NAME/json`` (``docker manifest``/buildx, docker-py's
        ``get_registry_data``): asks the registry, as dockerd does; a name the registry cannot
        answer for (busybox, built offline; a registry out of reach) is answered from the local
        store when the image is there."""
        name = req.match["name"]
        try:
            ref = parse_reference(name)
        except ValueError as e:
            raise http.HTTPError(400, str(e))
        try:
            local = self.engine.images.resolve(name)
        except (ImageNotFound, ValueError):
            local = None
        if ref.repository != "docker.io/library/busybox" or local is None:
            registry = Registry(self.registry_host(ref), self.credentials(req))
            try:
                return http.json_response(await asyncio.to_thread(registry.describe, ref.path,
                                                                  ref.digest or ref.tag))
            except (RegistryError, AuthError, DigestMismatch, ValueError, OSError) as e:
                if local is None:
                    status = _registry_status(e)
                    raise http.HTTPError(status, f"manifest for {ref.familiar()} not found: manifest unknown"
                                         if status == 404 else str(e))
        cfg = local.config
        return http.json_response({
            "Descriptor": {"mediaType": local.manifest.get("mediaType") or "application/vnd.oci.image.manifest.v1+json",
                           "digest": local.manifest_digest,
                           "size": self.engine.images.content.size(local.manifest_digest)},
            "Platforms": [{k: cfg[k] for k in ("architecture", "os", "variant") if cfg.get(k)}]})

    # ---- push ------------------------------------------------------------------------------------
    async def image_push(self, req):
        name, tag = req.match["name"], req.query.get("tag") or ""
        try:
            repo = parse_reference(name)
        except ValueError as e:
            raise http.HTTPError(400, str(e))
        if repo.domain == DOCKER_HUB:
            raise http.HTTPError(403, "Docker Hub is not reachable from minidocker here: push to a local registry")
        images = self.engine.images
        wanted = [f"{repo.repository}:{tag}"] if tag else sorted(
            r for img in images.list() for r in img.refs if parse_reference(r).repository == repo.repository)
        targets = []
        for full in wanted:
            try:
                targets.append((parse_reference(full).tag, images.resolve(full)))
            except ImageNotFound:
                pass
        if not targets:
            raise http.HTTPError(404, f"An image does not exist locally with the tag: {repo.familiar_name}")
        registry = Registry(repo.domain, self.credentials(req))

        def work(emit):
            out = []
            for t, image in targets:
                layers = {layer["digest"] for layer in image.manifest["layers"]}
                for d in reversed(image.manifest["layers"]):
                    emit({"status": "Preparing", "progressDetail": {}, "id": _short(d["digest"])})

                def progress(event, digest, current=0, total=0):
                    if digest not in layers:
                        return
                    ident = _short(digest)
                    if event == "exists":
                        emit({"status": "Layer already exists", "progressDetail": {}, "id": ident})
                    elif event == "mounted":
                        emit({"status": "Mounted from " + source_name(image, repo), "progressDetail": {}, "id": ident})
                    elif event == "push":
                        emit({"status": "Pushing", "progressDetail": {"current": current, "total": total},
                              "progress": _bar(current, total), "id": ident})
                    elif event == "pushed":
                        emit({"status": "Pushed", "progressDetail": {}, "id": ident})

                digest, size = registry.push(repo.path, t, images, image, progress)
                emit({"status": f"{t}: digest: {digest} size: {size}"})
                emit({"progressDetail": {}, "aux": {"Tag": t, "Digest": digest, "Size": size}})
            return out

        await self._run_streaming(req, work, [{"status": f"The push refers to repository [{repo.familiar_name}]"}])
        return None

    # ---- login -----------------------------------------------------------------------------------
    async def auth(self, req):
        body = req.json() or {}
        server = body.get("serveraddress") or "https://index.docker.io/v1/"
        host = urllib.parse.urlsplit(server if "://" in server else "//" + server).netloc or server
        if host in ("index.docker.io", "registry-1.docker.io"):
            host = DOCKER_HUB
        creds = Credentials(body.get("username") or "", body.get("password") or "",
                            body.get("identitytoken") or "")
        try:
            await asyncio.to_thread(Registry(host, creds).check_login)
        except AuthError as e:
            raise http.HTTPError(401, f"login attempt to {host} failed: {e}")
        except RegistryError as e:
            raise http.HTTPError(500, f"login attempt to {host} failed: {e}")
        return http.json_response({"Status": "Login Succeeded", "IdentityToken": ""})


def source_name(image, repo) -> str:
    for r in image.refs:
        ref = parse_reference(r)
        if ref.domain == repo.domain and ref.path != repo.path:
            return ref.path
    return "another repository"


def register(api, server: http.Server) -> None:
    """Called from API.register; these routes come before the generic ``/images/(?P<name>.+)/json``."""
    from .api import errors
    r = RegistryRoutes(api)
    # POST /images/create is routed by api_images (fromSrc = import) and hands pulls (fromImage) here.
    api.images_create = r.images_create
    for method, pattern, handler in [
        ("POST", r"/images/create", r.images_create),
        ("POST", r"/images/(?P<name>.+)/push", r.image_push),
        ("POST", r"/auth", r.auth),
        ("GET", r"/distribution/(?P<name>.+)/json", r.distribution),
    ]:
        server.route(method, pattern, errors(handler))
