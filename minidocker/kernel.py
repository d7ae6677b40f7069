"""The kernel-call layer: every system call minidocker makes that Python 3.11 does not offer.

What this teaches
-----------------
A container is not a kernel object. It is a process started with a handful of system calls, in the
right order: unshare(2) or setns(2) to get new or existing namespaces, mount(2)/umount2(2) and
pivot_root(2) to give it its own root filesystem, sethostname(2), prctl(2). Python 3.11 has no
``os.unshare``/``os.setns`` (3.12 added them) and no mount at all, so we call glibc through ctypes.

Everything that changes kernel state during a container start goes through one object with this
interface, so that the same code can run against:

* :class:`Linux`, which makes the real calls, and
* :class:`Recorder`, which makes none and records what would have been called, in order. Unit tests
  use it, and ``minidocker run --explain`` prints its record: the exact sequence of kernel calls a
  container start makes (the idea is youki's ``Syscall`` trait with its test double).

Errors are :class:`KernelError`, an ``OSError`` whose message names the call, its arguments and the
errno name, e.g. ``pivot_root('/x', '/x/.old') failed: EINVAL (Invalid argument)``.

Man pages followed: unshare(2), setns(2), mount(2), umount(2), pivot_root(2), sethostname(2),
prctl(2), mknod(2), capget(2), seccomp(2), bpf(2), keyctl(2), namespaces(7), mount_namespaces(7),
user_namespaces(7), capabilities(7).
"""
from __future__ import annotations

import ctypes
import errno
import os

from .record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~8 ms on every start)
if TYPE_CHECKING:
    from typing import Any

# --- constants (linux/sched.h, linux/mount.h, linux/prctl.h) --------------------------------------

CLONE_NEWNS = 0x00020000      # mount namespace
CLONE_NEWCGROUP = 0x02000000  # cgroup namespace
CLONE_NEWUTS = 0x04000000     # hostname and NIS domain name
CLONE_NEWIPC = 0x08000000     # System V IPC, POSIX message queues
CLONE_NEWUSER = 0x10000000    # user and group ids, capabilities
CLONE_NEWPID = 0x20000000     # process ids (affects children, not the caller)
CLONE_NEWNET = 0x40000000     # network devices, addresses, routes, firewall
CLONE_NEWTIME = 0x00000080    # boot and monotonic clocks

NAMESPACE_FLAGS = {
    "mnt": CLONE_NEWNS, "uts": CLONE_NEWUTS, "ipc": CLONE_NEWIPC, "user": CLONE_NEWUSER,
    "pid": CLONE_NEWPID, "net": CLONE_NEWNET, "cgroup": CLONE_NEWCGROUP, "time": CLONE_NEWTIME,
}

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

# ioctl(fd, TIOCSCTTY, 0): make the terminal on fd our controlling terminal (ioctl_tty(2));
# asm-generic/ioctls.h, as on x86_64 and arm64. termios.TIOCSCTTY is the same number, but the
# container's init needs it after pivot_root, and importing termios before the fork cost every
# runtime start 1–4 ms (tests/test_runtime_api.py checks the two agree).
TIOCSCTTY = 0x540E

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_GET_SECCOMP = 21
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET = 1     # arg2 values of PR_CAP_AMBIENT
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_LOWER = 3
PR_CAP_AMBIENT_CLEAR_ALL = 4

# x86_64 numbers of calls glibc 2.36 has no wrapper for (pivot_root, seccomp, bpf) or that we call raw
# (capget/capset: glibc's wrappers are for libcap; keyctl lives in libkeyutils, not installed).
SYS_PIVOT_ROOT = 155
SYS_CAPGET = 125
SYS_CAPSET = 126
SYS_KEYCTL = 250
SYS_SECCOMP = 317
SYS_BPF = 321
SYS_OPEN_TREE = 428            # the new mount API (Linux 5.2+; mount_setattr 5.12+)
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
OPEN_TREE_CLONE = 1            # open_tree(2): a detached copy of the mount (tree), not the mount itself
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4  # move_mount(2): the source is the fd itself
MOUNT_ATTR_IDMAP = 0x00100000  # mount_setattr(2): files show through the user namespace's id maps

