"""The daemon's objects and their state machine: containers and images, owned by one process.

What this teaches
-----------------
The daemon is the single owner of state. It validates a request, records the new state atomically
(temp + fsync + rename), and asks the runtime to do the kernel work. It keeps no kernel logic of its
own. A container moves through docker's states (``rules.TRANSITIONS``; every move goes through
``state.transition``, which checks the table, persists and emits the event)::

    created --start--> running --exit--> exited --start--> running ...
       \\______________________________ rm ___________________________/--> removing --> (removed)

Waiting is the interesting part: ``docker run`` asks to be told of the *next* exit (``wait``
with ``condition=next-exit``) before it starts the container, and ``--rm`` waits for ``removed``.
Each container keeps futures for those, completed by a watcher task that holds a ``wait``
connection on the container's monitor — and that can be re-established by a restarted daemon.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import time

from .. import runtime, unionfs
from ..images.layers import LayerError
from ..images.store import ImageNotFound, ImageStore
from ..images.unpack import collect, migrate, prune, unpack
from ..runtime import monitor
from .config import ConfigError, ContainerConfig, from_create_request, validate_name
from ..timing import mark
from ..units import human_duration
from ..volumes import VolumeStore
from ..util import ZERO_TIME, atomic_write_json, new_id, now_rfc3339, parse_rfc3339, read_json
from . import health, rules, state as states
from .events import Events
from .state import Conflict, NotModified  # noqa: F401 (the API maps them to 409 and 304)

log = logging.getLogger("minidockerd")


# What the runtime mounts over (rootfs.py): created in each container's init layer.
PLACEHOLDER_FILES = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")
PLACEHOLDER_DIRS = ("/proc", "/sys", "/dev")


class NotFound(LookupError):
    pass


class InvalidRequest(ValueError):
    pass


def signal_number(value) -> int:
    """``SIGTERM``, ``TERM``, ``15`` -> 15 (docker accepts all three)."""
    if value is None or value == "":
        return signal.SIGKILL
    s = str(value).strip().upper()
    if s.isdigit():
        n = int(s)
        if 0 < n < signal.NSIG:
            return n
    else:
        name = s if s.startswith("SIG") else "SIG" + s
        if hasattr(signal.Signals, name):
            return int(signal.Signals[name])
    raise InvalidRequest(f"Invalid signal: {value}")


class Container:
    def __init__(self, cid: str, directory: str, cfg: ContainerConfig, request: dict, created: str, name: str):
        self.id = cid
        self.dir = directory
        self.cfg = cfg
        self.request = request
        self.created = created
        self.name = name
        self.state = {"Status": "created", "Running": False, "Paused": False, "Restarting": False,
                      "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
                      "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME}
        self.restart_count = 0
        self.next_exit: list[asyncio.Future] = []
        self.removed: list[asyncio.Future] = []
        self.pending_attach: list = []
        self.lock = asyncio.Lock()
        self.watcher: asyncio.Task | None = None
        # Restart policy bookkeeping (docker's restartmanager): a stop/kill by a user disables the
        # policy until the next start; the back-off doubles from 100 ms up to a minute.
        self.manually_stopped = False
        self.restart_task: asyncio.Task | None = None
        self.backoff = 0.0
        self.exec_ids: list[str] = []
        self.after_exit: list = []  # events owed once the process has exited (state.AFTER_EXIT)
        self.health_task: asyncio.Task | None = None  # the health check's timer (daemon/health.py)

    @property
    def restart_policy(self) -> tuple[str, int]:
        p = (self.request.get("HostConfig") or {}).get("RestartPolicy") or {}
        return (p.get("Name") or "no"), int(p.get("MaximumRetryCount") or 0)

    @property
    def running(self) -> bool:
        return self.state["Status"] in states.LIVE

    def save(self) -> None:
        atomic_write_json(os.path.join(self.dir, "state.json"),
                          {"name": self.name, "created": self.created, "state": self.state,
                           "restart_count": self.restart_count, "manually_stopped": self.manually_stopped})


class Engine:
    def __init__(self, root: str, driver: str = "overlay", cgroup_parent: str = "minidocker",
                 network=None, userns_remap: dict | None = None):
        self.root = root
        self.userns_remap = userns_remap  # daemon/userns.resolve(): maps for every container
        self.cgroup_parent = cgroup_parent
        self.containers: dict[str, Container] = {}
        self.driver = driver
        self.snapshotter = self.snapshotter_for(driver)
        self.volumes = VolumeStore(os.path.join(root, "volumes"))
        # Layers are extracted into the snapshotter once, when an image arrives (images/unpack.py).
        self.images = ImageStore(os.path.join(root, "images"), snapshotter=self.snapshotter)
        self.events = Events()
        self.execs: dict = {}  # exec id -> daemon.execs.Exec (in memory, as dockerd keeps them)
        os.makedirs(os.path.join(root, "containers"), exist_ok=True)
        self.started = time.time()
        from ..network import Settings
        from .networks import Glue  # chapter 11: networks, endpoints, published ports
        self.net = Glue(self, network or Settings(state_dir=os.path.join(root, "network")))

    def snapshotter_for(self, driver: str) -> unionfs.Snapshotter:
        """One snapshot root per driver: a daemon restarted with the other driver still finds the
        layers of containers created before."""
        current = getattr(self, "snapshotter", None)
        if current is not None and current.driver == (driver or "overlay"):
            return current
        return unionfs.new_snapshotter(driver or "overlay", os.path.join(self.root, "snapshots", driver or "overlay"))

    # ---- lookup ---------------------------------------------------------------------------------
    def get(self, ref: str) -> Container:
        """By full id, by name (with or without '/'), or by an unambiguous id prefix (docker's order)."""
        if ref in self.containers:
            return self.containers[ref]
        name = ref.lstrip("/")
        for c in self.containers.values():
            if c.name == name:
                return c
        matches = [c for cid, c in self.containers.items() if cid.startswith(ref)] if ref else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidRequest(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    # ---- create ---------------------------------------------------------------------------------
    def create(self, body: dict, name: str | None, rootfs=None) -> tuple[str, list[str]]:
        """``rootfs`` (the builder's hook): (image id, image run config, prepare(cid) -> mounts)
        for a container on a writable snapshot the caller prepares under the key ``cid``."""
        if not isinstance(body, dict):
            raise InvalidRequest("invalid JSON: the request body must be an object")
        image_name = body.get("Image")
        if not image_name:
            raise InvalidRequest("No image was specified")
        try:
            image = self.images.resolve(image_name) if rootfs is None else None
        except ImageNotFound as e:
            raise NotFound(str(e))
        except ValueError as e:
            raise InvalidRequest(str(e))
        image_id, image_config = (image.id, image.config.get("config", {})) if rootfs is None else rootfs[:2]
        if name:
            try:
                name = validate_name(name)
            except ConfigError as e:
                raise InvalidRequest(str(e))
            for c in self.containers.values():
                if c.name == name:
                    raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                                   f'"{c.id}". You have to remove (or rename) that container to be able to '
                                   "reuse that name.")
        mark("daemon", "create: HTTP request to engine (resolve image)")
        try:
            health.validate(body.get("Healthcheck"))
        except ValueError as e:
            raise InvalidRequest(str(e))
        cid = new_id()
        name = name or self.generate_name()
        directory = os.path.join(self.root, "containers", cid)
        warnings: list[str] = []
        netns_path = self.net.plan(body, cid)
        try:
            cfg = from_create_request(body, cid=cid, name=name, image_id=image_id,
                                      image_ref=image_name, image_config=image_config,
                                      lowerdirs=[], upperdir="", workdir="",
                                      cgroup_parent=self.cgroup_parent, warnings=warnings)
        except ConfigError as e:
            raise InvalidRequest(str(e))
        host = body.get("HostConfig") or {}
        validate_restart_policy(host)
        console = host.get("ConsoleSize")
        console = console if console and any(console) else None
        # The image's layers, unpacked once per ChainID, and a writable snapshot named after us.
        try:
            if rootfs is None:
                with self.snapshotter.lease(*image.chain_ids):  # a concurrent rmi must not take them
                    mounts = self.prepare_snapshots(cid, unpack(self.images, self.snapshotter, image))
            else:
                mounts = rootfs[2](cid)
        except (LayerError, unionfs.SnapshotError, OSError) as e:
            raise InvalidRequest(f"cannot prepare the root filesystem of {image_name}: {e}")
        mark("daemon", "create: config, snapshot prepare")
        cfg.rootfs_mounts = [dict(vars(m)) for m in mounts]
        cfg.storage_driver = self.driver
        from . import api_volumes   # the volumes chapter: -v, --mount, --tmpfs, image VOLUMEs

        def drop_snapshots():
            self.snapshotter.remove(cid)
            if rootfs is None:
                self.snapshotter.remove(cid + "-init")
        # (The builder's RUN containers get no anonymous volumes for the image's VOLUMEs.)
        try:
            points = api_volumes.resolve(self, body, image_config if rootfs is None else {}, cid)
        except BaseException:
            drop_snapshots()
            raise
        cfg.volume_mounts = [p.to_dict() for p in points]
        try:
            api_volumes.copy_up(self, points, mounts)
            write_bundle(directory, cfg, body, console, warnings, netns_path, self.userns_remap)
        except ConfigError as e:
            drop_snapshots()
            api_volumes.release(self, cid, cfg.volume_mounts, remove_anonymous=True)
            raise InvalidRequest(str(e))
        except BaseException:
            drop_snapshots()
            api_volumes.release(self, cid, cfg.volume_mounts, remove_anonymous=True)
            raise
        mark("daemon", "create: specconv, bundle written")
        c = Container(cid, directory, cfg, body, now_rfc3339(), name)
        c.save()
        self.containers[cid] = c
        self.emit(c, "create")
        mark("daemon", "create: record saved")
        return cid, warnings

    def transition(self, c: Container, action: str, fields: dict | None = None, **attrs) -> str:
        """The one way a container changes status (``state.transition``): table, persist, event."""
        return states.transition(c, action, self.emit, fields, **attrs)

    def emit(self, c: Container, action: str, **extra) -> None:
        attrs = {**c.cfg.labels, "image": c.cfg.image_ref, "name": c.name, **extra}
        self.events.emit("container", action, c.id, attrs)

    def generate_name(self) -> str:
        adjectives = ["brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "kind", "lucid", "merry",
                      "nifty", "quirky", "serene", "tender", "vivid", "witty", "zealous", "bold", "keen", "proud"]
        scientists = ["curie", "darwin", "euler", "fermi", "gauss", "hopper", "kepler", "lovelace", "noether",
                      "pascal", "ritchie", "shannon", "thompson", "turing", "torvalds", "wozniak", "babbage"]
        used = {c.name for c in self.containers.values()}
        while True:
            n = f"{adjectives[os.urandom(1)[0] % len(adjectives)]}_{scientists[os.urandom(1)[0] % len(scientists)]}"
            if n not in used:
                return n
            n += str(os.urandom(1)[0])
            if n not in used:
                return n

    # ---- start, attach, wait --------------------------------------------------------------------
    async def start(self, ref: str, restarting: bool = False) -> None:
        c = self.get(ref)
        async with c.lock:
            states.check(c, "start")  # 304 when running, 409 when paused or being removed
            if c.state["Status"] in (states.EXITED, states.RESTARTING):
                await asyncio.to_thread(self.reset_for_restart, c)
            if not restarting:  # a user's start re-arms the restart policy
                c.manually_stopped = False
                c.restart_count = 0
                c.backoff = 0.0
                if c.restart_task and asyncio.current_task() is not c.restart_task:
                    c.restart_task.cancel()
            # 0. Its network namespace, wired (veth, address, route, names, ports): the runtime joins it.
            await asyncio.to_thread(self.net.setup, c)
            # 1. The monitor creates the container and stops it just before exec.
            mark("daemon", "start: HTTP request, network namespace wired")
            try:
                pid = (await asyncio.to_thread(monitor.spawn_monitor, c.dir))["pid"]
            except RuntimeError as e:
                await asyncio.to_thread(self.net.teardown, c)
                states.record(c, Error=str(e), ExitCode=127 if "exec" in str(e) else 128)
                raise StartError(str(e))
            mark("daemon", "start: monitor spawned, runtime create done")
            # 2. Clients that attached before start are connected now, so no output is lost.
            pending, c.pending_attach = c.pending_attach, []
            for conn in pending:
                await self.connect_attach(c, *conn)
            # 3. Go: the container execs. Record the state before anyone can observe the exit.
            reply = await asyncio.to_thread(monitor.request, c.dir, {"op": "start"})
            if reply.get("error"):
                await asyncio.to_thread(self.net.teardown, c)
                states.record(c, Error=reply["error"], ExitCode=128)
                raise StartError(reply["error"])
            c.watcher = asyncio.create_task(self.watch(c))
            self.transition(c, "start", dict(Pid=pid, ExitCode=0, Error="", FinishedAt=ZERO_TIME, OOMKilled=False,
                                             StartedAt=reply.get("started_at") or now_rfc3339()))
            self.arm_health(c)
            mark("daemon", "start: exec'd, state saved")

    def reset_for_restart(self, c: Container) -> None:
        for f in ("exit.json", "monitor.json"):
            try:
                os.unlink(os.path.join(c.dir, f))
            except FileNotFoundError:
                pass

    async def watch(self, c: Container) -> None:
        """Hold a ``wait`` request on the monitor; record the exit; complete waiters; auto-remove."""
        exit_rec = None
        try:
            sock = await asyncio.to_thread(monitor.connect_ctl, c.dir, 5)
            sock.setblocking(False)
            reader, writer = await asyncio.open_unix_connection(sock=sock)
            writer.write(b'{"op":"wait"}\n')
            await writer.drain()
            line = await reader.readline()
            writer.close()
            if line:
                import json
                exit_rec = json.loads(line)
        except (OSError, ValueError) as e:
            log.debug("wait on monitor of %s failed: %s", c.id[:12], e)
        if exit_rec is None:
            exit_rec = read_json(os.path.join(c.dir, "exit.json")) or {
                "exit_code": 255, "finished_at": now_rfc3339(), "error": "the container's monitor disappeared"}
        await self.on_exit(c, exit_rec)

    def arm_health(self, c: Container, resume: bool = False) -> None:
        """The health check's timer (daemon/health.py) for a container that runs now."""
        try:
            image_cfg = self.images.resolve(c.cfg.image_id).config.get("config", {})
        except Exception:
            image_cfg = {}
        health.begin(self, c, image_cfg, resume=resume)

    async def on_exit(self, c: Container, rec: dict) -> None:
        health.end(c)
        started = parse_rfc3339(c.state["StartedAt"]) if c.state["StartedAt"] != ZERO_TIME else time.time()
        await asyncio.to_thread(self.net.teardown, c)  # its address goes back to the pool, as docker's
        fields = dict(Pid=0, ExitCode=int(rec.get("exit_code", 255)), OOMKilled=bool(rec.get("oom_killed")),
                      FinishedAt=rec.get("finished_at") or now_rfc3339(), Error=rec.get("error") or "")
        code = fields["ExitCode"]
        if c.id in self.containers and c.state["Status"] in states.LIVE:
            self.transition(c, "exit", fields, exitCode=code)
        else:  # already removed (or being removed): only the exit's facts are kept
            states.record(c, **fields)
        for f in c.next_exit:
            if not f.done():
                f.set_result(code)
        c.next_exit.clear()
        if c.id in self.containers and self.should_restart(c, code):
            self.schedule_restart(c, time.time() - started)
        elif c.cfg.auto_remove and c.id in self.containers:
            await self.remove(c.id, force=True, volumes=True)   # --rm: anonymous volumes too

    # ---- restart policies -----------------------------------------------------------------------
    def should_restart(self, c: Container, code: int) -> bool:
        """docker's restartmanager.ShouldRestart: never after a user's stop/kill."""
        name, max_retries = c.restart_policy
        if c.state["Status"] == states.REMOVING:
            return False
        return rules.should_restart(name, max_retries, c.restart_count, code, c.manually_stopped)

    def schedule_restart(self, c: Container, ran_for: float) -> None:
        """Back-off: 100 ms, doubled after every restart, at most a minute; back to 100 ms when the
        container had run for 10 s or more (it was healthy for a while)."""
        c.backoff = rules.next_backoff(c.backoff, ran_for)
        self.transition(c, "policy")

        async def later(delay=c.backoff):
            await asyncio.sleep(delay)
            if c.state["Status"] != states.RESTARTING or c.id not in self.containers:
                return
            c.restart_count += 1
            c.restart_starting = True
            try:
                # Shielded: a start cut in half would leave a paused process behind. stop/rm wait
                # for it instead (see stop()).
                await asyncio.shield(self.start(c.id, restarting=True))
                if c.state["Status"] == states.RUNNING:  # (it may have exited already)
                    self.transition(c, "restart")
            except Exception as e:
                log.warning("restart of %s failed: %s", c.id[:12], e)
                if c.state["Status"] == states.RESTARTING:
                    self.transition(c, "exit", dict(Error=str(e)), exitCode=c.state["ExitCode"])
            finally:
                c.restart_starting = False

        c.restart_task = asyncio.create_task(later())

    async def settle_restart(self, c: Container) -> None:
        """If a policy restart is half-way through start(), let it finish (then stop it normally)."""
        if c.restart_task and not c.restart_task.done() and getattr(c, "restart_starting", False):
            try:
                await asyncio.shield(c.restart_task)
            except Exception:
                pass

    def cancel_restart(self, c: Container) -> bool:
        """Stop a pending restart (stop/rm during the back-off). True if there was one."""
        if c.state["Status"] != states.RESTARTING:
            return False
        if c.restart_task:
            c.restart_task.cancel()
        self.transition(c, "stop")
        return True

    async def connect_attach(self, c: Container, reader, writer, opts: dict, done: asyncio.Future) -> None:
        """Join a hijacked client connection to the monitor's stream for this container."""
        try:
            sock = await asyncio.to_thread(monitor.connect_ctl, c.dir, 5)
            sock.setblocking(False)
            mreader, mwriter = await asyncio.open_unix_connection(sock=sock)
            import json
            mwriter.write(json.dumps({"op": "attach", **opts}).encode() + b"\n")
            await mwriter.drain()
            ok = await mreader.readline()
            if ok.strip() != b"ok":
                raise OSError("container is not running")
        except OSError:
            if not done.done():
                done.set_result(None)
            return
        background(pipe_streams(reader, writer, mreader, mwriter, opts.get("stdin", False), done))

    async def attach(self, ref: str, reader, writer, opts: dict) -> asyncio.Future:
        """Returns a future that completes when the attach stream ends."""
        c = self.get(ref)
        done = asyncio.get_running_loop().create_future()
        if c.state["Status"] in (states.CREATED, states.RESTARTING) or (c.state["Status"] == states.EXITED and c.lock.locked()):
            c.pending_attach.append((reader, writer, opts, done))
        elif c.running:
            await self.connect_attach(c, reader, writer, opts, done)
        else:
            # Exited for good (no start under way): dockerd copies nothing and the stream ends at
            # once; a client asking logs=1 has had its replay already.
            done.set_result(None)
        return done

    async def wait(self, ref: str, condition: str) -> int:
        c = self.get(ref)
        loop = asyncio.get_running_loop()
        if condition in ("", "not-running"):
            if not c.running and c.state["Status"] != states.CREATED:
                return c.state["ExitCode"]
            if c.state["Status"] == states.CREATED and condition == "not-running":
                return c.state["ExitCode"]
            f = loop.create_future()
            c.next_exit.append(f)
            return await f
        if condition == "next-exit":
            f = loop.create_future()
            c.next_exit.append(f)
            return await f
        if condition == "removed":
            f = loop.create_future()
            c.removed.append(f)
            return await f
        raise InvalidRequest(f"invalid condition: {condition!r}")

    # ---- kill, stop, remove ---------------------------------------------------------------------
    async def kill(self, ref: str, sig) -> None:
        c = self.get(ref)
        num = signal_number(sig)
        states.check(c, "kill")
        if num in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):  # as dockerd: no restart after a kill
            c.manually_stopped = True
        self.transition(c, "kill", signal=num)
        await signal_container(c, num)
        self.thaw_after_signal(c)

    def thaw_after_signal(self, c: Container) -> None:
        """A frozen process cannot act on a signal: a signalled paused container is thawed."""
        if c.state["Status"] == states.PAUSED:
            runtime.resources.unpause(c.cfg)
            self.transition(c, "unpause")

    async def stop(self, ref: str, timeout: int | None, sig=None) -> None:
        c = self.get(ref)
        c.manually_stopped = True
        await self.settle_restart(c)
        if self.cancel_restart(c):  # restarting -> exited, event "stop"
            return
        if not c.running:
            c.save()
        states.check(c, "stop")  # 304 when it is stopped already
        num = signal_number(sig or c.cfg.stop_signal)
        if timeout is None:
            timeout = (c.request.get("StopTimeout") if isinstance(c.request.get("StopTimeout"), int) else 10)
        f = asyncio.get_running_loop().create_future()
        c.next_exit.append(f)
        self.transition(c, "stop")  # a request: its event follows the "die"
        self.transition(c, "kill", signal=num)
        await signal_container(c, num)
        self.thaw_after_signal(c)
        try:
            # A negative timeout waits for ever (docker's -1).
            await asyncio.wait_for(asyncio.shield(f), None if timeout < 0 else timeout)
        except asyncio.TimeoutError:
            if c.running:
                self.transition(c, "kill", signal=int(signal.SIGKILL))
            await signal_container(c, signal.SIGKILL)
            await f

    async def restart(self, ref: str, timeout: int | None, sig=None) -> None:
        c = self.get(ref)
        try:
            await self.stop(c.id, timeout, sig)
        except NotModified:
            pass
        await self.start(c.id)
        self.transition(c, "restart")

    def rename(self, ref: str, new_name: str) -> None:
        c = self.get(ref)
        if not new_name:
            raise InvalidRequest("Neither old nor new names may be empty")
        try:
            new_name = validate_name(new_name)
        except ConfigError as e:
            raise InvalidRequest(str(e))
        if new_name == c.name:
            raise InvalidRequest(f"Renaming a container with the same name as its current name")
        for other in self.containers.values():
            if other.name == new_name:
                raise Conflict(f'Conflict. The container name "/{new_name}" is already in use by container '
                               f'"{other.id}". You have to remove (or rename) that container to be able to '
                               "reuse that name.")
        old, c.name = c.name, new_name
        c.cfg.name = new_name
        c.save()
        self.emit(c, "rename", oldName="/" + old)

    async def prune(self, filters: dict | None = None) -> tuple[list[str], int]:
        """Remove every stopped container (``created``, ``exited``, ``dead``) matching the filters
        (``label``, ``until``). Returns (ids, bytes reclaimed)."""
        from .events import parse_timestamp
        until = None
        for v in (filters or {}).get("until", {}) or []:
            until = parse_timestamp(v)
        deleted, reclaimed = [], 0
        for c in list(self.containers.values()):
            if c.state["Status"] not in states.STOPPED:
                continue
            if filters and "label" in filters and not matches_filters(c, {"label": filters["label"]}):
                continue
            if until is not None and parse_rfc3339(c.created) * 1e9 > until:
                continue
            reclaimed += await asyncio.to_thread(dir_size, graph_driver(c)["Data"].get("UpperDir", ""))
            await self.remove(c.id)
            deleted.append(c.id)
        return deleted, reclaimed

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        """docker rm [-f] [-v]: ``volumes`` removes the container's anonymous volumes too."""
        c = self.get(ref)
        await self.settle_restart(c)
        if c.lock.locked() and c.state["Status"] == states.CREATED:
            async with c.lock:  # a start in progress: let it finish rather than pull the floor away
                pass
        if c.state["Status"] == states.REMOVING:  # a removal is under way (auto-remove, another rm)
            return
        states.check(c, "rm -f" if force else "rm")  # docker's 409 for a live container without -f
        self.cancel_restart(c)
        if c.running:
            c.manually_stopped = True
            self.transition(c, "rm -f")  # a request: the exit below makes it "exited"
            f = asyncio.get_running_loop().create_future()
            c.next_exit.append(f)
            # The whole tree through its cgroup: works on a paused container too.
            await asyncio.to_thread(runtime.resources.kill_tree, c.cfg)
            await signal_container(c, signal.SIGKILL)
            await f
            if c.id not in self.containers:  # auto-removed meanwhile
                return
        if c.state["Status"] == states.REMOVING:
            return
        self.transition(c, "rm")
        self.containers.pop(c.id, None)
        for conn in c.pending_attach:
            conn[1].close()
            if not conn[3].done():
                conn[3].set_result(None)
        mark("daemon", "remove: begin")
        await asyncio.to_thread(self.net.teardown, c)
        await asyncio.to_thread(delete_container_dir, c.dir)
        await asyncio.to_thread(self.release_snapshot, c)
        mark("daemon", "remove: network, directory and snapshots gone")
        from . import api_volumes
        await asyncio.to_thread(api_volumes.release, self, c.id, c.cfg.volume_mounts, volumes)
        for eid in c.exec_ids:
            self.execs.pop(eid, None)
        self.transition(c, "destroy")
        for f in c.removed + c.next_exit:
            if not f.done():
                f.set_result(c.state["ExitCode"])

    def prepare_snapshots(self, cid: str, image_top: str) -> list:
        """docker's two layers per container: "ID-init" (mount points the runtime binds over, kept
        out of diff and commit) committed on the image, and the writable "ID" on top of it."""
        snap = self.snapshotter
        # Leased from its commit until the writable layer stacks on it: between the two nothing
        # uses "ID-init", and a prune running meanwhile (another container's removal) must skip it.
        with snap.lease(cid + "-init"):
            snap.prepare(cid + "-init-active", image_top)
            try:
                unionfs.add_placeholders(snap, cid + "-init-active", files=PLACEHOLDER_FILES,
                                         dirs=PLACEHOLDER_DIRS)
                snap.commit(cid + "-init", cid + "-init-active")
            except BaseException:
                snap.remove(cid + "-init-active")
                raise
            try:
                return snap.prepare(cid, cid + "-init", labels={"container": cid})
            except BaseException:
                snap.remove(cid + "-init")
                raise

    def release_snapshot(self, c: Container) -> None:
        """The container's writable layer goes with it; layers no image names any more follow."""
        snap = self.snapshotter_for(c.cfg.storage_driver)
        for key in (c.id, c.id + "-init"):
            try:
                snap.remove(key)
            except unionfs.SnapshotNotFound:
                pass
            except unionfs.SnapshotError as e:
                log.warning("container %s: %s", c.id[:12], e)
        try:
            prune(self.images, snap)
        except Exception as e:  # a broken image must not fail an rm
            log.warning("pruning layers: %s", e)

    # ---- daemon restart -------------------------------------------------------------------------
    async def load(self) -> None:
        """Read every container back from disk and re-attach to those still running."""
        base = os.path.join(self.root, "containers")
        for cid in sorted(os.listdir(base)):
            d = os.path.join(base, cid)
            conf, st = await asyncio.to_thread(read_record, d), read_json(os.path.join(d, "state.json"))
            if not conf or not st:
                log.warning("removing half-created container directory %s", d)
                await asyncio.to_thread(delete_container_dir, d)
                continue
            c = Container(cid, d, ContainerConfig.from_dict(conf["runtime"]), conf["request"], st["created"], st["name"])
            c.state.update(st["state"])
            c.restart_count = st.get("restart_count", 0)
            c.manually_stopped = st.get("manually_stopped", False)
            self.containers[cid] = c
            from . import api_volumes
            api_volumes.reacquire(self, cid, c.cfg.volume_mounts)
            if c.state["Status"] in states.LIVE:
                # Re-attach; if the monitor died meanwhile, watch() reads exit.json (reconcile).
                c.watcher = asyncio.create_task(self.watch(c))
                self.arm_health(c, resume=True)
            elif c.state["Status"] == states.CREATED:
                # The daemon died between "create the process" and "start": that process still
                # waits before exec under its monitor. Kill it; the container stays "created".
                mon = read_json(os.path.join(d, "monitor.json"))
                if mon and mon.get("pid"):
                    runtime.signal_pid(mon["pid"], signal.SIGKILL)
                    await asyncio.sleep(0.1)
                    await asyncio.to_thread(self.reset_for_restart, c)
            elif c.state["Status"] == states.RESTARTING:  # the pending restart died with the daemon
                self.transition(c, "stop")
            elif c.state["Status"] == states.REMOVING:
                self.containers.pop(cid)
                await asyncio.to_thread(delete_container_dir, d)
        await asyncio.to_thread(self.sweep_snapshots)
        # Networking of containers still running is served again (DNS, proxies, rules); the rest goes.
        await asyncio.to_thread(self.net.m.recover, {c.id for c in self.containers.values()
                                                     if c.state["Status"] in ("running", "paused")})
        # dockerd starts the containers whose policy says so when it starts ("always", and
        # "unless-stopped" unless a user stopped them).
        for c in list(self.containers.values()):
            name, _ = c.restart_policy
            if c.state["Status"] == states.EXITED and not (c.watcher and not c.watcher.done()) and (
                    name == "always" or (name == "unless-stopped" and not c.manually_stopped)):
                try:
                    await self.start(c.id, restarting=True)
                except Exception as e:
                    log.warning("could not restart %s: %s", c.id[:12], e)

    def sweep_snapshots(self) -> list[str]:
        """After a crash: active snapshots no container owns (a half-done unpack, an init layer
        being prepared, a container directory that is gone) are removed, then unused layers."""
        removed = []
        snap = self.snapshotter
        for info in sorted(snap.list(), key=lambda i: -int(i.id)):   # children before parents
            owner = info.key.removesuffix("-init")
            if info.kind == unionfs.KIND_COMMITTED and not info.key.endswith("-init"):
                continue
            if owner in self.containers:
                continue
            try:
                snap.remove(info.key)
                removed.append(info.key)
            except unionfs.SnapshotError as e:
                log.warning("sweeping snapshot %s: %s", info.key, e)
        # Roots of older daemons kept a second copy of every layer in images/snapshots: adopt
        # it as the snapshotter's layers (or drop it), then free what nothing references.
        migrate(self.images, snap, os.path.join(self.images.root, "snapshots"))
        collect(self.images, self.snapshotters(), grace=60)
        return removed

    def snapshotters(self) -> list[unionfs.Snapshotter]:
        """The snapshotter of every driver this root has used (layers may be in each)."""
        base = os.path.join(self.root, "snapshots")
        drivers = [d for d in unionfs.DRIVERS if os.path.isdir(os.path.join(base, d))]
        return [self.snapshotter_for(d) for d in sorted(set(drivers) | {self.driver})]

    # ---- views ----------------------------------------------------------------------------------
    def inspect(self, ref: str) -> dict:
        c = self.get(ref)
        req = c.request
        host = dict(req.get("HostConfig") or {})
        host.setdefault("NetworkMode", "default")
        log_config = host.get("LogConfig") or {}  # validate.py admits json-file, local and none
        host["LogConfig"] = {"Type": log_config.get("Type") or "json-file", "Config": log_config.get("Config") or {}}
        host.setdefault("AutoRemove", c.cfg.auto_remove)
        host.setdefault("RestartPolicy", {"Name": "no", "MaximumRetryCount": 0})
        try:
            image_cfg = self.images.resolve(c.cfg.image_id).config.get("config", {})
        except Exception:
            image_cfg = {}
        return {
            "Id": c.id, "Created": c.created, "Path": c.cfg.argv[0], "Args": c.cfg.argv[1:],
            "State": dict(c.state), "Image": c.cfg.image_id,
            "ResolvConfPath": os.path.join(c.dir, "resolv.conf"),
            "HostnamePath": os.path.join(c.dir, "hostname"), "HostsPath": os.path.join(c.dir, "hosts"),
            "LogPath": os.path.join(c.dir, "container.log"), "Name": "/" + c.name,
            "RestartCount": c.restart_count, "Driver": c.cfg.storage_driver or "overlay", "Platform": "linux",
            "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": list(c.exec_ids) or None,
            "HostConfig": host,
            "GraphDriver": graph_driver(c),
            "Mounts": _mounts_of(c),
            "Config": {
                "Hostname": c.cfg.hostname, "Domainname": c.cfg.domainname, "User": c.cfg.user,
                "AttachStdin": bool(req.get("AttachStdin")), "AttachStdout": bool(req.get("AttachStdout")),
                "AttachStderr": bool(req.get("AttachStderr")), "Tty": c.cfg.tty,
                "OpenStdin": c.cfg.open_stdin, "StdinOnce": c.cfg.stdin_once, "Env": c.cfg.env,
                "Cmd": req.get("Cmd") if req.get("Cmd") else image_cfg.get("Cmd"),
                "Image": c.cfg.image_ref, "Volumes": req.get("Volumes"), "WorkingDir": c.cfg.working_dir,
                "Entrypoint": req.get("Entrypoint") if req.get("Entrypoint") is not None else image_cfg.get("Entrypoint"),
                "OnBuild": None, "Labels": c.cfg.labels, "StopSignal": c.cfg.stop_signal,
                **({"StopTimeout": req["StopTimeout"]} if req.get("StopTimeout") is not None else {}),
                **({"Healthcheck": hc} if (hc := req.get("Healthcheck") or image_cfg.get("Healthcheck")) else {})},
            "NetworkSettings": self.net.settings(c),
        }

    def summary(self, c: Container) -> dict:
        st = c.state
        if st["Status"] in ("running", "paused"):
            status = "Up " + human_duration(time.time() - parse_rfc3339(st["StartedAt"]))
            status += " (Paused)" if st["Status"] == "paused" else health.ps_suffix(st)
        elif st["Status"] == "restarting":
            status = f"Restarting ({st['ExitCode']}) " + human_duration(time.time() - parse_rfc3339(st["FinishedAt"])) + " ago"
        elif st["Status"] == "exited":
            status = f"Exited ({st['ExitCode']}) " + human_duration(time.time() - parse_rfc3339(st["FinishedAt"])) + " ago"
        else:
            status = st["Status"].capitalize()
        return {"Id": c.id, "Names": ["/" + c.name], "Image": c.cfg.image_ref, "ImageID": c.cfg.image_id,
                "Command": " ".join(c.cfg.argv), "Created": int(parse_rfc3339(c.created)),
                "Ports": self.net.summary_ports(c), "Labels": c.cfg.labels, "State": st["Status"], "Status": status,
                "HostConfig": {"NetworkMode": (c.request.get("HostConfig") or {}).get("NetworkMode") or "default"},
                "NetworkSettings": {"Networks": self.net.summary_networks(c)}, "Mounts": _mounts_of(c)}

    def list(self, all_: bool = False, filters: dict | None = None, limit: int = -1) -> list[dict]:
        items = sorted(self.containers.values(), key=lambda c: c.created, reverse=True)
        out = []
        for c in items:
            if not all_ and not c.running and not filters:
                continue
            if filters and not matches_filters(c, filters):
                continue
            out.append(self.summary(c))
        return out[:limit] if limit and limit > 0 else out


