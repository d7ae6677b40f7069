"""The union-mounts chapter: an image is a stack of layers, a container one writable layer on top.

What this teaches
-----------------
containerd does not mount anything when it prepares a container's root filesystem. Its
*snapshotter* (containerd ``snapshots.Snapshotter``) keeps directories and answers with the
**mounts to perform**; whoever needs the tree performs them (here: the container's pid 1, inside its
own mount namespace, so the mounts vanish with the container and the host never sees them).

* ``prepare(key, parent)`` — a new *active* (writable) snapshot on top of a committed one;
* ``view(key, parent)`` — a read-only snapshot of a committed one;
* ``commit(name, key)`` — an active snapshot becomes a committed, immutable layer named ``name``
  (for image layers the name is the layer's ChainID, so each layer is extracted once and shared);
* ``remove(key)`` — only when nothing is stacked on it (its reference count is zero);
* ``usage(key)`` — bytes and inodes the snapshot itself takes;
* ``mounts(key)`` — the mounts again, for an existing snapshot;
* ``prune(keep)`` — remove committed snapshots nothing uses, except those a ``lease(*keys)`` holds
  (something being assembled: a layer whose image is not recorded yet, a fresh init layer).

Three drivers, one interface (all keep ``ROOT/<id>/fs``; ids are small integers so paths stay short):

* **overlay** — overlayfs(5) (kernel Documentation/filesystems/overlayfs.rst): the committed parents
  are ``lowerdir=`` (top-most first), the active snapshot's ``fs`` is ``upperdir=``, ``work`` the
  ``workdir=``. A layer's deletions are stored as overlay *whiteouts* (a 0:0 character device) and
  *opaque directories* (xattr ``trusted.overlay.opaque=y``). Limits: the option string is one page
  (4,096 bytes with its NUL) — long stacks switch to paths relative to ``ROOT`` plus a chdir, as
  containerd does — and the kernel stacks at most 500 lower layers (``OVL_MAX_STACK``).
* **copy** — containerd's "native" snapshotter: ``prepare`` copies the parent's whole tree, a
  bind mount serves it. Slow and big, but works where overlay cannot (an upper directory on
  overlayfs itself, i.e. inside a container already on overlay). Whiteouts become real deletions.

:func:`lookup` and :func:`merged_listdir` compute overlay's merge rules by hand (which layer supplies
a path, which whiteout hides it): the diagrams and the copy-on-write chapter (:mod:`minidocker.cow`)
use them. :func:`mount_all` performs a list of mounts; :func:`run_mounted` does it in a forked child
in a private mount namespace, so nothing can be left mounted.

Man pages and specs: mount(2) (the one-page data limit), overlayfs(5) / kernel overlayfs.rst,
OCI image-spec layer.md (whiteouts), containerd ``snapshots/snapshotter.go``.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field

from . import kernel as K
from .child import ChildError, call_in_child
from .rootfs import Mount
from .util import Leases, atomic_write, read_json

OVERLAY_MAX_LAYERS = 500          # the kernel's OVL_MAX_STACK
MOUNT_DATA_MAX = 4096 - 1         # mount(2) copies one page of options, NUL included
OPAQUE_XATTR = "trusted.overlay.opaque"
DRIVERS = ("overlay", "copy", "btrfs")

KIND_ACTIVE, KIND_VIEW, KIND_COMMITTED = "active", "view", "committed"


class SnapshotError(Exception):
    """A snapshot operation that cannot be done; the message says which snapshot and why."""


class SnapshotNotFound(SnapshotError, LookupError):
    pass


class SnapshotExists(SnapshotError):
    pass


class SnapshotInUse(SnapshotError):
    pass


@dataclass
class Info:
    """One snapshot's metadata (containerd ``snapshots.Info``)."""
    key: str
    id: str
    kind: str
    parent: str | None = None
    created: float = 0.0
    labels: dict = field(default_factory=dict)


# --- whiteouts, as overlayfs stores them ------------------------------------------------------------

