"""What users type for mounts (``-v``, ``--mount``, ``--tmpfs``) -> mount points -> OCI ``mounts``.

Three spellings, one model (:class:`MountPoint`), as in moby's ``volume/mounts/linux_parser.go``:

* ``-v SRC:DST[:MODE]`` (``HostConfig.Binds``): SRC absolute = a bind mount of a host path (created
  as a directory when missing, a historical docker behaviour), else a volume name; ``-v DST`` alone
  is an *anonymous* volume. MODE is a comma list of ``ro``/``rw``, ``z``/``Z`` (SELinux relabel:
  accepted and ignored, there is no SELinux here), ``nocopy`` and a propagation mode.
* ``--mount type=…,source=…,target=…`` (``HostConfig.Mounts``, structured: the CLI splits the CSV,
  :func:`parse_mount_flag`): stricter — a missing bind source is an error, never created.
* ``--tmpfs DST[:OPTIONS]`` (``HostConfig.Tmpfs``).

:func:`oci_mounts` writes them as OCI runtime-spec ``mounts`` entries, parents before children
(``/a`` before ``/a/b``: the other order would hide the inner mount), binds ``rbind`` +
the bind's propagation (default ``rprivate``: nothing mounted inside reaches the host or back;
``rshared``/``rslave`` need a shared, or shared-or-slave, source mount: the daemon checks that and
sets ``linux.rootfsPropagation``, daemon/specconv.py), ``ro`` where
asked — the runtime remounts those read-only, and without CAP_SYS_ADMIN the container cannot
remount them read-write.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
DEFAULT_TMPFS_OPTIONS = ["nosuid", "nodev", "noexec"]   # docker's for --tmpfs and type=tmpfs


class MountError(ValueError):
    """A mount that cannot be made as asked; the message is docker's where docker has one."""


@dataclass
class MountPoint:
    type: str                      # "bind" | "volume" | "tmpfs"
    destination: str
    source: str = ""               # bind: host path; volume: name ("" = anonymous, named at create)
    rw: bool = True
    mode: str = ""                 # -v's mode string, as inspect shows it
    propagation: str = ""          # bind only ("" = rprivate)
    nocopy: bool = False           # volume: no copy-up of the image's content
    driver: str = "local"
    volume_options: dict = field(default_factory=dict)
    volume_labels: dict = field(default_factory=dict)
    tmpfs_options: list = field(default_factory=list)
    create_source: bool = False    # -v of a missing host path: docker makes the directory
    host_path: str = ""            # resolved: what is bind-mounted (a volume's _data)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MountPoint":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def api(self) -> dict:
        """The container inspect ``Mounts`` entry (MountPoint in the Engine API)."""
        out = {"Type": self.type, "Source": self.host_path or self.source, "Destination": self.destination,
               "Mode": self.mode, "RW": self.rw, "Propagation": self.propagation if self.type == "bind" else ""}
        if self.type == "bind" and not out["Propagation"]:
            out["Propagation"] = "rprivate"
        if self.type == "volume":
            out.update(Name=self.source, Driver=self.driver)
        if self.type == "tmpfs":
            out["Source"] = ""
        return out


def _config_error(kind: str, why: str) -> MountError:
    return MountError(f'invalid mount config for type "{kind}": {why}')


def _check_target(kind: str, target: str) -> str:
    if not target:
        raise _config_error(kind, "field Target must not be empty")
    if not target.startswith("/"):
        raise _config_error(kind, f"invalid mount path: '{target}' mount path must be absolute")
    clean = os.path.normpath(target)
    if clean == "/":
        raise _config_error(kind, "invalid specification: destination can't be '/'")
    return clean


def _check_propagation(kind: str, mode: str) -> str:
    if mode and mode not in PROPAGATIONS:
        raise _config_error(kind, f"invalid propagation mode: {mode}")
    return mode


