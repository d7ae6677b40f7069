"""The root-filesystem chapter: how a container gets a ``/`` of its own.

What this teaches
-----------------
A container's root filesystem is an ordinary directory on the host (an unpacked image, or an overlay
of image layers). Three things turn it into "the whole world" for the processes inside:

1. a **mount namespace** (already made by unshare(CLONE_NEWNS) before we run): a private copy of the
   host's mount table, so that mounting and unmounting here does not change the host's view —
   *provided* propagation is switched off first (mount_namespaces(7): mounts made under a *shared*
   mount propagate to its peers, and a new namespace's copies are peers of the host's). With OCI
   ``linux.rootfsPropagation`` (docker sets it for ``rshared``/``rslave`` binds) step 1 keeps the
   asked-for ties instead, only the rootfs's own mount made private, as runc does;
2. the **kernel filesystems** a Linux program expects (OCI runtime spec, config-linux.md "Default
   Filesystems" and "Default Devices", runtime-linux.md "Dev symbolic links"): /proc for *this* pid
   namespace, a read-only /sys, and a small /dev with null, zero, full, random, urandom, tty, a private
   devpts instance for terminals, /dev/shm and /dev/mqueue;
3. **pivot_root(2)**, which swaps the root *mount* of the namespace, followed by a lazy unmount of the
   old root. Afterwards the host's file tree is not mounted anywhere in the namespace: there is
   nothing to escape to. chroot(2), in contrast, only changes one process's root *directory*;
   :func:`chroot_escape_demo` walks out of one with ``chdir("..")``.

:func:`setup_rootfs` is the ordered checklist pid 1 of a new container runs (the runtime calls it
after unshare of mnt+pid+uts+ipc(+net) and before exec). Each step is a small public function so a
student can read — and the lab can re-implement — one at a time. Every state-changing call goes
through a ``kernel`` object (:mod:`minidocker.kernel`), so :func:`explain_rootfs` can print the whole
sequence from a :class:`~minidocker.kernel.Recorder` dry run without touching anything.

The pieces: :class:`Mount`, :class:`RootfsSpec`, :func:`setup_rootfs` (steps: :func:`make_mounts_private`,
:func:`mount_spec_mounts`, :func:`bind_rootfs`, :func:`mount_proc`, :func:`mount_sys`, :func:`setup_dev`,
:func:`bind_console`, :func:`bind_mount_files`, :func:`pivot_into`, :func:`mask_paths`,
:func:`make_paths_readonly`, :func:`remount_root_readonly`), :func:`explain_rootfs`,
:func:`write_etc_files` (the /etc files the runtime binds in), :func:`mountinfo` (the mount table as
the kernel reports it), and three demonstrations that run in forked children only:
:func:`chroot_escape_demo`, :func:`pivot_root_escape_attempt`, :func:`propagation_demo`.

Man pages and specs followed: mount(2), umount(2), pivot_root(2), chroot(2), mknod(2),
mount_namespaces(7), user_namespaces(7), proc(5) (/proc/PID/mountinfo), sysfs(5), pts(4) and the
kernel's Documentation/filesystems/devpts.rst (``newinstance``, ``ptmxmode``), tmpfs(5),
mq_overview(7), and the OCI runtime spec (config-linux.md: Default Filesystems, Default Devices,
maskedPaths, readonlyPaths; runtime-linux.md: Dev symbolic links).
"""
from __future__ import annotations

import errno
import os
import re
import select
import stat
from contextlib import contextmanager
from collections.abc import Callable, Iterable, Iterator

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~8 ms on every start)
if TYPE_CHECKING:
    from typing import Any

from . import kernel as K
from .kernel import (MNT_DETACH, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY,
                     MS_REC, MS_REMOUNT, MS_STRICTATIME, KernelError, Linux, Recorder)
from .child import ChildError, call_in_child  # noqa: F401  (ChildError: part of this module's surface)
from .record import Frozen, Record
from .util import atomic_write

# --- what the OCI runtime spec asks for --------------------------------------------------------------

PROC_FLAGS = MS_NOSUID | MS_NOEXEC | MS_NODEV          # nothing in /proc is a program or a device
SYSFS_FLAGS = MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV
DEV_FLAGS = MS_NOSUID | MS_STRICTATIME                 # not nodev: device nodes are the point of /dev
DEV_DATA = "mode=755,size=65536k"                      # as runc: a small tmpfs, 64 MiB at most
DEVPTS_FLAGS = MS_NOSUID | MS_NOEXEC
# newinstance: a pty namespace of our own (numbers from 0, the host's ptys invisible);
# ptmxmode=0666: anyone may open pts/ptmx to get a new pty; mode=0620: new slaves rw for the owner.
DEVPTS_DATA = "newinstance,ptmxmode=0666,mode=0620"
SHM_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC
SHM_DATA = "mode=1777,size=64m"                        # docker's default --shm-size
MQUEUE_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC


class Device(Frozen):
    """A character device the container gets (OCI config-linux.md "Default Devices")."""
    _fields = ("path", "major", "minor", "mode")

    def __init__(self, path: str, major: int, minor: int, mode: int = 0o666):
        self._set(path=path, major=major, minor=minor, mode=mode)


DEFAULT_DEVICES: tuple[Device, ...] = (
    Device("/dev/null", 1, 3),     # null(4): reads EOF, writes vanish
    Device("/dev/zero", 1, 5),     # zero(4): reads zeros
    Device("/dev/full", 1, 7),     # full(4): writes fail with ENOSPC
    Device("/dev/random", 1, 8),   # random(4)
    Device("/dev/urandom", 1, 9),
    Device("/dev/tty", 5, 0),      # tty(4): the process's controlling terminal, whatever it is
)

