"""The volumes chapter end to end: named volumes, binds, tmpfs, copy-up, --volumes-from, rm -v and
prune, through the real docker CLI, docker-py and minidocker against a test daemon; and the parsing
rules (docker's messages) without a daemon."""
from __future__ import annotations

import json
import os
import subprocess
import tempfile

import pytest

from conftest import Daemon, leftovers, need, need_root, need_tool
from minidocker.volumes import MountError, MountPoint, oci_mounts, parse_bind, parse_mount, parse_mount_flag, parse_tmpfs
from minidocker.volumes.store import VolumeConflict, VolumeError, VolumeStore


def docker(d: Daemon, *args, check=True, input=None):
    r = subprocess.run([need_tool("docker"), *args], capture_output=True, text=True, env=d.env(), timeout=120,
                       input=input)
    if check and r.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {r.returncode}: {r.stderr}")
    return r


def uniq(prefix: str) -> str:
    return f"{prefix}{os.urandom(4).hex()}"


# ---- parsing, without a daemon ---------------------------------------------------------------------

def test_bind_and_volume_specs_parse_as_docker_does():
    b = parse_bind("/srv/x:/data:ro,z")
    assert (b.type, b.source, b.destination, b.rw, b.create_source) == ("bind", "/srv/x", "/data", False, True)
    v = parse_bind("data:/data:nocopy")
    assert (v.type, v.source, v.nocopy, v.rw) == ("volume", "data", True, True)
    anon = parse_bind("/cache")
    assert (anon.type, anon.source, anon.destination) == ("volume", "", "/cache")
    with pytest.raises(MountError, match="mount path must be absolute"):
        parse_bind("v:data")
    with pytest.raises(MountError, match=r"invalid volume specification: 'a:b:c:d'"):
        parse_bind("a:b:c:d")
    with pytest.raises(MountError, match="invalid mode: bogus"):
        parse_bind("v:/d:bogus")
    with pytest.raises(MountError, match="invalid characters for a local volume name"):
        parse_bind("./rel:/d")


def test_mount_objects_follow_dockers_validation(tmp_path):
    with pytest.raises(MountError, match="bind source path does not exist: /no/such/dir"):
        parse_mount({"Type": "bind", "Source": "/no/such/dir", "Target": "/x"})
    with pytest.raises(MountError, match=r"invalid mount path: 'rel' mount path must be absolute"):
        parse_mount({"Type": "volume", "Source": "v", "Target": "rel"})
    with pytest.raises(MountError, match='type "tmpfs": field Source must not be specified'):
        parse_mount({"Type": "tmpfs", "Source": "x", "Target": "/t"})
    with pytest.raises(MountError, match="field BindOptions must not be specified"):
        parse_mount({"Type": "volume", "Target": "/t", "BindOptions": {"Propagation": "rprivate"}})
    with pytest.raises(MountError, match='type "bind": invalid propagation mode: bogus'):
        parse_mount({"Type": "bind", "Source": str(tmp_path), "Target": "/t", "BindOptions": {"Propagation": "bogus"}})
    assert parse_mount({"Type": "bind", "Source": str(tmp_path), "Target": "/t",
                        "BindOptions": {"Propagation": "rshared"}}).propagation == "rshared"
    m = parse_mount_flag(f"type=bind,source={tmp_path},target=/t,readonly")
    assert parse_mount(m) == MountPoint(type="bind", destination="/t", source=str(tmp_path), rw=False)
    t = parse_mount(parse_mount_flag("type=tmpfs,target=/run,tmpfs-size=64m,tmpfs-mode=1770"))
    assert t.tmpfs_options == [f"size={64 << 20}", "mode=1770"]
    assert parse_tmpfs("/run", "size=8m,ro").rw is False
    with pytest.raises(MountError, match="unexpected key 'bogus'"):
        parse_mount_flag("type=volume,bogus=1,target=/x")


