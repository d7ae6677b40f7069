"""Control groups: the *limits* half of a container (namespaces are the *views* half).

What this teaches
-----------------
A cgroup is a directory in a special filesystem. Creating the directory creates the group; writing
a pid into its ``cgroup.procs`` moves that process (and everything it forks later) into it; writing
``memory.max``/``memory.limit_in_bytes``, ``pids.max``, ``cpu.max``/``cpu.cfs_quota_us`` sets a
limit; reading ``memory.current``, ``cpu.stat``, ``pids.current`` is the accounting; ``rmdir``
removes it once it is empty. Nothing else: no system call beyond open/read/write/mkdir/rmdir.

Linux has two versions of that filesystem, and a host has one of three *layouts*:

* **v1** — one hierarchy per controller (``/sys/fs/cgroup/memory``, ``/sys/fs/cgroup/pids``…), each
  with its own tree and its own file names;
* **v2** — one unified tree (``/sys/fs/cgroup``) where a parent *enables* controllers for its
  children through ``cgroup.subtree_control``;
* **hybrid** — v1 controllers plus a v2 tree (often ``/sys/fs/cgroup/unified``) with no controllers,
  used only for membership, freezing and killing.

As runc and youki do, the engine talks to one :class:`~.driver.Cgroup` interface, and
:func:`detect` + :func:`open_cgroup` choose the implementation (``v1.py`` or ``v2.py``) from what
``/proc/self/mountinfo`` shows. Each controller's files are in its own module (``memory.py``,
``cpu.py``, ``pids.py``, ``io.py``) with the v1 and v2 spellings side by side.

Man pages and specs: cgroups(7), cgroup_namespaces(7), the kernel's
Documentation/admin-guide/cgroup-v2.rst and cgroup-v1/{memory,pids,freezer-subsystem}.rst,
the OCI runtime spec's config-linux.md "Control groups", runc's libcontainer/cgroups.
"""
from __future__ import annotations

import os

from ..record import Record
from .limits import Limits, LimitError, parse_host_config  # noqa: F401  (the public surface)

DEFAULT_PARENT = "minidocker"
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "freezer", "devices")


class Layout(Record):
    """Where the cgroup filesystems are mounted. ``mode`` is "v1", "v2" or "hybrid"; ``v1`` maps
    a controller to its mount point; ``unified`` is the cgroup2 mount point, if any."""
    _fields = ("mode", "v1", "unified")

    def __init__(self, mode: str, v1: dict[str, str] | None = None, unified: str | None = None):
        self.mode, self.v1, self.unified = mode, {} if v1 is None else v1, unified

    def controllers(self) -> set[str]:
        """Controllers this layout can use for limits."""
        if self.mode == "v2" and self.unified:
            return set(read_words(os.path.join(self.unified, "cgroup.controllers")))
        return set(self.v1)


