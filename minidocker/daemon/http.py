"""A small HTTP/1.1 server on asyncio: the transport under minidockerd's Docker Engine API.

Why write one? Docker's API is plain HTTP/1.1 on a UNIX socket, but it uses three corners of the
protocol that web frameworks hide or forbid, and the real clients (the docker CLI, docker-py) depend
on all three:

* **Keep-alive framing (RFC 9112 §6, §9.3).** One connection carries many requests, one after the
  other, so every response must say where its body ends: a ``Content-Length``, or
  ``Transfer-Encoding: chunked`` (each chunk is ``<hex size>\\r\\n<data>\\r\\n``; a zero-size chunk
  ends the body, §7.1). Request bodies arrive the same two ways: ``docker build`` uploads its
  context tar chunked.
* **Streams and long-polls.** ``pull``, ``build``, ``events``, ``logs -f`` and ``wait`` send a body
  that grows over time as newline-delimited JSON (or log frames), chunk by chunk. ``wait`` is the
  extreme case: the CLI does not send ``start`` until it has the *headers* of ``wait``, so they must
  go out at once, long before the body (the exit status) exists. Clients abandon long-polls
  (``docker run -d``, Ctrl-C on ``logs -f``): we notice by reading the connection in the background
  while a stream is open; end-of-file there means the client hung up (Go's net/http does the same).
* **Connection hijacking.** ``attach`` and ``exec start`` ask to leave HTTP: ``Connection: Upgrade``,
  ``Upgrade: tcp``. The server answers ``HTTP/1.1 101 UPGRADED`` (RFC 9110 §15.2.2) and from then
  on the socket carries raw bytes both ways: stdin up, stdout/stderr down (multiplexed in 8-byte
  framed records unless the container has a TTY). The client *half-closes* its side (TCP FIN,
  ``shutdown(SHUT_WR)``) when its stdin ends -- immediately, if it has no stdin -- and still expects
  all the output. asyncio's ``StreamReaderProtocol.eof_received`` returns True, which keeps the
  transport open for writing after the peer's FIN, so half-close just works here (not over TLS,
  where asyncio closes on EOF).

See docs: RFC 9110 (semantics), RFC 9112 (HTTP/1.1 message syntax), and the project's notes on what
the Docker clients send (shared/notes/docker-engine-api-clients.md).

Usage::

    app = Server()

    async def inspect(req):
        return json_response({"Id": req.match["id"]})

    app.route("GET", r"/containers/(?P<id>[^/]+)/json", inspect)
    await app.serve_unix("/run/minidocker.sock")
    await app.serve_forever()
"""
from __future__ import annotations

import asyncio
import grp
import json
import logging
import os
import re
import socket
import stat
import struct
import time
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import parse_qs, unquote, urlsplit

from minidocker import __version__

log = logging.getLogger("minidocker.http")

API_VERSION = "1.50"
MULTIPLEXED = "application/vnd.docker.multiplexed-stream"  # non-TTY: framed stdout/stderr
RAW_STREAM = "application/vnd.docker.raw-stream"  # TTY: plain bytes

# Sent on every response. The docker CLI negotiates the API version from the /_ping headers, and
# API >= 1.25 puts API-Version on every response.
DEFAULT_HEADERS = {
    "API-Version": API_VERSION,
    "Docker-Experimental": "false",
    "OSType": "linux",
    "Server": f"minidocker/{__version__} (linux)",
}

# dockerd's rule for boolean query parameters (the Go CLI sends 1, docker-py sends True/False).
FALSE_WORDS = frozenset({"", "0", "no", "false", "none"})

# "/v1.50/containers/json" -> version "1.50", path "/containers/json". Any X.Y is accepted: docker-py
# uses whatever ApiVersion we report, and clients may pin an older or newer one.
VERSION_PREFIX = re.compile(r"/v([0-9]+(?:\.[0-9]+)*)(/.*)")

MAX_HEAD = 256 * 1024  # request line + headers
MAX_BODY = 4 * 1024 * 1024 * 1024  # build contexts can be large; they are held in memory (see Request.body)