def _mounts_of(c: Container) -> list[dict]:
    from .api_volumes import inspect_mounts
    return inspect_mounts(c.cfg.volume_mounts)


def graph_driver(c: Container) -> dict:
    """docker inspect's GraphDriver: the driver and the directories its mounts use."""
    data = {"MergedDir": os.path.join(c.dir, "rootfs")}
    for m in c.cfg.rootfs_mounts:
        if m.get("fstype") == "overlay":
            opts = dict(o.partition("=")[::2] for o in (m.get("data") or "").split(","))
            base = m.get("cwd") or ""
            full = lambda p: os.path.join(base, p)  # noqa: E731 - relative paths when options are long
            data.update(LowerDir=":".join(full(p) for p in opts.get("lowerdir", "").split(":")),
                        UpperDir=full(opts.get("upperdir", "")), WorkDir=full(opts.get("workdir", "")))
        else:
            data["UpperDir"] = m.get("source") or ""
    if not c.cfg.rootfs_mounts:
        data.update(LowerDir=":".join(c.cfg.lowerdirs), UpperDir=c.cfg.upperdir, WorkDir=c.cfg.workdir)
    return {"Name": c.cfg.storage_driver or "overlay", "Data": data}


_background: set[asyncio.Task] = set()


# ---- the bundle: specconv writes config.json (OCI); the daemon's own record is container.json ----

