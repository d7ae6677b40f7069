"""HTTP/1.1 for minidockerd and the registry server: h11 for the syntax, asyncio for the sockets.

What this teaches
-----------------
Docker's API is plain HTTP/1.1 (RFC 9110 semantics, RFC 9112 syntax), usually on a UNIX socket, and
the registry's is HTTP/1.1 on TCP. Both use three corners of the protocol that web frameworks hide
or forbid, and the real clients (the docker CLI, docker-py, skopeo) depend on all three:

* **Keep-alive framing.** One connection carries many requests, so every message says where its
  body ends: ``Content-Length``, or ``Transfer-Encoding: chunked`` (``docker build`` uploads its
  context chunked; streamed responses go out chunked).
* **Streams and long-polls.** ``pull``, ``events``, ``logs -f`` and ``wait`` answer with a body that
  grows over time; the headers of ``wait`` must leave at once (the CLI sends ``start`` only then).
* **Leaving HTTP.** ``attach`` and ``exec start`` ask ``Connection: Upgrade`` / ``Upgrade: tcp``;
  the answer is ``101 UPGRADED`` and then raw bytes both ways. The client half-closes its side
  when its stdin ends and still expects all the output.

The parsing is h11's (``server.py`` says why a library beats hand-written code there); the
request/response model handlers use is in ``request.py`` and ``message.py``. Docker-specific
conventions (API versions, stream framing, error bodies) are in ``minidocker/wire.py``.

Usage::

    app = Server()

    async def inspect(req):
        return json_response({"Id": req.match["id"]})

    app.route("GET", r"/containers/(?P<id>[^/]+)/json", inspect)
    await app.serve_unix("/run/minidocker.sock")
    await app.serve_forever()
"""
from ..wire import MULTIPLEXED, RAW_STREAM
from .message import (Body, ClientDisconnected, Headers, HTTPError, Response, empty, error_response,
                      json_response)
from .request import Request, Stream, until_disconnected_or
from .server import Server

__all__ = ["Body", "ClientDisconnected", "Headers", "HTTPError", "MULTIPLEXED", "RAW_STREAM", "Request",
           "Response", "Server", "Stream", "empty", "error_response", "json_response", "until_disconnected_or"]
