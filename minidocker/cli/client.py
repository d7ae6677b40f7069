"""Talking to minidockerd: a small HTTP/1.1 client on a UNIX socket, standard library only.

The daemon speaks the Docker Engine API, which is plain HTTP/1.1 (RFC 9112). This module is the
client half of what ``minidocker/http/`` serves, written out by hand for two reasons:

* **Start-up time.** Every ``minidocker`` command pays for its imports. ``http.client`` pulls in
  ``ssl`` and the ``email`` parser (about 40 ms here); a request is twenty lines over a socket.
* **Hijacking.** ``attach`` and ``exec`` turn the connection into a raw byte pipe after an
  ``HTTP/1.1 101 UPGRADED`` answer. A buffered HTTP library may already have read the first output
  bytes together with the 101 head, and then they are lost (docker-py has exactly this bug). Reading
  the head ourselves, we keep whatever came with it.

What goes over the wire:

* Request: ``POST /v1.50/containers/create?name=web HTTP/1.1``, header lines, an empty line, then a
  body whose size is given by ``Content-Length`` -- or, for a body of unknown size (a build
  context), ``Transfer-Encoding: chunked``: ``<hex size>\\r\\n<bytes>\\r\\n`` ... ``0\\r\\n\\r\\n``.
* Response: status line, header lines, empty line, body. Where the body ends (RFC 9112 §6.3): no
  body for HEAD/204/304; else chunked; else Content-Length; else at connection close. Knowing the end
  lets us send the next request on the same connection (keep-alive).
* Streams (pull progress, events, ``logs -f``, ``wait``) are chunked bodies that arrive over time:
  newline-delimited JSON, or Docker's multiplexed log frames (``read_frames``).

Usage::

    c = Client()                                     # $MINIDOCKER_HOST, $DOCKER_HOST or the default
    c.request("GET", "/containers/json", {"all": True}).check().json()
    for msg in c.stream("POST", "/images/create", {"fromImage": "busybox", "tag": "latest"}): ...
    conn = c.hijack("POST", f"/containers/{cid}/attach", {"stream": 1, "stdout": 1, "stderr": 1})
    for stream_id, data in read_frames(conn.read): ...
"""
from __future__ import annotations

import json
import os
import socket
from urllib.parse import quote, urlencode

from minidocker import __version__
# Docker's wire conventions (API version, the multiplexed stream's 8-byte frames) are shared with the
# daemon and the monitor; re-exported here for the CLI's modules.
from minidocker.wire import API_VERSION, STDERR, STDIN, STDOUT, SYSTEMERR, encode_frame, read_frames  # noqa: F401

DEFAULT_HOST = "unix:///run/minidocker.sock"

_MAX_LINE = 64 * 1024


DEFAULT_TLS = None  # an ssl.SSLContext set by the CLI's --tlsverify; used by every Client without tls=


def daemon_host() -> str:
    """Where the daemon listens: $MINIDOCKER_HOST, else $DOCKER_HOST, else unix:///run/minidocker.sock."""
    return os.environ.get("MINIDOCKER_HOST") or os.environ.get("DOCKER_HOST") or DEFAULT_HOST


class APIError(Exception):
    """The daemon answered with an error status. ``message`` is its ``{"message": ...}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return f"Error response from daemon: {self.message}"

    @classmethod
    def from_body(cls, status: int, body: bytes, reason: str = "") -> "APIError":
        # Same rules as the docker CLI: JSON {"message"} if present; a text body verbatim.
        text = body.decode("utf-8", "replace").strip()
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            message = data["message"]
        elif data is not None:
            message = f"API returned a {status} ({reason}) but provided no error-message"
        else:
            message = text or f"{status} {reason}".strip()
        return cls(status, message)


class DaemonNotRunning(Exception):
    """Nothing listens at the daemon's address (no socket file, or connection refused)."""

    def __init__(self, host: str):
        self.host = host
        super().__init__(f"Cannot connect to the minidocker daemon at {host}. Is minidockerd running? "
                         "Start it with 'minidockerd' (or 'make daemon').")


