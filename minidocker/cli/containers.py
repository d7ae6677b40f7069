"""More verbs of the CLI: exec, attach, restart, rename, top, cp, events, container prune, system df.

Each is the request sequence the docker CLI sends (see shared/notes/docker-engine-api-clients.md):
``exec`` = ``POST /containers/ID/exec`` + ``POST /exec/ID/start`` (hijacked) + ``GET /exec/ID/json``
for the exit code; ``cp`` = ``HEAD``/``GET``/``PUT /containers/ID/archive`` with a tar body, built and
unpacked here with the standard library's tarfile. Standard library only, like the rest of the CLI.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import threading
import time

from .client import APIError, Client, read_frames


def add_verbs(sub) -> None:
    x = sub.add_parser("exec", help="run a command in a running container")
    x.add_argument("-i", "--interactive", action="store_true")
    x.add_argument("-t", "--tty", action="store_true")
    x.add_argument("-d", "--detach", action="store_true")
    x.add_argument("-e", "--env", action="append", default=[])
    x.add_argument("-w", "--workdir")
    x.add_argument("-u", "--user")
    x.add_argument("--privileged", action="store_true", help="give extended privileges to the command")
    x.add_argument("--detach-keys")
    x.add_argument("container")
    x.add_argument("command", nargs=argparse.REMAINDER)
    x.set_defaults(fn=cmd_exec)

    at = sub.add_parser("attach", help="attach to a running container's stdio")
    at.add_argument("--no-stdin", action="store_true")
    at.add_argument("--detach-keys")
    at.add_argument("--sig-proxy", type=_bool_flag, nargs="?", const=True, default=True, metavar="BOOL",
                    help="proxy received signals to the container (default true; --sig-proxy=false)")
    at.add_argument("container")
    at.set_defaults(fn=cmd_attach)

    r = sub.add_parser("restart", help="restart containers")
    r.add_argument("-t", "--time", "--timeout", type=int)
    r.add_argument("-s", "--signal")
    r.add_argument("containers", nargs="+")
    r.set_defaults(fn=cmd_restart)

    rn = sub.add_parser("rename", help="rename a container")
    rn.add_argument("container")
    rn.add_argument("new_name")
    rn.set_defaults(fn=cmd_rename)

    t = sub.add_parser("top", help="the processes of a container")
    t.add_argument("container")
    t.set_defaults(fn=cmd_top)

    cp = sub.add_parser("cp", help="copy files between a container and the host (CONTAINER:PATH)")
    cp.add_argument("src")
    cp.add_argument("dst")
    cp.set_defaults(fn=cmd_cp)

    ev = sub.add_parser("events", help="the daemon's event stream")
    ev.add_argument("--since")
    ev.add_argument("--until")
    ev.add_argument("-f", "--filter", action="append")
    ev.add_argument("--format")
    ev.set_defaults(fn=cmd_events)

    ct = sub.add_parser("container", help="manage containers (prune)")
    ctsub = ct.add_subparsers(dest="container_verb", required=True)
    pr = ctsub.add_parser("prune", help="remove all stopped containers")
    pr.add_argument("-f", "--force", action="store_true")
    pr.add_argument("--filter", action="append")
    pr.set_defaults(fn=cmd_container_prune)

    sy = sub.add_parser("system", help="system-wide information (df, events, info)")
    sysub = sy.add_subparsers(dest="system_verb", required=True)
    df = sysub.add_parser("df", help="disk usage")
    df.add_argument("--format")
    df.set_defaults(fn=cmd_system_df)


def _bool_flag(text: str) -> bool:
    """Go's strconv.ParseBool, as docker's boolean flags take it (--sig-proxy=false)."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


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


# ---- exec and attach ----------------------------------------------------------------------------
def cmd_exec(c: Client, a) -> int:
    from .main import parse_env, raw_terminal, pump_stdin
    body = {"AttachStdin": a.interactive and not a.detach, "AttachStdout": not a.detach,
            "AttachStderr": not a.detach, "Tty": a.tty, "Cmd": a.command, "Env": parse_env(a.env),
            "WorkingDir": a.workdir or "", "User": a.user or "", "DetachKeys": a.detach_keys or "",
            "Privileged": a.privileged}
    if a.tty:
        try:
            sz = os.get_terminal_size(sys.stdout.fileno())
            body["ConsoleSize"] = [sz.lines, sz.columns]
        except OSError:
            pass
    eid = c.request("POST", f"/containers/{a.container}/exec", body=body).check().json()["Id"]
    if a.detach:
        c.request("POST", f"/exec/{eid}/start", body={"Detach": True, "Tty": a.tty}).check()
        return 0
    conn = c.hijack("POST", f"/exec/{eid}/start", body={"Detach": False, "Tty": a.tty,
                                                        "ConsoleSize": body.get("ConsoleSize")})
    restore = raw_terminal() if a.tty and sys.stdin.isatty() else None
    if a.interactive:
        threading.Thread(target=pump_stdin, args=(conn,), daemon=True).start()
    else:
        conn.close_write()
    try:
        copy_output(conn, a.tty)
    finally:
        if restore:
            restore()
        conn.close()
    info = Client(c.host).request("GET", f"/exec/{eid}/json").check().json()
    return int(info.get("ExitCode") or 0)


