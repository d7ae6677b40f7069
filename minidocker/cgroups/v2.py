"""The cgroup v2 driver: one directory in one unified tree.

What is different from v1 (cgroup-v2.rst):

* a controller is usable in a group only if its parent *enabled* it for its children:
  ``echo +memory +pids > PARENT/cgroup.subtree_control``, at every level from the root down;
* "no internal processes": a non-root group that enables controllers for its children cannot hold
  processes itself — so processes live in leaves (``/minidocker/ID``), never in ``/minidocker``;
* freezing (``cgroup.freeze``, confirmed by ``frozen 1`` in ``cgroup.events``) and killing a whole
  tree (``cgroup.kill``, Linux 5.14) are core files, available even with no controller at all —
  which is why they work on this hybrid host's controller-less ``/sys/fs/cgroup/unified``;
* ``clone3(CLONE_INTO_CGROUP)`` (Linux 5.7) starts a child directly inside a group, given an fd of
  the group's directory: no window where the child runs outside. minidocker instead writes the pid
  into ``cgroup.procs`` while the container's pid 1 is still paused before exec — equivalent here,
  because nothing of the workload has run yet (and it works on v1 too).
"""
from __future__ import annotations

import os
import select
import signal
import time

from . import cpu, io, memory, pids
from .driver import Cgroup, read, read_keyed, signal_all, write

WANTED = ("cpu", "cpuset", "memory", "pids", "io")


class V2Cgroup(Cgroup):
    version = "v2"

    def __init__(self, root: str, path: str):
        super().__init__(path)
        self.root = root
        self.dir = os.path.join(root, path.strip("/"))

    def directories(self) -> list[str]:
        return [self.dir]

    def controllers(self) -> set[str]:
        return set(read(self.dir, "cgroup.controllers").split())

    def create(self) -> None:
        # Enable what we use at every level above the leaf, then make the leaf.
        here = self.root
        for part in self.path.strip("/").split("/"):
            available = set(read(here, "cgroup.controllers").split())
            enabled = set(read(here, "cgroup.subtree_control").split())
            for c in (c for c in WANTED if c in available and c not in enabled):
                try:
                    write(here, "cgroup.subtree_control", "+" + c)
                except OSError:
                    # e.g. a group above that holds processes (the no-internal-process rule):
                    # not fatal here — apply() reports the limits it then cannot set.
                    pass
            here = os.path.join(here, part)
            os.makedirs(here, exist_ok=True)

    def apply(self, lim) -> list[str]:
        have = self.controllers()
        missing = []
        for ctl, wanted, fn in (("memory", lim.memory, memory.apply_v2),
                                ("cpu", lim.cpu_quota or lim.cpu_period or lim.cpu_shares, cpu.apply_v2),
                                ("pids", lim.pids_limit, pids.apply),
                                ("io", lim.blkio_weight, io.apply_v2)):
            if not wanted:
                continue
            if ctl not in have:
                missing.append(f"the {ctl} controller is not available in {self.dir}: limit discarded")
                continue
            missing += fn(self.dir, lim)
        if lim.cpuset_cpus:
            if "cpuset" in have:
                write(self.dir, "cpuset.cpus", lim.cpuset_cpus)
            else:
                missing.append(f"the cpuset controller is not available in {self.dir}: cpuset discarded")
        return missing

    def add(self, pid: int) -> None:
        write(self.dir, "cgroup.procs", pid)

    def pids(self) -> list[int]:
        found = []
        for d, _subdirs, _files in os.walk(self.dir):
            found += [int(p) for p in read(d, "cgroup.procs").split()]
        return sorted(set(found))

    def populated(self) -> bool:
        return read_keyed(self.dir, "cgroup.events").get("populated", 0) == 1

    def freeze(self, timeout: float = 5.0) -> None:
        write(self.dir, "cgroup.freeze", 1)
        self._wait_event("frozen", 1, timeout)

    def thaw(self) -> None:
        write(self.dir, "cgroup.freeze", 0)

    def frozen(self) -> bool:
        return read_keyed(self.dir, "cgroup.events").get("frozen", 0) == 1

    def _wait_event(self, key: str, value: int, timeout: float) -> None:
        """cgroup.events signals a change with POLLPRI (like a sysfs attribute): poll, re-read."""
        deadline = time.monotonic() + timeout
        with open(os.path.join(self.dir, "cgroup.events"), "rb", buffering=0) as f:
            p = select.poll()
            p.register(f, select.POLLPRI)
            while True:
                f.seek(0)
                events = dict(line.split() for line in f.read().decode().splitlines() if " " in line)
                if int(events.get(key, -1)) == value:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise OSError(f"timed out waiting for {key} {value} in {self.dir}/cgroup.events")
                p.poll(min(left, 0.1) * 1000)

    def kill(self) -> None:
        if os.path.exists(os.path.join(self.dir, "cgroup.kill")):
            write(self.dir, "cgroup.kill", 1)  # SIGKILL to every process in the subtree, atomically
            return
        for _ in range(10):  # older kernels: the v1 way
            if not self.pids():
                return
            self.freeze()
            signal_all(self.pids(), signal.SIGKILL)
            self.thaw()
            time.sleep(0.01)

    def stats(self) -> dict:
        have = self.controllers()
        return {"memory": memory.stats_v2(self.dir) if "memory" in have else {},
                "cpu": cpu.stats_v2(self.dir),  # cpu.stat's usage lines are core, always there
                "pids": pids.stats(self.dir) if "pids" in have else {},
                "blkio": io.stats_v2(self.dir) if "io" in have else []}

    def oom_kills(self) -> int:
        return memory.oom_kills_v2(self.dir)


CLONE_INTO_CGROUP = 0x200000000
SYS_CLONE3 = 435  # x86_64


def spawn_into(cgroup_dir: str, argv: list[str]) -> int:
    """Start ``argv`` directly inside the v2 cgroup ``cgroup_dir`` with clone3(CLONE_INTO_CGROUP):
    the child is born in the group, so not even its first instruction runs outside. Returns the
    child's pid (wait for it with os.waitpid). clone3(2); needs Linux 5.7 and a cgroup2 directory.

    The child runs nothing but execv (it is a raw clone of this interpreter, without the
    bookkeeping os.fork() does), and exits 127 if that fails."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    path = argv[0].encode()
    args_c = (ctypes.c_char_p * (len(argv) + 1))(*[a.encode() for a in argv], None)
    env_c = (ctypes.c_char_p * 1)(None)
    # struct clone_args (linux/sched.h), version 2 = 88 bytes: flags, pidfd, child_tid, parent_tid,
    # exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup.
    ca = (ctypes.c_uint64 * 11)(CLONE_INTO_CGROUP, 0, 0, 0, signal.SIGCHLD, 0, 0, 0, 0, 0, fd)
    try:
        pid = libc.syscall(SYS_CLONE3, ctypes.byref(ca), ctypes.sizeof(ca))
        if pid == 0:  # the child: exec at once (execve straight from libc, no Python code in between)
            libc.execve(path, args_c, env_c)
            libc._exit(127)
        if pid < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"clone3(CLONE_INTO_CGROUP, {cgroup_dir}): {os.strerror(err)}")
        return pid
    finally:
        os.close(fd)
