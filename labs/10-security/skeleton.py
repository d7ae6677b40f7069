"""Lab 10 — security: your version of the capability and seccomp steps of minidocker/security/.

Fill in the five functions marked TODO. Given: the capability numbers (NUMBERS), Docker's profile
(docker_default), the architecture name (native_arch), the Defences type, and the kernel layer's
calls and constants (kernel.prctl, kernel.capset, kernel.seccomp_load, kernel.keyctl).

Check your work (as root):   minidocker lab check 10
                       or:   .venv/bin/python labs/10-security/check.py
"""
from __future__ import annotations

import os  # noqa: F401
import tempfile  # noqa: F401

from minidocker.kernel import (KEYCTL_JOIN_SESSION_KEYRING, PR_CAP_AMBIENT,  # noqa: F401
                               PR_CAP_AMBIENT_CLEAR_ALL, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS)
from minidocker.security.capabilities import NUMBERS, last_cap  # noqa: F401
from minidocker.security.confine import Defences  # noqa: F401
from minidocker.security.seccomp import docker_default, native_arch  # noqa: F401

__all__ = ["capability_mask", "drop_capabilities", "seccomp_rules", "install_seccomp", "confine"]


# --- Task 1 ---------------------------------------------------------------------------------------

def capability_mask(names: list[str]) -> int:
    """The 64-bit mask of these capabilities: bit NUMBERS[name] set for each name."""
    raise NotImplementedError("TODO: OR together 1 << NUMBERS[name]")


# --- Task 2 ---------------------------------------------------------------------------------------

def drop_capabilities(kernel, keep: list[str]) -> None:
    """Keep only ``keep`` in the bounding, effective and permitted sets; nothing inheritable or ambient."""
    raise NotImplementedError("TODO: PR_CAPBSET_DROP the others, then capset, then clear ambient")


# --- Task 3 ---------------------------------------------------------------------------------------

def seccomp_rules(profile: dict, capabilities: list[str]) -> dict:
    """Docker's profile resolved for ``capabilities``: {"defaultAction", "defaultErrnoRet",
    "architectures", "syscalls": [{"names", "action", ["errnoRet"], ["args"]}, ...]}."""
    raise NotImplementedError("TODO: apply each entry's includes/excludes (caps, arches, minKernel)")


# --- Task 4 ---------------------------------------------------------------------------------------

def install_seccomp(kernel, oci: dict) -> None:
    """Compile ``oci`` with libseccomp (pyseccomp) and load it with kernel.seccomp_load."""
    raise NotImplementedError("TODO: SyscallFilter, add_arch, add_rule, export_bpf, seccomp_load")


# --- Task 5 ---------------------------------------------------------------------------------------

def confine(kernel, defences: Defences, cgroup_fd: int | None = None) -> None:
    """The last steps before execve, in runc's order (see the README)."""
    raise NotImplementedError("TODO: cgroup, keyring, (no_new_privs), seccomp and capabilities in order")
