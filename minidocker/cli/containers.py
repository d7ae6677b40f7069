"""Container verbs of the CLI (all but run/create/start, exec and attach): ps, inspect, logs, rm,
stop, kill, wait, restart, rename, top, cp, events, container prune, system df.

Each is the request sequence the docker CLI sends (see shared/notes/docker-engine-api-clients.md),
mostly one request per container named: ``rm`` = ``DELETE /containers/ID``, ``stop`` = ``POST
/containers/ID/stop?t=…``, ``wait`` = ``POST /containers/ID/wait`` (the body arrives at the exit);
``ps`` = ``GET /containers/json`` printed through docker's ``--format`` columns (:func:`ps_row`);
``logs`` demultiplexes the 8-byte frames unless the container has a TTY; ``cp`` =
``HEAD``/``GET``/``PUT /containers/ID/archive`` with a tar body, built and unpacked here with the
standard library's tarfile. Standard library only, like the rest of the CLI.
"""
from __future__ import annotations

import base64
import io
import json
import os
import sys
import time

from ..units import ago
from .client import APIError, Client, read_frames
from .output import print_inspected, short
from .signals import exit_on_interrupt


def parse_filters(items) -> str | None:
    filters: dict = {}
    for f in items or []:
        k, _, v = f.partition("=")
        filters.setdefault(k, {})[v] = True
    return json.dumps(filters) if filters else None


def timestamp(value: str | None) -> str | None:
    """docker's --since/--until: a unix time, an RFC 3339 time, or a duration ago (10s, 5m, 1h)."""
    if not value:
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    if value[-1] in units and value[:-1].replace(".", "", 1).isdigit():
        return f"{time.time() - float(value[:-1]) * units[value[-1]]:.9f}"
    if value.replace(".", "", 1).isdigit():
        return value
    import datetime
    t = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return f"{t.timestamp():.9f}"


# ---- one request per container --------------------------------------------------------------------
def for_each(c, refs, method, path, query=None, quiet=False):
    """The request for each container named; errors are printed and make the exit code 1 (as docker)."""
    rc = 0
    for ref in refs:
        r = c.request(method, path.format(ref), query=query)
        if r.status >= 400:
            print(f"Error response from daemon: {APIError.from_body(r.status, r.body).message}", file=sys.stderr)
            rc = 1
        elif not quiet:
            print(ref)
    return rc


def cmd_rm(c, a):
    return for_each(c, a.containers, "DELETE", "/containers/{}", {"force": a.force, "v": a.volumes})


def cmd_stop(c, a):
    q = {"t": a.time} if a.time is not None else {}
    if a.signal:
        q["signal"] = a.signal
    return for_each(c, a.containers, "POST", "/containers/{}/stop", q)


def cmd_kill(c, a):
    return for_each(c, a.containers, "POST", "/containers/{}/kill", {"signal": a.signal})


def cmd_wait(c, a):
    rc = 0
    for ref in a.containers:
        body = b"".join(Client(c.host).open_stream("POST", f"/containers/{ref}/wait"))
        print(json.loads(body).get("StatusCode"))
    return rc


# ---- ps, inspect, logs --------------------------------------------------------------------------
def cmd_ps(c, a):
    from .output import listing
    q = {"all": a.all or None, "limit": a.last if a.last else None, "filters": parse_filters(a.filter)}
    if a.latest:
        q["limit"] = 1
    items = c.request("GET", "/containers/json", query=q).check().json()
    if a.quiet:
        for it in items:
            print(it["Id"] if a.no_trunc else short(it["Id"]))
        return 0
    sys.stdout.write(listing(a.format or "table", [ps_row(it, not a.no_trunc) for it in items], PS_HEADERS, PS_TABLE))
    return 0


PS_TABLE = "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
              "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
              "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
              "LocalVolumes": "LOCAL VOLUMES", "Platform": "PLATFORM", "Label": lambda name: name}


