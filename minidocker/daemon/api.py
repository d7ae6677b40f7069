"""The Docker Engine API routes minidockerd serves (a subset of API v1.50).

What this teaches
-----------------
The API is the contract: the docker CLI, docker-py and minidocker's own CLI all speak it, so the
routes follow docker's paths, status codes and JSON shapes (see
``shared/specs/docker-engine-api-v1.50.yaml`` and the notes on what real clients send). Each handler
is thin: parse the request, call the engine, translate its exceptions into docker's statuses:
``NotFound`` -> 404, ``Conflict`` -> 409, ``InvalidRequest`` -> 400, ``NotModified`` -> 304.

Three routes are not plain request/response:
* ``attach`` *hijacks* the connection: after ``101 UPGRADED`` the socket carries raw bytes — stdin
  up, docker's 8-byte framed stdout/stderr down;
* ``wait`` is a long-poll: headers go out at once (the CLI waits for them before it sends
  ``start``), the body when the container exits;
* ``logs?follow=1`` streams until the container exits or the client goes away.
"""
from __future__ import annotations

import asyncio
import json
import os
import platform
import time

from .. import __version__
from ..images.store import ImageNotFound
from .. import http, wire
from . import api_images
from .errors import Conflict, InvalidRequest, NotFound, NotModified, StartError
from .validate import parse_filters

KILL_WAIT = 10.0   # seconds a SIGKILL is given to take effect before `kill` answers anyway

API_VERSION, MIN_API_VERSION = wire.API_VERSION, wire.MIN_API_VERSION


def errors(fn):
    """Map engine exceptions to docker's status codes."""
    async def wrapper(req):
        try:
            return await fn(req)
        except NotFound as e:
            raise http.HTTPError(404, str(e).strip("'\""))
        except ImageNotFound as e:
            raise http.HTTPError(404, str(e).strip("'\""))
        except Conflict as e:
            raise http.HTTPError(409, str(e))
        except InvalidRequest as e:
            raise http.HTTPError(400, str(e))
        except NotModified:
            return http.empty(304)
        except StartError as e:
            raise http.HTTPError(400, str(e))
    wrapper.__name__ = fn.__name__
    return wrapper


