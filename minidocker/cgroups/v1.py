"""The cgroup v1 driver: one directory per controller hierarchy, kept in step.

On v1 "the container's cgroup" is really N directories — ``memory/minidocker/ID``,
``pids/minidocker/ID``, ``cpu/minidocker/ID``… — and the pid must be written into each one's
``cgroup.procs``. On a *hybrid* host we also join the controller-less v2 tree (as runc does), so
that tools reading ``0::/`` in /proc/PID/cgroup see the container too.

Freezing is the freezer controller (``freezer.state`` FROZEN/THAWED, freezer-subsystem.rst).
Killing a whole tree has no single file on v1, so we *walk* the group: freeze it (nothing can fork
between our listing and our kill), SIGKILL every member, thaw (a frozen task cannot die).
"""
from __future__ import annotations

import os
import signal
import time

from . import cpu, io, memory, pids
from .driver import Cgroup, read, signal_all, write

USED = ("memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "freezer", "devices")  # devices: the runtime's device rules


class V1Cgroup(Cgroup):
    version = "v1"

    def __init__(self, layout, path: str):
        super().__init__(path)
        self.layout = layout
        self.mounts = {c: m for c, m in layout.v1.items() if c in USED}
        self.unified = os.path.join(layout.unified, path.lstrip("/")) if layout.unified else None

    def dir(self, controller: str) -> str | None:
        m = self.mounts.get(controller)
        return os.path.join(m, self.path.lstrip("/")) if m else None

    def directories(self) -> list[str]:
        # Co-mounted controllers (cpu,cpuacct) share one directory: list each once.
        dirs = sorted({self.dir(c) for c in self.mounts})
        return dirs + ([self.unified] if self.unified else [])

    def create(self) -> None:
        for d in self.directories():
            os.makedirs(d, exist_ok=True)
        cs = self.mounts.get("cpuset")
        if cs:  # every level needs cpus and mems before a task can join (see cpu.apply_cpuset_v1)
            parent = cs
            for part in self.path.strip("/").split("/"):
                here = os.path.join(parent, part)
                cpu.apply_cpuset_v1(here, parent, None)
                parent = here

    def apply(self, lim) -> list[str]:
        missing = []
        if self.dir("memory"):
            memory.apply_v1(self.dir("memory"), lim)
        if self.dir("cpu"):
            cpu.apply_v1(self.dir("cpu"), lim)
        if self.dir("cpuset") and lim.cpuset_cpus:
            cpu.apply_cpuset_v1(self.dir("cpuset"), os.path.dirname(self.dir("cpuset")), lim)
        if self.dir("pids"):
            pids.apply(self.dir("pids"), lim)
        if self.dir("blkio"):
            missing += io.apply_v1(self.dir("blkio"), lim)
        return missing

    def add(self, pid: int) -> None:
        for d in self.directories():
            write(d, "cgroup.procs", pid)

    def pids(self) -> list[int]:
        found: set[int] = set()
        for d in self.directories():
            found.update(int(p) for p in read(d, "cgroup.procs").split())
        return sorted(found)

    def freeze(self, timeout: float = 5.0) -> None:
        d = self.dir("freezer")
        if not d:
            raise OSError("the freezer controller is not mounted: cannot pause")
        write(d, "freezer.state", "FROZEN")
        # FREEZING until every task stopped; writing FROZEN again retries the stragglers.
        deadline = time.monotonic() + timeout
        while read(d, "freezer.state") != "FROZEN":
            if time.monotonic() > deadline:
                write(d, "freezer.state", "THAWED")
                raise OSError("the container did not freeze in time")
            time.sleep(0.005)
            write(d, "freezer.state", "FROZEN")

    def thaw(self) -> None:
        d = self.dir("freezer")
        if d:
            write(d, "freezer.state", "THAWED")

    def frozen(self) -> bool:
        d = self.dir("freezer")
        return bool(d) and read(d, "freezer.state") == "FROZEN"

    def kill(self) -> None:
        """Walk the group: freeze, SIGKILL each member, thaw — repeated until nothing is left."""
        for _ in range(10):
            members = self.pids()
            if not members:
                return
            can_freeze = bool(self.dir("freezer")) and os.path.isdir(self.dir("freezer"))
            if can_freeze:
                self.freeze()
            signal_all(self.pids(), signal.SIGKILL)
            if can_freeze:
                self.thaw()
            time.sleep(0.01)

    def stats(self) -> dict:
        out = {"memory": memory.stats_v1(self.dir("memory")) if self.dir("memory") else {},
               "cpu": cpu.stats_v1(self.dir("cpu"), self.dir("cpuacct") or self.dir("cpu")) if self.dir("cpu") else {},
               "pids": pids.stats(self.dir("pids")) if self.dir("pids") else {},
               "blkio": io.stats_v1(self.dir("blkio")) if self.dir("blkio") else []}
        return out

    def oom_kills(self) -> int:
        return memory.oom_kills_v1(self.dir("memory")) if self.dir("memory") else 0
