"""API routes of the build chapter: ``POST /build`` (the classic builder) and ``POST /build/prune``.

``POST /build`` takes the context as a tar body and options as query parameters (Docker Engine
API v1.50 ImageBuild: ``t`` repeated, ``q``, ``nocache``, ``buildargs`` and ``labels`` as JSON,
``target``, ``rm``, ``forcerm``, ``dockerfile``, ``networkmode``, ``platform``, ``pull``) and answers
a stream of JSON messages, the way dockerd's classic builder does: ``{"stream": "Step 1/3 : ..."}``,
``{"aux": {"ID": "sha256:..."}}``, ``{"stream": "Successfully built ..."}``, and on failure
``{"errorDetail": {...}, "error": "..."}``. The builder (minidocker/build) runs in a thread; its
RUN steps are containers of this engine (``Engine.create`` with a prepared snapshot), with no network.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile

from .. import http
from ..build.builder import BuildError, Builder, Cache, Options
from ..build.context import ContextError, extract
from ..build.dockerfile import DockerfileError
from ..images.reference import InvalidReference, familiar, parse_reference
from ..images.store import ImageNotFound
from ..images.unpack import prune as prune_layers
from .api import parse_log_lines, read_from
from .errors import InvalidRequest

NETWORK_MODES = ("", "default", "none")


def register(api, server) -> None:
    from .api import errors
    engine = api.engine

    async def build(req):
        return await _build(engine, req)

    async def build_prune(req):
        return await _prune(engine, req)
    server.route("POST", r"/build", errors(build))
    server.route("POST", r"/build/prune", errors(build_prune))


def _cache(engine) -> Cache:
    os.makedirs(os.path.join(engine.root, "build"), exist_ok=True)
    return Cache(os.path.join(engine.root, "build", "cache.json"))


def intermediate_images(engine) -> set[str]:
    """Images a cached build step was built on (hidden from ``docker images`` without -a)."""
    return _cache(engine).parents()


def _json_param(req, name: str) -> dict:
    raw = req.query.get(name) or ""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidRequest(f"invalid {name} JSON: {raw!r}")
    if not isinstance(value, dict):
        raise InvalidRequest(f"{name} must be a JSON object")
    return {k: v for k, v in value.items() if v is not None}


def options(req) -> Options:
    """The query parameters, checked before the context is read; unsupported ones refused."""
    q = req.query
    if q.get("remote"):
        raise InvalidRequest("remote build contexts (remote=) are not supported by minidockerd")
    if q.get("networkmode", "") not in NETWORK_MODES:
        raise InvalidRequest(f"network mode {q['networkmode']!r} is not supported for builds "
                             "(supported: default, none)")
    if q.get("version", "1") not in ("", "1"):
        raise InvalidRequest("BuildKit (version=2) is not supported: minidockerd has the classic builder")
    for name in ("extrahosts", "isolation", "cpuperiod", "cpuquota", "cpusetcpus", "cpusetmems",
                 "cpushares", "memory", "memswap", "shmsize", "cgroupparent", "squash", "outputs"):
        if q.get(name, "") not in ("", "0", "false", "[]", "null", "{}"):
            raise InvalidRequest(f"the build option {name} is not supported by minidockerd")
    for name in ("ulimits", "cachefrom"):
        if q.get(name, "") not in ("", "null", "[]", "{}"):
            raise InvalidRequest(f"the build option {name} is not supported by minidockerd")
    tags = [t for t in req.query_all.get("t", []) if t]
    for t in tags:
        try:
            named = parse_reference(t)
        except (InvalidReference, ValueError) as e:
            raise InvalidRequest(f"invalid tag {t!r}: {e}")
        if named.digest is not None:
            raise InvalidRequest(f"invalid tag {t!r}: a tag cannot hold a digest")
    return Options(tags=tags, build_args=_json_param(req, "buildargs"), labels=_json_param(req, "labels"),
                   target=q.get("target", ""), nocache=req.bool_param("nocache"), quiet=req.bool_param("q"),
                   rm=req.bool_param("rm", True), forcerm=req.bool_param("forcerm"),
                   network="none", platform=q.get("platform", ""), pull=req.bool_param("pull"))


class _Backend:
    """The builder's container path, called from the builder's thread."""

    def __init__(self, engine, loop, say):
        self.engine, self.loop, self.say = engine, loop, say

    def _await(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def run(self, *, argv, env, user, workdir, image_id, image_config, prepare, output, network):
        cfg = {**image_config, "Entrypoint": None, "Cmd": None}
        body = {"Image": image_id or "scratch", "Cmd": argv, "Env": env, "User": user,
                "WorkingDir": workdir, "Labels": {},
                "HostConfig": {"NetworkMode": "none", "LogConfig": {"Type": "json-file"}}}
        cid, _ = self.engine.create(body, None, rootfs=(image_id, cfg, prepare))
        self.say(f" ---> Running in {cid[:12]}\n")
        try:
            self._await(self.engine.start(cid))
        except BaseException:
            self.remove(cid)
            raise
        waiting = asyncio.run_coroutine_threadsafe(self.engine.wait(cid, "not-running"), self.loop)
        path, pos, buf = os.path.join(self.engine.get(cid).dir, "container.log"), 0, b""
        while True:   # the step's output as the monitor writes it (docker streams it too)
            done = waiting.done()
            new, pos = read_from(path, pos)
            buf += new
            cut = buf.rfind(b"\n") + 1
            for entry in parse_log_lines(buf[:cut]):
                output(entry.get("log", ""))
            buf = buf[cut:]
            if done:
                break
            try:
                waiting.result(timeout=0.1)
            except TimeoutError:
                pass
        return waiting.result(), cid

    def remove(self, cid: str) -> None:
        self._await(self.engine.remove(cid, force=True))

    def id_mappings(self, key: str):
        """The user-namespace maps of the step container ``key`` (None for a COPY's snapshot)."""
        from .userns import container_id_mappings
        c = self.engine.containers.get(key)   # exact: a COPY's snapshot key is no container
        return container_id_mappings(c.dir) if c is not None else None

    def pull(self, name: str):
        """A base image from its registry (docker pull's path; Docker Hub: only busybox, built
        offline). Anonymous: the classic builder's per-registry X-Registry-Config is not read."""
        from ..registry.client import Registry
        from .api_registry import DOCKER_HUB
        ref = parse_reference(name)
        self.say(f"Pulling {ref.familiar()}\n")
        if ref.domain == DOCKER_HUB:
            if ref.repository != "docker.io/library/busybox":
                raise BuildError(f"pull access denied for {ref.familiar()}: Docker Hub is not reachable from "
                                 "minidocker here; use a local registry")
            from ..images import busybox
            return busybox.build_busybox(self.engine.images, ref=str(ref))
        try:
            result = Registry(ref.domain, None).pull(ref.path, ref.digest or ref.tag, self.engine.images,
                                                     tag_as=None if ref.digest else str(ref))
        except Exception as e:  # noqa: BLE001 - registry, auth and digest errors: the step fails
            raise BuildError(f"failed to pull {ref.familiar()}: {e}")
        return result.image


def _run_build(engine, loop, ctx_stream, opts: Options, dockerfile: str, say) -> str:
    cache = _cache(engine)
    tmp = tempfile.mkdtemp(prefix="context-", dir=os.path.join(engine.root, "build"))
    try:
        ctx_dir = os.path.join(tmp, "context")
        os.mkdir(ctx_dir)
        extract(ctx_stream, ctx_dir)
        df_path = os.path.realpath(os.path.join(ctx_dir, dockerfile or "Dockerfile"))
        if not df_path.startswith(os.path.realpath(ctx_dir) + "/") or not os.path.isfile(df_path):
            raise BuildError(f"Cannot locate specified Dockerfile: {dockerfile or 'Dockerfile'}")
        with open(df_path, "rb") as f:
            text = f.read()
        backend = _Backend(engine, loop, say)
        builder = Builder(engine.images, engine.snapshotter, cache, ctx_dir, backend.run,
                          backend.remove, pull=backend.pull, progress=say if not opts.quiet else (lambda s: None),
                          id_mappings=backend.id_mappings)
        image = builder.build(text, opts)
        for t in opts.tags:
            engine.images.tag(image, t)
        return image.id
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _build(engine, req):
    opts = options(req)
    if opts.platform and opts.platform.split("/")[0] != "linux":
        raise InvalidRequest(f"platform {opts.platform!r} is not supported (linux only)")
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def say(text: str) -> None:
        if text:
            loop.call_soon_threadsafe(queue.put_nowait, {"stream": text})

    stream = await req.start_stream(200, "application/json")
    body = req.open_body()
    task = asyncio.ensure_future(asyncio.to_thread(_run_build, engine, loop, body, opts,
                                                   req.query.get("dockerfile", ""), say))
    while True:
        getter = asyncio.ensure_future(queue.get())
        await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            await stream.write_json(getter.result())
            continue
        getter.cancel()
        break
    while not queue.empty():
        await stream.write_json(queue.get_nowait())
    try:
        image_id = task.result()
    except (BuildError, DockerfileError, ContextError, ImageNotFound, InvalidRequest, ValueError) as e:
        code = getattr(e, "code", 1)
        await stream.write_json({"errorDetail": {"code": code, "message": str(e)}, "error": str(e)})
        await stream.close()
        return None
    except Exception as e:  # noqa: BLE001 - the stream has started: report it in docker's shape
        await stream.write_json({"errorDetail": {"message": f"build failed: {e}"}, "error": f"build failed: {e}"})
        await stream.close()
        raise
    finally:
        body.close()
    await stream.write_json({"aux": {"ID": image_id}})
    if opts.quiet:
        await stream.write_json({"stream": image_id + "\n"})
    else:
        await stream.write_json({"stream": f"Successfully built {image_id.split(':')[-1][:12]}\n"})
        for t in opts.tags:
            await stream.write_json({"stream": f"Successfully tagged {familiar(t)}\n"})
    await stream.close()
    return None


async def _prune(engine, req):
    """Forget the build cache; intermediate images nothing else names (untagged, no container
    on them) go, and the layers no image needs any more."""
    def work():
        ids = _cache(engine).clear()
        used = {c.cfg.image_id for c in engine.containers.values()}
        deleted, reclaimed = [], 0
        for image_id in ids:
            try:
                image = engine.images.resolve(image_id)
            except (ImageNotFound, ValueError):
                continue
            if image.refs or image.id in used:
                continue
            engine.images.delete(image)
            deleted.append(image.id)
        reclaimed = engine.images.gc(grace=60).reclaimed
        prune_layers(engine.images, engine.snapshotter)
        return deleted, reclaimed
    deleted, reclaimed = await asyncio.to_thread(work)
    return http.json_response({"CachesDeleted": deleted, "SpaceReclaimed": reclaimed})
