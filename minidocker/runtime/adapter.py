"""The one place where ``minidocker-runtime`` (cli.py) meets the runtime: runc's verbs on a bundle.

What this teaches
-----------------
runc's *process model*, which is what lets conmon (podman's monitor) or minidocker's own monitor be a
container's parent although a separate program made it:

* ``create`` forks the container's init into its new namespaces and its cgroup. The init prepares
  everything (root filesystem, hostname, terminal, credentials, rlimits), then **blocks opening the
  exec fifo** ``ROOT/ID/exec.fifo`` for writing. The runtime writes ``state.json`` and the pid file and
  *exits*: the init is re-parented to the nearest child subreaper (conmon calls
  ``prctl(PR_SET_CHILD_SUBREAPER)``), which from then on is its parent and collects its exit status.
* ``start`` opens the fifo for reading — that unblocks the init, which writes one byte and execs
  the process — then removes the fifo. "created" vs "running" is just: does the fifo still exist?
* ``state`` derives the status from the kernel, never from a daemon: the init's pid *and start time*
  (``/proc/PID/stat`` field 22, so a recycled pid is not mistaken for ours), a zombie counts as
  stopped, a frozen cgroup is "paused".
* ``kill`` signals through a pidfd; ``delete`` removes the cgroup (after killing a created init) and
  the state directory.

State on disk (``--root``, default ``/run/minidocker-runtime``): ``ROOT/ID/state.json`` (runc's
state fields plus what this runtime needs to find the container again) and ``exec.fifo``.

Interim engine. The runtime branch (issue 10) is giving ``minidocker/runtime`` an in-process Python
API in these same verbs; until it lands, the container's init here is built from the chapter modules
directly (namespaces: unshare/setns; rootfs.setup_rootfs; cgroups.open_cgroup; security.* when
present). Everything the CLI calls is in the ``Runtime`` class below, so wiring the real API is a
change to this file only.

Specs: the OCI runtime spec (runtime.md "Lifecycle", "State"; config.md; config-linux.md), runc's
``libcontainer`` (standard_init_linux.go, container_linux.go exec fifo), runc(8).
"""
from __future__ import annotations

import errno
import json
import os
import pwd
import resource
import signal
import socket

from ..util import atomic_write, atomic_write_json, now_rfc3339, read_json
from .init import find_executable  # imported now: after pivot_root no module can be loaded

DEFAULT_ROOT = "/run/minidocker-runtime"
OCI_VERSION = "1.0.2"  # the runtime-spec version whose state format we report (runc 1.1 says 1.0.2)
FIFO = "exec.fifo"

NS_FLAGS = {"pid": 0x20000000, "network": 0x40000000, "mount": 0x00020000, "ipc": 0x08000000,
            "uts": 0x04000000, "user": 0x10000000, "cgroup": 0x02000000, "time": 0x00000080}
NS_PROC = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
           "user": "user", "cgroup": "cgroup", "time": "time"}
# Filesystems setup_rootfs makes itself (the spec lists them too: runc mounts them from the list).
STANDARD_MOUNTS = {"/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys/fs/cgroup"}


class RuntimeFailure(Exception):
    """An error for the user: the message is what runc would print (exit status 1)."""


