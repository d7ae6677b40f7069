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


def explain(cfg: ContainerConfig, pid: str = "PID") -> list[str]:
    """The cgroup writes :func:`setup` would make, without touching the real cgroupfs: the same
    driver code runs against a scratch copy of the hierarchy roots (a fake cgroupfs), and we list
    what it wrote."""
    import os
    import shutil
    import tempfile

    from ..cgroups import driver
    layout = cgroups.detect()
    scratch = tempfile.mkdtemp(prefix="md-explain-")
    real_roots = sorted(set(layout.v1.values()) | ({layout.unified} if layout.unified else set()))
    fake_of = {r: os.path.join(scratch, str(i)) for i, r in enumerate(real_roots)}
    fake = cgroups.Layout(layout.mode, {c: fake_of[m] for c, m in layout.v1.items()},
                          fake_of.get(layout.unified) if layout.unified else None)
    path = cgroups.cgroup_path(cfg.cgroup_parent, cfg.id)
    driver.FAKE_ROOTS.append(scratch)
    try:
        for real, f in fake_of.items():
            # Each level of the fake tree gets the real root's values that the driver reads.
            for level in ("", path.strip("/").split("/")[0], path.strip("/")):
                d = os.path.join(f, level)
                os.makedirs(d, exist_ok=True)
                for name in os.listdir(real):
                    src = os.path.join(real, name)
                    if os.path.isfile(src) and not os.path.exists(os.path.join(d, name)):
                        keep = name in ("cgroup.controllers", "cpuset.cpus", "cpuset.mems") and level != path.strip("/")
                        with open(os.path.join(d, name), "w") as out:
                            out.write(driver.read(real, name) if keep else "")
        driver.RECORDING.writes = writes = []
        cg = cgroups.open_cgroup(path, fake)
        cg.create()
        cg.apply(cgroups.Limits.from_dict(cfg.resources))
        cg.add(pid)
        real = {f: r for r, f in fake_of.items()}
        back = lambda p: next(r + p[len(f):] for f, r in real.items() if p.startswith(f + "/"))  # noqa: E731
        lines = [f"  mkdir -p {back(d)}" for d in cg.directories()]
        lines += [f"  write {value!r:>12} > {back(p)}" for p, value in writes]
        return lines
    finally:
        driver.RECORDING.writes = None
        driver.FAKE_ROOTS.remove(scratch)
        shutil.rmtree(scratch, ignore_errors=True)

