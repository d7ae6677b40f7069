"""A scratch btrfs file system on a loop device: where the btrfs storage driver is tried (tests, the
chapter 12 notebook, the benchmark) on hosts whose root is not btrfs.

Nothing may outlive its user, even a killed one (SIGKILL runs no teardown):

* the image file is unlinked as soon as the loop device holds it open (no file left on disk);
* ``mount -o loop`` sets LO_FLAGS_AUTOCLEAR: the loop device detaches itself at the last unmount;
* the mount is made in a *private mount namespace* the test process enters first (propagation
  slave: host mounts still show, ours never reach the host) — when the process dies, the namespace,
  the mount and so the loop device go with it.

If the process cannot enter a new mount namespace (unshare(CLONE_NEWNS) fails with EINVAL once the
process has threads), the mount is made on the host under ``STALE_PREFIX<pid>`` and the next run
unmounts what a dead run left there (the ``with`` block's end tears it down normally).

Man pages: losetup(8) / loop(4) (LO_FLAGS_AUTOCLEAR), mkfs.btrfs(8), mount_namespaces(7).
"""
from __future__ import annotations

import contextlib
import glob
import os
import subprocess
import tempfile

from . import kernel as K

STALE_PREFIX = "/tmp/minidocker-scratch-btrfs-"
SIZE = 1 << 30   # sparse: only what is written takes space


def _sweep_stale() -> None:
    for d in glob.glob(STALE_PREFIX + "*"):
        pid = d[len(STALE_PREFIX):]
        if pid.isdigit() and os.path.exists(f"/proc/{pid}"):
            continue
        subprocess.run(["umount", "-l", d], capture_output=True)
        with contextlib.suppress(OSError):
            os.rmdir(d)


def _private_namespace() -> bool:
    """Enter a new mount namespace (slave propagation). False if this process cannot."""
    k = K.Linux()
    try:
        k.unshare(K.CLONE_NEWNS)
    except OSError:
        return False
    k.mount(None, "/", None, K.MS_REC | K.MS_SLAVE, None)
    return True


@contextlib.contextmanager
def btrfs_mount(size: int = SIZE, private: bool = True):
    """Yield a directory on a fresh btrfs of ``size`` bytes (sparse); unmount (and so detach the
    loop device) afterwards. ``private``: enter a private mount namespace first (for a process that
    may be killed; a notebook's kernel, which other cells share, and the test session, whose later
    tests and daemons must see one mount table, pass False)."""
    _sweep_stale()
    private = private and _private_namespace()
    where = tempfile.mkdtemp(prefix="minidocker-btrfs-") if private else STALE_PREFIX + str(os.getpid())
    os.makedirs(where, exist_ok=True)
    fd, image = tempfile.mkstemp(prefix="btrfs-", suffix=".img", dir="/var/tmp")
    try:
        os.ftruncate(fd, size)
        os.close(fd)
        subprocess.run(["mkfs.btrfs", "-q", "-f", image], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "loop", image, where], check=True, capture_output=True)
    finally:
        os.unlink(image)       # the loop device keeps it open: freed when it detaches
    try:
        yield where
    finally:
        subprocess.run(["umount", where], capture_output=True)
        with contextlib.suppress(OSError):
            os.rmdir(where)


def device_of(where: str) -> str:
    """The block device mounted at ``where`` (this process's mount namespace)."""
    from .rootfs import mountinfo
    return [m.source for m in mountinfo() if m.mountpoint == where][-1]
