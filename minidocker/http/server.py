"""The connection loop: bytes in, h11 events, requests to handlers, responses out.

What this teaches
-----------------
The HTTP/1.1 *syntax* (RFC 9112) is done by h11, a sans-IO protocol library: we feed it the bytes
the socket gave us and it hands back events (``Request``, ``Data``, ``EndOfMessage``) or a
``RemoteProtocolError`` for anything malformed -- a bad request line, a chunk size of ``-5``, a
signed or conflicting ``Content-Length``, a head bigger than ``max_head``. We answer those with
their status (400, 431, 501...) and close: after a framing error we cannot know where the next
request would begin (RFC 9112 §2.2). Parsing HTTP is where servers get exploited (request
smuggling), so this is the part not worth writing by hand.

What stays ours is the *policy* around it, which no library decides for us:

* **Timeouts.** A connection waiting for its next request is closed after ``idle_timeout``; a
  request head that started must be complete within ``header_timeout`` (else 408). Without them
  200 idle or half-sent connections pin 200 file descriptors forever (slowloris).
* **Bounded memory.** The body is read as it arrives into a :class:`~.message.Body`, which moves to
  a temporary file past 1 MiB; more than ``max_body`` bytes is 413.
* **A listen backlog for bursts** (``BACKLOG``): the kernel queues connections the loop has not
  accepted yet; asyncio's default of 100 drops the rest of a burst (``EAGAIN`` on a UNIX socket).
* **Leaving HTTP** (attach/exec): h11 sends the ``101`` and hands back any bytes that came after
  the request; dockerd's pre-upgrade answer (``200 OK`` + raw stream until close) has no framing h11
  would write, so that one head is written by hand.
* Half-close: asyncio's ``StreamReaderProtocol.eof_received`` returns True, which keeps the transport
  open for writing after the client's FIN, so an attach client that half-closes its stdin still gets
  all the output (not over TLS, where asyncio closes on EOF).
"""
from __future__ import annotations

import asyncio
import grp
import logging
import os
import re
import socket
import stat
import time
from email.utils import formatdate
from http import HTTPStatus

import h11

from .message import SPOOL_PREFIX, Body, Headers, HTTPError, ClientDisconnected, Response, empty, error_response, no_body_allowed
from .request import Request

log = logging.getLogger("minidocker.http")

MAX_HEAD = 256 * 1024  # request line + header fields
MAX_BODY = 64 * 1024 * 1024 * 1024  # bodies go to disk as they arrive; this only bounds the disk used
BACKLOG = 1024  # pending connections the kernel keeps for us (capped by net.core.somaxconn)
IDLE_TIMEOUT = 300.0  # seconds a kept-alive connection may wait for its next request
HEADER_TIMEOUT = 60.0  # seconds from a request's first byte to the end of its head
READ_SIZE = 65536


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


