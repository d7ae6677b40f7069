"""Network namespaces that outlive their processes, as ``ip netns add`` makes them — but in our own
directory, and removed again (``ip netns add`` leaves a /run/netns bind mount behind on this host).

A namespace lives while a task is in it *or* something holds a reference: an open fd, or a bind
mount of its ``/proc/PID/ns/net`` file. Namespaces belong to a *thread*, and a network namespace
may be entered by one thread of a multi-threaded process (a user namespace may not). So: a fresh
thread calls ``unshare(CLONE_NEWNET)`` — only that thread moves — and bind mounts its own
``/proc/thread-self/ns/net`` onto an empty file; the thread ends, the mount keeps the namespace.
(``ip netns add`` and an earlier version of this module fork a child for it: a fork of a big
daemon costs more than the namespace.) The path is what OCI's ``linux.namespaces`` takes (``{"type": "network", "path": …}``):
the runtime ``setns``es into it, so the namespace is wired *before* the container starts.
``umount2(path, MNT_DETACH)`` and ``unlink`` drop the last reference; the kernel then destroys the
namespace and every device in it (the veth's inner end takes its peer along).

That thread can also bring the new namespace's ``lo`` up (``create(..., loopback_up=True)``): it
is inside already, so one ``SIOCSIFFLAGS`` ioctl does it — no netlink socket, no pyroute2 (what
``--network none`` needs, and all it needs).

Namespaces belong to a thread: ``in_netns`` runs a function in a fresh thread that joins the
namespace (allowed for network namespaces in a multi-threaded process), e.g. to open the DNS
server's socket at 127.0.0.11 *inside* the container. Man pages: ip-netns(8), setns(2), unshare(2),
netdevice(7) (``SIOCGIFFLAGS``/``SIOCSIFFLAGS``).
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import threading

from .. import kernel as K


SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def _lo_up() -> None:
    """``ip link set lo up`` in the caller's namespace: read the flags, set IFF_UP (netdevice(7))."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        ifr = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0))
        flags = struct.unpack_from("16sH", ifr)[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def create(path: str, kernel=None, loopback_up: bool = False) -> str:
    """A new, empty network namespace pinned at ``path`` (the file must not be in use); with
    ``loopback_up`` its ``lo`` is up (a new namespace's is down: 127.0.0.1 would fail)."""
    k = kernel or K.Linux()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "x"):
        pass

    def make():  # in a fresh thread: only it moves (and it ends right after)
        k.unshare(K.CLONE_NEWNET)
        k.mount("/proc/thread-self/ns/net", path, None, K.MS_BIND)
        if loopback_up:
            _lo_up()
    try:
        in_netns(None, make, k)
    except BaseException:
        remove(path, k)
        raise
    return path


def is_pinned(path: str) -> bool:
    """Whether ``path`` is a mount point holding a namespace (an nsfs file)."""
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)
    except OSError:
        return False


def remove(path: str, kernel=None) -> None:
    """Unpin and delete; the namespace dies with its last reference. Missing is not an error.
    Unmounts until the kernel says EINVAL (not a mount point; ENOENT: no file) rather than reading
    /proc/self/mountinfo — with many containers that table is long, and this runs at every exit."""
    k = kernel or K.Linux()
    while True:
        try:
            k.umount2(path, K.MNT_DETACH)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT):
                break
            raise
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def join(path: str, kernel=None) -> None:
    """Move the *calling thread* into the namespace pinned at ``path`` (setns(2))."""
    k = kernel or K.Linux()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        k.setns(fd, K.CLONE_NEWNET)
    finally:
        os.close(fd)


def in_netns(path: str | None, fn, kernel=None):
    """``fn()`` run by a thread that joined the namespace at ``path`` (None: a thread that stays in
    the caller's namespace); returns its result or raises its exception."""
    k = kernel or K.Linux()
    box: dict = {}

    def run():
        try:
            if path is not None:
                join(path, k)
            box["value"] = fn()
        except BaseException as e:  # handed to the caller's thread
            box["error"] = e

    t = threading.Thread(target=run, name="in-netns")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")
