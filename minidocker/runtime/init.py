"""Inside the container, before exec: the checklist pid 1 runs (runc's standard_init_linux.go).

What this teaches
-----------------
By the time :func:`container_main` runs, the monitor has already put this process into its new
namespaces (it is pid 1 of a fresh pid namespace, alone in a fresh mount namespace). What remains is
done from the inside, in this order, and the order matters:

1. **Root filesystem** (``rootfs.setup_rootfs``): make propagation private, mount the overlay that
   *is* the rootfs, mount /proc, /sys, /dev, bind /etc/hostname, /etc/hosts, /etc/resolv.conf, then
   pivot_root and detach the old root. /proc is mounted here, not by the monitor, because a proc
   mount shows the pid namespace of the process that mounts it.
2. **Hostname** in the new UTS namespace.
3. **Terminal**: with a TTY, become a session leader and take the pty as controlling terminal, so
   Ctrl-C typed by a user reaches the foreground process group.
4. **Tell the monitor we are ready, then block** until it says "start". Everything that can fail
   has failed by now (docker create/start = runc create/start): the daemon reports a broken rootfs
   as a start error, and output cannot be lost because clients attach before the exec.
5. **Working directory, user** (resolved in the container's own /etc/passwd, after pivot_root).
6. **exec** the workload — or run the small init, which forks the workload and stays pid 1 to reap
   zombies and forward signals (``--init``). Security settings (capabilities, no_new_privs,
   seccomp) will go right before this step, as close to exec as possible.

Every kernel call goes through the ``kernel`` object, so ``explain()`` can print the sequence
without running anything.
"""
from __future__ import annotations

import fcntl
import os
import socket
import sys
import termios

from .. import kernel as K
from .. import rootfs
from .config import ContainerConfig

EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127


def rootfs_spec(cfg: ContainerConfig, container_dir: str) -> "rootfs.RootfsSpec":
    """The mounts that make this container's root filesystem: the snapshotter's answer (an overlay
    of the image's layers plus the container's writable layer, or a bind of a copied tree)."""
    target = os.path.join(container_dir, "rootfs")
    if cfg.rootfs_mounts:
        mounts = [rootfs.Mount(**{**m, "target": target}) for m in cfg.rootfs_mounts]
    elif cfg.lowerdirs:  # containers created before the snapshotter
        data = f"lowerdir={':'.join(cfg.lowerdirs)},upperdir={cfg.upperdir},workdir={cfg.workdir}"
        mounts = [rootfs.Mount("overlay", target, "overlay", 0, data)]
    else:  # a plain directory as rootfs (the copy driver, or a test)
        mounts = [rootfs.Mount(cfg.upperdir, target, None, K.MS_BIND | K.MS_REC, None)]
    files = {p: os.path.join(container_dir, os.path.basename(p))
             for p in ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")
             if os.path.exists(os.path.join(container_dir, os.path.basename(p)))}
    return rootfs.RootfsSpec(rootfs=target, mounts=mounts, readonly=cfg.readonly_rootfs,
                             bind_files=files, user_namespace="user" in cfg.namespaces)


def resolve_user(spec: str, passwd: str = "/etc/passwd", group: str = "/etc/group") -> tuple[int, int, list[int]]:
    """``user``, ``uid``, ``user:group``, ``uid:gid`` -> (uid, gid, supplementary gids), looked up in the
    container's own /etc/passwd and /etc/group (we are already inside its root)."""
    if not spec:
        return 0, 0, []
    name, _, grp = spec.partition(":")

    def table(path):
        try:
            with open(path) as f:
                return [line.rstrip("\n").split(":") for line in f if line.count(":") >= 3]
        except OSError:
            return []

    users, groups = table(passwd), table(group)
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


def container_main(cfg: ContainerConfig, container_dir: str, ready_fd: int, start_fd: int,
                   kernel=None, console_fd: int | None = None) -> int:
    """Run as pid 1 of the container's new namespaces (see the module docstring for the order)."""
    k = kernel or K.Linux()
    # 0. Forked from the monitor, we hold copies of all its fds (its control socket, the other end
    #    of our own stdin pipe...). Keep only stdio and our two pipes: a leaked fd is a way out, and
    #    a stray pipe end would keep the workload from ever seeing EOF on stdin.
    from ..namespaces import close_fds_except
    close_fds_except((ready_fd, start_fd) + ((console_fd,) if console_fd is not None else ()))
    try:
        # 1. The root filesystem. After this, the host's files are out of reach.
        rootfs.setup_rootfs(k, rootfs_spec(cfg, container_dir))
        # 2. Hostname: only visible in our own UTS namespace.
        if "uts" in cfg.namespaces:
            k.sethostname(cfg.hostname)
            if cfg.domainname:
                k.setdomainname(cfg.domainname)
        # 3. Controlling terminal (the pty slave is already our fd 0/1/2).
        if console_fd is not None:
            make_console(console_fd)
        elif cfg.tty and os.isatty(0):
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        # Working directory: docker creates it when the image lacks it.
        if not os.path.isdir(cfg.working_dir):
            k.mkdir(cfg.working_dir, 0o755)
        uid, gid, groups = resolve_user(cfg.user)
    except Exception as e:  # report the setup failure to the monitor, which tells the daemon
        os.write(ready_fd, f"error: {e}\n".encode())
        os._exit(1)

    # 4. Ready; wait for "start". EOF without a byte means the monitor gave up: do not run.
    os.write(ready_fd, b"ready\n")
    os.close(ready_fd)
    if os.read(start_fd, 1) != b"1":
        os._exit(1)
    os.close(start_fd)
    # 4b. The monitor put us in our cgroup before it said "start": a cgroup namespace made now has
    #     that cgroup as its root, so /proc/self/cgroup shows "/" (cgroup_namespaces(7)).
    if "cgroup" in cfg.namespaces:
        try:
            k.unshare(K.CLONE_NEWCGROUP)
        except OSError as e:
            _fail(EXIT_CANNOT_INVOKE, f"cannot create the cgroup namespace: {e}")

    return run_workload(cfg, k, uid, gid, groups)


