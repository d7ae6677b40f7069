"""Masked and read-only paths: the parts of /proc and /sys a container may not read or change.

What this teaches
-----------------
/proc and /sys are windows onto the *host's* kernel, and namespaces cover only part of them. A
container that can read ``/proc/kcore`` reads the host's memory image; ``/proc/keys`` lists keys of
every keyring the reader may see; ``/proc/timer_list``, ``/proc/sched_debug`` and
``/proc/latency_stats`` leak other processes' activity; ``/sys/firmware`` holds ACPI tables and
EFI variables (some writable!); ``/proc/sys`` *writes* the host's sysctls (``kernel.core_pattern``
names a program the host kernel runs as root on every crash — an escape in one write);
``/proc/sysrq-trigger`` reboots the host. Docker therefore:

* **masks** :data:`MASKED_PATHS`: ``/dev/null`` bind-mounted over each file, an empty read-only tmpfs
  over each directory. The path still exists (programs that stat it keep working) and reads empty;
* makes :data:`READONLY_PATHS` **read-only**: each bound onto itself and that bind remounted
  read-only, so writes fail with EROFS while reads work.

Both happen in pid 1 after pivot_root (they are container paths), and both only hold because the
container cannot unmount or remount them afterwards: CAP_SYS_ADMIN is gone and seccomp refuses
``mount``/``umount2`` (see :mod:`capabilities`, :mod:`seccomp`). The mechanics live in the rootfs
chapter (:func:`minidocker.rootfs.mask_paths`, :func:`minidocker.rootfs.make_paths_readonly`), which
the runtime's rootfs step uses; this module names Docker's lists and the order.

Specs followed: OCI config-linux.md "Masked Paths" and "Readonly Paths"; moby oci/defaults.go;
proc(5).
"""
from __future__ import annotations

from minidocker import rootfs

MASKED_PATHS: list[str] = list(rootfs.DOCKER_MASKED_PATHS)
READONLY_PATHS: list[str] = list(rootfs.DOCKER_READONLY_PATHS)


def apply(kernel, masked: list[str], readonly: list[str]) -> None:
    """Inside the container, after pivot_root: mask ``masked``, then make ``readonly`` read-only.
    Paths missing on this kernel are skipped (as runc does): /proc/kcore does not exist everywhere."""
    rootfs.mask_paths(kernel, masked)
    rootfs.make_paths_readonly(kernel, readonly)
