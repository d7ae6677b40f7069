"""The runtime's side of cgroups: the OCI spec's ``linux.cgroupsPath`` and ``linux.resources`` ->
the container's cgroup, and the verbs that use it.

``runtime.create`` calls :func:`setup` right after the container's pid 1 exists and before it does
anything else (it makes its cgroup namespace once it is inside: init.py), and :func:`finish` /
:func:`destroy` after it exited. The device cgroup (``linux.resources.devices``: v1 ``devices.*``
files, v2 an eBPF program) is set up here too, where the cgroup is created, through the security
chapter. Verbs accept a cgroup path (``/minidocker/ID``) or an object with ``id`` and
``cgroup_parent`` (the daemon's record).
"""
from __future__ import annotations

import os

from .. import cgroups


def cgroup_path(spec: dict, cid: str) -> str:
    """``linux.cgroupsPath`` (relative to each hierarchy's root), or ``/ID`` without one (runc)."""
    path = (spec.get("linux") or {}).get("cgroupsPath") or cid
    if ":" in path:
        raise ValueError(f"cgroupsPath {path!r}: systemd-style paths need the systemd cgroup driver, "
                         "which minidocker does not have")
    return "/" + path.strip("/")


def _path(x) -> str:
    return x if isinstance(x, str) else cgroups.cgroup_path(x.cgroup_parent, x.id)


def cgroup_of(x):
    return cgroups.open_cgroup(_path(x))


def _devices_dir(cg) -> str | None:
    """The directory whose device rules apply: v1 the devices hierarchy, v2 the group itself."""
    return cg.dir("devices") if cg.version == "v1" else cg.dir


def apply_devices(k, cg, rules: list[dict]) -> None:
    """``linux.resources.devices`` -> v1 devices.deny/allow, or a v2 BPF_PROG_TYPE_CGROUP_DEVICE
    program (the security chapter compiles it)."""
    from ..security import devices
    d = _devices_dir(cg)
    if d is None:
        raise OSError("linux.resources.devices is set but no devices controller is mounted")
    if cg.version == "v1":
        devices.apply_v1(d, rules, k)
    else:
        devices.attach_v2(k, d, rules)


def setup(spec: dict, cid: str, pid: int, layout=None) -> list[str]:
    """Create the container's cgroup, set its limits, move ``pid`` in. Returns what could not be
    enforced. On failure nothing is left behind. (The device rules come later: :func:`set_devices`.)
    ``layout``: the host's, if already read (:func:`prepare`)."""
    res = (spec.get("linux") or {}).get("resources") or {}
    cg = cgroups.open_cgroup(cgroup_path(spec, cid), layout)
    try:
        cg.create()
        missing = cg.apply(cgroups.Limits.from_oci(res))
        cg.add(pid)
    except BaseException:
        try:
            cg.destroy()
        except OSError:
            pass
        raise
    return missing


_prepared = None   # (pid, prepared): the one prepare() of this process (a fork starts afresh)


def prepare():
    """Start (once: the CLI calls it before reading config.json, create again) what :func:`setup`
    needs that does not depend on the container: the host's cgroup layout, and — in a thread —
    the kernel's cgroup attach lock kept warm (``cgroups.warm_attach``: its first taker after an
    idle spell waits for an RCU grace period; takers within a grace period of the last one do
    not). ``prepared()``, called once the init is forked, stops the thread and returns the layout
    for :func:`setup`. The thread only makes the system call (it holds no GIL while it waits):
    Python work in it would hold up this one, which needs the GIL back to go on."""
    global _prepared
    if _prepared and _prepared[0] == os.getpid():
        return _prepared[1]
    import _thread   # threading.Thread.start() waits until the new thread runs: not needed here
    try:
        layout = cgroups.detect()
    except OSError:
        layout = None
    procs = cgroups.own_procs_file(layout) if layout else None
    done, finished = _thread.allocate_lock(), _thread.allocate_lock()
    done.acquire()
    finished.acquire()

    def keep_warm():
        try:
            # Re-take the lock every few ms (a ~0.1 ms no-op once warm) until the real move comes,
            # however long the spec and the fork take meanwhile — for 2 s at most, should the
            # caller fail before it calls prepared().
            for _ in range(500):
                if not cgroups.warm_attach(procs) or done.acquire(timeout=0.004):
                    break
        finally:
            finished.release()

    if procs:
        _thread.start_new_thread(keep_warm, ())
    else:
        finished.release()

    def prepared():
        global _prepared
        if done.locked():
            done.release()
        finished.acquire()
        finished.release()
        _prepared = None
        return layout
    _prepared = (os.getpid(), prepared)
    return prepared