def parse_bind(spec: str) -> MountPoint:
    """One ``-v`` / ``HostConfig.Binds`` entry."""
    parts = spec.split(":")
    if not spec or len(parts) > 3 or any(p == "" for p in parts):
        raise MountError(f"invalid volume specification: '{spec}'")
    if len(parts) == 1:
        src, dst, mode = "", parts[0], ""
    elif len(parts) == 2:
        src, dst, mode = parts[0], parts[1], ""
    else:
        src, dst, mode = parts
    kind = "bind" if src.startswith("/") else "volume"
    try:
        dst = _check_target(kind, dst)
    except MountError as e:
        raise MountError(f"invalid volume specification: '{spec}': {e}") from None
    mp = MountPoint(type=kind, destination=dst, source=os.path.normpath(src) if kind == "bind" else src,
                    mode=mode, create_source=kind == "bind")
    for m in mode.split(",") if mode else []:
        if m in ("ro", "rw"):
            mp.rw = m == "rw"
        elif m in ("z", "Z"):
            continue
        elif m == "nocopy" and kind == "volume":
            mp.nocopy = True
        elif m in PROPAGATIONS and kind == "bind":
            mp.propagation = _check_propagation(kind, m)
        else:
            raise MountError(f"invalid mode: {mode}")
    if kind == "volume" and src:
        check_volume_name(src)
    return mp


