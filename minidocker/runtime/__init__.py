"""The runtime: a container = config + root filesystem + namespaces, behind a small interface.

What this teaches
-----------------
OCI runtimes (runc, crun, youki) expose five verbs — create, start, kill, delete, state — and keep
everything else out. minidocker's runtime does the same for the daemon above it:

* :func:`create` lays out the container's directory (config, writable layer, /etc files) — a
  rollback list undoes every step if a later one fails, so nothing half-made is left;
* :func:`start` starts the per-container monitor (``monitor.py``), which creates the namespaces and
  runs the container's init up to just before exec, then tells it to exec;
* :func:`kill` signals the container's pid 1; :func:`state` reads what the monitor recorded;
* :func:`delete` removes the directory; the container's mounts lived in its own mount namespace and
  disappeared with its last process, so there is nothing to unmount on the host.

Directory of a container (``ROOT/containers/ID/``): ``config.json`` (the API request and the
internal config), ``state.json`` (the daemon's record), ``rootfs/`` (the mount point, empty on the
host; the writable layer is a snapshot, ``ROOT/snapshots/<driver>/``), ``hostname``, ``hosts``, ``resolv.conf``,
``container.log`` (json-file), ``ctl.sock`` (the monitor), ``monitor.json``, ``exit.json``.
"""
from __future__ import annotations

import os
import shutil
import signal as _signal

from ..util import atomic_write_json, read_json
from .config import ContainerConfig
from . import monitor, resources  # noqa: F401  (resources: the cgroups chapter's verbs)


class Rollback:
    """Undo steps pushed as work is done; ``unwind()`` runs them newest first (best effort)."""

    def __init__(self):
        self.steps = []

    def push(self, fn, *args):
        self.steps.append((fn, args))

    def unwind(self):
        while self.steps:
            fn, args = self.steps.pop()
            try:
                fn(*args)
            except Exception:
                pass

    def clear(self):
        self.steps.clear()


def create(container_dir: str, cfg: ContainerConfig, request: dict, console_size=None) -> None:
    """Lay out the container directory. Nothing runs yet (docker's "created" state)."""
    from .. import rootfs
    undo = Rollback()
    try:
        os.makedirs(container_dir, mode=0o710)
        undo.push(shutil.rmtree, container_dir, True)
        os.mkdir(os.path.join(container_dir, "rootfs"), 0o755)  # layers: the snapshotter's
        rootfs.write_etc_files(container_dir, cfg.hostname)
        atomic_write_json(os.path.join(container_dir, "config.json"),
                          {"request": request, "runtime": cfg.to_dict(), "console_size": console_size})
        undo.clear()
    finally:
        undo.unwind()


def start(container_dir: str) -> int:
    """Create the container's processes and let it exec. Returns the host pid of its pid 1."""
    created = monitor.spawn_monitor(container_dir)
    monitor.request(container_dir, {"op": "start"})
    return created["pid"]


def spawn_paused(container_dir: str) -> int:
    """Only the "create" half of start: the container waits before exec until :func:`release`."""
    return monitor.spawn_monitor(container_dir)["pid"]


def release(container_dir: str) -> dict:
    return monitor.request(container_dir, {"op": "start"})


def kill(pid: int, sig: int = _signal.SIGTERM) -> None:
    """Signal the container's pid 1 (through a pidfd, so a recycled pid is never hit)."""
    if pid <= 0:  # already exited (the daemon cleared its pid)
        return
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        _signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        pass
    finally:
        os.close(fd)


def state(container_dir: str) -> dict:
    """What the monitor knows: running (its pid), or the exit record it left."""
    ex = read_json(os.path.join(container_dir, "exit.json"))
    if ex is not None:
        return {"status": "exited", **ex}
    try:
        st = monitor.request(container_dir, {"op": "state"}, timeout=2)
        return {"status": "running" if st.get("started") else "created", "pid": st.get("pid")}
    except OSError:
        return {"status": "unknown"}


def delete(container_dir: str) -> None:
    """Remove the container's cgroup (waiting until it is empty), then its directory."""
    conf = read_json(os.path.join(container_dir, "config.json"))
    if conf and conf.get("runtime"):
        from . import resources
        resources.destroy(ContainerConfig.from_dict(conf["runtime"]))
    shutil.rmtree(container_dir, ignore_errors=True)