# (target, link) — runtime-linux.md "Dev symbolic links", plus /dev/ptmx -> pts/ptmx (config-linux.md:
# the ptmx of *our* devpts instance, not the host's /dev/ptmx).
DEV_SYMLINKS: tuple[tuple[str, str], ...] = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
)

# What docker masks and makes read-only by default (moby oci/defaults.go); the runtime may pass these
# as RootfsSpec.masked_paths / readonly_paths. Paths that do not exist are skipped, as runc does.
DOCKER_MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)
DOCKER_READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)


# --- the specification ----------------------------------------------------------------------------

class Mount(Record):
    """One mount(2) call. For ``RootfsSpec.mounts`` the ``target`` is an absolute *host* path.
    ``cwd``: chdir there first, so relative paths in ``data`` resolve against it (an overlay with
    hundreds of layers only fits mount(2)'s one-page option string with short relative lowerdirs)."""
    _fields = ("source", "target", "fstype", "flags", "data", "cwd")

    def __init__(self, source: str | None, target: str, fstype: str | None = None, flags: int = 0,
                 data: str | None = None, cwd: str | None = None):
        self.source, self.target, self.fstype, self.flags, self.data, self.cwd = \
            source, target, fstype, flags, data, cwd


class RootfsSpec(Record):
    """Everything :func:`setup_rootfs` needs.

    * ``rootfs``: the host directory that becomes ``/``.
    * ``mounts``: mounts that *produce* the rootfs (e.g. an overlay of lowerdir/upperdir/workdir onto
      ``rootfs``), made first, inside the new mount namespace, so they vanish with it.
    * ``readonly``: remount ``/`` read-only at the end (docker run --read-only).
    * ``bind_files``: container path -> host file (or directory) to bind there, e.g.
      ``{"/etc/hostname": "/var/lib/.../hostname"}``; a missing mount point is created.
    * ``user_namespace``: we run inside a user namespace, where mknod(2) and a fresh sysfs are not
      allowed: device nodes and /sys are bind-mounted from the host instead.
    * ``masked_paths`` / ``readonly_paths``: container paths to hide (bind /dev/null or an empty
      read-only tmpfs over them) or to make read-only (see DOCKER_MASKED_PATHS).
    * ``mqueue``: mount /dev/mqueue (POSIX message queues of our IPC namespace).
    * ``console``: with a terminal, the host path of the container's pty slave (e.g. /dev/pts/3),
      bind-mounted at /dev/console (OCI config-linux.md "Default Devices").
    * ``root_propagation``: OCI ``linux.rootfsPropagation`` as mount(2) flags (0: everything private,
      minidocker's default). Applied to "/" in step 1 and again to the new "/" after pivot_root (runc).
    * ``bind_propagation``: container path (a ``bind_files`` key) -> propagation flags set on that bind
      right after it is made (``rshared``, ``rslave``, ``rprivate``… of a ``-v``/``--mount`` bind).
    """
    _fields = ("rootfs", "mounts", "readonly", "bind_files", "user_namespace", "masked_paths",
               "readonly_paths", "mqueue", "console", "root_propagation", "bind_propagation")

    def __init__(self, rootfs: str, mounts: list[Mount] | None = None, readonly: bool = False,
                 bind_files: dict[str, str] | None = None, user_namespace: bool = False,
                 masked_paths: list[str] | None = None, readonly_paths: list[str] | None = None,
                 mqueue: bool = True, console: str | None = None, root_propagation: int = 0,
                 bind_propagation: dict[str, int] | None = None):
        self.rootfs = rootfs
        self.mounts = [] if mounts is None else mounts
        self.readonly = readonly
        self.bind_files = {} if bind_files is None else bind_files
        self.user_namespace = user_namespace
        self.masked_paths = [] if masked_paths is None else masked_paths
        self.readonly_paths = [] if readonly_paths is None else readonly_paths
        self.mqueue = mqueue
        self.console = console
        self.root_propagation = root_propagation
        self.bind_propagation = {} if bind_propagation is None else bind_propagation


# --- paths inside the rootfs, before pivot_root -----------------------------------------------------

def secure_join(root: str, path: str) -> str:
    """The host path of container path ``path``, resolving symlinks *as if* ``root`` were ``/``.

    Before pivot_root we create mount points such as ``rootfs + "/etc/hostname"``. A plain join would
    follow an image's symlink ``etc -> /`` out to the host's own /etc (runc's CVE-2021-30465 family).
    Here every symlink is resolved by hand and ``..`` or an absolute target stops at ``root``
    (the idea of Go's filepath-securejoin). Only reads happen; a path that does not exist yet is
    joined as is. Race-free resolution needs openat2(RESOLVE_IN_ROOT), which Python 3.11 lacks.
    """
    root = os.path.realpath(root)
    todo = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        here = os.path.join(root, *done, part)
        try:
            st = os.lstat(here)
        except (FileNotFoundError, NotADirectoryError):
            done.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 40:  # as the kernel's MAXSYMLINKS
                raise OSError(errno.ELOOP, f"too many symlinks resolving {path!r} in {root!r}")
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        done.append(part)
    return os.path.join(root, *done)


@contextmanager
def _step(what: str) -> Iterator[None]:
    """Add "during setup_rootfs step ..." to any error, so a failure says which step and why."""
    try:
        yield
    except OSError as e:
        e.add_note(f"during setup_rootfs: {what}")
        raise