class _BadRequest(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


class _NotHTTP(Exception):
    """The client opened with a TLS ClientHello (first byte 0x16) on a plain-HTTP socket."""


class _Connection:
    """One client connection: the asyncio streams, h11's state machine, a little state of our own."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_head: int):
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
        self.stray = bytearray()  # bytes read by a disconnect watcher (see Request._watch)
        self.close_after = False
        self.fresh = True  # nothing received yet
        self._pump: asyncio.Task | None = None

    async def send(self, *events) -> None:
        """Send h11 events in one write (a whole small response leaves in one segment)."""
        pieces = []
        for event in events:
            pieces += self.h11.send_with_data_passthrough(event) or []
        if pieces:
            self.writer.writelines(pieces)
            await self.writer.drain()

    async def send_head(self, status: int, fields: dict, *then) -> None:
        await self.send(h11.Response(status_code=status, reason=_reason(status), headers=list(fields.items())), *then)

    async def send_upgrade(self, fields: dict) -> None:
        """``HTTP/1.1 101 UPGRADED``: dockerd's reason phrase, which some clients print."""
        await self.send(h11.InformationalResponse(status_code=101, reason=b"UPGRADED", headers=list(fields.items())))

    async def send_raw_stream_head(self, fields: dict) -> None:
        # Hand-written, because h11 would frame the body (chunked, for an HTTP/1.1 client) while
        # this old answer's body is raw bytes until the connection closes.
        head = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
        self.writer.write(head.encode("latin-1"))
        await self.writer.drain()

    def hijacked_reader(self) -> asyncio.StreamReader:
        """The raw byte stream after the request: what h11 already holds, what a watcher read, the rest."""
        early = bytes(self.h11.trailing_data[0]) + bytes(self.stray)
        self.stray.clear()
        if not early:
            return self.reader
        replay = asyncio.StreamReader()
        replay.feed_data(early)

        async def pump():
            try:
                while data := await self.reader.read(READ_SIZE):
                    replay.feed_data(data)
            except (ConnectionError, OSError):
                pass
            finally:
                replay.feed_eof()

        self._pump = asyncio.get_running_loop().create_task(pump())
        return replay

    async def linger(self, limit: int = 1 << 20, seconds: float = 1.0) -> None:
        """After an error answer to a request we did not read to its end: half-close, then read and
        drop what the client is still sending for a moment. Closing a TCP socket with unread data
        sends a reset, and the client may lose our answer with it (Go's server lingers the same way)."""
        try:
            if self.writer.can_write_eof():
                self.writer.write_eof()
            got = 0
            async with asyncio.timeout(seconds):
                while got < limit and (data := await self.reader.read(READ_SIZE)):
                    got += len(data)
        except (TimeoutError, ConnectionError, OSError):
            pass

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


class Server:
    """Routes plus the HTTP/1.1 connection loop. Listens on UNIX sockets and TCP (with or without TLS).

    ``extra_headers`` go on every response (the Docker API's API-Version, OSType...);
    ``version_check(version) -> message | None`` refuses ``/vX.Y`` prefixes with 400 (the Docker API's
    supported range); ``spool_dir`` holds large request bodies while they arrive.
    """

    def __init__(self, max_body: int = MAX_BODY, extra_headers: dict | None = None, *,
                 max_head: int = MAX_HEAD, idle_timeout: float = IDLE_TIMEOUT,
                 header_timeout: float = HEADER_TIMEOUT, spool_dir: str | None = None,
                 version_check=None, backlog: int = BACKLOG):
        self.routes: list[tuple[str, re.Pattern, object]] = []
        self.max_body = max_body
        self.max_head = max_head
        self.idle_timeout = idle_timeout
        self.header_timeout = header_timeout
        self.spool_dir = spool_dir
        self.version_check = version_check
        self.backlog = backlog
        self.extra_headers = dict(extra_headers or {})  # added to every response
        self._servers: list[asyncio.AbstractServer] = []
        self._socket_paths: list[str] = []
        self._connections: set[asyncio.Task] = set()
        self._closed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- routing ----------------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler=None):
        """Register ``handler`` for ``method`` and a regex fully matched against the stripped path.

        Routes are tried in registration order, so register specific patterns before greedy ones
        (image names put slashes and colons raw in the path: ``/images/(?P<name>.+)/json``).
        Usable as a decorator: ``@app.route("GET", r"/version")``.
        """
        def register(fn):
            self.routes.append((method.upper(), re.compile(pattern), fn))
            return fn
        return register(handler) if handler is not None else register

    def _find(self, method: str, path: str):
        for want in ([method, "GET"] if method == "HEAD" else [method]):  # HEAD falls back to GET
            for route_method, pattern, handler in self.routes:
                if route_method == want:
                    m = pattern.fullmatch(path)
                    if m:
                        return handler, m
        return None, None

    # ---- listening --------------------------------------------------------------------------

    async def serve_unix(self, path: str, mode: int = 0o660, group: str | None = None) -> None:
        """Listen on a UNIX socket at ``path`` (and return; see serve_forever).

        A socket file left by a crashed daemon is removed, but only if nothing answers on it.
        ``mode``/``group`` decide who may talk to the daemon -- which is root-equivalent power.
        """
        if os.path.lexists(path):
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise RuntimeError(f"{path} exists and is not a socket")
            if await asyncio.to_thread(_someone_listens, path):
                raise RuntimeError(f"another daemon is listening on {path}")
            os.unlink(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._start()
        srv = await asyncio.start_unix_server(self._serve_connection, path=path, limit=self.max_head,
                                              backlog=self.backlog)
        self._servers.append(srv)
        self._socket_paths.append(path)
        os.chmod(path, mode)
        if group is not None:
            try:
                os.chown(path, -1, grp.getgrnam(group).gr_gid)
            except KeyError:
                log.info("group %r does not exist; %s stays owned by group %d", group, path, os.getgid())
        log.info("listening on unix://%s", path)

    async def serve_tcp(self, host: str, port: int, ssl_context=None) -> None:
        """Listen on TCP. Meant for TLS (``ssl_context``) or loopback; a plain-TCP daemon socket is open to anyone.

        Over TLS asyncio closes the connection at the client's EOF, so a client half-close during
        attach/exec ends the stream.
        """
        self._start()
        srv = await asyncio.start_server(self._serve_connection, host, port, ssl=ssl_context,
                                         limit=self.max_head, backlog=self.backlog)
        self._servers.append(srv)
        log.info("listening on %s://%s:%d", "https" if ssl_context else "tcp", host, port)

    def _start(self) -> None:
        if self._loop is None and self.spool_dir and os.path.isdir(self.spool_dir):
            for name in os.listdir(self.spool_dir):  # bodies left by a server that crashed mid-request
                if name.startswith(SPOOL_PREFIX):
                    os.unlink(os.path.join(self.spool_dir, name))
        self._loop = asyncio.get_running_loop()

    async def serve_forever(self) -> None:
        """Wait until ``close()`` is called."""
        if self._closed is None:
            self._closed = asyncio.Event()
        await self._closed.wait()

    def close(self) -> None:
        """Stop listening, remove the socket files, and cancel the open connections (long-polls).

        Call it in the event loop's thread: asyncio objects are not thread-safe, and closing an
        asyncio server from another thread races with its connections ending (a TypeError deep in
        asyncio, once in a while). From another thread use ``loop.call_soon_threadsafe(server.close)``.
        """
        if self._loop is not None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not self._loop:
                raise RuntimeError("Server.close() called outside its event loop's thread")
        for srv in self._servers:
            srv.close()
        self._servers.clear()
        for path in self._socket_paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self._socket_paths.clear()
        for task in list(self._connections):
            task.cancel()
        if self._closed is not None:
            self._closed.set()

    async def wait_closed(self) -> None:
        """After close(): wait for the cancelled connections to finish."""
        tasks = list(self._connections)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---- one connection: requests one after the other -----------------------------------------

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        conn = _Connection(reader, writer, self.max_head)
        try:
            while True:
                try:
                    req = await self._read_request(conn)
                except _BadRequest as e:
                    log.info("bad request: %d %s", e.status, e.message)
                    if conn.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        await self._send(conn, "GET", error_response(e.status, e.message), keep_alive=False)
                        await conn.linger()
                    break
                except _NotHTTP:
                    break
                if req is None:  # the client closed an idle connection, or it timed out
                    break
                try:
                    await self._dispatch(req)
                finally:
                    req._body.discard()
                if req.hijacked or conn.close_after or reader.at_eof():
                    break
                if conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE:
                    break  # MUST_CLOSE (Connection: close, HTTP/1.0) or a response cut short
                conn.h11.start_next_cycle()
        except (ConnectionError, asyncio.IncompleteReadError, h11.RemoteProtocolError):
            pass  # the client went away mid-request or mid-response
        except asyncio.CancelledError:
            pass  # server shutdown
        except Exception:
            log.exception("connection handler failed")
        finally:
            self._connections.discard(task)
            await conn.close()

    async def _next_event(self, conn: _Connection, timeout: float, on_timeout):
        """The next h11 event, reading from the socket as h11 needs; ``on_timeout()`` when none comes in time."""
        while True:
            try:
                event = conn.h11.next_event()
            except h11.RemoteProtocolError as e:
                raise _BadRequest(e.error_status_hint, str(e)) from None
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await asyncio.wait_for(conn.reader.read(READ_SIZE), max(timeout(), 0))
            except asyncio.TimeoutError:
                return on_timeout()
            if conn.fresh and data:
                conn.fresh = False
                if data[:1] == b"\x16":
                    # A TLS ClientHello. Clients such as skopeo try HTTPS first and fall back to HTTP
                    # when the connection closes; h11 would wait for a line end that never comes.
                    raise _NotHTTP()
            conn.h11.receive_data(data)  # b"" is end-of-file: h11 turns it into ConnectionClosed or an error

    async def _read_request(self, conn: _Connection) -> Request | None:
        # The head. Before its first byte the connection is idle (idle_timeout); from then on the
        # whole head must arrive within header_timeout.
        started = time.monotonic() if conn.h11.trailing_data[0] else None

        def head_timeout() -> float:
            nonlocal started
            if started is None:
                if conn.h11.trailing_data[0]:
                    started = time.monotonic()
                else:
                    return self.idle_timeout
            return self.header_timeout - (time.monotonic() - started)

        def head_too_slow():
            if started is None and not conn.h11.trailing_data[0]:
                return None  # idle: close quietly
            raise _BadRequest(408, "timed out reading the request head")

        event = await self._next_event(conn, head_timeout, head_too_slow)
        if event is None or isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):  # PAUSED cannot happen here; anything else is a bug
            raise _BadRequest(400, f"unexpected {type(event).__name__}")
        if event.http_version not in (b"1.1", b"1.0"):
            raise _BadRequest(505, f"unsupported protocol version HTTP/{event.http_version.decode()}")
        headers = Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers.raw_items()])
        if "Transfer-Encoding" in headers and "Content-Length" in headers:
            # RFC 9112 §6.3: a message with both is how request smuggling starts; refuse it.
            raise _BadRequest(400, "both Transfer-Encoding and Content-Length")
        length = headers.get("Content-Length")
        if length is not None and int(length) > self.max_body:
            raise _BadRequest(413, "request body too large")
        request = event
        if conn.h11.they_are_waiting_for_100_continue:  # curl waits for this before big bodies
            await conn.send(h11.InformationalResponse(status_code=100, reason=b"Continue", headers=[]))

        # The body, as it arrives; a pause of idle_timeout between pieces ends the connection.
        body = Body(self.spool_dir)
        try:
            while True:
                event = await self._next_event(conn, lambda: self.idle_timeout, _body_too_slow)
                if isinstance(event, h11.Data):
                    body.write(event.data)
                    if body.size > self.max_body:
                        raise _BadRequest(413, "request body too large")
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:  # ConnectionClosed mid-body: h11 raises for that, but be safe
                    raise _BadRequest(400, "incomplete request body")
            body.finish()
        except BaseException:
            body.discard()
            raise
        return Request(self, conn, request.method.decode("latin-1").upper(), request.target.decode("latin-1"),
                       "HTTP/" + request.http_version.decode(), headers, body)

    # ---- calling the handler and sending its answer -------------------------------------------

    def base_headers(self) -> dict:
        fields = {"Date": formatdate(usegmt=True)}
        fields.update(self.extra_headers)
        return fields

    async def _dispatch(self, req: Request) -> None:
        started = time.monotonic()
        response: Response | None = None
        failed = False
        message = self.version_check(req.version) if req.version and self.version_check else None
        handler, match = self._find(req.method, req.path) if message is None else (None, None)
        if message is not None:
            response = error_response(400, message)
        elif handler is None:
            # dockerd answers 404 for unknown paths and for known paths with another method alike.
            response = error_response(404, "page not found")
        else:
            req.match = match
            try:
                response = await handler(req)
            except HTTPError as e:
                failed, response = True, error_response(e.status, e.message)
            except ConnectionError as e:
                if not (isinstance(e, ClientDisconnected) or req._conn.writer.is_closing()
                        or req._disconnected.is_set()):
                    # Not our client: some other connection of the handler's failed (a registry...).
                    log.exception("%s %s failed", req.method, req.target)
                    failed, response = True, error_response(500, str(e) or type(e).__name__)
                else:
                    log.debug("%s %s: client went away", req.method, req.target)
                    await req._stop_watching()
                    req._conn.close_after = True
                    return
            except Exception as e:
                log.exception("%s %s failed", req.method, req.target)
                failed, response = True, error_response(500, str(e) or type(e).__name__)
        await req._stop_watching()
        conn = req._conn
        try:
            if req.hijacked:
                if response is not None and not failed:
                    log.warning("%s %s: handler returned a response after hijacking", req.method, req.path)
            elif req.stream is not None:
                if failed and not req.stream.closed:
                    # Too late for an error status: the headers are gone. Ending the connection
                    # without the last chunk tells the client that the body is incomplete.
                    conn.close_after = True
                else:
                    if response is not None:
                        log.warning("%s %s: handler returned a response after starting a stream",
                                    req.method, req.path)
                    await req.stream.close()  # a no-op if the handler closed it already
            else:
                if response is None:
                    response = empty(204)
                if conn.stray:
                    conn.close_after = True
                req.status = response.status
                await self._send(conn, req.method, response, keep_alive=req.keep_alive and not conn.close_after)
                req.finished = True
            if conn.stray:
                conn.close_after = True
        finally:
            log.debug("%s %s %s %.1fms", req.method, req.target, req.status or "-",
                      (time.monotonic() - started) * 1000)

    async def _send(self, conn: _Connection, method: str, response: Response, keep_alive: bool) -> None:
        fields = self.base_headers()
        bodiless = no_body_allowed(response.status)
        if response.content_type and not bodiless:
            fields["Content-Type"] = response.content_type
        fields.update(response.headers)
        if not bodiless and not any(k.lower() == "content-length" for k in response.headers):
            fields["Content-Length"] = str(len(response.body))  # on HEAD: the length a GET would have had
        if not keep_alive:
            fields["Connection"] = "close"
        body = [h11.Data(data=response.body)] if response.body and not bodiless and method != "HEAD" else []
        await conn.send_head(response.status, fields, *body, h11.EndOfMessage())


def _body_too_slow():
    raise _BadRequest(408, "timed out reading the request body")


def _someone_listens(path: str) -> bool:
    """Is a live server behind this socket file? (connect succeeds) -- or is it a stale leftover?"""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(path)
        return True
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return True  # e.g. a timeout: something is there; do not remove it
    finally:
        s.close()
