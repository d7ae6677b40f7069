"""minidocker: the command-line client. It speaks the Docker Engine API to minidockerd — nothing else.

What this teaches
-----------------
``docker run`` is not one request but a small choreography, and the order matters:

1. ``POST /containers/create``            -> the daemon records a container (state "created");
   a 404 "No such image" makes the client pull, then create again;
2. ``POST /containers/ID/attach`` (hijack) -> a raw two-way stream, opened *before* start so the
   first byte of output cannot be missed;
3. ``POST /containers/ID/wait?condition=next-exit`` (``removed`` with --rm): the daemon answers the
   headers at once and the body at exit, so the exit cannot be missed either;
4. ``POST /containers/ID/start``;
5. copy the stream to the terminal (demultiplexing docker's 8-byte frames unless -t), forward
   signals as ``POST /containers/ID/kill?signal=…``;
6. read the wait body ``{"StatusCode": N}`` and exit with N.

This module imports only the standard library (argparse, json, socket): ``minidocker run`` is
benchmarked against runc, and every import is paid at every command.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

from ..timing import mark

from ..units import ago
from . import cgroups as cgroups_cli
from . import security as security_cli
from . import volumes as volumes_cli
from .client import APIError, Client, DaemonNotRunning, read_frames
from .images import add_verbs as add_image_verbs
from .signals import Interrupted, exit_on_interrupt, proxy_signals

EXIT_DAEMON_ERROR = 125


def err(msg: str) -> None:
    print(f"minidocker: {msg}", file=sys.stderr)


# ---- helpers ------------------------------------------------------------------------------------
def parse_env(items: list[str]) -> list[str]:
    out = []
    for item in items or []:
        if "=" in item:
            out.append(item)
        elif item in os.environ:  # `-e NAME` takes the value from the client's environment
            out.append(f"{item}={os.environ[item]}")
    return out


def short(cid: str) -> str:
    return cid[:12]


# ---- run ----------------------------------------------------------------------------------------
def create_body(a) -> dict:
    body = {
        "Image": a.image, "Cmd": a.command or None, "Env": parse_env(a.env),
        "WorkingDir": a.workdir or "", "Hostname": a.hostname or "", "User": a.user or "",
        "Tty": a.tty, "OpenStdin": a.interactive, "StdinOnce": a.interactive,
        "AttachStdin": a.interactive and not getattr(a, "detach", False),
        "AttachStdout": not getattr(a, "detach", False), "AttachStderr": not getattr(a, "detach", False),
        "Labels": dict(l.split("=", 1) if "=" in l else (l, "") for l in (a.label or [])),
        "HostConfig": {"AutoRemove": getattr(a, "rm", False), "Init": a.init or None,
                       "ReadonlyRootfs": a.read_only, "NetworkMode": a.network or "default",
                       "RestartPolicy": restart_policy(a.restart)},
    }
    body["HostConfig"].update(cgroups_cli.host_config(a))
    body["HostConfig"].update(security_cli.host_config(a))
    body["HostConfig"].update(volumes_cli.host_config(a))
    from . import networks as networks_cli
    networks_cli.apply(body, a)  # -p, -P, --ip, --network-alias, --dns*, --add-host (chapter 11)
    if a.stop_signal:
        body["StopSignal"] = a.stop_signal
    if a.stop_timeout is not None:
        body["StopTimeout"] = a.stop_timeout
    health = healthcheck(a)
    if health is not None:
        body["Healthcheck"] = health
    if a.entrypoint is not None:
        body["Entrypoint"] = [a.entrypoint] if a.entrypoint else [""]
    if a.tty:
        try:
            sz = os.get_terminal_size(sys.stdout.fileno())
            body["HostConfig"]["ConsoleSize"] = [sz.lines, sz.columns]
        except OSError:
            pass
    return body


def healthcheck(a) -> dict | None:
    """``--health-*`` / ``--no-healthcheck`` -> ``Config.Healthcheck`` (durations in nanoseconds), with
    the docker CLI's refusals."""
    from ..units import parse_go_duration
    given = {k: getattr(a, "health_" + k.lower()) for k in ("Interval", "Timeout", "StartPeriod", "StartInterval")}
    if a.no_healthcheck:
        if a.health_cmd or any(v is not None for v in given.values()) or a.health_retries is not None:
            raise SystemExit("minidocker: --no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not a.health_cmd and all(v is None for v in given.values()) and a.health_retries is None:
        return None
    hc: dict = {"Test": ["CMD-SHELL", a.health_cmd] if a.health_cmd else []}
    for key, text in given.items():
        if text is not None:
            try:
                ns = parse_go_duration(text)
            except ValueError as e:
                raise SystemExit(f"minidocker: invalid argument \"{text}\" for \"--health-*\" flag: {e}")
            if ns < 0:
                raise SystemExit(f"minidocker: --health-{key.lower()} cannot be negative")
            hc[key] = ns
    if a.health_retries is not None:
        if a.health_retries < 0:
            raise SystemExit("minidocker: --health-retries cannot be negative")
        hc["Retries"] = a.health_retries
    return hc


def restart_policy(spec: str | None) -> dict:
    """``--restart on-failure:3`` -> {"Name": "on-failure", "MaximumRetryCount": 3} (the daemon validates)."""
    name, _, count = (spec or "no").partition(":")
    if count and not count.isdigit():
        raise APIError(400, f"invalid restart policy format: maximum retry count must be an integer: {spec}")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def create_container(c: Client, a) -> str:
    body = create_body(a)
    query = {"name": a.name} if a.name else None
    r = c.request("POST", "/containers/create", query=query, body=body)
    if r.status == 404 and "no such image" in r.body.decode(errors="replace").lower():
        print(f"Unable to find image '{a.image}' locally", file=sys.stderr)
        pull(c, a.image)
        r = c.request("POST", "/containers/create", query=query, body=body)
    r.check()
    reply = r.json()
    for w in reply.get("Warnings") or []:
        print(f"WARNING: {w}", file=sys.stderr)
    return reply["Id"]


def pull(c: Client, image: str) -> None:
    name, tag = image, "latest"
    last = image.rsplit("/", 1)[-1]
    if "@" not in image and ":" in last:
        name, tag = image.rsplit(":", 1)
    from .registry import auth_header, registry_host  # credentials from `minidocker login`
    for msg in c.stream("POST", "/images/create", query={"fromImage": name, "tag": tag},
                        headers=auth_header(registry_host(name))):
        if msg.get("error"):
            raise APIError(500, msg["error"])
        if msg.get("status"):
            print((msg.get("id", "") + ": " if msg.get("id") else "") + msg["status"], file=sys.stderr)


def cmd_run(c: Client, a) -> int:
    if a.explain:
        return explain(c, a)
    mark("cli", "flags")
    cid = create_container(c, a)
    mark("cli", "POST /containers/create")
    if a.detach:
        c.request("POST", f"/containers/{cid}/start").check()
        print(cid)
        return 0
    return attach_and_start(c, cid, a.interactive, a.tty, a.rm, start=True)


def explain(c: Client, a) -> int:
    cid = create_container(c, a)
    try:
        r = c.request("GET", f"/containers/{cid}/explain")
        r.check()
        print(f"# the kernel calls that starting container {short(cid)} makes (nothing was run):")
        print(r.json()["Transcript"])
    finally:
        c.request("DELETE", f"/containers/{cid}", query={"force": True})
    return 0


def attach_and_start(c: Client, cid: str, interactive: bool, tty: bool, removed: bool, start: bool) -> int:
    # 2. attach before start, 3. wait before start: neither output nor exit can be missed.
    conn = c.hijack("POST", f"/containers/{cid}/attach",
                    query={"stream": True, "stdout": True, "stderr": True, "stdin": interactive})
    waiter = Client(c.host)
    wait = waiter.open_stream("POST", f"/containers/{cid}/wait",
                              query={"condition": "removed" if removed else "next-exit"})
    mark("cli", "attach and wait requests open")
    if start:
        c.request("POST", f"/containers/{cid}/start").check()
        mark("cli", "POST /containers/start")

    restore = None
    if tty and sys.stdin.isatty():
        restore = raw_terminal()
        resize(c, cid)
        signal.signal(signal.SIGWINCH, lambda *_: resize(c, cid))
    elif not tty:
        proxy_signals(c, cid)

    detached = threading.Event()
    if interactive:
        threading.Thread(target=pump_stdin, args=(conn, detached), daemon=True).start()
    else:
        conn.close_write()
    try:
        if tty:
            while True:
                data = conn.read()
                if not data:
                    break
                os.write(1, data)
        else:
            for stream, payload in read_frames(conn.read):
                os.write(2 if stream == 2 else 1, payload)
    finally:
        if restore:
            restore()
        conn.close()
    if detached.is_set():  # ctrl-p ctrl-q: the container keeps running; do not wait for it
        wait.close()
        return 0
    mark("cli", "output streamed until the attach ended")
    body = b"".join(wait)
    mark("cli", "wait answered (removed)")
    try:
        status = json.loads(body or b"{}")
    except ValueError:
        status = {}
    if status.get("Error"):
        err(f"Error waiting for container: {status['Error'].get('Message')}")
        return EXIT_DAEMON_ERROR
    return int(status.get("StatusCode", 0))


DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q (the daemon watches for them too and ends the stream)


def pump_stdin(conn, detached=None) -> None:
    recent = b""
    try:
        while True:
            data = os.read(0, 65536)
            if not data:
                break
            conn.send(data)
            recent = (recent + data)[-len(DETACH_KEYS):]
            if detached is not None and recent == DETACH_KEYS:
                detached.set()
                return
    except OSError:
        pass
    finally:
        try:
            conn.close_write()
        except OSError:
            pass


def raw_terminal():
    import termios
    import tty
    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    tty.setraw(fd)
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, old)


