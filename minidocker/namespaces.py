"""Namespaces: how a container gets its own view of pids, mounts, hostname, network and users.

What this teaches
-----------------
A namespace wraps one global resource so that the processes inside see their own copy of it
(namespaces(7)). There are eight kinds; minidocker uses seven:

=======  ==================  ==========================================================
kind     clone flag          what the processes inside get their own copy of
=======  ==================  ==========================================================
pid      CLONE_NEWPID        process ids: the first process is pid 1 (pid_namespaces(7))
mnt      CLONE_NEWNS         the mount table (the rootfs chapter builds on this)
uts      CLONE_NEWUTS        hostname and NIS domain name
ipc      CLONE_NEWIPC        System V IPC objects, POSIX message queues
net      CLONE_NEWNET        network devices, addresses, routes, firewall: only ``lo`` at first
user     CLONE_NEWUSER       user and group ids, and capabilities (user_namespaces(7))
cgroup   CLONE_NEWCGROUP     the view of the cgroup tree (its root is the current cgroup)
=======  ==================  ==========================================================

A process's namespaces are the symbolic links in ``/proc/PID/ns/``; the inode number of each link
identifies the namespace, so two processes are in the same namespace exactly when the inodes are
equal (:func:`ns_ids`, :func:`same_namespaces`).

Three system calls do all the work, and this module shows the order they must come in:

* unshare(2) moves the *calling thread* into new namespaces — :func:`spawn`;
* setns(2) moves it into the namespaces of an existing process — :func:`enter`, :func:`nsenter`;
* writing ``/proc/PID/uid_map`` and ``gid_map`` gives a user namespace its ids — :func:`write_id_maps`.

And the process that ends up as pid 1 of a new pid namespace has two jobs no ordinary program does:
reaping orphans and handling signals — :func:`init_main`, a tiny init like tini or ``docker --init``.

Man pages followed: namespaces(7), unshare(2), setns(2), user_namespaces(7), pid_namespaces(7),
plus clone(2), prctl(2) (PR_SET_PDEATHSIG), pidfd_open(2), wait(2), signal(7).

All namespace changes go through a ``kernel`` object (:class:`minidocker.kernel.Linux` by default;
:class:`minidocker.kernel.Recorder` in unit tests), and always happen in freshly forked children:
namespaces belong to a *thread*, and a Jupyter kernel or the daemon has many threads.
"""
from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import resource
import select
import signal
import sys
from collections.abc import Callable, Iterable, Sequence

from minidocker.kernel import (MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_REC, NAMESPACE_FLAGS,
                               PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE, PR_SET_PDEATHSIG, KernelError,
                               Linux)
from minidocker.child import format_exc
from minidocker.record import Frozen, Record

# --- names ------------------------------------------------------------------------------------

KINDS = ("pid", "mnt", "uts", "ipc", "net", "user", "cgroup")

# kind -> the file under /proc/PID/ns/. The kernel's names *are* our kinds ("mnt", not "mount");
# the table is spelled out so that readers see where each one lives.
PROC_NAMES = {kind: kind for kind in KINDS}

# kind -> CLONE_NEW* flag for unshare(2)/setns(2).
CLONE_FLAGS = {kind: NAMESPACE_FLAGS[kind] for kind in KINDS}

# Other spellings people use (util-linux's long options, docker's --network): accepted everywhere.
ALIASES = {"mount": "mnt", "network": "net", "hostname": "uts", "users": "user", "process": "pid"}

TITLES = {
    "pid": "process ids", "mnt": "mounts", "uts": "hostname", "ipc": "System V IPC / mqueues",
    "net": "network stack", "user": "user and group ids", "cgroup": "cgroup root",
}

# The order setns(2) is done in, after *all* the fds are open (as nsenter(1) does):
# * user first: joining it grants CAP_SYS_ADMIN over the namespaces it owns, needed for the rest;
# * pid before mnt, and mnt last: joining a mount namespace changes our root and working
#   directory, after which the host's /proc may no longer be what "/proc" means.
ENTER_ORDER = ("user", "cgroup", "ipc", "uts", "net", "pid", "mnt")

# Signals a pid-1 init passes on to the workload (what tini forwards).
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH)


def normalize_kinds(namespaces: Iterable[str] | None) -> tuple[str, ...]:
    """Check and canonicalise namespace names: ``["network", "pid"]`` -> ``("pid", "net")``.

    ``None`` means all of :data:`KINDS`. Unknown names raise ``ValueError`` listing the valid ones.
    """
    if namespaces is None:
        return KINDS
    if isinstance(namespaces, str):  # spawn(..., "pid") would otherwise iterate the letters
        namespaces = [namespaces]
    wanted = set()
    for name in namespaces:
        kind = ALIASES.get(name, name)
        if kind not in KINDS:
            raise ValueError(f"unknown namespace {name!r}; valid: {', '.join(KINDS)}")
        wanted.add(kind)
    return tuple(k for k in KINDS if k in wanted)


def unshare_flags(namespaces: Iterable[str]) -> int:
    """The unshare(2) flag mask for these namespace kinds (``["pid", "uts"]`` -> CLONE_NEWPID|CLONE_NEWUTS)."""
    flags = 0
    for kind in normalize_kinds(namespaces):
        flags |= CLONE_FLAGS[kind]
    return flags


# --- looking: /proc/PID/ns ------------------------------------------------------------------------

