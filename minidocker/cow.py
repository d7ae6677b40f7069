"""The copy-on-write chapter: what a container changed, and how those changes become a layer.

What this teaches
-----------------
A container writes into its own layer only. With overlayfs the first write to a lower file *copies
it up* (whole file, owner, mode, xattrs) into the upper directory; a delete leaves a *whiteout*
(char device 0:0); ``rm -r dir; mkdir dir`` leaves an *opaque* directory; renaming a lower directory
fails with EXDEV unless ``redirect_dir`` is on (our mounts say ``redirect_dir=off``, so ``mv``
falls back to copy + delete, and every change stays visible in the upper directory alone).

:func:`changes` lists a container's changes as ``docker diff`` does — ``A`` added, ``C`` changed,
``D`` deleted (API kinds 1, 0, 2) — from what the snapshotter keeps:

* overlay: walk the upper directory only; a whiteout is a ``D``, anything else ``A`` or ``C``
  depending on whether the lower layers (merged by :func:`minidocker.unionfs.lookup`) have it;
* copy: compare the container's tree with its parent's (type, mode, owner, size, mtime, link
  target, device, xattrs), as docker's "naive" differ does.

:func:`write_layer` turns the changes into an OCI layer tar (image-spec layer.md): added and changed
entries with their metadata, hardlinks as links, xattrs as PAX ``SCHILY.xattr.*`` records, and a
``.wh.NAME`` entry per deletion. Entries are sorted and carry no user/group names, so the same
changes always give the same bytes — and the same DiffID.

Man pages and specs: overlayfs(5) and the kernel's overlayfs.rst ("Non-directories", "whiteouts and
opaque directories", "Renaming directories"), rename(2) (EXDEV), OCI image-spec layer.md
("Representing Changes", "Whiteouts"), Docker Engine API ``ContainerChanges``.
"""
from __future__ import annotations

import os
import stat
import tarfile
from dataclasses import dataclass

from .unionfs import (CopySnapshotter, Snapshotter, is_opaque, is_whiteout, lookup,
                      merged_listdir)

KIND_CODES = {"C": 0, "A": 1, "D": 2}   # the Docker API's numbers for docker diff's letters
WHITEOUT_PREFIX = ".wh."
OVERLAY_XATTR_PREFIX = "trusted.overlay."  # overlayfs' private bookkeeping, never exported


@dataclass(frozen=True, order=True)
class Change:
    path: str
    kind: str  # "A", "C" or "D"

    def api(self) -> dict:
        return {"Path": self.path, "Kind": KIND_CODES[self.kind]}

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


def _join(parent: str, name: str) -> str:
    return f"{parent.rstrip('/')}/{name}"


# --- overlay: the upper directory *is* the list of changes -------------------------------------------

def overlay_changes(upper: str, lowers: list[str]) -> list[Change]:
    out: list[Change] = []

    def walk(rel: str) -> None:
        for name in sorted(os.listdir(upper + rel)):
            path = _join(rel or "/", name)
            st = os.lstat(upper + path)
            below = lookup(lowers, path) if lowers else None
            if is_whiteout(st):
                if below is not None:
                    out.append(Change(path, "D"))
                continue
            out.append(Change(path, "C" if below is not None else "A"))
            if stat.S_ISDIR(st.st_mode):
                if below is not None and stat.S_ISDIR(below[1].st_mode) and is_opaque(upper + path):
                    # rm -r + mkdir: whatever the lower layers had in here is gone.
                    mine = set(os.listdir(upper + path))
                    out.extend(Change(_join(path, n), "D")
                               for n in merged_listdir(lowers, path) if n not in mine)
                walk(path)

    walk("")
    return sorted(out)


# --- copy: compare two complete trees -----------------------------------------------------------------

def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for n in names:
        if n.startswith(OVERLAY_XATTR_PREFIX):
            continue
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            pass
    return out


def _differs(old: str, new: str, a: os.stat_result, b: os.stat_result) -> bool:
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode) or a.st_mode != b.st_mode:
        return True
    if (a.st_uid, a.st_gid, a.st_rdev) != (b.st_uid, b.st_gid, b.st_rdev):
        return True
    if a.st_mtime_ns != b.st_mtime_ns or (not stat.S_ISDIR(a.st_mode) and a.st_size != b.st_size):
        return True
    if stat.S_ISLNK(a.st_mode) and os.readlink(old) != os.readlink(new):
        return True
    return _xattrs(old) != _xattrs(new)


def tree_changes(new_root: str, old_root: str | None) -> list[Change]:
    out: list[Change] = []

    def walk(rel: str) -> bool:
        """Record the changes below ``rel``; True if there were any."""
        new_dir = new_root + rel
        old_dir = (old_root + rel) if old_root else None
        new_names = sorted(os.listdir(new_dir))
        old_names = set(os.listdir(old_dir)) if old_dir and os.path.isdir(old_dir) else set()
        changed = False
        for name in new_names:
            path = _join(rel or "/", name)
            b = os.lstat(new_root + path)
            a = os.lstat(old_root + path) if name in old_names else None
            if a is None:
                out.append(Change(path, "A"))
                changed = True
                if stat.S_ISDIR(b.st_mode):
                    walk_added(path)
                continue
            inner = stat.S_ISDIR(a.st_mode) and stat.S_ISDIR(b.st_mode) and walk(path)
            if inner or _differs(old_root + path, new_root + path, a, b):
                out.append(Change(path, "C"))
                changed = True
                if stat.S_ISDIR(b.st_mode) and not stat.S_ISDIR(a.st_mode):
                    walk_added(path)
        for name in sorted(old_names - set(new_names)):
            out.append(Change(_join(rel or "/", name), "D"))
            changed = True
        return changed

    def walk_added(rel: str) -> None:
        for name in sorted(os.listdir(new_root + rel)):
            path = _join(rel, name)
            out.append(Change(path, "A"))
            if stat.S_ISDIR(os.lstat(new_root + path).st_mode):
                walk_added(path)

    walk("")
    return sorted(out)


