"""Checker for lab 02 (the root filesystem). Runs your functions against the real kernel, as root,
each container in forked children (new mount+pid namespaces), and prints a table.

    .venv/bin/python labs/02-rootfs/check.py               # checks labs/02-rootfs/skeleton.py
    .venv/bin/python labs/02-rootfs/check.py --reference   # checks minidocker.rootfs (must pass)
    .venv/bin/python labs/02-rootfs/check.py path/to/mine.py
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(HERE.parents[1]))

from minidocker import kernel as K  # noqa: E402
from minidocker import rootfs as ref  # noqa: E402  (helpers only: forking, a busybox rootfs)

from minidocker.labs import expect, run_checks  # noqa: E402

REFERENCE = "minidocker.rootfs"
Result = tuple[str, bool, str]

DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}
LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
         "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}


def _fail(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


# --- the checks: each returns a detail string or raises --------------------------------------------------

def check_mountinfo_self(m) -> str:
    rows = m.mountinfo("self")
    _fail(isinstance(rows, list) and rows, "mountinfo('self') returned nothing")
    _fail(any(e.mountpoint == "/" for e in rows), "no entry for /")
    proc = [e for e in rows if e.mountpoint == "/proc"]
    expect("fstype of /proc", proc[0].fstype if proc else "<no /proc entry>", "proc")
    _fail(all(isinstance(e.id, int) and isinstance(e.parent, int) for e in rows), "id/parent must be ints")
    _fail(len({e.id for e in rows}) == len(rows), "mount ids must be unique")
    return f"{len(rows)} mounts"


def check_mountinfo_escapes(m) -> str:
    """A mount point with a space and a shared propagation, made in a throw-away mount namespace."""
    tmp = tempfile.mkdtemp(prefix="lab02-")
    target = os.path.join(tmp, "with space")
    os.mkdir(target)

    def child():
        k = K.Linux()
        k.unshare(K.CLONE_NEWNS)
        k.mount(None, "/", None, K.MS_REC | K.MS_PRIVATE, None)
        k.mount("lab-src", target, "tmpfs", 0, "size=1m")
        k.mount(None, target, None, K.MS_SHARED, None)
        return [e for e in m.mountinfo() if e.mountpoint == target]

    try:
        rows = ref._fork_call(child, timeout=20)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    expect(f"entries with mountpoint {target!r} (decode \\040 as a space)", len(rows), 1)
    e = rows[0]
    expect("(fstype, source)", (e.fstype, e.source), ("tmpfs", "lab-src"))
    expect("propagation starts with 'shared:'", e.propagation[:7], "shared:")
    _fail("size=1024k" in e.super_options, f"super_options should hold size=1024k, got {e.super_options!r}")
    return "escapes, optional fields and super options parsed"


def check_etc_files(m) -> str:
    tmp = tempfile.mkdtemp(prefix="lab02-")
    try:
        paths = m.write_etc_files(os.path.join(tmp, "a"), "lab-box", hosts_extra=["db:10.0.0.5", "v6:fd00::1"],
                                  dns=["1.1.1.1"])
        expect("keys", sorted(paths), ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"])
        expect("/etc/hostname", _read(paths["/etc/hostname"]), "lab-box\n")
        hosts = [line.split() for line in _read(paths["/etc/hosts"]).splitlines()]
        for want in (["127.0.0.1", "localhost"], ["127.0.1.1", "lab-box"], ["10.0.0.5", "db"], ["fd00::1", "v6"]):
            _fail(want in hosts, f"/etc/hosts lacks the line {' '.join(want)!r}")
        _fail(any(h[:2] == ["::1", "localhost"] for h in hosts), "/etc/hosts lacks ::1 localhost")
        expect("resolv.conf with dns=['1.1.1.1']", _read(paths["/etc/resolv.conf"]), "nameserver 1.1.1.1\n")
        host = os.path.join(tmp, "host-resolv.conf")
        with open(host, "w") as f:
            f.write("nameserver 127.0.0.53\nnameserver 10.9.8.7\nsearch lab.example\n")
        paths = m.write_etc_files(os.path.join(tmp, "b"), "x", ip="172.17.0.9", host_resolv=host)
        resolv = _read(paths["/etc/resolv.conf"])
        _fail("127.0.0.53" not in resolv, "loopback nameservers must be dropped")
        _fail("nameserver 10.9.8.7" in resolv and "search lab.example" in resolv, "keep other lines of the host file")
        _fail(["172.17.0.9", "x"] in [l.split() for l in _read(paths["/etc/hosts"]).splitlines()],
              "the hostname goes on the container's ip when given")
        with open(host, "w") as f:
            f.write("nameserver 127.0.0.1\n")
        resolv = _read(m.write_etc_files(os.path.join(tmp, "c"), "x", host_resolv=host)["/etc/resolv.conf"])
        _fail("nameserver 8.8.8.8" in resolv, "with only loopback nameservers, fall back to 8.8.8.8")
        leftovers = [n for n in os.listdir(os.path.join(tmp, "a")) if n not in ("hostname", "hosts", "resolv.conf")]
        expect("temporary files left behind", leftovers, [])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return "hostname, hosts, resolv.conf (given dns, host file, fallback)"


def check_setup_dev_recorded(m) -> str:
    """Dry run in user-namespace mode: no mknod, binds of the host's nodes."""
    rec = K.Recorder()
    m.setup_dev(rec, "/nonexistent/rootfs", user_namespace=True)
    _fail("mknod" not in rec.names(), "in a user namespace mknod is refused: bind-mount the host's nodes")
    binds = {(c.args[0], c.args[1]) for c in rec.calls if c.name == "mount" and c.args[3] & K.MS_BIND}
    for dev in DEVICES:
        _fail((f"/dev/{dev}", f"/nonexistent/rootfs/dev/{dev}") in binds, f"no bind mount of /dev/{dev}")
    first = rec.calls[0] if rec.calls else None
    _fail(any(c.name == "mount" and c.args[2] == "tmpfs" and c.args[1] == "/nonexistent/rootfs/dev"
              for c in rec.calls), "no tmpfs mounted on /dev")
    return f"{len(rec.calls)} calls recorded, first: {first}"