def test_oci_mounts_parents_first_private_and_readonly():
    pts = [MountPoint(type="bind", destination="/a/b/c", source="/h/c"),
           MountPoint(type="volume", destination="/a", source="v", host_path="/vol/_data", rw=False),
           MountPoint(type="tmpfs", destination="/a/b", tmpfs_options=["size=1m"])]
    out = oci_mounts(pts)
    assert [m["destination"] for m in out] == ["/a", "/a/b", "/a/b/c"]
    assert out[0] == {"destination": "/a", "type": "bind", "source": "/vol/_data", "options": ["rbind", "rprivate", "ro"]}
    assert out[1]["type"] == "tmpfs" and out[1]["options"] == ["nosuid", "nodev", "noexec", "size=1m"]
    assert out[2]["options"] == ["rbind", "rprivate"]


# ---- the store, without a daemon ------------------------------------------------------------------

def test_store_labels_filters_refcounts_and_prune(tmp_path):
    s = VolumeStore(str(tmp_path / "volumes"))
    s.create("named", labels={"team": "a"})
    anon = s.create(anonymous=True)["Name"]
    assert len(anon) == 64 and s.anonymous(anon) and not s.anonymous("named")
    assert s.inspect("named")["Mountpoint"] == str(tmp_path / "volumes" / "named" / "_data")
    assert [v["Name"] for v in s.list({"label": ["team=a"]})] == ["named"]
    assert [v["Name"] for v in s.list({"name": ["nam"]})] == ["named"]
    s.acquire("named", "c1")
    assert [v["Name"] for v in s.list({"dangling": ["true"]})] == [anon]
    with pytest.raises(VolumeConflict, match=r"remove named: volume is in use - \[c1\]"):
        s.remove("named")
    with pytest.raises(VolumeError, match='invalid option key: "size"'):
        s.create("bad", options={"size": "1"})
    assert s.prune()[0] == [anon]                      # anonymous only
    assert s.prune({"all": ["true"]})[0] == []         # named is in use
    s.release("named", "c1")
    assert s.prune({"all": ["true"]})[0] == ["named"] and s.names() == []


# ---- through the daemon ---------------------------------------------------------------------------

def test_done_when_scenario_docker_cli(daemon):
    need_tool("docker")
    v = uniq("v")
    docker(daemon, "volume", "create", v)
    docker(daemon, "run", "--rm", "-v", f"{v}:/data", "busybox", "sh", "-c", "echo hi > /data/f")
    assert docker(daemon, "run", "--rm", "-v", f"{v}:/data", "busybox", "cat", "/data/f").stdout == "hi\n"
    info = json.loads(docker(daemon, "volume", "inspect", v).stdout)[0]
    with open(os.path.join(info["Mountpoint"], "f")) as f:
        assert f.read() == "hi\n"
    assert v in docker(daemon, "volume", "ls", "-q").stdout.split()
    docker(daemon, "volume", "rm", v)
    assert not os.path.exists(info["Mountpoint"])


def test_done_when_scenario_docker_py_and_minidocker(daemon):
    docker_mod = pytest.importorskip("docker") if not os.environ.get("CI") else __import__("docker")
    client = docker_mod.DockerClient(base_url=daemon.host)
    v = uniq("py")
    vol = client.volumes.create(v, labels={"by": "docker-py"})
    assert vol.attrs["Labels"] == {"by": "docker-py"}
    client.containers.run("busybox", ["sh", "-c", "echo hi > /data/f"], volumes={v: {"bind": "/data", "mode": "rw"}},
                          remove=True)
    assert client.containers.run("busybox", ["cat", "/data/f"], volumes=[f"{v}:/data:ro"], remove=True) == b"hi\n"
    assert v in [x.name for x in client.volumes.list(filters={"label": "by=docker-py"})]
    vol.remove()
    m = uniq("md")
    daemon.cli("volume", "create", m, check=True)
    daemon.cli("run", "--rm", "-v", f"{m}:/data", "busybox", "sh", "-c", "echo hi > /data/f", check=True)
    out = daemon.cli("run", "--rm", "--mount", f"type=volume,source={m},target=/data,readonly", "busybox",
                     "cat", "/data/f", check=True)
    assert out.stdout == b"hi\n"
    assert m.encode() in daemon.cli("volume", "ls", "-q", check=True).stdout.split()
    daemon.cli("volume", "rm", m, check=True)


