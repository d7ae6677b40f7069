"""The root-filesystem chapter (minidocker/rootfs.py), against the real kernel.

Privileged tests run every container in forked children (rootfs._run_in_new_namespaces: fork,
unshare mnt+pid+..., fork again to be pid 1) on a busybox rootfs in a temporary directory, and check
from the inside what a process sees. The test process itself never unshares or mounts anything, and
``no_mount_leaks`` checks that its mount table is the same after every test.
"""
from __future__ import annotations

import errno
import importlib
import importlib.util
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from minidocker import kernel as K
from minidocker import rootfs as R
from minidocker.kernel import KernelError, Linux, Recorder
from minidocker.rootfs import Mount, RootfsSpec, mountinfo, setup_rootfs

from conftest import need, need_root

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / "labs" / "02-rootfs"
BUSYBOX = "/bin/busybox"

EXPECTED_DEV = {  # name -> (major, minor); OCI config-linux.md "Default Devices"
    "null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0),
}
EXPECTED_DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                      "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}


TMP_PREFIXES = tuple(os.path.join(tempfile.gettempdir(), p) for p in ("md-rootfs-test-", "lab02-"))


def _mount_table() -> dict:
    """The test process's mount table: (id, mount point) -> (mount point, propagation, options).
    (Keyed by both: the kernel reuses the ids of unmounted mounts.)

    :func:`_assert_no_leak` flags any new mount at or below our temporary directories (where every
    mount these tests make lives) and any change to an existing mount (step 1 changes propagation:
    that must not leak either). Mounts that other programs add or remove on a shared development
    machine meanwhile are ignored, so the check does not flake."""
    return {(e.id, e.mountpoint): (e.mountpoint, e.propagation, e.options) for e in mountinfo()}


def _assert_no_leak(before: dict, after: dict, what: str) -> None:
    new = [v for k, v in after.items() if k not in before and v[0].startswith(TMP_PREFIXES)]
    changed = [(before[k], after[k]) for k in before.keys() & after.keys() if before[k] != after[k]]
    assert not new and not changed, f"{what} changed the test process's mounts: new {new}, changed {changed}"


@pytest.fixture(scope="module", autouse=True)
def no_mount_leaks_in_module():
    """After the whole file: no new mount in the test process's mount namespace."""
    before = _mount_table()
    yield
    _assert_no_leak(before, _mount_table(), "this test file")


@pytest.fixture(autouse=True)
def no_mount_leaks():
    before = _mount_table()
    yield
    _assert_no_leak(before, _mount_table(), "this test")


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="md-rootfs-test-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def privileged():
    need_root()
    need(os.path.exists(BUSYBOX), "/bin/busybox (Debian package busybox-static)")


@pytest.fixture
def busybox_rootfs(tmp, privileged):
    return R.make_busybox_rootfs(os.path.join(tmp, "rootfs"))


def in_container(fn, flags=R.DEFAULT_NS_FLAGS, **kw):
    """Run fn() as pid 1 of new namespaces (forked twice); return its result."""
    return R._run_in_new_namespaces(fn, flags=flags, timeout=30, **kw)


def sh(*argv: str) -> str:
    """Run a busybox command inside the container (after pivot_root /bin/... is the rootfs's)."""
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=10)
    return p.stdout + p.stderr


def host_root_dev() -> str:
    return next(e.major_minor for e in mountinfo() if e.mountpoint == "/")


# --- dry run: no root needed ------------------------------------------------------------------------

