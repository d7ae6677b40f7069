"""Reading an OCI runtime bundle: ``config.json`` (runtime-spec config.md, config-linux.md) + a rootfs.

What this teaches
-----------------
A bundle is a directory with ``config.json`` and (usually) the root filesystem it names in
``root.path``. Everything the runtime below the daemon does is decided by this file: the process
(args, env, cwd, user, capabilities, terminal), the namespaces (new ones, or a ``path`` to join),
the mounts, ``linux.resources`` (cgroups), ``linux.seccomp``, masked and read-only paths, sysctls.
This module turns the parts the kernel-facing code needs into plain values; nothing here knows
Docker's API (that is ``daemon/specconv.py``).

minidocker's annotations (config.md "Annotations": reverse-domain keys, string values) carry what
the spec has no field for:

* ``org.minidocker.rootfs.mounts``: JSON list of mounts (``rootfs.Mount`` fields, target left
  empty) that *produce* ``root.path`` — the snapshotter's overlay. They are made inside the
  container's new mount namespace, so nothing shows on the host and nothing needs unmounting.
  Without it, ``root.path`` is used as it is (a plain directory, as ``runc spec`` bundles have).
* ``org.minidocker.init``: ``"true"`` runs a tiny init as pid 1 that reaps zombies and forwards
  signals (``docker run --init``).
* ``process.user.username`` / ``process.user.additionalGroupNames`` (minidocker extensions inside
  ``process.user``): names only the container's own /etc/passwd and /etc/group can resolve, so the
  init resolves them after pivot_root (``docker run -u name``, ``--group-add name``).
"""
from __future__ import annotations

import json
import os

from .. import kernel as K
from .. import rootfs

ANNOTATION_ROOTFS_MOUNTS = "org.minidocker.rootfs.mounts"
ANNOTATION_INIT = "org.minidocker.init"
ANNOTATION_NO_NEW_KEYRING = "org.minidocker.no-new-keyring"   # runc --no-new-keyring (set by create)

OCI_VERSION = "1.0.2"

# OCI namespace "type" -> the namespaces chapter's kind.
NS_KINDS = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
            "user": "user", "cgroup": "cgroup"}

# Mounts the rootfs chapter makes itself, in its fixed order (proc, sys, dev...). An OCI config
# lists them as ordinary mounts; we recognise them by destination.
KERNEL_MOUNTS = ("/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys/fs/cgroup")

# mount(8) option -> (flag, set?) as runc's parseMountOptions; other options are fs data.
_FLAG_OPTIONS = {
    "ro": (K.MS_RDONLY, True), "rw": (K.MS_RDONLY, False), "nosuid": (K.MS_NOSUID, True),
    "suid": (K.MS_NOSUID, False), "nodev": (K.MS_NODEV, True), "dev": (K.MS_NODEV, False),
    "noexec": (K.MS_NOEXEC, True), "exec": (K.MS_NOEXEC, False), "sync": (K.MS_SYNCHRONOUS, True),
    "async": (K.MS_SYNCHRONOUS, False), "noatime": (K.MS_NOATIME, True),
    "nodiratime": (K.MS_NODIRATIME, True), "relatime": (K.MS_RELATIME, True),
    "strictatime": (K.MS_STRICTATIME, True), "bind": (K.MS_BIND, True),
    "rbind": (K.MS_BIND | K.MS_REC, True),
}
# Propagation options (mount_namespaces(7)) -> the flags of a second mount(2) call on the mount point.
PROPAGATION_FLAGS = {"private": K.MS_PRIVATE, "shared": K.MS_SHARED, "slave": K.MS_SLAVE,
                     "unbindable": K.MS_UNBINDABLE}
PROPAGATION_FLAGS.update({"r" + k: v | K.MS_REC for k, v in list(PROPAGATION_FLAGS.items())})
_PROPAGATION = tuple(PROPAGATION_FLAGS)


class SpecError(ValueError):
    """A config.json the runtime cannot run; the message names the field."""


def load(bundle: str) -> dict:
    """Read and check ``bundle/config.json``."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            spec = json.load(f)
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file (is {bundle!r} a bundle?)") from None
    except ValueError as e:
        raise SpecError(f"{path}: invalid JSON: {e}") from None
    check(spec)
    return spec


def check(spec: dict) -> None:
    """The fields this runtime needs, with messages naming them (a full schema check is
    :func:`validate`)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("ociVersion"), str):
        raise SpecError("config.json: ociVersion must be a string")
    proc = spec.get("process")
    if not isinstance(proc, dict) or not proc.get("args") or not isinstance(proc.get("cwd"), str):
        raise SpecError("config.json: process.args (non-empty) and process.cwd are required")
    if not str(proc["cwd"]).startswith("/"):
        raise SpecError(f"config.json: process.cwd {proc['cwd']!r} must be an absolute path")
    if not isinstance(spec.get("root"), dict) or not spec["root"].get("path"):
        raise SpecError("config.json: root.path is required")
    for ns in (spec.get("linux") or {}).get("namespaces") or []:
        if ns.get("type") not in NS_KINDS:
            raise SpecError(f"config.json: unknown namespace type {ns.get('type')!r}")


