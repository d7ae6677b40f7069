"""Daemon start: read every container back from disk and pick up where the last daemon left off.

What this teaches
-----------------
Containers outlive the daemon (dockerd's ``--live-restore``, always on here): each one's monitor
holds its process and writes ``exit.json`` when it ends. A starting daemon reads every
``ROOT/containers/<id>/`` record (``record.load_container``) and reconciles it with what is
still there, state by state:

* ``running`` / ``paused``: a watcher takes up the ``wait`` on the monitor again — if the
  container exited meanwhile the exit is read from ``exit.json`` and recorded now;
* ``created`` with a monitor (the daemon died between create and exec): that process is killed,
  the container stays ``created``;
* ``restarting`` (its pending restart died with the daemon): ``exited``;
* ``removing``, or a half-written directory: finished off.

Then the crash's leftovers go (snapshots nobody owns: ``snapshots.sweep_snapshots``; networking
of containers that are gone), and, as dockerd does, containers whose restart policy says so
(``always``; ``unless-stopped`` unless a user stopped them) are started.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal

from .. import runtime
from ..util import read_json
from . import state as states
from .record import delete_container_dir, load_container

log = logging.getLogger("minidockerd")


class Recovery:
    """The engine's daemon-start recovery (a mixin of ``engine.Engine``)."""

    async def load(self) -> None:
        """Read every container back from disk and re-attach to those still running."""
        from . import api_volumes
        base = os.path.join(self.root, "containers")
        for cid in sorted(os.listdir(base)):
            d = os.path.join(base, cid)
            c = await asyncio.to_thread(load_container, d)
            if c is None:
                log.warning("removing half-created container directory %s", d)
                await asyncio.to_thread(delete_container_dir, d)
                continue
            self.containers[cid] = c
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
