"""Lab 02 — the root filesystem: your own version of four pieces of minidocker/rootfs.py.

Fill in the four functions marked TODO. Everything else is given: the data types, the constants
from the OCI runtime spec, and ``setup_rootfs`` — the chapter's checklist — which calls *your*
``setup_dev`` and ``pivot_into`` for steps 6 and 8 and the reference for the other steps.

Rules of the game (the same as the real module):
* every call that changes kernel state goes through the ``kernel`` argument (``kernel.mount``,
  ``kernel.mkdir``, ``kernel.mknod``, ``kernel.chmod``, ``kernel.symlink``, ``kernel.touch``,
  ``kernel.chdir``, ``kernel.pivot_root``, ``kernel.umount2``) — so a ``kernel.Recorder()`` can
  record what you do, and the checker can read it;
* reading is fine with plain Python (``open``, ``os.path.exists``, ``os.listdir``).

Check your work (as root):   minidocker lab check 02
                       or:   .venv/bin/python labs/02-rootfs/check.py
"""
from __future__ import annotations

# Imports you will want (unused until you write the tasks).
import ipaddress  # noqa: F401
import os
import re  # noqa: F401
import stat  # noqa: F401

from minidocker.kernel import (MNT_DETACH, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID,  # noqa: F401
                               MS_PRIVATE, MS_RDONLY, MS_REC, MS_STRICTATIME)
from minidocker.rootfs import (DEFAULT_DEVICES, DEV_SYMLINKS, DEVPTS_DATA, DEVPTS_FLAGS,  # noqa: F401
                               DEV_DATA, DEV_FLAGS, MQUEUE_FLAGS, SHM_DATA, SHM_FLAGS, Mount,
                               MountEntry, RootfsSpec, secure_join)
from minidocker import rootfs as _reference
from minidocker.util import atomic_write  # noqa: F401

__all__ = ["Mount", "MountEntry", "RootfsSpec", "mountinfo", "write_etc_files", "setup_dev",
           "pivot_into", "setup_rootfs"]


# --- Task 1 ---------------------------------------------------------------------------------------------

def mountinfo(pid: int | str = "self") -> list[MountEntry]:
    """Parse /proc/PID/mountinfo into MountEntry objects (one per line).

    A line (proc(5)):  ``36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue``
                        id par dev  root  mountpoint options [optional fields] - fstype source super_options
    Hints:
    * split on whitespace; the optional fields (zero or more, e.g. ``shared:1``) end at a lone ``-``:
      find it with ``fields.index("-", 6)``;
    * ``propagation`` is the optional fields joined by a space, or ``"private"`` when there are none;
    * paths escape space, tab, newline and backslash as three octal digits: ``\\040`` is a space.
      Decode them in ``root``, ``mountpoint`` and ``source`` (``re.sub`` with ``r"\\\\([0-7]{3})"``).
    """
    raise NotImplementedError("TODO 1: parse /proc/PID/mountinfo (see the hints in the docstring)")


# --- Task 2 ---------------------------------------------------------------------------------------------

def write_etc_files(directory: str, hostname: str, hosts_extra=(), dns=None, ip: str | None = None,
                    host_resolv: str = "/etc/resolv.conf") -> dict[str, str]:
    """Write ``hostname``, ``hosts`` and ``resolv.conf`` into ``directory`` and return
    ``{"/etc/hostname": path, "/etc/hosts": path, "/etc/resolv.conf": path}``.

    Hints:
    * write with ``atomic_write(path, text)`` (readers see the old or the new file, never half);
    * hostname: the name and a newline;
    * hosts: ``127.0.0.1<TAB>localhost``, ``::1<TAB>localhost ip6-localhost ip6-loopback``, then the
      hostname on ``ip`` (or ``127.0.1.1`` without one), then each ``hosts_extra`` entry, written as
      ``"name:ip"`` (split at the *first* colon: IPv6 addresses contain colons) or ``(name, ip)``;
    * resolv.conf: ``nameserver X`` per ``dns`` server if given. Otherwise copy ``host_resolv`` but drop
      nameservers on the loopback (``ipaddress.ip_address(a).is_loopback``): 127.0.0.53 is the host's
      local resolver, and the container's 127.0.0.53 is its own loopback. If no nameserver is left,
      use ``8.8.8.8`` and ``8.8.4.4`` as docker does.
    """
    raise NotImplementedError("TODO 2: write /etc/hostname, /etc/hosts, /etc/resolv.conf")


