"""``docker exec``: one more process inside a running container, watched by its own monitor.

What this teaches
-----------------
A container is not a box but a set of namespaces (and a cgroup) that its processes share. To run
one more process "in" it, nothing new is created: the process *joins* what pid 1 already has —
setns(2) into each of ``/proc/PID/ns/*`` (``namespaces.spawn_in``: a first child calls setns, then
forks, because joining a pid namespace only applies to children) and a write of its own pid into
pid 1's ``cgroup.procs``. Joining the mount namespace also moves the root directory to the
container's root, so ``/etc/passwd`` (for ``-u``) and ``$PATH`` lookups are the container's. Then it
takes the confinement its OCI ``process`` says — seccomp, user, capabilities — through the same
code as pid 1 (``init.run_process``): joining namespaces gives no protection by itself.

Like the container itself, an exec'd process must not be the daemon's child: its stdio is owned by
an :class:`ExecMonitor` — the container monitor of ``monitor.py`` with one thing changed, how the
workload is created — so the daemon attaches to it (hijack) exactly as it attaches to a container,
and a restarted daemon still finds it. Its output is not logged: ``docker logs`` shows the
container's pid 1 only.

Directory of an exec: ``ROOT/containers/ID/exec/EXECID/`` with ``config.json`` (the OCI process,
the container's runtime root and id, the monitor's options), ``ctl.sock``,
``exit.json``. See nsenter(1), setns(2), cgroups(7)
("Migrating a process to a cgroup"), and docker's ExecConfig in the Engine API spec.
"""
from __future__ import annotations

import fcntl
import os

from .. import kernel as K
from ..namespaces import close_fds_except
from ..rootfs import mountinfo
from ..util import atomic_write_json, read_json
from .init import make_console, run_process
from .monitor import Monitor, spawn_monitor

# Imported here, not in exec_main: once the process has joined the container's mount namespace,
# the host's Python files are out of reach, so everything it needs must be loaded before.


def cgroup_mounts() -> dict[str, str]:
    """Hierarchy key -> mount point: "memory" -> /sys/fs/cgroup/memory, "name=systemd" -> ..., and
    "" -> the cgroup2 mount (hybrid hosts have both kinds, see /proc/self/mountinfo). A v1
    hierarchy's controllers are in the super-block options ("rw,memory")."""
    out = {}
    for m in mountinfo():
        if m.fstype == "cgroup2":
            out.setdefault("", m.mountpoint)
        elif m.fstype == "cgroup":
            for o in m.super_options.split(","):
                if o not in ("rw", "ro") and not o.startswith(("relatime", "nosuid", "nodev", "noexec")):
                    out.setdefault(o, m.mountpoint)
    return out


def cgroup_procs_paths(pid: int) -> list[str]:
    """The ``cgroup.procs`` files of every cgroup ``pid`` is in (v1 hierarchies and v2), host view.

    Hook for the cgroups chapter: whatever cgroups the container's pid 1 is put in, an exec follows
    it, because we read them from pid 1 itself."""
    paths = []
    try:
        mounts = cgroup_mounts()
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                hier, controllers, path = line.rstrip("\n").split(":", 2)
                key = "" if hier == "0" else controllers.split(",")[0]
                if key in mounts:
                    procs = os.path.join(mounts[key], path.lstrip("/"), "cgroup.procs")
                    if os.path.exists(procs):
                        paths.append(procs)
    except OSError:
        pass
    return paths


def exec_main(spec: dict, process: dict, cgroup_fds: tuple[int, ...], console_fd: int | None,
              wait_fd: int | None) -> int:
    """Run in the container's namespaces (child B of ``spawn_in``), before exec."""
    close_fds_except(tuple(cgroup_fds) + tuple(fd for fd in (console_fd, wait_fd) if fd is not None))
    k = K.Linux()
    # 1. The cgroups: limits and accounting apply to the exec'd process too ("0" means "me").
    for fd in cgroup_fds:
        os.write(fd, b"0")
        os.close(fd)
    # 2. A TTY of its own, from the container's /dev/ptmx (we are in its mount namespace).
    if console_fd is not None:
        make_console(console_fd)
    elif process.get("terminal") and os.isatty(0):
        os.setsid()
        fcntl.ioctl(0, K.TIOCSCTTY, 0)
    # 3. Wait for the caller's go (the daemon has connected the client's stream by then).
    if wait_fd is not None:
        if os.read(wait_fd, 1) != b"1":
            os._exit(1)
        os.close(wait_fd)
    # 4. The container's confinement (seccomp, user, capabilities as ``process`` says), cwd, exec:
    #    the same code as the container's pid 1. ``exec --privileged`` changed only ``process``'s
    #    capabilities (the daemon's exec_process): the container's seccomp filter stays, as with
    #    dockerd and runc exec.
    return run_process(k, process, dict(spec.get("linux") or {}))


def spawn_exec(spec: dict, target_pid: int, process: dict, *, stdio, console_fd=None, wait_fd=None):
    """Fork a process into the namespaces and cgroups of ``target_pid``; our child (detached)."""
    from .. import namespaces
    from . import precompile_seccomp
    precompile_seccomp(spec)
    # Opened here, in the host's view: inside the container's mount namespace they are out of reach.
    cgroup_fds = tuple(os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in cgroup_procs_paths(target_pid))
    extra = tuple(fd for fd in (console_fd, wait_fd) if fd is not None)
    try:
        return namespaces.spawn_in(target_pid, lambda: exec_main(spec, process, cgroup_fds, console_fd, wait_fd),
                                   None, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2],
                                   pass_fds=cgroup_fds + extra, detach=True)
    finally:
        for fd in cgroup_fds:
            os.close(fd)


class ExecMonitor(Monitor):
    """The monitor of one exec'd process (``config.json`` here: the OCI ``process``, the container's
    runtime root and id, and the monitor's options)."""
    log_name = None

    def options(self) -> dict:
        self.conf = read_json(os.path.join(self.dir, "config.json"))
        return self.conf.get("monitor") or {}

    def create_workload(self, stdin, stdout, stderr):
        from .. import runtime
        go_r, self.go_w = os.pipe()
        try:
            return runtime.exec_process(self.conf["root"], self.conf["id"], self.conf["process"],
                                        stdio=(stdin, stdout, stderr), console_socket=self.console_child,
                                        wait_fd=go_r)
        finally:
            os.close(go_r)

    def start_workload(self) -> None:
        os.write(self.go_w, b"1")
        os.close(self.go_w)

    # The exec'd process joined the container's cgroups: nothing to remove or read an OOM count from.
    def finish_cgroup(self) -> bool:
        return False


def create(exec_dir: str, root: str, cid: str, process: dict, *,
           monitor: dict | None = None) -> None:
    """Write the exec's directory (its monitor reads ``config.json``)."""
    os.makedirs(exec_dir, mode=0o700)
    atomic_write_json(os.path.join(exec_dir, "config.json"),
                      {"root": root, "id": cid, "process": process,
                       "monitor": monitor or {}})


def spawn_paused(exec_dir: str) -> int:
    """Start the exec monitor; the process is created in the container and waits before exec."""
    return spawn_monitor(exec_dir, kind="exec")["pid"]