# What this runtime does with the rest of a config.json: fields it refuses (running without them
# would be less isolated or plainly different) and fields it ignores with a warning.
_REFUSED = {("hooks",): "hooks", ("linux", "intelRdt"): "linux.intelRdt"}
_WARNED = {("process", "apparmorProfile"): "process.apparmorProfile",
           ("process", "selinuxLabel"): "process.selinuxLabel", ("linux", "mountLabel"): "linux.mountLabel",
           ("linux", "personality"): "linux.personality", ("linux", "timeOffsets"): "linux.timeOffsets",
           ("process", "ioPriority"): "process.ioPriority", ("process", "scheduler"): "process.scheduler"}
_RESOURCES = {"memory": {"limit", "swap"}, "cpu": {"shares", "quota", "period", "cpus"},
              "pids": {"limit"}, "blockIO": {"weight"}, "devices": None}


def unsupported(spec: dict) -> tuple[list[str], list[str]]:
    """-> (refused, ignored): the spec's fields this runtime will not run, and those it runs
    without (``runtime.create`` raises for the first, logs the second)."""
    def get(path):
        v = spec
        for p in path:
            v = v.get(p) if isinstance(v, dict) else None
        return v

    refused = [name for path, name in _REFUSED.items() if get(path)]
    ignored = [name for path, name in _WARNED.items() if get(path)]
    for key, value in ((spec.get("linux") or {}).get("resources") or {}).items():
        if key not in _RESOURCES:
            if value:
                ignored.append(f"linux.resources.{key}")
        elif _RESOURCES[key] is not None and isinstance(value, dict):
            ignored += [f"linux.resources.{key}.{k}" for k, v in value.items() if v and k not in _RESOURCES[key]]
    return refused, ignored


def validate(spec: dict, schema: str = "config-schema.json") -> list[str]:
    """Problems found by the runtime-spec's JSON schemas (``schema/``, copied verbatim from the
    spec); [] if none. ``config.json`` goes through the compiled validator of ``specschema.py``
    (fast enough for every create; it stops at the first problem). Any other schema
    (``schema="state-schema.json"`` checks a ``state`` answer) goes through jsonschema, which lists
    every problem but costs ~0.2 s a call: the tests use it, never a start."""
    if schema == "config-schema.json":
        from .specschema import InvalidConfig, validate as check_schema
        try:
            check_schema(spec)
        except InvalidConfig as e:
            return [str(e)]
        return []
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4
    here = os.path.join(os.path.dirname(__file__), "schema")

    def retrieve(uri: str):
        with open(os.path.join(here, os.path.basename(uri))) as f:
            return Resource.from_contents(json.load(f), default_specification=DRAFT4)

    v = jsonschema.Draft4Validator(retrieve(schema).contents, registry=Registry(retrieve=retrieve))
    return [f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in v.iter_errors(spec)]


def root_path(spec: dict, bundle: str) -> str:
    """``root.path`` relative to the bundle, made absolute (config.md "Root")."""
    return os.path.normpath(os.path.join(bundle, spec["root"]["path"]))


def namespaces(spec: dict) -> tuple[list[str], dict[str, str]]:
    """-> (kinds to create, {kind: path to join}) from ``linux.namespaces``."""
    new, join = [], {}
    for ns in (spec.get("linux") or {}).get("namespaces") or []:
        kind = NS_KINDS[ns["type"]]
        if ns.get("path"):
            join[kind] = ns["path"]
        else:
            new.append(kind)
    return new, join


def mount_flags(options: list[str]) -> tuple[int, str, bool]:
    """OCI mount options -> (mount(2) flags, data string, read-only bind?)."""
    flags, data = 0, []
    for o in options or []:
        if o in _FLAG_OPTIONS:
            bit, on = _FLAG_OPTIONS[o]
            flags = flags | bit if on else flags & ~bit
        elif o in _PROPAGATION:
            continue  # a separate call after the mount: propagation_flags()
        else:
            data.append(o)
    return flags, ",".join(data), bool(flags & K.MS_BIND and flags & K.MS_RDONLY)


