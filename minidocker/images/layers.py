"""Applying an OCI layer (a tar changeset) onto a directory, safely.

What this teaches
-----------------
An image's filesystem is a stack of *layers*; each layer is a tar archive of the files it adds or
changes, plus *whiteout* entries for the files it removes (OCI image-spec layer.md, sections
"Change Types", "File Attributes", "Whiteouts", "Opaque Whiteout"):

* ``dir/.wh.NAME`` means "NAME from the layers below is gone";
* ``dir/.wh..wh..opq`` means "everything the layers below had in dir is gone" (it applies before
  the layer's own entries in dir, whatever order they come in the tar).

There are two ways to use a layer, and :func:`apply_layer` does both:

* ``whiteouts="copy"`` (default): apply the layer onto a directory that already holds the layers
  below, deleting what the whiteouts name ("copy semantics", what ``docker export`` shows).
* ``whiteouts="overlay"``: extract the layer alone into an empty directory that will be one
  ``lowerdir`` of an overlay mount; whiteouts become overlayfs' own markers (a 0:0 character device
  for ``.wh.NAME``, the ``trusted.overlay.opaque=y`` xattr for an opaque directory). Both need root.

Safety (a layer comes from the network and is hostile until proven otherwise):

* Member names are relative to the target. A leading "/" is stripped (``/etc/passwd`` means
  ``TARGET/etc/passwd``), as docker does; a name whose ``..`` would climb out of the target is
  refused with :class:`LayerError` naming the member.
* Parent directories are walked one component at a time with ``O_NOFOLLOW`` directory file
  descriptors. A symlink met on the way is followed *as if the target were the root* (the way
  docker extracts inside a chroot): ``var/run -> /run`` leads to ``TARGET/run`` and ``..`` stops at
  the target. So ``link -> /tmp/outside`` followed by ``link/file`` writes ``TARGET/tmp/outside/file``
  and never the host's /tmp. The last component is never followed: an existing entry is replaced.
* Hardlink targets are resolved the same way and must be inside the target.

We iterate the members ourselves instead of ``tarfile.extractall``: its ``filter='data'`` refuses
absolute symlinks such as ``bin/sh -> /bin/busybox`` that every real root filesystem contains.
Gzip and zstd layers are detected by their magic bytes (zstd through the ``zstandard`` package).

Speed, without giving up the above: the parent directory of each member is resolved in scope once
and its fd reused by the next members of the same directory (the cache is emptied whenever
something is removed, since that can change what a path resolves to); decompression and hashing
run one thread ahead of the tar reader (zlib and hashlib release the GIL).

Layers are independent when each is extracted into its own directory (overlay semantics: one
snapshot per layer, see store.py): :func:`apply_layers_parallel` extracts several at once in
worker processes (tar parsing is CPU-bound Python, so threads would queue on the GIL).
"""
from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import posixpath
import queue
import shutil
import stat
import tarfile
import threading
import zlib
from dataclasses import dataclass, field

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAX_SYMLINK_HOPS = 40  # what Linux allows (ELOOP)
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"


class LayerError(Exception):
    """A layer could not be applied; the message names the offending member."""


@dataclass
class ApplyResult:
    """What :func:`apply_layer` did. ``diff_id`` is sha256 of the uncompressed tar (the DiffID)."""

    diff_id: str
    entries: int = 0
    skipped: list[str] = field(default_factory=list)  # e.g. device nodes when not root


# --------------------------------------------------------------------------------------------
# Reading the layer: detect compression, hash the uncompressed stream (that hash is the DiffID).


def uncompressed_stream(f):
    """Wrap ``f`` so reads return the uncompressed tar, whatever the layer's compression:
    gzip and zstd are recognised by their magic bytes (RFC 1952, RFC 8878), anything else is
    read as a plain tar."""
    buffered = f if hasattr(f, "peek") else io.BufferedReader(f)
    magic = buffered.peek(4)[:4]
    if magic.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    if magic == ZSTD_MAGIC:
        try:
            import zstandard  # only layers that need it pay for the import
        except ImportError:
            raise LayerError("a zstd-compressed layer needs the zstandard package "
                             "(pip install zstandard; make setup installs it)") from None
        return _ZstdReader(buffered, zstandard.ZstdDecompressor())
    return buffered