def resize(c: Client, cid: str) -> None:
    try:
        sz = os.get_terminal_size(sys.stdout.fileno())
        Client(c.host).request("POST", f"/containers/{cid}/resize", query={"h": sz.lines, "w": sz.columns})
    except Exception:
        pass


# ---- other verbs --------------------------------------------------------------------------------
def cmd_create(c, a):
    print(create_container(c, a))
    return 0


def cmd_start(c, a):
    rc = 0
    for ref in a.containers:
        if a.attach:
            info = c.request("GET", f"/containers/{ref}/json")
            info.check()
            cfg = info.json()["Config"]
            return attach_and_start(c, info.json()["Id"], a.interactive, cfg["Tty"], False, start=True)
        r = c.request("POST", f"/containers/{ref}/start")
        if r.status >= 400:
            err(str(APIError.from_body(r.status, r.body)))
            rc = 1
        else:
            print(ref)
    return rc


def for_each(c, refs, method, path, query=None, quiet=False):
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


def cmd_ps(c, a):
    from .output import listing
    filters = {}
    for f in a.filter or []:
        k, _, v = f.partition("=")
        filters.setdefault(k, {})[v] = True
    q = {"all": a.all or None, "limit": a.last if a.last else None,
         "filters": json.dumps(filters) if filters else None}
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
    from .output import Row
    names = [n.lstrip("/") for n in it.get("Names") or []]
    if trunc:  # the container's own name, not the legacy link names (a/b)
        names = next(([n] for n in names if "/" not in n), names)
    command = it.get("Command", "")
    if trunc and len(command) > 20:
        command = command[:19] + "…"
    labels = it.get("Labels") or {}
    from .networks import format_ports
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