def copy_output(conn, tty: bool) -> None:
    if tty:
        while True:
            data = conn.read()
            if not data:
                return
            os.write(1, data)
    for stream, payload in read_frames(conn.read):
        os.write(2 if stream == 2 else 1, payload)


def cmd_attach(c: Client, a) -> int:
    from .main import pump_stdin, raw_terminal
    from .signals import exit_on_interrupt, proxy_signals
    info = c.request("GET", f"/containers/{a.container}/json").check().json()
    if not info["State"]["Running"]:
        raise APIError(409, "You cannot attach to a stopped container, start it first")
    tty, stdin = info["Config"]["Tty"], info["Config"]["OpenStdin"] and not a.no_stdin
    q = {"stream": True, "stdout": True, "stderr": True, "stdin": stdin}
    if a.detach_keys:
        q["detachKeys"] = a.detach_keys
    # Registered before attaching (as docker does): the exit code is read from it when the output ends.
    wait = Client(c.host).open_stream("POST", f"/containers/{info['Id']}/wait", query={"condition": "not-running"})
    conn = c.hijack("POST", f"/containers/{a.container}/attach", query=q)
    if a.sig_proxy and not tty:
        proxy_signals(c, info["Id"])  # Ctrl-C goes to the container; we end with its output
    else:
        exit_on_interrupt()           # --sig-proxy=false (or a TTY): Ctrl-C ends the attach, 130
    restore = raw_terminal() if tty and sys.stdin.isatty() else None
    detached = threading.Event()
    if stdin:
        threading.Thread(target=pump_stdin, args=(conn, detached), daemon=True).start()
    else:
        conn.close_write()
    try:
        copy_output(conn, tty)
    finally:
        if restore:
            restore()
        conn.close()
    if detached.is_set() or (stdin and a.detach_keys):  # detached: the container runs on
        wait.close()
        return 0
    try:
        return int(json.loads(b"".join(wait) or b"{}").get("StatusCode", 0))
    except ValueError:
        return 0


# ---- simple verbs -------------------------------------------------------------------------------
def cmd_restart(c: Client, a) -> int:
    from .main import for_each
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


def cmd_events(c: Client, a) -> int:
    from .gotemplate import Template
    from .signals import exit_on_interrupt
    tmpl = Template("{{json .}}" if a.format == "json" else a.format) if a.format else None
    q = {"since": timestamp(a.since), "until": timestamp(a.until), "filters": parse_filters(a.filter)}
    exit_on_interrupt()  # Ctrl-C: exit 130 at once, as docker does
    for e in c.stream("GET", "/events", query=q):
        if tmpl:
            print(tmpl.execute(e), flush=True)
            continue
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(e["timeNano"] // 10**9))
        attrs = ", ".join(f"{k}={v}" for k, v in sorted(e["Actor"]["Attributes"].items()))
        print(f"{t}.{e['timeNano'] % 10**9:09d}Z {e['Type']} {e['Action']} {e['Actor']['ID']} ({attrs})",
              flush=True)
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


DF_HEADERS = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE",
              "Reclaimable": "RECLAIMABLE"}
DF_TABLE = "{{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"


def cmd_system_df(c: Client, a) -> int:
    from ..units import human_size
    from .output import Row, listing
    d = c.request("GET", "/system/df").check().json()
    images, cs = d.get("Images") or [], d.get("Containers") or []
    img_size = sum(i["Size"] for i in images)
    img_unused = sum(i["Size"] for i in images if not i.get("Containers"))
    c_size = sum(x.get("SizeRw", 0) for x in cs)
    c_reclaim = sum(x.get("SizeRw", 0) for x in cs if x["State"] != "running")

    def reclaimable(part: int, whole: int) -> str:  # docker adds the share only when there is a whole
        return f"{human_size(part)} ({round(100 * part / whole)}%)" if whole else human_size(part)

    rows = [["Images", str(len(images)), str(sum(1 for i in images if i.get("Containers"))),
             human_size(img_size), reclaimable(img_unused, img_size)],
            ["Containers", str(len(cs)), str(sum(1 for x in cs if x["State"] == "running")),
             human_size(c_size), reclaimable(c_reclaim, c_size)],
            ["Local Volumes", "0", "0", "0B", "0B"], ["Build Cache", "0", "0", "0B", "0B"]]
    sys.stdout.write(listing(a.format or "table", [Row(zip(DF_HEADERS, r)) for r in rows], DF_HEADERS, DF_TABLE))
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