class _ZstdReader(io.RawIOBase):
    """Decompress zstd frames one after the other; a stream that ends inside a frame is an
    error (zstandard's own stream reader returns a short read instead, which a tar reader could
    take for a complete archive)."""

    def __init__(self, f, decompressor):
        self._f, self._d = f, decompressor
        self._obj, self._buf, self._eof = decompressor.decompressobj(), b"", False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf and not self._eof:
            chunk = self._f.read(1 << 20)
            if not chunk:
                self._eof = True
                if not self._obj.eof:
                    raise LayerError("corrupt zstd layer stream: it ends inside a frame (truncated)")
                break
            while chunk:
                self._buf += self._obj.decompress(chunk)
                chunk = b""
                if self._obj.eof and self._obj.unused_data:  # the next frame starts here
                    chunk = self._obj.unused_data
                    self._obj = self._d.decompressobj()
        n = min(len(b), len(self._buf))
        b[:n], self._buf = self._buf[:n], self._buf[n:]
        return n



class _Prefetcher(io.RawIOBase):
    """Reads (decompresses) and hashes the layer in a helper thread, a few MiB ahead of the tar
    reader. zlib, zstd and hashlib release the GIL while they work, so decompression overlaps
    with creating files, as ``tar -xzf`` overlaps them by running gzip in a second process.
    Errors of the stream (a truncated gzip...) are raised in the reading thread, in order."""

    def __init__(self, f, depth: int = 8):
        self.sha256 = hashlib.sha256()
        self._q: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._buf, self._done = memoryview(b""), False
        self._thread = threading.Thread(target=self._run, args=(f,), name="layer-prefetch",
                                        daemon=True)
        self._thread.start()

    def _run(self, f) -> None:
        try:
            while not self._stop.is_set():
                chunk = f.read(1 << 20)
                if chunk:
                    self.sha256.update(chunk)
                self._put(chunk)
                if not chunk:
                    return
        except BaseException as e:  # handed over to the reader
            self._put(e)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            if self._done:
                return 0
            item = self._q.get()
            if isinstance(item, BaseException):
                self._done = True
                raise item
            if not item:
                self._done = True
                return 0
            self._buf = memoryview(item)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        super().close()


# --------------------------------------------------------------------------------------------
# Paths: member names, and walking parent directories without ever leaving the target.


def clean_member_name(name: str) -> str:
    """``/a/./b/`` -> ``a/b``; ``.`` for the root itself; LayerError if ``..`` escapes."""
    cleaned = posixpath.normpath(name.lstrip("/") or ".")
    if cleaned == ".." or cleaned.startswith("../"):
        raise LayerError(f"layer member {name!r} escapes the target directory")
    return cleaned


def _open_dir_in_scope(root_fd: int, parts: list[str], member: str) -> int:
    """Walk ``parts`` from the target root, creating missing directories (0755) and following
    symlinks as if the target were "/". Return a new O_DIRECTORY fd; the caller closes it."""
    stack = [os.dup(root_fd)]  # stack[-1] is the current directory; ".." pops, never past root
    todo = list(reversed(parts))
    hops = 0
    try:
        while todo:
            name = todo.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            here = stack[-1]
            try:
                st = os.stat(name, dir_fd=here, follow_symlinks=False)
            except FileNotFoundError:
                os.mkdir(name, 0o755, dir_fd=here)
                os.chmod(name, 0o755, dir_fd=here)  # whatever the umask
                st = os.stat(name, dir_fd=here, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise LayerError(f"layer member {member!r}: too many levels of symbolic links")
                link = os.readlink(name, dir_fd=here)
                if link.startswith("/"):  # absolute: restart from the target root
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo.extend(reversed(link.split("/")))
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise LayerError(f"layer member {member!r}: parent {name!r} is not a directory")
            stack.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 dir_fd=here))
        return stack.pop()
    finally:
        for fd in stack:
            os.close(fd)


def _parent_and_base(root_fd: int, path: str, member: str) -> tuple[int, str]:
    parent, base = posixpath.split(path)
    return _open_dir_in_scope(root_fd, parent.split("/") if parent else [], member), base


def _lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove_at(dir_fd: int, name: str) -> None:
    """Remove ``name`` (a whole tree if it is a directory) without following symlinks."""
    st = _lstat_at(dir_fd, name)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _proc_path(dir_fd: int, name: str) -> str:
    """A path for the few calls without a dir_fd parameter (xattrs); the last part is not followed."""
    return f"/proc/self/fd/{dir_fd}/{name}"