def is_whiteout(st: os.stat_result) -> bool:
    """overlayfs marks a deleted name with a character device 0:0 in an upper (or lower) layer."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str) -> bool:
    """A directory whose lower layers' contents are hidden (after ``rm -r dir; mkdir dir``)."""
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _resolve(layers: list[str], path: str):
    """Walk ``path`` one name at a time through the layers (top-most first). Returns
    ((index, stat) of the supplying layer or None, the layers that contribute *below* path)."""
    parts = [p for p in path.strip("/").split("/") if p]
    candidates = []
    for i, layer in enumerate(layers):   # the root directory: every layer, down to an opaque one
        candidates.append(i)
        if is_opaque(layer):
            break
    found = (0, os.lstat(layers[0])) if layers else None
    prefix = ""
    for depth, name in enumerate(parts):
        prefix = f"{prefix}/{name}"
        hits = []
        for i in candidates:
            try:
                hits.append((i, os.lstat(layers[i] + prefix)))
            except (FileNotFoundError, NotADirectoryError):
                continue
        if not hits or is_whiteout(hits[0][1]):
            return None, []                  # never there, or deleted by a whiteout
        found = hits[0]
        if not stat.S_ISDIR(found[1].st_mode):
            return (found, []) if depth == len(parts) - 1 else (None, [])
        # Below a directory only the layers where it is also a directory contribute — down to the
        # first opaque one, which hides everything under it in the layers below.
        candidates = []
        for i, s in hits:
            if not stat.S_ISDIR(s.st_mode):
                break
            candidates.append(i)
            if is_opaque(layers[i] + prefix):
                break
    return found, candidates


def lookup(layers: list[str], path: str) -> tuple[int, os.stat_result] | None:
    """Overlay's lookup rule, by hand: which layer (index into ``layers``, top-most first) supplies
    ``path`` — or None if it does not exist in the merged view (never there, or whited out).
    The top-most layer that has a name wins; a whiteout there means "deleted"; a non-directory
    ends the search below it; an opaque directory hides the layers below it."""
    return _resolve(layers, path)[0]


def merged_listdir(layers: list[str], path: str) -> dict[str, int]:
    """The names in directory ``path`` of the merged view -> the index of the layer supplying each
    (what ``ls`` on the overlay mount would show, computed without mounting)."""
    found, candidates = _resolve(layers, path)
    if found is None or not stat.S_ISDIR(found[1].st_mode):
        raise NotADirectoryError(f"{path} is not a directory in the merged view")
    rel = "/" + "/".join(p for p in path.strip("/").split("/") if p) if path.strip("/") else ""
    names: dict[str, int] = {}
    hidden: set[str] = set()
    for i in candidates:
        d = layers[i] + rel
        for name in sorted(os.listdir(d)):
            if name in names or name in hidden:
                continue
            if is_whiteout(os.lstat(os.path.join(d, name))):
                hidden.add(name)
            else:
                names[name] = i
    return names


# --- the snapshotter ----------------------------------------------------------------------------------