def check_volume_name(name: str) -> None:
    import re
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):   # one character too (store.py)
        raise MountError(f'create {name}: "{name}" includes invalid characters for a local volume name, '
                         'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                         "directory, use absolute path")


def parse_mount(m: dict) -> MountPoint:
    """One ``HostConfig.Mounts`` entry (the API's Mount object)."""
    kind = m.get("Type") or ""
    if kind not in ("bind", "volume", "tmpfs"):
        raise _config_error(kind, "mount type unknown")
    dst = _check_target(kind, m.get("Target") or "")
    src = m.get("Source") or ""
    ro = bool(m.get("ReadOnly"))
    bind_opts, vol_opts, tmpfs_opts = m.get("BindOptions"), m.get("VolumeOptions"), m.get("TmpfsOptions")
    if kind != "bind" and bind_opts:
        raise _config_error(kind, "field BindOptions must not be specified")
    if kind != "volume" and vol_opts:
        raise _config_error(kind, "field VolumeOptions must not be specified")
    if kind != "tmpfs" and tmpfs_opts:
        raise _config_error(kind, "field TmpfsOptions must not be specified")
    if kind == "bind":
        if not src:
            raise _config_error(kind, "field Source must not be empty")
        if not src.startswith("/"):
            raise _config_error(kind, f"invalid mount path: '{src}' mount path must be absolute")
        if not os.path.exists(src):
            raise _config_error(kind, f"bind source path does not exist: {src}")
        bind_opts = bind_opts or {}
        for key in ("NonRecursive", "ReadOnlyNonRecursive", "ReadOnlyForceRecursive", "CreateMountpoint"):
            if bind_opts.get(key):
                raise MountError(f"BindOptions.{key} is not supported by minidocker yet")
        return MountPoint(type="bind", destination=dst, source=os.path.normpath(src), rw=not ro,
                          propagation=_check_propagation(kind, bind_opts.get("Propagation") or ""))
    if kind == "tmpfs":
        if src:
            raise _config_error(kind, "field Source must not be specified")
        opts = []
        t = tmpfs_opts or {}
        if t.get("SizeBytes"):
            if int(t["SizeBytes"]) < 0:
                raise _config_error(kind, f"invalid tmpfs size: {t['SizeBytes']}")
            opts.append(f"size={int(t['SizeBytes'])}")
        if t.get("Mode"):
            opts.append(f"mode={int(t['Mode']) & 0o7777:o}")
        for o in t.get("Options") or []:
            opts.append("=".join(o) if isinstance(o, list) else str(o))
        return MountPoint(type="tmpfs", destination=dst, rw=not ro, tmpfs_options=opts)
    vol = vol_opts or {}
    if vol.get("Subpath"):
        raise MountError("VolumeOptions.Subpath is not supported by minidocker yet")
    driver_cfg = vol.get("DriverConfig") or {}
    if src:
        check_volume_name(src)
    return MountPoint(type="volume", destination=dst, source=src, rw=not ro, nocopy=bool(vol.get("NoCopy")),
                      driver=driver_cfg.get("Name") or "local", volume_options=dict(driver_cfg.get("Options") or {}),
                      volume_labels=dict(vol.get("Labels") or {}))


def parse_tmpfs(path: str, options: str) -> MountPoint:
    """One ``HostConfig.Tmpfs`` entry: path -> "opt,opt=value" (``--tmpfs /run:size=64m``)."""
    dst = _check_target("tmpfs", path)
    opts = [o for o in (options or "").split(",") if o]
    rw = "ro" not in opts
    return MountPoint(type="tmpfs", destination=dst, rw=rw, tmpfs_options=[o for o in opts if o not in ("ro", "rw")])


def parse_mount_flag(text: str) -> dict:
    """The CLI's ``--mount`` CSV -> an API Mount object (the docker CLI does this on the client)."""
    m: dict = {"Type": "volume"}
    for field_ in [f for f in text.split(",") if f]:
        key, eq, value = field_.partition("=")
        key = key.strip().lower()
        boolean = value.lower() in ("", "1", "true") if key in ("readonly", "ro", "volume-nocopy") else None
        if not eq and key not in ("readonly", "ro", "volume-nocopy", "bind-nonrecursive"):
            raise MountError(f"invalid field '{field_}' must be a key=value pair")
        if key == "type":
            m["Type"] = value
        elif key in ("source", "src"):
            m["Source"] = value
        elif key in ("target", "destination", "dst"):
            m["Target"] = value
        elif key in ("readonly", "ro"):
            m["ReadOnly"] = boolean
        elif key == "bind-propagation":
            m.setdefault("BindOptions", {})["Propagation"] = value
        elif key == "volume-nocopy":
            m.setdefault("VolumeOptions", {})["NoCopy"] = boolean
        elif key == "volume-label":
            k, _, v = value.partition("=")
            m.setdefault("VolumeOptions", {}).setdefault("Labels", {})[k] = v
        elif key == "volume-driver":
            m.setdefault("VolumeOptions", {}).setdefault("DriverConfig", {})["Name"] = value
        elif key == "volume-opt":
            k, _, v = value.partition("=")
            cfg = m.setdefault("VolumeOptions", {}).setdefault("DriverConfig", {})
            cfg.setdefault("Options", {})[k] = v
        elif key == "tmpfs-size":
            m.setdefault("TmpfsOptions", {})["SizeBytes"] = parse_size(value)
        elif key == "tmpfs-mode":
            m.setdefault("TmpfsOptions", {})["Mode"] = int(value, 8)
        else:
            raise MountError(f"unexpected key '{key}' in '{field_}'")
    return m


def parse_size(text: str) -> int:
    """``64m`` -> bytes (docker's RAMInBytes: binary units)."""
    units = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower().rstrip("ib") if text.lower().endswith(("ib", "kb", "mb", "gb")) else text.strip().lower()
    num = t.rstrip("kmgtb")
    try:
        return int(float(num) * units[t[len(num):]])
    except (ValueError, KeyError):
        raise MountError(f"invalid size: '{text}'") from None


def check_duplicates(points: list[MountPoint]) -> None:
    seen: set[str] = set()
    for p in points:
        if p.destination in seen:
            raise MountError(f"Duplicate mount point: {p.destination}")
        seen.add(p.destination)


def oci_mounts(points: list[MountPoint]) -> list[dict]:
    """OCI runtime-spec ``mounts`` entries, parents first (fewer path components first, stable)."""
    out = []
    for p in sorted(points, key=lambda p: p.destination.rstrip("/").count("/")):
        ro = [] if p.rw else ["ro"]
        if p.type == "tmpfs":
            out.append({"destination": p.destination, "type": "tmpfs", "source": "tmpfs",
                        "options": DEFAULT_TMPFS_OPTIONS + list(p.tmpfs_options) + ro})
        else:
            out.append({"destination": p.destination, "type": "bind", "source": p.host_path or p.source,
                        "options": ["rbind", p.propagation or "rprivate"] + ro})
    return out