def changes(snapshotter: Snapshotter, key: str) -> list[Change]:
    """``docker diff``: the changes of active snapshot ``key`` against its parent, sorted by path."""
    parents = snapshotter.parents(key)
    if isinstance(snapshotter, CopySnapshotter):
        old = snapshotter.fs(parents[0].key) if parents else None
        return tree_changes(snapshotter.fs(key), old)
    return overlay_changes(snapshotter.fs(key), [snapshotter.fs(p.key) for p in parents])


# --- the changes as an OCI layer ------------------------------------------------------------------------

def _tarinfo(root: str, path: str, links: dict) -> tarfile.TarInfo | None:
    src = root + path
    st = os.lstat(src)
    ti = tarfile.TarInfo(path.lstrip("/"))
    ti.mode, ti.uid, ti.gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
    ti.uname = ti.gname = ""            # names depend on the host's /etc/passwd: leave them out
    ti.mtime = int(st.st_mtime)
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and (st.st_dev, st.st_ino) in links:
        ti.type, ti.linkname = tarfile.LNKTYPE, links[(st.st_dev, st.st_ino)]
        return ti                        # a second name for a file already in this layer
    if stat.S_ISREG(st.st_mode):
        ti.type, ti.size = tarfile.REGTYPE, st.st_size
        if st.st_nlink > 1:
            links[(st.st_dev, st.st_ino)] = ti.name
    elif stat.S_ISDIR(st.st_mode):
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(src)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(st.st_mode):
        ti.type = tarfile.FIFOTYPE
    else:
        return None                      # a socket: tar cannot hold one (docker skips them too)
    for name, value in sorted(_xattrs(src).items()):
        ti.pax_headers["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    return ti


OVERFLOW_ID = 65534   # what a user namespace shows for an id it does not map (/proc/sys/kernel/overflowuid)


def container_id(host_id: int, mappings: list[dict]) -> int:
    """The id a user namespace with these OCI ``uidMappings``/``gidMappings`` shows for ``host_id``
    (user_namespaces(7)); the overflow id when no range holds it."""
    for m in mappings:
        if m["hostID"] <= host_id < m["hostID"] + m["size"]:
            return m["containerID"] + host_id - m["hostID"]
    return OVERFLOW_ID


def restore_container_ids(change_list: list[Change], root: str, id_mappings: tuple[list, list]) -> None:
    """Give the added and changed files under ``root`` the ids the container saw (see write_layer):
    for a snapshot that becomes an image layer as it is (a build step), so that disk and tar agree.
    chown(2) clears set-user/group-ID bits: the mode is put back."""
    for ch in change_list:
        if ch.kind == "D":
            continue
        path = root + ch.path
        st = os.lstat(path)
        os.lchown(path, container_id(st.st_uid, id_mappings[0]), container_id(st.st_gid, id_mappings[1]))
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(path, stat.S_IMODE(st.st_mode))


def write_layer(change_list: list[Change], root: str, out, id_mappings: tuple[list, list] | None = None) -> int:
    """Write the changes as an uncompressed OCI layer tar to binary file ``out``; ``root`` is the
    directory holding the added and changed files (overlay: the upper dir; copy: the container's
    tree). Returns the number of entries. ``id_mappings`` (uid, gid mappings of a container in a
    user namespace, OCI form): its files belong to remapped host ids on disk, and the layer records
    the ids the container saw (dockerd's commit does the same), so that the image is the same on
    any host and with or without remapping."""
    links: dict = {}
    n = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for ch in sorted(change_list):
            if ch.kind == "D":
                parent, name = os.path.split(ch.path)
                ti = tarfile.TarInfo(os.path.join(parent, WHITEOUT_PREFIX + name).lstrip("/"))
                ti.mode, ti.mtime, ti.uname, ti.gname = 0o644, 0, "", ""
                tar.addfile(ti)
            else:
                ti = _tarinfo(root, ch.path, links)
                if ti is None:
                    continue
                if id_mappings:
                    ti.uid, ti.gid = container_id(ti.uid, id_mappings[0]), container_id(ti.gid, id_mappings[1])
                if ti.type == tarfile.REGTYPE:
                    with open(root + ch.path, "rb") as f:
                        tar.addfile(ti, f)
                else:
                    tar.addfile(ti)
            n += 1
    return n


def layer_root(snapshotter: Snapshotter, key: str) -> str:
    """Where :func:`write_layer` reads the changed files of snapshot ``key`` from."""
    return snapshotter.fs(key)


__all__ = ["Change", "changes", "overlay_changes", "tree_changes", "write_layer", "container_id", "restore_container_ids", "layer_root",
           "KIND_CODES"]