def read_words(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.read().split()
    except OSError:
        return []


def detect(mountinfo: str = "/proc/self/mountinfo") -> Layout:
    """Read the cgroup mounts from mountinfo (proc(5)): fstype "cgroup" is v1 (the super options
    name its controllers, e.g. ``rw,memory``), "cgroup2" is the unified tree."""
    from ..rootfs import mountinfo as read_mountinfo  # the one mountinfo reader (decodes \040...)
    v1: dict[str, str] = {}
    unified = None
    for m in read_mountinfo(path=mountinfo):
        if m.fstype == "cgroup2" and unified is None:
            unified = m.mountpoint
        elif m.fstype == "cgroup":
            for opt in m.super_options.split(","):
                if opt in V1_CONTROLLERS and opt not in v1:
                    v1[opt] = m.mountpoint
    if v1:
        return Layout("hybrid" if unified else "v1", v1, unified)
    if unified:
        return Layout("v2", {}, unified)
    raise OSError("no cgroup filesystem is mounted (see cgroups(7))")


def cgroup_path(parent: str, name: str) -> str:
    """The container's cgroup, relative to the root of each hierarchy (docker's cgroupfs driver)."""
    return "/" + "/".join(p for p in (parent.strip("/"), name) if p)


def open_cgroup(path: str, layout: Layout | None = None):
    """The driver for the cgroup at ``path`` (e.g. ``/minidocker/ID``) on this host's layout.
    Nothing is created until ``create()``."""
    layout = layout or detect()
    if layout.mode == "v2":
        from .v2 import V2Cgroup
        return V2Cgroup(layout.unified, path)
    from .v1 import V1Cgroup
    return V1Cgroup(layout, path)


# ---- two verbs in one call each (used by the notebook and the lab) ------------------------------
from .cpu import shares_to_weight  # noqa: E402,F401
from .limits import parse_cpu_list  # noqa: E402,F401


def join(layout: Layout, path: str, pid: int) -> None:
    """Create the cgroup ``path`` (in every hierarchy of ``layout``) and move ``pid`` into it."""
    cg = open_cgroup(path, layout)
    cg.create()
    cg.add(pid)


def set_limits(layout: Layout, path: str, memory: int = 0, pids: int = 0) -> None:
    """Limit the cgroup ``path`` by hand (lab 03, the capstone): ``memory`` bytes with no swap beyond
    them (so that going over means the OOM killer, not swapping) and ``pids`` tasks; 0 leaves a limit
    alone. The driver writes the files (v1 ``memory.limit_in_bytes`` + ``memory.memsw.limit_in_bytes``,
    v2 ``memory.max`` + ``memory.swap.max``; ``pids.max`` in both)."""
    from .limits import Limits
    open_cgroup(path, layout).apply(Limits(memory=memory, memory_swap=memory, pids_limit=pids))


def set_frozen(layout: Layout, path: str, frozen: bool) -> None:
    """Freeze (and wait until every task is frozen) or thaw the cgroup ``path``."""
    cg = open_cgroup(path, layout)
    cg.freeze() if frozen else cg.thaw()


def own_procs_file(layout: Layout) -> str | None:
    """The ``cgroup.procs`` of a cgroup this process is in (a v1 "pids" membership first: its attach
    callbacks are the cheapest), read from /proc/self/cgroup (cgroups(7)) — and only if that file
    does list us, so a cgroup-namespace view that does not match the mount gives None."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if not controllers and layout.unified:
            candidates.append(os.path.join(layout.unified, path.lstrip("/")))
        for c in controllers.split(","):
            if c in layout.v1:
                d = os.path.join(layout.v1[c], path.lstrip("/"))
                candidates.insert(0, d) if c == "pids" else candidates.append(d)
    me = str(os.getpid())
    for d in candidates:
        procs = os.path.join(d, "cgroup.procs")
        try:
            with open(procs) as f:
                if me in f.read().split():
                    return procs
        except OSError:
            pass
    return None


def warm_attach(procs: str) -> bool:
    """Make the next move of a process into a cgroup fast, by moving ourselves where we already are.

    Every write of a pid to ``cgroup.procs`` (v1 and v2 alike) takes one kernel-wide lock,
    ``cgroup_threadgroup_rwsem``: a per-CPU rwsem whose readers (every fork and exit) are cheap and
    whose writer, after an idle spell, first waits for an RCU grace period (rcu_sync_enter,
    kernel/rcu/sync.c) — 5–25 ms on this VM, the largest item of a container's create here. A
    writer that comes within about one grace period of the previous one does not wait again.
    ``procs`` (:func:`own_procs_file`) is our own cgroup's: writing our pid there moves nothing
    and takes the lock. The runtime does it in a thread while it loads the spec and forks the init
    (runtime/resources.py ``prepare``), so the init's real move right after costs ~0.1 ms — as
    runc's does, whose wait overlaps its ``runc init`` re-exec. Best effort: False on any error."""
    try:
        fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)
        return True
    except OSError:
        return False


def remove_parent(parent: str, layout: Layout | None = None) -> list[str]:
    """rmdir ``/<parent>`` in every hierarchy where it is empty (a daemon's clean stop): a parent that
    still holds a container's group answers EBUSY and stays, as it must. Returns what was removed."""
    layout = layout or detect()
    removed = []
    for root in [*layout.v1.values(), *([layout.unified] if layout.unified else [])]:
        d = os.path.join(root, parent.strip("/"))
        try:
            os.rmdir(d)
            removed.append(d)
        except OSError:  # absent, or still in use
            pass
    return removed