def ps_row(it: dict, trunc: bool = True):
    """A container as docker's ``ps --format`` sees it (cli/command/formatter/container.go): the
    columns {{.ID}}, {{.Names}}, {{.Status}}..., and the method {{.Label "key"}}."""
    from ..units import human_size
    from .gotemplate import Row
    from .networks import format_ports
    names = [n.lstrip("/") for n in it.get("Names") or []]
    if trunc:  # the container's own name, not the legacy link names (a/b)
        names = next(([n] for n in names if "/" not in n), names)
    command = it.get("Command", "")
    if trunc and len(command) > 20:
        command = command[:19] + "…"
    labels = it.get("Labels") or {}
    ports = format_ports(it.get("Ports"))
    size = human_size(it.get("SizeRw") or 0)
    if it.get("SizeRootFs"):
        size += f" (virtual {human_size(it['SizeRootFs'])})"
    mounts = it.get("Mounts") or []
    return Row({
        "Command": json.dumps(command, ensure_ascii=False),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(it["Created"])),
        "ID": short(it["Id"]) if trunc else it["Id"], "Image": it.get("Image", ""),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "LocalVolumes": str(sum(1 for m in mounts if m.get("Driver") == "local")),
        "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in mounts),
        "Names": ",".join(names),
        "Networks": ",".join(sorted(((it.get("NetworkSettings") or {}).get("Networks") or {}))),
        "Platform": None, "Ports": ports, "RunningFor": ago(it["Created"]), "Size": size,
        "State": it.get("State", ""), "Status": it.get("Status", ""),
        "Label": lambda name: labels.get(name, ""),
    })


def cmd_inspect(c, a):
    """Top-level ``inspect``: each name tried as a container, then as an image (unless --type)."""
    out, rc = [], 0
    for ref in a.objects:
        found = None
        kinds = [a.type] if a.type else ["container", "image"]
        for kind in kinds:
            path = f"/containers/{ref}/json" if kind == "container" else f"/images/{ref}/json"
            r = c.request("GET", path)
            if r.status == 200:
                found = r.json()
                break
        if found is None:
            print(f"Error: No such object: {ref}", file=sys.stderr)
            rc = 1
            continue
        out.append(found)
    print_inspected(out, a.format)
    return rc


def cmd_logs(c, a):
    info = c.request("GET", f"/containers/{a.container}/json").check().json()
    q = {"stdout": True, "stderr": True, "follow": a.follow or None, "timestamps": a.timestamps or None,
         "tail": a.tail, "since": timestamp(a.since), "until": timestamp(a.until)}
    if a.follow:
        exit_on_interrupt()
    s = c.open_stream("GET", f"/containers/{a.container}/logs", query=q)
    if info["Config"]["Tty"]:
        for chunk in s:
            os.write(1, chunk)
    else:
        for stream, payload in read_frames(s.read):
            os.write(2 if stream == 2 else 1, payload)
    return 0


# ---- simple verbs -------------------------------------------------------------------------------
def cmd_restart(c: Client, a) -> int:
    q = {"t": a.time} if a.time is not None else {}
    if a.signal:
        q["signal"] = a.signal
    return for_each(c, a.containers, "POST", "/containers/{}/restart", q)


def cmd_rename(c: Client, a) -> int:
    c.request("POST", f"/containers/{a.container}/rename", query={"name": a.new_name}).check()
    return 0


def cmd_top(c: Client, a) -> int:
    from .output import table
    r = c.request("GET", f"/containers/{a.container}/top").check().json()
    print(table(r["Processes"], r["Titles"]))
    return 0