def write_bundle(directory: str, cfg: ContainerConfig, request: dict, console, warnings: list[str],
                 netns_path: str | None = None, userns_remap: dict | None = None) -> None:
    """Lay out the container directory — the OCI bundle (config.json, rootfs/), the /etc files, the
    daemon's record — or nothing: a failure removes the directory. Nothing runs yet ("created")."""
    from .. import rootfs
    from . import specconv
    os.makedirs(directory, mode=0o710)
    try:
        os.mkdir(os.path.join(directory, "rootfs"), 0o755)  # the mount point; layers: the snapshot
        rootfs.write_etc_files(directory, cfg.hostname)
        spec = specconv.to_spec(cfg, request.get("HostConfig"), directory, warnings=warnings, config=request,
                                netns_path=netns_path, userns_remap=userns_remap)
        atomic_write_json(os.path.join(directory, "config.json"), spec)
        atomic_write_json(os.path.join(directory, "container.json"), {
            "request": request, "runtime": cfg.to_dict(),
            "monitor": {"tty": cfg.tty, "open_stdin": cfg.open_stdin, "stdin_once": cfg.stdin_once,
                        "console_size": console}})
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


def read_record(d: str) -> dict | None:
    """The daemon's record of a container. Directories written before the OCI bundle had it in
    config.json ({"request", "runtime", "console_size"}): migrate them (the spec is made anew)."""
    rec = read_json(os.path.join(d, "container.json"))
    if rec is not None:
        return rec
    old = read_json(os.path.join(d, "config.json"))
    if not old or "runtime" not in old:
        return None
    from . import specconv
    cfg = ContainerConfig.from_dict(old["runtime"])
    rec = {"request": old["request"], "runtime": old["runtime"],
           "monitor": {"tty": cfg.tty, "open_stdin": cfg.open_stdin, "stdin_once": cfg.stdin_once,
                       "console_size": old.get("console_size")}}
    try:
        spec = specconv.to_spec(cfg, old["request"].get("HostConfig"), d)
    except ConfigError as e:
        log.warning("container %s: cannot make its OCI spec: %s", os.path.basename(d)[:12], e)
        return None
    atomic_write_json(os.path.join(d, "container.json"), rec)
    atomic_write_json(os.path.join(d, "config.json"), spec)
    return rec