class Headers(dict):
    """Response header fields with lower-case names; lookups ignore case (RFC 9110 §5.1)."""

    def __getitem__(self, name):
        return super().__getitem__(name.lower())

    def get(self, name, default=None):
        return super().get(name.lower(), default)

    def __contains__(self, name):
        return isinstance(name, str) and super().__contains__(name.lower())


class Reply:
    """A complete response: ``status``, ``reason``, ``headers`` and the whole ``body``."""

    def __init__(self, status: int, reason: str, headers: Headers, body: bytes):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    @property
    def ok(self) -> bool:
        return self.status < 400

    def json(self):
        """The body as JSON; None for an empty body."""
        return json.loads(self.body) if self.body.strip() else None

    def check(self) -> "Reply":
        """Raise APIError for an error status; return self otherwise (so calls chain)."""
        if self.status >= 400:
            raise APIError.from_body(self.status, self.body, self.reason)
        return self

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.body[:60]!r}>"


# ---- reading HTTP from a socket -------------------------------------------------------------

class _Wire:
    """A connected socket plus the bytes received but not yet used."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def readline(self) -> bytes:
        """Up to and including the next LF; what is left at EOF; b"" at EOF."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                return self.take(i + 1)
            if len(self.buf) > _MAX_LINE:
                raise ConnectionError("line too long in HTTP response")
            if not self._fill():
                return self.take(len(self.buf))

    def read_some(self, n: int) -> bytes:
        """At most n bytes: what is buffered, or else what one recv() brings; b"" at EOF."""
        if not self.buf and not self._fill():
            return b""
        return self.take(min(n, len(self.buf)))

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise ConnectionError("connection closed in the middle of a response")
        return self.take(n)

    def take(self, n: int) -> bytes:
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class _EmptyReply(ConnectionError):
    """The server closed the connection without a single byte of response."""


def _read_head(wire: _Wire) -> tuple[int, str, Headers]:
    """Status line ``HTTP/1.1 200 OK`` and header fields up to the empty line (RFC 9112 §4, §5)."""
    line = wire.readline()
    while line in (b"\r\n", b"\n"):
        line = wire.readline()
    if not line:
        raise _EmptyReply("the daemon closed the connection without answering")
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ConnectionError(f"not an HTTP response: {line[:80]!r}")
    status, reason = int(parts[1]), (parts[2] if len(parts) > 2 else "")
    headers = Headers()
    while True:
        line = wire.readline()
        if not line:
            raise ConnectionError("connection closed in the middle of the response head")
        text = line.decode("latin-1").rstrip("\r\n")
        if not text:
            return status, reason, headers
        name, _, value = text.partition(":")
        name = name.strip().lower()
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()


class _Body:
    """Reads one response body, honouring its framing, without reading past its end."""

    def __init__(self, wire: _Wire, method: str, status: int, headers: Headers):
        self.wire = wire
        self.chunk_left = 0
        self.need_crlf = False
        self.done = False
        te = (headers.get("transfer-encoding") or "").lower()
        if method == "HEAD" or status < 200 or status in (204, 304):
            self.kind, self.done = "none", True
        elif te == "chunked":
            self.kind = "chunked"
        elif headers.get("content-length") is not None:
            self.kind, self.left = "length", int(headers["content-length"])
            self.done = self.left == 0
        else:
            self.kind = "close"  # the body ends when the server closes the connection
        # Can the connection carry another request afterwards?
        self.reusable = self.kind != "close" and "close" not in (headers.get("connection") or "").lower()

    def read(self, n: int = 65536) -> bytes:
        """Up to n bytes of body as soon as some are there; b"" at the end of the body."""
        if self.done:
            return b""
        if self.kind == "length":
            data = self.wire.read_some(min(n, self.left))
            if not data:
                raise ConnectionError("connection closed before the end of the response body")
            self.left -= len(data)
            self.done = self.left == 0
            return data
        if self.kind == "close":
            data = self.wire.read_some(n)
            self.done = not data
            return data
        # chunked: <hex size>[;extensions]\r\n <size bytes> \r\n ... 0\r\n [trailers] \r\n
        if self.chunk_left == 0:
            if self.need_crlf:  # the CRLF after the previous chunk's data
                self.wire.read_exact(2)
                self.need_crlf = False
            line = self.wire.readline()
            if not line:
                raise ConnectionError("connection closed in a chunked response body")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.wire.readline() not in (b"\r\n", b"\n", b""):  # trailer fields
                    pass
                self.done = True
                return b""
            self.chunk_left = size
        data = self.wire.read_some(min(n, self.chunk_left))
        if not data:
            raise ConnectionError("connection closed in a chunked response body")
        self.chunk_left -= len(data)
        self.need_crlf = self.chunk_left == 0
        return data

    def read_all(self) -> bytes:
        parts = []
        while data := self.read():
            parts.append(data)
        return b"".join(parts)