def propagation_flags(options: list[str]) -> int:
    """The last propagation option of a mount as mount(2) flags (0: none given)."""
    flags = 0
    for o in options or []:
        flags = PROPAGATION_FLAGS.get(o, flags)
    return flags


def root_propagation(spec: dict) -> int:
    """``linux.rootfsPropagation`` as mount(2) flags (0: absent)."""
    value = (spec.get("linux") or {}).get("rootfsPropagation") or ""
    if value and value not in PROPAGATION_FLAGS:
        raise SpecError(f"config.json: linux.rootfsPropagation {value!r} is not one of {', '.join(_PROPAGATION)}")
    return PROPAGATION_FLAGS.get(value, 0)


def rootfs_spec(spec: dict, bundle: str, console: str | None = None) -> "rootfs.RootfsSpec":
    """What ``rootfs.setup_rootfs`` needs, from the spec: the producing mounts (annotation), the
    bind mounts, ``root.readonly``. (Masked and read-only paths come later, after the sysctls:
    runtime/init.py.)"""
    root = root_path(spec, bundle)
    ann = spec.get("annotations") or {}
    mounts = []
    if ann.get(ANNOTATION_ROOTFS_MOUNTS):
        mounts = [rootfs.Mount(**{**m, "target": root}) for m in json.loads(ann[ANNOTATION_ROOTFS_MOUNTS])]
    binds: dict[str, str] = {}
    propagation: dict[str, int] = {}
    destinations = set()
    for m in spec.get("mounts") or []:
        dest = m.get("destination", "")
        destinations.add(dest)
        if dest in KERNEL_MOUNTS:
            continue
        flags, _, _ = mount_flags(m.get("options"))
        if m.get("type") == "bind" or flags & K.MS_BIND:
            if not m.get("source", "").startswith("/"):
                raise SpecError(f"mount {dest!r}: a bind mount needs an absolute source")
            binds[dest] = m["source"]
            propagation[dest] = propagation_flags(m.get("options"))
    kinds, _ = namespaces(spec)
    return rootfs.RootfsSpec(
        rootfs=root, mounts=mounts, readonly=bool(spec["root"].get("readonly")), bind_files=binds,
        user_namespace="user" in kinds, mqueue="/dev/mqueue" in destinations,
        console=console, root_propagation=root_propagation(spec),
        bind_propagation={d: f for d, f in propagation.items() if f} if root_propagation(spec) else {})


def other_mounts(spec: dict) -> list["rootfs.Mount"]:
    """Mounts that are neither the kernel filesystems the rootfs chapter makes nor binds (a tmpfs
    on /run, say): made after pivot_root, at container paths, since they need no host path."""
    out = []
    for m in spec.get("mounts") or []:
        dest = m.get("destination", "")
        flags, data, _ = mount_flags(m.get("options"))
        if dest in KERNEL_MOUNTS or m.get("type") == "bind" or flags & K.MS_BIND:
            continue
        if not dest.startswith("/") or not m.get("type"):
            raise SpecError(f"mount {dest!r}: an absolute destination and a type are required")
        out.append(rootfs.Mount(m.get("source") or m["type"], dest, m["type"], flags, data or None))
    return out


def readonly_binds(spec: dict) -> list[str]:
    """Bind mounts with "ro": remounted read-only after pivot_root (a bind ignores MS_RDONLY)."""
    return [m["destination"] for m in spec.get("mounts") or []
            if m.get("destination") not in KERNEL_MOUNTS and mount_flags(m.get("options"))[2]]


def mount_readonly(spec: dict, destination: str) -> bool:
    """Whether the spec's mount at ``destination`` has "ro" (absent: True, the safe side)."""
    m = next((m for m in spec.get("mounts") or [] if m.get("destination") == destination), None)
    return m is None or "ro" in (m.get("options") or [])


def wants_cgroupfs(spec: dict) -> bool:
    return any(m.get("destination") == "/sys/fs/cgroup" for m in spec.get("mounts") or [])


def example(args: list[str] | None = None, terminal: bool = True) -> dict:
    """The config.json ``runc spec`` writes (runc 1.1: spec 1.0.2-dev, a shell with a terminal, three
    capabilities also ambient, a read-only root, new pid/network/ipc/uts/mount namespaces, Docker's
    masked paths); ``minidocker-runtime spec`` writes it. ``args``/``terminal``: another process."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    return {
        "ociVersion": "1.0.2-dev",
        "process": {"terminal": terminal, "user": {"uid": 0, "gid": 0}, "args": args or ["sh"],
                    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
                    "cwd": "/",
                    "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted", "ambient")},
                    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                    "noNewPrivileges": True},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }
