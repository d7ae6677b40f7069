"""Docker's create request + the image config -> an OCI runtime spec: the ONE place it happens.

What this teaches
-----------------
The Engine API speaks Docker (``Config`` + ``HostConfig``: Cmd, Env, User, Privileged, CapAdd,
SecurityOpt, Devices, ReadonlyRootfs…); the runtime below speaks OCI (``config.json``,
runtime-spec config.md / config-linux.md). moby converts once (``daemon/oci_linux.go`` on top of
``oci/defaults.go``), and so do we: :func:`to_spec` starts from Docker's defaults —

* the 14 default capabilities in the bounding, effective and permitted sets, none inheritable or
  ambient; ``no_new_privs`` off;
* moby's default seccomp profile, turned into ``linux.seccomp`` for those capabilities;
* masked and read-only paths; /proc, /dev (tmpfs), /dev/pts, /dev/shm, /dev/mqueue, /sys
  read-only, /sys/fs/cgroup read-only (in a cgroup namespace);
* the default devices and device cgroup rules (mknod of anything, read/write of the defaults);

then applies the request's options, each **honoured or refused** (HTTP 400 with docker's message
where docker has one) or reported in the create response's ``Warnings`` — never silently ignored.
The daemon's other needs (name, labels, restart policy…) stay in its own record (config.py).

What the spec has no field for travels as annotations (runtime/spec.py): the snapshot's mounts
(``org.minidocker.rootfs.mounts``) and ``--init``.
"""
from __future__ import annotations

import json
import os
import re
import stat

from .. import rootfs as rootfs_mod
from ..runtime import spec as S
from ..volumes import MountPoint, oci_mounts
from .config import ConfigError, ContainerConfig, process_env

# Other HostConfig fields with no effect yet: accepted with a warning when set.
WARN_ONLY = {"ShmSize": "--shm-size", "Links": "--link",
             "ExtraHosts": "--add-host", "Dns": "--dns", "DnsSearch": "--dns-search",
             "DnsOptions": "--dns-option", "StorageOpt": "--storage-opt"}

_RULE_RE = re.compile(r"^([abc]) (\*|\d+):(\*|\d+) ([rwm]{1,3})$")


def _security():
    """The security chapter (capabilities, seccomp, masks, devices, sysctls)."""
    from ..security import capabilities, devices, masks, seccomp, sysctls
    return capabilities, seccomp, masks, devices, sysctls


def _mounts(readonly_sys: bool, mqueue: bool = True) -> list[dict]:
    """Docker's default mounts (moby oci/defaults.go), and the /etc files the daemon writes."""
    ro = ["ro"] if readonly_sys else []
    out = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev"] + ro},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime"] + ro},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]},
    ]
    if mqueue:
        out.append({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]})
    return out


def security_opts(opts) -> dict:
    """``--security-opt`` values -> {"no_new_privileges": bool, "seccomp": None | "unconfined" |
    profile dict}. Docker's forms: ``no-new-privileges``, ``no-new-privileges=true|false`` (and the
    old ``:`` separator), ``seccomp=unconfined``, ``seccomp=<the profile's JSON>`` (the docker CLI
    reads ``seccomp=FILE`` and sends the file's contents)."""
    out: dict = {"no_new_privileges": False, "seccomp": None}
    for opt in opts or []:
        if not isinstance(opt, str):
            raise ConfigError(f"invalid --security-opt: {opt!r}")
        if opt == "no-new-privileges":
            out["no_new_privileges"] = True
            continue
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")
        if not sep:
            raise ConfigError(f"Invalid --security-opt: {opt!r}")
        if key == "no-new-privileges":
            if value not in ("true", "false", "1", "0"):
                raise ConfigError(f"invalid --security-opt 2: {opt!r}")
            out["no_new_privileges"] = value in ("true", "1")
        elif key == "seccomp":
            if value == "unconfined":
                out["seccomp"] = "unconfined"
            else:
                try:
                    profile = json.loads(value)
                except ValueError:
                    raise ConfigError("Decoding seccomp profile failed: the value is not JSON (docker "
                                      "sends the profile file's contents; give a file to the CLI)") from None
                if not isinstance(profile, dict):
                    raise ConfigError("Decoding seccomp profile failed: not a JSON object")
                out["seccomp"] = profile
        elif key in ("label", "apparmor", "systempaths"):
            if key == "systempaths" and value == "unconfined":
                out["systempaths"] = "unconfined"
                continue
            raise ConfigError(f"--security-opt {key}=…: {key} is not supported by minidocker")
        else:
            raise ConfigError(f"Invalid --security-opt: {opt!r}")
    return out


