"""Small helpers every layer uses: atomic file writes, ids, times.

Atomic write (the rule for every piece of state on disk): write a temporary file in the same
directory, fsync it, rename it over the target (rename(2) is atomic within a filesystem), fsync the
directory. A crash at any moment leaves either the old or the new content, never half of one.
:func:`atomic_write_files` does it for several files of one directory with one directory fsync.
Without ``fsync`` (records of live state that a reboot ends anyway) a *daemon* crash still leaves
old or new content — the page cache survives a process — only a power loss may not.
"""
from __future__ import annotations

import contextlib
import json
import os
import time

# datetime, threading and secrets (hashlib, random) are imported where used: this module is on
# every start-up path (the runtime CLI, the daemon), and those imports cost more than the helpers.


def atomic_write(path: str, data: bytes | str, mode: int = 0o644, fsync: bool = True,
                 sync_dir: bool = True) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a mix.
    ``sync_dir=False`` (with ``fsync``): the content is durable, the rename may not be — after a
    power loss the old or the new file, each whole; for a file replaced often whose previous
    version is a state the reader can recover from."""
    d = os.path.dirname(path) or "."
    tmp = _write_temporary(d, os.path.basename(path), data, mode, fsync)
    try:
        os.rename(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    if fsync and sync_dir:
        _fsync_dir(d)


def atomic_write_files(directory: str, files: dict[str, bytes | str], mode: int = 0o644) -> None:
    """Several files of one directory made durable together: each written and fsync'ed under a
    temporary name, then all renamed into place and the directory fsync'ed once (not once per
    file). A crash leaves each file old or new; callers that need all or none check on reading
    (a container record half-written is cleaned up at the daemon's start)."""
    tmps: list[tuple[str, str]] = []
    try:
        for name, data in files.items():
            tmps.append((_write_temporary(directory, name, data, mode, True), os.path.join(directory, name)))
        for tmp, path in tmps:
            os.rename(tmp, path)
    except BaseException:
        for tmp, _ in tmps:
            _unlink(tmp)
        raise
    _fsync_dir(directory)


def _write_temporary(d: str, name: str, data: bytes | str, mode: int, fsync: bool) -> str:
    tmp = os.path.join(d, f".tmp-{name}-{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _fsync_dir(d: str) -> None:
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def json_text(obj) -> str:
    """The JSON form of the records on disk (indented, keys sorted: readable and diffable)."""
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def atomic_write_json(path: str, obj, fsync: bool = True) -> None:
    atomic_write(path, json_text(obj), fsync=fsync)


def read_json(path: str, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (proc(5)), read after the command name, which may hold spaces:
    when the process started. With the pid it names one process for good (runc does this); None
    for no such process or a zombie (dead, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def new_id() -> str:
    """A container/exec id as docker makes them: 64 hex characters (what secrets.token_hex does)."""
    return os.urandom(32).hex()


def now_rfc3339(t: float | None = None) -> str:
    """RFC 3339 with nanoseconds, UTC, as docker prints times: 2026-11-29T10:00:00.123456789Z."""
    ns = time.time_ns() if t is None else int(t * 1e9)
    sec, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))  # UTC; no datetime import needed
    return f"{base}.{frac:09d}Z"


ZERO_TIME = "0001-01-01T00:00:00Z"


def parse_rfc3339(s: str) -> float:
    """Inverse of :func:`now_rfc3339` (seconds since the epoch, float)."""
    from datetime import datetime, timezone
    if not s or s.startswith("0001-"):
        return 0.0
    s = s.rstrip("Z")
    frac = 0.0
    if "." in s:
        s, f = s.split(".", 1)
        frac = float("0." + f)
    dt = datetime.strptime(s, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return dt.timestamp() + frac


class Leases:
    """In-memory reference counts: ``with leases.hold(keys): ...`` keeps ``keys`` "in use" for a
    garbage collector that asks ``key in leases`` (containerd's leases, without the database: they
    live as long as the process, which is as long as what they protect is being assembled). The
    collector checks and deletes under ``leases.lock`` so a hold either came first or sees the
    thing gone."""

    def __init__(self, lock=None):
        import threading
        self.lock = lock or threading.RLock()
        self._counts: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, keys):
        keys = [k for k in keys if k]
        with self.lock:
            for k in keys:
                self._counts[k] = self._counts.get(k, 0) + 1
        try:
            yield
        finally:
            with self.lock:
                for k in keys:
                    self._counts[k] -= 1
                    if not self._counts[k]:
                        del self._counts[k]

    def __contains__(self, key) -> bool:
        return key in self._counts

