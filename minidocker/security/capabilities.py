"""Capabilities: root's power cut into 41 pieces, and the 14 a Docker container keeps.

What this teaches
-----------------
Since Linux 2.2 "root" is not one privilege but a set of capabilities (capabilities(7)): CAP_SYS_ADMIN
(mount, unshare, bpf, keyctl, ... "the new root"), CAP_NET_ADMIN (interfaces, routes, firewall),
CAP_SYS_PTRACE, CAP_SYS_MODULE, CAP_DAC_READ_SEARCH (``open_by_handle_at``: open any file on a
filesystem by its handle, which escaped Docker in 2014, "shocker"), CAP_MKNOD, and so on. The kernel
checks one of them where it used to check ``uid == 0``. Each thread carries five sets, 64-bit masks
shown in ``/proc/PID/status``:

=========  =====================================================================================
CapBnd     bounding: the most a program run by this thread can ever get (execve cannot add more)
CapPrm     permitted: what the thread may switch on
CapEff     effective: what the kernel checks right now
CapInh     inheritable: passed to a program whose file has the same inheritable bits
CapAmb     ambient: passed to any (non-setuid) program, for non-root users
=========  =====================================================================================

A uid-0 process gets its whole bounding set back on every execve, so dropping capabilities for a
container means dropping them from the *bounding* set too (prctl ``PR_CAPBSET_DROP``), then setting
the other sets (capset(2)), then the ambient set (prctl ``PR_CAP_AMBIENT``) — :func:`apply`, in
runc's order. Docker keeps 14 (:data:`DOCKER_DEFAULT`: CapEff = CapBnd = ``00000000a80425fb``);
``--cap-add``/``--cap-drop`` adjust that list (:func:`adjust`), ``--privileged`` keeps them all.

Man pages and specs followed: capabilities(7), capget(2), prctl(2) (PR_CAPBSET_DROP, PR_CAP_AMBIENT,
PR_SET_KEEPCAPS), proc(5) (/proc/PID/status), OCI config.md ``process.capabilities``; the default list
and the add/drop rules are moby's (oci/caps).
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from minidocker.kernel import (CAPABILITIES, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL,
                               PR_CAP_AMBIENT_RAISE, PR_CAPBSET_DROP)

# capabilities(7), linux/capability.h: name -> bit number (the kernel layer holds the list, so that
# --explain can print prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN)).
NUMBERS: dict[str, int] = {name: i for i, name in enumerate(CAPABILITIES)}
NAMES: dict[int, str] = {v: k for k, v in NUMBERS.items()}

# moby's oci/caps DefaultCapabilities, in its order.
DOCKER_DEFAULT: list[str] = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
    "CAP_KILL", "CAP_AUDIT_WRITE",
]

ALL = "ALL"


def last_cap() -> int:
    """The highest capability this kernel knows (/proc/sys/kernel/cap_last_cap; 40 on Linux 5.9+)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return max(NUMBERS.values())


def known() -> list[str]:
    """The capability names this kernel supports, in bit order."""
    return [NAMES[i] for i in range(min(last_cap(), max(NAMES)) + 1)]


def mask(names: Iterable[str]) -> int:
    """``["CAP_CHOWN", "CAP_KILL"]`` -> ``0x21``: the bit mask /proc/PID/status and capset(2) use."""
    m = 0
    for n in normalize(names):
        m |= 1 << NUMBERS[n]
    return m


def names(value: int) -> list[str]:
    """The inverse of :func:`mask`: ``0xa80425fb`` -> the 14 default names, in bit order."""
    return [NAMES.get(i, f"CAP_{i}") for i in range(64) if value >> i & 1]


def normalize(names: Iterable[str]) -> list[str]:
    """Canonical names as docker accepts them: case-insensitive, ``CAP_`` optional, ``ALL`` kept as
    is (it is not a capability but a keyword). Unknown names raise ``ValueError`` with docker's text:
    ``unknown capability: "CAP_FOO"``. Duplicates are dropped, order kept."""
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for raw in names:
        name = raw.strip().upper()
        if name != ALL and not name.startswith("CAP_"):
            name = "CAP_" + name
        if name != ALL and name not in NUMBERS:
            raise ValueError(f'unknown capability: "{name}"')
        if name != ALL and NUMBERS[name] > last_cap():
            raise ValueError("capability not supported by your kernel or not available in the "
                             f'current environment: "{name}"')
        if name not in out:
            out.append(name)
    return out