def set_devices(spec: dict, cid: str, kernel=None) -> None:
    """The device rules, once the init has made its /dev (runc sets them after "ready" too: the
    init's own mknod of the default devices must not be refused)."""
    from .. import kernel as K
    rules = ((spec.get("linux") or {}).get("resources") or {}).get("devices")
    if rules:
        apply_devices(kernel or K.Linux(), cgroups.open_cgroup(cgroup_path(spec, cid)), rules)


def update(path: str, res: dict) -> list[str]:
    """``runc update``: new limits for a running container."""
    return cgroups.open_cgroup(path).apply(cgroups.Limits.from_oci(res))


def finish(x) -> bool:
    """After pid 1 exited: was it the OOM killer? Then kill stragglers and remove the group."""
    cg = cgroup_of(x)
    oom = False
    try:
        oom = cg.oom_kills() > 0
    except OSError:
        pass
    destroy(x)
    return oom


def destroy(x) -> None:
    cg = cgroup_of(x)
    if cg.frozen():
        cg.thaw()
    cg.destroy()


def pause(x) -> None:
    cgroup_of(x).freeze()


def unpause(x) -> None:
    cgroup_of(x).thaw()


def kill_tree(x) -> None:
    """SIGKILL every process of the container, frozen or not (v2 cgroup.kill, v1 a walk)."""
    cg = cgroup_of(x)
    try:
        if cg.exists():
            cg.kill()
            if cg.frozen():
                cg.thaw()
    except FileNotFoundError:
        # The last process died and its monitor removed the group meanwhile (a group is only
        # removed once empty): nothing is left to kill.
        pass


def stats(cfg, running: bool, pre: dict | None = None) -> dict:
    from ..cgroups.stats import docker_stats
    cg = cgroup_of(cfg)
    raw = cg.stats() if running and cg.exists() else None
    return docker_stats(raw, cid=cfg.id, name=cfg.name, pre=pre)


def explain(spec: dict, path: str | None = None, pid: str = "PID") -> list[str]:
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
    path = path or cgroup_path(spec, "ID")
    res = (spec.get("linux") or {}).get("resources") or {}
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
        cg.apply(cgroups.Limits.from_oci(res))
        cg.add(pid)
        real = {f: r for r, f in fake_of.items()}
        back = lambda p: next(r + p[len(f):] for f, r in real.items() if p.startswith(f + "/"))  # noqa: E731
        lines = [f"  mkdir -p {back(d)}" for d in cg.directories()]
        lines += [f"  write {value!r:>12} > {back(p)}" for p, value in writes]
        if res.get("devices"):  # set_devices, once pid 1 reports "ready" (its /dev is made)
            from .. import kernel as K
            rec = K.Recorder()
            apply_devices(rec, cg, res["devices"])
            lines.append("  # device rules, after pid 1 made its /dev (runtime.create, set_devices):")
            lines += [f"  write {c.args[1]!r:>12} > {back(c.args[0])}" if c.name == "write_file" else f"  {c}"
                      for c in rec.calls]
        return lines
    finally:
        driver.RECORDING.writes = None
        driver.FAKE_ROOTS.remove(scratch)
        shutil.rmtree(scratch, ignore_errors=True)

