"""``minidocker run`` (and ``create``, ``start``): the request sequence the docker CLI sends.

What this teaches
-----------------
``docker run`` is not one request but a small choreography, and the order matters
(see shared/notes/docker-engine-api-clients.md and the Engine API v1.50):

1. ``POST /containers/create``            -> the daemon records a container (state "created");
   the body is built here from the flags (:func:`create_body`: ``-e``, ``--restart``, the
   ``--health-*`` durations, and each chapter's flags: cgroups, security, volumes, networks);
   a 404 "No such image" makes the client pull (``POST /images/create``), then create again;
2. ``POST /containers/ID/attach`` (hijack) -> a raw two-way stream, opened *before* start so the
   first byte of output cannot be missed;
3. ``POST /containers/ID/wait?condition=next-exit`` (``removed`` with --rm): the daemon answers the
   headers at once and the body at exit, so the exit cannot be missed either;
4. ``POST /containers/ID/start``;
5. copy the stream to the terminal (demultiplexing docker's 8-byte frames unless -t; with -t the
   terminal goes raw and its size follows via ``POST /containers/ID/resize``), pump stdin with -i,
   forward signals as ``POST /containers/ID/kill?signal=…``;
6. read the wait body ``{"StatusCode": N}`` and exit with N (125 when the daemon failed).

``--explain`` stops after step 1: ``GET /containers/ID/explain`` returns the kernel calls the start
would make (recorded by the runtime's twin, nothing run), then the container is removed.

Standard library only: ``minidocker run`` is benchmarked, and every import is paid at every run.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from ..timing import mark
from . import cgroups as cgroups_cli
from . import networks as networks_cli
from . import security as security_cli
from . import volumes as volumes_cli
from .attach import raw_terminal, stream
from .client import APIError, Client
from .output import EXIT_DAEMON_ERROR, err, short
from .signals import proxy_signals


# ---- the create body ----------------------------------------------------------------------------
def parse_env(items: list[str]) -> list[str]:
    """``-e A=1 -e B`` -> ["A=1", "B=<the client's $B>"] (a name alone takes the client's value)."""
    out = []
    for item in items or []:
        if "=" in item:
            out.append(item)
        elif item in os.environ:
            out.append(f"{item}={os.environ[item]}")
    return out


def create_body(a) -> dict:
    """The flags -> the body of ``POST /containers/create`` (Config with a HostConfig inside)."""
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


# ---- 1. create (pulling a missing image) --------------------------------------------------------
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


# ---- the verbs ----------------------------------------------------------------------------------
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


def cmd_create(c: Client, a) -> int:
    print(create_container(c, a))
    return 0


def cmd_start(c: Client, a) -> int:
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


# ---- 2.-6. attach, wait, start, stream, exit code -----------------------------------------------
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

    if stream(conn, tty, interactive, restore):  # ctrl-p ctrl-q: the container runs on; do not wait for it
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


def resize(c: Client, cid: str) -> None:
    """The terminal's size -> the container's TTY (at start and at every SIGWINCH)."""
    try:
        sz = os.get_terminal_size(sys.stdout.fileno())
        Client(c.host).request("POST", f"/containers/{cid}/resize", query={"h": sz.lines, "w": sz.columns})
    except Exception:
        pass


# ---- the parsers --------------------------------------------------------------------------------
def container_opts(p) -> None:
    """The flags ``run`` and ``create`` share: the container's configuration."""
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


def add_run(sub, verb: str) -> None:
    r = sub.add_parser(verb, help="create and start a container", add_help=False)  # -h is --hostname
    r.add_argument("--help", action="help")
    r.add_argument("--rm", action="store_true")
    r.add_argument("-d", "--detach", action="store_true")
    r.add_argument("--explain", action="store_true", help="print the kernel calls the start would make, run nothing")
    container_opts(r)
    r.set_defaults(fn=cmd_run)


def add_create(sub, verb: str) -> None:
    cr = sub.add_parser(verb, help="create a container", add_help=False)
    cr.add_argument("--help", action="help")
    cr.add_argument("--rm", action="store_true")
    container_opts(cr)
    cr.set_defaults(fn=cmd_create, explain=False, detach=True)


def add_start(sub, verb: str) -> None:
    s = sub.add_parser(verb, help="start containers")
    s.add_argument("-a", "--attach", action="store_true")
    s.add_argument("-i", "--interactive", action="store_true")
    s.add_argument("containers", nargs="+")
    s.set_defaults(fn=cmd_start)