def test_readonly_bind_is_not_writable_nor_remountable(daemon, tmp_path):
    need_tool("docker")
    (tmp_path / "f").write_text("host\n")
    script = ("echo x > /ro/f; echo write=$?; mount -o remount,rw /ro; echo remount=$?; "
              "echo x > /ro/f; echo again=$?; cat /ro/f; grep ' /ro ' /proc/self/mountinfo")
    r = docker(daemon, "run", "--rm", "-v", f"{tmp_path}:/ro:ro", "busybox", "sh", "-c", script, check=False)
    assert "Read-only file system" in r.stderr
    lines = r.stdout.splitlines()
    assert "write=1" in lines and "again=1" in lines and "remount=0" not in lines
    assert "host" in lines
    mi = [line for line in lines if " /ro " in line][-1]   # the top-most mount at /ro: what a path reaches
    assert " /ro ro," in mi and "shared:" not in mi and "master:" not in mi   # read-only, propagation private
    assert (tmp_path / "f").read_text() == "host\n"
    # rw: the host sees what the container writes
    docker(daemon, "run", "--rm", "-v", f"{tmp_path}:/rw", "busybox", "sh", "-c", "echo c > /rw/g")
    assert (tmp_path / "g").read_text() == "c\n"


def test_bind_source_missing_created_by_v_refused_by_mount(daemon, tmp_path):
    need_tool("docker")
    missing = tmp_path / "made" / "by-v"
    docker(daemon, "run", "--rm", "-v", f"{missing}:/x", "busybox", "true")
    assert missing.is_dir()
    gone = tmp_path / "nope"
    r = docker(daemon, "run", "--rm", "--mount", f"type=bind,source={gone},target=/x", "busybox", "true", check=False)
    assert r.returncode != 0 and f"bind source path does not exist: {gone}" in r.stderr
    assert not gone.exists()
    r = docker(daemon, "run", "--rm", "-v", "v:rel", "busybox", "true", check=False)
    assert r.returncode != 0 and "mount path must be absolute" in r.stderr


def test_duplicate_targets_are_refused(daemon, tmp_path):
    need_tool("docker")
    before = set(docker(daemon, "volume", "ls", "-q").stdout.split())
    r = docker(daemon, "run", "--rm", "-v", f"{tmp_path}:/d", "--mount", "type=volume,target=/d",
               "busybox", "true", check=False)
    assert r.returncode != 0 and "Duplicate mount point: /d" in r.stderr
    r = docker(daemon, "run", "--rm", "-v", "a1:/d", "--tmpfs", "/d", "busybox", "true", check=False)
    assert r.returncode != 0 and "Duplicate mount point: /d" in r.stderr
    assert set(docker(daemon, "volume", "ls", "-q").stdout.split()) == before   # nothing half-made


def test_tmpfs_mounts(daemon):
    need_tool("docker")
    out = docker(daemon, "run", "--rm", "--tmpfs", "/scratch:size=1m,mode=1770", "--mount",
                 "type=tmpfs,target=/other,tmpfs-size=2m", "busybox", "sh", "-c",
                 "grep -E ' /(scratch|other) ' /proc/self/mountinfo; stat -c %a /scratch").stdout
    scratch = [line for line in out.splitlines() if " /scratch " in line][0]
    other = [line for line in out.splitlines() if " /other " in line][0]
    assert " - tmpfs " in scratch and "size=1024k" in scratch and "noexec" in scratch
    assert "size=2048k" in other and out.splitlines()[-1] == "1770"


