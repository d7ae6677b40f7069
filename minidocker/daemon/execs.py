"""Exec instances: the daemon's record of each ``docker exec`` (``POST /containers/ID/exec``).

What this teaches
-----------------
An exec is two API calls: *create* records what to run (command, env, user, cwd, TTY, which
streams) and returns an id; *start* runs it, usually with the connection hijacked so the client's
terminal is wired to the new process. Between the two nothing runs, exactly like a container's
create/start. The process is created by an exec monitor (``runtime/exec.py``) paused before exec,
the client's stream is connected, then the monitor lets it exec — so no output is lost. A watcher
holds a ``wait`` on the monitor and records the exit code, which the client reads with
``GET /exec/ID/json`` after the stream ends. dockerd keeps exec records in memory only; so do we.
"""
from __future__ import annotations

import asyncio
import os

from ..runtime import exec as rexec
from ..runtime import monitor
from .config import ConfigError, ContainerConfig, _as_list, merge_env, process_env
from ..util import new_id, read_json
from .engine import Engine
from .errors import Conflict, InvalidRequest, NotFound
from .record import Container
from .streams import background
from . import state as states


class Exec:
    def __init__(self, eid: str, c: Container, cfg: ContainerConfig, body: dict):
        self.id = eid
        self.container = c
        self.cfg = cfg
        self.body = body
        self.dir = os.path.join(c.dir, "exec", eid)
        self.running = False
        self.started = False
        self.exit_code: int | None = None
        self.pid = 0
        self.done = asyncio.get_running_loop().create_future()

    def inspect(self) -> dict:
        if self.running and self.exit_code is None:  # the watcher may not have run yet
            rec = read_json(os.path.join(self.dir, "exit.json"))
            if rec:
                self.running, self.exit_code = False, int(rec.get("exit_code", 255))
        return {"ID": self.id, "Running": self.running, "ExitCode": self.exit_code,
                "ProcessConfig": {"tty": self.cfg.tty, "entrypoint": self.cfg.argv[0],
                                  "arguments": self.cfg.argv[1:], "privileged": bool(self.body.get("Privileged")),
                                  "user": self.cfg.user},
                "OpenStdin": self.cfg.open_stdin, "OpenStdout": bool(self.body.get("AttachStdout")),
                "OpenStderr": bool(self.body.get("AttachStderr")), "CanRemove": False,
                "ContainerID": self.container.id, "DetachKeys": self.body.get("DetachKeys") or "",
                "Pid": self.pid}


def create(engine: Engine, ref: str, body: dict) -> Exec:
    c = engine.get(ref)
    if not isinstance(body, dict):
        raise InvalidRequest("invalid JSON: the request body must be an object")
    if c.state["Status"] == states.PAUSED:
        raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
    if c.state["Status"] == states.RESTARTING:
        raise Conflict(f"Container {c.id} is restarting, wait until the container is running")
    if c.state["Status"] != states.RUNNING:
        raise Conflict(f"Container {c.id} is not running")
    try:
        argv = _as_list(body.get("Cmd"), "Cmd")
        if not argv:
            raise ConfigError("No exec command specified")
        env = merge_env(c.cfg.env, _as_list(body.get("Env"), "Env"))
    except ConfigError as e:
        raise InvalidRequest(str(e))
    wd = body.get("WorkingDir") or c.cfg.working_dir
    if not wd.startswith("/"):
        raise InvalidRequest(f"the working directory '{wd}' is invalid, it needs to be an absolute path")
    eid = new_id()
    cfg = ContainerConfig(id=eid, name=c.name, image_id=c.cfg.image_id, image_ref=c.cfg.image_ref, argv=argv,
                          env=env, working_dir=wd, user=body.get("User") or c.cfg.user, hostname=c.cfg.hostname,
                          tty=bool(body.get("Tty")), open_stdin=bool(body.get("AttachStdin")),
                          stdin_once=bool(body.get("AttachStdin")))
    ex = Exec(eid, c, cfg, body)
    engine.execs[eid] = ex
    c.exec_ids.append(eid)
    engine.emit(c, "exec_create: " + " ".join(argv), execID=eid)
    return ex