def adjust(base: Iterable[str], add: Iterable[str] = (), drop: Iterable[str] = (), *,
           privileged: bool = False) -> list[str]:
    """Docker's ``--cap-add``/``--cap-drop`` on top of ``base`` (moby oci/caps TweakCapabilities):

    * ``--privileged``: every capability the kernel knows;
    * ``--cap-add ALL``: every capability except those dropped;
    * ``--cap-drop ALL``: only those added;
    * otherwise drops are removed from ``base`` and adds appended (so naming a capability in both
      *adds* it: the add is applied last).
    Returns canonical names (base order first). Unknown names raise ``ValueError`` as :func:`normalize`.
    """
    if privileged:
        return known()
    add_n, drop_n = normalize(add), normalize(drop)
    if ALL in add_n:
        return [c for c in known() if c not in drop_n]
    if ALL in drop_n:
        return [c for c in add_n if c != ALL]
    caps = [c for c in normalize(base) if c not in drop_n]
    return caps + [c for c in add_n if c not in caps]


def apply(kernel, caps: dict) -> None:
    """Set this thread's capabilities to the OCI ``process.capabilities`` object
    ``{"bounding": [...], "effective": [...], "permitted": [...], "inheritable": [...], "ambient": [...]}``.

    The order is runc's, and each step needs what the previous one keeps:

    1. drop every capability not in ``bounding`` from the bounding set (prctl PR_CAPBSET_DROP, one
       call each; needs CAP_SETPCAP, which is therefore dropped from the other sets only in step 2);
    2. capset(effective, permitted, inheritable) — after a setuid to a non-root user the caller must
       have set PR_SET_KEEPCAPS first, or permitted would already be empty;
    3. ambient: clear all, then raise each listed one (each must be permitted and inheritable).
    Missing keys mean empty sets, as in the OCI spec.
    """
    bounding = mask(caps.get("bounding") or [])
    for cap in range(last_cap() + 1):
        if not bounding >> cap & 1:
            kernel.prctl(PR_CAPBSET_DROP, cap)
    kernel.capset(mask(caps.get("effective") or []), mask(caps.get("permitted") or []),
                  mask(caps.get("inheritable") or []))
    kernel.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    # The kernel raises an ambient capability only if it is permitted and inheritable (EPERM
    # otherwise); runc skips the others: `runc spec` lists three ambient and no inheritable ones.
    raisable = mask(caps.get("permitted") or []) & mask(caps.get("inheritable") or [])
    for name in normalize(caps.get("ambient") or []):
        if raisable >> NUMBERS[name] & 1:
            kernel.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, NUMBERS[name])


def oci(names: Iterable[str]) -> dict:
    """The OCI ``process.capabilities`` object Docker writes for a root process: the same list in
    bounding, effective and permitted; nothing inheritable or ambient."""
    caps = normalize(names)
    return {"bounding": list(caps), "effective": list(caps), "permitted": list(caps),
            "inheritable": [], "ambient": []}


_STATUS_LINE = re.compile(r"^(Cap(?:Inh|Prm|Eff|Bnd|Amb)|Seccomp|Seccomp_filters|NoNewPrivs):\s*(\S+)", re.M)


def from_status(text: str) -> dict:
    """Parse the security lines of ``/proc/PID/status``: ``{"CapEff": 0xa80425fb, ..., "Seccomp": 2,
    "NoNewPrivs": 0}`` (Cap* are hexadecimal masks, the others decimal; Seccomp 0 none, 1 strict,
    2 filter). Lines the kernel does not print are absent."""
    out: dict[str, int] = {}
    for key, value in _STATUS_LINE.findall(text):
        out[key] = int(value, 16) if key.startswith("Cap") else int(value)
    return out