def ns_ids(pid: int | str = "self") -> dict[str, int]:
    """``{kind: namespace id}`` for a process, read from ``/proc/PID/ns/KIND``.

    The id is the inode number of the link's target (what ``ls -l`` shows as ``pid:[4026531836]``).
    namespaces(7) says the pair (device, inode) identifies a namespace; all namespaces live on the
    one ``nsfs`` device, so the inode is enough to compare them on one machine.

    A zombie has no namespaces left (its links are gone): ProcessLookupError, as for no process.
    """
    ids = {}
    for kind in KINDS:
        try:
            ids[kind] = os.stat(f"/proc/{pid}/ns/{PROC_NAMES[kind]}").st_ino
        except FileNotFoundError:
            if kind in _supported_kinds():
                raise ProcessLookupError(f"process {pid} does not exist or has exited") from None
            # a kernel built without this namespace type: leave it out
    return ids


def _supported_kinds() -> set[str]:
    return {kind for kind in KINDS if os.path.exists(f"/proc/self/ns/{PROC_NAMES[kind]}")}


def same_namespaces(a: int | str, b: int | str) -> dict[str, bool]:
    """``{kind: True if processes a and b share that namespace}``."""
    ids_a, ids_b = ns_ids(a), ns_ids(b)
    return {kind: ids_a[kind] == ids_b[kind] for kind in ids_a if kind in ids_b}


def host_reference() -> int | str:
    """A process in the host's namespaces to compare with: pid 1 normally. Where pid 1 is out of
    our reach (a VM's init with more capabilities than we have: EACCES), this process itself."""
    try:
        ns_ids(1)
        return 1
    except PermissionError:
        return os.getpid()


def describe(pid: int | str = "self", reference: int | str | None = None) -> str:
    """A small table of a process's namespaces, each marked shared or not with ``reference``
    (default :func:`host_reference`: the host's initial namespaces)."""
    reference = host_reference() if reference is None else reference
    pid = os.getpid() if pid == "self" else pid
    mine, ref = ns_ids(pid), ns_ids(reference)
    lines = [f"namespaces of pid {pid} ({comm(pid)}), compared with pid {reference} ({comm(reference)}):"]
    for kind, ino in mine.items():
        status = "shared" if ref.get(kind) == ino else "OWN"
        lines.append(f"  {kind:<7}{ino:>12}  {status:<7} {TITLES[kind]}")
    return "\n".join(lines)


def _pids() -> list[int]:
    return sorted(int(d) for d in os.listdir("/proc") if d.isdigit())


def is_kernel_thread(pid: int) -> bool:
    """Kernel threads are kthreadd (pid 2) and its children: left out of pictures of containers."""
    if pid == 2:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        return ppid == 2
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return False


def processes_by_namespace(kinds: Iterable[str] | None = None,
                           include_kernel_threads: bool = False) -> dict[str, dict[int, list[int]]]:
    """Scan ``/proc/*/ns``: ``{kind: {namespace id: [pids in it]}}``.

    Processes come and go while we scan: one that vanishes is skipped.
    """
    kinds = normalize_kinds(kinds)
    found: dict[str, dict[int, list[int]]] = {kind: {} for kind in kinds}
    for pid in _pids():
        if not include_kernel_threads and is_kernel_thread(pid):
            continue
        try:
            ids = ns_ids(pid)
        except (ProcessLookupError, PermissionError):
            continue
        for kind in kinds:
            if kind in ids:
                found[kind].setdefault(ids[kind], []).append(pid)
    return found


def comm(pid: int | str) -> str:
    """The process's command name (``/proc/PID/comm``), or ``"?"`` if it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def status_field(pid: int | str, name: str) -> str:
    """One line of ``/proc/PID/status``, e.g. ``status_field(pid, "Uid")`` -> ``"100000 100000 ..."``."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == name:
                return value.strip()
    raise KeyError(name)


def children(pid: int) -> list[tuple[int, str, str]]:
    """``[(pid, state, comm)]`` of a process's children, from ``/proc/*/stat``.

    State ``Z`` is a zombie: dead, but its parent has not wait()ed for it yet.
    """
    kids = []
    for p in _pids():
        try:
            with open(f"/proc/{p}/stat") as f:
                head, _, tail = f.read().rpartition(")")
        except OSError:
            continue
        fields = tail.split()
        if len(fields) > 1 and int(fields[1]) == pid:
            kids.append((p, fields[0], head.partition("(")[2]))
    return kids


# --- user namespaces: id maps ------------------------------------------------------------------

class IdMap(Frozen):
    """One line of ``/proc/PID/uid_map`` or ``gid_map``: ids ``container_id .. container_id+size-1``
    inside the namespace are ``host_id .. host_id+size-1`` outside (user_namespaces(7))."""
    _fields = ("container_id", "host_id", "size")

    def __init__(self, container_id: int, host_id: int, size: int = 1):
        self._set(container_id=container_id, host_id=host_id, size=size)

    def line(self) -> str:
        return f"{self.container_id} {self.host_id} {self.size}\n"

    def to_host(self, container_id: int) -> int | None:
        if self.container_id <= container_id < self.container_id + self.size:
            return self.host_id + container_id - self.container_id
        return None


def map_text(maps: Sequence[IdMap]) -> str:
    """The text written to uid_map/gid_map: one ``inside outside count`` line per range.

    The kernel accepts the whole map in a single write(2), once, at most 340 lines, ranges not
    overlapping: we check count and overlaps here, for a clear message instead of a bare EINVAL.
    """
    if not maps:
        raise ValueError("an id map needs at least one range")
    if len(maps) > 340:
        raise ValueError(f"an id map may have at most 340 ranges, got {len(maps)}")
    spans = sorted((m.container_id, m.container_id + m.size) for m in maps)
    for m in maps:
        if m.size < 1 or m.container_id < 0 or m.host_id < 0:
            raise ValueError(f"bad id range {m}")
    for (_, end), (start, _) in zip(spans, spans[1:]):
        if start < end:
            raise ValueError(f"overlapping id ranges in {list(maps)}")
    return "".join(m.line() for m in maps)


