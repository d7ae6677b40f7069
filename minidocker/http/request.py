"""One request as a handler sees it, and the three ways to answer it.

What this teaches
-----------------
A handler returns a :class:`~minidocker.http.message.Response` (the common case), or answers in
pieces:

* ``await req.start_stream()`` sends the status line and header fields *now* and returns a
  :class:`Stream` for a body that grows over time (chunked transfer coding, RFC 9112 §7.1): pull
  progress, ``events``, ``logs -f``, and ``wait``, whose headers the docker CLI needs before it sends
  ``start``;
* ``await req.hijack()`` leaves HTTP altogether (``attach``, ``exec start``): ``101 UPGRADED``, then
  raw bytes both ways on the socket.

While a stream is open the client may hang up (``docker run -d`` abandons its ``wait``, Ctrl-C on
``logs -f``). An HTTP client sends nothing more until it has the whole response, so we read the
connection in the background and take end-of-file as "gone" (Go's net/http does the same):
``req.disconnected`` and :func:`until_disconnected_or`.
"""
from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

import h11

from .. import wire
from .message import Body, Headers, HTTPError

if TYPE_CHECKING:
    from .server import Server, _Connection


class Stream:
    """The body of a streaming response; made by ``await req.start_stream(...)``, headers already sent."""

    def __init__(self, req: "Request"):
        self._req = req
        self._conn = req._conn
        self._silent = req.method == "HEAD"  # a HEAD response has headers only
        self.closed = False

    async def write(self, data: bytes) -> None:
        """Send ``data`` as one chunk and wait until the socket has taken it (back-pressure)."""
        if self.closed:
            raise RuntimeError("write to a closed stream")
        if not data or self._silent:  # an empty chunk would mean "end of body", so never send one here
            return
        await self._conn.send(h11.Data(data=data))

    async def write_json(self, obj) -> None:
        """One line of newline-delimited JSON (pull/push/build progress, events, wait's result)."""
        await self.write(json.dumps(obj).encode() + b"\n")

    async def close(self) -> None:
        """End the body (the zero-size last chunk). The connection is then free for the next request."""
        if self.closed:
            return
        self.closed = True
        self._req.finished = True
        await self._req._stop_watching()
        await self._conn.send(h11.EndOfMessage())