def print_inspected(items: list, fmt: str | None) -> None:
    """``inspect``'s output: a template per object with ``-f``, else the JSON array (as docker)."""
    from .output import objects
    if fmt:
        sys.stdout.write(objects(fmt, items))
    else:
        print(json.dumps(items, indent=4))


def cmd_logs(c, a):
    info = c.request("GET", f"/containers/{a.container}/json").check().json()
    from .containers import timestamp
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


def cmd_version(c, a):
    import platform

    from ..wire import API_VERSION
    from .output import objects
    client = {"Platform": {"Name": ""}, "Version": __import__("minidocker").__version__, "APIVersion": API_VERSION,
              "DefaultAPIVersion": API_VERSION, "GitCommit": "", "GoVersion": "python" + platform.python_version(),
              "Os": "linux", "Arch": platform.machine(), "BuildTime": "", "Context": "default"}
    v = c.request("GET", "/version").check().json()
    if a.format:  # docker's versionInfo: Go field names (APIVersion) besides the API's JSON (ApiVersion)
        server = {**v, "APIVersion": v.get("ApiVersion"), "MinAPIVersion": v.get("MinAPIVersion")}
        sys.stdout.write(objects(a.format, [{"Client": client, "Server": server}]))
        return 0
    print("Client:\n Version:       ", client["Version"], "\n API version:   ", API_VERSION)
    print(f"\nServer: {v.get('Platform', {}).get('Name', '')}\n Engine:\n  Version:       {v.get('Version')}\n"
          f"  API version:   {v.get('ApiVersion')} (minimum version {v.get('MinAPIVersion')})\n"
          f"  Kernel:        {v.get('KernelVersion')}\n  OS/Arch:       {v.get('Os')}/{v.get('Arch')}")
    return 0