def maps_id(maps: Sequence[IdMap] | None, container_id: int = 0) -> int | None:
    """The host id that ``container_id`` maps to, or None when it is not mapped."""
    for m in maps or ():
        host = m.to_host(container_id)
        if host is not None:
            return host
    return None


def _has_capability(cap: int) -> bool:
    """Is capability number ``cap`` in our effective set (CapEff in /proc/self/status)?"""
    return bool(int(status_field("self", "CapEff"), 16) >> cap & 1)


CAP_SETGID = 6


def write_id_maps(pid: int | str, uid_map: Sequence[IdMap] | None, gid_map: Sequence[IdMap] | None,
                  kernel=None) -> None:
    """Give the user namespace of process ``pid`` its id maps (user_namespaces(7)).

    Why the *parent* writes them: mapping a range of ids (0 -> 100000, 65536 ids) needs
    CAP_SETUID/CAP_SETGID in the *parent* user namespace, which the new process does not have (its
    capabilities are inside its new namespace only). A process may map only its own single id.

    Order: uid_map, then ``setgroups``, then gid_map. Writing "deny" to /proc/PID/setgroups is
    required before gid_map only when the writer lacks CAP_SETGID in the parent namespace (an
    unprivileged user): otherwise a user could drop a group it was denied access through. We
    write it only then, because "deny" also stops setgroups(2) in the container forever.
    """
    kernel = kernel or Linux()
    if uid_map:
        kernel.write_file(f"/proc/{pid}/uid_map", map_text(uid_map))
    if gid_map:
        if not _has_capability(CAP_SETGID):
            kernel.write_file(f"/proc/{pid}/setgroups", "deny")
        kernel.write_file(f"/proc/{pid}/gid_map", map_text(gid_map))


def become_root(kernel, uid_map: Sequence[IdMap] | None, gid_map: Sequence[IdMap] | None,
                setgroups_allowed: bool = True) -> list[str]:
    """In a new user namespace, switch to uid/gid 0 when 0 is mapped; returns what was done.

    Right after unshare(CLONE_NEWUSER) our host uid (0) is not mapped inside, so we show up as the
    overflow id 65534 ("nobody"), although we hold every capability in the namespace. Becoming
    container-root makes files we create belong to the mapped host id (e.g. 100000).

    Order, and why:
    1. setgroups([]) — drop the host's supplementary groups (impossible once "deny" was written);
    2. setresgid(0) before setresuid(0) — the usual habit: changing the gid needs CAP_SETGID,
       which a process that changed to a non-zero uid would already have lost;
    3. PR_SET_DUMPABLE 1 — a credential change makes the process non-dumpable, which makes
       /proc/self/* belong to host root (unmapped here) and unreadable to us until exec.
    """
    done = []
    if maps_id(gid_map, 0) is not None:
        if setgroups_allowed:
            kernel.setgroups([])
            done.append("setgroups([])")
        kernel.setresgid(0)
        done.append("setresgid(0)")
    if maps_id(uid_map, 0) is not None:
        kernel.setresuid(0)
        done.append("setresuid(0)")
    if done:
        kernel.prctl(PR_SET_DUMPABLE, 1)
    return done


def userns_fd(uid_map: Sequence[IdMap], gid_map: Sequence[IdMap], kernel=None) -> int:
    """An fd of a new user namespace with these maps, and no process in it: what an idmapped mount
    needs (mount_setattr(2) MOUNT_ATTR_IDMAP takes a user namespace, not a map). A child unshares
    CLONE_NEWUSER and waits; we write its maps, open /proc/CHILD/ns/user, and let it exit — the
    open fd keeps the namespace alive (crun and podman do the same)."""
    kernel = kernel or Linux()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(go_w)
            kernel.unshare(CLONE_FLAGS["user"])
            os.write(ready_w, b"1")
            os.read(go_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError(errno.EPERM, "unshare(CLONE_NEWUSER) failed in the helper process")
        write_id_maps(pid, uid_map, gid_map, kernel)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(go_w)
        os.close(ready_r)
        os.waitpid(pid, 0)


def read_id_map(pid: int | str, which: str = "uid") -> list[IdMap]:
    """Parse ``/proc/PID/uid_map`` (or gid_map) back into :class:`IdMap` ranges."""
    with open(f"/proc/{pid}/{which}_map") as f:
        return [IdMap(*map(int, line.split())) for line in f if line.strip()]


# --- exit statuses ------------------------------------------------------------------------------

def exit_code(waitstatus: int) -> int:
    """A wait(2) status as a shell reports it: the exit code, or 128+N when killed by signal N.

    ``os.waitstatus_to_exitcode`` gives ``-N`` for signals; shells and docker say 128+N
    (SIGKILL -> 137, SIGTERM -> 143).
    """
    code = os.waitstatus_to_exitcode(waitstatus)
    return 128 - code if code < 0 else code


def _mirror_exit(waitstatus: int) -> None:
    """End *this* process the way a child ended: same exit code, or killed by the same signal.

    Used by the monitor process so that its parent's wait() sees what the workload did.
    """
    if os.WIFSIGNALED(waitstatus):
        sig = os.WTERMSIG(waitstatus)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the workload may have dumped core; we won't
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # these two cannot be caught or reset
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
    os._exit(exit_code(waitstatus))  # normal exit, or a signal whose default is not to terminate


# --- spawning ---------------------------------------------------------------------------------------

class SpawnError(OSError):
    """Starting the process failed before its target ran (unshare, setns, id maps, setup).

    ``errno`` is the failed call's errno (0 when the failure was not a system call)."""

    def __str__(self) -> str:
        return f"spawn failed: {self.strerror}"


PIPE_BUF = 4096


def _send(fd: int, **msg) -> None:
    """One JSON line on the status pipe. Kept under PIPE_BUF bytes (900 characters of at most 4
    UTF-8 bytes each), so the write is atomic although two processes (A and B) share the pipe."""
    if "message" in msg:
        msg["message"] = msg["message"][-900:]
    os.write(fd, (json.dumps(msg, ensure_ascii=False) + "\n").encode())


def _say(text: str) -> None:
    """Write to fd 2 directly: in a forked child, sys.stderr may be a Jupyter stream object."""
    try:
        os.write(2, (text.rstrip("\n") + "\n").encode(errors="replace"))
    except OSError:
        pass


def _fileno(f) -> int | None:
    if f is None or isinstance(f, int):
        return f
    return f.fileno()


def _connect_stdio(stdin, stdout, stderr) -> None:
    """dup2 the caller's files onto 0, 1, 2. Duplicating them all first makes swaps (stdout=2,
    stderr=1) work."""
    wanted = [(_fileno(f), target) for target, f in enumerate((stdin, stdout, stderr))]
    copies = [(os.dup(fd), target) for fd, target in wanted if fd is not None]
    for copy, target in copies:
        os.dup2(copy, target)  # dup2 makes target inheritable: it survives exec
        os.close(copy)


def _rebind_python_streams(stdin, stdout, stderr) -> None:
    """For a callable target: make sys.stdin/stdout/stderr use fds 0/1/2 where we redirected them
    (the caller's may be a Jupyter or pytest object that writes somewhere else entirely)."""
    for name, fd, f in (("stdin", 0, stdin), ("stdout", 1, stdout), ("stderr", 2, stderr)):
        if f is not None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", buffering=1, closefd=False,
                                    errors="backslashreplace"))


