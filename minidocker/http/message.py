"""The pieces of an HTTP exchange a handler touches: header fields, request bodies, responses, errors.

What this teaches
-----------------
* Header field names are case-insensitive (RFC 9110 §5.1); a field sent several times is one
  comma-joined list (§5.3) -- :class:`Headers`.
* A request body may be far larger than memory (``docker load`` of a 2 GB archive, a registry blob
  upload), so it is never required to be in memory: :class:`Body` keeps a small body in a buffer and
  moves a large one to a temporary file *as it arrives* (what Go's ``multipart`` reader and
  Python's ``tempfile.SpooledTemporaryFile`` do). Handlers that expect big bodies read it in pieces
  (``open()``, ``save(path)``); ``req.body`` as bytes stays for the small JSON bodies of most routes.
* A response is a status, header fields and a body; errors raised by handlers become responses
  (:class:`HTTPError`), with the Docker error body by default.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile

from .. import wire

SPOOL_ABOVE = 1 << 20  # request bodies larger than 1 MiB go to a temporary file
SPOOL_PREFIX = ".body-"  # its name in spool_dir


class HTTPError(Exception):
    """Raise from a handler to answer ``status`` with the Docker error body ``{"message": ...}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class ClientDisconnected(ConnectionError):
    """Raise from a handler when the client went away (``req.disconnected`` is set).

    The server treats any ConnectionError escaping a handler as "the client hung up" when its own
    connection is gone: it closes the connection quietly, without a response and without an error log.
    """


class Headers:
    """Header fields, looked up case-insensitively. ``get`` joins repeated fields with ", "; ``get_all`` keeps them apart."""

    def __init__(self, fields: list[tuple[str, str]] | None = None):
        self.fields: list[tuple[str, str]] = list(fields or [])

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.fields if k.lower() == name]

    def tokens(self, name: str) -> list[str]:
        """A comma-separated list field (``Connection: keep-alive, Upgrade``) as lower-case tokens."""
        return [t.strip().lower() for t in (self.get(name) or "").split(",") if t.strip()]

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


class Body:
    """A request body being received: in memory up to ``memory_limit`` bytes, beyond that in a file.

    The server writes into it while the body arrives (``write``), then hands it to the handler. The
    temporary file lives in ``spool_dir`` (the daemon's or registry's state directory, so that
    ``save`` can rename it into place without copying) and is removed when the request is done.
    """

    def __init__(self, spool_dir: str | None = None, memory_limit: int = SPOOL_ABOVE, data: bytes = b""):
        self.spool_dir = spool_dir
        self.memory_limit = memory_limit
        self.size = len(data)
        self._buffer: bytearray | None = bytearray(data)
        self._file = None  # the open temporary file once the body outgrew memory_limit

    @property
    def path(self) -> str | None:
        """The temporary file holding the body, or None while it is in memory."""
        return self._file.name if self._file is not None else None

    def write(self, data: bytes) -> None:
        # Plain blocking writes, on purpose: a 64 KiB write lands in the page cache in microseconds,
        # far less than the network needed to deliver it; a thread hop per piece would cost more.
        self.size += len(data)
        if self._file is None and self.size > self.memory_limit:
            if self.spool_dir:
                os.makedirs(self.spool_dir, exist_ok=True)
            self._file = tempfile.NamedTemporaryFile(prefix=SPOOL_PREFIX, dir=self.spool_dir, delete=False)
            self._file.write(self._buffer)
            self._buffer = None
        if self._file is not None:
            self._file.write(data)
        else:
            self._buffer += data

    def finish(self) -> None:
        """All of the body has arrived."""
        if self._file is not None:
            self._file.flush()

    def __len__(self) -> int:
        return self.size

    def _present(self) -> None:
        if self._file is None and self._buffer is None:
            raise RuntimeError("the request body was already moved away (save)")

    def bytes(self) -> bytes:
        """The whole body in memory (for small bodies; large ones should use ``open`` or ``save``)."""
        self._present()
        if self._file is None:
            return bytes(self._buffer)
        with open(self._file.name, "rb") as f:
            return f.read()

    def open(self):
        """A binary file object positioned at the start of the body."""
        self._present()
        if self._file is None:
            return io.BytesIO(bytes(self._buffer))
        return open(self._file.name, "rb")

    def save(self, path: str) -> None:
        """Put the body at ``path``: a rename when it is spooled on the same filesystem, else a copy."""
        self._present()
        if self._file is None:
            with open(path, "wb") as f:
                f.write(self._buffer)
            self._buffer = None
            return
        self._file.close()
        try:
            os.rename(self._file.name, path)
        except OSError:  # another filesystem (EXDEV): copy in pieces
            with open(self._file.name, "rb") as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.unlink(self._file.name)
        self._file = None
        self._buffer = None  # moved away: size still tells how big it was

    def append_to(self, path: str) -> None:
        """Append the body to the file at ``path`` (a registry upload session), in pieces."""
        if self.size == 0:
            return
        if self._file is not None and os.path.getsize(path) == 0:
            self.save(path)  # the common case, a blob in one piece: no copy at all
            return
        with self.open() as src, open(path, "ab") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)

    def discard(self) -> None:
        """Remove the temporary file (the request is done)."""
        if self._file is not None:
            self._file.close()
            try:
                os.unlink(self._file.name)
            except FileNotFoundError:
                pass
            self._file = None
        self._buffer = bytearray()


class Response:
    """A complete response: status, body and extra headers. ``Content-Length`` is added for you,
    unless the handler sets it (a HEAD answer giving the length a GET would have)."""

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
    """Docker's error shape, ``{"message": ...}`` (also what the server uses for its own errors)."""
    return json_response(wire.error_body(message), status)


def no_body_allowed(status: int) -> bool:
    """RFC 9110 §6.4.1: 1xx, 204 and 304 responses never have content (nor a Content-Length for 1xx/204)."""
    return status < 200 or status in (204, 304)
