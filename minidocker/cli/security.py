"""CLI of the security chapter: docker's security flags -> HostConfig fields (flag parsing only).

``--privileged``, ``--cap-add``/``--cap-drop``, ``--security-opt``, ``--device``,
``--device-cgroup-rule``, ``--group-add``, ``--pid``/``--ipc``/``--uts``, ``--sysctl``, ``--ulimit``.
The daemon validates them (daemon/specconv.py). Like the docker CLI, ``--security-opt
seccomp=FILE`` reads the profile here and sends its contents. (``-v``/``--mount``/``--tmpfs``:
cli/volumes.py.)
"""
from __future__ import annotations

import argparse


def security_opts(p) -> None:
    p.add_argument("--privileged", action="store_true", help="give extended privileges to this container")
    p.add_argument("--cap-add", action="append", default=[], help="add Linux capabilities (NET_ADMIN, CAP_SYS_PTRACE, ALL)")
    p.add_argument("--cap-drop", action="append", default=[], help="drop Linux capabilities")
    p.add_argument("--security-opt", action="append", default=[],
                   help="no-new-privileges[=true|false], seccomp=unconfined, seccomp=PROFILE.json")
    p.add_argument("--device", action="append", default=[], help="add a host device: /dev/x[:/dev/y[:rwm]]")
    p.add_argument("--device-cgroup-rule", action="append", default=[], help="e.g. 'c 1:3 rwm'")
    p.add_argument("--group-add", action="append", default=[], help="additional groups to join")
    p.add_argument("--pid", help="PID namespace to use (host)")
    p.add_argument("--ipc", help="IPC mode to use (host, private, shareable)")
    p.add_argument("--uts", help="UTS namespace to use (host)")
    p.add_argument("--userns", help="user namespace to use (host)")
    p.add_argument("--sysctl", action="append", default=[], help="namespaced kernel parameters: net.ipv4.ip_forward=1")
    p.add_argument("--ulimit", action="append", default=[], help="ulimit options: nofile=1024:2048")
    p.add_argument("--oom-score-adj", type=int, help="tune the OOM killer's preference (-1000 to 1000)")


def parse_device(text: str) -> dict:
    """``/dev/x[:/dev/y[:rwm]]`` (docker's ParseDevice; ``/dev/x:rwm`` too)."""
    parts = text.split(":")
    if len(parts) > 3 or not parts[0]:
        raise argparse.ArgumentTypeError(f"invalid device specification: {text}")
    host, inside, perms = parts[0], parts[0], "rwm"
    if len(parts) == 2:
        if parts[1] and set(parts[1]) <= set("rwm") and not parts[1].startswith("/"):
            perms = parts[1]
        else:
            inside = parts[1]
    elif len(parts) == 3:
        inside, perms = parts[1], parts[2]
    return {"PathOnHost": host, "PathInContainer": inside, "CgroupPermissions": perms}


def parse_ulimit(text: str) -> dict:
    name, sep, values = text.partition("=")
    soft, _, hard = values.partition(":")
    try:
        s = int(soft)
        h = int(hard) if hard else s
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid ulimit argument: {text}") from None
    if not sep:
        raise argparse.ArgumentTypeError(f"invalid ulimit argument: {text}")
    return {"Name": name, "Soft": s, "Hard": h}


def read_security_opts(opts: list[str]) -> list[str]:
    """``seccomp=FILE`` -> ``seccomp=<the file's JSON>`` as the docker CLI sends it."""
    out = []
    for o in opts:
        key, sep, value = o.partition("=")
        if key == "seccomp" and sep and value != "unconfined":
            try:
                with open(value) as f:
                    value = f.read()
            except OSError as e:
                raise SystemExit(f"opening seccomp profile ({value}) failed: {e.strerror}")
            o = f"seccomp={value}"
        out.append(o)
    return out


def host_config(a) -> dict:
    """The flags given -> HostConfig fields (absent flags are not sent)."""
    hc: dict = {}
    if getattr(a, "privileged", False):
        hc["Privileged"] = True
    for key, attr in (("CapAdd", "cap_add"), ("CapDrop", "cap_drop"), ("GroupAdd", "group_add"),
                      ("DeviceCgroupRules", "device_cgroup_rule")):
        if getattr(a, attr, None):
            hc[key] = list(getattr(a, attr))
    if getattr(a, "security_opt", None):
        hc["SecurityOpt"] = read_security_opts(a.security_opt)
    if getattr(a, "device", None):
        try:
            hc["Devices"] = [parse_device(d) for d in a.device]
        except argparse.ArgumentTypeError as e:
            raise SystemExit(str(e))
    for key, attr in (("PidMode", "pid"), ("IpcMode", "ipc"), ("UTSMode", "uts"), ("UsernsMode", "userns")):
        if getattr(a, attr, None):
            hc[key] = getattr(a, attr)
    if getattr(a, "oom_score_adj", None) is not None:
        hc["OomScoreAdj"] = a.oom_score_adj
    if getattr(a, "sysctl", None):
        hc["Sysctls"] = dict(s.partition("=")[::2] for s in a.sysctl)
    if getattr(a, "ulimit", None):
        try:
            hc["Ulimits"] = [parse_ulimit(u) for u in a.ulimit]
        except argparse.ArgumentTypeError as e:
            raise SystemExit(str(e))
    return hc