# --------------------------------------------------------------------------------------------
# Creating one entry. Order matters: create, chown (it clears setuid bits and file capabilities),
# xattrs, chmod, mtime (last: every other change touches it).


def _make_node(tar: tarfile.TarFile, m: tarfile.TarInfo, pfd: int, base: str,
               root_fd: int, result: ApplyResult) -> bool:
    """Create the filesystem object for ``m``. Return False if it was skipped."""
    if m.isdir():
        if _lstat_at(pfd, base) is None:
            os.mkdir(base, 0o700, dir_fd=pfd)
    elif m.isreg():
        fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=pfd)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(tar.extractfile(m), out, 1 << 20)
    elif m.issym():
        os.symlink(m.linkname, base, dir_fd=pfd)
    elif m.islnk():
        _make_hardlink(m, pfd, base, root_fd)
    elif m.isfifo():
        os.mkfifo(base, 0o600, dir_fd=pfd)
    elif m.ischr() or m.isblk():
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        try:
            os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
        except PermissionError:
            result.skipped.append(f"{m.name}: device node needs root")
            return False
    else:
        result.skipped.append(f"{m.name}: unsupported tar entry type {m.type!r}")
        return False
    return True


def _make_hardlink(m: tarfile.TarInfo, pfd: int, base: str, root_fd: int) -> None:
    target = clean_member_name(m.linkname)
    if target == ".":
        raise LayerError(f"layer member {m.name!r}: hardlink to the root directory")
    sfd, sbase = _parent_and_base(root_fd, target, m.name)
    try:
        if _lstat_at(sfd, sbase) is None:
            raise LayerError(f"layer member {m.name!r}: hardlink target {m.linkname!r} does not exist")
        if stat.S_ISDIR(_lstat_at(sfd, sbase).st_mode):  # link(2) refuses too, less clearly
            raise LayerError(f"layer member {m.name!r}: hardlink target {m.linkname!r} is a directory")
        os.link(sbase, base, src_dir_fd=sfd, dst_dir_fd=pfd, follow_symlinks=False)
    finally:
        os.close(sfd)


