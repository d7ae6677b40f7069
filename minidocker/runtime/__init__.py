"""The runtime: an OCI bundle in, an isolated container out — runc's verbs as a Python API.

What this teaches
-----------------
OCI runtimes (runc, crun, youki) take a *bundle* (``config.json`` + a root filesystem, see
``spec.py``) and expose a handful of verbs; everything Docker-specific stays above them (in
minidocker, ``daemon/specconv.py`` writes the bundle). runc's process model is followed: the runtime
keeps no process of its own. ``create`` forks the container's init into its namespaces, puts it in
its cgroup, lets it prepare everything (rootfs, pivot_root, hostname…) and leaves it blocked on
``exec.fifo`` before exec; the caller — a monitor such as conmon or minidocker's own (monitor.py)
— is its parent (a child subreaper) and the only process waiting for it. ``start`` opens the fifo;
the init execs the workload.

API (``root``: the state directory, one subdirectory per container id; ``bundle``: the bundle)::

    create(root, cid, bundle, *, stdio=(in, out, err), console_socket=None, pid_file=None,
           no_new_keyring=False, preserve_fds=0) -> namespaces.Process  # .pid, .wait(), .kill()
        # the init exists, blocked before exec; raises ContainerError with its setup error
        # (spec.SpecError for a bad config.json). Call it in a process that may become a
        # child subreaper: the init is re-parented to it and must be wait()ed for there.
    start(root, cid)                   # created -> running (the init execs process.args)
    state(root, cid) -> dict           # runc's state JSON: ociVersion id pid status bundle
                                       #   rootfs created annotations (+ owner "")
    kill(root, cid, sig=SIGTERM, all=False)   # through a pidfd: a recycled pid is never hit
    delete(root, cid, force=False)     # the cgroup and the state directory's runtime files
    exec_process(root, cid, process, *, stdio, console_socket=None,
                 wait_fd=None) -> namespaces.Process   # one more process, OCI ``process``
    pause(root, cid); resume(root, cid)   # the freezer
    update(root, cid, resources)       # new ``linux.resources`` (cgroup limits)
    list_containers(root) -> [state]; ps(root, cid) -> [host pids]
    spec.example(args, terminal) -> dict   # what ``runc spec`` writes; spec.validate(spec) -> [problems]
    init.explain(bundle) -> str        # the kernel calls create+start make, from the real code

Every verb raises :class:`ContainerError` (a RuntimeError) with a runc-like message.

Files in ``root/cid/``: ``runtime.json`` (what ``state`` needs) and ``exec.fifo`` (exists while
"created"). The daemon uses its container directory as both bundle and state directory
(``root`` = ``ROOT/containers``), so these names avoid the daemon's own files.
"""
from __future__ import annotations

import errno
import os
import select
import signal as _signal
# _socket, the C module under ``socket``: the few calls below (a socketpair, a connect) need none of
# socket.py, whose import turns every constant into an IntEnum (with selectors and array: ~3-5 ms
# of every runtime start). Its socket objects are _socket.socket subclasses, accepted alike.
import _socket as socket

from ..timing import mark
from ..util import atomic_write_json, now_rfc3339, read_json, start_time
from . import resources, spec as S  # monitor.py (the engine's, above this API) is imported by its users: not on the runtime CLI's path

STATE_FILE = "runtime.json"
FIFO = "exec.fifo"


def _log():
    """The runtime's logger, imported when first needed: ``logging`` costs more than a container's
    mounts on the runtime CLI's start-up path, and only warnings use it."""
    import logging
    return logging.getLogger("minidocker.runtime")


class ContainerError(RuntimeError):
    """A verb that cannot be done; the message is runc-like and names the container."""


def _dir(root: str, cid: str) -> str:
    if not cid or "/" in cid or cid in (".", ".."):
        raise ContainerError(f"invalid container id {cid!r}")
    return os.path.join(root, cid)


def _load(root: str, cid: str) -> dict:
    st = read_json(os.path.join(_dir(root, cid), STATE_FILE))
    if st is None:
        raise ContainerError(f"container {cid} does not exist")
    return st