def test_copy_up_once_keeps_owner_and_mode_and_nocopy(daemon):
    need_tool("docker")
    # /etc of busybox is not empty: an empty named volume over it is filled from the image.
    v, nc = uniq("cu"), uniq("nc")
    docker(daemon, "run", "--rm", "-v", f"{v}:/etc", "busybox", "true")
    mp = json.loads(docker(daemon, "volume", "inspect", v).stdout)[0]["Mountpoint"]
    ls = docker(daemon, "run", "--rm", "busybox", "ls", "/etc").stdout.split()
    assert sorted(os.listdir(mp)) == sorted(ls) and "passwd" in ls
    img = docker(daemon, "run", "--rm", "busybox", "stat", "-c", "%a %u %g", "/etc/passwd").stdout.split()
    st = os.stat(os.path.join(mp, "passwd"))
    assert [f"{st.st_mode & 0o7777:o}", str(st.st_uid), str(st.st_gid)] == img
    # Once: emptied by a user, it is not filled again.
    docker(daemon, "run", "--rm", "-v", f"{v}:/etc", "busybox", "sh", "-c", "rm -rf /etc/*")
    docker(daemon, "run", "--rm", "-v", f"{v}:/etc", "busybox", "true")
    assert os.listdir(mp) == []
    docker(daemon, "run", "--rm", "-v", f"{nc}:/etc:nocopy", "busybox", "true")
    assert os.listdir(json.loads(docker(daemon, "volume", "inspect", nc).stdout)[0]["Mountpoint"]) == []
    docker(daemon, "volume", "rm", v, nc)


def test_volumes_from_and_inspect_mounts(daemon, tmp_path):
    need_tool("docker")
    src = uniq("src")
    docker(daemon, "create", "--name", src, "-v", "/shared", "-v", f"{tmp_path}:/hostdir:ro", "busybox", "true")
    try:
        mounts = json.loads(docker(daemon, "inspect", src).stdout)[0]["Mounts"]
        by_dest = {m["Destination"]: m for m in mounts}
        assert by_dest["/hostdir"]["Type"] == "bind" and by_dest["/hostdir"]["RW"] is False
        assert by_dest["/shared"]["Type"] == "volume" and len(by_dest["/shared"]["Name"]) == 64
        docker(daemon, "run", "--rm", "--volumes-from", src, "busybox", "sh", "-c", "echo from > /shared/x")
        anon = by_dest["/shared"]["Source"]
        with open(os.path.join(anon, "x")) as f:
            assert f.read() == "from\n"
        r = docker(daemon, "run", "--rm", "--volumes-from", f"{src}:ro", "busybox", "sh", "-c", "echo y > /shared/y",
                   check=False)
        assert r.returncode != 0 and "Read-only file system" in r.stderr
        r = docker(daemon, "volume", "rm", by_dest["/shared"]["Name"], check=False)
        assert r.returncode != 0 and "volume is in use" in r.stderr
    finally:
        docker(daemon, "rm", "-v", src)
    assert not os.path.exists(anon)                         # rm -v took the anonymous volume


def test_rm_v_and_auto_remove_remove_anonymous_volumes_not_named(daemon):
    need_tool("docker")
    named = uniq("keep")
    before = set(docker(daemon, "volume", "ls", "-q").stdout.split())
    cid = docker(daemon, "create", "-v", "/anon", "-v", f"{named}:/named", "busybox", "true").stdout.strip()
    after = set(docker(daemon, "volume", "ls", "-q").stdout.split())
    [anon] = after - before - {named}
    docker(daemon, "rm", cid)                                # without -v: the anonymous volume stays
    assert anon in docker(daemon, "volume", "ls", "-q").stdout.split()
    cid = docker(daemon, "create", "-v", "/anon2", "busybox", "true").stdout.strip()
    anon2 = json.loads(docker(daemon, "inspect", cid).stdout)[0]["Mounts"][0]["Name"]
    docker(daemon, "rm", "-v", cid)
    names = docker(daemon, "volume", "ls", "-q").stdout.split()
    assert anon2 not in names and named in names
    docker(daemon, "run", "--rm", "-v", "/anon3", "busybox", "true")
    assert set(docker(daemon, "volume", "ls", "-q").stdout.split()) == set(names)
    docker(daemon, "volume", "rm", anon, named)