class Request:
    """One request, read completely (head and body) before its handler runs.

    ``raw_path`` is the path as sent; ``path`` is percent-decoded with any ``/vX.Y`` prefix removed
    (that X.Y is in ``version``); ``query`` has the first value of each parameter, ``query_all`` every
    value. The body: ``req.body`` (bytes: small bodies), or ``req.body_size``, ``req.open_body()``,
    ``await req.save_body(path)`` for bodies that may be large (they wait in a temporary file).
    """

    def __init__(self, server: "Server", conn: "_Connection", method: str, target: str,
                 http_version: str, headers: Headers, body: Body | bytes = b""):
        self.server = server
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        self._body = body if isinstance(body, Body) else Body(data=body)
        self.match: re.Match | None = None
        self._conn = conn

        parts = urlsplit(target)
        self.raw_path = parts.path or "/"
        self.version, self.path = wire.split_version(unquote(self.raw_path))
        self.query_all: dict[str, list[str]] = parse_qs(parts.query, keep_blank_values=True)
        self.query: dict[str, str] = {k: v[0] for k, v in self.query_all.items()}

        self.status: int | None = None
        self.responded = False  # status line sent (by the server, start_stream or hijack)
        self.finished = False  # the whole response has been sent
        self.hijacked = False
        self.stream: Stream | None = None
        self._json_cache = ...
        self._disconnected = asyncio.Event()
        self._watcher: asyncio.Task | None = None

    # ---- reading the request ---------------------------------------------------------------

    @property
    def params(self) -> dict[str, str]:
        """The named groups of the route's pattern, e.g. ``{"id": "web"}``."""
        return self.match.groupdict() if self.match else {}

    @property
    def body(self) -> bytes:
        """The whole body as bytes. Routes that accept large bodies use open_body/save_body instead."""
        return self._body.bytes()

    @property
    def body_size(self) -> int:
        return self._body.size

    def open_body(self):
        """The body as a binary file object (read it in pieces; close it when done)."""
        return self._body.open()

    async def save_body(self, path: str) -> None:
        """Move the body to ``path`` (a rename when it was spooled to disk)."""
        await asyncio.to_thread(self._body.save, path)

    async def append_body_to(self, path: str) -> None:
        """Append the body to the file at ``path``, in pieces."""
        await asyncio.to_thread(self._body.append_to, path)

    async def write_body_to(self, writer: asyncio.StreamWriter, close: bool = True) -> None:
        """Copy the body into ``writer`` (a helper process's stdin) in pieces, then close it.
        A writer whose reader went away (the helper exited early) ends the copy quietly."""
        try:
            with self.open_body() as f:
                while chunk := await asyncio.to_thread(f.read, 1 << 20):
                    writer.write(chunk)
                    await writer.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            if close:
                writer.close()

    def json(self):
        """The body parsed as JSON; None when the body is empty; HTTPError 400 when malformed."""
        if self._json_cache is ...:
            data = self.body
            if not data.strip():
                self._json_cache = None
            else:
                try:
                    self._json_cache = json.loads(data)
                except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
                    raise HTTPError(400, f"invalid JSON: {e}") from None
                except RecursionError:
                    raise HTTPError(400, "invalid JSON: nested too deeply") from None
        return self._json_cache

    def replace_json(self, value) -> None:
        """Make ``json()`` return ``value``: a checked body, handed on by whoever checked it (the
        daemon's validator gives handlers the body decoded with Go's rules, in the API's spelling)."""
        self._json_cache = value

    def bool_param(self, name: str, default: bool = False) -> bool:
        """dockerd's rule (wire.api_bool): false iff "", 0, no, false or none (any case); absent -> default."""
        return wire.api_bool(self.query.get(name), default)

    def int_param(self, name: str, default: int | None = None) -> int | None:
        """An integer parameter; absent or empty -> default; anything else unparsable -> HTTPError 400."""
        value = self.query.get(name, "").strip()
        if value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise HTTPError(400, f"invalid value for {name}: {value!r} is not an integer") from None

    @property
    def wants_upgrade(self) -> bool:
        """Did the client ask to leave HTTP (``Connection: Upgrade`` + ``Upgrade: tcp``)?"""
        return "upgrade" in self.headers.tokens("Connection") and "Upgrade" in self.headers

    @property
    def keep_alive(self) -> bool:
        """HTTP/1.1 keeps the connection unless ``Connection: close``; HTTP/1.0 only with keep-alive."""
        tokens = self.headers.tokens("Connection")
        if "close" in tokens:
            return False
        return self.http_version != "HTTP/1.0" or "keep-alive" in tokens

    # ---- noticing that the client went away ---------------------------------------------------

    @property
    def disconnected(self) -> asyncio.Event:
        """Set when the client closes the connection while this request is being answered.

        Looking at this property (or starting a stream, or calling ``until_disconnected_or``)
        starts the background read.
        """
        self._start_watching()
        return self._disconnected

    def _start_watching(self) -> None:
        if self._watcher is None and not self.hijacked and not self.finished:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        try:
            while True:
                data = await self._conn.reader.read(65536)
                if not data:
                    break
                # A client that pipelines (sends its next request before this response is done)
                # is legal HTTP/1.1, but we do not read ahead: we keep the bytes (a hijack hands
                # them on) and close the connection after this response; RFC 9112 §9.3.2 tells such
                # clients to retry unanswered requests on a new connection.
                self._conn.stray += data
        except (ConnectionError, OSError):
            pass
        self._disconnected.set()

    async def _stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()  # a pending read is cancelled without losing buffered bytes
            try:
                await self._watcher
            except asyncio.CancelledError:
                pass

    # ---- answering in pieces: streams and hijacks ----------------------------------------------

    async def start_stream(self, status: int = 200, content_type: str | None = "application/json",
                           headers: dict | None = None) -> Stream:
        """Send the status line and headers now; return a Stream for the body.

        The handler then writes with ``stream.write``/``write_json``, closes it, and returns None.
        (h11 picks the framing: chunked for HTTP/1.1 clients, until-close for HTTP/1.0.)
        """
        if self.responded:
            raise RuntimeError("response already started")
        fields = self.server.base_headers()
        if content_type:
            fields["Content-Type"] = content_type
        fields.update(headers or {})
        self.responded = True
        self.status = status
        await self._conn.send_head(status, fields)  # the headers leave now, before any of the body exists
        self.stream = Stream(self)
        if self.method != "HEAD":
            self._start_watching()
        return self.stream

    async def hijack(self, content_type: str = wire.MULTIPLEXED, first_write_delay: float = 0.015
                     ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Leave HTTP: answer ``101 UPGRADED`` and hand over the raw connection.

        Returns the connection's (reader, writer). Bytes the client sent after the request are
        already waiting in the reader. The server writes nothing more on this connection, and
        closes it when the handler returns. The client may half-close at any time (EOF on the
        reader); the writer keeps working until the handler is done.

        A client that did not ask for an upgrade gets dockerd's old answer, ``200 OK`` with a raw
        stream as the body, ended by closing the connection.

        ``first_write_delay``: after the 101 head is flushed, wait this long before returning.
        docker-py reads hijacked output from the raw socket and loses whatever bytes its
        http.client had buffered together with the 101 head (docker-py issues #3332, #2042), so
        the first output must not follow the head too closely. Pass 0 when no output can be ready
        yet (attach before start); subscribe to output *before* calling hijack so nothing is missed.
        """
        if self.responded:
            raise RuntimeError("response already started")
        await self._stop_watching()
        self.responded = True
        self.hijacked = True
        fields = {"Content-Type": content_type, **self.server.extra_headers}
        if self.wants_upgrade:
            self.status = 101
            await self._conn.send_upgrade({"Content-Type": content_type, "Connection": "Upgrade",
                                           "Upgrade": "tcp", **self.server.extra_headers})
        else:
            self.status = 200
            await self._conn.send_raw_stream_head({**fields, "Content-Type": wire.RAW_STREAM})
        reader = self._conn.hijacked_reader()
        if first_write_delay:
            await asyncio.sleep(first_write_delay)
        return reader, self._conn.writer


async def until_disconnected_or(req: Request, awaitable):
    """Await ``awaitable``, unless the client hangs up first: then return None.

    Typical in a long-poll (``wait``, ``logs -f``, ``events``)::

        stream = await req.start_stream()
        code = await until_disconnected_or(req, container_exit)   # a Future, a Task or a coroutine
        if req.disconnected.is_set():
            return None                      # nobody to tell; the server closes the connection
        await stream.write_json({"StatusCode": code})

    (None is also what you get if the awaitable itself returns None: ``req.disconnected`` tells the
    two apart.) A coroutine passed here is run as a task and cancelled if the client leaves. A Task
    or Future passed in is *not* cancelled -- it may be shared with other waiters -- so cancel your
    own task yourself if it should stop. Alternatively raise ``ClientDisconnected``: the server
    closes the connection quietly.
    """
    owned = asyncio.iscoroutine(awaitable)  # only what we started ourselves is ours to cancel
    work = asyncio.ensure_future(awaitable)
    gone = asyncio.ensure_future(req.disconnected.wait())
    try:
        done, _ = await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if owned and not work.done():
            work.cancel()
    if work in done:
        return work.result()
    if owned:
        try:
            await work  # let its cleanup (finally blocks) run before we return
        except BaseException:
            pass
    return None
