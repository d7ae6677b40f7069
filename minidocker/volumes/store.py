"""Named volumes with the ``local`` driver: ``ROOT/NAME/_data`` and a little metadata.

What this teaches
-----------------
A volume is a directory the daemon owns, outside every container's layers: ``ROOT/NAME/_data`` is
bind-mounted into each container that uses it, so what one writes the next one reads, and ``rm`` of a
container leaves it alone. Docker's ``local`` driver adds one trick: *options* (``type``, ``device``,
``o`` — the three arguments of mount(8)) make it mount something at ``_data`` first, e.g. a tmpfs
shared by the containers (``-o type=tmpfs -o device=tmpfs -o o=size=64m``) or a host directory
(``-o type=none -o o=bind -o device=/srv``). That mount is made when the first container starts
using the volume and removed when the last one lets go — reference counting.

*Anonymous* volumes (``-v /data``, an image's ``VOLUME``) get a random 64-hex name and the label
``com.docker.volume.anonymous``; ``docker rm -v`` and ``--rm`` remove them with the container, and
``volume prune`` removes only those unless ``-a`` (docker 23+).

*Copy-up*: the first time an empty volume is mounted over a directory the image fills, the image's
content is copied into it (owners, modes, xattrs kept: :func:`minidocker.unionfs.copy_tree`), once;
``nocopy`` turns that off.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time

from .. import kernel as K
from ..unionfs import copy_tree
from ..util import atomic_write_json, new_id, now_rfc3339, read_json

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
LOCAL_OPTIONS = ("type", "device", "o")
# dockerd also refuses one-character names ("volume name is too short"); the chapter's scenario
# (``docker volume create v``) uses one, so minidocker accepts them.
_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_FLAG_OPTIONS = {"ro": K.MS_RDONLY, "bind": K.MS_BIND, "rbind": K.MS_BIND | K.MS_REC,
                 "nosuid": K.MS_NOSUID, "nodev": K.MS_NODEV, "noexec": K.MS_NOEXEC}


class VolumeError(Exception):
    """Bad input for a volume operation (HTTP 400)."""


class VolumeNotFound(VolumeError, LookupError):
    pass


class VolumeConflict(VolumeError):
    """The volume is in use (HTTP 409)."""


class VolumeStore:
    def __init__(self, root: str, kernel=None):
        self.root = os.path.abspath(root)
        os.makedirs(self.root, mode=0o701, exist_ok=True)
        self.kernel = kernel or K.Linux()
        self.refs: dict[str, set[str]] = {}    # volume name -> ids of the containers using it
        self._lock = threading.RLock()

    # ---- paths and metadata ---------------------------------------------------------------------
    def _dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def mountpoint(self, name: str) -> str:
        return os.path.join(self._dir(name), "_data")

    def _meta(self, name: str) -> dict:
        meta = read_json(os.path.join(self._dir(name), "volume.json")) if _NAME_RE.fullmatch(name) else None
        if meta is None:
            raise VolumeNotFound(f"get {name}: no such volume")
        return meta

    def _save(self, name: str, meta: dict) -> None:
        atomic_write_json(os.path.join(self._dir(name), "volume.json"), meta)

    def names(self) -> list[str]:
        return sorted(n for n in os.listdir(self.root) if os.path.exists(os.path.join(self.root, n, "volume.json")))

    def exists(self, name: str) -> bool:
        return _NAME_RE.fullmatch(name or "") is not None and os.path.exists(os.path.join(self._dir(name), "volume.json"))

    # ---- create / inspect / list ----------------------------------------------------------------
    def create(self, name: str | None = None, driver: str | None = None, options: dict | None = None,
               labels: dict | None = None, anonymous: bool = False) -> dict:
        """docker volume create: an existing name is answered as it is (docker's behaviour)."""
        driver = driver or "local"
        if driver != "local":
            raise VolumeNotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found')
        labels = dict(labels or {})
        if anonymous or not name:
            name = name or new_id()
            labels.setdefault(ANONYMOUS_LABEL, "")
        if not _NAME_RE.fullmatch(name):
            raise VolumeError(f'create {name}: "{name}" includes invalid characters for a local volume name, '
                              'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                              "directory, use absolute path")
        options = {str(k): str(v) for k, v in (options or {}).items()}
        for key in options:
            if key not in LOCAL_OPTIONS:
                raise VolumeError(f'create {name}: invalid option key: "{key}"')
        if options and not options.get("type"):
            raise VolumeError(f"create {name}: missing required option: \"type\"")
        if options and not options.get("device"):
            raise VolumeError(f"create {name}: missing required option: \"device\"")
        with self._lock:
            if self.exists(name):
                return self.inspect(name)
            os.makedirs(self.mountpoint(name), mode=0o755)
            os.chmod(self._dir(name), 0o701)
            self._save(name, {"Name": name, "Driver": driver, "CreatedAt": now_rfc3339(), "Labels": labels,
                              "Options": options, "Populated": False})
        return self.inspect(name)

    def inspect(self, name: str, usage: bool = False) -> dict:
        meta = self._meta(name)
        out = {"Name": name, "Driver": meta["Driver"], "Mountpoint": self.mountpoint(name),
               "CreatedAt": meta["CreatedAt"], "Labels": meta["Labels"] or None, "Scope": "local",
               "Options": meta["Options"] or None}
        if usage:
            out["UsageData"] = {"Size": dir_size(self.mountpoint(name)), "RefCount": len(self.refs.get(name, ()))}
        return out

    def list(self, filters: dict | None = None) -> list[dict]:
        """``GET /volumes`` with filters dangling, name (substring), label (key or key=value), driver."""
        filters = filters or {}
        for key in filters:
            if key not in ("dangling", "name", "label", "driver"):
                raise VolumeError(f"invalid filter '{key}'")
        out = []
        for name in self.names():
            v = self.inspect(name)
            if not matches(v, filters, in_use=bool(self.refs.get(name))):
                continue
            out.append(v)
        return out

    def anonymous(self, name: str) -> bool:
        return ANONYMOUS_LABEL in (self._meta(name)["Labels"] or {})

    # ---- users: reference counts, and the options' mount --------------------------------------
    def acquire(self, name: str, cid: str) -> str:
        """Container ``cid`` uses the volume: the first user makes its options' mount. Returns the
        host directory to bind into the container."""
        with self._lock:
            meta = self._meta(name)
            users = self.refs.setdefault(name, set())
            if not users and meta["Options"] and not self._mounted(name):
                self._mount(name, meta["Options"])
            users.add(cid)
            return self.mountpoint(name)

    def release(self, name: str, cid: str) -> None:
        """The last user gone: the options' mount is undone (nothing stays mounted on the host)."""
        with self._lock:
            users = self.refs.get(name, set())
            users.discard(cid)
            if not users:
                self.refs.pop(name, None)
                if self._mounted(name):
                    self.kernel.umount2(self.mountpoint(name), K.MNT_DETACH)

    def users(self, name: str) -> list[str]:
        return sorted(self.refs.get(name, ()))

    def _mounted(self, name: str) -> bool:
        from ..rootfs import mountinfo
        target = self.mountpoint(name)
        return any(m.mountpoint == target for m in mountinfo())

    def _mount(self, name: str, options: dict) -> None:
        flags, data = 0, []
        for o in [o for o in options.get("o", "").split(",") if o]:
            if o in _FLAG_OPTIONS:
                flags |= _FLAG_OPTIONS[o]
            else:
                data.append(o)
        fstype = None if options["type"] == "none" or flags & K.MS_BIND else options["type"]
        try:
            self.kernel.mount(options["device"], self.mountpoint(name), fstype, flags & ~K.MS_RDONLY
                              if flags & K.MS_BIND else flags, ",".join(data) or None)
            if flags & K.MS_BIND and flags & K.MS_RDONLY:
                self.kernel.mount(None, self.mountpoint(name), None, K.MS_REMOUNT | K.MS_BIND | K.MS_RDONLY, None)
        except OSError as e:
            raise VolumeError(f"error while mounting volume '{self.mountpoint(name)}': {e}") from None

    # ---- copy-up -------------------------------------------------------------------------------------
    def wants_copy_up(self, name: str) -> bool:
        """Empty and never filled: the image's content at the mount point will be copied in."""
        return not self._meta(name).get("Populated") and not os.listdir(self.mountpoint(name))

    def copy_up(self, name: str, source_dir: str) -> bool:
        """Fill an empty, never-filled volume from ``source_dir`` (the image's directory). Once."""
        with self._lock:
            if not self.wants_copy_up(name):
                return False
            fill(self.mountpoint(name), source_dir)
            self.mark_populated(name)
            return True

    def mark_populated(self, name: str) -> None:
        with self._lock:
            meta = self._meta(name)
            meta["Populated"] = True
            self._save(name, meta)

    # ---- remove / prune ------------------------------------------------------------------------
    def remove(self, name: str, force: bool = False) -> None:
        with self._lock:
            if not self.exists(name):
                if force:
                    return
                raise VolumeNotFound(f"get {name}: no such volume")
            if self.refs.get(name):
                raise VolumeConflict(f"remove {name}: volume is in use - [{', '.join(self.users(name))}]")
            if self._mounted(name):
                self.kernel.umount2(self.mountpoint(name), K.MNT_DETACH)
            doomed = os.path.join(self.root, f".rm-{name}-{time.monotonic_ns()}")
            os.rename(self._dir(name), doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def prune(self, filters: dict | None = None) -> tuple[list[str], int]:
        """Unused volumes; only anonymous ones unless the filter ``all=true`` (docker 23+)."""
        filters = dict(filters or {})
        everything = [v.lower() for v in filters.pop("all", [])] in (["true"], ["1"])
        for key in filters:
            if key not in ("label", "label!"):
                raise VolumeError(f"invalid filter '{key}'")
        deleted, reclaimed = [], 0
        for name in self.names():
            v = self.inspect(name)
            labels = v["Labels"] or {}
            if self.refs.get(name) or (not everything and ANONYMOUS_LABEL not in labels):
                continue
            if not _labels_match(labels, filters.get("label", [])):
                continue
            if filters.get("label!") and any(_labels_match(labels, [x]) for x in filters["label!"]):
                continue
            size = dir_size(self.mountpoint(name))
            with contextlib.suppress(VolumeConflict, VolumeNotFound):
                self.remove(name)
                deleted.append(name)
                reclaimed += size
        return deleted, reclaimed


def fill(data: str, source_dir: str) -> bool:
    """Copy ``source_dir``'s content and its owner and mode into volume directory ``data`` (no lock:
    safe in a forked child). False if there is no such directory in the image."""
    if not os.path.isdir(source_dir):
        return False
    copy_tree(source_dir, data)
    st = os.stat(source_dir)     # the mount point's own owner and mode, too
    os.chown(data, st.st_uid, st.st_gid)
    os.chmod(data, st.st_mode & 0o7777)
    return True


def _labels_match(labels: dict, wanted: list[str]) -> bool:
    for w in wanted:
        k, eq, v = w.partition("=")
        if k not in labels or (eq and labels[k] != v):
            return False
    return True


def matches(v: dict, filters: dict, in_use: bool) -> bool:
    for d in filters.get("dangling", []):
        if d.lower() not in ("true", "false", "1", "0"):
            raise VolumeError(f"invalid filter 'dangling={d}'")
        if (d.lower() in ("true", "1")) == in_use:
            return False
    if filters.get("name") and not any(n in v["Name"] for n in filters["name"]):
        return False
    if filters.get("driver") and v["Driver"] not in filters["driver"]:
        return False
    return _labels_match(v["Labels"] or {}, filters.get("label", []))


def dir_size(path: str) -> int:
    """Bytes the files under ``path`` take (hardlinks once; a mount below is not crossed)."""
    total, seen = 0, set()
    try:
        dev = os.lstat(path).st_dev
    except OSError:
        return 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                if st.st_dev == dev and (st.st_ino not in seen):
                    seen.add(st.st_ino)
                    total += st.st_blocks * 512
    return total