def check_setup_dev_real(m) -> str:
    tmp = tempfile.mkdtemp(prefix="lab02-")
    root = os.path.join(tmp, "root")
    os.mkdir(root)

    def child():
        k = K.Linux()
        k.unshare(K.CLONE_NEWNS)
        k.mount(None, "/", None, K.MS_REC | K.MS_PRIVATE, None)
        m.setup_dev(k, root)
        dev = os.path.join(root, "dev")
        found = {}
        for name in os.listdir(dev):
            st = os.lstat(os.path.join(dev, name))
            found[name] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), os.major(st.st_rdev),
                           os.minor(st.st_rdev), os.readlink(os.path.join(dev, name)) if stat.S_ISLNK(st.st_mode) else None)
        fd = os.open(os.path.join(dev, "ptmx"), os.O_RDWR | os.O_NOCTTY)   # via the symlink to pts/ptmx
        pts = sorted(os.listdir(os.path.join(dev, "pts")))
        os.close(fd)
        types = {e.mountpoint[len(dev):] or "/": e.fstype for e in ref.mountinfo() if e.mountpoint.startswith(dev)}
        return found, pts, types

    try:
        found, pts, types = ref._fork_call(child, timeout=20)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for name, (major, minor) in DEVICES.items():
        _fail(name in found, f"/dev/{name} missing")
        _fail(found[name][:4] == (stat.S_IFCHR, 0o666, major, minor),
              f"/dev/{name}: want char {major}:{minor} mode 0666, got {found[name][:4]}")
    for name, target in LINKS.items():
        _fail(name in found and found[name][4] == target, f"/dev/{name} should be a symlink to {target}")
    _fail(types == {"/": "tmpfs", "/pts": "devpts", "/shm": "tmpfs", "/mqueue": "mqueue"},
          f"mounts under /dev: {types}")
    _fail("0" in pts, "opening /dev/ptmx should create pts/0 in a new devpts instance (newinstance)")
    return "nodes, modes, devpts (newinstance), shm, mqueue, symlinks"