def test_recorder_dry_run_records_the_full_sequence_in_order(tmp):
    rootfs = os.path.join(tmp, "does-not-exist")
    spec = RootfsSpec(rootfs=rootfs, mounts=[Mount("overlay", rootfs, "overlay", 0, "lowerdir=/l,upperdir=/u,workdir=/w")],
                      bind_files={"/etc/hostname": "/host/hostname"}, readonly=True)
    rec = Recorder()
    setup_rootfs(rec, spec)
    calls = [(c.name, c.args) for c in rec.calls]
    rfs = os.path.realpath(rootfs)
    # the skeleton of the checklist, in this order
    expected_in_order = [
        ("mount", (None, "/", None, K.MS_REC | K.MS_PRIVATE, None)),                  # 1. no propagation
        ("mkdir", (rootfs, 0o755)),                                                     # 2. spec.mounts
        ("mount", ("overlay", rootfs, "overlay", 0, "lowerdir=/l,upperdir=/u,workdir=/w")),
        ("mount", (rfs, rfs, None, K.MS_BIND | K.MS_REC, None)),                      # 3. mount point
        ("mount", ("proc", f"{rfs}/proc", "proc", K.MS_NOSUID | K.MS_NOEXEC | K.MS_NODEV, None)),
        ("mount", ("sysfs", f"{rfs}/sys", "sysfs", K.MS_RDONLY | K.MS_NOSUID | K.MS_NOEXEC | K.MS_NODEV, None)),
        ("mount", ("tmpfs", f"{rfs}/dev", "tmpfs", K.MS_NOSUID | K.MS_STRICTATIME, "mode=755,size=65536k")),
        ("mknod", (f"{rfs}/dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))),
        ("mount", ("devpts", f"{rfs}/dev/pts", "devpts", K.MS_NOSUID | K.MS_NOEXEC,
                   "newinstance,ptmxmode=0666,mode=0620")),
        ("mount", ("shm", f"{rfs}/dev/shm", "tmpfs", K.MS_NOSUID | K.MS_NODEV | K.MS_NOEXEC, "mode=1777,size=64m")),
        ("symlink", ("pts/ptmx", f"{rfs}/dev/ptmx")),
        ("touch", (f"{rfs}/etc/hostname",)),                                          # 7. bind_files
        ("mount", ("/host/hostname", f"{rfs}/etc/hostname", None, K.MS_BIND, None)),
        ("chdir", (rfs,)),                                                              # 8. pivot
        ("pivot_root", (".", ".")),
        ("umount2", (".", K.MNT_DETACH)),
        ("chdir", ("/",)),
    ]
    positions = [calls.index(c) for c in expected_in_order]
    assert positions == sorted(positions), rec.transcript()
    # 9. read-only remount of "/" is the very last call
    name, args = calls[-1]
    assert name == "mount" and args[1] == "/" and args[3] & (K.MS_REMOUNT | K.MS_BIND | K.MS_RDONLY) == \
        K.MS_REMOUNT | K.MS_BIND | K.MS_RDONLY
    # every default device gets a node (chmod'ed against the umask), every dev symlink is made
    for dev, (major, minor) in EXPECTED_DEV.items():
        assert ("mknod", (f"{rfs}/dev/{dev}", stat.S_IFCHR | 0o666, os.makedev(major, minor))) in calls
        assert ("chmod", (f"{rfs}/dev/{dev}", 0o666)) in calls
    for link, target in EXPECTED_DEV_LINKS.items():
        assert ("symlink", (target, f"{rfs}/dev/{link}")) in calls
    assert not os.path.exists(rootfs), "a dry run must not touch the filesystem"


def test_explain_rootfs_is_the_recorder_transcript():
    text = R.explain_rootfs(RootfsSpec(rootfs="/nonexistent/rootfs"))
    lines = text.splitlines()
    assert lines[0].strip() == "1  mount(None, '/', None, MS_REC|MS_PRIVATE, None)"
    assert "pivot_root('.', '.')" in text and "umount2('.', MNT_DETACH)" in text
    assert lines[-1].endswith("chdir('/')")


def test_user_namespace_dry_run_binds_devices_and_falls_back_for_sysfs():
    class SysfsRefused(Recorder):
        """Like the kernel inside a user namespace without its own network namespace."""
        def __getattr__(self, name):
            record = super().__getattr__(name)
            if name != "mount":
                return record

            def mount(*args):
                record(*args)
                if args[2] == "sysfs":
                    raise KernelError(errno.EPERM, "mount", args)
            return mount

    rec = SysfsRefused()
    setup_rootfs(rec, RootfsSpec(rootfs="/nonexistent/rootfs", user_namespace=True))
    assert "mknod" not in rec.names()
    binds = [c.args for c in rec.calls if c.name == "mount" and c.args[3] == K.MS_BIND]
    assert {(a[0], a[1]) for a in binds} >= {(f"/dev/{d}", f"/nonexistent/rootfs/dev/{d}") for d in EXPECTED_DEV}
    sys_calls = [c.args for c in rec.calls if c.name == "mount" and c.args[1] == "/nonexistent/rootfs/sys"]
    assert sys_calls[1] == ("/sys", "/nonexistent/rootfs/sys", None, K.MS_BIND | K.MS_REC, None)
    assert sys_calls[2][3] & (K.MS_REMOUNT | K.MS_BIND | K.MS_RDONLY) == K.MS_REMOUNT | K.MS_BIND | K.MS_RDONLY
    # without user_namespace the EPERM is an error, not a fallback
    with pytest.raises(KernelError, match="sysfs"):
        setup_rootfs(SysfsRefused(), RootfsSpec(rootfs="/nonexistent/rootfs"))


def test_errors_name_the_call_the_errno_and_the_step():
    rec = Recorder(fail={"pivot_root": errno.EINVAL})
    with pytest.raises(KernelError) as ei:
        setup_rootfs(rec, RootfsSpec(rootfs="/nonexistent/rootfs"))
    assert "pivot_root('.', '.') failed: EINVAL" in str(ei.value)
    assert any("8. pivot_root" in n for n in ei.value.__notes__)


def test_secure_join_keeps_symlinks_inside_the_rootfs(tmp):
    root = os.path.join(tmp, "root")
    os.makedirs(os.path.join(root, "real"))
    os.symlink("/", os.path.join(root, "etc"))              # an image's "etc -> /"
    os.symlink("../../..", os.path.join(root, "real", "up"))
    os.symlink("/real", os.path.join(root, "abs"))
    assert R.secure_join(root, "/etc/hostname") == os.path.join(root, "hostname")
    assert R.secure_join(root, "/real/up/x") == os.path.join(root, "x")
    assert R.secure_join(root, "/real/up/real/up/bin") == os.path.join(root, "bin")
    assert R.secure_join(root, "/../../proc") == os.path.join(root, "proc")
    assert R.secure_join(root, "/abs/new/file") == os.path.join(root, "real", "new", "file")
    os.symlink("loop", os.path.join(root, "loop"))
    with pytest.raises(OSError) as ei:
        R.secure_join(root, "/loop/x")
    assert ei.value.errno == errno.ELOOP


# --- write_etc_files ------------------------------------------------------------------------------------

def _read(p):
    with open(p) as f:
        return f.read()


def test_write_etc_files_writes_hostname_hosts_and_given_dns(tmp):
    paths = R.write_etc_files(tmp, "web1", hosts_extra=["db:10.0.0.5", ("v6host", "fd00::1")], dns=["1.1.1.1", "9.9.9.9"])
    assert paths == {"/etc/hostname": f"{tmp}/hostname", "/etc/hosts": f"{tmp}/hosts",
                     "/etc/resolv.conf": f"{tmp}/resolv.conf"}
    assert _read(paths["/etc/hostname"]) == "web1\n"
    hosts = [line.split() for line in _read(paths["/etc/hosts"]).splitlines()]
    assert ["127.0.0.1", "localhost"] in hosts
    assert ["::1", "localhost", "ip6-localhost", "ip6-loopback"] in hosts
    assert ["127.0.1.1", "web1"] in hosts
    assert ["10.0.0.5", "db"] in hosts and ["fd00::1", "v6host"] in hosts
    assert _read(paths["/etc/resolv.conf"]) == "nameserver 1.1.1.1\nnameserver 9.9.9.9\n"
    assert sorted(os.listdir(tmp)) == ["hostname", "hosts", "resolv.conf"], "atomic writes leave no temp files"


def test_write_etc_files_uses_container_ip_and_host_resolv_without_loopback(tmp):
    host = os.path.join(tmp, "host-resolv.conf")
    with open(host, "w") as f:
        f.write("# generated\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.1.2.3\nsearch example.com\noptions ndots:2\n")
    paths = R.write_etc_files(os.path.join(tmp, "c"), "web1", ip="172.17.0.2", host_resolv=host)
    assert ["172.17.0.2", "web1"] in [line.split() for line in _read(paths["/etc/hosts"]).splitlines()]
    resolv = _read(paths["/etc/resolv.conf"])
    assert "127.0.0.53" not in resolv and "nameserver ::1" not in resolv
    assert "nameserver 10.1.2.3" in resolv and "search example.com" in resolv and "options ndots:2" in resolv


def test_write_etc_files_falls_back_to_public_dns_when_only_loopback(tmp):
    host = os.path.join(tmp, "host-resolv.conf")
    with open(host, "w") as f:
        f.write("nameserver 127.0.0.53\n")
    resolv = _read(R.write_etc_files(os.path.join(tmp, "c"), "x", host_resolv=host)["/etc/resolv.conf"])
    assert [l for l in resolv.splitlines() if l.startswith("nameserver")] == ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    # and rewriting replaces the files in place
    paths = R.write_etc_files(os.path.join(tmp, "c"), "y", dns=["1.1.1.1"])
    assert _read(paths["/etc/hostname"]) == "y\n"


# --- mountinfo parsing and the diagram ---------------------------------------------------------------------

def test_parse_mountinfo_line_handles_escapes_and_optional_fields():
    e = R.parse_mountinfo_line(
        r"36 35 98:0 /mnt\0401 /a\040dir\011x rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue")
    assert (e.id, e.parent, e.major_minor) == (36, 35, "98:0")
    assert e.root == "/mnt 1" and e.mountpoint == "/a dir\tx"
    assert e.propagation == "master:1 shared:7" and e.fstype == "ext3" and e.source == "/dev/root"
    assert e.options == "rw,noatime" and e.super_options == "rw,errors=continue" and not e.readonly
    p = R.parse_mountinfo_line("22 27 0:21 / /proc ro,relatime - proc proc rw")
    assert p.propagation == "private" and p.readonly


def test_mountinfo_of_this_process():
    rows = mountinfo()
    assert any(e.mountpoint == "/" for e in rows)
    assert any(e.mountpoint == "/proc" and e.fstype == "proc" for e in rows)
    assert len({e.id for e in rows}) == len(rows)


def test_mount_tree_graph_and_render():
    from minidocker.diagrams import mounts
    rows = [R.parse_mountinfo_line(l) for l in (
        "85 63 254:0 /tmp/x/rootfs / ro,relatime - ext4 /dev/vda rw",
        "86 85 0:40 / /proc rw,nosuid,nodev,noexec,relatime shared:3 - proc proc rw",
        "88 85 0:41 / /dev rw,nosuid master:4 - tmpfs tmpfs rw,mode=755")]
    g = mounts.mount_tree_graph(entries=rows, title="test")
    src = g.source
    assert "85 -> 86" in src and "85 -> 88" in src and "p85 -> 85" in src
    assert "propagation: shared:3" in src and "tmpfs" in src
    out_dir = REPO / "diagrams"
    need(os.access(out_dir if out_dir.exists() else REPO, os.W_OK), f"write access to {out_dir}")
    name = f"test-mount-tree-{os.getpid()}"
    path = mounts.render(g, name)
    try:
        assert path == str(REPO / "diagrams" / f"{name}.svg")
        assert _read(path).lstrip().startswith("<?xml") and "<svg" in _read(path)
    finally:
        os.unlink(path)


# --- real containers ------------------------------------------------------------------------------------

@pytest.mark.privileged
def test_after_setup_rootfs_the_host_is_invisible(busybox_rootfs, tmp):
    marker = os.path.join(tmp, "host-marker")
    with open(marker, "w") as f:
        f.write("host secret")
    files = R.write_etc_files(os.path.join(tmp, "etc"), "box")
    host_dev = host_root_dev()

    def container():
        setup_rootfs(Linux(), RootfsSpec(busybox_rootfs, bind_files=files))
        return {
            "pid": os.getpid(), "cwd": os.getcwd(), "marker": os.path.exists(marker),
            "listdir": sorted(os.listdir("/")), "ls": sh("/bin/ls", "-1", "/").split(),
            "proc": sorted(p for p in os.listdir("/proc") if p.isdigit()),
            "proc1": os.readlink("/proc/self"),
            "ps": sh("/bin/ps", "-o", "pid,comm"),
            "mounts": mountinfo(),
            "hostname": _read("/etc/hostname"), "hosts": _read("/etc/hosts"),
        }

    out = in_container(container)
    assert out["pid"] == 1 and out["proc1"] == "1" and out["cwd"] == "/"
    assert out["marker"] is False, "a host file is reachable from the container"
    expected_top = sorted(os.listdir(busybox_rootfs))     # the rootfs itself, now with proc/sys/dev
    assert out["listdir"] == expected_top == sorted(out["ls"])
    assert {"bin", "proc", "sys", "dev", "etc"} <= set(expected_top)
    # /proc is this pid namespace's: pid 1 alone (busybox ps was a second, now gone, process)
    assert out["proc"] == ["1"]
    ps_pids = [line.split()[0] for line in out["ps"].splitlines()[1:]]
    assert ps_pids[0] == "1" and len(ps_pids) == 2, out["ps"]
    # exactly the mounts we made; the old root is gone
    points = {e.mountpoint for e in out["mounts"]}
    assert points == {"/", "/proc", "/sys", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue",
                      "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}
    for e in out["mounts"]:
        if e.major_minor == host_dev:  # from the host's root filesystem: only the rootfs and bind_files
            assert e.root.startswith(tmp + "/"), f"host filesystem mounted in the container: {e}"
    root = next(e for e in out["mounts"] if e.mountpoint == "/")
    assert root.parent not in {e.id for e in out["mounts"]}, "the root mount's parent (old root) is detached"
    assert out["hostname"] == "box\n" and "127.0.1.1\tbox" in out["hosts"]


@pytest.mark.privileged
def test_proc_sys_and_dev_inside(busybox_rootfs):
    # a sysfs file root may write on the host
    sys_file = next(p for p in ("/sys/kernel/profiling", "/sys/kernel/rcu_expedited",
                                "/sys/kernel/mm/transparent_hugepage/enabled") if os.path.exists(p))

    def container():
        setup_rootfs(Linux(), RootfsSpec(busybox_rootfs))
        res = {}
        try:
            os.mkdir("/sys/minidocker-test")
            res["sys_mkdir"] = "succeeded"
        except OSError as e:
            res["sys_mkdir"] = e.errno
        try:  # opening for writing is enough to be refused; nothing is written
            os.close(os.open(sys_file, os.O_WRONLY))
            res["sys_write"] = "succeeded"
        except OSError as e:
            res["sys_write"] = e.errno
        res["dev"] = {}
        for name in os.listdir("/dev"):
            st = os.lstat(f"/dev/{name}")
            res["dev"][name] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), os.major(st.st_rdev),
                                os.minor(st.st_rdev), os.readlink(f"/dev/{name}") if stat.S_ISLNK(st.st_mode) else None)
        master, slave = os.openpty()                 # opens /dev/ptmx -> pts/ptmx, our devpts instance
        res["pty"] = os.ttyname(slave)
        os.close(master), os.close(slave)
        fd = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY)
        os.close(fd)
        with open("/dev/shm/data", "w") as f:
            f.write("shared memory")
        res["shm"] = _read("/dev/shm/data")
        with open("/dev/null", "w") as f:
            f.write("gone")
        with open("/dev/zero", "rb") as f:
            res["zero"] = f.read(4)
        try:
            with open("/dev/full", "w") as f:
                f.write("x")
                f.flush()
            res["full"] = "succeeded"
        except OSError as e:
            res["full"] = e.errno
        res["fstypes"] = {e.mountpoint: (e.fstype, e.options, e.super_options) for e in mountinfo()}
        res["stdout_link"] = os.path.realpath("/dev/stdout").startswith("/")
        return res

    r = in_container(container)
    assert r["sys_mkdir"] == errno.EROFS and r["sys_write"] == errno.EROFS
    devs = r["dev"]
    assert set(devs) == set(EXPECTED_DEV) | set(EXPECTED_DEV_LINKS) | {"pts", "shm", "mqueue"}
    for name, (major, minor) in EXPECTED_DEV.items():
        assert devs[name][:4] == (stat.S_IFCHR, 0o666, major, minor), name
    for name, target in EXPECTED_DEV_LINKS.items():
        assert devs[name][0] == stat.S_IFLNK and devs[name][4] == target
    assert r["pty"] == "/dev/pts/0", "a new devpts instance numbers its ptys from 0"
    assert r["shm"] == "shared memory" and r["zero"] == b"\0\0\0\0" and r["full"] == errno.ENOSPC
    fs = r["fstypes"]
    assert fs["/proc"][0] == "proc" and {"nosuid", "nodev", "noexec"} <= set(fs["/proc"][1].split(","))
    assert fs["/sys"][0] == "sysfs" and "ro" in fs["/sys"][1].split(",")
    assert fs["/dev"][0] == "tmpfs" and "nosuid" in fs["/dev"][1] and "mode=755" in fs["/dev"][2]
    assert fs["/dev/pts"][0] == "devpts" and "ptmxmode=666" in fs["/dev/pts"][2] and "mode=620" in fs["/dev/pts"][2]
    assert fs["/dev/shm"][0] == "tmpfs" and "size=65536k" in fs["/dev/shm"][2]
    assert {"nosuid", "nodev", "noexec"} <= set(fs["/dev/shm"][1].split(","))
    assert fs["/dev/mqueue"][0] == "mqueue"