def cmd_info(c, a):
    from .output import objects
    from ..units import bytes_size
    i = c.request("GET", "/info").check().json()
    if a.format:
        sys.stdout.write(objects(a.format, [i]))
        return 0
    print(f"Server:\n Containers: {i['Containers']}\n  Running: {i['ContainersRunning']}\n"
          f"  Paused: {i['ContainersPaused']}\n  Stopped: {i['ContainersStopped']}\n Images: {i['Images']}\n"
          f" Server Version: {i['ServerVersion']}\n Storage Driver: {i['Driver']}\n"
          f" Logging Driver: {i['LoggingDriver']}\n Cgroup Version: {i['CgroupVersion']}\n"
          f" Kernel Version: {i['KernelVersion']}\n Operating System: {i['OperatingSystem']}\n"
          f" CPUs: {i['NCPU']}\n Total Memory: {bytes_size(i['MemTotal'])}\n Name: {i['Name']}\n"
          f" Docker Root Dir: {i['DockerRootDir']}")
    return 0


def cmd_doctor(c, a):
    from .. import doctor
    info = doctor.collect(daemon_host=a.host)
    print(json.dumps(info, indent=2, default=str) if a.json else doctor.report(info))
    return 0


def cmd_lab(c, a):
    from .. import labs
    return labs.main(a.lab_args)


# ---- argument parsing ---------------------------------------------------------------------------
def container_opts(p):
    p.add_argument("--name")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("-h", "--hostname")
    p.add_argument("-u", "--user")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-l", "--label", action="append")
    p.add_argument("--entrypoint")
    p.add_argument("--init", action="store_true", help="run a small init as pid 1 that reaps zombies and forwards signals")
    p.add_argument("--read-only", action="store_true")
    p.add_argument("--network", "--net")
    from . import networks as networks_cli
    networks_cli.net_opts(p)
    cgroups_cli.limit_opts(p)
    security_cli.security_opts(p)
    volumes_cli.run_flags(p)
    p.add_argument("--restart", help="no, on-failure[:max-retries], always, unless-stopped")
    p.add_argument("--stop-signal")
    p.add_argument("--stop-timeout", type=int)
    p.add_argument("--health-cmd", help="command to run to check health (run with /bin/sh -c)")
    p.add_argument("--health-interval", help="time between running the check (e.g. 30s)")
    p.add_argument("--health-timeout", help="maximum time a check may run (e.g. 30s)")
    p.add_argument("--health-start-period", dest="health_startperiod",
                   help="start period: failures then do not count before a first success")
    p.add_argument("--health-start-interval", dest="health_startinterval",
                   help="time between checks during the start period")
    p.add_argument("--health-retries", type=int, help="consecutive failures needed to report unhealthy")
    p.add_argument("--no-healthcheck", action="store_true", help="disable any container-specified HEALTHCHECK")
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)