# --- the steps ------------------------------------------------------------------------------------

def make_mounts_private(kernel) -> None:
    """Step 1: ``mount(None, "/", None, MS_REC|MS_PRIVATE)``.

    A new mount namespace starts as a copy of the parent's, and copies of *shared* mounts are peers of
    the originals (mount_namespaces(7)): a mount made under one appears under the other. On a systemd
    host "/" is shared, so without this step our /proc mount would show up on the host. MS_REC makes
    every mount private, not just "/". (pivot_root also refuses to work with shared mounts.)
    """
    kernel.mount(None, "/", None, MS_REC | MS_PRIVATE, None)


def mount_of(path: str, table: list | None = None):
    """The :class:`MountEntry` ``path`` lives on: the mount with the longest mount point above it."""
    path = os.path.realpath(path)
    best = None
    for e in table if table is not None else mountinfo():
        mp = e.mountpoint.rstrip("/") + "/"
        if (path + "/").startswith(mp) and (best is None or len(e.mountpoint) >= len(best.mountpoint)):
            best = e
    return best


def set_root_propagation(kernel, rootfs: str, flags: int) -> None:
    """Step 1 with ``linux.rootfsPropagation`` (runc's prepareRoot): "/" gets ``flags`` (``rshared``
    keeps the namespace's copies peers of the host's shared mounts, ``rslave`` makes them receive
    only), so a bind made later can still reach, or hear from, the host. Two mounts must not stay
    shared, or our own mounts would leak out: the mount the rootfs sits on (the overlay and the
    self-bind of step 2/3 would otherwise join the host's peer group; runc's rootfsParentMountPrivate)
    and "/" itself (pivot_root(2) refuses a shared parent of the current root). Both are left behind
    by pivot_root anyway."""
    kernel.mount(None, "/", None, flags, None)
    kernel.mount(None, "/", None, MS_PRIVATE, None)
    parent = mount_of(rootfs) if not isinstance(kernel, K.Recorder) else None
    if parent is not None and parent.mountpoint != "/":
        kernel.mount(None, parent.mountpoint, None, MS_PRIVATE, None)


def mount_spec_mounts(kernel, mounts: Iterable[Mount]) -> None:
    """Step 2: the mounts that make the rootfs (an overlay onto it, say). They are made *in* the new
    mount namespace, after step 1, so the host never sees them and they vanish with the namespace:
    no unmount needed when the container dies."""
    for m in mounts:
        if not os.path.exists(m.target):
            kernel.mkdir(m.target, 0o755)
        if m.cwd:
            kernel.chdir(m.cwd)
        kernel.mount(m.source, m.target, m.fstype, m.flags, m.data)


def bind_rootfs(kernel, rootfs: str) -> None:
    """Step 3: bind-mount the rootfs onto itself.

    pivot_root(2) needs ``new_root`` to be a mount point, and not on the current root mount: a plain
    directory fails with EINVAL, or with EBUSY when it sits on the root filesystem (checked first).
    A bind mount of the directory onto itself is a mount of its own, with the same contents. MS_REC takes mounts below it
    along. If step 2 already mounted an overlay there this is harmless, and it keeps the rule simple.
    """
    kernel.mount(rootfs, rootfs, None, MS_BIND | MS_REC, None)


def mount_proc(kernel, rootfs: str) -> None:
    """Step 4: a fresh procfs on /proc.

    A proc mount shows the pid namespace *of the process that mounts it*, so this runs in pid 1 of the
    new pid namespace (the process that called unshare(CLONE_NEWPID) is still in the old one). It is
    mounted before pivot_root: inside a user namespace the kernel only allows a new proc mount while a
    fully visible one exists in the mount namespace (the host's, about to be detached).
    nosuid,noexec,nodev: nothing under /proc is a program or a device.
    """
    target = secure_join(rootfs, "/proc")
    kernel.mkdir(target, 0o555)
    kernel.mount("proc", target, "proc", PROC_FLAGS, None)


def mount_sys(kernel, rootfs: str, user_namespace: bool = False) -> None:
    """Step 5: sysfs on /sys, read-only (a container must not reconfigure the host's devices).

    A sysfs mount shows the network devices of the mounter's network namespace, and inside a user
    namespace the kernel allows it only when that network namespace belongs to the user namespace
    (EPERM otherwise). Then we fall back to a recursive bind of the host's /sys and remount it
    read-only — which only affects the top mount: submounts (/sys/fs/cgroup/...) keep their flags,
    and the bind shows the host's network devices. runc does the same; a recursive read-only needs
    mount_setattr(2) with AT_RECURSIVE.
    """
    target = secure_join(rootfs, "/sys")
    kernel.mkdir(target, 0o555)
    try:
        kernel.mount("sysfs", target, "sysfs", SYSFS_FLAGS, None)
    except KernelError as e:
        if not (user_namespace and e.errno == errno.EPERM):
            raise
        kernel.mount("/sys", target, None, MS_BIND | MS_REC, None)
        # MS_RDONLY on a bind only takes effect on a second, MS_REMOUNT|MS_BIND call.
        kernel.mount(None, target, None, MS_REMOUNT | MS_BIND | SYSFS_FLAGS, None)