@pytest.mark.privileged
def test_console_is_the_given_pty(busybox_rootfs):
    master, slave = os.openpty()
    try:
        name = os.ttyname(slave)           # /dev/pts/N on the host's devpts
        rdev = os.fstat(slave).st_rdev

        def container():
            setup_rootfs(Linux(), RootfsSpec(busybox_rootfs, console=name))
            with open("/dev/console", "w") as f:
                f.write("hello console\n")
            return os.stat("/dev/console").st_rdev

        assert in_container(container) == rdev
        assert os.read(master, 100).replace(b"\r", b"") == b"hello console\n"
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.privileged
def test_mounts_do_not_propagate_to_the_host(busybox_rootfs):
    # In the real test process: nothing changes (also checked by the no_mount_leaks fixture).
    before = _mount_table()
    in_container(lambda: setup_rootfs(Linux(), RootfsSpec(busybox_rootfs)))
    _assert_no_leak(before, _mount_table(), "a container")
    # On a host whose mounts are *shared* (a systemd machine): still nothing, thanks to step 1 ...
    assert R.propagation_demo(busybox_rootfs, make_private=True) == {"leaked": [], "container_error": None}
    # ... and the same test without step 1 sees the leak, so it would notice a missing step 1.
    bad = R.propagation_demo(busybox_rootfs, make_private=False)
    assert f"{busybox_rootfs}/proc" in bad["leaked"] and f"{busybox_rootfs}/dev" in bad["leaked"]
    assert "pivot_root" in bad["container_error"] and "EINVAL" in bad["container_error"]