def _set_owner(m: tarfile.TarInfo, pfd: int, base: str) -> None:
    """lchown to the member's uid:gid. Only root can; everyone else keeps their own ids."""
    try:
        os.chown(base, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
    except OSError as e:
        if os.geteuid() == 0:  # e.g. EINVAL: uid not mapped in this user namespace
            raise LayerError(f"layer member {m.name!r}: cannot chown to {m.uid}:{m.gid}: {e}") from e
        if e.errno not in (errno.EPERM, errno.EINVAL):
            raise


def _set_xattrs(m: tarfile.TarInfo, pfd: int, base: str) -> None:
    """PAX ``SCHILY.xattr.*`` records, best effort (the filesystem may not support them)."""
    for key, value in m.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        try:
            os.setxattr(_proc_path(pfd, base), key[len("SCHILY.xattr."):],
                        value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
        except OSError:
            pass


def _set_mode_and_time(m: tarfile.TarInfo, pfd: int, base: str) -> None:
    if not m.issym():  # Linux symlinks have no mode of their own
        os.chmod(base, stat.S_IMODE(m.mode), dir_fd=pfd)
    mtime_ns = int(m.mtime) * 1_000_000_000
    os.utime(base, ns=(mtime_ns, mtime_ns), dir_fd=pfd, follow_symlinks=False)


# --------------------------------------------------------------------------------------------
# Whiteouts.


def _whiteout(pfd: int, name: str, mode: str, member: str) -> None:
    """``.wh.NAME``: copy semantics delete NAME; overlay semantics leave a 0:0 char device."""
    if name in ("", ".", ".."):
        raise LayerError(f"layer member {member!r}: invalid whiteout name")
    _remove_at(pfd, name)
    if mode == "overlay":
        try:
            os.mknod(name, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=pfd)
        except PermissionError:
            raise LayerError(f"layer member {member!r}: an overlay whiteout (0:0 device) needs root")


def _opaque(pfd: int, dir_path: str, touched: set[str], mode: str, member: str) -> None:
    """``.wh..wh..opq``: hide what the lower layers had in this directory."""
    if mode == "overlay":
        try:
            os.setxattr(_proc_path(pfd, "."), OVERLAY_OPAQUE_XATTR, b"y")
        except PermissionError:
            raise LayerError(f"layer member {member!r}: the overlay opaque xattr needs root")
        return
    _remove_untouched(pfd, dir_path, touched)


def _remove_untouched(dir_fd: int, dir_path: str, touched: set[str]) -> None:
    """Copy semantics of an opaque whiteout: delete every entry below ``dir_path`` that this layer
    did not itself create (this layer's entries may come before the marker in the tar)."""
    for name in os.listdir(dir_fd):
        child = posixpath.join(dir_path, name) if dir_path != "." else name
        if child not in touched:
            _remove_at(dir_fd, name)
            continue
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=dir_fd)
            try:
                _remove_untouched(sub, child, touched)
            finally:
                os.close(sub)


# --------------------------------------------------------------------------------------------
# The main loop.


class _Applier:
    """Applies members one by one. Parent directories are resolved in scope once and their fds
    cached by path (a layer puts thousands of files in the same few directories); any removal
    (a replaced entry, a whiteout) empties the cache, because it may change what a path resolves
    to. A stale fd could only point at a deleted directory, never outside the target."""

    MAX_CACHED_DIRS = 128  # well below the usual 1024 open files

    def __init__(self, tar: tarfile.TarFile, root_fd: int, whiteouts: str, result: ApplyResult):
        self.tar, self.root_fd, self.whiteouts, self.result = tar, root_fd, whiteouts, result
        self.touched: set[str] = set()  # paths this layer created (for opaque whiteouts)
        self.dirs: list[tuple[str, tarfile.TarInfo, int]] = []  # dir metadata applied at the end
        self._dir_fds: dict[str, int] = {}

    def _parent(self, path: str, member: str) -> tuple[int, str]:
        """(borrowed fd of the parent directory, last component)."""
        parent, base = posixpath.split(path)
        fd = self._dir_fds.get(parent)
        if fd is None:
            fd = _open_dir_in_scope(self.root_fd, parent.split("/") if parent else [], member)
            if len(self._dir_fds) >= self.MAX_CACHED_DIRS:
                os.close(self._dir_fds.pop(next(iter(self._dir_fds))))  # the oldest
            self._dir_fds[parent] = fd
        return fd, base

    def forget_dirs(self) -> None:
        for fd in self._dir_fds.values():
            os.close(fd)
        self._dir_fds.clear()

    def apply(self, m: tarfile.TarInfo) -> None:
        path = clean_member_name(m.name)
        if path == ".":
            return  # the root entry: the target keeps its own owner and mode
        pfd, base = self._parent(path, m.name)
        if base == OPAQUE_WHITEOUT:
            self.forget_dirs() if self.whiteouts == "copy" else None
            pfd, base = self._parent(path, m.name)
            _opaque(pfd, posixpath.dirname(path) or ".", self.touched, self.whiteouts, m.name)
        elif base.startswith(WHITEOUT_PREFIX):
            _whiteout(pfd, base[len(WHITEOUT_PREFIX):], self.whiteouts, m.name)
            self.forget_dirs()
        else:
            self._entry(m, path, pfd, base)

    def _entry(self, m: tarfile.TarInfo, path: str, pfd: int, base: str) -> None:
        existing = _lstat_at(pfd, base)
        if existing is not None and not (m.isdir() and stat.S_ISDIR(existing.st_mode)):
            _remove_at(pfd, base)  # a new entry replaces the old one (dir onto dir merges)
            self._dir_fds.pop(posixpath.dirname(path), None)  # keep pfd open until we are done
            self.forget_dirs()
            self._dir_fds[posixpath.dirname(path)] = pfd
        if not _make_node(self.tar, m, pfd, base, self.root_fd, self.result):
            return
        self.touched.add(path)
        self.result.entries += 1
        if m.islnk():
            return  # a hardlink shares its target's inode and metadata
        _set_owner(m, pfd, base)
        _set_xattrs(m, pfd, base)
        if m.isdir():  # later entries would change a dir's mtime; a 0555 dir would block them
            self.dirs.append((path, m, os.stat(base, dir_fd=pfd, follow_symlinks=False).st_ino))
            if path not in self._dir_fds:  # its entries usually follow: open it now
                if len(self._dir_fds) >= self.MAX_CACHED_DIRS:
                    os.close(self._dir_fds.pop(next(iter(self._dir_fds))))  # the oldest
                self._dir_fds[path] = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                              | os.O_CLOEXEC, dir_fd=pfd)
        else:
            _set_mode_and_time(m, pfd, base)

    def finish_dirs(self) -> None:
        for path, m, ino in reversed(self.dirs):  # deepest first
            pfd, base = self._parent(path, m.name)
            st = _lstat_at(pfd, base)
            if st is not None and st.st_ino == ino:  # still the directory we made
                _set_mode_and_time(m, pfd, base)


