"""Bind propagation (mount_namespaces(7)): ``rshared``, ``rslave`` and the default ``rprivate``, and
docker's source checks. Each test makes its own tmpfs, made a shared (or private) mount point of its
own under its tmp_path; the host's "/" and every existing host mount keep their propagation. Every
mount a test (or a propagating container) makes is unmounted at the end."""
from __future__ import annotations

import os
import subprocess

import pytest

from conftest import Daemon, need_root, need_tool
from minidocker import kernel as K, rootfs
from minidocker.daemon.specconv import rootfs_propagation
from minidocker.daemon.config import ConfigError
from minidocker.runtime import spec as S
from minidocker.volumes import MountPoint, parse_bind


def docker(d: Daemon, *args, check=True):
    r = subprocess.run([need_tool("docker"), *args], capture_output=True, text=True, env=d.env(), timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {r.returncode}: {r.stderr}")
    return r


def is_mount(path) -> bool:
    return any(e.mountpoint == str(path) for e in rootfs.mountinfo())


@pytest.fixture
def own_tmpfs(tmp_path):
    """A tmpfs of our own at tmp_path/src; yields (path, make) where make("shared"|"private")."""
    need_root()
    src = tmp_path / "src"
    src.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "proptest", str(src)], check=True)
    try:
        yield src, lambda mode: subprocess.run(["mount", f"--make-{mode}", str(src)], check=True)
    finally:
        subprocess.run(["umount", "-R", "-l", str(src)], check=False)
    assert not is_mount(src)


def test_propagation_options_become_flags_and_root_propagation():
    assert S.propagation_flags(["rbind", "rshared"]) == K.MS_SHARED | K.MS_REC
    assert S.propagation_flags(["rbind", "slave"]) == K.MS_SLAVE
    assert S.propagation_flags(["rbind"]) == 0
    with pytest.raises(S.SpecError, match="rootfsPropagation 'sideways'"):
        S.root_propagation({"linux": {"rootfsPropagation": "sideways"}})
    spec = rootfs.RootfsSpec(rootfs="/r", bind_files={"/s": "/src"},
                             root_propagation=K.MS_SHARED, bind_propagation={"/s": K.MS_SHARED})
    text = rootfs.explain_rootfs(spec)
    lines = [line.split(None, 1)[1] for line in text.splitlines()]
    assert lines[0] == "mount(None, '/', None, MS_SHARED, None)"           # step 1: the root's propagation
    assert lines[-1] == "mount(None, '/', None, MS_SHARED, None)"          # again on the new "/"
    assert "mount(None, '/r/s', None, MS_SHARED, None)" in lines           # the bind's own, after the bind
    i = lines.index("umount2('.', MNT_DETACH)")
    assert lines[i - 3].startswith("fchdir(")                              # back to the old root by fd,
    assert lines[i - 2] == "mount(None, '.', None, MS_REC|MS_SLAVE, None)"  # which is made rslave first
    default = rootfs.explain_rootfs(rootfs.RootfsSpec(rootfs="/r", bind_files={"/s": "/src"}))
    assert default.splitlines()[0].split(None, 1)[1] == "mount(None, '/', None, MS_REC|MS_PRIVATE, None)"


def test_daemon_checks_the_source_like_moby(own_tmpfs):
    src, make = own_tmpfs
    make("private")
    shared = MountPoint(type="bind", destination="/s", source=str(src), propagation="rshared")
    slave = MountPoint(type="bind", destination="/s", source=str(src), propagation="rslave")
    with pytest.raises(ConfigError, match=f"path {src} is mounted on {src} but it is not a shared mount"):
        rootfs_propagation([shared])
    with pytest.raises(ConfigError, match="but it is not a shared or slave mount"):
        rootfs_propagation([slave])
    assert rootfs_propagation([MountPoint(type="bind", destination="/s", source=str(src))]) == ""
    make("shared")
    assert rootfs_propagation([shared]) == "shared"
    assert rootfs_propagation([slave]) == "rslave"
    assert rootfs_propagation([slave, shared]) == "shared"


def test_rshared_mount_inside_reaches_the_host(daemon, own_tmpfs):
    src, make = own_tmpfs
    make("shared")
    script = "mkdir /s/in && mount -t tmpfs inner /s/in && echo hi > /s/in/f && grep ' /s ' /proc/self/mountinfo"
    r = docker(daemon, "run", "--rm", "--privileged", "--mount",
               f"type=bind,source={src},target=/s,bind-propagation=rshared", "busybox", "sh", "-c", script)
    assert "shared:" in r.stdout
    assert is_mount(src / "in") and (src / "in" / "f").read_text() == "hi\n"
    # the container's own mounts (/proc, the rootfs) did not leak out
    assert not [e.mountpoint for e in rootfs.mountinfo() if e.mountpoint.startswith(daemon.root + "/")
                and e.fstype in ("proc", "overlay", "devpts", "mqueue")]


def _start(daemon, src, mode):
    opt = f",bind-propagation={mode}" if mode else ""
    cid = docker(daemon, "run", "-d", "--privileged", "--mount", f"type=bind,source={src},target=/s{opt}",
                 "busybox", "sleep", "300").stdout.strip()
    return cid


@pytest.mark.parametrize("mode", ["rslave", ""])
def test_rslave_receives_private_neither(daemon, own_tmpfs, mode):
    src, make = own_tmpfs
    make("shared")
    cid = _start(daemon, src, mode)
    try:
        (src / "h").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "hostside", str(src / "h")], check=True)
        (src / "h" / "f").write_text("from host\n")
        seen = docker(daemon, "exec", cid, "cat", "/s/h/f", check=False)
        assert (seen.stdout == "from host\n") == (mode == "rslave"), seen
        docker(daemon, "exec", cid, "sh", "-c", "mkdir /s/c && mount -t tmpfs inner /s/c && echo x > /s/c/f")
        assert not is_mount(src / "c") and not (src / "c" / "f").exists()
    finally:
        docker(daemon, "rm", "-f", cid, check=False)


def test_v_propagation_on_a_private_source_is_refused_with_dockers_message(daemon, own_tmpfs):
    src, make = own_tmpfs
    make("private")
    assert parse_bind(f"{src}:/s:rslave,ro").propagation == "rslave"
    r = docker(daemon, "run", "--rm", "-v", f"{src}:/s:rshared", "busybox", "true", check=False)
    assert r.returncode != 0 and f"path {src} is mounted on {src} but it is not a shared mount" in r.stderr
    r = docker(daemon, "run", "--rm", "-v", f"{src}:/s:slave", "busybox", "true", check=False)
    assert r.returncode != 0 and "but it is not a shared or slave mount" in r.stderr