@pytest.mark.privileged
def test_chroot_escapes_but_pivot_root_does_not(busybox_rootfs, tmp):
    marker = os.path.join(tmp, "host-marker")
    with open(marker, "w") as f:
        f.write("host secret")
    chroot_report = R.chroot_escape_demo(busybox_rootfs, probe=marker)
    assert chroot_report.splitlines()[-1] == "escaped to the host's root: yes", chroot_report
    after_escape = chroot_report.split('chdir("..") x 64')[1]
    assert "'host secret'" in after_escape
    assert f"ls / = {' '.join(sorted(os.listdir('/')))}" in after_escape
    pivot_report = R.pivot_root_escape_attempt(busybox_rootfs, probe=marker)
    assert pivot_report.splitlines()[-1] == "escaped to the host's root: no", pivot_report
    assert "host secret" not in pivot_report
    assert not os.path.exists(os.path.join(busybox_rootfs, R.ESCAPE_DIR)), "demo cleaned up"


@pytest.mark.privileged
def test_overlay_from_spec_mounts_writes_land_in_upper(busybox_rootfs, tmp):
    upper, work, merged = (os.path.join(tmp, d) for d in ("upper", "work", "merged"))
    for d in (upper, work):
        os.mkdir(d)
    data = f"lowerdir={busybox_rootfs},upperdir={upper},workdir={work}"
    spec = RootfsSpec(merged, mounts=[Mount("overlay", merged, "overlay", 0, data)])

    def container():
        setup_rootfs(Linux(), spec)
        with open("/hello.txt", "w") as f:
            f.write("written in the container")
        out = sh("/bin/sh", "-c", "echo from-sh > /tmp/sh.txt; cat /hello.txt; ls /bin/busybox")
        root = next(e for e in mountinfo() if e.mountpoint == "/")
        return out, root.fstype

    out, fstype = in_container(container)
    assert "written in the container" in out and "/bin/busybox" in out
    assert fstype == "overlay"
    assert _read(os.path.join(upper, "hello.txt")) == "written in the container"
    assert _read(os.path.join(upper, "tmp", "sh.txt")) == "from-sh\n"
    assert not os.path.exists(os.path.join(busybox_rootfs, "hello.txt")), "the lower layer is untouched"
    assert os.listdir(merged) == [], "the overlay vanished with the mount namespace"