_LINUX_CAPABILITY_VERSION_3 = 0x20080522   # capget(2): two 32-bit data structs, 64 capability bits
SECCOMP_SET_MODE_FILTER = 1                 # seccomp(2) operations and flags
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_LOG = 2
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 4
KEYCTL_JOIN_SESSION_KEYRING = 1             # keyctl(2) operation: a new (or named) session keyring

# capabilities(7), linux/capability.h: CAPABILITIES[n] is capability number n.
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
    "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE")

_MS_NAMES = {v: k for k, v in globals().items() if k.startswith("MS_") and isinstance(v, int)}
_PR_NAMES = {v: k for k, v in globals().items() if k.startswith("PR_") and isinstance(v, int)
             and not k.startswith("PR_CAP_AMBIENT_")}
_AMBIENT_NAMES = {v: k for k, v in globals().items() if k.startswith("PR_CAP_AMBIENT_")}
_CLONE_NAMES = {v: k for k, v in globals().items() if k.startswith("CLONE_") and isinstance(v, int)}


def flag_names(value: int, names: dict[int, str]) -> str:
    """Render a bit mask as ``A|B|0x..`` using ``names`` (value -> name), for messages and --explain."""
    if value == 0:
        return "0"
    parts, rest = [], value
    for bit, name in sorted(names.items()):
        if bit and value & bit == bit and bin(bit).count("1") == 1:
            parts.append(name)
            rest &= ~bit
    if rest:
        parts.append(hex(rest))
    return "|".join(parts)


def describe_call(name: str, args: tuple) -> str:
    """``mount('proc', '/proc', 'proc', MS_NOSUID|MS_NODEV, None)`` — the call as a human reads it."""
    shown = []
    for i, a in enumerate(args):
        if name == "mount" and i == 3 and isinstance(a, int):
            shown.append(flag_names(a, _MS_NAMES))
        elif name in ("unshare", "setns") and isinstance(a, int) and i == (0 if name == "unshare" else 1):
            shown.append(flag_names(a, _CLONE_NAMES))
        elif name == "umount2" and i == 1 and isinstance(a, int):
            shown.append(flag_names(a, {1: "MNT_FORCE", 2: "MNT_DETACH", 4: "MNT_EXPIRE", 8: "UMOUNT_NOFOLLOW"}))
        elif name == "prctl" and i == 0 and isinstance(a, int):
            shown.append(_PR_NAMES.get(a, str(a)))
        elif (name == "prctl" and isinstance(a, int) and 0 <= a < len(CAPABILITIES)
              and (i == 1 and args[0] == PR_CAPBSET_DROP or i == 2 and args[:2] == (PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE))):
            shown.append(CAPABILITIES[a])
        elif name == "prctl" and i == 1 and args[0] == PR_CAP_AMBIENT and isinstance(a, int):
            shown.append(_AMBIENT_NAMES.get(a, str(a)))
        elif name in ("mknod", "mkdir", "chmod") and isinstance(a, int) and i == 1:
            shown.append(oct(a))
        elif name == "mknod" and i == 2 and isinstance(a, int):
            shown.append(f"makedev({os.major(a)}, {os.minor(a)})")
        elif name == "capset" and isinstance(a, int):
            shown.append(f"{a:#018x}")
        elif name == "seccomp_load" and i == 0 and isinstance(a, (bytes, bytearray)):
            shown.append(f"<BPF program, {len(a) // 8} instructions>")
        elif name == "bpf" and i == 1 and isinstance(a, (bytes, bytearray)):
            shown.append(f"<bpf_attr, {len(a)} bytes>")
        else:
            shown.append(repr(a))
    return f"{name}({', '.join(shown)})"


class KernelError(OSError):
    """A failed system call. ``str()`` names the call, its arguments and the errno by name."""

    def __init__(self, err: int, call: str, args: tuple):
        self.call = call
        self.call_args = args
        name = errno.errorcode.get(err, str(err))
        msg = f"{describe_call(call, args)} failed: {name} ({os.strerror(err)})"
        super().__init__(err, msg)

    def __str__(self) -> str:  # OSError's default adds "[Errno N]"; ours already says it by name
        return self.strerror