def _busybox_rootfs(tmp: str) -> str:
    return ref.make_busybox_rootfs(os.path.join(tmp, "rootfs"))


def check_pivot_into(m) -> str:
    tmp = tempfile.mkdtemp(prefix="lab02-")
    marker = os.path.join(tmp, "host-only")
    with open(marker, "w") as f:
        f.write("host")
    try:
        rootfs = _busybox_rootfs(tmp)

        def container():
            k = K.Linux()
            k.mount(None, "/", None, K.MS_REC | K.MS_PRIVATE, None)
            k.mount(rootfs, rootfs, None, K.MS_BIND | K.MS_REC, None)
            ref.mount_proc(k, rootfs)   # to read the mount table afterwards
            m.pivot_into(k, rootfs)
            return (sorted(os.listdir("/")), os.path.exists(marker), os.getcwd(),
                    [e.mountpoint for e in ref.mountinfo()])

        top, marker_seen, cwd, points = ref._run_in_new_namespaces(
            container, flags=K.CLONE_NEWNS | K.CLONE_NEWPID, timeout=20)
        _fail(top == sorted(os.listdir(rootfs)), f"'/' should list the rootfs, got {top[:8]}...")
        _fail(not marker_seen, "a host file is still reachable")
        _fail(points.count("/") == 1, f"the old root is still mounted: {points.count('/')} mounts on '/', "
                                      f"{len(points)} mounts visible (umount2 with MNT_DETACH?)")
        _fail(cwd == "/", f"working directory should be '/', is {cwd!r}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return "pivoted, old root detached, cwd /"


def check_whole_setup(m) -> str:
    """The full checklist (the given setup_rootfs with your steps) and a busybox shell inside."""
    tmp = tempfile.mkdtemp(prefix="lab02-")
    try:
        rootfs = _busybox_rootfs(tmp)
        files = ref.write_etc_files(os.path.join(tmp, "etc"), "lab-box")

        def container():
            m.setup_rootfs(K.Linux(), m.RootfsSpec(rootfs, bind_files=files))
            p = subprocess.run(["/bin/sh", "-c", "cat /etc/hostname; echo hi > /dev/null && echo ok"],
                               capture_output=True, text=True, timeout=10)
            return (p.stdout.split(), sorted(n for n in os.listdir("/proc") if n.isdigit()),
                    [e.mountpoint for e in ref.mountinfo()].count("/"))

        out, pids, roots = ref._run_in_new_namespaces(container, timeout=20)
        _fail(roots == 1, f"{roots} mounts on '/': the old root is still there")
        _fail(out == ["lab-box", "ok"], f"busybox sh inside the container printed {out} (want lab-box, ok)")
        _fail(pids == ["1"], f"/proc should show only pid 1, shows {pids}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return "busybox sh runs inside and sees its hostname; /proc shows pid 1 alone"


CHECKS: list[tuple[str, Callable]] = [
    ("1 mountinfo: parse /proc/self/mountinfo", check_mountinfo_self),
    ("1 mountinfo: escapes and propagation", check_mountinfo_escapes),
    ("2 write_etc_files", check_etc_files),
    ("3 setup_dev: dry run in a user namespace", check_setup_dev_recorded),
    ("3 setup_dev: real /dev", check_setup_dev_real),
    ("4 pivot_into: old root detached", check_pivot_into),
    ("all: setup_rootfs + busybox", check_whole_setup),
]


def check(module) -> list[Result]:
    """Every check against ``module``, each in a child of its own with a timeout (minidocker.labs)."""
    return run_checks(CHECKS, module)



def main(argv: list[str]) -> int:
    from minidocker.labs import script_main
    return script_main(argv, check, REFERENCE, HERE / "skeleton.py", 'lab 02 (root filesystem)', needs_root='mount namespaces, mounts, pivot_root')


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
