"""The daemon's record of a container: what it keeps in memory and on disk, and how it goes away.

What this teaches
-----------------
A container is a directory, ``ROOT/containers/<id>/``, that is at once

* the **OCI bundle** the runtime reads (``config.json`` made by ``specconv``, ``rootfs/`` the mount
  point; OCI runtime spec, "Filesystem Bundle"),
* the runtime's **state directory** (``runtime.json``, ``exec.fifo``; runc's ``state.json``),
* the daemon's **record**: ``container.json`` (the create request as the client sent it, the
  resolved ``ContainerConfig``, the monitor's options) written once at create, and ``state.json``
  (docker's ``State`` object, name, restart count) rewritten atomically on every change.

:class:`Container` is the in-memory side: the same facts plus what only lives as long as the daemon
(futures of clients waiting for an exit, the lock held by a start, the restart and health timers).
A directory is written whole or not at all (:func:`write_bundle`), and removed after the runtime's
own ``delete`` (:func:`delete_container_dir`). :func:`read_record` migrates directories written by
older daemons, whose record was inside ``config.json``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil

from .. import runtime
from ..util import ZERO_TIME, atomic_write_json, read_json
from . import state as states
from .config import ConfigError, ContainerConfig

log = logging.getLogger("minidockerd")


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


def load_container(d: str) -> Container | None:
    """The container of directory ``d`` as the last daemon left it, or None when its record is
    half-written (a crash during create)."""
    conf, st = read_record(d), read_json(os.path.join(d, "state.json"))
    if not conf or not st:
        return None
    c = Container(os.path.basename(d), d, ContainerConfig.from_dict(conf["runtime"]), conf["request"],
                  st["created"], st["name"])
    c.state.update(st["state"])
    c.restart_count = st.get("restart_count", 0)
    c.manually_stopped = st.get("manually_stopped", False)
    return c


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