@pytest.mark.privileged
def test_readonly_rootfs_refuses_writes(busybox_rootfs, tmp):
    files = R.write_etc_files(os.path.join(tmp, "etc"), "ro-box")

    def container():
        setup_rootfs(Linux(), RootfsSpec(busybox_rootfs, readonly=True, bind_files=files))
        res = {}
        for path in ("/newfile", "/tmp/newfile", "/dev/shm/ok", "/etc/hostname"):
            try:
                with open(path, "w") as f:
                    f.write("ro-box2\n")
                res[path] = "ok"
            except OSError as e:
                res[path] = errno.errorcode[e.errno]
        res["root_ro"] = next(e for e in mountinfo() if e.mountpoint == "/").readonly
        return res

    res = in_container(container)
    assert res["/newfile"] == res["/tmp/newfile"] == "EROFS"
    assert res["/dev/shm/ok"] == "ok", "/dev/shm stays writable"
    assert res["/etc/hostname"] == "ok", "bind-mounted /etc files are separate mounts, writable as in docker"
    assert res["root_ro"] is True
    assert not os.path.exists(os.path.join(busybox_rootfs, "newfile"))


@pytest.mark.privileged
def test_masked_and_readonly_paths(busybox_rootfs):
    present = [p for p in R.DOCKER_MASKED_PATHS if os.path.exists(p)]   # kernels differ (no /proc/kcore here)
    need(bool(present), "at least one of docker's masked paths on this kernel")

    def container():
        setup_rootfs(Linux(), RootfsSpec(busybox_rootfs, masked_paths=list(R.DOCKER_MASKED_PATHS),
                                         readonly_paths=list(R.DOCKER_READONLY_PATHS)))
        res = {}
        for p in present:
            if os.path.isdir(p):
                res[p] = ("dir", os.listdir(p))                                  # an empty tmpfs over it
            else:
                with open(p, "rb") as f:
                    res[p] = ("file", os.stat(p).st_rdev == os.makedev(1, 3), f.read())  # /dev/null over it
        try:
            os.close(os.open("/proc/sys/kernel/hostname", os.O_WRONLY))
            res["proc_sys"] = "ok"
        except OSError as e:
            res["proc_sys"] = errno.errorcode[e.errno]
        return res

    res = in_container(container)
    for p in present:
        assert res[p] in (("dir", []), ("file", True, b"")), (p, res[p])
    assert res["proc_sys"] == "EROFS"