def delete_container_dir(d: str) -> None:
    """The runtime's delete (cgroup, runtime state), then the directory."""
    root, cid = os.path.dirname(d), os.path.basename(d)
    if os.path.exists(os.path.join(d, runtime.STATE_FILE)):
        try:
            runtime.delete(root, cid, force=True)
        except (runtime.ContainerError, OSError) as e:
            log.warning("runtime delete of %s: %s", cid[:12], e)
    else:  # never started: the record's cgroup (if a crash left one) goes too
        try:
            rec = read_json(os.path.join(d, "container.json")) or {}
            if rec.get("runtime"):
                runtime.resources.destroy(ContainerConfig.from_dict(rec["runtime"]))
        except OSError:
            pass
    shutil.rmtree(d, ignore_errors=True)


async def signal_container(c: "Container", sig: int) -> None:
    """Through the monitor, which holds the container's pidfd; if it is gone, a pidfd of our own.

    In a thread, never on the event loop: the loop is what carries the ``wait`` this container's
    watcher sends the same monitor, and every other client's requests."""
    try:
        await asyncio.to_thread(monitor.request, c.dir, {"op": "kill", "signal": int(sig)}, timeout=5)
    except OSError:
        runtime.signal_pid(c.state["Pid"], sig)


def background(coro) -> asyncio.Task:
    """Run ``coro`` as a fire-and-forget task *and keep it alive*. The event loop holds tasks only
    weakly: a task nobody references can be garbage-collected while it is still waiting ("Task was
    destroyed but it is pending!"), which silently cut attach streams before this existed."""
    task = asyncio.create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