def test_prune_and_nothing_left_after_rm_f(daemon, tmp_path):
    need_tool("docker")
    named, tm = uniq("pr"), uniq("tm")
    docker(daemon, "volume", "create", named)
    docker(daemon, "volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=1m", tm)
    cid = docker(daemon, "run", "-d", "-v", f"{named}:/a", "-v", "/b", "-v", f"{tm}:/t", "busybox",
                 "sh", "-c", "echo x > /a/f; echo y > /t/f; sleep 1000").stdout.strip()
    vols = {m["Destination"]: m for m in json.loads(docker(daemon, "inspect", cid).stdout)[0]["Mounts"]}
    tm_dir = vols["/t"]["Source"]
    try:
        # The daemon's own view of the mount table.
        with open(f"/proc/{daemon.proc.pid}/mountinfo") as f:
            assert any(line.split()[4] == tm_dir for line in f)  # the tmpfs volume's mount, while in use
        r = docker(daemon, "volume", "prune", "-af")
        assert named not in r.stdout                              # in use: kept
    finally:
        docker(daemon, "rm", "-f", cid)
    out = docker(daemon, "volume", "prune", "-af").stdout
    assert named in out and tm in out and vols["/b"]["Name"] in out
    volroot = os.path.join(daemon.root, "volumes")
    assert [n for n in os.listdir(volroot) if n in (named, tm, vols["/b"]["Name"])] == []
    assert leftovers(volroot) == []                               # no mount made by minidocker remains


def test_image_volume_and_system_df(daemon):
    need_tool("docker")
    tag = uniq("volimg")
    cid = docker(daemon, "create", "busybox", "true").stdout.strip()
    docker(daemon, "commit", "-c", "VOLUME /data", cid, f"{tag}:1")
    docker(daemon, "rm", cid)
    try:
        c2 = docker(daemon, "create", f"{tag}:1").stdout.strip()
        [m] = json.loads(docker(daemon, "inspect", c2).stdout)[0]["Mounts"]
        assert m["Destination"] == "/data" and m["Type"] == "volume"
        df = json.loads(docker(daemon, "system", "df", "-v", "--format", "{{json .Volumes}}").stdout)
        assert m["Name"] in [v["Name"] for v in df]
        docker(daemon, "rm", "-v", c2)
    finally:
        docker(daemon, "rmi", f"{tag}:1")


def test_btrfs_driver_runs_the_docker_cli_scenario(btrfs_dir):
    """A daemon with --storage-driver btrfs on the loop device's file system: the Done-when scenario,
    the container's layer a btrfs snapshot, diff through it, and nothing left after rm."""
    need_tool("docker")
    need(os.path.exists("/bin/busybox"), "/bin/busybox (busybox-static)")
    base = tempfile.mkdtemp(prefix="mdbtrfs-", dir=btrfs_dir)
    d = Daemon(base, "btrfs")
    try:
        d.start()
        assert docker(d, "info", "--format", "{{.Driver}}").stdout.strip() == "btrfs"
        docker(d, "volume", "create", "v")
        docker(d, "run", "--rm", "-v", "v:/data", "busybox", "sh", "-c", "echo hi > /data/f")
        assert docker(d, "run", "--rm", "-v", "v:/data", "busybox", "cat", "/data/f").stdout == "hi\n"
        cid = docker(d, "run", "-d", "busybox", "sh", "-c", "echo x > /new; sleep 1000").stdout.strip()
        upper = json.loads(docker(d, "inspect", cid).stdout)[0]["GraphDriver"]["Data"]["UpperDir"]
        assert os.stat(upper).st_ino == 256                       # a subvolume's root directory
        docker(d, "exec", cid, "cat", "/new")                      # the write has happened
        assert "A /new" in docker(d, "diff", cid).stdout.splitlines()
        docker(d, "rm", "-f", cid)
        assert not os.path.exists(upper)
        docker(d, "volume", "rm", "v")
    finally:
        left = d.shutdown()
        assert not left, left