def make_console(console_fd: int) -> None:
    """``-t``: open a pty from *this* root's /dev/ptmx (the container's devpts, mounted by
    setup_rootfs), make its slave our controlling terminal and fd 0/1/2, and send the master to the
    monitor over ``console_fd`` (SCM_RIGHTS), as runc does with its console socket."""
    master, slave = os.openpty()  # /dev/ptmx, then /dev/pts/N: both the container's
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)
    sock = socket.socket(fileno=console_fd)
    socket.send_fds(sock, [b"console"], [master])
    sock.close()
    os.close(master)


def run_workload(cfg: ContainerConfig, k, uid: int, gid: int, groups: list[int]) -> int:
    """Steps 5 and 6, shared with ``docker exec`` (runtime/exec.py): cwd, credentials, exec."""
    # 5. Working directory and credentials; groups before gid before uid (after setuid we could not).
    try:
        k.chdir(cfg.working_dir)
        if cfg.user:
            k.setgroups(groups)
            k.setresgid(gid)
            k.setresuid(uid)
    except Exception as e:
        _fail(EXIT_CANNOT_INVOKE, str(e))

    env = {kv.partition("=")[0]: kv.partition("=")[2] for kv in cfg.env}
    env.setdefault("HOSTNAME", cfg.hostname)
    env.setdefault("HOME", "/root" if not cfg.user else "/")
    if cfg.tty:
        env.setdefault("TERM", "xterm")

    # 6. exec (or the small init that runs the workload as its child).
    try:
        path = find_executable(cfg.argv[0], cfg.env)
        if cfg.init:
            from .. import namespaces
            os._exit(namespaces.init_main([path] + cfg.argv[1:], env))
        k.execve(path, cfg.argv, env)
    except FileNotFoundError as e:
        msg = str(e) if str(e).startswith("exec:") else f'exec: "{cfg.argv[0]}": no such file or directory'
        _fail(EXIT_NOT_FOUND, msg)
    except PermissionError:
        _fail(EXIT_CANNOT_INVOKE, f'exec: "{cfg.argv[0]}": permission denied')
    except OSError as e:
        _fail(EXIT_CANNOT_INVOKE, f'exec: "{cfg.argv[0]}": {e.strerror or e}')
    return EXIT_CANNOT_INVOKE


def explain(cfg: ContainerConfig, container_dir: str) -> str:
    """The kernel calls a start of this container makes, in order, without making any."""
    rec = K.Recorder()
    flags = 0
    for ns in cfg.namespaces:
        flags |= K.NAMESPACE_FLAGS[ns] if ns != "cgroup" else 0
    lines = ["# monitor: fork a child that enters new namespaces; its first child is pid 1",
             f"  0  {K.describe_call('unshare', (flags,))}",
             "# monitor: the container's cgroup, limits, and pid 1 moved in (pid 1 waits meanwhile):",
             *_explain_cgroup(cfg),
             "# pid 1 of the container, before exec (after 'start', it makes its cgroup namespace):"]
    rootfs.setup_rootfs(rec, rootfs_spec(cfg, container_dir))
    if "uts" in cfg.namespaces:
        rec.sethostname(cfg.hostname)
    if "cgroup" in cfg.namespaces:
        rec.unshare(K.CLONE_NEWCGROUP)
    rec.chdir(cfg.working_dir)
    try:
        path = find_executable(cfg.argv[0], [])
    except FileNotFoundError:
        path = cfg.argv[0]
    rec.execve(path, cfg.argv, {kv.partition("=")[0]: "…" for kv in cfg.env})
    lines.append(rec.transcript())
    # Long host paths make the sequence hard to read: name the two directories once.
    text = "\n".join(lines)
    legend = [f"# $C = {container_dir}"]
    text = text.replace(container_dir, "$C")
    layers = os.path.commonpath(cfg.lowerdirs) if cfg.lowerdirs else ""
    if layers and layers != "/":
        text = text.replace(layers, "$L")
        legend.append(f"# $L = {layers}")
    return "\n".join(legend + [text])


def _explain_cgroup(cfg: ContainerConfig) -> list[str]:
    from . import resources
    try:
        return resources.explain(cfg)
    except OSError as e:
        return [f"  (cannot show the cgroup steps: {e})"]


if __name__ == "__main__":  # pragma: no cover - not an entry point
    sys.exit("run through the monitor")