def chain_ids(diff_ids) -> list[str]:
    """The ChainID of each layer stack (image-spec config.md, "Layer ChainID"): ChainID(L0) =
    DiffID(L0); ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln)). It names a stack of
    applied layers, what a snapshot is (chapter 5): the same DiffIDs in the same order, the same name."""
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(diff_id if not out else "sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


def apply_layer(layer, target_dir: str, *, whiteouts: str = "copy") -> ApplyResult:
    """Apply an OCI layer (a path or a binary file object; plain tar or gzip) onto ``target_dir``.

    ``whiteouts`` is ``"copy"`` (delete what whiteouts name) or ``"overlay"`` (record them as
    overlayfs whiteouts, for a directory that becomes an overlay lowerdir). Returns the layer's
    DiffID (sha256 of the uncompressed tar) with counts; raises :class:`LayerError`.
    """
    if whiteouts not in ("copy", "overlay"):
        raise ValueError(f"whiteouts must be 'copy' or 'overlay', not {whiteouts!r}")
    if isinstance(layer, (str, os.PathLike)):
        with open(layer, "rb") as f:
            return apply_layer(f, target_dir, whiteouts=whiteouts)
    plain = uncompressed_stream(layer)
    kind = ("gzip" if isinstance(plain, gzip.GzipFile)
            else "zstd" if type(plain).__module__.startswith("zstandard") else "plain tar")
    reader = _Prefetcher(plain)
    root_fd = os.open(target_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    result = ApplyResult(diff_id="")
    try:
        with tarfile.open(fileobj=io.BufferedReader(reader, 1 << 20), mode="r|") as tar:
            applier = _Applier(tar, root_fd, whiteouts, result)
            try:
                for member in tar:
                    try:
                        applier.apply(member)
                    except LayerError:
                        raise
                    except OSError as e:
                        raise LayerError(f"layer member {member.name!r}: {e}") from e
                applier.finish_dirs()
            finally:
                applier.forget_dirs()
        reader.drain()  # the DiffID covers the whole stream, including the end-of-archive padding
    except tarfile.TarError as e:
        raise LayerError(f"not a valid layer tar ({kind} stream): {e}") from e
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise LayerError(f"corrupt {kind} layer stream: {e}") from e
    except Exception as e:
        if type(e).__name__ == "ZstdError":  # zstandard's own error type, imported lazily
            raise LayerError(f"corrupt zstd layer stream: {e}") from e
        raise
    finally:
        os.close(root_fd)
        reader.close()
    result.diff_id = "sha256:" + reader.sha256.hexdigest()
    return result


def _apply_job(job: tuple[str, str, str]) -> ApplyResult:
    layer, target, whiteouts = job
    return apply_layer(layer, target, whiteouts=whiteouts)


def apply_layers_parallel(jobs: list[tuple[str, str]], *, whiteouts: str = "overlay",
                          workers: int | None = None) -> list[ApplyResult]:
    """Extract independent layers, each ``(layer path, empty target dir)``, at the same time.

    Results come back in the order of ``jobs``. The first failure is raised (as LayerError);
    the caller owns the target directories and removes them on failure, as it would after
    :func:`apply_layer`. Worker processes are forked: the parent's imports are reused and nothing
    but the job tuple crosses the pipe.
    """
    workers = min(len(jobs), workers or os.cpu_count() or 1)
    if workers <= 1:
        return [apply_layer(layer, target, whiteouts=whiteouts) for layer, target in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(_apply_job, [(l, t, whiteouts) for l, t in jobs]))


__all__ = ["apply_layer", "apply_layers_parallel", "uncompressed_stream", "ApplyResult", "LayerError", "clean_member_name",
           "WHITEOUT_PREFIX", "OPAQUE_WHITEOUT"]