def test_docker_cp_goes_through_volumes_and_binds(daemon, tmp_path):
    need_tool("docker")
    v = uniq("cp")
    (tmp_path / "in-bind").write_text("bind\n")
    cid = docker(daemon, "create", "-v", f"{v}:/vol", "-v", f"{tmp_path}:/bind", "busybox", "true").stdout.strip()
    try:
        src = tmp_path / "upload"
        src.write_text("up\n")
        docker(daemon, "cp", str(src), f"{cid}:/vol/upload")       # a stopped container: into the volume
        mp = json.loads(docker(daemon, "volume", "inspect", v).stdout)[0]["Mountpoint"]
        with open(os.path.join(mp, "upload")) as f:
            assert f.read() == "up\n"
        out = tmp_path / "out"
        docker(daemon, "cp", f"{cid}:/bind/in-bind", str(out))
        assert out.read_text() == "bind\n"
        assert "/vol/upload" not in docker(daemon, "diff", cid).stdout   # not in the container's layer
    finally:
        docker(daemon, "rm", cid)
        docker(daemon, "volume", "rm", v)


def test_bind_backed_volume_and_references_survive_a_daemon_restart(tmp_path):
    """-o type=none -o o=bind -o device=DIR: the volume shows DIR; its mount exists only while a
    container uses it. A restarted daemon still knows which containers use which volume."""
    need_tool("docker")
    need_root()
    need(os.path.exists("/bin/busybox"), "/bin/busybox (busybox-static)")
    base = tempfile.mkdtemp(prefix="mdvol-", dir="/tmp")
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello").write_text("from the device\n")
    d = Daemon(base)
    try:
        d.start()
        docker(d, "volume", "create", "-o", "type=none", "-o", "o=bind", "-o", f"device={src}", "bb")
        data = json.loads(docker(d, "volume", "inspect", "bb").stdout)[0]["Mountpoint"]
        cid = docker(d, "create", "-v", "bb:/mnt", "busybox", "cat", "/mnt/hello").stdout.strip()
        with open("/proc/self/mountinfo") as f:
            assert any(line.split()[4] == data for line in f)       # mounted while a container uses it
        d.stop()
        d.proc = None
        d.log = open(os.path.join(base, "daemon.log"), "ab")
        d.start()
        r = docker(d, "volume", "rm", "bb", check=False)
        assert r.returncode != 0 and f"volume is in use - [{cid}]" in r.stderr
        docker(d, "start", cid)
        assert docker(d, "wait", cid).stdout.strip() == "0"
        assert docker(d, "logs", cid).stdout == "from the device\n"
        docker(d, "rm", cid)
        docker(d, "volume", "rm", "bb")
        with open("/proc/self/mountinfo") as f:
            assert not any(data in line for line in f)
        assert (src / "hello").exists()                              # the device's files are its own
    finally:
        left = d.shutdown()
        assert not left, left


def test_volume_ls_filters_and_errors_through_the_docker_cli(daemon):
    need_tool("docker")
    a, b = uniq("fa"), uniq("fb")
    docker(daemon, "volume", "create", "--label", "tier=db", a)
    docker(daemon, "volume", "create", b)
    assert docker(daemon, "volume", "create", b).stdout.strip() == b          # existing: answered as is
    cid = docker(daemon, "create", "-v", f"{b}:/x", "busybox", "true").stdout.strip()
    try:
        ls = lambda *f: set(docker(daemon, "volume", "ls", "-q", *f).stdout.split()) & {a, b}  # noqa: E731
        assert ls("--filter", "label=tier=db") == {a}
        assert ls("--filter", "dangling=true") == {a} and ls("--filter", "dangling=false") == {b}
        assert ls("--filter", f"name={b[:5]}") == {b} and ls("--filter", "driver=local") == {a, b}
        r = docker(daemon, "volume", "rm", b, check=False)
        assert r.returncode != 0 and f"remove {b}: volume is in use - [{cid}]" in r.stderr
        r = docker(daemon, "volume", "inspect", "nope-" + a, check=False)
        assert r.returncode != 0 and "no such volume" in r.stderr
        docker(daemon, "volume", "rm", "-f", "nope-" + a)                       # -f: a missing one is fine
        r = docker(daemon, "volume", "create", "-d", "nfs-plugin", uniq("x"), check=False)
        assert r.returncode != 0 and 'plugin "nfs-plugin" not found' in r.stderr
    finally:
        docker(daemon, "rm", cid)
        docker(daemon, "volume", "rm", a, b)
