"""Union mounts and copy-on-write: one suite, run against every snapshotter driver (real kernel;
btrfs on a loop device of the test session's own, see minidocker/scratchfs.py).

Every merged view is mounted in a forked child's private mount namespace (unionfs.run_mounted), so
nothing stays mounted whatever happens."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile

import pytest

from conftest import need, need_root, need_tool
from minidocker import cow, kernel as K, rootfs, unionfs
from minidocker.images.commit import ChangeError, apply_changes, commit_image
from minidocker.images.store import MEDIA_TYPE_CONFIG, MEDIA_TYPE_LAYER, MEDIA_TYPE_MANIFEST, ImageStore
from minidocker.images.unpack import prune, unpack

pytestmark = pytest.mark.privileged
DRIVERS = ["overlay", "copy", "btrfs"]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_tar(*entries) -> bytes:
    """entries: (kind, name, arg, {attrs}) with kind file/dir/sym/link/chr/fifo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, arg, *rest in entries:
            attrs = rest[0] if rest else {}
            ti = tarfile.TarInfo(name)
            ti.mtime = attrs.get("mtime", 1_000_000_000)
            ti.mode = attrs.get("mode", 0o755 if kind == "dir" else 0o644)
            ti.uid, ti.gid = attrs.get("uid", 0), attrs.get("gid", 0)
            ti.pax_headers = attrs.get("pax", {})
            data = None
            if kind == "file":
                data = arg if isinstance(arg, bytes) else arg.encode()
                ti.size = len(data)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, arg
            elif kind == "link":
                ti.type, ti.linkname = tarfile.LNKTYPE, arg
            elif kind == "chr":
                ti.type, (ti.devmajor, ti.devminor) = tarfile.CHRTYPE, arg
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def add_image(store: ImageStore, layers: list[bytes], ref: str | None = None):
    for layer in layers:
        store.content.put(layer)
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2020-01-01T00:00:00Z",
                         "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha(x) for x in layers]}}).encode()
    store.content.put(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MEDIA_TYPE_MANIFEST,
                           "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": sha(config), "size": len(config)},
                           "layers": [{"mediaType": MEDIA_TYPE_LAYER, "digest": sha(x), "size": len(x)}
                                      for x in layers]}).encode()
    return store.add_image(manifest, ref)