class HTTPError(Exception):
    """Raise from a handler to answer ``status`` with the Docker error body ``{"message": ...}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class ClientDisconnected(ConnectionError):
    """Raise from a handler when the client went away (``req.disconnected`` is set).

    The server treats any ConnectionError escaping a handler as "the client hung up": it closes the
    connection quietly, without a response and without an error log.
    """


def encode_frame(stream_id: int, payload: bytes) -> bytes:
    """One record of Docker's multiplexed stream: ``[stream u8][0 0 0][length u32 big-endian]`` + payload.

    stream 0 = stdin, 1 = stdout, 2 = stderr, 3 = systemerr (the CLI prints it as an error).
    (The client's decoder, ``minidocker.cli.client.read_frames``, is the mirror image; the five lines
    are duplicated on purpose so that the CLI never imports the daemon package.)
    """
    return struct.pack(">BxxxI", stream_id, len(payload)) + payload


class Headers:
    """Header fields, looked up case-insensitively (RFC 9110 §5.1: field names are case-insensitive).

    A field sent several times is joined with ", " (RFC 9110 §5.3), except that ``get_all`` keeps them apart.
    """

    def __init__(self, fields: list[tuple[str, str]] | None = None):
        self.fields: list[tuple[str, str]] = list(fields or [])

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.fields if k.lower() == name]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def items(self):
        return list(self.fields)

    def __repr__(self) -> str:
        return f"Headers({self.fields!r})"


class Response:
    """A complete response: status, body and extra headers. ``Content-Length`` is added for you."""

    def __init__(self, status: int = 200, body: bytes | str = b"", headers: dict | None = None,
                 content_type: str | None = "text/plain; charset=utf-8"):
        self.status = status
        self.body = body.encode() if isinstance(body, str) else bytes(body)
        self.headers = dict(headers or {})
        self.content_type = content_type


def json_response(obj, status: int = 200, headers: dict | None = None) -> Response:
    return Response(status, json.dumps(obj).encode() + b"\n", headers, content_type="application/json")


def empty(status: int = 204, headers: dict | None = None) -> Response:
    """A response without a body: 204 No Content, 304 Not Modified (``docker start`` on a running container)."""
    return Response(status, b"", headers, content_type=None)


def error_response(status: int, message: str) -> Response:
    """Docker's error shape. The CLI prints ``Error response from daemon: <message>``."""
    return json_response({"message": message}, status)


def _no_body_allowed(status: int) -> bool:
    # RFC 9110 §6.4.1: 1xx, 204 and 304 responses never have content (nor a Content-Length for 1xx/204).
    return status < 200 or status in (204, 304)


def _status_line(status: int) -> str:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    return f"HTTP/1.1 {status} {reason}\r\n"


def _render_head(status: int, headers: dict) -> bytes:
    lines = [_status_line(status)]
    lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


class Stream:
    """The body of a streaming response, sent with chunked transfer encoding (RFC 9112 §7.1).

    Made by ``await req.start_stream(...)``, which has already sent the status line and headers.
    """

    def __init__(self, req: "Request", chunked: bool):
        self._req = req
        self._writer = req._writer
        self._chunked = chunked  # False for HTTP/1.0 clients: the body then ends when we close
        self._silent = req.method == "HEAD"  # a HEAD response has headers only
        self.closed = False

    async def write(self, data: bytes) -> None:
        """Send ``data`` as one chunk and wait until the socket has taken it (back-pressure)."""
        if self.closed:
            raise RuntimeError("write to a closed stream")
        if not data or self._silent:  # an empty chunk would mean "end of body", so never send one here
            return
        if self._chunked:
            self._writer.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self._writer.write(data)
        await self._writer.drain()

    async def write_json(self, obj) -> None:
        """One line of newline-delimited JSON (pull/push/build progress, events, wait's result)."""
        await self.write(json.dumps(obj).encode() + b"\n")

    async def close(self) -> None:
        """End the body: the zero-size last chunk. The connection is then free for the next request."""
        if self.closed:
            return
        self.closed = True
        self._req.finished = True
        await self._req._stop_watching()
        if self._chunked and not self._silent:
            self._writer.write(b"0\r\n\r\n")
            await self._writer.drain()


