"""More container routes — restart, rename, top, prune, archive (``docker cp``) — and the
system-wide ``GET /events`` and ``GET /system/df``. Shapes and status codes follow dockerd (API v1.50).

``/events`` is the long-poll of long-polls: the headers go out at once, then one JSON object per
event, for as long as the client stays (or until ``until``). Past events come from the engine's ring
(``since``), new ones from a subscription taken *before* the history is sent, so nothing falls in
between.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import signal
import time

from ..runtime import archive
from . import events as ev
from . import state as states
from .. import http
from .views import dir_size, graph_driver
from .validate import Invalid, check_tar_head, parse_filters

log = logging.getLogger("minidockerd")


def register(api, server) -> None:
    from .api import errors
    from .api_images import summary as image_summary
    engine = api.engine
    C = r"/containers/(?P<id>[^/]+)"

    async def restart(req):
        timeout = req.int_param("t") if "t" in req.query else req.int_param("timeout")
        await engine.restart(req.match["id"], timeout, req.query.get("signal"))
        return http.empty(204)

    async def rename(req):
        engine.rename(req.match["id"], req.query.get("name", ""))
        return http.empty(204)

    async def top(req):
        c = engine.get(req.match["id"])
        if c.state["Status"] not in states.LIVE:
            raise http.HTTPError(409, f"Container {c.id} is not running")
        return http.json_response(await asyncio.to_thread(processes, c.state["Pid"]))

    async def prune(req):
        filters = parse_filters(req.query.get("filters"))
        try:
            deleted, reclaimed = await engine.prune(filters)
        except ValueError as e:
            raise http.HTTPError(400, str(e))
        return http.json_response({"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed})

    async def run_helper(c, mode: str, path: str, stdin: bool = False):
        pid = c.state["Pid"] if c.state["Status"] in states.LIVE else 0
        proc = await asyncio.create_subprocess_exec(
            *archive.helper_argv(mode, c.dir, pid, path), stdin=asyncio.subprocess.PIPE if stdin else
            asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        return proc

    def helper_error(c, rc: int, err: bytes, path: str):
        msg = err.decode(errors="replace").strip()
        if rc == 2:
            raise http.HTTPError(404, f"Could not find the file {path} in container {c.name}")
        if rc == 3:
            raise http.HTTPError(400, msg)
        last = msg.splitlines()[-1] if msg else f"archive helper failed ({rc})"
        if last.startswith("tarfile."):  # the body was not (all) a tar stream
            raise http.HTTPError(400, "Error processing tar file: " + last.partition(": ")[2])
        log.warning("archive helper for %s failed (%s): %s", c.name, rc, msg)  # a traceback stays here
        raise http.HTTPError(500, last)

    async def stat_of(c, path: str) -> dict:
        proc = await run_helper(c, "stat", path)
        out, err = await proc.communicate()
        if proc.returncode:
            helper_error(c, proc.returncode, err, path)
        return json.loads(out)

    def stat_header(st: dict) -> dict:
        return {"X-Docker-Container-Path-Stat": base64.b64encode(json.dumps(st).encode()).decode()}

    async def archive_head(req):
        c = engine.get(req.match["id"])
        path = require_path(req)
        st = await stat_of(c, path)
        return http.Response(200, b"", headers=stat_header(st), content_type="application/x-tar")

    async def archive_get(req):
        if req.method == "HEAD":
            return await archive_head(req)
        c = engine.get(req.match["id"])
        path = require_path(req)
        st = await stat_of(c, path)
        proc = await run_helper(c, "get", path)
        stream = await req.start_stream(200, "application/x-tar", headers=stat_header(st))
        try:
            while True:
                chunk = await proc.stdout.read(65536)
                if not chunk:
                    break
                await stream.write(chunk)
            rc = await proc.wait()  # reaped by asyncio's watcher: killing it now would reap it behind its back
        finally:
            if proc.returncode is None:  # the client went away: stop the helper (os.kill: Popen.kill polls)
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                await proc.wait()
        if rc:  # too late for an error status: the error cuts the stream short (no last chunk)
            err = await proc.stderr.read()
            log.warning("archive helper for %s failed (%s): %s", c.name, rc, err.decode(errors="replace"))
            raise http.HTTPError(500, f"archive helper failed ({rc})")
        await stream.close()
        return None

    async def archive_put(req):
        c = engine.get(req.match["id"])
        path = require_path(req)
        with req.open_body() as f:  # only its first block: the body streams into the helper
            head = f.read(512)
        try:
            check_tar_head(head)
        except Invalid as e:
            raise http.HTTPError(400, str(e))
        proc = await run_helper(c, "put", path, stdin=True)
        _, _, err = await asyncio.gather(req.write_body_to(proc.stdin), proc.stdout.read(),
                                         proc.stderr.read())  # the body goes in in pieces
        await proc.wait()
        if proc.returncode:
            helper_error(c, proc.returncode, err, path)
        return http.Response(200, b"", content_type="text/plain; charset=utf-8")

    async def events(req):
        filters = parse_filters(req.query.get("filters"))
        try:
            since, until = ev.parse_timestamp(req.query.get("since")), ev.parse_timestamp(req.query.get("until"))
        except ValueError as e:
            raise http.HTTPError(400, str(e))
        names = {c.id: c.name for c in engine.containers.values()}
        queue = engine.events.subscribe()  # before the history: nothing slips in between
        try:
            stream = await req.start_stream(200, "application/json")
            sent = set()
            for e in engine.events.history(since, until) if since is not None else []:
                if ev.matches(e, filters, names):
                    sent.add(id(e))
                    await stream.write_json(e)
            if until is not None and until <= time.time_ns():
                await stream.close()
                return None
            while True:
                timeout = None if until is None else max(0.0, (until - time.time_ns()) / 1e9)
                getter = asyncio.ensure_future(queue.get())
                gone = asyncio.ensure_future(req.disconnected.wait())
                done, _ = await asyncio.wait({getter, gone}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                gone.cancel()
                if getter not in done:
                    getter.cancel()
                    if req.disconnected.is_set():
                        return None
                    break  # until reached
                e = getter.result()
                if id(e) in sent:
                    continue
                if until is not None and e["timeNano"] > until:
                    break
                names.update({c.id: c.name for c in engine.containers.values()})
                if ev.matches(e, filters, names):
                    await stream.write_json(e)
            await stream.close()
            return None
        finally:
            engine.events.unsubscribe(queue)

    async def system_df(req):
        cs, images = [], []
        used: dict[str, int] = {}
        for c in engine.containers.values():
            s = engine.summary(c)
            s["SizeRw"] = await asyncio.to_thread(dir_size, graph_driver(c)["Data"].get("UpperDir", ""))
            s["SizeRootFs"] = s["SizeRw"]
            cs.append(s)
            used[c.cfg.image_id] = used.get(c.cfg.image_id, 0) + 1
        layers = 0
        for img in engine.images.list():
            s = image_summary(img)
            s["Containers"] = used.get(img.id, 0)
            s["SharedSize"] = 0
            layers += img.size
            images.append(s)
        vols = [engine.volumes.inspect(n, usage=True) for n in engine.volumes.names()]
        return http.json_response({"LayersSize": layers, "Images": images, "Containers": cs,
                                   "Volumes": vols, "BuildCache": []})

    for method, pattern, handler in (
            ("POST", C + r"/restart", restart),
            ("POST", C + r"/rename", rename),
            ("GET", C + r"/top", top),
            ("POST", r"/containers/prune", prune),
            ("HEAD", C + r"/archive", archive_head),
            ("GET", C + r"/archive", archive_get),
            ("PUT", C + r"/archive", archive_put),
            ("GET", r"/events", events),
            ("GET", r"/system/df", system_df)):
        server.route(method, pattern, errors(handler))


def require_path(req) -> str:
    path = req.query.get("path", "")
    if not path:
        raise http.HTTPError(400, "path is required")
    return path


def processes(pid1: int) -> dict:
    """``docker top``: every process in the container's pid namespace, as ``ps -ef`` columns
    (host pids, as docker shows them)."""
    def read(path):
        with open(path) as f:
            return f.read()

    try:
        target = os.readlink(f"/proc/{pid1}/ns/pid")
    except OSError:
        return {"Titles": [], "Processes": []}
    hz = os.sysconf("SC_CLK_TCK")
    boot = time.time() - float(read("/proc/uptime").split()[0])
    rows = []
    for p in sorted((int(x) for x in os.listdir("/proc") if x.isdigit())):
        try:
            if os.readlink(f"/proc/{p}/ns/pid") != target:
                continue
            st = read(f"/proc/{p}/stat")
            fields = st[st.rindex(")") + 2:].split()
            ppid, utime, stime, start = int(fields[1]), int(fields[11]), int(fields[12]), int(fields[19])
            uid = int(next(line.split()[1] for line in read(f"/proc/{p}/status").splitlines()
                           if line.startswith("Uid:")))
            cmd = read(f"/proc/{p}/cmdline").replace("\0", " ").strip() or "[" + st[st.index("(") + 1:st.rindex(")")] + "]"
        except (OSError, ValueError, StopIteration):
            continue
        cpu = (utime + stime) // hz
        stime_s = time.strftime("%H:%M", time.localtime(boot + start / hz))
        rows.append([user_name(uid), str(p), str(ppid), "0", stime_s, "?",
                     f"{cpu // 3600:02d}:{cpu % 3600 // 60:02d}:{cpu % 60:02d}", cmd])
    return {"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], "Processes": rows}


def user_name(uid: int) -> str:
    import pwd
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