def parse_rule(text: str) -> dict:
    """``--device-cgroup-rule 'c 1:3 rwm'`` -> an OCI device rule (allow)."""
    m = _RULE_RE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise ConfigError(f"invalid device cgroup format '{text}'")
    t, ma, mi, acc = m.groups()
    rule = {"allow": True, "type": t, "access": acc}
    if ma != "*":
        rule["major"] = int(ma)
    if mi != "*":
        rule["minor"] = int(mi)
    return rule


def device(mapping: dict, privileged: bool) -> tuple[dict, dict]:
    """``--device /dev/x[:/dev/y[:rwm]]`` (HostConfig.Devices entry) -> (linux.devices entry, rule)."""
    host = mapping.get("PathOnHost") or ""
    inside = mapping.get("PathInContainer") or host
    perms = mapping.get("CgroupPermissions") or "rwm"
    if not host.startswith("/") or not inside.startswith("/"):
        raise ConfigError(f"invalid device path: {host}:{inside}")
    if not re.fullmatch(r"[rwm]{1,3}", perms):
        raise ConfigError(f"invalid device mode: {perms}")
    try:
        st = os.stat(host)
    except OSError as e:
        raise ConfigError(f"error gathering device information while adding custom device \"{host}\": {e.strerror.lower()}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"error gathering device information while adding custom device \"{host}\": "
                          "directories are not supported by minidocker (give each device)")
    if stat.S_ISCHR(st.st_mode):
        t = "c"
    elif stat.S_ISBLK(st.st_mode):
        t = "b"
    else:
        raise ConfigError(f"error gathering device information while adding custom device \"{host}\": not a device node")
    dev = {"path": inside, "type": t, "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
           "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
    rule = {"allow": True, "type": t, "major": dev["major"], "minor": dev["minor"], "access": perms}
    return dev, rule


def user(spec_text: str, group_add) -> dict:
    """``--user`` and ``--group-add`` -> OCI ``process.user``. Numbers go into uid/gid/additionalGids;
    names can only be resolved in the container's /etc/passwd, so the init does it (spec.py)."""
    out: dict = {"uid": 0, "gid": 0}
    name, _, grp = (spec_text or "").partition(":")
    if spec_text and (not name.isdigit() or (grp and not grp.isdigit())):
        out["username"] = spec_text
    elif spec_text:
        out["uid"] = int(name)
        if grp:
            out["gid"] = int(grp)
        else:  # gid: the uid's passwd entry, found by the init; meanwhile the name form says so
            out["username"] = spec_text
    gids = [str(g) for g in group_add or []]
    if gids:
        out["additionalGids"] = [int(g) for g in gids if g.isdigit()]
        names = [g for g in gids if not g.isdigit()]
        if names:
            out["additionalGroupNames"] = names
    return out


def namespaces(host: dict, netns_path: str | None = None, remap: dict | None = None) -> list[dict]:
    """Docker's namespace modes -> linux.namespaces. "host" leaves the host's; container:<id>
    sharing needs the other container's pid (refused until the engine passes it). The network
    namespace is the daemon's (daemon/networks.py): made and wired before start, joined by path."""
    kinds = [("pid", "PidMode"), ("network", "NetworkMode"), ("ipc", "IpcMode"), ("uts", "UTSMode"),
             ("mount", None), ("cgroup", "CgroupnsMode")]
    out = []
    for kind, key in kinds:
        mode = (host.get(key) or "") if key else ""
        if kind == "network" and netns_path:
            out.append({"type": "network", "path": netns_path})
            continue
        if mode == "host" or (kind == "network" and str(mode).startswith("container:")):
            continue  # container:<id> whose namespace is the host's (netns_path None)
        if isinstance(mode, str) and mode.startswith("container:"):
            raise ConfigError(f"{key}={mode}: sharing another container's namespace is not supported by minidocker yet")
        if key == "IpcMode" and mode not in ("", "private", "shareable", "none"):
            raise ConfigError(f"invalid IPC mode: {mode}")
        if key in ("PidMode", "UTSMode") and mode not in ("", "private"):
            raise ConfigError(f"invalid {key[:-4].upper()} mode: {mode}")
        out.append({"type": kind})
    mode = host.get("UsernsMode") or ""
    if mode not in ("", "host"):
        raise ConfigError(f"invalid USER mode: {mode}")
    if remap and mode != "host":   # minidockerd --userns-remap (daemon/userns.py); --userns=host opts out
        out.append({"type": "user"})
    return out


def to_spec(cfg: ContainerConfig, host: dict | None, container_dir: str, *,
            warnings: list[str] | None = None, config: dict | None = None,
            netns_path: str | None = None, userns_remap: dict | None = None) -> dict:
    """The container's OCI runtime spec. ``cfg``: the daemon's record (command, env, working dir,
    user, hostname, rootfs mounts, limits — already merged with the image's config by
    config.from_create_request); ``host``: the request's HostConfig; ``config``: the request body
    (Volumes). Raises ConfigError (HTTP 400) for what cannot be honoured."""
    caps_mod, seccomp_mod, masks_mod, devices_mod, sysctls_mod = _security()
    host = host or {}
    warnings = warnings if warnings is not None else []
    for key, flag in WARN_ONLY.items():
        if host.get(key):
            warnings.append(f"{flag} is not supported by minidocker yet: ignored")
    unrotated = sorted(set((host.get("LogConfig") or {}).get("Config") or {}) & {"max-size", "max-file", "compress"})
    if unrotated:  # accepted (compose sets them), not implemented: said, not silently dropped
        warnings.append(f"log options {', '.join(unrotated)} are not supported by minidocker yet: "
                        "the log file is not rotated")
    if host.get("DeviceRequests"):
        raise ConfigError("HostConfig.DeviceRequests (--gpus): device requests are not supported by minidocker")
    privileged = bool(host.get("Privileged"))
    sec = security_opts(host.get("SecurityOpt"))
    try:
        base = privileged_capabilities() if privileged else list(caps_mod.DOCKER_DEFAULT)
        caps = base if privileged else caps_mod.adjust(base, host.get("CapAdd") or [], host.get("CapDrop") or [])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    ns = namespaces(host, netns_path, userns_remap)
    kinds = {n["type"] for n in ns}
    sysctl = host.get("Sysctls") or {}
    try:
        sysctls_mod.validate(sysctl, ipc_host="ipc" not in kinds, net_host="network" not in kinds,
                             uts_host="uts" not in kinds)
    except ValueError as e:
        raise ConfigError(str(e)) from None

    # Devices: the defaults, --device, and the rules (Docker's: deny all, then allow).
    # (fileMode: permission bits only, as the schema says; the type is "type".)
    devs = [{**d, "fileMode": d["fileMode"] & 0o777} if "fileMode" in d else dict(d) for d in devices_mod.DEFAULT_DEVICES]
    rules = [dict(r) for r in devices_mod.DEFAULT_RULES]
    if privileged:
        rules = [{"allow": True, "access": "rwm"}]
        warnings.append("--privileged: the host's devices are not added to the container's /dev by "
                        "minidocker (every device may be used; add nodes with --device)")
    for m in host.get("Devices") or []:
        dev, rule = device(m, privileged)
        devs.append(dev)
        rules.append(rule)
    for text in host.get("DeviceCgroupRules") or []:
        rules.append(parse_rule(text))

    proc = {
        "terminal": cfg.tty, "user": user(cfg.user, host.get("GroupAdd")), "args": list(cfg.argv),
        "env": process_env(cfg.env, [f"HOSTNAME={cfg.hostname}"] + (["TERM=xterm"] if cfg.tty else [])),
        "cwd": cfg.working_dir,
        "capabilities": caps_mod.oci(caps),
        "noNewPrivileges": sec["no_new_privileges"],
    }
    if host.get("OomScoreAdj"):
        if not -1000 <= int(host["OomScoreAdj"]) <= 1000:
            raise ConfigError(f"Invalid value {host['OomScoreAdj']}, range for oom score adj is [-1000, 1000]")
        proc["oomScoreAdj"] = int(host["OomScoreAdj"])
    rlimits = ulimits(host.get("Ulimits"))
    if rlimits:
        proc["rlimits"] = rlimits
    if cfg.tty and host.get("ConsoleSize") and any(host["ConsoleSize"]):
        h, w = host["ConsoleSize"]
        proc["consoleSize"] = {"height": int(h), "width": int(w)}
    linux: dict = {
        "namespaces": ns,
        "cgroupsPath": f"{cfg.cgroup_parent.strip('/')}/{cfg.id}",
        "resources": {**limits_of(cfg), "devices": rules},
        "devices": devs,
    }
    if "user" in kinds:
        linux["uidMappings"] = userns_remap["uidMappings"]
        linux["gidMappings"] = userns_remap["gidMappings"]
    if sysctl:
        linux["sysctl"] = {str(k): str(v) for k, v in sysctl.items()}
    if not privileged and sec.get("systempaths") != "unconfined":
        # HostConfig.MaskedPaths / ReadonlyPaths, when given, replace Docker's lists (as moby does).
        masked, ro = host.get("MaskedPaths"), host.get("ReadonlyPaths")
        linux["maskedPaths"] = list(masks_mod.MASKED_PATHS) if masked is None else list(masked)
        linux["readonlyPaths"] = list(masks_mod.READONLY_PATHS) if ro is None else list(ro)
    if not privileged and sec["seccomp"] != "unconfined":
        profile = sec["seccomp"] if isinstance(sec["seccomp"], dict) else seccomp_mod.docker_default()
        try:
            linux["seccomp"] = seccomp_mod.to_oci(profile, caps)
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"Decoding seccomp profile failed: {e}") from None
    annotations = {}
    if cfg.rootfs_mounts:
        annotations[S.ANNOTATION_ROOTFS_MOUNTS] = json.dumps(cfg.rootfs_mounts)
    if cfg.init:
        annotations[S.ANNOTATION_INIT] = "true"
    mounts = _mounts(readonly_sys=not privileged, mqueue="ipc" in kinds)
    for name in ("hostname", "hosts", "resolv.conf"):
        if os.path.exists(os.path.join(container_dir, name)):
            mounts.append({"destination": f"/etc/{name}", "type": "bind", "source": os.path.join(container_dir, name),
                           "options": ["rbind", "rprivate"]})
    # Volumes, binds, tmpfs (resolved by the daemon: daemon/volumes.resolve), parents first.
    points = [MountPoint.from_dict(d) for d in cfg.volume_mounts]
    mounts += oci_mounts(points)
    root_pg = rootfs_propagation(points)
    if root_pg:
        linux["rootfsPropagation"] = root_pg
    spec = {
        "ociVersion": S.OCI_VERSION,
        "process": proc,
        "root": {"path": "rootfs", "readonly": bool(cfg.readonly_rootfs)},
        "hostname": cfg.hostname,
        "mounts": mounts,
        "annotations": annotations,
        "linux": linux,
    }
    if cfg.domainname:
        spec["domainname"] = cfg.domainname
    return spec