class API:
    def __init__(self, engine, daemon_info: dict):
        self.engine = engine
        self.info_extra = daemon_info

    def register(self, s: "http.Server") -> None:
        from .validate import Guarded
        s = Guarded(s, http.HTTPError)  # every route below: query and body checked before the handler
        C = r"/containers/(?P<id>[^/]+)"
        routes = [
            ("GET", r"/_ping", self.ping),
            ("GET", r"/version", self.version),
            ("GET", r"/info", self.info),
            ("GET", r"/containers/json", self.containers_list),
            ("POST", r"/containers/create", self.containers_create),
            ("GET", C + r"/json", self.container_inspect),
            ("POST", C + r"/start", self.container_start),
            ("POST", C + r"/attach", self.container_attach),
            ("POST", C + r"/wait", self.container_wait),
            ("POST", C + r"/kill", self.container_kill),
            ("POST", C + r"/stop", self.container_stop),
            ("POST", C + r"/resize", self.container_resize),
            ("GET", C + r"/logs", self.container_logs),
            ("GET", C + r"/explain", self.container_explain),
            ("DELETE", C, self.container_delete),
        ]
        # Routes of their own modules (exec, more container verbs, events, system df).
        from . import api_containers, api_exec
        api_exec.register(self, s)
        api_containers.register(self, s)
        for method, pattern, handler in routes:
            s.route(method, pattern, errors(handler))
        api_images.register(self, s)  # images: list, inspect, tag, rmi, history, save/load, import, prune
        from . import api_cow
        api_cow.register(self, s)
        from . import api_cgroups
        api_cgroups.register(self, s)  # pause, unpause, stats (the cgroups chapter)
        from . import api_update
        api_update.register(self, s)  # docker update: live limits and restart policy
        from . import api_networks
        api_networks.register(self, s)  # networks: list, inspect, create, connect, disconnect, rm, prune
        from . import api_registry
        api_registry.register(self, s)  # pull, push, login (the registry chapter)
        from . import api_swarm
        api_swarm.register(self, s)  # swarm and plugins: answered as a dockerd not in swarm mode
        from . import api_build
        api_build.register(self, s)  # POST /build (the classic builder), /build/prune (chapter 13)
        from . import api_volumes
        api_volumes.register(self, s)  # /volumes (the volumes chapter)

    # ---- system ---------------------------------------------------------------------------------
    async def ping(self, req):
        return http.Response(200, b"OK", content_type="text/plain; charset=utf-8",
                             headers={"Builder-Version": "1", "Swarm": "inactive",
                                      "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"})

    async def version(self, req):
        u = os.uname()
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(u.machine, u.machine)
        details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": arch,
                   "GitCommit": "minidocker", "GoVersion": "python" + platform.python_version(),
                   "KernelVersion": u.release, "Experimental": "false", "BuildTime": ""}
        return http.json_response({
            "Platform": {"Name": "minidocker"},
            "Components": [{"Name": "Engine", "Version": __version__, "Details": details}],
            "Version": __version__, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "minidocker", "GoVersion": "python" + platform.python_version(), "Os": "linux",
            "Arch": arch, "KernelVersion": u.release, "BuildTime": ""})

    async def info(self, req):
        e = self.engine
        cs = list(e.containers.values())
        running = sum(1 for c in cs if c.state["Status"] == "running")
        paused = sum(1 for c in cs if c.state["Status"] == "paused")
        u = os.uname()
        mem = 0
        try:
            with open("/proc/meminfo") as f:
                mem = int(f.readline().split()[1]) * 1024
        except OSError:
            pass
        return http.json_response({
            "ID": self.info_extra.get("id", ""), "Containers": len(cs), "ContainersRunning": running,
            "ContainersPaused": paused, "ContainersStopped": len(cs) - running - paused,
            "Images": len(e.images.list()), "Driver": e.driver, "DriverStatus": [["Snapshots", e.snapshotter.root]],
            "Plugins": {"Volume": [], "Network": ["null"], "Authorization": None, "Log": ["json-file"]},
            "MemoryLimit": False, "SwapLimit": False, "PidsLimit": False, "IPv4Forwarding": False,
            "Debug": False, "NFd": len(os.listdir("/proc/self/fd")), "NGoroutines": len(asyncio.all_tasks()),
            "NEventsListener": len(e.events.subscribers),
            "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs", "CgroupVersion": self.info_extra.get("cgroup_version", ""),
            "KernelVersion": u.release, "OperatingSystem": self.info_extra.get("os", "Linux"), "OSType": "linux",
            "Architecture": u.machine, "NCPU": os.cpu_count(), "MemTotal": mem, "Name": u.nodename,
            "DockerRootDir": e.root, "ServerVersion": __version__, "Swarm": {"LocalNodeState": "inactive"},
            "Runtimes": {"minidocker": {"path": "minidocker-monitor"}}, "DefaultRuntime": "minidocker",
            "SecurityOptions": list(self.info_extra.get("security_options", [])), "Labels": [], "ExperimentalBuild": False, "Warnings": list(self.info_extra.get("warnings", [])),
            "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8"], "IndexConfigs": {}, "Mirrors": []}})

    # ---- containers -----------------------------------------------------------------------------
    async def containers_list(self, req):
        filters = parse_filters(req.query.get("filters"))
        return http.json_response(self.engine.list(all_=req.bool_param("all"), filters=filters,
                                                   limit=req.int_param("limit", -1)))

    async def containers_create(self, req):
        body = req.json()
        if body is None:
            raise http.HTTPError(400, "config cannot be empty in order to create a container")
        name = req.query.get("name") or None
        cid, warnings = await asyncio.to_thread(self.engine.create, body, name)
        return http.json_response({"Id": cid, "Warnings": warnings}, status=201)

    async def container_inspect(self, req):
        return http.json_response(self.engine.inspect(req.match["id"]))

    async def container_explain(self, req):
        """minidocker's own endpoint: the kernel calls starting this container would make."""
        from ..runtime.init import explain
        c = self.engine.get(req.match["id"])
        return http.json_response({"Id": c.id, "Transcript": explain(c.dir)})

    async def container_start(self, req):
        await self.engine.start(req.match["id"])
        return http.empty(204)

    async def container_attach(self, req):
        c = self.engine.get(req.match["id"])
        stream, logs = req.bool_param("stream", False), req.bool_param("logs", False)
        ctype = "application/vnd.docker.raw-stream" if c.cfg.tty else "application/vnd.docker.multiplexed-stream"
        reader, writer = await req.hijack(ctype)
        opts = {"stdin": req.bool_param("stdin"), "stdout": req.bool_param("stdout"),
                "stderr": req.bool_param("stderr"), "detach_keys": req.query.get("detachKeys")}
        if logs:  # dockerd replays the container's log first (daemon/attach.go), then streams
            for entry in parse_log_lines(read_from(os.path.join(c.dir, "container.log"), 0)[0]):
                s = entry.get("stream")
                if (s == "stdout" and opts["stdout"]) or (s == "stderr" and opts["stderr"]):
                    data = entry.get("log", "").encode()
                    writer.write(data if c.cfg.tty else wire.encode_frame(1 if s == "stdout" else 2, data))
            await writer.drain()
        self.engine.emit(c, "attach")
        if not stream:
            return None
        done = await self.engine.attach(c.id, reader, writer, opts)
        await done
        return None

    async def container_wait(self, req):
        c = self.engine.get(req.match["id"])
        condition = req.query.get("condition", "not-running")
        if condition not in ("", "not-running", "next-exit", "removed"):
            raise http.HTTPError(400, f"invalid condition: {condition}")
        task = asyncio.ensure_future(self.engine.wait(c.id, condition))
        stream = await req.start_stream(200, "application/json")
        try:
            code = await http.until_disconnected_or(req, task)
        except NotFound:
            # Removed between our lookup and the wait's (an auto-remove, a concurrent rm): it has
            # exited for good. The 200 head is out already: answer in the body, never cut it.
            code = c.state["ExitCode"]
        else:
            if code is None or not task.done():
                task.cancel()
                return None
        await stream.write_json({"StatusCode": code})  # dockerd omits Error when there is none
        await stream.close()
        return None

    async def container_kill(self, req):
        import signal
        from .lifecycle import signal_number
        c, sig = self.engine.get(req.match["id"]), req.query.get("signal") or "SIGKILL"
        # dockerd answers a SIGKILL only once the container has stopped (daemon/kill.go): an
        # `inspect` right after `kill` must not still say "running".
        exited = asyncio.get_running_loop().create_future()
        c.next_exit.append(exited)
        try:
            await self.engine.kill(c.id, sig)
            if signal_number(sig) == signal.SIGKILL:
                await asyncio.wait_for(asyncio.shield(exited), KILL_WAIT)
        except asyncio.TimeoutError:
            pass   # a process stuck in the kernel (D state): answer, as dockerd does after its wait
        finally:
            if exited in c.next_exit:
                c.next_exit.remove(exited)
        return http.empty(204)

    async def container_stop(self, req):
        timeout = req.int_param("t") if "t" in req.query else req.int_param("timeout")
        await self.engine.stop(req.match["id"], timeout, req.query.get("signal"))
        return http.empty(204)

    async def container_resize(self, req):
        c = self.engine.get(req.match["id"])
        if c.running:
            from ..runtime import monitor
            try:
                await asyncio.to_thread(monitor.request, c.dir, {"op": "resize", "h": req.int_param("h", 24),
                                                                 "w": req.int_param("w", 80)})
            except OSError:
                pass
        return http.Response(200, b"", content_type="text/plain; charset=utf-8")

    async def container_delete(self, req):
        await self.engine.remove(req.match["id"], force=req.bool_param("force"), volumes=req.bool_param("v"))
        return http.empty(204)

    async def container_logs(self, req):
        c = self.engine.get(req.match["id"])
        if ((c.request.get("HostConfig") or {}).get("LogConfig") or {}).get("Type") == "none":
            raise http.HTTPError(501, "configured logging driver does not support reading")
        want_out, want_err = req.bool_param("stdout"), req.bool_param("stderr")
        if not want_out and not want_err:
            raise http.HTTPError(400, "You must choose at least one stream")
        follow, timestamps = req.bool_param("follow"), req.bool_param("timestamps")
        from .events import parse_timestamp
        try:
            since, until = parse_timestamp(req.query.get("since")), parse_timestamp(req.query.get("until"))
        except ValueError as e:
            raise http.HTTPError(400, str(e))
        if since == 0:
            since = None
        tail = req.query.get("tail", "all")
        ctype = "application/vnd.docker.raw-stream" if c.cfg.tty else "application/vnd.docker.multiplexed-stream"
        stream = await req.start_stream(200, ctype)
        path = os.path.join(c.dir, "container.log")

        def render(entry: dict) -> bytes | None:
            s = entry.get("stream")
            if (s == "stdout" and not want_out) or (s == "stderr" and not want_err):
                return None
            if since is not None or until is not None:  # --since / --until (unix seconds)
                t = rfc3339_ns(entry.get("time", ""))
                if (since is not None and t < since) or (until is not None and t > until):
                    return None
            data = entry.get("log", "").encode()
            if timestamps:
                data = entry.get("time", "").encode() + b" " + data
            return data if c.cfg.tty else wire.encode_frame(1 if s == "stdout" else 2, data)

        # What is in the log now, and where following goes on, from ONE read: a line the monitor
        # appends between two separate reads would otherwise be neither sent nor followed.
        data, _ = read_from(path, 0)
        pos = data.rfind(b"\n") + 1  # whole lines only; one being written is read again by follow
        lines = [e for e in parse_log_lines(data[:pos]) if render(e) is not None]
        if tail not in ("all", "", None):
            n = int(tail) if str(tail).lstrip("-").isdigit() else -1
            if n >= 0:
                lines = lines[-n:] if n else []
        for entry in lines:
            out = render(entry)
            if out:
                await stream.write(out)
        if follow and c.running:
            exited = asyncio.get_running_loop().create_future()
            c.next_exit.append(exited)
            gone = asyncio.ensure_future(req.disconnected.wait())  # one waiter for the whole follow
            try:
                await self.follow_log(path, pos, render, stream, exited, gone, until)
            finally:
                gone.cancel()
            if req.disconnected.is_set():
                return None
        await stream.close()
        return None

    @staticmethod
    async def follow_log(path, pos, render, stream, exited, gone, until) -> None:
        """`logs -f`: new lines as the monitor appends them, until the container exits, the client
        goes away, or the time `--until` names has passed."""
        buf = b""
        while True:
            if gone.done() or (until is not None and time.time_ns() > until):
                return
            new, pos = read_from(path, pos)
            buf += new
            *complete, buf = buf.split(b"\n")
            for raw in complete:
                try:
                    out = render(json.loads(raw))
                except ValueError:
                    continue
                if out:
                    await stream.write(out)
            if exited.done():
                new, pos = read_from(path, pos)
                if not new:
                    return
                buf += new
                continue
            await asyncio.wait([exited, gone], timeout=0.1, return_when=asyncio.FIRST_COMPLETED)

    # ---- images ---------------------------------------------------------------------------------


def rfc3339_ns(ts: str) -> int:
    """``2026-11-29T01:02:03.123456789Z`` -> integer nanoseconds (exact: floats lose the last digits,
    and ``--since`` with a copied timestamp must include that very line)."""
    import calendar
    base, _, frac = ts.rstrip("Z").partition(".")
    try:
        secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0
    return secs * 1_000_000_000 + int((frac + "000000000")[:9])


def parse_log_lines(data: bytes) -> list[dict]:
    out = []
    for raw in data.splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue
    return out


def read_from(path: str, pos: int) -> tuple[bytes, int]:
    try:
        with open(path, "rb") as f:
            f.seek(pos)
            data = f.read()
            return data, pos + len(data)
    except FileNotFoundError:
        return b"", pos