# --- create / start --------------------------------------------------------------------------------

def create(root: str, cid: str, bundle: str, *, stdio=(None, None, None), console_socket=None,
           pid_file: str | None = None, no_new_keyring: bool = False, preserve_fds: int = 0):
    """Create the container ``cid`` from ``bundle``; return when its init waits before exec.

    Steps: fork (namespaces.spawn, detached: the init becomes *our* child — we are made a child
    subreaper); the init waits; we create its cgroup with the spec's limits and device rules and
    move it in; we tell it "cgroup"; it runs the pid-1 checklist (init.py) and answers "ready" or
    the error. ``console_socket``: a connected socket (fd or object) or a path, where the init
    sends the master of the pty it opens when ``process.terminal`` is true.
    """
    from .. import namespaces
    from .init import container_main, cgroup_mount_plan
    prepared = resources.prepare()   # in a thread: overlaps the kernel's attach-lock wait with what follows
    bundle = os.path.abspath(bundle)
    spec = S.load(bundle)
    d = _dir(root, cid)
    if os.path.exists(os.path.join(d, STATE_FILE)):
        raise ContainerError(f"container with id {cid} already exists")
    os.makedirs(d, mode=0o711, exist_ok=True)
    refused, ignored = S.unsupported(spec)
    if refused:
        raise ContainerError(f"config.json: {', '.join(refused)}: not supported by minidocker's runtime")
    for name in ignored:
        _log().warning("container %s: config.json %s is not supported: ignored", cid, name)
    kinds, join = S.namespaces(spec)
    uid_map = gid_map = None
    if "user" in kinds:
        from . import idmap
        try:
            uid_map, gid_map = idmap.id_maps(spec)
        except ValueError as e:
            raise ContainerError(str(e)) from None
    if "mnt" not in kinds:
        raise ContainerError("a new mount namespace is required (linux.namespaces type \"mount\")")
    if spec["process"].get("terminal") and console_socket is None:
        raise ContainerError("process.terminal is true: a console socket is required")
    fifo = os.path.join(d, FIFO)
    if os.path.exists(fifo):
        os.unlink(fifo)
    os.mkfifo(fifo, 0o622)
    if uid_map:   # the init reopens it as container-root: make it that id's (runc chowns it too)
        from ..namespaces import maps_id
        os.chown(fifo, maps_id(uid_map, 0) or 0, maps_id(gid_map, 0) or 0)
    fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    console_fd = _console_fd(console_socket)
    plan = cgroup_mount_plan() if S.wants_cgroupfs(spec) else []
    mark("runtime", "create: load and check the spec")
    precompile_seccomp(spec)
    mark("runtime", "create: seccomp compile (or cache)")
    cg_path = resources.cgroup_path(spec, cid)
    keep = (theirs.fileno(), fifo_fd) + ((console_fd,) if console_fd is not None else ())
    keep += tuple(range(3, 3 + preserve_fds))
    if no_new_keyring:
        spec.setdefault("annotations", {})[S.ANNOTATION_NO_NEW_KEYRING] = "true"
    proc = None
    idmapped: list[str] = []
    try:
        if uid_map:   # the image's layers must show the mapped owners (runtime/idmap.py)
            idmapped = idmap.prepare(spec, d, uid_map, gid_map)
        proc = namespaces.spawn(
            lambda: container_main(spec, bundle, theirs.fileno(), fifo_fd, console_fd=console_fd,
                                   mount_plan=plan, preserve_fds=preserve_fds),
            [k for k in kinds if k != "cgroup"], join=join, detach=True, uid_map=uid_map, gid_map=gid_map,
            stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], pass_fds=keep)
        theirs.close()
        mark("runtime", "create: fork the init into its namespaces")
        # The cgroup, before the init does anything: its cgroup namespace and the cgroupfs it
        # mounts are rooted here, and nothing it forks escapes the limits.
        resources.setup(spec, cid, proc.pid, prepared())
        mark("runtime", "create: cgroup")
        ours.send(b"cgroup")
        ours.settimeout(60)
        answer = ours.recv(4096).decode(errors="replace")
        if answer != "ready":
            msg = answer[len("error: "):] if answer.startswith("error: ") else "container init exited during setup"
            raise ContainerError(msg)
        # The device cgroup, now that the init made its /dev (its mknods must not be refused).
        resources.set_devices(spec, cid)
        mark("runtime", "create: init ready, device rules")
    except BaseException:
        if proc is not None:
            proc.kill(_signal.SIGKILL)
            proc.wait()
            try:
                resources.destroy(cg_path)
            except OSError:
                pass
        for f in (fifo,):
            try:
                os.unlink(f)
            except OSError:
                pass
        raise
    finally:
        if idmapped:   # the init has its overlay (or failed): our copies of the layers can go
            idmap.release(idmapped)
        ours.close()
        theirs.close()
        os.close(fifo_fd)
        if console_fd is not None and not isinstance(console_socket, int):
            os.close(console_fd)
    # Atomic (rename) but not fsync'ed, as runc's state.json: it describes processes that a crash
    # or reboot ends anyway, so durability buys nothing and two fsyncs cost more than the write.
    atomic_write_json(os.path.join(d, STATE_FILE), {
        "ociVersion": spec["ociVersion"], "id": cid, "pid": proc.pid, "starttime": start_time(proc.pid),
        "bundle": bundle, "rootfs": S.root_path(spec, bundle), "created": now_rfc3339(),
        "annotations": spec.get("annotations") or {}, "cgroup": cg_path}, fsync=False)
    if pid_file:
        atomic_write_text(pid_file, str(proc.pid))
    return proc