def setup_dev(kernel, rootfs: str, user_namespace: bool = False, mqueue: bool = True) -> None:
    """Step 6: a minimal /dev, as the OCI spec lists it. Never the host's /dev: it holds the disks.

    * a tmpfs (mode 755, nosuid — but not nodev, the device nodes are the point);
    * null, zero, full, random, urandom, tty: mknod(2) character devices, mode 0666. mknod obeys the
      umask (0022 → 0644), so we chmod afterwards. Inside a user namespace mknod is refused (it needs
      CAP_MKNOD in the *initial* user namespace): bind-mount the host's nodes onto empty files instead;
    * /dev/pts: a *new instance* of devpts, so the container sees only its own ptys, and the symlink
      /dev/ptmx -> pts/ptmx so that opening /dev/ptmx allocates a pty in that instance;
    * /dev/shm: tmpfs for POSIX shared memory, 1777 like /tmp, 64 MiB;
    * /dev/mqueue: POSIX message queues of our IPC namespace (optional);
    * /dev/fd, stdin, stdout, stderr -> /proc/self/fd/...: they point into /proc, which resolves them
      per process, once /proc is the container's.
    """
    dev = secure_join(rootfs, "/dev")
    kernel.mkdir(dev, 0o755)
    kernel.mount("tmpfs", dev, "tmpfs", DEV_FLAGS, DEV_DATA)
    for d in DEFAULT_DEVICES:
        path = os.path.join(dev, os.path.basename(d.path))
        if user_namespace:
            kernel.touch(path)
            kernel.mount(d.path, path, None, MS_BIND, None)   # the host's node, seen through a bind
        else:
            kernel.mknod(path, stat.S_IFCHR | d.mode, os.makedev(d.major, d.minor))
            kernel.chmod(path, d.mode)                       # undo the umask
    pts = os.path.join(dev, "pts")
    kernel.mkdir(pts, 0o755)
    kernel.mount("devpts", pts, "devpts", DEVPTS_FLAGS, DEVPTS_DATA)
    shm = os.path.join(dev, "shm")
    kernel.mkdir(shm, 0o1777)
    kernel.mount("shm", shm, "tmpfs", SHM_FLAGS, SHM_DATA)
    if mqueue:
        mq = os.path.join(dev, "mqueue")
        kernel.mkdir(mq, 0o755)
        kernel.mount("mqueue", mq, "mqueue", MQUEUE_FLAGS, None)
    for target, link in DEV_SYMLINKS:
        kernel.symlink(target, os.path.join(dev, os.path.basename(link)))


def bind_console(kernel, rootfs: str, console: str) -> None:
    """Step 6b (with a terminal): /dev/console is the container's own pty, not the host's console.
    The pty was allocated on the host's devpts, so it cannot be in our new devpts instance: bind
    its slave onto an empty file, before pivot_root while the host path is reachable."""
    target = os.path.join(secure_join(rootfs, "/dev"), "console")
    kernel.touch(target)
    kernel.mount(console, target, None, MS_BIND, None)


def bind_mount_files(kernel, rootfs: str, bind_files: dict[str, str]) -> None:
    """Step 7: bind host files into the rootfs (docker's /etc/hostname, /etc/hosts, /etc/resolv.conf).

    The files live outside the image, in the container's directory, so the image stays untouched and
    the runtime can rewrite them (e.g. /etc/hosts when a network is connected). A bind mount needs an
    existing target of the same kind: an empty file for a file, a directory for a directory. On a
    read-only rootfs these mounts stay writable: they are separate mounts (as in docker).
    """
    made: set[str] = set()   # directories created here (a dry run would otherwise repeat them)
    for cpath, host in bind_files.items():
        target = secure_join(rootfs, cpath)
        if os.path.isdir(host):
            kernel.mkdir(target, 0o755)
            kernel.mount(host, target, None, MS_BIND | MS_REC, None)
            continue
        if not os.path.lexists(target):
            parent = os.path.dirname(target)
            if parent not in made and not os.path.isdir(parent):
                kernel.mkdir(parent, 0o755)
                made.add(parent)
            kernel.touch(target)
        kernel.mount(host, target, None, MS_BIND, None)


def set_bind_propagation(kernel, rootfs: str, propagation: dict[str, int]) -> None:
    """Step 7b: each bind's own propagation (runc sets it on the mount point right after the bind).
    A bind of a shared mount is a new peer of it (mount_namespaces(7)): ``rshared`` keeps that,
    ``rslave`` turns it into a receiver, ``rprivate`` cuts it off."""
    for cpath, flags in propagation.items():
        if flags:
            kernel.mount(None, secure_join(rootfs, cpath), None, flags, None)


def pivot_into(kernel, rootfs: str, shield_old_root: bool = False) -> None:
    """Step 8: make ``rootfs`` the root mount and drop the old one, runc's way.

    * ``chdir(rootfs)`` then ``pivot_root(".", ".")``: the new root becomes the namespace's root mount
      and the old root is stacked *on top of it* at the same place — no put_old directory needed
      (pivot_root(2), "NOTES"). Our cwd and root now refer to the old root, mounted over ".".
    * ``umount2(".", MNT_DETACH)``: detach that old root at once ("lazy": it is freed when the last
      user goes). After this the host's tree is mounted nowhere in this namespace: no path, no
      ``..``, no chroot leads back to it. ``shield_old_root`` (when step 1 kept host peers): make the
      old root rslave first, so the detach does not propagate to the host (runc does the same).
    * ``chdir("/")``: our cwd pointed into the detached tree; come home.
    """
    old_root = kernel.open("/", os.O_DIRECTORY | os.O_RDONLY) if shield_old_root else None
    kernel.chdir(rootfs)
    kernel.pivot_root(".", ".")
    if old_root is not None:
        # The old root may still have host peers: make it rslave so the detach does not unmount the
        # host's mounts. mount(2) on "." would hit the new root (the cwd's mount, under the old root
        # stacked on it) and turn our rshared binds into slaves: go *to* the old root by its fd.
        kernel.fchdir(old_root)
        kernel.mount(None, ".", None, K.MS_SLAVE | K.MS_REC, None)
        kernel.close(old_root)
    kernel.umount2(".", MNT_DETACH)
    kernel.chdir("/")


