"""CLI of the volumes chapter: ``minidocker volume create|ls|inspect|rm|prune`` and the run flags
``-v``, ``--mount``, ``--tmpfs``, ``--volumes-from`` -> HostConfig (flag parsing only; the daemon
validates and mounts: daemon/volumes.py, daemon/api_volumes.py).

    minidocker volume create --label team=a -o type=tmpfs -o device=tmpfs -o o=size=64m scratch
    minidocker run --rm -v data:/data -v "$PWD":/src:ro --tmpfs /run:size=8m busybox ls /data
    minidocker run --mount type=bind,source=/srv,target=/srv,readonly busybox ls /srv
"""
from __future__ import annotations

import json
import os


def run_flags(p) -> None:
    p.add_argument("-v", "--volume", action="append", default=[],
                   help="bind mount a host path or a volume: [SRC:]DST[:ro|rw|nocopy|z|Z]")
    p.add_argument("--mount", action="append", default=[],
                   help="attach a filesystem mount: type=volume|bind|tmpfs,source=…,target=…[,readonly]")
    p.add_argument("--tmpfs", action="append", default=[], help="mount a tmpfs: /path[:size=64m,mode=1777]")
    p.add_argument("--volumes-from", action="append", default=[], help="mount the volumes of CONTAINER[:ro|rw]")


def host_config(a) -> dict:
    """The flags given -> HostConfig fields. Like the docker CLI: ``-v`` sources that are relative
    paths (``./x``, ``.``) become absolute here, ``--mount`` is split into its structured form."""
    hc: dict = {}
    binds = []
    for v in getattr(a, "volume", None) or []:
        src, sep, rest = v.partition(":")
        if sep and (src.startswith(".") or src == "~"):
            src = os.path.abspath(os.path.expanduser(src))
        binds.append(src + sep + rest)
    if binds:
        hc["Binds"] = binds
    if getattr(a, "tmpfs", None):
        hc["Tmpfs"] = {t.partition(":")[0]: t.partition(":")[2] for t in a.tmpfs}
    if getattr(a, "mount", None):
        # The chapter's parser (docker's validation, one copy): imported only when --mount is given,
        # since importing the volumes package loads its store too (~40 ms, paid by every `run`).
        from ..volumes.spec import MountError, parse_mount_flag
        try:
            hc["Mounts"] = [parse_mount_flag(m) for m in a.mount]
        except MountError as e:
            raise SystemExit(f"invalid argument for --mount: {e}")
    if getattr(a, "volumes_from", None):
        hc["VolumesFrom"] = list(a.volumes_from)
    return hc


def _kv(items, what: str) -> dict:
    out = {}
    for item in items or []:
        k, eq, v = item.partition("=")
        if not eq and what == "opt":
            raise SystemExit(f"invalid argument \"{item}\" for \"-o, --opt\" flag: opt must be KEY=VALUE")
        out[k] = v
    return out


def cmd_create(c, a) -> int:
    if a.name and a.name_arg and a.name != a.name_arg:
        raise SystemExit(f"conflicting options: either specify --name or provide positional arg, not both")
    body = {"Name": a.name or a.name_arg or "", "Driver": a.driver, "DriverOpts": _kv(a.opt, "opt"),
            "Labels": _kv(a.label, "label")}
    print(c.request("POST", "/volumes/create", body=body).check().json()["Name"])
    return 0


def _filters(items) -> dict:
    out: dict = {}
    for f in items or []:
        k, _, v = f.partition("=")
        out.setdefault(k, []).append(v)
    return out


def cmd_ls(c, a) -> int:
    q = {"filters": json.dumps(_filters(a.filter))} if a.filter else None
    vols = c.request("GET", "/volumes", query=q).check().json()["Volumes"] or []
    if a.quiet:
        for v in vols:
            print(v["Name"])
        return 0
    print(f"{'DRIVER':<16}VOLUME NAME")
    for v in vols:
        print(f"{v['Driver']:<16}{v['Name']}")
    return 0


def cmd_inspect(c, a) -> int:
    out = [c.request("GET", f"/volumes/{n}").check().json() for n in a.volumes]
    print(json.dumps(out, indent=4))
    return 0


def cmd_rm(c, a) -> int:
    rc = 0
    for n in a.volumes:
        r = c.request("DELETE", f"/volumes/{n}", query={"force": "1"} if a.force else None)
        if r.status >= 400:
            print(f"Error response from daemon: {(r.json() or {}).get('message', r.status)}", file=__import__("sys").stderr)
            rc = 1
        else:
            print(n)
    return rc


def cmd_prune(c, a) -> int:
    filters = _filters(a.filter)
    if a.all:
        filters["all"] = ["true"]
    q = {"filters": json.dumps(filters)} if filters else None
    out = c.request("POST", "/volumes/prune", query=q).check().json()
    deleted = out.get("VolumesDeleted") or []
    if deleted:
        print("Deleted Volumes:")
        for n in deleted:
            print(n)
        print()
    print(f"Total reclaimed space: {out.get('SpaceReclaimed', 0)}B")
    return 0


def add_volume(sub, verb: str) -> None:
    v = sub.add_parser(verb, help="manage volumes")
    vs = v.add_subparsers(dest="volume_verb", metavar="COMMAND")
    cr = vs.add_parser("create", help="create a volume")
    cr.add_argument("name_arg", nargs="?", metavar="VOLUME")
    cr.add_argument("--name")
    cr.add_argument("-d", "--driver", default="local")
    cr.add_argument("-o", "--opt", action="append", default=[], help="driver options: type=, device=, o=")
    cr.add_argument("--label", action="append", default=[])
    cr.set_defaults(fn=cmd_create)
    ls = vs.add_parser("ls", help="list volumes")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("-f", "--filter", action="append", default=[], help="dangling=true, name=, label=, driver=")
    ls.set_defaults(fn=cmd_ls)
    ins = vs.add_parser("inspect", help="display detailed information on volumes")
    ins.add_argument("volumes", nargs="+")
    ins.set_defaults(fn=cmd_inspect)
    rm = vs.add_parser("rm", help="remove volumes")
    rm.add_argument("-f", "--force", action="store_true")
    rm.add_argument("volumes", nargs="+")
    rm.set_defaults(fn=cmd_rm)
    pr = vs.add_parser("prune", help="remove unused anonymous volumes (-a: all unused volumes)")
    pr.add_argument("-a", "--all", action="store_true")
    pr.add_argument("-f", "--force", action="store_true", help="(accepted: minidocker does not prompt)")
    pr.add_argument("--filter", action="append", default=[])
    pr.set_defaults(fn=cmd_prune)
    v.set_defaults(fn=lambda c, a: (v.print_help(), 0)[1])   # `minidocker volume`: its own help, as docker