@pytest.mark.privileged
def test_user_namespace_binds_host_devices_and_sysfs(busybox_rootfs):
    flags = R.DEFAULT_NS_FLAGS | K.CLONE_NEWUSER

    def container():
        setup_rootfs(Linux(), RootfsSpec(busybox_rootfs, user_namespace=True, readonly=True))
        st = os.stat("/dev/null")
        with open("/dev/null", "w") as f:
            f.write("x")
        try:
            os.mkdir("/sys/x")
            sys_err = "ok"
        except OSError as e:
            sys_err = errno.errorcode[e.errno]
        pts = os.ttyname(os.openpty()[1])
        points = {e.mountpoint: e for e in mountinfo()}
        return (os.major(st.st_rdev), os.minor(st.st_rdev)), sys_err, pts, sorted(points), \
            points["/"].readonly, sorted(p for p in os.listdir("/proc") if p.isdigit())

    dev_null, sys_err, pts, points, root_ro, procs = in_container(container, flags=flags)
    assert dev_null == (1, 3)
    assert "/dev/null" in points and "/dev/tty" in points, "device nodes are bind mounts in a user namespace"
    assert "/sys" in points and sys_err == "EROFS"
    assert pts == "/dev/pts/0" and root_ro is True and procs == ["1"]


@pytest.mark.privileged
def test_pivot_root_on_a_non_mount_point_fails_with_einval(tmp, privileged):
    """pivot_root(2): EINVAL when new_root is not a mount point — unless new_root is on the current
    root mount, which is checked first and gives EBUSY. Step 3 (bind onto itself) avoids both."""
    other = os.path.join(tmp, "other-mount")
    os.mkdir(other)
    plain = os.path.join(tmp, "plain")
    os.mkdir(plain)

    def attempt(new_root, mount_tmpfs):
        def container():
            k = Linux()
            k.mount(None, "/", None, K.MS_REC | K.MS_PRIVATE, None)
            if mount_tmpfs:  # a directory on another mount than "/": the "not a mount point" check
                k.mount("tmpfs", other, "tmpfs", 0, "size=1m")
                k.mkdir(new_root)
            k.chdir(new_root)
            k.pivot_root(".", ".")   # no bind of new_root onto itself
        with pytest.raises(R.ChildError) as ei:
            in_container(container)
        assert ei.value.type_name == "KernelError"
        return ei.value

    err = attempt(os.path.join(other, "plain"), mount_tmpfs=True)
    assert err.errno == errno.EINVAL and "pivot_root('.', '.') failed: EINVAL" in str(err)
    on_root_mount = os.stat(tmp).st_dev == os.stat("/").st_dev
    err = attempt(plain, mount_tmpfs=False)
    assert err.errno == (errno.EBUSY if on_root_mount else errno.EINVAL), str(err)
    assert "pivot_root('.', '.') failed" in str(err)


