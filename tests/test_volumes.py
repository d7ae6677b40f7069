"""The volumes chapter end to end: named volumes, binds, tmpfs, copy-up, --volumes-from, rm -v and
prune, through the real docker CLI, docker-py and minidocker against a test daemon; and the parsing
rules (docker's messages) without a daemon."""
from __future__ import annotations

import json
import os
import shutil
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
    with pytest.raises(MountError, match="not supported by minidocker yet"):
        parse_mount({"Type": "bind", "Source": str(tmp_path), "Target": "/t", "BindOptions": {"Propagation": "rshared"}})
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