class Request:
    """One parsed request, handed to a handler.

    ``raw_path`` is the path as sent; ``path`` is percent-decoded with any ``/vX.Y`` prefix removed
    (that X.Y is in ``version``); ``query`` has the first value of each parameter, ``query_all`` every
    value. ``body`` is the whole request body (de-chunked if it came chunked) -- held in memory.
    """

    def __init__(self, server: "Server", conn: "_Connection", method: str, target: str,
                 http_version: str, headers: Headers, body: bytes):
        self.server = server
        self.method = method
        self.target = target
        self.http_version = http_version
        self.headers = headers
        self.body = body
        self.match: re.Match | None = None
        self._conn = conn
        self._reader = conn.reader
        self._writer = conn.writer

        parts = urlsplit(target)
        self.raw_path = parts.path or "/"
        path = unquote(self.raw_path)
        m = VERSION_PREFIX.fullmatch(path)
        self.version: str | None = m.group(1) if m else None
        self.path: str = m.group(2) if m else path
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

    def json(self):
        """The body parsed as JSON; None when the body is empty; HTTPError 400 when malformed."""
        if self._json_cache is ...:
            if not self.body.strip():
                self._json_cache = None
            else:
                try:
                    self._json_cache = json.loads(self.body)
                except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
                    raise HTTPError(400, f"invalid JSON: {e}") from None
        return self._json_cache

    def bool_param(self, name: str, default: bool = False) -> bool:
        """dockerd's rule: false iff the value is "", 0, no, false or none (any case); absent -> default."""
        value = self.query.get(name)
        if value is None:
            return default
        return value.strip().lower() not in FALSE_WORDS

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
        connection = (self.headers.get("Connection") or "").lower()
        return "upgrade" in [t.strip() for t in connection.split(",")] and "Upgrade" in self.headers

    @property
    def keep_alive(self) -> bool:
        """HTTP/1.1 keeps the connection unless ``Connection: close``; HTTP/1.0 only with keep-alive."""
        tokens = [t.strip().lower() for t in (self.headers.get("Connection") or "").split(",")]
        if "close" in tokens:
            return False
        return self.http_version != "HTTP/1.0" or "keep-alive" in tokens

    # ---- noticing that the client went away ---------------------------------------------------

    @property
    def disconnected(self) -> asyncio.Event:
        """Set when the client closes the connection while this request is being answered.

        The request has been read completely, and an HTTP client sends nothing more until it has
        the whole response, so any end-of-file now means it hung up. Looking at this property (or
        starting a stream, or calling ``until_disconnected_or``) starts that background read.
        """
        self._start_watching()
        return self._disconnected

    def _start_watching(self) -> None:
        if self._watcher is None and not self.hijacked and not self.finished:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        try:
            while True:
                data = await self._reader.read(65536)
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
        """Send the status line and headers now; return a Stream for the body (chunked).

        The handler then writes with ``stream.write``/``write_json``, closes it, and returns None.
        """
        if self.responded:
            raise RuntimeError("response already started")
        chunked = self.http_version != "HTTP/1.0"
        fields = self.server._base_headers()
        if content_type:
            fields["Content-Type"] = content_type
        fields.update(headers or {})
        if chunked:
            fields["Transfer-Encoding"] = "chunked"
        else:
            fields["Connection"] = "close"  # an HTTP/1.0 body without length ends when we close
            self._conn.close_after = True
        self.responded = True
        self.status = status
        self._writer.write(_render_head(status, fields))
        await self._writer.drain()  # the headers leave now, before any of the body exists
        self.stream = Stream(self, chunked)
        if self.method != "HEAD":
            self._start_watching()
        return self.stream

    async def hijack(self, content_type: str = MULTIPLEXED, first_write_delay: float = 0.015
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
        if self.wants_upgrade:
            head = (f"HTTP/1.1 101 UPGRADED\r\nContent-Type: {content_type}\r\n"
                    "Connection: Upgrade\r\nUpgrade: tcp\r\n")
            self.status = 101
        else:
            head = f"HTTP/1.1 200 OK\r\nContent-Type: {RAW_STREAM}\r\n"
            self.status = 200
        head += f"API-Version: {API_VERSION}\r\n\r\n"
        self.responded = True
        self.hijacked = True
        self._writer.write(head.encode("latin-1"))
        await self._writer.drain()
        reader = self._reader
        if self._conn.stray:
            reader = self._conn.replay_stray()
        if first_write_delay:
            await asyncio.sleep(first_write_delay)
        return reader, self._writer


async def until_disconnected_or(req: Request, awaitable):
    """Await ``awaitable``, unless the client hangs up first: then return None.

    Typical in a long-poll (``wait``, ``logs -f``, ``events``)::

        stream = await req.start_stream()
        code = await until_disconnected_or(req, container_exit)   # a Future, a Task or a coroutine
        if req.disconnected.is_set():
            return None                      # nobody to tell; the server closes the connection
        await stream.write_json({"StatusCode": code, "Error": None})

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


class _Connection:
    """One client connection: the asyncio streams and a little state shared by its requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.stray = bytearray()  # bytes read by a disconnect watcher (see Request._watch)
        self.close_after = False
        self._pump: asyncio.Task | None = None

    def replay_stray(self) -> asyncio.StreamReader:
        """A reader that yields the stray bytes first, then whatever else arrives (rare: see _watch)."""
        replay = asyncio.StreamReader()
        replay.feed_data(bytes(self.stray))
        self.stray.clear()

        async def pump():
            try:
                while data := await self.reader.read(65536):
                    replay.feed_data(data)
            finally:
                replay.feed_eof()

        self._pump = asyncio.get_running_loop().create_task(pump())
        return replay

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


class _BadRequest(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


class Server:
    """Routes plus the HTTP/1.1 connection loop. Listens on UNIX sockets (and TCP, for TLS later)."""

    def __init__(self, max_body: int = MAX_BODY, extra_headers: dict | None = None):
        self.routes: list[tuple[str, re.Pattern, object]] = []
        self.max_body = max_body
        self.extra_headers = dict(extra_headers or {})  # added to every response, after the defaults
        self._servers: list[asyncio.AbstractServer] = []
        self._socket_paths: list[str] = []
        self._connections: set[asyncio.Task] = set()
        self._closed: asyncio.Event | None = None

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
            if _someone_listens(path):
                raise RuntimeError(f"another daemon is listening on {path}")
            os.unlink(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        srv = await asyncio.start_unix_server(self._serve_connection, path=path, limit=MAX_HEAD)
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
        """Listen on TCP. Meant for TLS (``ssl_context``); a plain-TCP daemon socket is open to anyone.

        Over TLS asyncio closes the connection at the client's EOF, so a client half-close during
        attach/exec ends the stream (the hijack section of the module docstring).
        """
        srv = await asyncio.start_server(self._serve_connection, host, port, ssl=ssl_context, limit=MAX_HEAD)
        self._servers.append(srv)
        log.info("listening on %s://%s:%d", "https" if ssl_context else "tcp", host, port)

    async def serve_forever(self) -> None:
        """Wait until ``close()`` is called."""
        if self._closed is None:
            self._closed = asyncio.Event()
        await self._closed.wait()

    def close(self) -> None:
        """Stop listening, remove the socket files, and cancel the open connections (long-polls)."""
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
        conn = _Connection(reader, writer)
        try:
            while True:
                try:
                    req = await self._read_request(conn)
                except _BadRequest as e:
                    # We cannot tell where this request ends, so we answer and close (RFC 9112 §2.2).
                    await self._send(writer, "GET", error_response(e.status, e.message), keep_alive=False)
                    break
                if req is None:  # the client closed an idle connection: the normal end
                    break
                await self._dispatch(req)
                if req.hijacked or not req.keep_alive or conn.close_after or conn.reader.at_eof():
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-request or mid-response
        except asyncio.CancelledError:
            pass  # server shutdown
        except Exception:
            log.exception("connection handler failed")
        finally:
            self._connections.discard(task)
            await conn.close()

    async def _read_request(self, conn: _Connection) -> Request | None:
        reader = conn.reader
        # The head: request line and header fields, each ending in CRLF, then an empty line (RFC 9112 §2.1).
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if not e.partial.strip():
                return None
            raise _BadRequest(400, "incomplete request head") from None
        except asyncio.LimitOverrunError:
            raise _BadRequest(431, "request header fields too large") from None
        lines = head.decode("latin-1").split("\r\n")
        while lines and lines[0] == "":  # RFC 9112 §2.2: ignore empty lines before a request line
            lines.pop(0)
        try:
            method, target, http_version = lines[0].split(" ")
        except (ValueError, IndexError):
            raise _BadRequest(400, f"malformed request line: {lines[0] if lines else ''!r}") from None
        if http_version not in ("HTTP/1.1", "HTTP/1.0"):
            raise _BadRequest(505, f"unsupported protocol version {http_version}")
        fields = []
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _BadRequest(400, f"malformed header line: {line!r}")
            fields.append((name, value.strip()))
        headers = Headers(fields)

        # The body's length (RFC 9112 §6.3): Transfer-Encoding: chunked wins over Content-Length;
        # neither means no body at all.
        te = (headers.get("Transfer-Encoding") or "").lower()
        if te and "Content-Length" in headers:
            conn.close_after = True  # RFC 9112 §6.3: a message with both is suspect; close afterwards
        if (headers.get("Expect") or "").lower() == "100-continue":
            conn.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits for this before big bodies
        if te:
            if te != "chunked":
                raise _BadRequest(501, f"unsupported transfer coding {te!r}")
            body = await self._read_chunked(reader)
        else:
            length = headers.get("Content-Length")
            try:
                n = int(length) if length is not None else 0
                if n < 0:
                    raise ValueError
            except ValueError:
                raise _BadRequest(400, f"bad Content-Length {length!r}") from None
            if n > self.max_body:
                raise _BadRequest(413, "request body too large")
            body = await reader.readexactly(n) if n else b""
        return Request(self, conn, method.upper(), target, http_version, headers, body)

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        """De-chunk a request body (RFC 9112 §7.1): ``<hex size>[;ext]CRLF <data> CRLF`` ... ``0 CRLF`` trailers CRLF."""
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest(400, f"bad chunk size line {size_line[:40]!r}") from None
            if size == 0:
                break
            if len(body) + size > self.max_body:
                raise _BadRequest(413, "request body too large")
            body += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise _BadRequest(400, "chunk not followed by CRLF")
        while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailer fields: read and ignored
            pass
        return bytes(body)

    # ---- calling the handler and sending its answer -------------------------------------------

    def _base_headers(self) -> dict:
        fields = dict(DEFAULT_HEADERS)
        fields["Date"] = formatdate(usegmt=True)
        fields.update(self.extra_headers)
        return fields

    async def _dispatch(self, req: Request) -> None:
        started = time.monotonic()
        handler, match = self._find(req.method, req.path)
        response: Response | None = None
        failed = False
        if handler is None:
            # dockerd answers 404 for unknown paths and for known paths with another method alike.
            response = error_response(404, "page not found")
        else:
            req.match = match
            try:
                response = await handler(req)
            except HTTPError as e:
                failed, response = True, error_response(e.status, e.message)
            except ConnectionError as e:
                if not (isinstance(e, ClientDisconnected) or req._writer.is_closing()
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
        try:
            if req.hijacked:
                if response is not None and not failed:
                    log.warning("%s %s: handler returned a response after hijacking", req.method, req.path)
            elif req.stream is not None:
                if failed and not req.stream.closed:
                    # Too late for an error status: the headers are gone. Ending the connection
                    # without the last chunk tells the client that the body is incomplete.
                    req._conn.close_after = True
                else:
                    if response is not None:
                        log.warning("%s %s: handler returned a response after starting a stream",
                                    req.method, req.path)
                    await req.stream.close()  # a no-op if the handler closed it already
            else:
                if response is None:
                    response = empty(204)
                if req._conn.stray:
                    req._conn.close_after = True
                req.status = response.status
                await self._send(req._writer, req.method, response,
                                 keep_alive=req.keep_alive and not req._conn.close_after)
                req.finished = True
            if req._conn.stray:
                req._conn.close_after = True
        finally:
            log.debug("%s %s %s %.1fms", req.method, req.target, req.status or "-",
                      (time.monotonic() - started) * 1000)

    async def _send(self, writer: asyncio.StreamWriter, method: str, response: Response, keep_alive: bool) -> None:
        fields = self._base_headers()
        if response.content_type and not _no_body_allowed(response.status):
            fields["Content-Type"] = response.content_type
        fields.update(response.headers)
        body = b"" if _no_body_allowed(response.status) else response.body
        if not _no_body_allowed(response.status):
            fields["Content-Length"] = str(len(body))  # on HEAD: the length a GET would have had
        if not keep_alive:
            fields["Connection"] = "close"
        writer.write(_render_head(response.status, fields) + (b"" if method == "HEAD" else body))
        await writer.drain()


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