def mask_paths(kernel, paths: Iterable[str]) -> None:
    """Hide container paths (after pivot_root, so these are container paths): bind /dev/null over a
    file, an empty read-only tmpfs over a directory. Missing paths are skipped (runc does the same)."""
    for p in paths:
        try:
            kernel.mount("/dev/null", p, None, MS_BIND, None)
        except KernelError as e:
            if e.errno == errno.ENOENT:
                continue
            if e.errno != errno.ENOTDIR:
                raise
            kernel.mount("tmpfs", p, "tmpfs", MS_RDONLY, "size=0")


def make_paths_readonly(kernel, paths: Iterable[str]) -> None:
    """Make container paths read-only: bind each onto itself, then remount that bind read-only."""
    for p in paths:
        try:
            kernel.mount(p, p, None, MS_BIND | MS_REC, None)
        except KernelError as e:
            if e.errno == errno.ENOENT:
                continue
            raise
        kernel.mount(None, p, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, None)


# statvfs(3) flags that are also mount(2) flags (ST_RELATIME is not: its bit is MS_BIND's).
_KEEP_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC | K.MS_NOATIME | K.MS_NODIRATIME


def remount_root_readonly(kernel) -> None:
    """Step 9 (--read-only): remount "/" read-only.

    "/" is our bind mount (or the overlay), so MS_REMOUNT|MS_BIND changes only this mount's flags:
    /proc, /dev, /dev/shm and the bind_files stay writable. A remount *replaces* the flags, so keep
    the ones already set (inside a user namespace, clearing a locked flag fails with EPERM).
    """
    keep = os.statvfs("/").f_flag & _KEEP_FLAGS
    kernel.mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep, None)


def setup_rootfs(kernel, spec: RootfsSpec) -> None:
    """Give the calling process (pid 1 of new mnt+pid namespaces) ``spec.rootfs`` as its ``/``.

    The order matters; every step's docstring says why it is where it is. Errors are the kernel
    layer's :class:`~minidocker.kernel.KernelError` (naming the call and errno) with a note naming
    the step. Nothing needs undoing on failure: every mount is in the new mount namespace and
    disappears with it. (Mount-point directories created in a plain-directory rootfs do stay.)
    """
    rootfs = os.path.realpath(spec.rootfs)
    # 1. Stop propagation first: every later mount would otherwise also appear on the host.
    if spec.root_propagation:
        with _step("1. root propagation from linux.rootfsPropagation (rootfs's parent mount private)"):
            set_root_propagation(kernel, rootfs, spec.root_propagation)
    else:
        with _step("1. make all mounts private (mount_namespaces(7): no propagation to the host)"):
            make_mounts_private(kernel)
    # 2. The mounts that produce the rootfs (an overlay), now invisible to the host.
    with _step("2. spec.mounts (the mounts that produce the rootfs)"):
        mount_spec_mounts(kernel, spec.mounts)
    # 3. pivot_root needs a mount point: bind the rootfs onto itself.
    with _step("3. bind the rootfs onto itself (pivot_root needs a mount point)"):
        bind_rootfs(kernel, rootfs)
    # 4-6. The kernel filesystems, mounted *inside* the rootfs while the host's paths (the host /sys,
    # /dev/null for binds) are still reachable.
    with _step("4. mount /proc (must be done by a process in the new pid namespace)"):
        mount_proc(kernel, rootfs)
    with _step("5. mount /sys read-only"):
        mount_sys(kernel, rootfs, spec.user_namespace)
    with _step("6. /dev: tmpfs, device nodes, devpts, shm, mqueue, symlinks"):
        setup_dev(kernel, rootfs, spec.user_namespace, spec.mqueue)
    if spec.console:
        with _step("6b. bind the terminal onto /dev/console"):
            bind_console(kernel, rootfs, spec.console)
    # 7. Host files the container sees at fixed paths; after step 8 their sources are out of reach.
    with _step("7. bind_files"):
        bind_mount_files(kernel, rootfs, spec.bind_files)
    if spec.bind_propagation:
        with _step("7b. propagation of each bind"):
            set_bind_propagation(kernel, rootfs, spec.bind_propagation)
    # 8. Swap the root mount and detach the old root: the host's tree is gone from this namespace.
    with _step("8. pivot_root into the rootfs and detach the old root"):
        pivot_into(kernel, rootfs, shield_old_root=bool(spec.root_propagation))
    if spec.root_propagation:
        # runc applies it again to the new "/" (it could not before: "/" was the host's root then).
        with _step("8c. root propagation on the new /"):
            kernel.mount(None, "/", None, spec.root_propagation, None)
    # After the pivot paths are container paths; masks and read-only paths go over /proc and /sys.
    if spec.masked_paths:
        with _step("8a. masked paths"):
            mask_paths(kernel, spec.masked_paths)
    if spec.readonly_paths:
        with _step("8b. read-only paths"):
            make_paths_readonly(kernel, spec.readonly_paths)
    # 9. Last, so that steps 3-8 could still create mount points inside the rootfs.
    if spec.readonly:
        with _step("9. remount / read-only"):
            remount_root_readonly(kernel)


