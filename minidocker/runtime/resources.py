"""The runtime's side of cgroups: a container's config -> its cgroup, and the verbs that use it.

The monitor calls :func:`setup` right after the container's pid 1 exists and before it may exec
(see monitor.py), and :func:`finish` after it exited (the OOM counter, then the group is removed).
The daemon calls :func:`pause`, :func:`unpause`, :func:`kill_tree`, :func:`stats` and, on
``rm``, :func:`destroy`.
"""
from __future__ import annotations

from .. import cgroups
from .config import ContainerConfig


def cgroup_of(cfg: ContainerConfig):
    return cgroups.open_cgroup(cgroups.cgroup_path(cfg.cgroup_parent, cfg.id))


def setup(cfg: ContainerConfig, pid: int) -> list[str]:
    """Create the container's cgroup, set its limits, move ``pid`` in. Returns what could not be
    enforced. On failure nothing is left behind."""
    cg = cgroup_of(cfg)
    try:
        cg.create()
        missing = cg.apply(cgroups.Limits.from_dict(cfg.resources))
        cg.add(pid)
    except BaseException:
        try:
            cg.destroy()
        except OSError:
            pass
        raise
    return missing


def finish(cfg: ContainerConfig) -> bool:
    """After pid 1 exited: was it the OOM killer? Then kill stragglers and remove the group."""
    cg = cgroup_of(cfg)
    oom = False
    try:
        oom = cg.oom_kills() > 0
    except OSError:
        pass
    destroy(cfg)
    return oom


def destroy(cfg: ContainerConfig) -> None:
    cg = cgroup_of(cfg)
    if cg.frozen():
        cg.thaw()
    cg.destroy()


def pause(cfg: ContainerConfig) -> None:
    cgroup_of(cfg).freeze()


def unpause(cfg: ContainerConfig) -> None:
    cgroup_of(cfg).thaw()


def kill_tree(cfg: ContainerConfig) -> None:
    """SIGKILL every process of the container, frozen or not (v2 cgroup.kill, v1 a walk)."""
    cg = cgroup_of(cfg)
    if cg.exists():
        cg.kill()
        if cg.frozen():
            cg.thaw()


def stats(cfg: ContainerConfig, running: bool, pre: dict | None = None) -> dict:
    from ..cgroups.stats import docker_stats
    cg = cgroup_of(cfg)
    raw = cg.stats() if running and cg.exists() else None
    return docker_stats(raw, cid=cfg.id, name=cfg.name, pre=pre)