class StartError(Exception):
    pass


RESTART_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")


def validate_restart_policy(host: dict) -> None:
    """dockerd's checks on HostConfig.RestartPolicy (and its clash with AutoRemove)."""
    p = host.get("RestartPolicy") or {}
    if not isinstance(p, dict):
        raise InvalidRequest("RestartPolicy must be an object")
    name, count = p.get("Name") or "", p.get("MaximumRetryCount") or 0
    if name not in RESTART_POLICIES:
        raise InvalidRequest(f"invalid restart policy: unknown policy '{name}'; use one of "
                             "'no', 'always', 'on-failure', or 'unless-stopped'")
    if not isinstance(count, int) or count < 0:
        raise InvalidRequest("invalid restart policy: maximum retry count must be a positive integer")
    if count and name != "on-failure":
        raise InvalidRequest(f"invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if host.get("AutoRemove") and name not in ("", "no"):
        raise InvalidRequest("can't create 'AutoRemove' container with restart policy")


def dir_size(path: str) -> int:
    total = 0
    for base, dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(base, f)).st_size
            except OSError:
                pass
    return total


def matches_filters(c: Container, filters: dict) -> bool:
    def values(key):
        v = filters.get(key)
        if v is None:
            return None
        return list(v.keys()) if isinstance(v, dict) else list(v)

    for key in filters:
        vals = values(key)
        if key == "status" and c.state["Status"] not in vals:
            return False
        if key == "name" and not any(v.lstrip("/") in c.name for v in vals):
            return False
        if key == "id" and not any(c.id.startswith(v) for v in vals):
            return False
        if key == "label":
            for v in vals:
                k, _, want = v.partition("=")
                if k not in c.cfg.labels or (want and c.cfg.labels[k] != want):
                    return False
        if key == "ancestor" and not any(v in (c.cfg.image_ref, c.cfg.image_id) for v in vals):
            return False
        if key == "health" and (c.state.get("Health") or {}).get("Status", "none") not in vals:
            return False  # starting, healthy, unhealthy, or none (no health check)
    return True


async def pipe_streams(creader, cwriter, mreader, mwriter, with_stdin: bool, done: asyncio.Future) -> None:
    """Copy monitor -> client until the monitor closes; client -> monitor (stdin) until client EOF.

    The client may half-close at once (the docker CLI does when it has no stdin): that only ends the
    stdin direction; output keeps flowing until the container's stream ends."""
    async def upstream():
        try:
            while True:
                data = await creader.read(65536)
                if not data:
                    break
                if with_stdin:
                    mwriter.write(data)
                    await mwriter.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                if mwriter.can_write_eof():
                    mwriter.write_eof()
            except OSError:
                pass

    up = asyncio.create_task(upstream())
    try:
        while True:
            data = await mreader.read(65536)
            if not data:
                break
            cwriter.write(data)
            await cwriter.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        up.cancel()
        for w in (mwriter, cwriter):
            try:
                w.close()
            except Exception:
                pass
        if not done.done():
            done.set_result(None)