_libc = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc.unshare.argtypes = [ctypes.c_int]
        _libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
        _libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        _libc.setdomainname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        _libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        _libc.syscall.restype = ctypes.c_long
    return _libc


class _CapHeader(ctypes.Structure):   # struct __user_cap_header_struct (linux/capability.h)
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):     # struct __user_cap_data_struct; version 3 uses two of them
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


class _MountAttr(ctypes.Structure):  # struct mount_attr (linux/mount.h), MOUNT_ATTR_SIZE_VER0 = 32
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


class _SockFprog(ctypes.Structure):   # struct sock_fprog (linux/filter.h): a classic BPF program
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _b(s: str | bytes | None) -> bytes | None:
    if s is None:
        return None
    return s if isinstance(s, bytes) else os.fsencode(s)


def _check(rc: int, call: str, args: tuple) -> int:
    if rc == -1:
        raise KernelError(ctypes.get_errno(), call, args)
    return rc


class Linux:
    """The real kernel. Each method is one system call; its docstring gives the preconditions."""

    def unshare(self, flags: int) -> None:
        """Move the *calling thread* into new namespaces (unshare(2)).

        * Namespaces belong to a thread. In a multi-threaded process (a Jupyter kernel has a dozen
          threads) only the caller moves, and CLONE_NEWUSER fails with EINVAL: unshare in a freshly
          forked, single-threaded child.
        * CLONE_NEWPID does not move the caller: its *next child* becomes pid 1 of the new namespace.
        * CLONE_NEWUSER makes the caller uid/gid 65534 (overflow id) until a parent writes
          /proc/PID/uid_map and gid_map.
        * Needs CAP_SYS_ADMIN for every type but user (which an unprivileged process may create).
        """
        _check(_lib().unshare(flags), "unshare", (flags,))

    def setns(self, fd: int, nstype: int = 0) -> None:
        """Join the namespace that ``fd`` (an open /proc/PID/ns/TYPE) refers to (setns(2)).

        * ``nstype`` 0 accepts any type; a CLONE_NEW* value makes the kernel check the fd is that type.
        * Joining a pid namespace affects only children created afterwards, as with unshare.
        * A multi-threaded process may not join a user or mount namespace (EINVAL).
        * Join the user namespace first when joining several: it grants the capabilities for the rest.
        """
        _check(_lib().setns(fd, nstype), "setns", (fd, nstype))

    def mount(self, source: str | None, target: str, fstype: str | None = None,
              flags: int = 0, data: str | None = None) -> None:
        """Attach a filesystem, or change a mount (mount(2)).

        * ``target`` must exist (a directory, or a file for a file bind mount).
        * MS_BIND makes ``source`` visible at ``target`` too; add MS_REC to take submounts along.
          MS_RDONLY on a bind only takes effect on a second call with MS_REMOUNT|MS_BIND|MS_RDONLY.
        * MS_PRIVATE/MS_SLAVE/MS_SHARED (with MS_REC) change propagation only; source, fstype, data
          are ignored. Make "/" private (MS_REC|MS_PRIVATE) in a new mount namespace *first*, or every
          mount below propagates back to the host's namespace.
        * ``data`` is the filesystem's option string; the kernel reads at most one page (4,096 bytes)
          of it, which limits how many overlay lowerdirs fit.
        """
        args = (source, target, fstype, flags, data)
        _check(_lib().mount(_b(source), _b(target), _b(fstype), flags, _b(data)), "mount", args)

    def umount2(self, target: str, flags: int = 0) -> None:
        """Detach the mount at ``target`` (umount2(2)).

        * EBUSY if it is in use, unless MNT_DETACH: then it disappears from the tree at once and is
          freed when the last user goes ("lazy" unmount) — how the old root is dropped after pivot_root.
        """
        _check(_lib().umount2(_b(target), flags), "umount2", (target, flags))

    def pivot_root(self, new_root: str, put_old: str) -> None:
        """Make ``new_root`` the root mount of this mount namespace and move the old root to ``put_old``.

        Preconditions (pivot_root(2)), each an EINVAL otherwise:
        * ``new_root`` must be a mount point — bind-mount a plain directory onto itself first
          (a plain directory on the *root* filesystem fails earlier, with EBUSY);
        * ``new_root`` must not be on the same mount as the current root;
        * ``put_old`` must be at or underneath ``new_root``;
        * the current root and ``new_root``'s parent mount must not have shared propagation — make
          "/" MS_REC|MS_PRIVATE beforehand;
        * the caller needs CAP_SYS_ADMIN in the user namespace that owns the mount namespace.
        ``pivot_root(".", ".")`` (after chdir(new_root)) stacks the old root on top of the new one;
        ``umount2(".", MNT_DETACH)`` then removes it without a put_old directory (runc does this).
        Unlike chroot(2), the old root is no longer reachable once detached: chroot only changes the
        process's root directory, and a process with CAP_SYS_CHROOT can chroot again to escape.
        """
        args = (new_root, put_old)
        _check(_lib().syscall(SYS_PIVOT_ROOT, _b(new_root), _b(put_old)), "pivot_root", args)

    def open_tree(self, path: str, flags: int = OPEN_TREE_CLONE | AT_RECURSIVE) -> int:
        """An fd for the mount at ``path`` (open_tree(2)); with OPEN_TREE_CLONE a *detached copy* of
        it (AT_RECURSIVE: with its submounts), which mount_setattr may change and move_mount attach.
        * CLONE needs CAP_SYS_ADMIN in the user namespace owning our mount namespace."""
        fd = _lib().syscall(SYS_OPEN_TREE, ctypes.c_int(-100), _b(path), ctypes.c_uint(flags | os.O_CLOEXEC))
        return _check(fd, "open_tree", (path, flags))

    def mount_setattr_idmap(self, fd: int, userns_fd: int) -> None:
        """Make the detached mount ``fd`` idmapped through the user namespace ``userns_fd``
        (mount_setattr(2), MOUNT_ATTR_IDMAP): through it, a file owned by id N on disk shows as
        owned by the host id that N maps to (container uid 0 -> 100000), and what a process with
        host uid 100000 creates is stored as 0.
        * Only on a mount not yet attached, of a filesystem that allows it (FS_ALLOW_IDMAP), and a
          user namespace with maps written; EINVAL otherwise."""
        attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
        rc = _lib().syscall(SYS_MOUNT_SETATTR, ctypes.c_int(fd), b"", ctypes.c_uint(AT_EMPTY_PATH),
                            ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
        _check(rc, "mount_setattr", (fd, "MOUNT_ATTR_IDMAP", userns_fd))

    def move_mount(self, fd: int, target: str) -> None:
        """Attach the detached mount ``fd`` at ``target`` (move_mount(2), MOVE_MOUNT_F_EMPTY_PATH)."""
        rc = _lib().syscall(SYS_MOVE_MOUNT, ctypes.c_int(fd), b"", ctypes.c_int(-100), _b(target),
                            ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH))
        _check(rc, "move_mount", (fd, target))

    def sethostname(self, name: str) -> None:
        """Set the hostname of the UTS namespace (sethostname(2)); at most 64 bytes."""
        raw = _b(name)
        _check(_lib().sethostname(raw, len(raw)), "sethostname", (name,))

    def setdomainname(self, name: str) -> None:
        """Set the NIS domain name of the UTS namespace (setdomainname(2))."""
        raw = _b(name)
        _check(_lib().setdomainname(raw, len(raw)), "setdomainname", (name,))

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
        """Process controls (prctl(2)) used here:

        * PR_SET_CHILD_SUBREAPER: orphaned descendants are re-parented to us, not to pid 1 — how a
          container monitor keeps waiting for the container's init after the launcher exits.
        * PR_SET_PDEATHSIG: get a signal when the parent dies (beware: it is the parent *thread*).
        * PR_SET_NO_NEW_PRIVS: execve can no longer grant privileges (setuid bits, file caps).
        * PR_SET_DUMPABLE: after setuid() from root a process is not dumpable and cannot write its own
          /proc/self/uid_map; set it back to 1.
        * PR_CAPBSET_DROP: drop a capability from the bounding set, so execve cannot regain it.
        """
        args = (option, arg2, arg3, arg4, arg5)
        return _check(_lib().prctl(option, arg2, arg3, arg4, arg5), "prctl", args)

    def capget(self, pid: int = 0) -> tuple[int, int, int]:
        """The (effective, permitted, inheritable) capability sets of ``pid`` (0: this thread) as
        64-bit masks, bit N = capability N (capget(2), capabilities(7))."""
        hdr, data = _CapHeader(_LINUX_CAPABILITY_VERSION_3, pid), (_CapData * 2)()
        _check(_lib().syscall(SYS_CAPGET, ctypes.byref(hdr), data), "capget", (pid,))
        return tuple(getattr(data[0], f) | getattr(data[1], f) << 32
                     for f in ("effective", "permitted", "inheritable"))

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        """Set this thread's effective, permitted and inheritable sets (capset(2)).

        * A thread can only *lower* its permitted set; effective must stay within permitted;
          inheritable may only gain capabilities that are in the bounding set (with CAP_SETPCAP).
        * The bounding set (prctl PR_CAPBSET_DROP) and ambient set (PR_CAP_AMBIENT) are separate calls.
        """
        hdr, data = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0), (_CapData * 2)()
        for i in range(2):
            data[i].effective = effective >> 32 * i & 0xFFFFFFFF
            data[i].permitted = permitted >> 32 * i & 0xFFFFFFFF
            data[i].inheritable = inheritable >> 32 * i & 0xFFFFFFFF
        args = (effective, permitted, inheritable)
        _check(_lib().syscall(SYS_CAPSET, ctypes.byref(hdr), data), "capset", args)

    def seccomp_load(self, program: bytes, flags: int = 0) -> None:
        """Install a seccomp filter: ``program`` is classic BPF, 8 bytes an instruction
        (``struct sock_filter``), as libseccomp's ``seccomp_export_bpf`` writes it (seccomp(2)).

        * Needs no_new_privs (prctl PR_SET_NO_NEW_PRIVS) or CAP_SYS_ADMIN, else EACCES.
        * Irrevocable: filters stack, children and execve inherit them; the most restrictive verdict wins.
        * Applies to the calling thread (all threads with SECCOMP_FILTER_FLAG_TSYNC).
        """
        buf = ctypes.create_string_buffer(bytes(program), len(program))
        prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
        rc = _lib().syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, ctypes.c_uint(flags), ctypes.byref(prog))
        _check(rc, "seccomp_load", (program, flags))

    def bpf(self, cmd: int, attr: bytes | bytearray) -> int:
        """The bpf(2) multiplexer: ``attr`` is the command's ``union bpf_attr``, packed by the caller.
        Returns the call's result (a new fd for BPF_PROG_LOAD). A ``bytearray`` is updated in place
        with what the kernel wrote back (BPF_PROG_QUERY, BPF_OBJ_GET_INFO_BY_FD)."""
        buf = ctypes.create_string_buffer(bytes(attr), len(attr))
        rc = _check(_lib().syscall(SYS_BPF, ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr))),
                    "bpf", (cmd, bytes(attr)))
        if isinstance(attr, bytearray):
            attr[:] = buf.raw[:len(attr)]
        return rc

    def keyctl(self, operation: int, arg2: int | str | None = 0, arg3: int = 0, arg4: int = 0,
               arg5: int = 0) -> int:
        """keyctl(2). The runtime uses ``keyctl(KEYCTL_JOIN_SESSION_KEYRING, name)``: a new session
        keyring for the container (``name`` None: anonymous), so that it cannot read the keys of the
        session it was started from (runc does this unless ``--no-new-keyring``). Returns the serial."""
        a2 = _b(arg2) if isinstance(arg2, str) or arg2 is None else ctypes.c_ulong(arg2)
        args = (operation, arg2, arg3, arg4, arg5)
        return _check(_lib().syscall(SYS_KEYCTL, ctypes.c_int(operation), a2, ctypes.c_ulong(arg3),
                                     ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)), "keyctl", args)

    def open(self, path: str, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
        """open(2), routed here when the fd is used for a later state change (a cgroup directory fd
        for BPF_PROG_ATTACH), so that a dry run opens nothing."""
        return os.open(path, flags, mode)

    def close(self, fd: int) -> None:
        os.close(fd)

    # Calls Python does have, routed through here so that a recorded container start is complete and
    # a dry run (the Recorder) touches nothing.
    def mkdir(self, path: str, mode: int = 0o755, exist_ok: bool = True) -> None:
        """Create a directory and its parents (mkdir(2)); existing is fine when ``exist_ok``."""
        os.makedirs(path, mode=mode, exist_ok=exist_ok)

    def mknod(self, path: str, mode: int, device: int = 0) -> None:
        """Create a device node (mknod(2)); ``mode`` includes S_IFCHR/S_IFBLK. Needs CAP_MKNOD in the
        initial user namespace: inside a user namespace, bind-mount the host's node instead."""
        os.mknod(path, mode, device)

    def symlink(self, target: str, path: str) -> None:
        """Create ``path`` pointing to ``target`` (symlink(2))."""
        os.symlink(target, path)

    def chmod(self, path: str, mode: int) -> None:
        os.chmod(path, mode)

    def chdir(self, path: str) -> None:
        os.chdir(path)

    def fchdir(self, fd: int) -> None:
        """chdir to an open directory (fchdir(2)): the way back to a mount no path reaches any more."""
        os.fchdir(fd)

    def chroot(self, path: str) -> None:
        """Change the root *directory* of this process only (chroot(2)). Not a security boundary:
        the mount tree is unchanged, and a root process can chroot(".") deeper and chdir("..") out."""
        os.chroot(path)

    def write_file(self, path: str, data: str | bytes) -> None:
        """Write a small file (/proc/PID/uid_map, a cgroup knob, /etc/hostname)."""
        with open(path, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())

    def touch(self, path: str) -> None:
        """Create an empty file if missing (a mount point for a file bind mount)."""
        with open(path, "ab"):
            pass

    def setgroups(self, groups: list[int]) -> None:
        os.setgroups(groups)

    def setresgid(self, gid: int) -> None:
        os.setresgid(gid, gid, gid)

    def setresuid(self, uid: int) -> None:
        os.setresuid(uid, uid, uid)

    def execve(self, path: str, argv: list[str], env: dict[str, str]) -> None:
        """Replace this process (execve(2)); returns only on failure."""
        os.execve(path, argv, env)


class Call(Record):
    _fields = ("name", "args")

    def __init__(self, name: str, args: tuple):
        self.name, self.args = name, args

    def __str__(self) -> str:
        return describe_call(self.name, self.args)


class Recorder(Record):
    """Same interface as :class:`Linux`; makes no call, appends each to ``calls``.

    ``fail`` maps a call name to an errno to raise the *first* time it is called, to test rollback.
    ``returns`` maps a call name to what it returns (default 0; ``capget`` returns three 0 masks).
    """
    _fields = ("calls", "fail", "returns")

    def __init__(self, calls: list[Call] | None = None, fail: dict[str, int] | None = None,
                 returns: dict[str, Any] | None = None):
        self.calls = [] if calls is None else calls
        self.fail = {} if fail is None else fail
        self.returns = {} if returns is None else returns

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or not hasattr(Linux, name):
            raise AttributeError(name)

        def record(*args: Any, **kwargs: Any) -> int:
            full = args + tuple(kwargs.values())
            self.calls.append(Call(name, full))
            if name in self.fail:
                raise KernelError(self.fail.pop(name), name, full)
            return self.returns.get(name, (0, 0, 0) if name == "capget" else 0)

        return record

    def names(self) -> list[str]:
        return [c.name for c in self.calls]

    def transcript(self) -> str:
        """One call a line, numbered: what ``--explain`` prints."""
        return "\n".join(f"{i:3d}  {c}" for i, c in enumerate(self.calls, 1))


def thread_count(pid: int | str = "self") -> int:
    """How many threads a process has (unshare of user/mount namespaces needs exactly one)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 1