def precompile_seccomp(spec: dict) -> None:
    """Compile ``linux.seccomp`` to BPF here, before the fork: the child inherits the compiled
    program (the security chapter's memory cache) and needs no libseccomp after pivot_root."""
    if (spec.get("linux") or {}).get("seccomp"):
        from ..security import seccomp
        seccomp.compile_bpf(spec["linux"]["seccomp"])


def atomic_write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _console_fd(console_socket) -> int | None:
    if console_socket is None:
        return None
    if isinstance(console_socket, int):
        return console_socket
    if isinstance(console_socket, socket.socket):
        return console_socket.fileno()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(console_socket)
    return s.detach()


def start(root: str, cid: str, timeout: float = 30.0) -> None:
    """created -> running: open ``exec.fifo``; the init, blocked opening its write end, writes one
    byte and execs. The init's pidfd is watched too, so a dead init is an error, not a hang."""
    st = state(root, cid)
    if st["status"] != "created":
        raise ContainerError(f"cannot start a container that has {st['status']}" if st["status"] == "stopped"
                            else f"cannot start an already {st['status']} container")
    fifo = os.path.join(_dir(root, cid), FIFO)
    # The pidfd first: once the fifo is open the init runs, and a short workload (``true``) can
    # exec, exit and be reaped by the caller's monitor before a pidfd_open made after it.
    try:
        pidfd = os.pidfd_open(st["pid"])
    except ProcessLookupError:
        raise ContainerError(f"container {cid} is not running") from None
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except BaseException:
        os.close(pidfd)
        raise
    try:
        r, _, _ = select.select([fd, pidfd], [], [], timeout)
        data = os.read(fd, 1) if fd in r else b""
    finally:
        os.close(pidfd)
        os.close(fd)
    if data != b"0":
        raise ContainerError(f"container {cid}: the init did not start (it exited, or timed out)")
    os.unlink(fifo)


# --- state / kill / delete ---------------------------------------------------------------------------

def state(root: str, cid: str) -> dict:
    """runc's ``state`` JSON (runtime.md "State"): status created | running | paused | stopped."""
    st = _load(root, cid)
    alive = st.get("pid") and start_time(st["pid"]) == st.get("starttime")
    if not alive:
        status = "stopped"
    elif os.path.exists(os.path.join(_dir(root, cid), FIFO)):
        status = "created"
    else:
        try:
            status = "paused" if resources.cgroup_of(st["cgroup"]).frozen() else "running"
        except OSError:
            status = "running"
    return {"ociVersion": st["ociVersion"], "id": cid, "pid": st["pid"] if alive else 0, "status": status,
            "bundle": st["bundle"], "rootfs": st["rootfs"], "created": st["created"],
            "annotations": st.get("annotations") or {}, "owner": ""}