class _Unused:
    """Stands in for the parser of a verb this invocation does not use: every method accepts
    anything and does nothing (see :func:`build_parser`)."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: self


# Global options that take a value: skipped when looking for the verb in argv.
_VALUED_GLOBALS = {"-H", "--host", "--tlscacert", "--tlscert", "--tlskey"}


def requested_verb(argv: list[str]) -> str | None:
    """The verb in ``argv`` (``ps`` in ``-H unix:///x ps -a``), or None."""
    it = iter(argv)
    for arg in it:
        if arg in _VALUED_GLOBALS:
            next(it, None)
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line. With ``only``, just that verb's parser is really built: making the
    parsers of ~40 verbs costs ~40 ms, paid by every command (``minidocker run`` is benchmarked)."""
    p = argparse.ArgumentParser(prog="minidocker", description="A container engine to read: the client.",
                                epilog="The daemon (minidockerd) must be running; see `minidocker doctor`.")
    p.add_argument("-H", "--host", help="daemon socket (default $MINIDOCKER_HOST, $DOCKER_HOST, unix:///run/minidocker.sock)")
    p.add_argument("--tlsverify", action="store_true", default=bool(os.environ.get("DOCKER_TLS_VERIFY")),
                   help="use TLS and verify the daemon (tcp:// hosts); certificates from --tls* or $DOCKER_CERT_PATH")
    p.add_argument("--tlscacert")
    p.add_argument("--tlscert")
    p.add_argument("--tlskey")
    sub = p.add_subparsers(dest="verb", metavar="COMMAND")
    p.set_defaults(verbs=sub.choices)  # the verbs really built (all, or just ``only``)
    if only is not None:
        add_parser = sub.add_parser

        def add_parser_if_wanted(name, **kwargs):
            return add_parser(name, **kwargs) if only in (name, *kwargs.get("aliases", ())) else _Unused()
        sub.add_parser = add_parser_if_wanted
    from . import containers
    containers.add_verbs(sub)

    r = sub.add_parser("run", help="create and start a container", add_help=False)
    r.add_argument("--help", action="help")
    r.add_argument("--rm", action="store_true")
    r.add_argument("-d", "--detach", action="store_true")
    r.add_argument("--explain", action="store_true", help="print the kernel calls the start would make, run nothing")
    container_opts(r)
    r.set_defaults(fn=cmd_run)

    cr = sub.add_parser("create", help="create a container", add_help=False)
    cr.add_argument("--help", action="help")
    cr.add_argument("--rm", action="store_true")
    container_opts(cr)
    cr.set_defaults(fn=cmd_create, explain=False, detach=True)

    s = sub.add_parser("start", help="start containers")
    s.add_argument("-a", "--attach", action="store_true")
    s.add_argument("-i", "--interactive", action="store_true")
    s.add_argument("containers", nargs="+")
    s.set_defaults(fn=cmd_start)

    for verb, fn, helptext in (("rm", cmd_rm, "remove containers"), ("stop", cmd_stop, "stop containers"),
                               ("kill", cmd_kill, "kill containers"), ("wait", cmd_wait, "wait for containers")):
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

    ps = sub.add_parser("ps", help="list containers")
    ps.add_argument("-a", "--all", action="store_true")
    ps.add_argument("-q", "--quiet", action="store_true")
    ps.add_argument("-n", "--last", type=int)
    ps.add_argument("-l", "--latest", action="store_true")
    ps.add_argument("-f", "--filter", action="append")
    ps.add_argument("--format")
    ps.add_argument("--no-trunc", action="store_true")
    ps.set_defaults(fn=cmd_ps)

    add_image_verbs(sub)  # images, image ..., tag, rmi, history, save, load, import (cli/images.py)
    from .build import add_verbs as build_verbs
    build_verbs(sub)  # build (cli/build.py)

    ins = sub.add_parser("inspect", help="low-level information on objects")
    ins.add_argument("-f", "--format")
    ins.add_argument("--type", choices=["container", "image"])
    ins.add_argument("objects", nargs="+")
    ins.set_defaults(fn=cmd_inspect)

    lg = sub.add_parser("logs", help="fetch a container's logs")
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("-t", "--timestamps", action="store_true")
    lg.add_argument("-n", "--tail", default="all")
    lg.add_argument("--since")
    lg.add_argument("--until")
    lg.add_argument("container")
    lg.set_defaults(fn=cmd_logs)

    cgroups_cli.add_verbs(sub)
    ver = sub.add_parser("version", help="client and daemon versions")
    ver.add_argument("-f", "--format")
    ver.set_defaults(fn=cmd_version)
    inf = sub.add_parser("info", help="system-wide information")
    inf.add_argument("-f", "--format")
    inf.set_defaults(fn=cmd_info)
    d = sub.add_parser("doctor", help="what this host supports (reads the host; no daemon needed)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(fn=cmd_doctor, local=True)  # -H is honoured: doctor pings that daemon
    lab = sub.add_parser("lab", help="classroom labs: `lab list`, `lab start 01`, `lab check 01`, `lab hint 01`")
    lab.add_argument("lab_args", nargs=argparse.REMAINDER)
    lab.set_defaults(fn=cmd_lab, local=True)
    from . import cow
    cow.add_verbs(sub)
    from . import networks as networks_cli
    networks_cli.add_verbs(sub)  # network ls/create/inspect/rm/prune/connect/disconnect, port
    from .registry import add_verbs as registry_verbs
    registry_verbs(sub)  # pull, push, login, logout, registry serve (the registry chapter)
    volumes_cli.add_verbs(sub)  # volume create/ls/inspect/rm/prune (the volumes chapter)
    return p


def tls_context(a):
    """The client side of dockerd's --tlsverify: verify the daemon's certificate against the CA and
    present our own (mutual TLS). Files default to $DOCKER_CERT_PATH/{ca,cert,key}.pem."""
    import ssl
    base = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
    ctx = ssl.create_default_context(cafile=a.tlscacert or os.path.join(base, "ca.pem"))
    ctx.load_cert_chain(a.tlscert or os.path.join(base, "cert.pem"), a.tlskey or os.path.join(base, "key.pem"))
    return ctx


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    mark("cli", "interpreter and imports")
    verb = requested_verb(argv)
    parser = build_parser(only=verb)
    if verb is None or verb not in parser.get_default("verbs"):
        parser = build_parser()  # no verb, or an unknown one: the full parser, for help and errors
    a = parser.parse_args(argv)
    if not getattr(a, "fn", None):
        parser.print_help()
        return 0
    if getattr(a, "local", False):
        return a.fn(None, a)
    try:
        if a.tlsverify:
            from . import client as client_module
            client_module.DEFAULT_TLS = tls_context(a)
        c = Client(a.host)
    except (ValueError, NotImplementedError, OSError) as e:
        err(str(e))
        return 1
    try:
        rc = a.fn(c, a)
    except DaemonNotRunning as e:
        print(str(e), file=sys.stderr)
        return EXIT_DAEMON_ERROR if a.verb == "run" else 1
    except APIError as e:
        print(str(e), file=sys.stderr)
        return EXIT_DAEMON_ERROR if a.verb in ("run", "create") else 1
    except Interrupted as e:
        sys.stdout.flush()
        return e.code
    except ValueError as e:
        from .gotemplate import TemplateError  # (imported only when needed: `run` never formats)
        if not isinstance(e, TemplateError):
            raise
        # docker: 64 when the template does not parse, 1 when it fails to run
        print(f"template parsing error: {e}" if e.phase == "parse" else f"failed to execute template: {e}",
              file=sys.stderr)
        return 64 if e.phase == "parse" else 1
    except BrokenPipeError:
        return 0
    sys.stdout.flush()
    return rc


if __name__ == "__main__":
    sys.exit(main())