def _starttime(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _wait_gone(pid: int, starttime: str | None, timeout: float = 10.0) -> bool:
    """Wait (pidfd + poll, no sleeping loop) until ``pid`` exits; True when it did."""
    import select
    if _starttime(pid) != starttime or starttime is None:
        return True
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        p.poll(timeout * 1000)
    finally:
        os.close(fd)
    return _starttime(pid) != starttime


def signal_number(name: str | int) -> int:
    """runc's signal syntax: ``KILL``, ``SIGKILL``, ``9``."""
    text = str(name).upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(getattr(signal.Signals, text))
    except AttributeError:
        raise RuntimeFailure(f"unknown signal {name!r}") from None


class Runtime:
    """runc's verbs over a state directory (``--root``)."""

    def __init__(self, root: str = DEFAULT_ROOT):
        self.root = root

    # ---- state ------------------------------------------------------------------------------
    def _dir(self, cid: str) -> str:
        if not cid or "/" in cid or cid in (".", ".."):
            raise RuntimeFailure(f"invalid container id: {cid!r}")
        return os.path.join(self.root, cid)

    def load(self, cid: str) -> dict:
        rec = read_json(os.path.join(self._dir(cid), "state.json"))
        if rec is None:
            raise RuntimeFailure(f"container does not exist: {cid}")  # runc: "container does not exist"
        return rec

    def status(self, rec: dict) -> str:
        d = self._dir(rec["id"])
        if not rec.get("pid") or _starttime(rec["pid"]) != rec.get("starttime"):
            return "stopped"
        if os.path.exists(os.path.join(d, FIFO)):
            return "created"
        cg = self._cgroup(rec)
        try:
            if cg is not None and cg.frozen():
                return "paused"
        except OSError:
            pass
        return "running"

    def state(self, cid: str) -> dict:
        """runc's ``state`` JSON (runtime.md "State" plus runc's rootfs/created/owner)."""
        rec = self.load(cid)
        status = self.status(rec)
        return {"ociVersion": rec["ociVersion"], "id": rec["id"],
                "pid": rec["pid"] if status != "stopped" else 0, "status": status,
                "bundle": rec["bundle"], "rootfs": rec["rootfs"], "created": rec["created"],
                "owner": rec.get("owner", ""), "annotations": rec.get("annotations") or {}}

    def list(self) -> list[dict]:
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            try:
                out.append(self.state(name))
            except RuntimeFailure:
                continue
        return out

    # ---- cgroup -----------------------------------------------------------------------------
    def _cgroup(self, rec: dict):
        if not rec.get("cgroup"):
            return None
        from .. import cgroups
        return cgroups.open_cgroup(rec["cgroup"])

    # ---- create / start ---------------------------------------------------------------------
    def create(self, cid: str, bundle: str, config: dict, *, pid_file: str | None = None,
               console_socket: str | None = None, preserve_fds: int = 0, no_pivot: bool = False,
               for_run: bool = False) -> int:
        """Fork the init, let it prepare and block on the exec fifo, record the state; -> its pid."""
        d = self._dir(cid)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        try:
            os.mkdir(d, 0o711)
        except FileExistsError:
            raise RuntimeFailure(f"container with id exists: {cid}") from None
        try:
            pid = _spawn_init(d, bundle, config, console_socket=console_socket,
                              preserve_fds=preserve_fds, cid=cid)
        except BaseException:
            import shutil
            shutil.rmtree(d, ignore_errors=True)
            raise
        root = config.get("root", {}).get("path", "rootfs")
        rec = {"ociVersion": config.get("ociVersion", OCI_VERSION), "id": cid, "pid": pid,
               "starttime": _starttime(pid), "bundle": bundle,
               "rootfs": os.path.normpath(os.path.join(bundle, root)), "created": now_rfc3339(),
               "owner": _owner(), "annotations": config.get("annotations") or {},
               "cgroup": _cgroup_path(config, cid),
               "seccomp": (config.get("linux") or {}).get("seccomp")}  # exec'd processes get it too
        atomic_write_json(os.path.join(d, "state.json"), rec)
        if pid_file:
            atomic_write(pid_file, str(pid))
        return pid

    def start(self, cid: str) -> None:
        """Open the exec fifo: the init, blocked opening its other end, writes a byte and execs."""
        import select
        rec = self.load(cid)
        status = self.status(rec)
        if status != "created":
            raise RuntimeFailure(f"cannot start a container that has {status}" if status == "stopped"
                                else f"cannot start an already running container")
        path = os.path.join(self._dir(cid), FIFO)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            pidfd = os.pidfd_open(rec["pid"])
        except ProcessLookupError:
            os.close(fd)
            raise RuntimeFailure("cannot start a container that has stopped") from None
        try:
            p = select.poll()
            p.register(fd, select.POLLIN)
            p.register(pidfd, select.POLLIN)
            while True:
                ready = dict(p.poll())
                if fd in ready:
                    try:
                        if os.read(fd, 1):
                            break
                    except BlockingIOError:
                        continue
                if pidfd in ready:
                    raise RuntimeFailure("cannot start a container that has stopped")
        finally:
            os.close(pidfd)
            os.close(fd)
        os.unlink(path)

    # ---- signals, deletion ------------------------------------------------------------------
    def kill(self, cid: str, sig: int = signal.SIGTERM, all_: bool = False) -> None:
        rec = self.load(cid)
        if self.status(rec) == "stopped":
            raise RuntimeFailure("container not running")
        if all_ and self._cgroup(rec) is not None:
            for pid in self._cgroup(rec).pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            return
        fd = os.pidfd_open(rec["pid"])
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            raise RuntimeFailure("container not running") from None
        finally:
            os.close(fd)

    def delete(self, cid: str, force: bool = False) -> None:
        import shutil
        rec = self.load(cid)
        status = self.status(rec)
        if status in ("running", "paused") and not force:
            raise RuntimeFailure(f"cannot delete container {cid} that is not stopped: {status}")
        if status != "stopped":  # created (runc kills its init) or forced
            cg = self._cgroup(rec)
            if status == "paused" and cg is not None:
                cg.thaw()
            try:
                os.kill(rec["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait_gone(rec["pid"], rec.get("starttime"))
        cg = self._cgroup(rec)
        if cg is not None:
            cg.destroy()
        shutil.rmtree(self._dir(cid), ignore_errors=True)

    # ---- pause, resume, update, ps ----------------------------------------------------------
    def pause(self, cid: str) -> None:
        rec = self.load(cid)
        if self.status(rec) not in ("running", "created"):
            raise RuntimeFailure("container not running")
        self._cgroup_or_fail(rec).freeze()

    def resume(self, cid: str) -> None:
        rec = self.load(cid)
        if self.status(rec) != "paused":
            raise RuntimeFailure("container not paused")
        self._cgroup_or_fail(rec).thaw()

    def update(self, cid: str, resources: dict) -> list[str]:
        """Apply OCI ``linux.resources`` to a running container; -> what could not be enforced."""
        rec = self.load(cid)
        if self.status(rec) == "stopped":
            raise RuntimeFailure("container not running")
        return self._cgroup_or_fail(rec).apply(limits_from_oci(resources))

    def pids(self, cid: str) -> list[int]:
        rec = self.load(cid)
        cg = self._cgroup(rec)
        if cg is None:
            return [rec["pid"]] if self.status(rec) != "stopped" else []
        return cg.pids()

    def _cgroup_or_fail(self, rec: dict):
        cg = self._cgroup(rec)
        if cg is None:
            raise RuntimeFailure("the container has no cgroup")
        return cg

    # ---- exec -------------------------------------------------------------------------------
    def exec(self, cid: str, process: dict, *, pid_file: str | None = None,
             console_socket: str | None = None, preserve_fds: int = 0) -> int:
        """Start ``process`` in the container's namespaces and cgroup; -> its host pid."""
        rec = self.load(cid)
        if self.status(rec) != "running":
            raise RuntimeFailure(f"cannot exec in a stopped container" if self.status(rec) == "stopped"
                                else "cannot exec in a container that is not running")
        pid = _spawn_exec(rec, process, console_socket=console_socket, preserve_fds=preserve_fds,
                          cgroup=self._cgroup(rec))
        if pid_file:
            atomic_write(pid_file, str(pid))
        return pid


def _owner() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _cgroup_path(config: dict, cid: str) -> str | None:
    path = (config.get("linux") or {}).get("cgroupsPath")
    if path and ":" in path:  # systemd's "slice:prefix:name" form
        raise RuntimeFailure(f"cgroupsPath {path!r} is in systemd's slice:prefix:name form; "
                            "minidocker-runtime manages cgroupfs directly (no --systemd-cgroup)")
    return path or f"/{cid}"  # runc's default: a group named after the container, at the top


def limits_from_oci(res: dict):
    """OCI ``linux.resources`` -> the cgroups chapter's Limits (interim: the runtime branch is
    making cgroups read linux.resources itself)."""
    from ..cgroups import Limits
    mem, cpu = res.get("memory") or {}, res.get("cpu") or {}
    return Limits(memory=int(mem.get("limit") or 0), memory_swap=int(mem.get("swap") or 0),
                  cpu_quota=max(int(cpu.get("quota") or 0), 0), cpu_period=int(cpu.get("period") or 0),
                  cpu_shares=int(cpu.get("shares") or 0), cpuset_cpus=cpu.get("cpus") or "",
                  pids_limit=max(int((res.get("pids") or {}).get("limit") or 0), 0),
                  blkio_weight=int((res.get("blockIO") or {}).get("weight") or 0))


# ---- the interim engine: the container's init and exec'd processes -------------------------------

def _process_env(process: dict) -> dict[str, str]:
    env = {}
    for kv in process.get("env") or []:
        k, _, v = kv.partition("=")
        env[k] = v
    return env


def _set_rlimits(process: dict) -> None:
    for rl in process.get("rlimits") or []:
        name = rl["type"]
        num = getattr(resource, name, None)
        if num is None:
            raise OSError(errno.EINVAL, f"unknown rlimit {name}")
        resource.setrlimit(num, (rl["soft"], rl["hard"]))


def _take_console(sock_fd: int, size: dict | None) -> None:
    """Open a pty from this root's /dev/ptmx, make its slave our controlling terminal and fd 0/1/2,
    and send the master over the console socket (SCM_RIGHTS), as runc does."""
    import fcntl
    import struct
    import termios
    master, slave = os.openpty()
    if size:
        fcntl.ioctl(slave, termios.TIOCSWINSZ,
                    struct.pack("HHHH", int(size.get("height", 0)), int(size.get("width", 0)), 0, 0))
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
    sock = socket.socket(fileno=sock_fd)
    socket.send_fds(sock, [b"/dev/ptmx"], [master])
    sock.close()
    os.close(master)


def _finalize_process(k, process: dict, seccomp: dict | None, security) -> None:
    """Credentials and security for the process about to exec, in runc's order (standard_init_linux.go):
    rlimits; seccomp now if no_new_privs is off (loading a filter then needs CAP_SYS_ADMIN, so before
    the capabilities go); groups/gid/uid (PR_SET_KEEPCAPS keeps the permitted set across setuid);
    capabilities; no_new_privs; cwd. With no_new_privs, seccomp waits until just before exec
    (:func:`_late_seccomp`). Capabilities and seccomp come from the security chapter."""
    _set_rlimits(process)
    user = process.get("user") or {}
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    caps = process.get("capabilities")
    if seccomp and not process.get("noNewPrivileges"):
        security.seccomp.install(k, seccomp)
    if caps is not None:
        k.prctl(8, 1)  # PR_SET_KEEPCAPS: keep the permitted set across setuid
    os.setgroups([int(g) for g in user.get("additionalGids") or []])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if caps is not None:
        # The kernel raises an ambient capability only if it is permitted *and* inheritable; runc
        # skips the others (runc spec lists three ambient, no inheritable: CapAmb is 0 under runc).
        allowed = set(caps.get("inheritable") or []) & set(caps.get("permitted") or [])
        caps = {**caps, "ambient": [c for c in caps.get("ambient") or [] if c in allowed]}
        security.capabilities.apply(k, caps)
    if process.get("noNewPrivileges"):
        k.prctl(38, 1)  # PR_SET_NO_NEW_PRIVS
    os.chdir(process.get("cwd") or "/")


def _late_seccomp(k, process: dict, seccomp: dict | None, security) -> None:
    if seccomp and process.get("noNewPrivileges"):
        security.seccomp.install(k, seccomp)


def _security(process: dict, seccomp: dict | None):
    """The security chapter's modules, imported *before* pivot_root (after it, the package's files
    are out of reach); None when the process asks for no capabilities and no seccomp."""
    if process.get("capabilities") is None and not seccomp:
        return None
    try:
        from ..security import capabilities, seccomp as seccomp_mod
    except ImportError:
        raise RuntimeFailure("process.capabilities / linux.seccomp need minidocker.security "
                             "(chapter 10), which this installation lacks") from None
    if seccomp:
        try:  # compiled (and cached in memory) now: after pivot_root libseccomp's cache is out of reach
            seccomp_mod.compile_bpf(seccomp)
        except Exception as e:
            raise RuntimeFailure(f"linux.seccomp: {e}") from None
    import types
    return types.SimpleNamespace(capabilities=capabilities, seccomp=seccomp_mod)


def _exec_process(process: dict) -> None:
    """exec the process's args (PATH from its own env, as runc); never returns."""
    env = process.get("env") or []
    args = process.get("args") or []
    if not args:
        _die(1, "process.args must not be empty")
    try:
        path = find_executable(args[0], env)
        os.execve(path, args, _process_env(process))
    except FileNotFoundError as e:
        _die(127, str(e) if str(e).startswith("exec:") else f'exec: "{args[0]}": no such file or directory')
    except OSError as e:
        _die(126, f'exec: "{args[0]}": {e.strerror or e}')


def _die(code: int, message: str) -> None:
    try:
        os.write(2, f"minidocker-runtime: {message}\n".encode())
    finally:
        os._exit(code)


def _reset_signals() -> None:
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _rootfs_spec(bundle: str, config: dict):
    """The OCI root and mounts as the rootfs chapter's RootfsSpec; extra mounts made after pivot."""
    from .. import rootfs
    linux = config.get("linux") or {}
    root = os.path.join(bundle, (config.get("root") or {}).get("path", "rootfs"))
    binds, later = {}, []
    for m in config.get("mounts") or []:
        dest, opts = m["destination"], m.get("options") or []
        if dest in STANDARD_MOUNTS:
            continue
        if m.get("type") == "bind" or "bind" in opts or "rbind" in opts:
            binds[dest] = m["source"]
        else:
            later.append(m)
    spec = rootfs.RootfsSpec(rootfs=root, readonly=bool((config.get("root") or {}).get("readonly")),
                             bind_files=binds, masked_paths=linux.get("maskedPaths") or [],
                             readonly_paths=linux.get("readonlyPaths") or [])
    return spec, later


_MOUNT_FLAGS = {"ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "sync": 16, "noatime": 1024,
                "nodiratime": 2048, "relatime": 1 << 21, "strictatime": 1 << 24}


def _mount_later(k, mounts: list[dict]) -> None:
    """Filesystems that need no host path (tmpfs, mqueue...): mounted after pivot_root."""
    for m in mounts:
        flags, data = 0, []
        for o in m.get("options") or []:
            if o in _MOUNT_FLAGS:
                flags |= _MOUNT_FLAGS[o]
            elif o not in ("rw", "private", "rprivate", "slave", "rslave", "shared", "rshared"):
                data.append(o)
        os.makedirs(m["destination"], exist_ok=True)
        k.mount(m.get("source") or m.get("type"), m["destination"], m.get("type"), flags,
                ",".join(data) or None)


def _ns_plan(config: dict) -> tuple[int, list[tuple[str, str]]]:
    """-> (unshare flags for new namespaces except pid, [(kind, path) to join])."""
    flags, join = 0, []
    for ns in (config.get("linux") or {}).get("namespaces") or []:
        kind = ns["type"]
        if kind not in NS_FLAGS:
            raise RuntimeFailure(f"unknown namespace type {kind!r}")
        if kind == "user":
            raise RuntimeFailure("user namespaces are not supported by minidocker-runtime yet "
                                "(rootless and userns-remapped bundles)")
        if ns.get("path"):
            join.append((kind, ns["path"]))
        elif kind not in ("pid", "cgroup"):
            flags |= NS_FLAGS[kind]
    return flags, join


def _spawn_init(d: str, bundle: str, config: dict, *, console_socket: str | None,
                preserve_fds: int, cid: str) -> int:
    """Fork the container's init (see the module docstring). Returns its host pid once it waits on
    the exec fifo; raises with its error message if its preparation failed."""
    from .. import kernel as K
    from .. import rootfs
    from ..namespaces import close_fds_except
    process = config.get("process") or {}
    linux = config.get("linux") or {}
    kinds = {ns["type"]: ns.get("path") for ns in linux.get("namespaces") or []}
    flags, join = _ns_plan(config)
    spec, later = _rootfs_spec(bundle, config)
    security = _security(process, linux.get("seccomp"))
    cgroup = None
    cg_path = _cgroup_path(config, cid)
    from .. import cgroups
    cgroup = cgroups.open_cgroup(cg_path)

    fifo = os.path.join(d, FIFO)
    os.mkfifo(fifo, 0o622)
    fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
    console = None
    if process.get("terminal"):
        if not console_socket:
            raise RuntimeFailure("cannot allocate tty if runc will detach without setting console socket")
        console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        console.connect(console_socket)
    elif console_socket:
        raise RuntimeFailure("cannot use console socket if runc will not detach or allocate tty")
    join_fds = [(kind, os.open(path, os.O_RDONLY | os.O_CLOEXEC)) for kind, path in join]
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    rep_r, rep_w = os.pipe2(os.O_CLOEXEC)
    k = K.Linux()
    # The pid namespace: unshare (or setns) it here, so that our *next child* is its pid 1 and a
    # direct child of this process — when we exit, it is re-parented to the caller's subreaper.
    pid_path = kinds.get("pid", False)
    pid_fd = next((fd for kind, fd in join_fds if kind == "pid"), None)
    if pid_fd is not None:
        k.setns(pid_fd, NS_FLAGS["pid"])
    elif "pid" in kinds and not pid_path:
        k.unshare(NS_FLAGS["pid"])
    pid = os.fork()
    if pid == 0:  # ---- the container's init --------------------------------------------------
        try:
            os.close(go_w)
            os.close(rep_r)
            keep = list(range(3, 3 + preserve_fds)) + [go_r, rep_w, fifo_fd] + [fd for _, fd in join_fds]
            if console is not None:
                keep.append(console.fileno())
            close_fds_except(keep)
            for kind, fd in join_fds:
                if kind != "pid":
                    k.setns(fd, NS_FLAGS[kind])
                os.close(fd)
            if flags:
                k.unshare(flags)
            if os.read(go_r, 1) != b"1":  # the parent put us in our cgroup
                os._exit(1)
            os.close(go_r)
            if "cgroup" in kinds and not kinds["cgroup"]:
                k.unshare(NS_FLAGS["cgroup"])
            if "mount" in kinds:
                rootfs.setup_rootfs(k, spec)
                _mount_later(k, later)
            else:
                os.chroot(spec.rootfs)
            if "uts" in kinds and config.get("hostname"):
                k.sethostname(config["hostname"])
            if console is not None:
                _take_console(console.detach(), process.get("consoleSize"))
                if os.path.exists("/dev/console"):
                    k.mount(os.ttyname(0), "/dev/console", None, K.MS_BIND, None)
            for key, value in (linux.get("sysctl") or {}).items():
                with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                    f.write(str(value))
            _finalize_process(k, process, linux.get("seccomp"), security)
            os.write(rep_w, b"ready\n")
            os.close(rep_w)
            # Block here until `start` opens the fifo's read end (runc's exec fifo). Reopen it
            # through our O_PATH fd: its host path is out of reach since pivot_root.
            w = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
            os.write(w, b"0")
            os.close(w)
            os.close(fifo_fd)
            _late_seccomp(k, process, linux.get("seccomp"), security)
            _reset_signals()
            _exec_process(process)
        except BaseException as e:  # noqa: BLE001 - reported to the parent (or, after "ready", on stderr)
            _report(rep_w, e)
    # ---- the runtime (parent) -------------------------------------------------------------
    for fd in [go_r, rep_w, fifo_fd] + [fd for _, fd in join_fds]:
        os.close(fd)
    if console is not None:
        console.close()
    try:
        cgroup.create()
        cgroup.add(pid)
        res = linux.get("resources") or {}
        missing = cgroup.apply(limits_from_oci(res))
        if missing:
            os.write(2, f"minidocker-runtime: warning: not enforced: {', '.join(missing)}\n".encode())
        os.write(go_w, b"1")
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        _destroy_quietly(cgroup)
        raise
    finally:
        os.close(go_w)
    with os.fdopen(rep_r, "rb") as f:
        reply = f.readline().decode(errors="replace").strip()
    if reply != "ready":
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        _destroy_quietly(cgroup)
        raise RuntimeFailure(reply.removeprefix("error: ") or "the container's init died before it was ready")
    return pid


def _report(rep_w: int, e: BaseException) -> None:
    """In a forked child: tell the parent why we fail (or say it on stderr once the parent is gone)."""
    try:
        os.write(rep_w, f"error: {e}\n".encode(errors="replace")[:4000])
    except OSError:
        _die(1, str(e))
    os._exit(1)


def _destroy_quietly(cgroup) -> None:
    try:
        cgroup.destroy()
    except OSError:
        pass


def _spawn_exec(rec: dict, process: dict, *, console_socket: str | None, preserve_fds: int,
                cgroup) -> int:
    """runc exec: join every namespace of the init (pid first, in this process, so that our child
    is in it), its cgroup, then the process's credentials; exec."""
    from .. import kernel as K
    from ..namespaces import close_fds_except
    init = rec["pid"]
    security = _security(process, rec.get("seccomp"))
    fds = {}
    for kind in ("user", "ipc", "uts", "network", "pid", "cgroup", "mount", "time"):
        path = f"/proc/{init}/ns/{NS_PROC[kind]}"
        try:
            if os.readlink(path) != os.readlink(f"/proc/self/ns/{NS_PROC[kind]}"):
                fds[kind] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
    console = None
    if process.get("terminal"):
        if not console_socket:
            raise RuntimeFailure("cannot allocate tty if runc will detach without setting console socket")
        console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        console.connect(console_socket)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    rep_r, rep_w = os.pipe2(os.O_CLOEXEC)
    k = K.Linux()
    if "pid" in fds:
        k.setns(fds["pid"], NS_FLAGS["pid"])
    pid = os.fork()
    if pid == 0:
        try:
            os.close(go_w)
            os.close(rep_r)
            keep = list(range(3, 3 + preserve_fds)) + [go_r, rep_w] + list(fds.values())
            if console is not None:
                keep.append(console.fileno())
            close_fds_except(keep)
            if os.read(go_r, 1) != b"1":
                os._exit(1)
            for kind in ("user", "ipc", "uts", "network", "cgroup", "time", "mount"):
                if kind in fds:
                    k.setns(fds[kind], NS_FLAGS[kind])
            os.chdir("/")
            if console is not None:
                _take_console(console.detach(), process.get("consoleSize"))
            _finalize_process(k, process, rec.get("seccomp"), security)
            os.write(rep_w, b"ready\n")
            os.close(rep_w)
            _late_seccomp(k, process, rec.get("seccomp"), security)
            _reset_signals()
            _exec_process(process)
        except BaseException as e:  # noqa: BLE001 - reported to the parent (or, after "ready", on stderr)
            _report(rep_w, e)
    for fd in [go_r, rep_w] + list(fds.values()):
        os.close(fd)
    if console is not None:
        console.close()
    try:
        if cgroup is not None:
            cgroup.add(pid)
        os.write(go_w, b"1")
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(go_w)
    with os.fdopen(rep_r, "rb") as f:
        reply = f.readline().decode(errors="replace").strip()
    if reply != "ready":
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        raise RuntimeFailure(reply.removeprefix("error: ") or "the exec'd process died before it was ready")
    return pid


def wait_child(pid: int) -> int:
    """Wait for our own child (``run``, ``exec`` without -d), forwarding signals as runc does;
    -> its exit code, 128+N when killed by signal N."""
    from ..namespaces import exit_code

    def forward(sig, _frame):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                signal.SIGUSR2, signal.SIGWINCH):
        signal.signal(sig, forward)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return exit_code(status)
        except InterruptedError:
            continue
        except ChildProcessError:
            return 0