def cmd_container_prune(c: Client, a) -> int:
    from ..units import human_size
    if not a.force:
        sys.stdout.write("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    r = c.request("POST", "/containers/prune", query={"filters": parse_filters(a.filter)}).check().json()
    if r.get("ContainersDeleted"):
        print("Deleted Containers:")
        for cid in r["ContainersDeleted"]:
            print(cid)
        print()
    print(f"Total reclaimed space: {human_size(r.get('SpaceReclaimed') or 0)}")
    return 0


# ---- cp -----------------------------------------------------------------------------------------
def split_spec(spec: str) -> tuple[str | None, str]:
    """``web:/etc/hostname`` -> ("web", "/etc/hostname"); a local path -> (None, path)."""
    if ":" in spec and not spec.startswith(("/", ".")):
        name, _, path = spec.partition(":")
        return name, path
    return None, spec


def cmd_cp(c: Client, a) -> int:
    import tarfile
    src_c, src = split_spec(a.src)
    dst_c, dst = split_spec(a.dst)
    if (src_c is None) == (dst_c is None):
        raise APIError(400, "copying between containers is not supported; one side must be CONTAINER:PATH")
    if src_c is not None:  # container -> host
        r = c.request("GET", f"/containers/{src_c}/archive", query={"path": src}).check()
        st = json.loads(base64.b64decode(r.headers.get("X-Docker-Container-Path-Stat", "e30=")))
        with tarfile.open(fileobj=io.BytesIO(r.body), mode="r|*") as tar:
            into, rename = (dst, None) if os.path.isdir(dst) else (os.path.dirname(dst) or ".", os.path.basename(dst))
            for m in tar:
                if rename:  # the top-level name becomes the destination's name
                    m.name = rename + m.name[len(st.get("name", m.name)):]
                tar.extract(m, into, filter="tar")
        return 0
    # host -> container: a tar of the source, named as it should land in the target directory.
    if not os.path.lexists(src):
        raise APIError(400, f"no such file or directory: {src}")
    head = c.request("HEAD", f"/containers/{dst_c}/archive", query={"path": dst})
    if head.status == 200:
        st = json.loads(base64.b64decode(head.headers.get("X-Docker-Container-Path-Stat", "e30=")))
        is_dir = bool(st.get("mode", 0) & (1 << 31))
        into, name = (dst, os.path.basename(os.path.normpath(src))) if is_dir else \
            (os.path.dirname(dst) or "/", os.path.basename(dst))
    elif head.status == 404 and not dst.endswith("/"):
        into, name = os.path.dirname(dst) or "/", os.path.basename(dst)
    else:
        raise APIError(head.status, f"Could not find the file {dst} in container {dst_c}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(src, arcname=name)
    c.request("PUT", f"/containers/{dst_c}/archive", query={"path": into}, body=buf.getvalue(),
              headers={"Content-Type": "application/x-tar"}).check()
    return 0


# ---- the parsers (one function per verb, or per family of alike verbs) ----------------------------
_ONE_REQUEST = {"rm": (cmd_rm, "remove containers"), "stop": (cmd_stop, "stop containers"),
                "kill": (cmd_kill, "kill containers"), "wait": (cmd_wait, "wait for containers")}


def add_one_request(sub, verb: str) -> None:
    """rm, stop, kill, wait: CONTAINER... and a flag or two."""
    fn, helptext = _ONE_REQUEST[verb]
    x = sub.add_parser(verb, help=helptext)
    x.add_argument("containers", nargs="+")
    if verb == "rm":
        x.add_argument("-f", "--force", action="store_true")
        x.add_argument("-v", "--volumes", action="store_true")
    if verb == "stop":
        x.add_argument("-t", "--time", "--timeout", type=int)
        x.add_argument("-s", "--signal")
    if verb == "kill":
        x.add_argument("-s", "--signal", default="KILL")
    x.set_defaults(fn=fn)


def add_ps(sub, verb: str) -> None:
    ps = sub.add_parser(verb, help="list containers")
    ps.add_argument("-a", "--all", action="store_true")
    ps.add_argument("-q", "--quiet", action="store_true")
    ps.add_argument("-n", "--last", type=int)
    ps.add_argument("-l", "--latest", action="store_true")
    ps.add_argument("-f", "--filter", action="append")
    ps.add_argument("--format")
    ps.add_argument("--no-trunc", action="store_true")
    ps.set_defaults(fn=cmd_ps)


def add_inspect(sub, verb: str) -> None:
    ins = sub.add_parser(verb, help="low-level information on objects")
    ins.add_argument("-f", "--format")
    ins.add_argument("--type", choices=["container", "image"])
    ins.add_argument("objects", nargs="+")
    ins.set_defaults(fn=cmd_inspect)


def add_logs(sub, verb: str) -> None:
    lg = sub.add_parser(verb, help="fetch a container's logs")
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("-t", "--timestamps", action="store_true")
    lg.add_argument("-n", "--tail", default="all")
    lg.add_argument("--since")
    lg.add_argument("--until")
    lg.add_argument("container")
    lg.set_defaults(fn=cmd_logs)


def add_restart(sub, verb: str) -> None:
    r = sub.add_parser(verb, help="restart containers")
    r.add_argument("-t", "--time", "--timeout", type=int)
    r.add_argument("-s", "--signal")
    r.add_argument("containers", nargs="+")
    r.set_defaults(fn=cmd_restart)


def add_rename(sub, verb: str) -> None:
    rn = sub.add_parser(verb, help="rename a container")
    rn.add_argument("container")
    rn.add_argument("new_name")
    rn.set_defaults(fn=cmd_rename)


def add_top(sub, verb: str) -> None:
    t = sub.add_parser(verb, help="the processes of a container")
    t.add_argument("container")
    t.set_defaults(fn=cmd_top)


def add_cp(sub, verb: str) -> None:
    cp = sub.add_parser(verb, help="copy files between a container and the host (CONTAINER:PATH)")
    cp.add_argument("src")
    cp.add_argument("dst")
    cp.set_defaults(fn=cmd_cp)


def add_container(sub, verb: str) -> None:
    ct = sub.add_parser(verb, help="manage containers (prune)")
    ctsub = ct.add_subparsers(dest="container_verb", required=True)
    pr = ctsub.add_parser("prune", help="remove all stopped containers")
    pr.add_argument("-f", "--force", action="store_true")
    pr.add_argument("--filter", action="append")
    pr.set_defaults(fn=cmd_container_prune)
