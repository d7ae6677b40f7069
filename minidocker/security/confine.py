"""Putting the layers together: confine a process as Docker's pid 1 does, and run a program so confined.

What this teaches
-----------------
The order of the last steps before ``execve`` matters, because each step takes away something the
next one may need (runc's standard_init_linux.go makes the same choices):

1. join the container's cgroup (the device cgroup applies from the next ``open``);
2. a session keyring of its own (keyctl KEYCTL_JOIN_SESSION_KEYRING) — *before* seccomp, which
   refuses keyctl;
3. without no_new_privs (Docker's default): install seccomp **while CAP_SYS_ADMIN is still held**,
   because loading a filter needs either of the two; the filter allows capset and prctl, which
   step 4 still needs;
4. drop capabilities: bounding set, then capset, then ambient (:func:`capabilities.apply`);
5. with no_new_privs: set it, and install seccomp *last*, as close to execve as possible, so the
   filter has to allow as little as possible;
6. execve: capabilities not in the bounding set are not regained, the filter stays.

:func:`confine` is that sequence; :func:`run_confined` runs a program under it as the child of
pid 1 of new namespaces on a rootfs (with masked and read-only paths applied after pivot_root),
the way the tests, the notebook and the lab attack a container at the chapter level, without the
runtime. Every step can be switched off (:class:`Defences`), which is how the notebook shows each
attack succeed first.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from collections.abc import Callable

from minidocker import rootfs as R
from minidocker.kernel import (CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUTS,
                               KEYCTL_JOIN_SESSION_KEYRING, PR_SET_NO_NEW_PRIVS, Linux)

from . import capabilities, masks, seccomp

CONTAINER_NAMESPACES = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET


@dataclass
class Defences:
    """What to switch on. The defaults are *no* defence (``--privileged`` without its devices)."""
    capabilities: list[str] | None = None    # keep only these (bounding, effective, permitted); None: all
    seccomp: dict | None = None              # an OCI linux.seccomp object; None: unconfined
    masked_paths: list[str] = field(default_factory=list)
    readonly_paths: list[str] = field(default_factory=list)
    no_new_privs: bool = False
    new_keyring: bool = False
    cgroup_procs: str | None = None          # a cgroup.procs file to join (e.g. one with device rules)

    @classmethod
    def docker(cls, cap_add=(), cap_drop=(), **kw) -> "Defences":
        """Docker's defaults for a root container, with ``--cap-add``/``--cap-drop`` applied: the
        capability list, the default seccomp profile resolved for it, the masked and read-only paths,
        a new session keyring. (The device cgroup is the caller's: pass ``cgroup_procs``.)"""
        caps = capabilities.adjust(capabilities.DOCKER_DEFAULT, cap_add, cap_drop)
        kw.setdefault("masked_paths", list(masks.MASKED_PATHS))
        kw.setdefault("readonly_paths", list(masks.READONLY_PATHS))
        kw.setdefault("new_keyring", True)
        return cls(capabilities=caps, seccomp=seccomp.to_oci(seccomp.docker_default(), caps), **kw)


# The three steps by name (lab 10 has the student write these four functions and confine()).
capability_mask = capabilities.mask
seccomp_rules = seccomp.to_oci


def drop_capabilities(kernel, keep: list[str]) -> None:
    """Keep only ``keep`` as Docker does for a root process: in the bounding, effective and permitted
    sets; nothing inheritable or ambient (:func:`capabilities.apply` of :func:`capabilities.oci`)."""
    capabilities.apply(kernel, capabilities.oci(keep))


def install_seccomp(kernel, oci_seccomp: dict) -> None:
    """Load the filter for an OCI ``linux.seccomp`` object (:func:`seccomp.install`)."""
    seccomp.install(kernel, oci_seccomp)


def confine(kernel, d: Defences, cgroup_fd: int | None = None) -> None:
    """Steps 1-5 of the module docstring, in the calling process (call it just before execve).
    ``cgroup_fd``: an open ``cgroup.procs`` (opened before pivot_root made it unreachable)."""
    if cgroup_fd is not None:
        os.write(cgroup_fd, b"0")        # "0": the writing process itself (cgroups(7))
    if d.new_keyring:
        kernel.keyctl(KEYCTL_JOIN_SESSION_KEYRING, None)
    if d.no_new_privs:
        kernel.prctl(PR_SET_NO_NEW_PRIVS, 1)
    if d.seccomp is not None and not d.no_new_privs:
        install_seccomp(kernel, d.seccomp)
    if d.capabilities is not None:
        drop_capabilities(kernel, d.capabilities)
    if d.seccomp is not None and d.no_new_privs:
        install_seccomp(kernel, d.seccomp)


SETUP_FAILED = "setup-failed: "   # how exec_captured reports an exception of before_exec in its output


def exec_captured(argv: list[str], before_exec: Callable[[], None],
                  env: dict[str, str] | None = None) -> tuple[int, str]:
    """Fork; the child runs ``before_exec()`` (e.g. :func:`confine`) and execs ``argv`` with stdout
    and stderr on one pipe. Returns (exit code, output). If ``before_exec`` or the exec raises, the
    output has a line ``setup-failed: Type: message`` and the exit code is 127."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.dup2(w, 1)
            os.dup2(w, 2)
            before_exec()
            os.execve(argv[0], argv, env or {"PATH": "/bin:/sbin:/usr/bin:/usr/sbin"})
        except BaseException as e:  # noqa: BLE001 - report, never return into the caller's code
            os.write(2, f"{SETUP_FAILED}{type(e).__name__}: {e}\n".encode())
        finally:
            os._exit(127)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


def run_confined(rootfs: str, argv: list[str], defences: Defences, *, bind_files: dict | None = None,
                 mounts: list | None = None, timeout: float = 30) -> tuple[int, str]:
    """Run ``argv`` (a path inside ``rootfs``) confined by ``defences``; return (exit code, output).

    Pid 1 of new mount, pid, ipc, uts and net namespaces sets up ``rootfs`` (rootfs chapter:
    ``mounts`` first — host-path mounts such as a disk image, invisible to the host — then
    ``bind_files``, pivot_root), applies the masked and read-only paths, and forks the program,
    which calls :func:`confine` and execs. stdout and stderr come back as one text. The compiled
    seccomp program is made before the fork, so the child does no work the filter might refuse.
    """
    kernel = Linux()
    if defences.seccomp is not None:
        seccomp.compile_bpf(defences.seccomp)      # warm the cache in the parent (shared by fork)

    def pid1() -> tuple[int, str]:
        cg_fd = os.open(defences.cgroup_procs, os.O_WRONLY) if defences.cgroup_procs else None
        R.setup_rootfs(kernel, R.RootfsSpec(rootfs, mounts=list(mounts or []),
                                            bind_files=dict(bind_files or {})))
        if defences.masked_paths or defences.readonly_paths:
            masks.apply(kernel, defences.masked_paths, defences.readonly_paths)
        return exec_captured(argv, lambda: confine(kernel, defences, cg_fd))

    return R._run_in_new_namespaces(pid1, flags=CONTAINER_NAMESPACES, timeout=timeout)
