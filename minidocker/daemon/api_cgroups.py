"""API routes of the cgroups chapter: pause, unpause, stats (Docker Engine API v1.50).

* ``POST /containers/{id}/pause`` / ``unpause`` -> 204; the freezer (v1) or ``cgroup.freeze`` (v2)
  stops every process of the container without a signal it could notice; state "paused" (a
  move of the state machine, ``state.transition``: events ``pause`` / ``unpause``).
* ``GET /containers/{id}/stats?stream=1|0&one-shot=0|1`` -> docker's StatsResponse, one JSON object
  per second while streaming. Without ``one-shot``, ``stream=0`` waits for a second sample so that
  ``precpu_stats`` is filled (docker's behaviour: the CPU % needs two samples).
"""
from __future__ import annotations

import asyncio
import json

from .. import runtime
from .. import http
from .state import check

SAMPLE_INTERVAL = 1.0


def register(api, server) -> None:
    from .api import errors
    engine = api.engine
    C = r"/containers/(?P<id>[^/]+)"

    async def pause(req):
        c = engine.get(req.match["id"])
        async with c.lock:
            check(c, "pause")  # docker's 409: not running, already paused, restarting
            await asyncio.to_thread(runtime.resources.pause, c.cfg)
            engine.transition(c, "pause")
        return http.empty(204)

    async def unpause(req):
        c = engine.get(req.match["id"])
        async with c.lock:
            check(c, "unpause")
            await asyncio.to_thread(runtime.resources.unpause, c.cfg)
            engine.transition(c, "unpause")
        return http.empty(204)

    async def stats(req):
        c = engine.get(req.match["id"])
        streaming = req.bool_param("stream") if "stream" in req.query else True
        one_shot = req.bool_param("one-shot")

        def sample(pre):
            return runtime.resources.stats(c.cfg, c.running, pre)

        if not streaming:
            s = await asyncio.to_thread(sample, None)
            if not one_shot and c.running:
                await asyncio.sleep(SAMPLE_INTERVAL)
                s = await asyncio.to_thread(sample, s)
            return http.json_response(s)
        stream = await req.start_stream(200, "application/json")
        pre = None
        while not req.disconnected.is_set():
            pre = await asyncio.to_thread(sample, pre)
            await stream.write(json.dumps(pre).encode() + b"\n")
            if not c.running:
                break
            try:
                await asyncio.wait_for(req.disconnected.wait(), SAMPLE_INTERVAL)
            except asyncio.TimeoutError:
                pass
        if not req.disconnected.is_set():
            await stream.close()
        return None

    for method, pattern, handler in (("POST", C + r"/pause", pause), ("POST", C + r"/unpause", unpause),
                                     ("GET", C + r"/stats", stats)):
        server.route(method, pattern, errors(handler))