def get(engine: Engine, eid: str) -> Exec:
    ex = engine.execs.get(eid)
    if ex is None:
        raise NotFound(f"No such exec instance: {eid}")
    return ex


async def start(engine: Engine, ex: Exec, client=None, console_size=None) -> asyncio.Future | None:
    """Run the exec. ``client`` = (reader, writer, opts) of a hijacked connection, or None (-d).
    Returns the future that completes when the client's stream ends (or None when detached)."""
    c = ex.container
    if ex.started:
        raise Conflict(f"Error: Exec command {ex.id} has already run")
    if c.state["Status"] != states.RUNNING:
        raise Conflict(f"Container {c.id} is not running")
    ex.started = True
    try:
        process = exec_process(c, ex.cfg, ex.body)
    except ConfigError as e:
        raise InvalidRequest(str(e))
    await asyncio.to_thread(rexec.create, ex.dir, os.path.dirname(c.dir), c.id, process,
                            monitor={"tty": ex.cfg.tty, "open_stdin": ex.cfg.open_stdin,
                                     "stdin_once": ex.cfg.stdin_once, "console_size": console_size})
    try:
        await asyncio.to_thread(rexec.spawn_paused, ex.dir)
    except RuntimeError as e:
        ex.exit_code = 126
        if not ex.done.done():
            ex.done.set_result(126)
        raise ExecStartError(str(e))
    done = None
    if client is not None:
        reader, writer, opts = client
        done = asyncio.get_running_loop().create_future()
        await engine.connect_attach(ex, reader, writer, opts, done)
    reply = await asyncio.to_thread(monitor.request, ex.dir, {"op": "start"})
    ex.pid, ex.running = reply.get("pid", 0), True
    engine.emit(c, "exec_start: " + " ".join(ex.cfg.argv), execID=ex.id)
    background(watch(engine, ex))
    return done


def exec_process(c: Container, cfg: ContainerConfig, body: dict) -> dict:
    """The exec's OCI ``process``: the container's (capabilities, no_new_privs, rlimits, user) with
    the exec's command, env, cwd, terminal and ``-u``; ``--privileged``: every capability (the
    container's seccomp filter stays, as with dockerd: moby's execSetPlatformOpt changes only
    capabilities and AppArmor)."""
    from ..security import capabilities
    from . import specconv
    spec = read_json(os.path.join(c.dir, "config.json"))
    process = dict(spec["process"])
    process.pop("consoleSize", None)
    defaults = [f"HOSTNAME={cfg.hostname}"] + (["TERM=xterm"] if cfg.tty else [])  # dockerd's, as for pid 1
    process.update(args=list(cfg.argv), env=process_env(cfg.env, defaults), cwd=cfg.working_dir, terminal=cfg.tty)
    if body.get("User"):
        host = c.request.get("HostConfig") or {}
        process["user"] = specconv.user(body["User"], host.get("GroupAdd"))
    if body.get("Privileged"):
        process["capabilities"] = capabilities.oci(specconv.privileged_capabilities())
    return process


class ExecStartError(Exception):
    pass


async def watch(engine: Engine, ex: Exec) -> None:
    rec = None
    try:
        rec = await asyncio.to_thread(monitor.request, ex.dir, {"op": "wait"}, None)
    except (OSError, ValueError):
        pass
    rec = rec or read_json(os.path.join(ex.dir, "exit.json")) or {"exit_code": 255}
    ex.running, ex.exit_code = False, int(rec.get("exit_code", 255))
    if not ex.done.done():
        ex.done.set_result(ex.exit_code)
    if ex.container.id in engine.containers:
        engine.emit(ex.container, "exec_die", execID=ex.id, exitCode=ex.exit_code)


async def resize(ex: Exec, h: int, w: int) -> None:
    if not ex.running:
        raise Conflict(f"Exec {ex.id} is not running")
    try:
        await asyncio.to_thread(monitor.request, ex.dir, {"op": "resize", "h": h, "w": w})
    except OSError:
        pass
