"""Attach and wait: a client's connection joined to a container's stdio, and told of its exit.

What this teaches
-----------------
``POST /containers/{id}/attach`` hijacks the HTTP connection (API v1.50, "Attach to a
container"): after the 101 the socket carries the container's output (8-byte framed unless it has
a TTY; ``wire.encode_frame``) one way and the client's stdin the other. The daemon does not hold
the container's stdio — its monitor (``runtime/monitor.py``) does, so a container outlives the
daemon — and the engine only pipes the client's socket to a monitor connection
(:func:`pipe_streams`). A client that attaches before ``start`` (``docker run`` does) is queued and
connected *before* the process execs, so no output is lost.

``POST /containers/{id}/wait`` answers with the exit code for the condition asked: ``not-running``
(now if it is not running), ``next-exit`` (``docker run`` asks before it starts the container) or
``removed`` (``docker run --rm``). Each is a future kept on the container and completed when the
exit (or the removal) is recorded.
"""
from __future__ import annotations

import asyncio
import json

from ..runtime import monitor
from . import state as states
from .errors import InvalidRequest

_background: set[asyncio.Task] = set()


class Streams:
    """The engine's attach and wait (a mixin of ``engine.Engine``)."""

    async def connect_attach(self, c, reader, writer, opts: dict, done: asyncio.Future) -> None:
        """Join a hijacked client connection to the monitor's stream for this container."""
        try:
            sock = await asyncio.to_thread(monitor.connect_ctl, c.dir, 5)
            sock.setblocking(False)
            mreader, mwriter = await asyncio.open_unix_connection(sock=sock)
            mwriter.write(json.dumps({"op": "attach", **opts}).encode() + b"\n")
            await mwriter.drain()
            ok = await mreader.readline()
            if ok.strip() != b"ok":
                raise OSError("container is not running")
        except OSError:
            if not done.done():
                done.set_result(None)
            return
        background(pipe_streams(reader, writer, mreader, mwriter, opts.get("stdin", False), done))

    async def attach(self, ref: str, reader, writer, opts: dict) -> asyncio.Future:
        """Returns a future that completes when the attach stream ends."""
        c = self.get(ref)
        done = asyncio.get_running_loop().create_future()
        if c.state["Status"] in (states.CREATED, states.RESTARTING) or (c.state["Status"] == states.EXITED and c.lock.locked()):
            c.pending_attach.append((reader, writer, opts, done))
        elif c.running:
            await self.connect_attach(c, reader, writer, opts, done)
        else:
            # Exited for good (no start under way): dockerd copies nothing and the stream ends at
            # once; a client asking logs=1 has had its replay already.
            done.set_result(None)
        return done

    async def wait(self, ref: str, condition: str) -> int:
        c = self.get(ref)
        loop = asyncio.get_running_loop()
        if condition in ("", "not-running"):
            if not c.running and c.state["Status"] != states.CREATED:
                return c.state["ExitCode"]
            if c.state["Status"] == states.CREATED and condition == "not-running":
                return c.state["ExitCode"]
            f = loop.create_future()
            c.next_exit.append(f)
            return await f
        if condition == "next-exit":
            f = loop.create_future()
            c.next_exit.append(f)
            return await f
        if condition == "removed":
            f = loop.create_future()
            c.removed.append(f)
            return await f
        raise InvalidRequest(f"invalid condition: {condition!r}")


def background(coro) -> asyncio.Task:
    """Run ``coro`` as a fire-and-forget task *and keep it alive*. The event loop holds tasks only
    weakly: a task nobody references can be garbage-collected while it is still waiting ("Task was
    destroyed but it is pending!"), which silently cut attach streams before this existed."""
    task = asyncio.create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def pipe_streams(creader, cwriter, mreader, mwriter, with_stdin: bool, done: asyncio.Future) -> None:
    """Copy monitor -> client until the monitor closes; client -> monitor (stdin) until client EOF.

    The client may half-close at once (the docker CLI does when it has no stdin): that only ends the
    stdin direction; output keeps flowing until the container's stream ends."""
    async def upstream():
        try:
            while True:
                data = await creader.read(65536)
                if not data:
                    break
                if with_stdin:
                    mwriter.write(data)
                    await mwriter.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                if mwriter.can_write_eof():
                    mwriter.write_eof()
            except OSError:
                pass

    up = asyncio.create_task(upstream())
    try:
        while True:
            data = await mreader.read(65536)
            if not data:
                break
            cwriter.write(data)
            await cwriter.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        up.cancel()
        for w in (mwriter, cwriter):
            try:
                w.close()
            except Exception:
                pass
        if not done.done():
            done.set_result(None)
