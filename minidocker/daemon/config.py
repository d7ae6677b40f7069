"""The daemon's record of a container: a Docker API "create" request merged with the image's config.

What this teaches
-----------------
An engine receives a request in its API's vocabulary (docker's ``Config`` + ``HostConfig``: Cmd,
Entrypoint, Env, WorkingDir, Tty, AutoRemove…) and the image brings defaults of its own (the OCI
image config: Cmd, Entrypoint, Env, WorkingDir, User). They are merged once, here, into
:class:`ContainerConfig`, the daemon's own record (name, labels, image, the merged command…, saved
in ``container.json``); ``specconv.py`` turns it and the HostConfig into the OCI runtime spec, the
only thing the runtime below reads.

Rules followed (docker's): the command is Entrypoint + Cmd, where the request's Entrypoint replaces
the image's *and* clears the image's Cmd; Env is the image's, overridden key by key by the request's;
WorkingDir defaults to the image's, then "/"; the hostname defaults to the first 12 hex digits of the
container id.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
HOSTNAME_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$")
ENV_KEY_RE = re.compile(r"^[^=\x00]+$")

# The namespaces every container gets. "user" is opt-in (as in docker); "net" gives a network
# namespace with only a loopback interface until the networking chapter wires a veth into it.
DEFAULT_NAMESPACES = ("mnt", "uts", "ipc", "pid", "net", "cgroup")


class ConfigError(ValueError):
    """A request that cannot become a container; the message is shown to the user as is."""


@dataclass
class ContainerConfig:
    id: str
    name: str
    image_id: str
    image_ref: str
    argv: list[str]
    env: list[str]
    working_dir: str = "/"
    user: str = ""
    hostname: str = ""
    domainname: str = ""
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False
    init: bool = False
    auto_remove: bool = False
    readonly_rootfs: bool = False
    namespaces: list[str] = field(default_factory=lambda: list(DEFAULT_NAMESPACES))
    labels: dict[str, str] = field(default_factory=dict)
    # Storage: the image's extracted layers (top-most first, overlay's order) and this container's
    # writable layer. The monitor turns these into an overlay mount inside the container's own mount
    # namespace, so the mount vanishes with the container and never shows on the host.
    lowerdirs: list[str] = field(default_factory=list)
    upperdir: str = ""
    workdir: str = ""
    # The snapshotter's answer (unionfs.py): the mounts that make the rootfs, as rootfs.Mount dicts
    # with an empty target, and which storage driver made them. Preferred over lowerdirs when set.
    rootfs_mounts: list[dict] = field(default_factory=list)
    storage_driver: str = ""
    # Volumes, binds and tmpfs mounts (volumes.MountPoint dicts, resolved: daemon/volumes.resolve).
    volume_mounts: list[dict] = field(default_factory=list)
    stop_signal: str = "SIGTERM"
    # Control groups (the cgroups chapter): validated limits (cgroups.Limits as a dict) and the
    # parent group, so that the cgroup is <hierarchy>/<cgroup_parent>/<id>.
    resources: dict = field(default_factory=dict)
    cgroup_parent: str = "minidocker"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ContainerConfig":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def validate_name(name: str) -> str:
    """Docker's container-name rule; returns the name without a leading '/'."""
    if not NAME_RE.match(name):
        raise ConfigError(f'Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
    return name.lstrip("/")


def merge_env(image_env: list[str], request_env: list[str] | None) -> list[str]:
    """Image env first, then the request's, a later KEY replacing an earlier one in place. Entries
    are kept as given: a bare ``FOO`` stays ``FOO`` in ``Config.Env`` (docker shows it so); it means
    "unset FOO" for the process (:func:`process_env`)."""
    values: dict[str, str] = {}
    for item in list(image_env or []) + list(request_env or []):
        if not isinstance(item, str):
            raise ConfigError(f"invalid environment variable: {item!r}")
        key = item.partition("=")[0]
        if not key or not ENV_KEY_RE.match(key):
            raise ConfigError(f"invalid environment variable: {item!r}")
        values[key] = item  # a dict keeps the first insertion's place
    return list(values.values())


def process_env(env: list[str], defaults: list[str] = ()) -> list[str]:
    """The environment a process gets: ``env`` (the record's) over ``defaults`` (HOSTNAME, TERM...),
    where a bare ``FOO`` removes FOO (moby's ReplaceOrAppendEnvValues)."""
    named = {e.partition("=")[0] for e in env}
    return [e for e in env if "=" in e] + [d for d in defaults if d.partition("=")[0] not in named]


def _as_list(v, what: str) -> list[str] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return [v]
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return v
    raise ConfigError(f"{what} must be a list of strings, got {v!r}")


def command_line(image_config: dict, entrypoint, cmd) -> list[str]:
    """Entrypoint + Cmd as docker computes them. A request's Entrypoint resets the image's Cmd."""
    img = image_config or {}
    req_ep = _as_list(entrypoint, "Entrypoint")
    req_cmd = _as_list(cmd, "Cmd")
    if req_ep is not None:
        ep = req_ep
        # An explicitly empty entrypoint ([""] from `--entrypoint ""`) means "no entrypoint".
        if ep == [""]:
            ep = []
        c = req_cmd if req_cmd is not None else []
    else:
        ep = list(img.get("Entrypoint") or [])
        c = req_cmd if req_cmd else list(img.get("Cmd") or [])
    argv = ep + c
    if not argv:
        raise ConfigError("No command specified")
    return argv


def from_create_request(body: dict, *, cid: str, name: str, image_id: str, image_ref: str,
                        image_config: dict, lowerdirs: list[str], upperdir: str, workdir: str,
                        cgroup_parent: str = "minidocker", warnings: list[str] | None = None) -> ContainerConfig:
    """Docker's ContainerCreate body + the image's config -> :class:`ContainerConfig`.
    Docker-style warnings (limits this host cannot enforce) are appended to ``warnings``."""
    if not isinstance(body, dict):
        raise ConfigError("invalid JSON: the request body must be an object")
    host = body.get("HostConfig") or {}
    img = image_config or {}
    argv = command_line(img, body.get("Entrypoint"), body.get("Cmd"))
    env = merge_env(img.get("Env") or [], _as_list(body.get("Env"), "Env"))
    wd = body.get("WorkingDir") or img.get("WorkingDir") or "/"
    if not wd.startswith("/"):
        raise ConfigError(f"the working directory '{wd}' is invalid, it needs to be an absolute path")
    hostname = body.get("Hostname") or cid[:12]
    if len(hostname) > 64 or not HOSTNAME_RE.match(hostname):
        raise ConfigError(f"invalid hostname format: {hostname}")
    namespaces = list(DEFAULT_NAMESPACES)
    if host.get("NetworkMode") == "host":
        namespaces.remove("net")
    if host.get("UTSMode") == "host":
        namespaces.remove("uts")
    if host.get("IpcMode") == "host":
        namespaces.remove("ipc")
    if host.get("PidMode") == "host":
        namespaces.remove("pid")
    if host.get("CgroupnsMode") == "host":
        namespaces.remove("cgroup")
    labels = body.get("Labels") or {}
    if not isinstance(labels, dict):
        raise ConfigError("Labels must be an object of strings")
    resources, limit_warnings = resource_limits(host)
    if warnings is not None:
        warnings.extend(limit_warnings)
    parent = host.get("CgroupParent") or cgroup_parent
    if not isinstance(parent, str) or ".." in parent.split("/") or not parent.strip("/"):
        raise ConfigError(f"invalid CgroupParent {parent!r}: a relative cgroup path without '..'")
    return ContainerConfig(
        id=cid, name=name, image_id=image_id, image_ref=image_ref, argv=argv, env=env,
        working_dir=wd, user=body.get("User") or img.get("User") or "",
        hostname=hostname, domainname=body.get("Domainname") or "",
        tty=bool(body.get("Tty")), open_stdin=bool(body.get("OpenStdin")),
        stdin_once=bool(body.get("StdinOnce")), init=bool(host.get("Init")),
        auto_remove=bool(host.get("AutoRemove")), readonly_rootfs=bool(host.get("ReadonlyRootfs")),
        namespaces=namespaces, labels={str(k): str(v) for k, v in labels.items()},
        lowerdirs=lowerdirs, upperdir=upperdir, workdir=workdir,
        stop_signal=body.get("StopSignal") or img.get("StopSignal") or "SIGTERM",
        resources=resources, cgroup_parent=parent.strip("/"),
    )


def resource_limits(host: dict) -> tuple[dict, list[str]]:
    """HostConfig's Memory, NanoCpus, PidsLimit… -> validated limits + warnings (cgroups chapter)."""
    from ..cgroups.limits import LimitError, parse_host_config
    try:
        limits, warnings = parse_host_config(host)
    except LimitError as e:
        raise ConfigError(str(e)) from None
    return limits.to_dict(), warnings