class Snapshotter:
    """Metadata and the common verbs; the two drivers below differ in directories and mounts."""

    driver = "?"

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        self._meta_path = os.path.join(self.root, "metadata.json")
        self._lock_path = os.path.join(self.root, ".lock")
        self._thread_lock = threading.RLock()
        self._leases = Leases(self._thread_lock)   # keys prune leaves be (this process)

    # ---- metadata: one JSON file, replaced atomically under an flock ----------------------------
    @contextlib.contextmanager
    def _locked(self):
        with self._thread_lock, open(self._lock_path, "a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield read_json(self._meta_path, default={"next_id": 1, "snapshots": {}})
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _save(self, meta: dict) -> None:
        # Compact: the file is rewritten at every change and grows with the number of layers.
        # Its content is fsync'ed (never a torn file after a power loss), the rename is not (no
        # directory fsync, one of the two per change): a power loss may bring the previous version
        # back, and each change leaves what the previous version describes recoverable — a layer
        # directory not recorded is re-extracted (unpack asks ``exists``), a container's snapshot
        # without its container is swept at the daemon's start, one recorded after its directory
        # went is removed by the same sweep. The next write with a directory fsync (the image
        # index, a container's record) makes the rename durable anyway on a journaling fs.
        atomic_write(self._meta_path, json.dumps(meta, separators=(",", ":")), sync_dir=False)

    def _info(self, meta: dict, key: str) -> Info:
        raw = meta["snapshots"].get(key)
        if raw is None:
            raise SnapshotNotFound(f"snapshot {key!r} does not exist ({self.driver} snapshotter)")
        return Info(**raw)

    def stat(self, key: str) -> Info:
        with self._locked() as meta:
            return self._info(meta, key)

    def exists(self, key: str) -> bool:
        with self._locked() as meta:
            return key in meta["snapshots"]

    def list(self) -> list[Info]:
        with self._locked() as meta:
            return [Info(**v) for v in meta["snapshots"].values()]

    def dir(self, info: Info) -> str:
        return os.path.join(self.root, info.id)

    def fs(self, key: str) -> str:
        """The directory holding this snapshot's own files (overlay: its layer; copy: the whole tree)."""
        return os.path.join(self.dir(self.stat(key)), "fs")

    def parents(self, key: str) -> list[Info]:
        """The committed chain below ``key``, nearest first (overlay's lowerdir order)."""
        with self._locked() as meta:
            out, info = [], self._info(meta, key)
            while info.parent:
                info = self._info(meta, info.parent)
                out.append(info)
            return out

    def refcount(self, key: str) -> int:
        """How many snapshots are stacked directly on ``key``; it can be removed at zero."""
        with self._locked() as meta:
            self._info(meta, key)
            return sum(1 for v in meta["snapshots"].values() if v["parent"] == key)

    def lease(self, *keys: str):
        """Hold ``keys`` against :meth:`prune` for the duration of a ``with`` block (containerd's
        leases, in memory): a layer just committed for an image not yet recorded, or an init layer
        between its commit and the container's prepare on top of it, has nothing stacked on it and
        no image naming it yet — without a lease a concurrent prune would take it away. Take the
        lease *before* checking that a key exists: what prune removed before is then re-made,
        what exists then stays."""
        return self._leases.hold(keys)

    # ---- the verbs ----------------------------------------------------------------------------------
    def prepare(self, key: str, parent: str | None = None, labels: dict | None = None) -> list[Mount]:
        return self._create(KIND_ACTIVE, key, parent, labels)

    def view(self, key: str, parent: str | None = None, labels: dict | None = None) -> list[Mount]:
        return self._create(KIND_VIEW, key, parent, labels)

    def _create(self, kind: str, key: str, parent: str | None, labels: dict | None) -> list[Mount]:
        if not key or "/" in key:
            raise SnapshotError(f"invalid snapshot key {key!r}")
        with self._locked() as meta:
            if key in meta["snapshots"]:
                raise SnapshotExists(f"snapshot {key!r} already exists")
            if parent is not None and self._info(meta, parent).kind != KIND_COMMITTED:
                raise SnapshotError(f"parent {parent!r} of {key!r} is not committed")
            info = Info(key=key, id=str(meta["next_id"]), kind=kind, parent=parent,
                        created=time.time(), labels=dict(labels or {}))
            meta["next_id"] += 1
            # Record first (so a crash leaves a known, removable snapshot), then make directories.
            meta["snapshots"][key] = asdict(info)
            self._save(meta)
        try:
            os.makedirs(os.path.join(self.dir(info), "fs"), mode=0o755)
            os.chmod(os.path.join(self.dir(info), "fs"), 0o755)
            self._populate(info)
        except BaseException:
            self.remove(key)
            raise
        return self.mounts(key)

    def commit(self, name: str, key: str, labels: dict | None = None) -> Info:
        """Active ``key`` becomes committed ``name`` (same directory); ``key`` is gone afterwards."""
        with self._locked() as meta:
            info = self._info(meta, key)
            if info.kind != KIND_ACTIVE:
                raise SnapshotError(f"snapshot {key!r} is {info.kind}, only active snapshots commit")
            if name in meta["snapshots"]:
                raise SnapshotExists(f"snapshot {name!r} already exists")
            if any(v["parent"] == key for v in meta["snapshots"].values()):
                raise SnapshotInUse(f"snapshot {key!r} has children")
            del meta["snapshots"][key]
            info.key, info.kind = name, KIND_COMMITTED
            info.labels.update(labels or {})
            meta["snapshots"][name] = asdict(info)
            self._save(meta)
        with contextlib.suppress(FileNotFoundError):  # a committed layer needs no workdir
            shutil.rmtree(os.path.join(self.dir(info), "work"))
        return info

    def remove(self, key: str) -> None:
        """Forget ``key`` and delete its directory; refused while anything is stacked on it."""
        shutil.rmtree(self._detach(key), ignore_errors=True)

    def _detach(self, key: str) -> str:
        """Forget ``key``, move its directory aside and return where (the slow delete comes after)."""
        with self._locked() as meta:
            info = self._info(meta, key)
            children = [k for k, v in meta["snapshots"].items() if v["parent"] == key]
            if children:
                raise SnapshotInUse(f"cannot remove snapshot {key!r}: {len(children)} snapshot(s) "
                                    f"use it ({', '.join(sorted(children)[:3])})")
            # Move the directory aside first: the name is free at once, the delete may take time.
            doomed = os.path.join(self.root, f".rm-{info.id}")
            with contextlib.suppress(FileNotFoundError):
                os.rename(self.dir(info), doomed)
            del meta["snapshots"][key]
            self._save(meta)
        return doomed

    def usage(self, key: str) -> dict:
        """Bytes and inodes the snapshot's own directory takes (hardlinks counted once)."""
        size, inodes, seen = 0, 0, set()
        for dirpath, dirnames, filenames in os.walk(self.fs(key)):
            for name in [*dirnames, *filenames]:
                st = os.lstat(os.path.join(dirpath, name))
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                inodes += 1
                size += st.st_blocks * 512
        return {"Size": size, "Inodes": inodes}

    def prune(self, keep: set[str], only=lambda info: True) -> list[str]:
        """Remove committed snapshots that nothing uses: no children, not named in ``keep`` (e.g. the
        ChainIDs of stored images), not leased, and accepted by ``only`` (a test on the Info).
        Repeats until stable: removing a top layer may free the one below. Each removal re-checks
        under the lock, so a snapshot that gained a child or a lease meanwhile stays."""
        removed: list[str] = []
        while True:
            with self._locked() as meta:
                parents = {v["parent"] for v in meta["snapshots"].values()}
                unused = [k for k, v in meta["snapshots"].items()
                          if v["kind"] == KIND_COMMITTED and k not in parents and k not in keep
                          and k not in self._leases and only(Info(**v))]
            gone = [k for k in unused if self._remove_unused(k)]
            removed += gone
            if not gone:
                return removed

    def _remove_unused(self, key: str) -> bool:
        with self._thread_lock:          # leases are taken under this lock too
            if key in self._leases:
                return False
            try:
                doomed = self._detach(key)
            except (SnapshotNotFound, SnapshotInUse):
                return False
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    # ---- driver specifics ----------------------------------------------------------------------------
    def _populate(self, info: Info) -> None:
        raise NotImplementedError

    def mounts(self, key: str) -> list[Mount]:
        raise NotImplementedError


class OverlaySnapshotter(Snapshotter):
    """Each snapshot holds only its own changes; a mount stacks them (overlayfs)."""

    driver = "overlay"

    def _populate(self, info: Info) -> None:
        if info.kind == KIND_ACTIVE:
            os.mkdir(os.path.join(self.dir(info), "work"), 0o700)

    def mounts(self, key: str) -> list[Mount]:
        info = _mountable(self.stat(key))
        fs = os.path.join(self.dir(info), "fs")
        lowers = [os.path.join(self.dir(p), "fs") for p in self.parents(key)]
        if info.kind == KIND_VIEW:
            lowers = lowers or [fs]
            if len(lowers) == 1:   # overlay needs two lowers without an upper: a read-only bind
                return [Mount(lowers[0], "", None, K.MS_BIND | K.MS_RDONLY)]
            return [self._overlay(lowers, None, None)]
        if not lowers:             # the bottom layer: nothing to stack, bind its directory
            return [Mount(fs, "", None, K.MS_BIND)]
        return [self._overlay(lowers, fs, os.path.join(self.dir(info), "work"))]

    def _overlay(self, lowers: list[str], upper: str | None, work: str | None) -> Mount:
        if len(lowers) > OVERLAY_MAX_LAYERS:
            raise SnapshotError(f"{len(lowers)} layers: overlayfs stacks at most "
                                f"{OVERLAY_MAX_LAYERS} lower layers (kernel OVL_MAX_STACK)")

        def options(paths):
            return overlay_options(paths(lowers), upper and paths([upper])[0], work and paths([work])[0]) \
                + ",index=off,redirect_dir=off,metacopy=off"

        data = options(lambda ps: ps)
        if len(data) <= MOUNT_DATA_MAX:
            return Mount("overlay", "", "overlay", 0, data)
        # Too long for one page: paths relative to the snapshotter's root, and a chdir before
        # the mount (the kernel resolves relative lowerdirs against the mounting process's cwd).
        data = options(lambda ps: [os.path.relpath(p, self.root) for p in ps])
        if len(data) > MOUNT_DATA_MAX:
            raise SnapshotError(f"overlay options for {len(lowers)} layers are {len(data)} bytes even "
                                f"with relative paths; mount(2) takes at most {MOUNT_DATA_MAX}")
        return Mount("overlay", "", "overlay", 0, data, cwd=self.root)

    def layer_dirs(self, key: str) -> list[str]:
        """The directories a merged view of ``key`` is made of, top-most first."""
        info = self.stat(key)
        own = [os.path.join(self.dir(info), "fs")] if info.kind != KIND_VIEW else []
        return own + [os.path.join(self.dir(p), "fs") for p in self.parents(key)]


class CopySnapshotter(Snapshotter):
    """Each snapshot is a complete tree: prepare copies the parent (containerd's "native")."""

    driver = "copy"

    def _populate(self, info: Info) -> None:
        if info.parent:
            src = os.path.join(self.dir(self.stat(info.parent)), "fs")
            copy_tree(src, os.path.join(self.dir(info), "fs"))

    def mounts(self, key: str) -> list[Mount]:
        info = _mountable(self.stat(key))
        ro = K.MS_RDONLY if info.kind == KIND_VIEW else 0
        return [Mount(os.path.join(self.dir(info), "fs"), "", None, K.MS_BIND | ro)]

    def layer_dirs(self, key: str) -> list[str]:
        return [self.fs(key)]


class BtrfsSnapshotter(CopySnapshotter):
    """Each snapshot is a btrfs subvolume; prepare/view snapshot the parent's (containerd's btrfs).

    The btrfs-progs commands beat hand-written ioctls (BTRFS_IOC_SNAP_CREATE_V2 and friends) here:
    the arguments are versioned structs and the tools are what an administrator would type.
    Removal needs nothing special: since Linux 4.18 rmdir(2) on an emptied subvolume deletes it."""

    driver = "btrfs"

    def __init__(self, root: str):
        super().__init__(root)
        ok, why = btrfs_usable(self.root)
        if not ok:
            raise SnapshotError(f"the btrfs storage driver cannot work here: {why}")

    def _populate(self, info: Info) -> None:
        fs = os.path.join(self.dir(info), "fs")
        os.rmdir(fs)                       # made by _create as a plain directory: a subvolume instead
        if info.parent:
            _btrfs("subvolume", "snapshot", os.path.join(self.dir(self.stat(info.parent)), "fs"), fs)
        else:
            _btrfs("subvolume", "create", fs)
            os.chmod(fs, 0o755)

    def usage(self, key: str) -> dict:
        """Bytes only this snapshot holds (extents shared with its parent are not counted: "Exclusive"
        of btrfs-filesystem(8) ``du``, after a sync so that fresh writes have extents), and inodes."""
        fs = self.fs(key)
        _btrfs("filesystem", "sync", fs)
        row = _btrfs("filesystem", "du", "-s", "--raw", fs).splitlines()[1].split()
        return {"Size": int(row[1]), "Inodes": super().usage(key)["Inodes"]}

    def is_subvolume(self, key: str) -> bool:
        """A subvolume's root directory has inode number 256 (BTRFS_FIRST_FREE_OBJECTID)."""
        return os.stat(self.fs(key)).st_ino == 256


def _btrfs(*args: str) -> str:
    try:
        r = subprocess.run(["btrfs", *args], capture_output=True, text=True)
    except FileNotFoundError:
        raise SnapshotError("the 'btrfs' command is missing (package btrfs-progs)") from None
    if r.returncode != 0:
        raise SnapshotError(f"btrfs {' '.join(args)}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


def fs_type(path: str) -> str:
    """The file system type holding ``path`` (statfs(2)'s f_type, by name, as stat(1) prints it)."""
    r = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else "?"


def btrfs_usable(root: str) -> tuple[bool, str]:
    """Can the btrfs driver keep snapshots under ``root``? Needs the kernel's btrfs, btrfs-progs and
    ``root`` on a btrfs file system. Returns (ok, why-not)."""
    why = _kernel_lacks("btrfs")
    if why:
        return False, why
    if shutil.which("btrfs") is None:
        return False, "the 'btrfs' command is missing (package btrfs-progs)"
    probe = root
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    kind = fs_type(probe)
    if kind != "btrfs":
        return False, f"{probe} is on {kind}, not btrfs"
    return True, ""


def _mountable(info: Info) -> Info:
    if info.kind == KIND_COMMITTED:  # containerd: committed snapshots are only ever parents
        raise SnapshotError(f"snapshot {info.key!r} is committed: mount a view() of it instead")
    return info


def copy_tree(src: str, dst: str) -> None:
    """Copy a tree keeping everything a layer can hold: owners, modes (setuid too), hardlinks,
    symlinks, device nodes, fifos, xattrs, timestamps. ``cp -a`` does all of that (coreutils:
    ``-a`` = ``-dR --preserve=all``); ``src/.`` copies the contents into the existing ``dst``."""
    r = subprocess.run(["cp", "-a", "--", os.path.join(src, "."), dst], capture_output=True, text=True)
    if r.returncode != 0:
        raise SnapshotError(f"copying {src} to {dst} failed: {r.stderr.strip()}")


def new_snapshotter(driver: str, root: str) -> Snapshotter:
    if driver == "overlay":
        return OverlaySnapshotter(root)
    if driver == "copy":
        return CopySnapshotter(root)
    if driver == "btrfs":
        return BtrfsSnapshotter(root)
    raise SnapshotError(f"unknown storage driver {driver!r}: choose one of {', '.join(DRIVERS)}")


# --- writing into a snapshot without mounting it (the layer applier's shortcut) ----------------------

def apply_target(snapshotter: Snapshotter, key: str) -> tuple[str, str]:
    """Where to extract a layer for active snapshot ``key``, and with which whiteout semantics.

    containerd's applier does the same for overlay: rather than mounting, it writes into the
    upper directory and turns OCI whiteouts into overlay ones. The copy driver's snapshot already
    holds the parent's whole tree, so whiteouts there are plain deletions."""
    if isinstance(snapshotter, OverlaySnapshotter):
        return snapshotter.fs(key), "overlay"
    return snapshotter.fs(key), "copy"


def add_placeholders(snapshotter: Snapshotter, key: str, files=(), dirs=()) -> list[str]:
    """Create empty mount points in active snapshot ``key`` where the merged view lacks them —
    docker's "init layer": committed between the image and the container, it holds the files the
    runtime bind-mounts over (/etc/hostname, /etc/hosts, /etc/resolv.conf), so they show up
    neither in ``docker diff`` nor in ``docker commit``. Parent directories are created with the
    owner, mode and mtime the merged view has (what an overlay copy-up would do). Returns what
    was created."""
    fs = snapshotter.fs(key)
    layers = snapshotter.layer_dirs(key)      # [fs, parents...] (copy: [fs], the whole tree)
    made = []
    for path, is_dir in [(f, False) for f in files] + [(d, True) for d in dirs]:
        parts = [p for p in path.strip("/").split("/") if p]
        if lookup(layers, path) is not None:
            continue
        ok = True
        for i in range(1, len(parts)):
            d = "/" + "/".join(parts[:i])
            found = lookup(layers, d)
            if found is not None and not stat.S_ISDIR(found[1].st_mode):
                ok = False                    # a symlink or file on the way: leave it to the runtime
                break
            if not os.path.isdir(fs + d):
                os.mkdir(fs + d, 0o755)
                if found is not None:
                    st = found[1]
                    os.chown(fs + d, st.st_uid, st.st_gid)
                    os.chmod(fs + d, stat.S_IMODE(st.st_mode))
        if not ok:
            continue
        parent = os.path.dirname(fs + "/" + "/".join(parts))
        before = os.lstat(parent)
        if is_dir:
            os.mkdir(fs + "/" + "/".join(parts), 0o755)
        else:
            os.close(os.open(fs + "/" + "/".join(parts), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        # Keep the parent's mtime: the placeholder must not make /etc look changed.
        below = lookup(layers[1:], os.path.dirname("/" + "/".join(parts))) if len(layers) > 1 else None
        mtime = below[1].st_mtime_ns if below else before.st_mtime_ns
        os.utime(parent, ns=(mtime, mtime), follow_symlinks=False)
        made.append(path)
    return made


# --- performing mounts ------------------------------------------------------------------------------

def _escape(path: str) -> str:
    """overlayfs splits options at ',' and lowerdir at ':'; a backslash escapes either (and itself)."""
    return path.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


def overlay_options(lowers: list[str], upper: str | None = None, work: str | None = None) -> str:
    """The data string of an overlay mount (kernel ``Documentation/filesystems/overlayfs.rst``):
    ``lowerdir=`` the lower layers **top-most first**, separated by ':'; with ``upper``, also
    ``upperdir=`` and ``workdir=`` (both on one filesystem; without them the mount is read-only)."""
    if not lowers:
        raise ValueError("an overlay needs at least one lower layer")
    if bool(upper) != bool(work):
        raise ValueError("upperdir and workdir go together")
    o = "lowerdir=" + ":".join(_escape(p) for p in lowers)
    return o + (f",upperdir={_escape(upper)},workdir={_escape(work)}" if upper else "")


def mount_all(mounts: list[Mount], target: str, kernel=None) -> None:
    """Perform the mounts a snapshotter returned onto ``target`` (in order). A read-only bind takes
    two calls: MS_RDONLY is ignored on the first bind and applied by a remount."""
    k = kernel or K.Linux()
    cwd = os.getcwd()
    try:
        for m in mounts:
            if m.cwd:
                k.chdir(m.cwd)
            k.mount(m.source, target, m.fstype, m.flags & ~K.MS_RDONLY if m.flags & K.MS_BIND else m.flags,
                    m.data)
            if m.flags & K.MS_BIND and m.flags & K.MS_RDONLY:
                k.mount(None, target, None, K.MS_REMOUNT | K.MS_BIND | K.MS_RDONLY, None)
    finally:
        os.chdir(cwd)


def run_mounted(mounts: list[Mount], target: str, fn, *args, timeout: float = 120.0):
    """Mount in a forked child that first unshares its mount namespace (propagation private), call
    ``fn(target, *args)`` there, and return its (picklable) result. The mounts die with the child:
    nothing is ever left mounted on the host, even if ``fn`` fails; a child still busy after
    ``timeout`` seconds is killed (minidocker/child.py)."""
    def in_child():
        k = K.Linux()
        k.unshare(K.CLONE_NEWNS)
        k.mount(None, "/", None, K.MS_REC | K.MS_PRIVATE, None)
        mount_all(mounts, target, k)
        return fn(target, *args)
    try:
        return call_in_child(in_child, timeout=timeout)
    except ChildError as e:
        raise SnapshotError(f"{e.type_name}: {e.message}") from None


def _kernel_lacks(fstype: str) -> str:
    """Why the kernel cannot mount ``fstype`` ("" if it can): /proc/filesystems lists what it knows."""
    try:
        with open("/proc/filesystems") as f:
            if any(line.split()[-1:] == [fstype] for line in f):
                return ""
            return f"the kernel has no {fstype} filesystem (/proc/filesystems)"
    except OSError as e:
        return f"cannot read /proc/filesystems: {e}"


def overlay_usable(root: str) -> tuple[bool, str]:
    """Can this host stack overlays with upper directories under ``root``? Tried for real: mount
    one in a throw-away mount namespace (a forked child). Returns (ok, why-not)."""
    why = _kernel_lacks("overlay")
    if why:
        return False, why
    os.makedirs(root, exist_ok=True)
    base = os.path.join(root, f".probe-{os.getpid()}")
    try:
        for d in ("lower", "upper", "work", "merged"):
            os.makedirs(os.path.join(base, d), exist_ok=True)
        data = (f"lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work")
        run_mounted([Mount("overlay", "", "overlay", 0, data)], f"{base}/merged",
                    lambda t: open(os.path.join(t, "probe"), "w").close())
        return True, ""
    except (SnapshotError, OSError) as e:
        return False, f"an overlay mount under {root} failed: {e}"
    finally:
        shutil.rmtree(base, ignore_errors=True)


__all__ = ["Snapshotter", "OverlaySnapshotter", "CopySnapshotter", "BtrfsSnapshotter", "btrfs_usable", "Info", "SnapshotError",
           "SnapshotNotFound", "SnapshotExists", "SnapshotInUse", "new_snapshotter", "apply_target",
           "mount_all", "run_mounted", "overlay_usable", "add_placeholders", "lookup", "merged_listdir", "is_whiteout",
           "is_opaque", "copy_tree", "DRIVERS", "OVERLAY_MAX_LAYERS", "MOUNT_DATA_MAX"]
