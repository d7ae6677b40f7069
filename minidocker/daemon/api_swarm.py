"""Swarm and plugin routes, answered as a dockerd that is not in swarm mode and has no plugins.

What this teaches
-----------------
A client tells "this daemon has no such feature" from "this daemon is not in that mode" by status and
message, not by a 404 (which reads as "no such object" or "wrong API path"). A dockerd that never ran
``docker swarm init`` answers every cluster endpoint (``/swarm``, ``/nodes``, ``/services``, ``/tasks``,
``/secrets``, ``/configs``) with 503 and the message below (``daemon/cluster/cluster.go`` in moby), and
``docker info`` shows ``Swarm: inactive``; ``docker plugin ls`` is an empty list. minidockerd behaves the
same; creating a swarm or installing a plugin is refused (501), not half-done.
"""
from __future__ import annotations

from .. import http

NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" '
               'to connect this node to swarm and try again.')
NOT_IN_SWARM = "This node is not part of a swarm"


def register(api, server) -> None:
    async def not_manager(req):
        raise http.HTTPError(503, NOT_MANAGER)

    async def not_in_swarm(req):
        raise http.HTTPError(503, NOT_IN_SWARM)

    async def no_swarm_mode(req):
        raise http.HTTPError(501, "minidockerd does not support swarm mode")

    async def plugins(req):
        return http.json_response([])

    async def no_such_plugin(req):
        raise http.HTTPError(404, f'plugin "{req.match["name"]}" not found')

    async def no_plugins(req):
        raise http.HTTPError(501, "minidockerd does not support plugins")

    cluster = r"/(?:nodes|services|tasks|secrets|configs)(?:/.*)?"
    P = r"/plugins/(?P<name>.+)"
    routes = [
        ("POST", r"/swarm/(?:init|join)", no_swarm_mode),
        ("POST", r"/swarm/leave", not_in_swarm),
        ("GET", r"/swarm(?:/unlockkey)?", not_manager),
        ("POST", r"/swarm/(?:update|unlock)", not_manager),
        *[(m, cluster, not_manager) for m in ("GET", "POST", "DELETE")],
        ("GET", r"/plugins", plugins),
        ("GET", r"/plugins/privileges", no_plugins),
        ("POST", r"/plugins/(?:pull|create)", no_plugins),
        ("GET", P + r"/json", no_such_plugin),
        ("DELETE", P, no_such_plugin),
        ("POST", P + r"/(?:enable|disable|push|set|upgrade)", no_such_plugin),
    ]
    for method, pattern, handler in routes:
        server.route(method, pattern, handler)