def close_fds_except(keep: Iterable[int]) -> None:
    """Close every fd except ``keep`` before exec: a leaked host fd (an open directory, a socket)
    is a way out of the container (runc's CVE-2024-21626 was a leaked fd to a host directory)."""
    low = 3
    for fd in sorted(k for k in set(keep) if k >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _reset_signals() -> None:
    """Undo what Python did to signals before exec: it ignores SIGPIPE and SIGXFSZ, and ignored
    signals (and the blocked mask) survive execve(2); handlers are reset by exec anyway."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _exec(argv: Sequence[str], env: dict[str, str] | None, status_w: int) -> None:
    """execvp the argv; on failure say why on stderr and through the status pipe, exit 127/126
    (the shell's codes: 127 command not found, 126 found but cannot be executed)."""
    try:
        os.execvpe(argv[0], list(argv), os.environ if env is None else env)
    except OSError as e:
        code = 127 if e.errno in (errno.ENOENT, errno.ENOTDIR) else 126
        message = f"minidocker: exec {argv[0]!r}: {e.strerror}"
        _say(message)
        _send(status_w, type="exec", code=code, message=message)
        os._exit(code)


def _run_callable(target: Callable[[], int | None]) -> int:
    """Run a callable target: its int return value is the exit code (None -> 0)."""
    try:
        result = target()
    except SystemExit as e:
        result = e.code if isinstance(e.code, int) or e.code is None else 1
    except BaseException:
        _say("minidocker: the target raised:\n" + format_exc())
        result = 1
    _flush_std_streams()  # os._exit() comes next and does not flush Python's buffers
    return 0 if result is None else int(result)


def _flush_std_streams(only_plain: bool = True) -> None:
    """Flush sys.stdout/sys.stderr. In a forked child only plain file streams: a Jupyter stream
    object would try to reach the kernel over a socket — unreachable from a new network namespace."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and (not only_plain or isinstance(stream, io.TextIOWrapper)):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass


class _Plan(Record):
    """What the two forked processes do; built by spawn() / spawn_in() in the parent.

    prepare: in A, unshare(...) or enter(...); user_handshake: A waits for the parent to write id
    maps; become_root: in B, first; setup: in B, then (errors are reported to spawn's caller);
    target: argv or a function; detach: A exits once B runs (runc's model, see spawn)."""
    _fields = ("prepare", "user_handshake", "become_root", "setup", "target", "env", "stdio",
               "pass_fds", "kernel", "detach")

    def __init__(self, prepare: Callable[[], None], user_handshake: bool,
                 become_root: Callable[[], None] | None, setup: Callable[[], None] | None,
                 target: Sequence[str] | Callable[[], int | None], env: dict[str, str] | None,
                 stdio: tuple, pass_fds: tuple[int, ...], kernel: object, detach: bool = False):
        self.prepare, self.user_handshake, self.become_root, self.setup = prepare, user_handshake, become_root, setup
        self.target, self.env, self.stdio, self.pass_fds = target, env, stdio, pass_fds
        self.kernel, self.detach = kernel, detach


def _child_a(plan: _Plan, status_w: int, go_r: int) -> None:
    """Process A: get the namespaces, fork the workload B, then wait for B and mirror its exit.

    Why two processes: CLONE_NEWPID does not move the caller — only A's *next child* is pid 1 of
    the new namespace. A stays outside as the workload's parent ("monitor", like conmon or a
    containerd shim): it collects B's exit status and hands it to whoever waits for A.
    """
    try:
        plan.prepare()                                  # 1. unshare(2) or setns(2)
    except BaseException as e:
        _send(status_w, type="error", where="namespaces", errno=getattr(e, "errno", 0) or 0,
              message=str(e) or repr(e))
        os._exit(125)
    if plan.user_handshake:                             # 2. the parent writes our id maps
        _send(status_w, type="userns")
        if os.read(go_r, 1) != b"1":                    #    EOF: the parent gave up (map error)
            os._exit(125)
    os.close(go_r)
    try:
        b = os.fork()                                   # 3. B: pid 1 in a new pid namespace
    except OSError as e:                                #    (ENOMEM: the pid namespace is dead)
        _send(status_w, type="error", where="fork", errno=e.errno, message=str(e))
        os._exit(125)
    if b == 0:
        _child_b(plan, status_w)                        #    never returns
    _send(status_w, type="pid", pid=b)                  # 4. tell the parent B's host pid
    os.close(status_w)                                  #    B's copy closes when it execs
    if plan.detach:                                     #    runc's model: our caller (a child
        os._exit(0)                                     #    subreaper) inherits B as its child
    # A was forked with every fd of its caller; holding the write end of the workload's stdin
    # pipe (say) would keep the workload from ever seeing EOF. A needs none of them.
    close_fds_except(())
    _set_comm("md-monitor")                             #    (so that ps shows what we are)
    # 5. Pass on signals sent to the monitor, and wait. Python restarts waitpid after a handler.
    for sig in FORWARDED_SIGNALS:
        signal.signal(sig, lambda signum, _frame: _kill_quietly(b, signum))
    _, status = os.waitpid(b, 0)
    _mirror_exit(status)                                # 6. exit as B did


def _child_b(plan: _Plan, status_w: int) -> None:
    """Process B, the workload: become root of the user namespace, run setup, exec the target."""
    code, step = 1, "user namespace ids"
    try:
        try:
            if plan.become_root:
                plan.become_root()
            # If the monitor A dies (kill -9), take the whole container down with it. Set after
            # the uid change: any credential change clears the parent-death signal.
            step = "parent-death signal"
            if not plan.detach:  # detached, A exits at once: the signal would kill us right away
                plan.kernel.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            step = "stdio"
            _connect_stdio(*plan.stdio)
            for fd in plan.pass_fds:
                os.set_inheritable(fd, True)
            step = "setup"
            if plan.setup:
                plan.setup()
        except BaseException as e:
            if not isinstance(e, OSError):
                _say(f"minidocker: {step} failed:\n" + format_exc())
            _send(status_w, type="error", where=step, errno=getattr(e, "errno", 0) or 0,
                  message=str(e) if isinstance(e, OSError) else f"{type(e).__name__}: {e}")
            code = 125
            return
        if callable(plan.target):
            _rebind_python_streams(*plan.stdio)
            os.close(status_w)              # the caller's spawn() returns now: the target runs
            code = _run_callable(plan.target)
        else:
            close_fds_except([0, 1, 2, status_w, *plan.pass_fds])
            _reset_signals()
            _exec(plan.target, plan.env, status_w)  # the status pipe is O_CLOEXEC: EOF = exec worked
    finally:
        os._exit(code)


def _set_comm(name: str) -> None:
    """Rename this process as ps shows it (/proc/self/comm, at most 15 bytes)."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(name[:15])
    except OSError:
        pass


def _kill_quietly(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class Process:
    """A process started by :func:`spawn` or :func:`spawn_in`.

    ``pid`` is the workload's pid as the host sees it (pid 1 inside a new pid namespace).
    ``monitor_pid`` is the process A that waits for it; our child, so it is what we wait() on.
    ``exec_error`` is the message when the command could not be executed (exit code 127/126).
    """

    def __init__(self, pid: int, monitor_pid: int | None, exec_error: str | None = None):
        self.pid = pid
        # Detached (spawn(detach=True)), there is no A: we wait for B itself, our child now.
        self.monitor_pid = monitor_pid or pid
        self.exec_error = exec_error
        self.returncode: int | None = None
        # pidfds refer to *these* processes even after their pid numbers are reused (pidfd_open(2)).
        self._monitor_fd: int | None = os.pidfd_open(self.monitor_pid)
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:     # already gone (e.g. exec failed)
            self._pidfd = None

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"exited {self.returncode}"
        return f"<Process pid={self.pid} {state}>"

    def poll(self) -> int | None:
        """The exit code if it has ended, else None."""
        return self.wait(timeout=0) if self._ready(0) else None

    def _ready(self, timeout: float | None) -> bool:
        if self.returncode is not None:
            return True
        if self._monitor_fd is None:  # closed early by close(): fall back to polling waitpid
            return timeout is None or os.waitid(os.P_PID, self.monitor_pid,
                                                os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        readable, _, _ = select.select([self._monitor_fd], [], [], timeout)  # readable = exited
        return bool(readable)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the workload to end; return its shell-style code (128+N when killed by N).

        Raises TimeoutError when ``timeout`` seconds pass first (the process keeps running).
        """
        if self.returncode is None:
            if not self._ready(timeout):
                raise TimeoutError(f"process {self.pid} still running after {timeout} s")
            _, status = os.waitpid(self.monitor_pid, 0)
            self.returncode = exit_code(status)
            self.close()
        return self.returncode

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the workload (not to the monitor).

        Remember pid_namespaces(7): pid 1 of a namespace gets a signal from outside only if it
        installed a handler for it — SIGKILL and SIGSTOP excepted. ``kill(SIGTERM)`` to a plain
        ``sleep`` running as pid 1 does nothing; that is why containers need an init.
        """
        pidfd = self._pidfd  # another thread may be in wait(), which closes it at the end
        if self.returncode is not None or pidfd is None:
            return
        try:
            signal.pidfd_send_signal(pidfd, sig)
        except (ProcessLookupError, OSError):  # exited meanwhile
            pass

    def close(self) -> None:
        """Close the pidfds (wait() does it too)."""
        for name in ("_pidfd", "_monitor_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    def __enter__(self) -> "Process":
        return self

    def __exit__(self, *exc) -> None:
        """Leaving a ``with`` block: kill the workload if it still runs, and reap it."""
        if self.returncode is None:
            self.kill(signal.SIGKILL)
            self.wait()


def _start(plan: _Plan, uid_map, gid_map, kernel) -> Process:
    """Fork A, answer its messages, return when the target runs (or raise why it could not).

    Messages on the status pipe, one JSON line each:
      {"type": "userns"}          A unshared a user namespace: write the maps, then send "1"
      {"type": "pid", "pid": N}   B's host pid
      {"type": "error", ...}      a step before the target failed: raise SpawnError
      {"type": "exec", ...}       execvp failed: the code is 127/126, kept as Process.exec_error
    EOF comes when A has closed its end and B has exec'd (O_CLOEXEC) or started a callable target.
    """
    status_r, status_w = os.pipe()   # Python's pipes are O_CLOEXEC: nothing leaks into an exec
    go_r, go_w = os.pipe()
    _flush_std_streams(only_plain=False)  # or the children inherit, and print, our buffered text
    a = os.fork()
    if a == 0:                       # process A: never returns into the caller's code
        try:
            os.close(status_r)
            os.close(go_w)
            _child_a(plan, status_w, go_r)
        finally:
            os._exit(125)
    os.close(status_w)               # else EOF never comes: we would hold a writer ourselves
    os.close(go_r)
    b_pid, error, exec_error = None, None, None
    try:
        with os.fdopen(status_r, "rb") as reader:
            for line in reader:
                msg = json.loads(line)
                if msg["type"] == "userns":
                    try:
                        write_id_maps(a, uid_map, gid_map, kernel)
                    except OSError as e:
                        raise SpawnError(e.errno or 0, f"id maps: {e}") from e
                    os.write(go_w, b"1")
                elif msg["type"] == "pid":
                    b_pid = msg["pid"]
                elif msg["type"] == "error":
                    error = SpawnError(msg["errno"], f"{msg['where']}: {msg['message']}")
                elif msg["type"] == "exec":
                    exec_error = msg["message"]
    except BaseException:
        _kill_quietly(a, signal.SIGKILL)  # A dying takes B with it (parent-death signal)
        os.waitpid(a, 0)
        raise
    finally:
        os.close(go_w)
    if error is not None or b_pid is None:
        os.waitpid(a, 0)                 # B (if any) reported its error and exits by itself
        raise error or SpawnError(errno.ECHILD, "the monitor process died before starting the workload")
    if plan.detach:
        os.waitpid(a, 0)                 # A is gone; B was re-parented to us (a child subreaper)
        return Process(b_pid, None, exec_error)
    return Process(b_pid, a, exec_error)


Target = Sequence[str] | Callable[[], "int | None"]


def spawn(target: Target, namespaces: Iterable[str], *, uid_map: Sequence[IdMap] | None = None,
          gid_map: Sequence[IdMap] | None = None, kernel=None, stdin=None, stdout=None, stderr=None,
          pass_fds: Iterable[int] = (), env: dict[str, str] | None = None,
          setup: Callable[[], None] | None = None, join: dict[str, str] | None = None,
          detach: bool = False) -> Process:
    """Start ``target`` in new namespaces of the given kinds; return when it runs.

    ``target`` is an argv list (execvp'd, searching PATH) or a callable run in the new process
    (its int return value is the exit code; it may exec itself). ``setup`` runs in the new process
    before the target; its exceptions are raised here as :class:`SpawnError`, as are failures of
    unshare(2) or of the id maps. A command that cannot be executed is not an exception: like a
    shell, the process exits 127 (not found) or 126, and says why on its stderr.

    The steps (A is our child, B our grandchild):

    1. fork A. We may be multi-threaded (Jupyter, the daemon); unshare(2) moves only the calling
       thread, and CLONE_NEWUSER refuses a multi-threaded caller. A has one thread.
    2. A: ``unshare(flags)`` — one call; with CLONE_NEWUSER the kernel creates the user namespace
       first and it owns the others (unshare(2)).
    3. with "user": A tells us, and blocks on a pipe while we write /proc/A/uid_map and gid_map
       (:func:`write_id_maps`: only a process outside has the right to map a range).
    4. A forks B, which is pid 1 of the new pid namespace, and sends us B's host pid.
    5. B: become uid/gid 0 of the user namespace if 0 is mapped; arm PR_SET_PDEATHSIG; connect
       stdio; run ``setup``; exec the target. A waits for B and exits the same way (code or signal).

    ``uid_map``/``gid_map`` are lists of :class:`IdMap`; without them a new user namespace stays
    unmapped and everything inside shows up as uid 65534. ``stdin``/``stdout``/``stderr`` are
    fds or files (None: inherit ours); ``pass_fds`` stay open across exec, every other fd is
    closed; ``env`` (argv targets) replaces the environment.

    The workload dies with its monitor: if A is killed, B gets SIGKILL (PR_SET_PDEATHSIG).

    ``join``: kind -> path of an existing namespace (``/proc/PID/ns/net``, a bind-mounted netns)
    that A enters with setns(2) *instead of* making a new one of that kind (OCI's namespace "path").

    ``detach=True`` is runc's process model: A exits as soon as B runs, and B is re-parented to the
    nearest "child subreaper" above it (prctl(2) PR_SET_CHILD_SUBREAPER), which spawn makes the
    caller. The caller is then B's parent and the only process waiting for it: one monitor, no
    md-monitor in between. (Call it in a process that can be a subreaper: a container monitor.)
    """
    join = dict(join or {})
    kinds = tuple(k for k in normalize_kinds(namespaces) if k not in join)
    kernel = kernel or Linux()
    flags = unshare_flags(kinds)
    user = "user" in kinds
    uid_map, gid_map = (list(uid_map) if uid_map else None), (list(gid_map) if gid_map else None)
    if (uid_map or gid_map) and not user:
        raise ValueError("uid_map/gid_map need the 'user' namespace")
    for m in (uid_map, gid_map):
        if m:
            map_text(m)  # validate here, where the caller can see the error

    def root_in_userns() -> None:
        allowed = _read("/proc/self/setgroups").strip() == "allow"
        become_root(kernel, uid_map, gid_map, setgroups_allowed=allowed)

    def prepare() -> None:
        for kind in ENTER_ORDER:          # joined first: a new namespace made after is owned right
            if kind in join:
                fd = os.open(join[kind], os.O_RDONLY | os.O_CLOEXEC)
                try:
                    kernel.setns(fd, CLONE_FLAGS[normalize_kinds([kind])[0]])
                finally:
                    os.close(fd)
        if flags:
            kernel.unshare(flags)

    if detach:
        kernel.prctl(PR_SET_CHILD_SUBREAPER, 1)
    plan = _Plan(
        prepare=prepare,
        user_handshake=bool(user and (uid_map or gid_map)),
        become_root=root_in_userns if user and (uid_map or gid_map) else None,
        setup=setup, target=_check_target(target), env=env,
        stdio=(stdin, stdout, stderr), pass_fds=tuple(pass_fds), kernel=kernel, detach=detach,
    )
    return _start(plan, uid_map, gid_map, kernel)


def _check_target(target: Target) -> Target:
    if callable(target):
        return target
    if isinstance(target, (str, bytes)) or not target:
        raise ValueError(f"target must be a non-empty argv list or a callable, got {target!r}")
    return [str(a) for a in target]


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


# --- joining existing namespaces ----------------------------------------------------------------

def enter_plan(pid: int | str, kinds: Iterable[str] | None = None) -> list[str]:
    """The kinds :func:`enter` will join, in order: those asked for where ``pid``'s namespace
    differs from ours. Joining the user namespace we are already in is EINVAL (setns(2)); for the
    others it would be a no-op, so we skip every namespace we already share."""
    wanted = normalize_kinds(kinds)
    mine, theirs = ns_ids("self"), ns_ids(pid)
    return [k for k in ENTER_ORDER if k in wanted and k in theirs and theirs[k] != mine.get(k)]


NS_GET_USERNS = 0xB701   # ioctl_ns(2): _IO(0xb7, 0x1), an fd of the user namespace owning a namespace


def join_order(todo: list[str], fds: dict[str, int]) -> list[str]:
    """User first (it grants CAP_SYS_ADMIN over the namespaces it owns) — except namespaces owned
    by an *outer* user namespace (a network namespace the daemon made, joined by a container with a
    user namespace of its own): those only before the user namespace, where we would lose our
    capabilities over them (ioctl_ns(2) NS_GET_USERNS tells the owner)."""
    if "user" not in todo:
        return todo
    user_ino = os.fstat(fds["user"]).st_ino
    outer = []
    for kind in todo:
        if kind == "user":
            continue
        try:
            owner = fcntl.ioctl(fds[kind], NS_GET_USERNS)
        except OSError:
            continue
        try:
            if os.fstat(owner).st_ino != user_ino:
                outer.append(kind)
        finally:
            os.close(owner)
    return outer + [k for k in todo if k not in outer]


def enter(pid: int | str, kinds: Iterable[str] | None = None, kernel=None) -> list[str]:
    """setns(2) into the namespaces of process ``pid``; returns the kinds joined, in order.

    Call it in a freshly forked, single-threaded child: setns into a user or mount namespace
    fails with EINVAL in a multi-threaded process, and a namespace change is for good.

    1. Open every /proc/PID/ns/KIND first: once we are in the target's mount namespace, "/proc"
       may be another procfs (or none), and the target may exit meanwhile — open fds keep the
       namespaces alive and reachable.
    2. setns each in :data:`ENTER_ORDER`: user first, mount last, passing the CLONE_NEW* type
       so the kernel checks each fd is what we think it is.
    Joining a pid namespace, like unshare, only affects the children we fork afterwards.
    """
    kernel = kernel or Linux()
    todo = enter_plan(pid, kinds)
    fds = {}
    try:
        for kind in todo:
            fds[kind] = os.open(f"/proc/{pid}/ns/{PROC_NAMES[kind]}", os.O_RDONLY | os.O_CLOEXEC)
        for kind in join_order(todo, fds):
            kernel.setns(fds[kind], CLONE_FLAGS[kind])
    finally:
        for fd in fds.values():
            os.close(fd)
    return todo


def spawn_in(pid: int | str, target: Target, kinds: Iterable[str] | None = None, *, kernel=None,
             stdin=None, stdout=None, stderr=None, pass_fds: Iterable[int] = (),
             env: dict[str, str] | None = None, setup: Callable[[], None] | None = None,
             detach: bool = False) -> Process:
    """Start ``target`` inside the namespaces of the running process ``pid`` (``docker exec``).

    Same two-process shape as :func:`spawn`: A calls :func:`enter`, then forks B so that B is
    really in the pid namespace (setns, like unshare, moves only children). If we joined a user
    namespace where 0 is mapped, B becomes uid/gid 0 there, as ``nsenter --user`` does.
    """
    kernel = kernel or Linux()
    todo = enter_plan(pid, kinds)
    become = None
    if "user" in todo:
        uid_map, gid_map = read_id_map(pid, "uid"), read_id_map(pid, "gid")
        allowed = _read(f"/proc/{pid}/setgroups").strip() == "allow"

        def become() -> None:
            become_root(kernel, uid_map, gid_map, setgroups_allowed=allowed)

    plan = _Plan(
        prepare=lambda: enter(pid, todo, kernel), user_handshake=False, become_root=become,
        setup=setup, target=_check_target(target), env=env,
        stdio=(stdin, stdout, stderr), pass_fds=tuple(pass_fds), kernel=kernel, detach=detach,
    )
    if detach:  # as in spawn(detach=True): the caller becomes the parent of B
        kernel.prctl(PR_SET_CHILD_SUBREAPER, 1)
    return _start(plan, None, None, kernel)


def nsenter(pid: int | str, argv: Sequence[str], kinds: Iterable[str] | None = None, **kwargs) -> int:
    """Run ``argv`` in the namespaces of process ``pid`` and return its exit code (like nsenter(1)
    with ``--target PID --all``, or the given kinds). Keyword arguments go to :func:`spawn_in`."""
    return spawn_in(pid, argv, kinds, **kwargs).wait()


# --- pid 1 ------------------------------------------------------------------------------------------

def init_main(argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """A minimal init for pid 1 of a container (what tini or ``docker run --init`` provide).

    Run it as the target of :func:`spawn` (``spawn(lambda: init_main(argv), ["pid", ...])``) or call
    ``os._exit(init_main(argv))`` in the child that is pid 1. It returns the workload's exit code.

    Why pid 1 needs this (pid_namespaces(7)):
    * **Orphans.** When a process dies, its children are re-parented to pid 1 of their namespace.
      When they exit they stay zombies (an entry in the process table) until pid 1 wait()s for
      them. A shell or a web server as pid 1 does not expect children it never made, and the
      zombies pile up. We wait() for *any* child, all the time.
    * **Signals.** The kernel delivers to pid 1 only the signals it installed a handler for —
      SIGKILL and SIGSTOP from an ancestor namespace excepted. A workload relying on the default
      action ("terminate") of SIGTERM is immune to ``docker stop``. We catch the usual signals
      and forward them to the workload, whose default actions then apply.

    Steps: block the signals, fork the workload, install forwarding handlers, unblock — so a
    signal arriving in between is held, not lost, and not delivered to a workload that has no pid
    yet; the workload restores the defaults and the mask before exec.
    """
    if os.getpid() != 1:
        # Not pid 1 (no pid namespace): be a "child subreaper" so orphans still come to us (prctl(2)).
        Linux().prctl(PR_SET_CHILD_SUBREAPER, 1)
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
    workload = os.fork()
    if workload == 0:
        try:
            for sig in FORWARDED_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            _reset_signals()
            os.execvpe(argv[0], list(argv), os.environ if env is None else env)
        except OSError as e:
            _say(f"minidocker-init: exec {argv[0]!r}: {e.strerror}")
            os._exit(127 if e.errno in (errno.ENOENT, errno.ENOTDIR) else 126)
        finally:
            os._exit(126)
    previous = {sig: signal.signal(sig, lambda signum, _frame: _kill_quietly(workload, signum))
                for sig in FORWARDED_SIGNALS}
    signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    try:
        while True:
            pid, status = os.wait()          # any child: the workload, or a re-parented orphan
            if pid == workload:
                # When pid 1 exits, the kernel kills everything left in the namespace.
                return exit_code(status)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def init_target(argv: Sequence[str], env: dict[str, str] | None = None) -> Callable[[], int]:
    """A :func:`spawn` target that runs ``argv`` under :func:`init_main`."""
    return lambda: init_main(argv, env)


# --- small helpers for the notebook and the tests -----------------------------------------------

class Result(Record):
    _fields = ("code", "stdout", "stderr")

    def __init__(self, code: int, stdout: str, stderr: str):
        self.code, self.stdout, self.stderr = code, stdout, stderr


def _captured(start: Callable[..., Process], timeout: float) -> Result:
    """Start a process with stdout/stderr going to temporary files (a chatty process cannot fill
    a pipe and block), wait for it (killing it after ``timeout`` s), return what it printed."""
    import tempfile
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        with start(stdout=out, stderr=err) as proc:   # leaving the block kills it if still running
            code = proc.wait(timeout)
        out.seek(0)
        err.seek(0)
        return Result(code, out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def run(target: Target, namespaces: Iterable[str], *, timeout: float = 30, **kwargs) -> Result:
    """:func:`spawn` and wait, capturing stdout and stderr."""
    return _captured(lambda **io: spawn(target, namespaces, **io, **kwargs), timeout)


def run_in(pid: int | str, target: Target, kinds: Iterable[str] | None = None, *,
           timeout: float = 30, **kwargs) -> Result:
    """:func:`spawn_in` (join ``pid``'s namespaces) and wait, capturing stdout and stderr."""
    return _captured(lambda **io: spawn_in(pid, target, kinds, **io, **kwargs), timeout)


def remount_proc(kernel=None) -> None:
    """In a new mount + pid namespace: mount a fresh /proc that shows this pid namespace.

    "/" is made recursively private first, or the new mount would propagate back to the host's
    mount namespace wherever "/" is shared (systemd makes it shared). Meant as a ``setup`` for
    :func:`spawn`; the rootfs chapter does this properly on a separate root.
    """
    kernel = kernel or Linux()
    kernel.mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    kernel.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)


__all__ = [
    "KINDS", "PROC_NAMES", "CLONE_FLAGS", "ALIASES", "TITLES", "ENTER_ORDER", "FORWARDED_SIGNALS",
    "normalize_kinds", "unshare_flags", "ns_ids", "same_namespaces", "host_reference", "describe", "processes_by_namespace",
    "is_kernel_thread", "comm", "status_field", "children", "IdMap", "map_text", "maps_id",
    "write_id_maps", "become_root", "read_id_map", "exit_code", "SpawnError", "Process", "spawn",
    "enter_plan", "enter", "spawn_in", "nsenter", "init_main", "init_target", "Result", "run", "run_in",
    "remount_proc", "KernelError",
]

if __name__ == "__main__":  # python -m minidocker.namespaces: show our own namespaces
    print(describe("self"))
    sys.exit(0)
