"""Sysctls: which kernel settings a container may set (``docker run --sysctl``).

What this teaches
-----------------
``/proc/sys`` holds the kernel's tunables. Most are global: a container that set ``vm.overcommit_memory``
or ``kernel.core_pattern`` would change them for the whole host, which is why ``/proc/sys`` is mounted
read-only in a container (:mod:`masks`). A few belong to a namespace, and the runtime may set those
for the container, before ``/proc/sys`` is made read-only (:func:`apply`):

* the System V IPC limits (``kernel.msgmax`` ``msgmnb`` ``msgmni`` ``sem`` ``shmall`` ``shmmax``
  ``shmmni`` ``shm_rmid_forced``) and ``fs.mqueue.*``: IPC namespace;
* ``net.*``: network namespace;
* ``kernel.domainname``: UTS namespace (``kernel.hostname`` too, but the OCI ``hostname`` field owns it).

:func:`validate` refuses any other name, or one whose namespace the container shares with the host
(``--ipc host``, ``--network host``, ``--uts host``), with the message runc gives (which docker
shows).

Man pages and specs followed: proc(5) (/proc/sys), sysctl(8), ipc_namespaces(7),
network_namespaces(7), uts_namespaces(7), OCI config-linux.md "Sysctl"; runc's validator.
"""
from __future__ import annotations

IPC_SYSCTLS = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                         "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"})


def validate(sysctls: dict, *, ipc_host: bool, net_host: bool, uts_host: bool) -> None:
    """Raise ``ValueError`` (runc's wording) for the first sysctl a container may not set."""
    for raw in sysctls:
        key = raw.replace("/", ".")
        if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if ipc_host:
                raise ValueError(f'sysctl "{raw}" is not allowed in the hosts ipc namespace')
            continue
        if key.startswith("net."):
            if net_host:
                raise ValueError(f'sysctl "{raw}" is not allowed in the hosts network namespace')
            continue
        if not uts_host:
            if key == "kernel.domainname":
                continue
            if key == "kernel.hostname":
                raise ValueError(f'sysctl "{raw}" is not allowed as it conflicts with the OCI "hostname" field')
        raise ValueError(f'sysctl "{raw}" is not in a separate kernel namespace')


def path(key: str) -> str:
    """``net.ipv4.ip_forward`` -> ``/proc/sys/net/ipv4/ip_forward`` (dots are separators, as in runc)."""
    return "/proc/sys/" + key.replace(".", "/")


def apply(kernel, sysctls: dict) -> None:
    """Write each sysctl inside the container (its /proc, its namespaces), before /proc/sys becomes
    read-only. Call :func:`validate` first: this writes what it is given."""
    for key, value in sysctls.items():
        kernel.write_file(path(key), str(value))