def explain_rootfs(spec: RootfsSpec) -> str:
    """The kernel calls :func:`setup_rootfs` would make for ``spec``, numbered, without making any."""
    rec = Recorder()
    setup_rootfs(rec, spec)
    return rec.transcript()


# --- /etc files the runtime bind-mounts -------------------------------------------------------------

_HOSTS_IPV6 = ("::1\tlocalhost ip6-localhost ip6-loopback\n"
               "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
# What docker uses when the host's resolv.conf has only loopback nameservers (moby libnetwork/resolvconf).
DEFAULT_DNS = ("8.8.8.8", "8.8.4.4")


def _is_loopback(addr: str) -> bool:
    try:
        import ipaddress
        return ipaddress.ip_address(addr.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _resolv_conf(dns: Iterable[str] | None, host_resolv: str, search: Iterable[str] = (),
                 options: Iterable[str] = ()) -> str:
    if dns or search or options:
        servers = list(dns or ()) or [line.split()[1] for line in _resolv_conf(None, host_resolv).splitlines()
                                      if line.startswith("nameserver ")]
        return ("".join(f"nameserver {ns}\n" for ns in servers)
                + (f"search {' '.join(search)}\n" if search else "")
                + (f"options {' '.join(options)}\n" if options else ""))
    # Copy the host's file, minus loopback nameservers: 127.0.0.53 (systemd-resolved) or 127.0.0.1
    # (dnsmasq) would be the *container's* loopback after the network namespace changes.
    try:
        with open(host_resolv) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []
    out, servers = [], 0
    for line in lines:
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            if _is_loopback(words[1]):
                continue
            servers += 1
        out.append(line)
    if not servers:
        out += [f"nameserver {ns}" for ns in DEFAULT_DNS]
    return "\n".join(out) + "\n"


def write_etc_files(directory: str, hostname: str, hosts_extra: Iterable[str | tuple[str, str]] = (),
                    dns: Iterable[str] | None = None, ip: str | None = None,
                    host_resolv: str = "/etc/resolv.conf", dns_search: Iterable[str] = (),
                    dns_options: Iterable[str] = ()) -> dict[str, str]:
    """Write ``hostname``, ``hosts`` and ``resolv.conf`` into ``directory`` (atomically) and return
    ``{"/etc/hostname": path, "/etc/hosts": path, "/etc/resolv.conf": path}`` for ``bind_files``.

    * hosts: localhost on 127.0.0.1 and ::1 (with docker's ip6 names), the hostname on the container's
      ``ip`` (or 127.0.1.1 without one, as Debian does), then ``hosts_extra`` entries, each
      ``"name:ip"`` (docker's ``--add-host`` syntax, split at the first colon) or ``(name, ip)``.
    * resolv.conf: ``dns`` servers if given; else the host's file without loopback nameservers,
      falling back to 8.8.8.8/8.8.4.4 if none is left (what docker does); ``dns_search`` and
      ``dns_options`` (``--dns-search``, ``--dns-option``) as ``search``/``options`` lines.
    """
    os.makedirs(directory, exist_ok=True)
    paths = {c: os.path.join(directory, os.path.basename(c))
             for c in ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")}
    hosts = [f"127.0.0.1\tlocalhost\n", _HOSTS_IPV6, f"{ip or '127.0.1.1'}\t{hostname}\n"]
    for entry in hosts_extra:
        name, addr = entry if isinstance(entry, tuple) else entry.split(":", 1)
        hosts.append(f"{addr}\t{name}\n")
    # Atomic (readers see the old or the new file) but not fsynced: they are written again at
    # every start, so surviving a power cut buys nothing, and 6 fsyncs cost a start ~10-30 ms.
    atomic_write(paths["/etc/hostname"], hostname + "\n", fsync=False)
    atomic_write(paths["/etc/hosts"], "".join(hosts), fsync=False)
    atomic_write(paths["/etc/resolv.conf"], _resolv_conf(dns, host_resolv, dns_search, dns_options), fsync=False)
    return paths


# --- reading the mount table -------------------------------------------------------------------------

class MountEntry(Record):
    """One line of /proc/PID/mountinfo (proc(5)), e.g.
    ``36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue``.

    ``root`` is the directory of the filesystem that is mounted (not "/" for a bind mount of a
    subdirectory); ``options`` are per-mount options, ``super_options`` the filesystem's;
    ``propagation`` is ``"private"`` or the optional fields, e.g. ``"shared:1"``, ``"master:3"``.
    """
    _fields = ("id", "parent", "mountpoint", "fstype", "source", "options", "propagation", "root",
               "major_minor", "super_options")

    def __init__(self, id: int, parent: int, mountpoint: str, fstype: str, source: str,  # noqa: A002
                 options: str, propagation: str, root: str = "/", major_minor: str = "",
                 super_options: str = ""):
        self.id, self.parent, self.mountpoint, self.fstype, self.source = id, parent, mountpoint, fstype, source
        self.options, self.propagation, self.root = options, propagation, root
        self.major_minor, self.super_options = major_minor, super_options

    @property
    def readonly(self) -> bool:
        return "ro" in self.options.split(",")


_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(s: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as \\040, \\011, \\012, \\134."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), s)


def parse_mountinfo_line(line: str) -> MountEntry:
    fields = line.split()
    sep = fields.index("-", 6)          # optional fields end at a lone "-"
    optional = fields[6:sep]
    fstype, source = fields[sep + 1], fields[sep + 2]
    return MountEntry(
        id=int(fields[0]), parent=int(fields[1]), mountpoint=_unescape(fields[4]),
        fstype=fstype, source=_unescape(source), options=fields[5],
        propagation=" ".join(optional) or "private", root=_unescape(fields[3]),
        major_minor=fields[2], super_options=fields[sep + 3] if len(fields) > sep + 3 else "")


def parse_mountinfo(text: str) -> list[MountEntry]:
    """The lines of a mountinfo file, parsed (the one mountinfo reader: doctor, cgroups.detect and
    the diagrams use it too)."""
    return [parse_mountinfo_line(line) for line in text.splitlines() if line.strip()]


def mountinfo(pid: int | str = "self", path: str | None = None) -> list[MountEntry]:
    """Parse /proc/PID/mountinfo (or the file ``path``): the mount table of PID's mount namespace,
    as PID sees it (paths relative to its root; mounts outside its root are not listed)."""
    with open(path or f"/proc/{pid}/mountinfo", errors="surrogateescape") as f:
        return parse_mountinfo(f.read())


# --- running code in forked children (demos, tests, the notebook) --------------------------------------

# ChildError and the fork-and-report-back helper live in minidocker/child.py (unionfs uses it too);
# ``_fork_call`` is its old name here (labs and tests call it).
_fork_call = call_in_child


DEFAULT_NS_FLAGS = K.CLONE_NEWNS | K.CLONE_NEWPID | K.CLONE_NEWUTS | K.CLONE_NEWIPC


def _run_in_new_namespaces(fn: Callable[[], Any], flags: int = DEFAULT_NS_FLAGS, timeout: float = 60.0,
                           uid_map: str = "0 0 4294967295", gid_map: str = "0 0 4294967295") -> Any:
    """Run ``fn()`` as pid 1 of new namespaces and return its result — how the runtime starts a
    container, reduced to its bones (namespaces.spawn is the full version):

    fork a child; it unshares ``flags`` (CLONE_NEWPID moves only its future children) and forks again:
    that grandchild is pid 1 of the new pid namespace and runs ``fn``. When pid 1 exits the pid
    namespace dies with it; when both have exited the mount namespace and its mounts are gone.
    With CLONE_NEWUSER the parent writes the child's uid_map/gid_map before the grandchild starts.
    Never call unshare in the caller's own process: a Jupyter kernel has many threads.
    """
    kernel = Linux()
    go_r, go_w = os.pipe()        # parent -> child: "maps written, go on"
    ready_r, ready_w = os.pipe()  # child -> parent: "unshared, write my maps"
    open_fds = {go_r, go_w, ready_r, ready_w}

    def close(*fds: int) -> None:  # each fd once: a second close could hit a reused number
        for fd in fds:
            if fd in open_fds:
                open_fds.discard(fd)
                os.close(fd)

    def intermediate():
        close(go_w, ready_r)
        kernel.unshare(flags)
        if flags & K.CLONE_NEWUSER:
            os.write(ready_w, b"u")
            if os.read(go_r, 1) != b"g":
                raise RuntimeError("parent did not write the uid/gid maps")
        close(go_r, ready_w)
        return _fork_call(fn, timeout=timeout, pdeathsig=True)

    def write_maps(pid: int) -> None:
        close(go_r, ready_w)
        if flags & K.CLONE_NEWUSER:
            if not select.select([ready_r], [], [], timeout)[0] or os.read(ready_r, 1) != b"u":
                return  # the child failed before unsharing; its error arrives as the result
            kernel.write_file(f"/proc/{pid}/uid_map", uid_map + "\n")
            kernel.write_file(f"/proc/{pid}/gid_map", gid_map + "\n")
            os.write(go_w, b"g")

    try:
        return _fork_call(intermediate, timeout=timeout + 5, in_parent=write_maps)
    finally:
        close(*list(open_fds))


# --- chroot versus pivot_root: the escape ----------------------------------------------------------

ESCAPE_DIR = ".escape-hatch"


def _ls(path: str) -> str:
    try:
        return " ".join(sorted(os.listdir(path)))
    except OSError as e:
        return f"<{e.strerror}>"


def _peek(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return repr(f.read(200).strip())
    except OSError as e:
        return f"<{e.strerror}>"


def _escape_attempt(kernel, probe: str, host_root: tuple[int, int]) -> list[str]:
    """The classic chroot break-out, from inside whatever root we are in now."""
    lines = [f"  ls / = {_ls('/')}", f"  read {probe} -> {_peek(probe)}",
             f"mkdir /{ESCAPE_DIR}; chroot /{ESCAPE_DIR}   # new root is deeper; our cwd stays above it"]
    kernel.mkdir("/" + ESCAPE_DIR, 0o755)
    kernel.chroot("/" + ESCAPE_DIR)
    # ".." stops only at the process's root directory. Our cwd is *outside* that root now, so no
    # chdir("..") ever hits it: each one goes up, until the root of the mount tree.
    for _ in range(64):
        kernel.chdir("..")
    kernel.chroot(".")   # make wherever we ended up the root again
    st = os.stat("/")
    escaped = (st.st_dev, st.st_ino) == host_root
    lines += ['chdir("..") x 64; chroot(".")', f"  ls / = {_ls('/')}", f"  read {probe} -> {_peek(probe)}",
              f"escaped to the host's root: {'yes' if escaped else 'no'}"]
    return lines


def _cleanup_hatch(rootfs: str, existed: bool) -> None:
    hatch = os.path.join(rootfs, ESCAPE_DIR)
    if not existed and os.path.isdir(hatch):
        os.rmdir(hatch)


def chroot_escape_demo(rootfs: str, probe: str = "/etc/hostname", kernel=None) -> str:
    """chroot(2) is not a jail: show it. In a forked child (root, CAP_SYS_CHROOT), chroot into
    ``rootfs``, then break out (mkdir x; chroot x; chdir("..") many times; chroot(".")) and report
    what ``/`` and ``probe`` (a host file) look like before and after. Returns the report; its last
    line says ``escaped to the host's root: yes``. The directory made for the trick is removed."""
    kernel = kernel or Linux()
    rootfs = os.path.realpath(rootfs)
    st = os.stat("/")
    host_root = (st.st_dev, st.st_ino)
    existed = os.path.exists(os.path.join(rootfs, ESCAPE_DIR))

    def child() -> str:
        kernel.chroot(rootfs)
        kernel.chdir("/")
        lines = [f"chroot({rootfs!r}); chdir('/')"]
        return "\n".join(lines + _escape_attempt(kernel, probe, host_root))

    try:
        return _fork_call(child, timeout=30)
    finally:
        _cleanup_hatch(rootfs, existed)


def pivot_root_escape_attempt(rootfs: str, probe: str = "/etc/hostname", kernel=None) -> str:
    """The same break-out after :func:`setup_rootfs` in new mount+pid namespaces: it fails, because
    after pivot_root and the detach the host's tree is not mounted anywhere in the namespace — ``..``
    at the root mount stays there. Returns the report (``... : no``)."""
    rootfs = os.path.realpath(rootfs)
    st = os.stat("/")
    host_root = (st.st_dev, st.st_ino)
    existed = os.path.exists(os.path.join(rootfs, ESCAPE_DIR))

    def child() -> str:
        k = kernel or Linux()
        setup_rootfs(k, RootfsSpec(rootfs=rootfs))
        lines = [f"setup_rootfs(RootfsSpec({rootfs!r})): pivot_root + umount2(MNT_DETACH)"]
        return "\n".join(lines + _escape_attempt(k, probe, host_root))

    try:
        return _run_in_new_namespaces(child, flags=K.CLONE_NEWNS | K.CLONE_NEWPID, timeout=30)
    finally:
        _cleanup_hatch(rootfs, existed)


class _SkipMakePrivate(Linux):
    """A kernel that "forgets" step 1 (for the propagation demo only)."""

    def mount(self, source, target, fstype=None, flags=0, data=None):
        if target == "/" and flags & MS_PRIVATE:
            return
        super().mount(source, target, fstype, flags, data)


def propagation_demo(rootfs: str, make_private: bool = True) -> dict:
    """What reaches the host when a container mounts things, with and without step 1.

    In a forked child we build a stand-in "host": a mount namespace whose mounts are all *shared*
    (as "/" is on a systemd machine — ``findmnt -o TARGET,PROPAGATION /``). Its own peer groups are
    fresh (we make everything private first, then shared), so the real host is never involved.
    A container is started inside it; it runs :func:`setup_rootfs`, with step 1 skipped when
    ``make_private`` is false. Returns ``{"leaked": [mount points that appeared on the stand-in
    host], "container_error": str | None}``. Without step 1 the container's /proc, /sys and /dev
    mounts leak, and pivot_root itself refuses to run (EINVAL: shared mounts).
    """
    rootfs = os.path.realpath(rootfs)

    def fake_host() -> dict:
        k = Linux()
        k.unshare(K.CLONE_NEWNS)
        k.mount(None, "/", None, MS_REC | MS_PRIVATE, None)   # cut all ties with the real host
        k.mount(None, "/", None, MS_REC | K.MS_SHARED, None)  # then share, within this stand-in
        before = {e.mountpoint for e in mountinfo()}
        kernel = Linux() if make_private else _SkipMakePrivate()
        error = None
        try:
            _run_in_new_namespaces(lambda: setup_rootfs(kernel, RootfsSpec(rootfs=rootfs, mqueue=False)),
                                   flags=K.CLONE_NEWNS | K.CLONE_NEWPID, timeout=30)
        except ChildError as e:
            error = str(e)
        leaked = sorted({e.mountpoint for e in mountinfo()} - before)
        return {"leaked": leaked, "container_error": error}

    return _fork_call(fake_host, timeout=40)


# --- a tiny rootfs for demos and tests ---------------------------------------------------------------

def make_busybox_rootfs(directory: str, busybox: str = "/bin/busybox") -> str:
    """A minimal root filesystem: a static busybox at /bin/busybox and a symlink per applet at its
    usual place (``busybox --list-full``), plus empty /etc, /tmp and /root. Host-side preparation,
    not container setup, so plain os calls. Returns ``directory``."""
    if not os.path.exists(busybox):
        raise FileNotFoundError(f"{busybox} not found (Debian package busybox-static)")
    os.makedirs(os.path.join(directory, "bin"), exist_ok=True)
    dest = os.path.join(directory, "bin", "busybox")
    if not os.path.exists(dest):
        with open(busybox, "rb") as src, open(dest, "wb") as dst:
            dst.write(src.read())
        os.chmod(dest, 0o755)
    import subprocess
    applets = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=True).stdout
    for rel in applets.split():
        if rel == "bin/busybox":
            continue
        link = os.path.join(directory, rel)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        if not os.path.lexists(link):
            os.symlink(os.path.relpath(dest, os.path.dirname(link)), link)
    for d, mode in (("etc", 0o755), ("tmp", 0o1777), ("root", 0o700)):
        os.makedirs(os.path.join(directory, d), exist_ok=True)
        os.chmod(os.path.join(directory, d), mode)
    return directory