def privileged_capabilities() -> list[str]:
    """``--privileged``: every capability — that the daemon itself holds (a container cannot get
    more than its creator: here CAP_SYS_RESOURCE may be missing, see host-facts)."""
    from ..security import capabilities
    with open("/proc/self/status") as f:
        return capabilities.names(capabilities.from_status(f.read())["CapBnd"])


def limits_of(cfg: ContainerConfig) -> dict:
    """The record's validated limits (cgroups chapter) as OCI ``linux.resources``."""
    from ..cgroups import Limits
    return Limits.from_dict(cfg.resources).to_oci()


_RLIMITS = {"core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
            "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE",
            "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS",
            "rtprio": "RLIMIT_RTPRIO", "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING",
            "stack": "RLIMIT_STACK", "as": "RLIMIT_AS"}


def ulimits(items) -> list[dict]:
    """``--ulimit nofile=1024:2048`` (HostConfig.Ulimits) -> process.rlimits."""
    out = []
    for u in items or []:
        name = (u or {}).get("Name")
        if name not in _RLIMITS:
            raise ConfigError(f"invalid ulimit type: {name}")
        soft, hard = int(u.get("Soft", 0)), int(u.get("Hard", 0))
        if soft > hard:
            raise ConfigError(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
        out.append({"type": _RLIMITS[name], "soft": soft, "hard": hard})
    return out


def rootfs_propagation(points: list[MountPoint], table: list | None = None) -> str:
    """``linux.rootfsPropagation`` for these mounts, checking their sources as moby does (WithMounts):

    * a ``shared``/``rshared`` bind needs its source on a *shared* mount (else nothing could
      propagate back) and makes the root ``shared``;
    * a ``slave``/``rslave`` bind needs a shared or slave source and makes the root ``rslave``
      (unless it is already shared);
    * private binds need nothing: "" (the runtime's default, every mount private).
    """
    root = ""
    mounts = table if table is not None else None
    for p in points:
        mode = p.propagation if p.type == "bind" else ""
        if mode not in ("shared", "rshared", "slave", "rslave"):
            continue
        if mounts is None:
            mounts = rootfs_mod.mountinfo()
        path = p.host_path or p.source
        entry = rootfs_mod.mount_of(path, mounts)
        tags = entry.propagation.split() if entry else []
        shared = any(t.startswith("shared:") for t in tags)
        slave = any(t.startswith("master:") for t in tags)
        where = entry.mountpoint if entry else "/"
        if mode.endswith("shared"):
            if not shared:
                raise ConfigError(f"path {path} is mounted on {where} but it is not a shared mount")
            root = "shared"
        else:
            if not (shared or slave):
                raise ConfigError(f"path {path} is mounted on {where} but it is not a shared or slave mount")
            root = root or "rslave"
    return root