# ---- the client ------------------------------------------------------------------------------

def _render_query(query) -> str:
    """Docker conventions: booleans as 1/0, None left out, dicts and lists as JSON (``filters``).

    ``query`` is a dict, or a list of (name, value) pairs to repeat a parameter.
    """
    pairs = []
    for name, value in (query.items() if isinstance(query, dict) else query):
        if value is None:
            continue
        if isinstance(value, bool):
            value = "1" if value else "0"
        elif isinstance(value, (dict, list, tuple)):
            value = json.dumps(value, separators=(",", ":"))
        pairs.append((name, str(value)))
    return urlencode(pairs)


class Client:
    """One daemon, one kept-alive connection (reopened when needed).

    ``host``: ``unix:///path`` (default: ``daemon_host()``); ``tcp://host:port`` needs ``tls`` (an
    ``ssl.SSLContext``). ``api_version``: the ``/vX.Y`` prefix on every path; None sends none.
    ``timeout``: seconds for connect and each receive; None (default) waits for ever (long-polls).
    Not thread-safe: use one Client per thread.
    """

    def __init__(self, host: str | None = None, api_version: str | None = API_VERSION,
                 timeout: float | None = None, tls=None):
        self.host = host or daemon_host()
        self.api_version = api_version
        self.timeout = timeout
        self.tls = tls if tls is not None else DEFAULT_TLS
        tls = self.tls
        self._wire: _Wire | None = None  # the idle keep-alive connection, if any
        if self.host.startswith("unix://"):
            self._unix_path = self.host[len("unix://"):]
        elif self.host.startswith("tcp://"):
            if tls is None:
                raise NotImplementedError(
                    f"{self.host}: a TCP daemon socket is only supported with TLS: add --tlsverify "
                    "(certificates from --tlscacert/--tlscert/--tlskey or $DOCKER_CERT_PATH)")
            self._unix_path = None
            addr = self.host[len("tcp://"):].rstrip("/")
            h, _, p = addr.rpartition(":")
            self._tcp = (h.strip("[]") or "localhost", int(p) if p else 2376)
        else:
            raise ValueError(f"unsupported daemon address {self.host!r} (expected unix://PATH)")

    # ---- connections ----

    def _connect(self) -> _Wire:
        if self._unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self._unix_path)
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                raise DaemonNotRunning(self.host) from None
            except PermissionError as e:
                sock.close()
                raise PermissionError(e.errno, f"permission denied while connecting to the minidocker daemon "
                                      f"at {self.host} (run as root, or join the socket's group)") from None
            except BaseException:
                sock.close()
                raise
            return _Wire(sock)
        try:
            raw = socket.create_connection(self._tcp, timeout=self.timeout)
        except ConnectionRefusedError:
            raise DaemonNotRunning(self.host) from None
        return _Wire(self.tls.wrap_socket(raw, server_hostname=self._tcp[0]))

    def _release(self, wire: _Wire, reusable: bool) -> None:
        """A response was read to its end: keep the connection for the next request, or close it."""
        if reusable and self._wire is None:
            self._wire = wire
        else:
            wire.close()

    def close(self) -> None:
        if self._wire is not None:
            self._wire.close()
            self._wire = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- sending ----

    def target(self, path: str, query=None) -> str:
        """``/v1.50/containers/json?all=1``. Image names stay raw in the path (``/`` and ``:``), as docker sends them."""
        prefix = f"/v{self.api_version}" if self.api_version else ""
        t = prefix + quote(path, safe="/:@!$&'()*+,;=")
        q = _render_query(query) if query else ""
        return f"{t}?{q}" if q else t

    def _send(self, wire: _Wire, method: str, target: str, body, headers: dict | None,
              extra: dict | None = None) -> None:
        fields = {"Host": "localhost" if self._unix_path is not None else self._tcp[0],
                  "User-Agent": f"minidocker-cli/{__version__}"}
        fields.update(extra or {})
        chunks = None
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            fields["Content-Type"] = "application/json"
        elif isinstance(body, str):
            body = body.encode()
        if body is None:
            if method in ("POST", "PUT", "PATCH"):
                fields["Content-Length"] = "0"  # as the Go client does; some servers want it
            body = b""
        elif isinstance(body, (bytes, bytearray, memoryview)):
            fields["Content-Length"] = str(len(body))
        else:
            # A file or an iterator of bytes (a build context): size unknown, so send it chunked.
            fields["Transfer-Encoding"] = "chunked"
            # bind read now: the lambda must not see ``body`` after it is reset below
            chunks = iter(lambda read=body.read: read(65536), b"") if hasattr(body, "read") else iter(body)
            body = b""
        fields.update(headers or {})
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
        wire.sock.sendall(head.encode("latin-1") + bytes(body))
        if chunks is not None:
            for chunk in chunks:
                if chunk:
                    wire.sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            wire.sock.sendall(b"0\r\n\r\n")

    def _exchange(self, method, path, query, body, headers):
        """Send a request and read the response head; returns (wire, status, reason, headers, _Body)."""
        target = self.target(path, query)
        replayable = body is None or isinstance(body, (dict, list, str, bytes, bytearray, memoryview))
        for attempt in (1, 2):
            wire, reused = self._wire, self._wire is not None
            self._wire = None  # this exchange owns the connection until its body is read
            if wire is None:
                wire = self._connect()
            try:
                self._send(wire, method, target, body, headers)
                status, reason, rheaders = _read_head(wire)
            except (_EmptyReply, BrokenPipeError, ConnectionResetError):
                wire.close()
                # A kept-alive connection the daemon had already closed: try once more on a new
                # one (RFC 9112 §9.3.1 allows retrying when nothing came back).
                if reused and replayable and attempt == 1:
                    continue
                raise
            except BaseException:
                wire.close()
                raise
            return wire, status, reason, rheaders, _Body(wire, method, status, rheaders)

    # ---- the four ways to ask ----

    def request(self, method: str, path: str, query=None, body=None, headers: dict | None = None) -> Reply:
        """One request, the whole response. Error statuses are returned too: use ``.check()``."""
        wire, status, reason, rheaders, rbody = self._exchange(method, path, query, body, headers)
        try:
            data = rbody.read_all()
        except BaseException:
            wire.close()
            raise
        self._release(wire, rbody.reusable)
        return Reply(status, reason, rheaders, data)

    def stream(self, method: str, path: str, query=None, body=None, headers: dict | None = None):
        """Iterate over the JSON objects of a newline-delimited JSON response as they arrive.

        The request is sent at once; an error status raises APIError here, before any iteration.
        Leaving the loop early closes the connection (the rest of the body is not wanted).
        """
        return _ndjson(self.open_stream(method, path, query, body, headers))

    def open_stream(self, method: str, path: str, query=None, body=None, headers: dict | None = None
                    ) -> "RawStream":
        """Start a request and return its body as a RawStream of bytes (``logs -f``, ``export``).

        Raises APIError if the daemon answers with an error status.
        """
        wire, status, reason, rheaders, rbody = self._exchange(method, path, query, body, headers)
        if status >= 400:
            try:
                data = rbody.read_all()
            except BaseException:
                wire.close()
                raise
            self._release(wire, rbody.reusable)
            raise APIError.from_body(status, data, reason)
        return RawStream(self, wire, status, rheaders, rbody)

    def hijack(self, method: str, path: str, query=None, body=None, headers: dict | None = None
               ) -> "HijackedConnection":
        """Ask the daemon to turn a new connection into a raw byte pipe (``attach``, ``exec start``).

        Sends ``Connection: Upgrade`` + ``Upgrade: tcp``; expects ``101 UPGRADED``. Anything other
        than 101 raises APIError with the daemon's message.
        """
        wire = self._connect()  # never the kept-alive one: after the 101 it is no longer HTTP
        try:
            extra = {"Connection": "Upgrade", "Upgrade": "tcp"}
            if body is None:
                extra["Content-Type"] = "text/plain"
            self._send(wire, method, self.target(path, query), body, headers, extra)
            status, reason, rheaders = _read_head(wire)
            if status != 101:
                data = _Body(wire, method, status, rheaders).read_all() if status >= 400 else b""
                wire.close()
                if status < 400:
                    raise APIError(status, f"unable to upgrade to tcp, received {status}")
                raise APIError.from_body(status, data, reason)
        except BaseException:
            wire.close()
            raise
        # Bytes that arrived together with the head are the start of the raw stream: keep them.
        return HijackedConnection(wire.sock, status, rheaders, wire.take(len(wire.buf)))


def _ndjson(raw: "RawStream"):
    """Split a byte stream into lines (they need not line up with chunks) and parse each as JSON."""
    try:
        pending = b""
        while data := raw.read():
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    yield json.loads(line)
        if pending.strip():
            yield json.loads(pending)
    finally:
        raw.close()


class RawStream:
    """A response body arriving over time. ``read()`` returns bytes as they come, b"" at the end."""

    def __init__(self, client: Client, wire: _Wire, status: int, headers: Headers, body: _Body):
        self._client = client
        self._wire = wire
        self._body = body
        self.status = status
        self.headers = headers

    def read(self, n: int = 65536) -> bytes:
        if self._wire is None:
            return b""
        data = self._body.read(n)
        if self._body.done:  # read to the end: the connection may serve the next request
            wire, self._wire = self._wire, None
            self._client._release(wire, self._body.reusable)
        return data

    def __iter__(self):
        while data := self.read():
            yield data

    def frames(self):
        """(stream_id, payload) records of a multiplexed body (non-TTY logs)."""
        return read_frames(self.read)

    def close(self) -> None:
        """Stop reading. An unfinished body cannot be skipped, so its connection is closed."""
        if self._wire is not None:
            self._wire.close()
            self._wire = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class HijackedConnection:
    """The raw two-way byte pipe left after a 101 answer.

    ``leftover``: bytes that arrived with the head (already the stream's first bytes; ``read`` returns
    them first). ``close_write()`` half-closes: the daemon sees end-of-input on the container's stdin
    but keeps sending output until the process ends.
    """

    def __init__(self, sock: socket.socket, status: int, headers: Headers, leftover: bytes):
        self.sock = sock
        self.status = status
        self.headers = headers
        self.leftover = leftover
        self._pending = leftover

    def read(self, n: int = 65536) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:n], self._pending[n:]
            return data
        return self.sock.recv(n)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already closed by the other side

    def frames(self):
        return read_frames(self.read)

    def fileno(self) -> int:
        return self.sock.fileno()  # for select()/poll() in interactive sessions

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