@pytest.mark.privileged
def test_setup_rootfs_error_names_call_and_step(tmp, privileged):
    missing = os.path.join(tmp, "missing")
    with pytest.raises(R.ChildError) as ei:
        in_container(lambda: setup_rootfs(Linux(), RootfsSpec(missing)))
    assert ei.value.errno == errno.ENOENT
    assert "mount(" in ei.value.message and "ENOENT" in ei.value.message
    assert any("3. bind the rootfs onto itself" in n for n in ei.value.notes)


# --- the lab -----------------------------------------------------------------------------------------------

def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.privileged
def test_lab_check_fails_on_skeleton_and_passes_on_reference(privileged):
    check = _load(LAB / "check.py", "lab02_check")
    assert check.REFERENCE == "minidocker.rootfs"
    skeleton = _load(LAB / "skeleton.py", "lab02_skeleton")
    results = check.check(skeleton)
    assert results and not any(ok for _, ok, _ in results), results
    assert all("TODO" in detail or "NotImplementedError" in detail for _, _, detail in results), results
    reference = check.check(importlib.import_module(check.REFERENCE))
    assert all(ok for _, ok, _ in reference), reference
    # and the command-line entry point: exit status 1 / 0
    py = sys.executable
    assert subprocess.run([py, str(LAB / "check.py")], capture_output=True, cwd=REPO, timeout=120).returncode == 1
    p = subprocess.run([py, str(LAB / "check.py"), "--reference"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