BASE = make_tar(
    ("dir", "etc", None), ("file", "etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
    ("file", "etc/keep", "hidden later\n"), ("dir", "etc/sub", None), ("file", "etc/sub/a", "a\n"),
    ("file", "etc/sub/b", "b\n"),
    ("dir", "bin", None), ("file", "bin/tool", "#!/bin/sh\n", {"mode": 0o4755}),
    ("link", "bin/tool2", "bin/tool"), ("sym", "bin/sh", "tool"),
    ("dir", "home", None), ("dir", "home/user", None, {"uid": 1000, "gid": 1000, "mode": 0o700}),
    ("file", "home/user/f", "mine\n", {"uid": 1000, "gid": 1000, "mode": 0o600}),
    ("dir", "dev", None), ("chr", "dev/null0", (1, 3), {"mode": 0o666}),
    ("dir", "run", None), ("fifo", "run/fifo", None),
    ("dir", "empty", None, {"mode": 0o1777}),
    ("file", "attr", "x", {"pax": {"SCHILY.xattr.user.colour": "blue"}}),
    ("dir", "olddir", None), ("file", "olddir/f", "old\n"),
    ("dir", "opq", None), ("file", "opq/1", "1"), ("file", "opq/2", "2"),
)
TOP = make_tar(
    ("file", "etc/.wh.keep", ""), ("dir", "opq", None), ("file", "opq/.wh..wh..opq", ""),
    ("file", "opq/new", "new\n"), ("file", "etc/passwd", "root:x:0:0::/root:/bin/ash\n"),
)


def tree(root: str) -> dict:
    """Everything a layer must preserve, per path: type, mode, owner, content or link target,
    device numbers, user xattrs; plus which paths share an inode (hardlinks)."""
    out, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = "/" + os.path.relpath(p, root)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()[:16]
                inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                what = (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                what = None
            xattrs = {}
            if not stat.S_ISLNK(st.st_mode):
                xattrs = {n: os.getxattr(p, n) for n in os.listxattr(p) if n.startswith("user.")}
            out[rel] = (stat.filemode(st.st_mode), st.st_uid, st.st_gid, what, xattrs)
    links = sorted(sorted(v) for v in inodes.values() if len(v) > 1)
    return {"entries": out, "hardlinks": links}


def merged(snap, key: str) -> dict:
    """The tree of snapshot ``key`` as the mount shows it (a committed one through a view)."""
    view = None
    if snap.stat(key).kind == "committed":
        view = f"view-{os.urandom(4).hex()}"
        snap.view(view, key)
    target = os.path.join(os.path.dirname(snap.root), f"mnt-{os.urandom(4).hex()}")
    os.makedirs(target)
    try:
        return unionfs.run_mounted(snap.mounts(view or key), target, tree)
    finally:
        os.rmdir(target)
        if view:
            snap.remove(view)


def snap_root(request, tmp_path, driver: str) -> str:
    """Where a test's snapshotter of ``driver`` keeps its snapshots (btrfs: on the loop device's
    file system, removed after the test)."""
    if driver == "overlay":
        ok, why = unionfs.overlay_usable(str(tmp_path / "probe"))
        need(ok, f"overlayfs usable here ({why})")
    if driver != "btrfs":
        return str(tmp_path / f"snaps-{driver}")
    base = os.path.join(request.getfixturevalue("btrfs_dir"), os.urandom(6).hex())
    os.mkdir(base)
    request.addfinalizer(lambda: shutil.rmtree(base))    # rmdir(2) deletes emptied subvolumes
    return os.path.join(base, "snaps")


@pytest.fixture
def env(tmp_path, request):
    need_root()
    driver = request.param if hasattr(request, "param") else "overlay"
    store = ImageStore(str(tmp_path / "images"))
    snap = unionfs.new_snapshotter(driver, snap_root(request, tmp_path, driver))
    return store, snap


both = pytest.mark.parametrize("env", DRIVERS, indirect=True)   # every driver, not only two


def mutate(t: str) -> dict:
    """What a container does: every kind of change the chapter talks about."""
    done = {}
    os.unlink(f"{t}/etc/sub/a")                                 # delete a lower file
    with open(f"{t}/bin/tool", "a") as f:                       # modify one: copy-up
        f.write("echo changed\n")
    os.rename(f"{t}/home/user/f", f"{t}/home/user/g")           # rename one
    os.chmod(f"{t}/etc/passwd", 0o600)                          # chmod one
    try:                                                        # rename a lower directory
        os.rename(f"{t}/olddir", f"{t}/newdir")
        done["dir_rename"] = "rename"
    except OSError as e:                                        # overlay without redirect_dir
        done["dir_rename"] = os.strerror(e.errno)
        shutil.copytree(f"{t}/olddir", f"{t}/newdir", symlinks=True)
        shutil.rmtree(f"{t}/olddir")
    shutil.rmtree(f"{t}/etc/sub")                               # rm -r + mkdir: opaque
    os.mkdir(f"{t}/etc/sub")
    with open(f"{t}/etc/sub/b", "w") as f:
        f.write("new b\n")
    with open(f"{t}/new", "w") as f:                            # add files of every kind
        f.write("hi\n")
    os.setxattr(f"{t}/new", "user.note", b"x")
    os.chown(f"{t}/new", 123, 456)
    os.link(f"{t}/new", f"{t}/new-hardlink")
    os.symlink("/new", f"{t}/new-symlink")
    os.mknod(f"{t}/dev/zero0", 0o640 | stat.S_IFCHR, os.makedev(1, 5))
    os.mkdir(f"{t}/empty2", 0o750)
    os.chmod(f"{t}/empty2", 0o2750)
    done["tree"] = tree(t)
    return done


EXPECTED_CHANGES = [
    "C /bin", "C /bin/tool", "C /dev", "A /dev/zero0", "A /empty2", "C /etc", "C /etc/passwd",
    "C /etc/sub", "D /etc/sub/a", "C /etc/sub/b", "C /home", "C /home/user", "D /home/user/f",
    "A /home/user/g", "A /new", "A /new-hardlink", "A /new-symlink", "A /newdir", "A /newdir/f",
    "D /olddir",
]
# bin/tool2 is a hardlink of bin/tool. A write through one name changes both on the copy driver
# (one inode); overlay's copy-up gives bin/tool a new inode in the upper layer and bin/tool2 keeps
# the old content (overlayfs.rst: hardlinks are broken on copy-up unless index=on).
EXPECTED_CHANGES_COPY = sorted(EXPECTED_CHANGES + ["C /bin/tool2"], key=lambda c: c[2:])


@both
def test_unpack_once_shared_whiteouts_and_metadata(env):
    store, snap = env
    a = add_image(store, [BASE, TOP], "a:1")
    b = add_image(store, [BASE, make_tar(("file", "b", "b"))], "b:1")
    top_a, top_b = unpack(store, snap, a), unpack(store, snap, b)
    assert top_a == a.chain_ids[-1] and top_b == b.chain_ids[-1]
    assert unpack(store, snap, a) == top_a                      # the second time: nothing to do
    committed = sorted(i.key for i in snap.list())
    assert committed == sorted({*a.chain_ids, *b.chain_ids}) and len(committed) == 3  # base shared
    assert snap.refcount(a.chain_ids[0]) == 2
    view = merged(snap, top_a)["entries"]
    assert "/etc/keep" not in view                              # .wh.keep
    assert sorted(p for p in view if p.startswith("/opq/")) == ["/opq/new"]  # opaque dir
    assert view["/bin/tool"][0] == "-rwsr-xr-x" and view["/empty"][0] == "drwxrwxrwt"
    assert view["/home/user/f"][:3] == ("-rw-------", 1000, 1000)
    assert view["/bin/sh"][3] == "tool" and view["/dev/null0"][3] == (1, 3)
    assert view["/run/fifo"][0].startswith("p") and view["/attr"][4] == {"user.colour": b"blue"}
    assert ["/bin/tool", "/bin/tool2"] in merged(snap, top_a)["hardlinks"]
    # Whiteouts are kernel objects on overlay, deletions on copy — the same merged tree.
    fs = snap.fs(a.chain_ids[1])
    if snap.driver == "overlay":
        assert unionfs.is_whiteout(os.lstat(f"{fs}/etc/keep")) and unionfs.is_opaque(f"{fs}/opq")
        assert unionfs.lookup(snap.layer_dirs(top_a), "/etc/keep") is None
        assert unionfs.lookup(snap.layer_dirs(top_a), "/etc/passwd")[0] == 0
        assert unionfs.lookup(snap.layer_dirs(top_a), "/bin/tool")[0] == 1
        assert set(unionfs.merged_listdir(snap.layer_dirs(top_a), "/opq")) == {"new"}
    else:
        assert not os.path.lexists(f"{fs}/etc/keep") and sorted(os.listdir(f"{fs}/opq")) == ["new"]


def test_all_drivers_unpack_the_same_tree(tmp_path, request):
    need_root()
    store = ImageStore(str(tmp_path / "images"))
    image = add_image(store, [BASE, TOP])
    views = []
    for driver in DRIVERS:
        snap = unionfs.new_snapshotter(driver, snap_root(request, tmp_path / driver, driver))
        views.append(merged(snap, unpack(store, snap, image)))
    assert views[0] == views[1] == views[2]


@both
def test_changes_commit_and_round_trip_onto_the_other_driver(env, tmp_path):
    store, snap = env
    image = add_image(store, [BASE, TOP], "base:1")
    mounts = snap.prepare("c1", unpack(store, snap, image))
    target = str(tmp_path / "rootfs")
    os.mkdir(target)
    done = unionfs.run_mounted(mounts, target, mutate)
    assert done["dir_rename"] == ("Invalid cross-device link" if snap.driver == "overlay" else "rename")
    found = cow.changes(snap, "c1")
    assert [str(c) for c in found] == (EXPECTED_CHANGES if snap.driver == "overlay" else EXPECTED_CHANGES_COPY)
    assert {"Path": "/new", "Kind": 1} in [c.api() for c in found]
    # The merged view of the container, seen through the mount, is what it wrote.
    container_view = merged(snap, "c1")
    assert container_view == done["tree"]
    # Commit: a deterministic tar with whiteouts.
    layer, again = io.BytesIO(), io.BytesIO()
    cow.write_layer(found, cow.layer_root(snap, "c1"), layer)
    cow.write_layer(found, cow.layer_root(snap, "c1"), again)
    assert layer.getvalue() == again.getvalue()
    names = tarfile.open(fileobj=io.BytesIO(layer.getvalue())).getnames()
    assert {"etc/sub/.wh.a", "home/user/.wh.f", ".wh.olddir", "new"} <= set(names)
    layer_path = tmp_path / "layer.tar"
    layer_path.write_bytes(layer.getvalue())
    new = commit_image(store, image, str(layer_path), {"Cmd": ["sh"]}, changes=["CMD cat /new"],
                       comment="round trip", ref="mine:1")
    assert new.diff_ids == image.diff_ids + [sha(layer.getvalue())]
    assert new.config["config"]["Cmd"] == ["/bin/sh", "-c", "cat /new"]
    assert new.config["history"][-1]["comment"] == "round trip"
    # Extract the new image on the *other* driver: the same tree as the container's merged view.
    other = unionfs.new_snapshotter("copy" if snap.driver == "overlay" else "overlay",
                                    str(tmp_path / "other"))
    assert merged(other, unpack(store, other, new)) == container_view


@both
def test_containers_of_one_image_do_not_see_each_other(env, tmp_path):
    store, snap = env
    top = unpack(store, snap, add_image(store, [BASE]))
    target = str(tmp_path / "t")
    os.mkdir(target)

    def write(t):
        with open(f"{t}/etc/passwd", "w") as f:
            f.write("changed\n")
        os.unlink(f"{t}/bin/tool")

    unionfs.run_mounted(snap.prepare("one", top), target, write)
    seen = unionfs.run_mounted(snap.prepare("two", top), target,
                               lambda t: (open(f"{t}/etc/passwd").read(), os.path.exists(f"{t}/bin/tool")))
    assert seen == ("root:x:0:0::/root:/bin/sh\n", True)
    assert cow.changes(snap, "two") == []
    assert [str(c) for c in cow.changes(snap, "one")] == ["C /bin", "D /bin/tool", "C /etc", "C /etc/passwd"]


@both
def test_reference_counts_remove_and_prune(env, tmp_path):
    store, snap = env
    image = add_image(store, [BASE, TOP], "a:1")
    top = unpack(store, snap, image)
    snap.prepare("c", top)
    with pytest.raises(unionfs.SnapshotInUse, match="1 snapshot"):
        snap.remove(top)
    with pytest.raises(unionfs.SnapshotExists):
        snap.prepare("c", top)
    with pytest.raises(unionfs.SnapshotError, match="not committed"):
        snap.prepare("d", "c")
    assert prune(store, snap) == []                             # the image still names them
    store.delete(image)
    assert prune(store, snap) == []                             # the container still uses them
    snap.remove("c")
    assert sorted(prune(store, snap)) == sorted(image.chain_ids)
    assert snap.list() == [] and sorted(os.listdir(snap.root)) == [".lock", "metadata.json"]


@both
def test_view_is_read_only_and_usage_counts(env, tmp_path):
    store, snap = env
    top = unpack(store, snap, add_image(store, [BASE, TOP]))
    target = str(tmp_path / "t")
    os.mkdir(target)

    def try_write(t):
        try:
            open(f"{t}/x", "w").close()
            return "written"
        except OSError as e:
            return e.errno

    import errno
    assert unionfs.run_mounted(snap.view("v", top), target, try_write) == errno.EROFS
    snap.prepare("c", top)
    before = snap.usage("c")
    unionfs.run_mounted(snap.mounts("c"), target,
                        lambda t: open(f"{t}/big", "wb").write(b"x" * (1 << 20)))
    after = snap.usage("c")
    assert after["Size"] - before["Size"] >= 1 << 20 and after["Inodes"] == before["Inodes"] + 1


def test_overlay_long_stacks_use_relative_paths(tmp_path):
    need_root()
    ok, why = unionfs.overlay_usable(str(tmp_path / "probe"))
    need(ok, f"overlayfs usable here ({why})")
    deep = tmp_path / ("d" * 200) / ("e" * 200)
    snap = unionfs.OverlaySnapshotter(str(deep))
    parent = None
    for n in range(40):                                         # 40 * ~480 bytes: > one page
        key = f"l{n}"
        snap.prepare(key + "-a", parent)
        with open(os.path.join(snap.fs(key + "-a"), f"f{n}"), "w") as f:
            f.write(str(n))
        snap.commit(key, key + "-a")
        parent = key
    [m] = snap.prepare("c", parent)
    assert m.cwd == snap.root and len(m.data) <= unionfs.MOUNT_DATA_MAX and m.data.startswith("lowerdir=40/fs:39/fs:")
    target = str(tmp_path / "t")
    os.mkdir(target)
    assert unionfs.run_mounted([m], target, lambda t: sorted(os.listdir(t))) == sorted(f"f{n}" for n in range(40))
    with pytest.raises(unionfs.SnapshotError, match="at most 500"):
        snap._overlay(["x"] * 501, None, None)


def test_mount_cwd_is_a_chdir_before_the_mount():
    rec = K.Recorder()
    rootfs.mount_spec_mounts(rec, [rootfs.Mount("overlay", "/", "overlay", 0, "lowerdir=1/fs:2/fs", cwd="/snaps")])
    assert [c.name for c in rec.calls] == ["chdir", "mount"] and rec.calls[0].args[0] == "/snaps"


def test_apply_changes():
    cfg = apply_changes({"Env": ["A=1", "B=2"], "WorkingDir": "/srv"},
                        ['CMD ["a", "b"]', "ENTRYPOINT /bin/run --x", "ENV A=3 C=4", "WORKDIR app",
                         "USER 1000:1000", "LABEL k=v", "EXPOSE 80 53/udp", "STOPSIGNAL SIGINT"])
    assert cfg["Cmd"] == ["a", "b"] and cfg["Entrypoint"] == ["/bin/sh", "-c", "/bin/run --x"]
    assert cfg["Env"] == ["A=3", "B=2", "C=4"] and cfg["WorkingDir"] == "/srv/app"  # replaced in place
    assert cfg["User"] == "1000:1000" and cfg["Labels"] == {"k": "v"} and cfg["StopSignal"] == "SIGINT"
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    # ENTRYPOINT without a CMD before it clears the inherited CMD (the Dockerfile rule dockerd applies)
    assert apply_changes({"Cmd": ["sh"]}, ['ENTRYPOINT ["top"]'])["Cmd"] is None
    with pytest.raises(ChangeError, match="not a valid change command"):
        apply_changes({}, ["RUN rm -rf /"])
    with pytest.raises(ChangeError, match="KEY=VALUE"):
        apply_changes({}, ["ENV A=1 B"])


def test_btrfs_snapshots_are_subvolumes_sharing_extents(request, tmp_path):
    need_root()
    store = ImageStore(str(tmp_path / "images"))
    snap = unionfs.new_snapshotter("btrfs", snap_root(request, tmp_path, "btrfs"))
    big = make_tar(("file", "big", os.urandom(4 << 20)))
    top = unpack(store, snap, add_image(store, [BASE, big]))
    snap.prepare("c", top)
    assert snap.is_subvolume(top) and snap.is_subvolume("c")
    fs = snap.fs("c")
    # The snapshot's file shares its extents with the layer's (btrfs filesystem du: "Set shared").
    out = subprocess.run(["btrfs", "filesystem", "du", "--raw", "-s", os.path.join(fs, "big")],
                         capture_output=True, text=True, check=True).stdout.split("\n")[1].split()
    total, exclusive = int(out[0]), int(out[1])
    assert total >= 4 << 20 and exclusive == 0
    with open(os.path.join(fs, "big"), "r+b") as f:           # writing one block unshares that block only
        f.write(b"x" * 4096)
        os.fsync(f.fileno())
    subprocess.run(["btrfs", "filesystem", "sync", fs], check=True, capture_output=True)
    out = subprocess.run(["btrfs", "filesystem", "du", "--raw", "-s", os.path.join(fs, "big")],
                         capture_output=True, text=True, check=True).stdout.split("\n")[1].split()
    assert 0 < int(out[1]) < 1 << 20
    with open(os.path.join(snap.fs(top), "big"), "rb") as f:  # the layer did not change
        assert f.read(4) != b"xxxx"


def test_btrfs_driver_refuses_a_root_not_on_btrfs(tmp_path):
    need_root()
    with pytest.raises(unionfs.SnapshotError, match="not btrfs"):
        unionfs.new_snapshotter("btrfs", str(tmp_path / "snaps"))


def test_unknown_driver_is_a_clear_error(tmp_path):
    with pytest.raises(unionfs.SnapshotError, match="unknown storage driver 'zfs'"):
        unionfs.new_snapshotter("zfs", str(tmp_path))


def test_daemon_falls_back_to_copy_when_overlay_cannot_work(monkeypatch, tmp_path):
    from minidocker.daemon import main
    monkeypatch.setattr(unionfs, "overlay_usable", lambda root: (False, "upper on overlayfs"))
    driver, warning = main.choose_storage_driver("overlay", str(tmp_path))
    assert driver == "copy" and "upper on overlayfs" in warning
    assert main.choose_storage_driver("copy", str(tmp_path)) == ("copy", "")


@pytest.mark.parametrize("driver", DRIVERS)
def test_engine_sweeps_snapshots_left_by_a_crash(tmp_path, driver, request):
    need_root()
    need(os.path.exists("/bin/busybox"), "/bin/busybox (busybox-static)")
    from minidocker.daemon.engine import Engine
    from minidocker.images import busybox, unpack
    root = str(tmp_path) if driver != "btrfs" else os.path.dirname(snap_root(request, tmp_path, driver))
    engine = Engine(root, driver)
    image = busybox.build_busybox(engine.images)
    cid, _ = engine.create({"Image": "busybox", "Cmd": ["true"]}, "kept")
    top = image.chain_ids[-1]
    engine.snapshotter.prepare("extract-deadbeef", top)          # an unpack that died halfway
    engine.snapshotter.prepare("gone-init-active", top)          # a create that died halfway
    assert sorted(engine.sweep_snapshots()) == ["extract-deadbeef", "gone-init-active"]
    # overlay, btrfs: the image's shared init layer; copy: dockerd's per-container "ID-init"
    shared = unpack.shares_init_layer(engine.snapshotter)
    init = unpack.init_key(top) if shared else cid + "-init"
    assert {i.key for i in engine.snapshotter.list()} == {top, init, cid}
    assert engine.snapshotter.stat(cid).parent == init
    engine.release_snapshot(engine.containers[cid])
    # The image still names its layer (and its init layer, where shared).
    assert {i.key for i in engine.snapshotter.list()} == ({top, init} if shared else {top})


def test_doctor_reports_which_storage_drivers_are_usable():
    from minidocker import doctor
    ov = {"upper_ok": True, "problem": None, "fstype": "ext4", "checked": "/var/lib"}
    got = doctor.storage_driver_info("nodev\toverlay\n\tbtrfs\n", ov)
    assert got["overlay"] == "" and got["copy"] == ""
    assert got["btrfs"] == ("/var/lib is on ext4, not btrfs" if shutil.which("btrfs") else
                            "the 'btrfs' command is missing (btrfs-progs)")
    assert doctor.storage_driver_info("nodev\toverlay\n", ov)["btrfs"] == "no btrfs in the kernel"
    assert doctor.storage_driver_info("", {**ov, "upper_ok": False, "problem": "upper on overlayfs"})[
        "overlay"] == "upper on overlayfs"


def test_a_killed_run_leaves_no_btrfs_mount_nor_loop_device(tmp_path):
    """SIGKILL runs no teardown: the private mount namespace dies with the process, the mount with
    it, and the autoclear loop device detaches itself."""
    need_root()
    need_tool("mkfs.btrfs")
    import signal
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom minidocker import scratchfs\n"
         "with scratchfs.btrfs_mount() as d:\n"
         "    print(d, scratchfs.device_of(d), flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=here,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([here, os.path.dirname(here)])})
    where, loop = child.stdout.readline().split()
    assert loop.startswith("/dev/loop")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    import time
    deadline = time.monotonic() + 20          # the kernel detaches the device asynchronously
    while loop in _loop_devices() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert loop not in _loop_devices()
    with open("/proc/self/mountinfo") as f:
        assert where not in f.read()
    os.rmdir(where)                           # an empty directory in /tmp is all that remains


def _loop_devices() -> list[str]:
    r = subprocess.run(["losetup", "-l", "-n", "-O", "NAME"], capture_output=True, text=True)
    return r.stdout.split()
