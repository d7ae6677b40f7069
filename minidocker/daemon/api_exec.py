"""Exec routes: ``POST /containers/ID/exec``, ``POST /exec/ID/start`` (hijacked), ``GET /exec/ID/json``,
``POST /exec/ID/resize`` — the same shapes and status codes as dockerd (API v1.50 "Exec")."""
from __future__ import annotations

from .. import http, wire
from . import execs


def register(api, server) -> None:
    from .api import errors
    engine = api.engine

    async def exec_create(req):
        body = req.json()
        if body is None:
            raise http.HTTPError(400, "config cannot be empty in order to create an exec")
        ex = execs.create(engine, req.match["id"], body)
        return http.json_response({"Id": ex.id}, status=201)

    async def exec_start(req):
        ex = execs.get(engine, req.match["eid"])
        body = req.json() or {}
        if not isinstance(body, dict):
            raise http.HTTPError(400, "invalid JSON: the request body must be an object")
        console = body.get("ConsoleSize")
        console = console if console and any(console) else None
        if body.get("Detach"):
            try:
                await execs.start(engine, ex, None, console)
            except execs.ExecStartError as e:
                raise http.HTTPError(500, str(e))
            return http.Response(200, b"", content_type="application/json")
        if ex.started:
            raise http.HTTPError(409, f"Error: Exec command {ex.id} has already run")
        if ex.container.state["Status"] != "running":
            raise http.HTTPError(409, f"Container {ex.container.id} is not running")
        # dockerd frames (or not) by the Tty of THIS request, whatever the exec was created with
        # (api/server/router/container/exec.go): the process gets its pty from the create, the
        # client its framing from the start.
        raw = bool(body.get("Tty"))
        reader, writer = await req.hijack(http.RAW_STREAM if raw else http.MULTIPLEXED)
        opts = {"stdin": ex.cfg.open_stdin, "stdout": bool(ex.body.get("AttachStdout", True)),
                "stderr": bool(ex.body.get("AttachStderr", True)), "detach_keys": ex.body.get("DetachKeys"),
                "raw": raw}
        try:
            done = await execs.start(engine, ex, (reader, writer, opts), console)
        except (execs.ExecStartError, Exception) as e:
            # Too late for a status code: say it on the stream (stderr frame, or raw with a TTY).
            msg = f"OCI runtime exec failed: {e}\n".encode()
            writer.write(msg if raw else wire.encode_frame(2, msg))
            await writer.drain()
            return None
        await done
        return None

    async def exec_inspect(req):
        return http.json_response(execs.get(engine, req.match["eid"]).inspect())

    async def exec_resize(req):
        ex = execs.get(engine, req.match["eid"])
        await execs.resize(ex, req.int_param("h", 24), req.int_param("w", 80))
        return http.Response(200, b"", content_type="text/plain; charset=utf-8")

    for method, pattern, handler in (
            ("POST", r"/containers/(?P<id>[^/]+)/exec", exec_create),
            ("POST", r"/exec/(?P<eid>[^/]+)/start", exec_start),
            ("GET", r"/exec/(?P<eid>[^/]+)/json", exec_inspect),
            ("POST", r"/exec/(?P<eid>[^/]+)/resize", exec_resize)):
        server.route(method, pattern, errors(handler))