def signal_pid(pid: int, sig: int) -> bool:
    """Signal ``pid`` through a pidfd (pidfd_open(2), pidfd_send_signal(2)). False if it is gone."""
    if pid <= 0:
        return False
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return False
    try:
        _signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def kill(root: str, cid: str, sig: int = _signal.SIGTERM, all: bool = False) -> None:  # noqa: A002
    """Send ``sig`` to the init (``all``: to every process of the container's cgroup)."""
    st = state(root, cid)
    if st["status"] == "stopped" and not all:
        raise ContainerError(f"container {cid} is not running")
    cg = resources.cgroup_of(_load(root, cid)["cgroup"])
    if all and sig == _signal.SIGKILL and cg.exists():
        cg.kill()
        return
    pids = cg.pids() if all and cg.exists() else [st["pid"]]
    for pid in pids:
        signal_pid(pid, sig)


def delete(root: str, cid: str, force: bool = False) -> None:
    """Remove a stopped (or, ``force``, any) container: its cgroup, ``runtime.json``, the fifo."""
    raw = _load(root, cid)
    st = state(root, cid)
    if st["status"] not in ("stopped", "created") and not force:
        raise ContainerError(f"cannot delete container {cid} that is not stopped: {st['status']}")
    if st["status"] != "stopped":
        try:
            resources.kill_tree(raw["cgroup"])
        except OSError:
            pass
        signal_pid(st["pid"], _signal.SIGKILL)
    try:
        resources.destroy(raw["cgroup"])
    except OSError:
        pass
    d = _dir(root, cid)
    for name in (FIFO, STATE_FILE):
        try:
            os.unlink(os.path.join(d, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(d)
    except OSError as e:  # the daemon's container directory holds more files: it removes them
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
            raise


# --- exec / pause / resume / update / list / ps --------------------------------------------------------

def exec_process(root: str, cid: str, process: dict, *, stdio=(None, None, None), console_socket=None,
                 wait_fd: int | None = None):
    """One more process in a running container (``runc exec --process``): it joins the init's
    namespaces and cgroup and gets ``process``'s confinement (capabilities, seccomp, no_new_privs,
    user) and the container's own ``linux.seccomp``. ``wait_fd``: it waits
    for one byte there before it execs (the daemon attaches clients first). Our child (detached,
    as create)."""
    from .exec import spawn_exec
    st = state(root, cid)
    if st["status"] not in ("running", "paused"):
        raise ContainerError(f"cannot exec in a {st['status']} container")
    spec = S.load(st["bundle"])
    return spawn_exec(spec, st["pid"], process, stdio=stdio, console_fd=_console_fd(console_socket),
                      wait_fd=wait_fd)


def pause(root: str, cid: str) -> None:
    resources.pause(_load(root, cid)["cgroup"])


def resume(root: str, cid: str) -> None:
    resources.unpause(_load(root, cid)["cgroup"])


def update(root: str, cid: str, res: dict) -> list[str]:
    """New ``linux.resources`` for a running container; returns what could not be enforced."""
    return resources.update(_load(root, cid)["cgroup"], res)


def list_containers(root: str) -> list[dict]:
    out = []
    for cid in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        if os.path.exists(os.path.join(root, cid, STATE_FILE)):
            out.append(state(root, cid))
    return out


def ps(root: str, cid: str) -> list[int]:
    cg = resources.cgroup_of(_load(root, cid)["cgroup"])
    return cg.pids() if cg.exists() else []


__all__ = ["create", "start", "state", "kill", "delete", "exec_process", "pause", "resume", "update",
           "list_containers", "ps", "signal_pid", "ContainerError", "STATE_FILE", "FIFO"]