# --- Task 3 ---------------------------------------------------------------------------------------------

def setup_dev(kernel, rootfs: str, user_namespace: bool = False, mqueue: bool = True) -> None:
    """Build the container's /dev under ``rootfs`` (before pivot_root, so host paths).

    In order:
    1. ``dev = secure_join(rootfs, "/dev")``; ``kernel.mkdir(dev, 0o755)``; mount a tmpfs there
       (flags ``DEV_FLAGS``, data ``DEV_DATA``).
    2. For each ``d`` in ``DEFAULT_DEVICES``: the node ``dev/<name>``. Normally
       ``kernel.mknod(path, stat.S_IFCHR | d.mode, os.makedev(d.major, d.minor))`` followed by
       ``kernel.chmod(path, d.mode)`` (why? try without and look at the mode). With
       ``user_namespace`` mknod is refused: ``kernel.touch(path)`` and bind-mount the host's node
       (``d.path``) onto it instead (``MS_BIND``).
    3. ``dev/pts``: mkdir, then a devpts mount (``DEVPTS_FLAGS``, ``DEVPTS_DATA`` — note
       ``newinstance``: what would the container see without it?).
    4. ``dev/shm``: mkdir, tmpfs (``SHM_FLAGS``, ``SHM_DATA``). ``dev/mqueue`` if ``mqueue``: mkdir,
       an ``mqueue`` filesystem (``MQUEUE_FLAGS``).
    5. The symlinks in ``DEV_SYMLINKS`` (target, link): ``kernel.symlink(target, dev/<basename(link)>)``.
    """
    raise NotImplementedError("TODO 3: build /dev (tmpfs, nodes, devpts, shm, mqueue, symlinks)")


# --- Task 4 ---------------------------------------------------------------------------------------------

def pivot_into(kernel, rootfs: str) -> None:
    """Make ``rootfs`` (already a mount point) the root of this mount namespace and get rid of the
    old root, without a put_old directory.

    Hints: four kernel calls. pivot_root(2) explains, in its NOTES, what ``pivot_root(".", ".")``
    does after a ``chdir`` into the new root: where does the old root end up? Then it must go —
    but it is busy (we are standing in it), so the unmount has to be *lazy*: ``MNT_DETACH``.
    Finally, where is our working directory?
    """
    raise NotImplementedError("TODO 4: chdir, pivot_root, umount2 (detach), chdir")


# --- given: the checklist, using your functions for steps 6 and 8 -------------------------------------------

def setup_rootfs(kernel, spec: RootfsSpec) -> None:
    rootfs = os.path.realpath(spec.rootfs)
    _reference.make_mounts_private(kernel)                      # 1. no propagation to the host
    _reference.mount_spec_mounts(kernel, spec.mounts)            # 2. mounts that make the rootfs
    _reference.bind_rootfs(kernel, rootfs)                       # 3. a mount point for pivot_root
    _reference.mount_proc(kernel, rootfs)                        # 4. /proc of our pid namespace
    _reference.mount_sys(kernel, rootfs, spec.user_namespace)    # 5. /sys read-only
    setup_dev(kernel, rootfs, spec.user_namespace, spec.mqueue)  # 6. yours
    _reference.bind_mount_files(kernel, rootfs, spec.bind_files)  # 7. /etc/hostname & co.
    pivot_into(kernel, rootfs)                                   # 8. yours
    if spec.readonly:
        _reference.remount_root_readonly(kernel)                 # 9. --read-only
