"""Inside the container, before exec: the checklist pid 1 runs, in runc's order (standard_init_linux.go).

What this teaches
-----------------
By the time :func:`container_main` runs, ``runtime.create`` has forked this process into its new
namespaces (it is pid 1 of a fresh pid namespace, alone in a fresh mount namespace) and put it in
its cgroup. Everything else is done from the inside, reading only the OCI spec, in this order —
each step says why it is where it is:

 1. cgroup namespace (after the cgroup was joined, so the group is this namespace's root);
 2. a session keyring of our own;  3. ``lo`` up;
 4. the root filesystem: mounts, /proc, /sys read-only, /dev with the default devices only, the
    spec's extra devices, pivot_root; a read-only cgroupfs of our own cgroup at /sys/fs/cgroup;
 5. hostname;  6. sysctls;  7. read-only and masked paths;  8. rlimits;
 9. ready → wait for ``start`` (``exec.fifo``: runc create/start);
10. seccomp (no_new_privs first if asked), while the capabilities it may need are still held;
11. groups, gid, uid with PR_SET_KEEPCAPS;  12. capabilities;  13. cwd;  14. exec.

Every kernel call goes through the ``kernel`` object (``kernel.Linux`` or its recording twin), so
:func:`explain` runs this very code against ``kernel.Recorder`` and prints the sequence.
"""
from __future__ import annotations

import fcntl
import os
import resource
import _socket as socket   # socket.py's IntEnums cost every start ~3-5 ms (see runtime/__init__.py)
import stat
import struct
import sys

from .. import kernel as K
from .. import rootfs
from ..timing import mark
from . import spec as S

# The security chapter, loaded now: after pivot_root the host's Python files are out of reach.
from ..security import capabilities as _caps, masks as _masks, seccomp as _seccomp, sysctls as _sysctls

EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127
PR_SET_KEEPCAPS = K.PR_SET_KEEPCAPS
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def resolve_user(spec: str, passwd: str = "/etc/passwd", group: str = "/etc/group") -> tuple[int, int, list[int]]:
    """``user``, ``uid``, ``user:group``, ``uid:gid`` -> (uid, gid, supplementary gids), looked up in the
    container's own /etc/passwd and /etc/group (we are already inside its root)."""
    if not spec:
        return 0, 0, []
    name, _, grp = spec.partition(":")
    users, groups = _table(passwd), _table(group)
    if name.isdigit():
        uid = int(name)
        gid = next((int(u[3]) for u in users if u[2] == name), uid if not grp else 0)
        uname = next((u[0] for u in users if u[2] == name), None)
    else:
        row = next((u for u in users if u[0] == name), None)
        if row is None:
            raise LookupError(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid, uname = int(row[2]), int(row[3]), name
    if grp:
        if grp.isdigit():
            gid = int(grp)
        else:
            g = next((g for g in groups if g[0] == grp), None)
            if g is None:
                raise LookupError(f"unable to find group {grp}: no matching entries in group file")
            gid = int(g[2])
    extra = sorted({int(g[2]) for g in groups if uname and uname in g[3].split(",")} - {gid})
    return uid, gid, extra


def _table(path: str) -> list[list[str]]:
    try:
        with open(path) as f:
            return [line.rstrip("\n").split(":") for line in f if line.count(":") >= 3]
    except OSError:
        return []


def resolve_group(name: str) -> int:
    """``--group-add`` entries: a gid, or a group name of the container's /etc/group."""
    if name.isdigit():
        return int(name)
    g = next((g for g in _table("/etc/group") if g[0] == name), None)
    if g is None:
        raise LookupError(f"unable to find group {name}: no matching entries in group file")
    return int(g[2])


def process_credentials(proc: dict) -> tuple[int, int, list[int]]:
    """OCI ``process.user`` (numeric) plus minidocker's annotations for names, which only the
    container's own /etc/passwd can resolve (so only here, after pivot_root)."""
    user = proc.get("user") or {}
    name = user.get("username") or ""
    if name:
        uid, gid, extra = resolve_user(name)
    else:
        uid, gid, extra = int(user.get("uid", 0)), int(user.get("gid", 0)), []
    groups = list(user.get("additionalGids") or [])
    groups += [resolve_group(g) for g in user.get("additionalGroupNames") or []]
    return uid, gid, sorted(set(extra + groups) - {gid}) if name or groups else sorted(set(groups))


def find_executable(name: str, env: list[str]) -> str:
    """execvp's search, done by hand so that the error says which name was not found."""
    if "/" in name:
        return name
    path = next((e[5:] for e in env if e.startswith("PATH=")), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    for d in path.split(":"):
        candidate = os.path.join(d or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(f'exec: "{name}": executable file not found in $PATH')


def _fail(code: int, message: str) -> None:
    try:
        os.write(2, f"minidocker: {message}\n".encode())
    finally:
        os._exit(code)


def _note(rec, name: str, *args) -> None:
    """Record a call the kernel layer has no method for (Python's own ioctl, chown, setrlimit) in
    an explain transcript."""
    rec.calls.append(K.Call(name, args))


# --- the steps ------------------------------------------------------------------------------------

def join_session_keyring(k) -> None:
    """Step 2: a new anonymous session keyring. Keyrings are not namespaced: without this the
    container would share the session keyring of whoever started it (runc does the same; Docker's
    seccomp profile then blocks keyctl altogether)."""
    k.keyctl(K.KEYCTL_JOIN_SESSION_KEYRING, None)


def link_up(k, name: str = "lo") -> None:
    """Step 3: a new network namespace has only ``lo``, and it is down: 127.0.0.1 does not work
    until it is up (netdevice(7): SIOCGIFFLAGS/SIOCSIFFLAGS on any socket of the namespace)."""
    if isinstance(k, K.Recorder):
        _note(k, "ioctl", "SIOCSIFFLAGS", name, "IFF_UP")
        return
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = struct.pack("16sH14x", name.encode(), 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", name.encode(), flags | IFF_UP))
    finally:
        s.close()


def cgroup_mount_plan(mountinfo: list | None = None) -> list[tuple[str, str, str]]:
    """The cgroup hierarchies of this host as (subdirectory under /sys/fs/cgroup, fstype, options):
    on v2 one cgroup2; on v1/hybrid one entry per v1 mount ("memory", "cpu,cpuacct"…) and
    "unified". Read from /proc/self/mountinfo *before* pivot_root."""
    out = []
    for m in mountinfo if mountinfo is not None else rootfs.mountinfo("self"):
        if m.fstype == "cgroup2" and m.mountpoint.startswith("/sys/fs/cgroup"):
            rel = os.path.relpath(m.mountpoint, "/sys/fs/cgroup")
            out.append(("" if rel == "." else rel, "cgroup2", ""))
        elif m.fstype == "cgroup":
            opts = ",".join(o for o in m.super_options.split(",") if o not in ("rw", "ro"))
            out.append((os.path.basename(m.mountpoint), "cgroup", opts))
    return out


def mount_cgroupfs(k, plan: list[tuple[str, str, str]], readonly: bool = True) -> None:
    """Step 4b: /sys/fs/cgroup, read-only. Mounted inside our cgroup namespace, each hierarchy shows
    our own cgroup as its root: the container sees its limits and cannot change them (or anyone
    else's). v2: one read-only cgroup2 mount. v1/hybrid (as runc): a tmpfs holding one read-only
    mount per hierarchy, then the tmpfs itself remounted read-only."""
    flags = K.MS_NOSUID | K.MS_NODEV | K.MS_NOEXEC | (K.MS_RDONLY if readonly else 0)
    top = "/sys/fs/cgroup"
    if len(plan) == 1 and plan[0][0] == "":
        k.mount("cgroup2", top, "cgroup2", flags, None)
        return
    k.mount("tmpfs", top, "tmpfs", K.MS_NOSUID | K.MS_NODEV | K.MS_NOEXEC, "mode=755")
    for sub, fstype, opts in plan:
        target = os.path.join(top, sub)
        k.mkdir(target, 0o555)
        k.mount(fstype, target, fstype, flags, opts or None)
    k.mount(None, top, None, K.MS_REMOUNT | flags, "mode=755")


def make_devices(k, devices: list[dict]) -> None:
    """Step 4c: the spec's ``linux.devices`` beyond the defaults (``--device``), mknod'ed in our
    /dev tmpfs with their mode and owner. Whether they may be *used* is the device cgroup's call."""
    kinds = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
    for d in devices:
        path = d["path"]
        k.mkdir(os.path.dirname(path), 0o755)
        mode = int(d.get("fileMode", 0o666)) & 0o7777
        k.mknod(path, kinds[d["type"]] | mode, os.makedev(int(d.get("major", 0)), int(d.get("minor", 0))))
        k.chmod(path, mode)
        if "uid" in d or "gid" in d:
            if isinstance(k, K.Recorder):
                _note(k, "chown", path, d.get("uid", 0), d.get("gid", 0))
            else:
                os.chown(path, int(d.get("uid", 0)), int(d.get("gid", 0)))


def set_rlimits(k, rlimits: list[dict]) -> None:
    """Step 8: process.rlimits (setrlimit(2)); inherited by everything the workload starts."""
    for r in rlimits or []:
        which = getattr(resource, r["type"])
        if isinstance(k, K.Recorder):
            _note(k, "setrlimit", r["type"], r["soft"], r["hard"])
        else:
            resource.setrlimit(which, (int(r["soft"]), int(r["hard"])))


def make_console(console_fd: int) -> None:
    """``terminal``: open a pty from *this* root's /dev/ptmx (the container's devpts), make its slave
    our controlling terminal and fd 0/1/2, and send the master over ``console_fd`` (SCM_RIGHTS), as
    runc does with its console socket."""
    master, slave = os.openpty()
    os.setsid()
    fcntl.ioctl(slave, K.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)
    sock = socket.socket(fileno=console_fd)
    sock.sendmsg([b"console"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", master))])
    sock.close()
    os.close(master)


def wait_for_start(fifo_fd: int) -> None:
    """Step 9: block until ``start`` opens the exec fifo for reading. The fd was opened O_PATH
    before pivot_root; reopening it through /proc/self/fd needs no host path (runc's trick)."""
    fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, b"0")
    os.close(fd)
    os.close(fifo_fd)


def confine(k, proc: dict, linux: dict) -> tuple[int, int, list[int]]:
    """Steps 10-12, shared with exec: seccomp, credentials, capabilities. Returns the credentials."""
    uid, gid, groups = process_credentials(proc)
    nnp = bool(proc.get("noNewPrivileges"))
    # 10. Without no_new_privs (Docker's default) seccomp(2) needs CAP_SYS_ADMIN: install the filter
    #     now, while we hold it and before the uid changes (the filter allows what 11-14 need).
    if linux.get("seccomp") and not nnp:
        _seccomp.install(k, linux["seccomp"])
    # 11. groups before gid before uid (after setuid we could not). PR_SET_KEEPCAPS keeps the
    #     permitted set across the uid change, so step 12 can still pick what survives.
    k.prctl(PR_SET_KEEPCAPS, 1)
    k.setgroups(groups)
    k.setresgid(gid)
    k.setresuid(uid)
    k.prctl(PR_SET_KEEPCAPS, 0)
    if uid != 0 and proc.get("capabilities") is not None:
        # A change to a non-zero uid clears the effective set (KEEPCAPS keeps only the permitted
        # one). Raise it back from permitted, so step 12 can still drop the bounding set (that
        # needs CAP_SETPCAP); runc avoids this by dropping the bounding set before the setuid.
        _, permitted, _ = k.capget()
        k.capset(permitted, permitted, 0)
    # 12. Capabilities: bounding (so an exec of a setuid file cannot regain them), effective,
    #     permitted, inheritable, ambient — exactly the spec's sets.
    if proc.get("capabilities") is not None:
        _caps.apply(k, proc["capabilities"])
    # 10b. With no_new_privs, no capability is needed to load a filter: set it and install the
    #      filter last, as close to exec as possible, so it has to allow as little as possible.
    if nnp:
        k.prctl(K.PR_SET_NO_NEW_PRIVS, 1)
        if linux.get("seccomp"):
            _seccomp.install(k, linux["seccomp"])
    return uid, gid, groups


def container_main(spec: dict, bundle: str, sync_fd: int, fifo_fd: int, kernel=None,
                   console_fd: int | None = None, mount_plan=None, preserve_fds: int = 0) -> int:
    """Run as pid 1 of the container's new namespaces (see the module docstring for the order).
    ``sync_fd``: a socket to ``runtime.create`` (it says "cgroup" once we are in our cgroup; we
    answer "ready" or "error: …"). ``fifo_fd``: O_PATH fd of the exec fifo. ``preserve_fds``:
    fds 3 … 3+N-1 are passed to the workload (runc's --preserve-fds)."""
    k = kernel or K.Linux()
    real = not isinstance(k, K.Recorder)
    if real:
        # 0. Forked from the caller, we hold copies of all its fds: keep only stdio and ours. A
        #    leaked fd is a way out (runc's CVE-2024-21626 was a leaked fd to a host directory).
        from ..namespaces import close_fds_except
        close_fds_except((sync_fd, fifo_fd) + ((console_fd,) if console_fd is not None else ())
                         + tuple(range(3, 3 + preserve_fds)))   # runc --preserve-fds: 3, 4, … stay
    proc, linux = spec["process"], spec.get("linux") or {}
    kinds, _ = S.namespaces(spec)
    step = "0. wait for the cgroup"
    try:
        if real and os.read(sync_fd, 16) != b"cgroup":      # EOF: the caller gave up
            os._exit(1)
        # 1. The caller put us in our cgroup: a cgroup namespace made now has it as its root, so
        #    /proc/self/cgroup shows "/" and the cgroupfs mounted below shows only our group.
        mark("init", "waited for the cgroup")
        step = "1. cgroup namespace"
        if "cgroup" in kinds:
            k.unshare(K.CLONE_NEWCGROUP)
        # 2. Our own session keyring (keyrings are not namespaced).
        step = "2. session keyring"
        if (spec.get("annotations") or {}).get(S.ANNOTATION_NO_NEW_KEYRING) != "true":
            join_session_keyring(k)
        # 3. Loopback up in a new network namespace.
        step = "3. loopback up"
        if "net" in kinds:
            link_up(k, "lo")
        # 4. The root filesystem (masks and read-only paths come after the sysctls, step 7).
        step = "4. root filesystem"
        plan = mount_plan if mount_plan is not None else (cgroup_mount_plan() if S.wants_cgroupfs(spec) else [])
        rootfs.setup_rootfs(k, S.rootfs_spec(spec, bundle))
        step = "4b. cgroupfs"
        if S.wants_cgroupfs(spec):
            mount_cgroupfs(k, plan, readonly=S.mount_readonly(spec, "/sys/fs/cgroup"))
        if not S.mount_readonly(spec, "/sys"):  # --privileged: /sys writable, as in Docker
            k.mount(None, "/sys", None, K.MS_REMOUNT | K.MS_NOSUID | K.MS_NODEV | K.MS_NOEXEC, None)
        step = "4c. other mounts"
        for m in S.other_mounts(spec):
            k.mkdir(m.target, 0o755)
            k.mount(m.source, m.target, m.fstype, m.flags, m.data)
        step = "4d. devices"
        make_devices(k, [d for d in linux.get("devices") or []
                         if d["path"] not in {x.path for x in rootfs.DEFAULT_DEVICES}])
        for path in S.readonly_binds(spec):
            rootfs.make_paths_readonly(k, [path])
        if console_fd is not None and real:
            make_console(console_fd)
        elif proc.get("terminal") and real and os.isatty(0):
            os.setsid()
            fcntl.ioctl(0, K.TIOCSCTTY, 0)
        # 5. Hostname, only visible in our own UTS namespace.
        step = "5. hostname"
        if "uts" in kinds and spec.get("hostname"):
            k.sethostname(spec["hostname"])
            if spec.get("domainname"):
                k.setdomainname(spec["domainname"])
        # 6. sysctls: before step 7 makes /proc/sys read-only (runc's order too).
        step = "6. sysctls"
        if linux.get("sysctl"):
            _sysctls.apply(k, linux["sysctl"])
        # 7. Masked and read-only paths (/proc/kcore, /proc/sys…): nothing more is written there.
        step = "7. masked and read-only paths"
        _masks.apply(k, list(linux.get("maskedPaths") or []), list(linux.get("readonlyPaths") or []))
        # 8. rlimits (inherited by everything the workload starts); the working directory must
        #    exist (docker creates it when the image lacks it); a bad user is a create error.
        step = "8. rlimits, working directory, user"
        set_rlimits(k, proc.get("rlimits"))
        if proc.get("oomScoreAdj") is not None:   # inherited by the workload (proc(5))
            k.write_file("/proc/self/oom_score_adj", str(int(proc["oomScoreAdj"])))
        if real and not os.path.isdir(proc["cwd"]):
            k.mkdir(proc["cwd"], 0o755)
        if real:
            process_credentials(proc)
    except Exception as e:  # report the setup failure to the caller (runtime.create raises it)
        if not real:
            raise
        os.write(sync_fd, f"error: pid 1 setup step {step}: {e}".encode()[:4000])
        os._exit(1)
    # 9. Ready; wait for "start". Everything that can fail has failed by now: a broken rootfs is a
    #    create error, and output cannot be lost because clients attach before the exec.
    if real:
        mark("init", "pid-1 checklist (steps 1-8)")
        os.write(sync_fd, b"ready")
        os.close(sync_fd)
        wait_for_start(fifo_fd)
        mark("init", "blocked until start")
    return run_process(k, proc, linux,
                       init=(spec.get("annotations") or {}).get(S.ANNOTATION_INIT) == "true")


def run_process(k, proc: dict, linux: dict, init: bool = False) -> int:
    """Steps 10-14, shared with ``exec`` (runtime/exec.py): confinement, cwd, exec."""
    real = not isinstance(k, K.Recorder)
    try:
        uid, _, _ = confine(k, proc, linux)
        mark("init", "confine (capabilities, seccomp load)")
        # 13. cwd after the uid change, as runc: a directory the user may not enter fails here.
        k.chdir(proc["cwd"])
    except Exception as e:
        if not real:
            raise
        _fail(EXIT_CANNOT_INVOKE, str(e))
    # The process env is the spec's, as runc: HOSTNAME is the daemon's default to add (a bare
    # ``-e HOSTNAME`` removes it), not the runtime's.
    env = {kv.partition("=")[0]: kv.partition("=")[2] for kv in proc.get("env") or []}
    if "HOME" not in env:  # runc: HOME from the user's passwd entry, "/" without one
        row = next((u for u in _table("/etc/passwd") if u[2] == str(uid)), None) if real else None
        env["HOME"] = row[5] if row and len(row) > 5 and row[5] else ("/root" if uid == 0 else "/")
    args = proc["args"]
    if proc.get("user", {}).get("umask") is not None:
        os.umask(int(proc["user"]["umask"]))
    # 14. exec (or the small init that runs the workload as its child).
    try:
        path = find_executable(args[0], proc.get("env") or []) if real else args[0]
        if init and real:
            from .. import namespaces
            os._exit(namespaces.init_main([path] + args[1:], env))
        k.execve(path, args, env if real else {key: "…" for key in env})
    except FileNotFoundError as e:
        msg = str(e) if str(e).startswith("exec:") else f'exec: "{args[0]}": no such file or directory'
        _fail(EXIT_NOT_FOUND, msg)
    except PermissionError:
        _fail(EXIT_CANNOT_INVOKE, f'exec: "{args[0]}": permission denied')
    except OSError as e:
        _fail(EXIT_CANNOT_INVOKE, f'exec: "{args[0]}": {e.strerror or e}')
    return EXIT_CANNOT_INVOKE


def explain(bundle: str, cgroups_path: str | None = None) -> str:
    """The kernel calls creating and starting the bundle's container makes, in order, without
    making any: the caller's side (namespaces, cgroup writes) and then :func:`container_main`
    itself, run against ``kernel.Recorder``."""
    from . import resources
    spec = S.load(bundle)
    kinds, join = S.namespaces(spec)
    rec = K.Recorder()
    for kind, path in join.items():
        rec.setns(path, K.NAMESPACE_FLAGS[kind])
    flags = 0
    for ns in kinds:
        flags |= K.NAMESPACE_FLAGS[ns] if ns != "cgroup" else 0
    rec.unshare(flags)
    lines = ["# runtime.create: fork; the child enters new namespaces; its child is pid 1",
             rec.transcript(),
             "# runtime.create: the container's cgroup, limits, device rules, pid 1 moved in:"]
    try:
        lines += resources.explain(spec, cgroups_path)
    except OSError as e:
        lines.append(f"  (cannot show the cgroup steps: {e})")
    lines.append("# pid 1 of the container (runtime/init.py), up to exec:")
    rec = K.Recorder()
    container_main(spec, bundle, -1, -1, kernel=rec, mount_plan=cgroup_mount_plan())
    lines.append(rec.transcript())
    text = "\n".join(lines)
    legend = [f"# $B = {bundle}"]
    return "\n".join(legend + [text.replace(bundle, "$B")])


if __name__ == "__main__":  # pragma: no cover - not an entry point
    sys.exit("run through runtime.create")
