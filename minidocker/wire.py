"""The Docker Engine API's wire conventions, once, for the daemon, the CLI, the monitor and the labs.

What this teaches
-----------------
Beyond plain HTTP, Docker's API has a handful of conventions that every client and server must agree
on byte for byte. They live here, below everyone that speaks them (imports point down only: the
daemon, the CLI client and the runtime's monitor import this module; it imports nothing of ours):

* **API versions.** Requests may start with ``/vX.Y`` (``/v1.50/containers/json``). The daemon
  serves the versions from ``MIN_API_VERSION`` to ``API_VERSION``; anything outside that range is
  refused with 400 and dockerd's words (``client version 1.99 is too new. Maximum supported API
  version is 1.50``). Clients negotiate: they read ``API-Version`` from ``GET /_ping`` and use the
  lower of theirs and the daemon's (:func:`negotiate`).
* **Stream framing.** Without a TTY, a container's stdout and stderr share one byte stream (logs,
  attach, exec), so each piece travels as a record: an 8-byte header ``[stream u8][0 0 0][length
  u32 big-endian]``, then the payload. Stream 0 = stdin, 1 = stdout, 2 = stderr, 3 = a system error
  the CLI prints as an error. :func:`encode_frame`, :func:`decode_frames` (incremental, for
  buffers), :func:`read_frames` (for a blocking ``read(n)``).
* **Boolean query parameters.** dockerd reads ``?force=...`` as false iff the value is empty, ``0``,
  ``no``, ``false`` or ``none`` in any case (the Go CLI sends ``1``, docker-py ``True``/``False``).
* **Error bodies.** ``{"message": "..."}``; the CLI prints ``Error response from daemon: <message>``.

See: shared/specs/docker-engine-api-v1.50.yaml ("Versioning", "Stream format" under ContainerAttach),
moby's api/server/middleware/version.go (the range check), and notes/docker-engine-api-clients.md.
"""
from __future__ import annotations

import re
import struct

API_VERSION = "1.50"  # the newest version served (and what /_ping and /version report)
MIN_API_VERSION = "1.24"  # the oldest: dockerd's default minimum since API 1.44 went out

MULTIPLEXED = "application/vnd.docker.multiplexed-stream"  # non-TTY output: framed records
RAW_STREAM = "application/vnd.docker.raw-stream"  # TTY output: plain bytes

STDIN, STDOUT, STDERR, SYSTEMERR = 0, 1, 2, 3
_HEADER = struct.Struct(">BxxxI")

FALSE_WORDS = frozenset({"", "0", "no", "false", "none"})

# "/v1.50/containers/json" -> ("1.50", "/containers/json"). moby's router pattern is /v{version:[0-9.]+}.
_VERSION_PREFIX = re.compile(r"/v([0-9]+(?:\.[0-9]+)*)(/.*)")


# ---- API versions ---------------------------------------------------------------------------------

def split_version(path: str) -> tuple[str | None, str]:
    """``/v1.50/containers/json`` -> ("1.50", "/containers/json"); no prefix -> (None, path)."""
    m = _VERSION_PREFIX.fullmatch(path)
    return (m.group(1), m.group(2)) if m else (None, path)


def version_tuple(version: str) -> tuple[int, ...]:
    """"1.50" -> (1, 50): versions compare number by number, so 1.9 < 1.24 < 1.50."""
    return tuple(int(part) for part in version.split("."))


def version_error(version: str, minimum: str = MIN_API_VERSION, maximum: str = API_VERSION) -> str | None:
    """dockerd's message when ``version`` is outside [minimum, maximum]; None when it is served."""
    v = version_tuple(version)
    if v < version_tuple(minimum):
        return (f"client version {version} is too old. Minimum supported API version is {minimum}, "
                "please upgrade your client to a newer version")
    if v > version_tuple(maximum):
        return f"client version {version} is too new. Maximum supported API version is {maximum}"
    return None


def negotiate(client_version: str | None, server_version: str | None) -> str:
    """The version a client should use: the lower of its own and the server's (docker's
    ``NegotiateAPIVersion``); a server that reports none is taken to be at our API_VERSION."""
    client_version = client_version or API_VERSION
    if not server_version:
        return client_version
    return min(client_version, server_version, key=version_tuple)


def docker_headers(server_name: str) -> dict[str, str]:
    """Fields on every response of a Docker API server. The CLI negotiates from /_ping's API-Version."""
    return {"API-Version": API_VERSION, "Docker-Experimental": "false", "OSType": "linux",
            "Server": server_name}


# ---- the multiplexed stream ------------------------------------------------------------------------

def encode_frame(stream: int, payload: bytes) -> bytes:
    """One record of the multiplexed stream: ``[stream u8][0 0 0][length u32 big-endian]`` + payload."""
    return _HEADER.pack(stream, len(payload)) + payload


def decode_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split ``data`` into complete frames; returns (frames, the incomplete rest to keep for later)."""
    frames = []
    while len(data) >= 8:
        stream, size = _HEADER.unpack_from(data)
        if len(data) < 8 + size:
            break
        frames.append((stream, data[8:8 + size]))
        data = data[8 + size:]
    return frames, data


def _read_up_to(read, n: int) -> bytes:
    """Exactly n bytes from ``read`` (which may return fewer), or fewer only at end of stream."""
    parts, got = [], 0
    while got < n:
        data = read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def read_frames(read):
    """Yield (stream, payload) from a multiplexed stream; ``read(n)`` returns <= n bytes, b"" at end.

    A header cut short by the end of the stream is dropped, as the docker CLI does.
    """
    while True:
        header = _read_up_to(read, 8)
        if len(header) < 8:
            return
        stream, length = _HEADER.unpack(header)
        payload = _read_up_to(read, length)
        yield stream, payload
        if len(payload) < length:
            return


# ---- query parameters and errors ----------------------------------------------------------------------

def api_bool(value: str | None, default: bool = False) -> bool:
    """dockerd: absent -> default; "", 0, no, false, none (any case) -> False; anything else -> True."""
    if value is None:
        return default
    return value.strip().lower() not in FALSE_WORDS


def error_body(message: str) -> dict:
    """Docker's error shape. The CLI prints ``Error response from daemon: <message>``."""
    return {"message": message}
