"""A container's life after create: start, exit, kill, stop, restart, remove, prune.

What this teaches
-----------------
Each verb drives the state machine (``state.py``, the table ``rules.TRANSITIONS``) and asks the
runtime for the kernel work; the engine itself makes no syscall that matters.

* **start** (``docker start``, moby's ``daemon/start.go``): wire the network namespace, have the
  container's monitor (``runtime/monitor.py``) create it paused before exec, connect the clients
  that attached early, then let it exec and record ``running``.
* **exit**: a watcher task holds a ``wait`` request on the monitor; the exit it reports is
  recorded (``exited``, event ``die``), the ``wait`` futures are completed, then the restart
  policy (``restart.py``) or ``--rm`` decides what follows. A restarted daemon re-establishes the
  watchers (``recovery.py``) — containers outlive the daemon.
* **kill / stop / rm -f** are *requests*: a signal through the monitor; the container becomes
  ``exited`` through the exit that follows. ``stop`` sends the stop signal, waits the timeout
  (``StopTimeout``, 10 s; -1 for ever), then SIGKILL. A user's kill or stop disables the restart
  policy until the next start.
* **remove** (``docker rm``): network, then side by side the directory (after the runtime's
  ``delete``), the writable layer and the volumes, then ``destroy``; whoever waited for
  ``removed`` is told last — after the files are gone, as docker answers.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import time

from .. import runtime
from ..runtime import monitor
from ..timing import mark
from ..util import ZERO_TIME, now_rfc3339, parse_rfc3339, read_json
from . import health, state as states
from .volumes import release as release_volumes
from .errors import InvalidRequest, NotModified, StartError
from .record import runtime_delete
from .views import dir_size, graph_driver, matches_filters

log = logging.getLogger("minidockerd")


class Lifecycle:
    """The engine's lifecycle verbs (a mixin of ``engine.Engine``)."""

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
            mark("daemon", "start: the monitor let it exec")
            if reply.get("error"):
                await asyncio.to_thread(self.net.teardown, c)
                states.record(c, Error=reply["error"], ExitCode=128)
                raise StartError(reply["error"])
            c.watcher = asyncio.create_task(self.watch(c))
            self.transition(c, "start", dict(Pid=pid, ExitCode=0, Error="", FinishedAt=ZERO_TIME, OOMKilled=False,
                                             StartedAt=reply.get("started_at") or now_rfc3339()))
            mark("daemon", "start: state recorded (running), watcher armed")
            self.arm_health(c)
            mark("daemon", "start: health check armed")

    def reset_for_restart(self, c) -> None:
        for f in ("exit.json", "monitor.json"):
            try:
                os.unlink(os.path.join(c.dir, f))
            except FileNotFoundError:
                pass

    def arm_health(self, c, resume: bool = False) -> None:
        """The health check's timer (daemon/health.py) for a container that runs now."""
        try:
            image_cfg = self.images.resolve(c.cfg.image_id).config.get("config", {})
        except Exception:
            image_cfg = {}
        health.begin(self, c, image_cfg, resume=resume)

    async def watch(self, c) -> None:
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
                exit_rec = json.loads(line)
        except (OSError, ValueError) as e:
            log.debug("wait on monitor of %s failed: %s", c.id[:12], e)
        mark("daemon", "exit: reported by the monitor")
        if exit_rec is None:
            exit_rec = read_json(os.path.join(c.dir, "exit.json")) or {
                "exit_code": 255, "finished_at": now_rfc3339(), "error": "the container's monitor disappeared"}
        await self.on_exit(c, exit_rec)

    async def on_exit(self, c, rec: dict) -> None:
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

    async def kill(self, ref: str, sig) -> None:
        c = self.get(ref)
        num = signal_number(sig)
        states.check(c, "kill")
        if num in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):  # as dockerd: no restart after a kill
            c.manually_stopped = True
        self.transition(c, "kill", signal=num)
        await signal_container(c, num)
        self.thaw_after_signal(c)

    def thaw_after_signal(self, c) -> None:
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
        await asyncio.to_thread(self.release_processes, c)
        # Nothing runs in the container any more: the rest is independent, so side by side (each
        # in a thread, the disk work of one overlapping the others'): the directory, the writable
        # layer (and unused layers), the volumes' references (and anonymous volumes: --rm, -v).
        await asyncio.gather(asyncio.to_thread(shutil.rmtree, c.dir, ignore_errors=True),
                             asyncio.to_thread(self.release_snapshot, c),
                             asyncio.to_thread(release_volumes, self, c.id, c.cfg.volume_mounts, volumes))
        mark("daemon", "remove: network, directory, snapshot and volumes gone")
        for eid in c.exec_ids:
            self.execs.pop(eid, None)
        self.transition(c, "destroy")
        for f in c.removed + c.next_exit:
            if not f.done():
                f.set_result(c.state["ExitCode"])

    def release_processes(self, c) -> None:
        """Before a removal's files go: the network (address, namespace) and the runtime's delete
        (processes left in the cgroup, the cgroup, the runtime's state)."""
        self.net.teardown(c)
        runtime_delete(c.dir)

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


async def signal_container(c, sig: int) -> None:
    """Through the monitor, which holds the container's pidfd; if it is gone, a pidfd of our own.

    In a thread, never on the event loop: the loop is what carries the ``wait`` this container's
    watcher sends the same monitor, and every other client's requests."""
    try:
        await asyncio.to_thread(monitor.request, c.dir, {"op": "kill", "signal": int(sig)}, timeout=5)
    except OSError:
        runtime.signal_pid(c.state["Pid"], sig)
