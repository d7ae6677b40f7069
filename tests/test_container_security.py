"""A container is confined as Docker confines it — tried from the inside with the static probe.

Each test runs ``tests/probe`` (tests/probe.py builds it) as the container's process through the real
daemon and CLI, and fails if an attack succeeds *or* if the thing it protects is simply missing (a
read-only /proc/sys that is not mounted at all would also "refuse" writes). ``--privileged`` must give
the attacks back, and ``--cap-add`` re-enables exactly what Docker's seccomp profile ties to that
capability. The block device attacked is a loop device over a small ext4 image made here, with a
marker file; never the host's disk.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile

import pytest

from conftest import need, need_root, need_tool
from probe import build_probe, parse

DOCKER_CAPS = "00000000a80425fb"   # Docker's 14 default capabilities
ZERO = "0000000000000000"
MARKER = "md-security-marker"


@pytest.fixture(scope="module")
def probe_bin():
    need_tool("gcc")
    return build_probe()


@pytest.fixture(scope="module")
def loopdev():
    """A loop device over a 4 MiB ext4 image holding a marker file: (major:minor)."""
    need_root()
    need_tool("losetup")
    need_tool("mkfs.ext4")
    d = tempfile.mkdtemp(prefix="md-sec-")
    img, content = os.path.join(d, "disk.img"), os.path.join(d, "content")
    os.mkdir(content)
    with open(os.path.join(content, MARKER), "w") as f:
        f.write("secret\n")
    with open(img, "wb") as f:
        f.truncate(4 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", content, img], check=True, capture_output=True)
    dev = subprocess.run(["losetup", "--find", "--show", img], check=True, capture_output=True, text=True).stdout.strip()
    try:
        st = os.stat(dev)
        yield f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    finally:
        subprocess.run(["losetup", "-d", dev], capture_output=True)
        subprocess.run(["rm", "-rf", d])


def pids_max_inside() -> str:
    """Where the container's own pids.max is in its cgroupfs (v1 hierarchy or v2)."""
    from minidocker import cgroups
    return "/sys/fs/cgroup/pids/pids.max" if cgroups.detect().mode != "v2" else "/sys/fs/cgroup/pids.max"


def in_container(daemon, probe_bin, flags=(), args=(), exec_flags=None):
    """Run the probe as the container's process (or, with ``exec_flags``, by ``exec`` in a running
    container made with ``flags``); -> (parsed answers, raw stdout)."""
    r = daemon.cli("create", *flags, "busybox", *(["sleep", "300"] if exec_flags is not None else
                                                  ["/probe", "-d", "/tmp", "-m", MARKER, *args]), check=True)
    cid = r.stdout.decode().strip()
    try:
        daemon.cli("cp", probe_bin, f"{cid}:/probe", check=True)
        if exec_flags is None:
            r = daemon.cli("start", "-a", cid, check=True)
        else:
            daemon.cli("start", cid, check=True)
            r = daemon.cli("exec", *exec_flags, cid, "/probe", "-d", "/tmp", "-m", MARKER, *args, check=True)
        text = r.stdout.decode()
        return parse(text), text
    finally:
        daemon.cli("rm", "-f", cid)


def sh(daemon, script, flags=()):
    return daemon.cli("run", "--rm", *flags, "busybox", "sh", "-c", script)


# ---- the spec -----------------------------------------------------------------------------------------

def test_specconv_writes_a_valid_oci_spec_with_dockers_defaults():
    """No daemon: Docker's request -> config.json, checked against the runtime-spec's JSON schema."""
    from minidocker.daemon import specconv
    from minidocker.daemon.config import ConfigError, ContainerConfig
    from minidocker.runtime import spec as S
    from minidocker.security import capabilities
    cfg = ContainerConfig(id="c" * 64, name="n", image_id="i", image_ref="busybox", argv=["sh"], env=["PATH=/bin"],
                          user="1000:1000", hostname="h")
    spec = specconv.to_spec(cfg, {"GroupAdd": ["27"], "CapDrop": ["chown"]}, "/nonexistent")
    assert S.validate(spec) == []
    assert spec["process"]["capabilities"]["bounding"] == [c for c in capabilities.DOCKER_DEFAULT if c != "CAP_CHOWN"]
    assert not spec["process"]["capabilities"].get("inheritable") and not spec["process"]["capabilities"].get("ambient")
    assert spec["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [27]}
    assert spec["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO" and "/proc/sys" in spec["linux"]["readonlyPaths"]
    assert spec["linux"]["resources"]["devices"][0] == {"allow": False, "type": "a", "access": "rwm"}  # deny all first
    for bad in ({"SecurityOpt": ["apparmor=x"]}, {"CapAdd": ["FOO"]},
                {"Sysctls": {"kernel.core_pattern": "x"}}, {"DeviceCgroupRules": ["x 1:2 rwm"]}, {"PidMode": "container:x"}):
        with pytest.raises(ConfigError):
            specconv.to_spec(cfg, bad, "/nonexistent")
    warnings: list[str] = []
    specconv.to_spec(cfg, {"ShmSize": 1 << 20}, "/nonexistent", warnings=warnings,
                     config={"Healthcheck": {"Test": ["CMD", "true"]}})
    assert any("--shm-size" in w for w in warnings)
    assert not any("Healthcheck" in w for w in warnings)  # health checks run now (daemon/health.py)
    spec = specconv.to_spec(cfg, {"MaskedPaths": ["/proc/cpuinfo"], "ReadonlyPaths": []}, "/nonexistent")
    assert spec["linux"]["maskedPaths"] == ["/proc/cpuinfo"] and spec["linux"]["readonlyPaths"] == []
    assert "maskedPaths" not in specconv.to_spec(cfg, {"Privileged": True}, "/nonexistent")["linux"]


def test_old_container_directories_are_migrated(tmp_path):
    """A daemon root written before the OCI bundle (config.json = {request, runtime, console_size})
    gets container.json and an OCI config.json when the daemon loads it."""
    from minidocker.daemon.config import ContainerConfig
    from minidocker.daemon.record import read_record
    from minidocker.runtime import spec as S
    cfg = ContainerConfig(id="d" * 64, name="old", image_id="i", image_ref="busybox", argv=["true"], env=[],
                          hostname="h", tty=True, rootfs_mounts=[{"source": "/x", "target": "", "fstype": None,
                                                                  "flags": 4096, "data": None, "cwd": None}])
    request = {"Image": "busybox", "HostConfig": {"CapAdd": ["NET_ADMIN"]}}
    (tmp_path / "config.json").write_text(json.dumps({"request": request, "runtime": cfg.to_dict(), "console_size": [5, 7]}))
    rec = read_record(str(tmp_path))
    assert rec["request"] == request and rec["runtime"]["name"] == "old"
    assert rec["monitor"] == {"tty": True, "open_stdin": False, "stdin_once": False, "console_size": [5, 7]}
    spec = json.loads((tmp_path / "config.json").read_text())
    assert S.validate(spec) == [] and "CAP_NET_ADMIN" in spec["process"]["capabilities"]["bounding"]
    assert json.loads(spec["annotations"][S.ANNOTATION_ROOTFS_MOUNTS])[0]["source"] == "/x"
    assert read_record(str(tmp_path)) == rec          # read again: nothing changes


# ---- the defaults ------------------------------------------------------------------------------------

def test_default_capabilities_seccomp_and_no_new_privs(daemon, probe_bin):
    a, text = in_container(daemon, probe_bin, args=["facts"])
    assert a["CapEff"].result == DOCKER_CAPS, text
    assert a["CapPrm"].result == DOCKER_CAPS, text
    assert a["CapBnd"].result == DOCKER_CAPS, text
    assert a["CapInh"].result == ZERO and a["CapAmb"].result == ZERO, text
    assert a["Seccomp"].result == "2", text
    assert a["NoNewPrivs"].result == "0", text          # Docker's default: off


def test_default_container_attacks_fail(daemon, probe_bin, loopdev):
    a, text = in_container(daemon, probe_bin, args=["-b", loopdev, "-H", "/etc/hostname", "-c", pids_max_inside(),
                                                    "blockdev", "mount", "fsopen", "handle", "keyctl", "bpf",
                                                    "unshare", "kcmp", "net_admin", "proc_sys", "remount_sys", "pids"])
    assert a["open_devnull"].ok, text                   # the default devices work…
    assert a["open_blockdev"].result == "EPERM", text   # …other nodes may be made but not opened
    for attack in ("mount", "fsopen", "open_by_handle_at", "keyctl", "bpf", "unshare_mnt", "kcmp",
                   "net_admin", "remount_sys"):
        assert a[attack].result == "EPERM", (attack, text)
    assert a["write_proc_sys"].result == "EROFS", text
    assert a["write_pids_max"].result == "EROFS", text


def test_proc_sys_sys_and_cgroupfs_are_there_readable_and_read_only(daemon):
    r = sh(daemon, "cat /proc/sys/kernel/ostype; cat /sys/kernel/uevent_seqnum >/dev/null && echo sys-readable; "
                   f"cat {pids_max_inside()}; grep ' /sys/fs/cgroup' /proc/self/mountinfo | head -1; "
                   "echo x > /sys/kernel/uevent_helper 2>&1; echo x > /proc/sys/kernel/hostname 2>&1; "
                   "mount -o remount,rw /sys 2>&1; mount -o remount,rw /proc/sys 2>&1; true")
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 0, out
    lines = out.splitlines()
    assert lines[0] == "Linux" and lines[1] == "sys-readable", out
    assert lines[2] == "max", out                       # the container's own pids.max, readable
    assert " ro," in lines[3] or " ro " in lines[3], out
    assert out.count("Read-only file system") >= 2, out
    assert out.lower().count("permission denied") + out.count("Operation not permitted") >= 2, out  # no remount


def test_masked_paths_exist_and_read_empty(daemon, probe_bin):
    a, text = in_container(daemon, probe_bin, args=["masked"])
    from minidocker.security import masks
    on_host = [p for p in masks.MASKED_PATHS if os.path.exists(p)]   # /proc/kcore is not everywhere
    assert len(on_host) >= 3 and f"masked:{on_host[0]}" in a, text
    for path in on_host:                                # what the host has is there, and empty
        ans = a[f"masked:{path}"]
        assert ans.ok and ans.detail.get("size") == "0", (path, text)


def test_read_only_rootfs_cannot_be_remounted(daemon):
    r = sh(daemon, "touch /x 2>&1; mount -o remount,bind,rw / 2>&1; touch /y 2>&1; echo done", ["--read-only"])
    out = r.stdout.decode()
    assert "done" in out and out.count("Read-only file system") == 2, out


# ---- turning defences off ----------------------------------------------------------------------------

def test_privileged_gives_the_attacks_back(daemon, probe_bin, loopdev):
    a, text = in_container(daemon, probe_bin, ["--privileged"],
                           ["-b", loopdev, "facts", "blockdev", "mount", "fsopen", "keyctl", "bpf", "unshare",
                            "net_admin", "proc_sys"])
    assert a["Seccomp"].result == "0" and a["CapBnd"].result != DOCKER_CAPS, text
    for attack in ("open_blockdev", "mount", "fsopen", "keyctl", "bpf", "unshare_mnt", "net_admin", "write_proc_sys"):
        assert a[attack].ok, (attack, text)
    assert a["mount"].detail.get("marker") == "secret", text   # it really read the other filesystem


@pytest.mark.parametrize("cap, attack", [("SYS_ADMIN", "mount"), ("SYS_ADMIN", "unshare_mnt"),
                                         ("NET_ADMIN", "net_admin"), ("SYS_PTRACE", "kcmp")])
def test_cap_add_matrix(daemon, probe_bin, cap, attack):
    """Each capability re-enables what Docker's profile ties to it, and only with it."""
    run_args = ["mount", "unshare", "net_admin", "kcmp"]
    default, text0 = in_container(daemon, probe_bin, args=run_args)
    added, text1 = in_container(daemon, probe_bin, ["--cap-add", cap], run_args)
    assert default[attack].result == "EPERM", text0
    assert added[attack].ok, (cap, text1)
    others = {"SYS_ADMIN": ("net_admin", "kcmp"), "NET_ADMIN": ("mount", "kcmp"), "SYS_PTRACE": ("mount", "net_admin")}[cap]
    for other in others:
        assert added[other].result == "EPERM", (cap, other, text1)


def test_cap_drop_and_unknown_capability(daemon, probe_bin):
    a, text = in_container(daemon, probe_bin, ["--cap-drop", "ALL", "--cap-add", "cap_chown"], ["facts"])
    assert a["CapEff"].result == "0000000000000001" and a["CapBnd"].result == "0000000000000001", text
    r = daemon.cli("create", "--cap-add", "FOO", "busybox", "true")
    assert r.returncode != 0 and b'unknown capability: "CAP_FOO"' in r.stderr, r.stderr


def test_security_opts(daemon, probe_bin, tmp_path):
    a, text = in_container(daemon, probe_bin, ["--security-opt", "no-new-privileges"], ["facts"])
    assert a["NoNewPrivs"].result == "1" and a["Seccomp"].result == "2", text
    a, text = in_container(daemon, probe_bin, ["--security-opt", "seccomp=unconfined"], ["facts", "keyctl"])
    assert a["Seccomp"].result == "0" and a["keyctl"].ok, text
    profile = tmp_path / "allow.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kcmp"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}))
    a, text = in_container(daemon, probe_bin, ["--cap-add", "SYS_PTRACE", "--security-opt", f"seccomp={profile}"],
                           ["facts", "kcmp", "keyctl"])
    assert a["Seccomp"].result == "2" and a["kcmp"].result == "EPERM" and a["keyctl"].ok, text
    r = daemon.cli("create", "--security-opt", "apparmor=foo", "busybox", "true")
    assert r.returncode != 0 and b"apparmor" in r.stderr


def test_user_group_add_and_devices(daemon):
    r = sh(daemon, "id -u; id -g; id -G; ls -l /dev/probe-null | cut -c1", ["--user", "1000:1000", "--group-add", "27",
                                                                          "--device", "/dev/null:/dev/probe-null:rw"])
    assert r.returncode == 0, r.stderr
    uid, gid, groups, kind = r.stdout.decode().split("\n")[:4]
    assert (uid, gid, kind) == ("1000", "1000", "c") and "27" in groups.split(), r.stdout
    # A device outside the defaults, read-only through the device cgroup (opening it writes nothing).
    need(os.path.exists("/dev/net/tun"), "/dev/net/tun")
    r = sh(daemon, "exec 3</dev/tun0 && echo read-ok; (exec 4>/dev/tun0) 2>/dev/null || echo no-write; "
                   "(exec 5</dev/net-tun-default) 2>/dev/null || echo not-there",
           ["--device", "/dev/net/tun:/dev/tun0:r"])
    assert r.stdout.decode().split() == ["read-ok", "no-write", "not-there"], (r.stdout, r.stderr)
    # --device-cgroup-rule: a node made inside (mknod is allowed) becomes readable by the rule alone.
    script = "mknod /tmp/t c 10 200 && (exec 3</tmp/t) 2>/dev/null && echo read-ok; (exec 4>/tmp/t) 2>/dev/null || echo no-write"
    assert sh(daemon, script, ["--device-cgroup-rule", "c 10:200 r"]).stdout.decode().split() == ["read-ok", "no-write"]
    assert sh(daemon, script).stdout.decode().split() == ["no-write"]


def test_namespaced_sysctls_only_and_host_namespaces(daemon):
    r = sh(daemon, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start", ["--sysctl", "net.ipv4.ip_unprivileged_port_start=80"])
    assert r.stdout.decode().strip() == "80", r.stderr
    r = daemon.cli("create", "--sysctl", "kernel.core_pattern=x", "busybox", "true")
    assert r.returncode != 0 and b'"kernel.core_pattern" is not in a separate kernel namespace' in r.stderr, r.stderr
    r = sh(daemon, "readlink /proc/self/ns/uts; readlink /proc/self/ns/ipc; readlink /proc/self/ns/pid",
           ["--uts", "host", "--ipc", "host", "--pid", "host"])
    mine = [os.readlink(f"/proc/self/ns/{n}") for n in ("uts", "ipc", "pid")]
    assert r.stdout.decode().split() == mine, r.stdout
    r = sh(daemon, "readlink /proc/self/ns/pid")
    assert r.stdout.decode().strip() != mine[2], r.stdout


def test_ulimit_and_oom_score_adj(daemon):
    r = sh(daemon, "ulimit -n; cat /proc/self/oom_score_adj", ["--ulimit", "nofile=123:456", "--oom-score-adj", "500"])
    assert r.stdout.decode().split() == ["123", "500"], (r.stdout, r.stderr)


def test_volumes_are_honoured_not_ignored(daemon):
    """(The volumes chapter, tests/test_volumes.py, tests them in depth.) A read-only bind of the host's
    root is read-only inside, a --tmpfs is a tmpfs."""
    r = daemon.cli("run", "--rm", "-v", "/:/host:ro", "--tmpfs", "/run", "busybox", "sh", "-c",
                   "touch /host/x; grep ' /run ' /proc/self/mountinfo")
    assert b"Read-only file system" in r.stderr and b" - tmpfs " in r.stdout, (r.stdout, r.stderr)
    assert not os.path.exists("/x")


# ---- exec gets the same confinement ---------------------------------------------------------------------

def test_exec_is_confined_like_the_container(daemon, probe_bin):
    a, text = in_container(daemon, probe_bin, args=["facts", "keyctl", "mount"], exec_flags=[])
    assert a["CapEff"].result == DOCKER_CAPS and a["CapBnd"].result == DOCKER_CAPS, text
    assert a["Seccomp"].result == "2" and a["keyctl"].result == "EPERM" and a["mount"].result == "EPERM", text
    a, text = in_container(daemon, probe_bin, args=["facts"], exec_flags=["-u", "65534"])
    assert a["uid"].result == "65534" and a["CapEff"].result == ZERO and a["CapBnd"].result == DOCKER_CAPS, text
    # --privileged gives the exec every capability, and the container's seccomp filter stays (dockerd's
    # rule): mount, which Docker's profile ties to CAP_SYS_ADMIN at create, is still refused.
    a, text = in_container(daemon, probe_bin, args=["facts", "mount"], exec_flags=["--privileged"])
    assert a["CapBnd"].result != DOCKER_CAPS and a["CapEff"].result == a["CapBnd"].result, text
    assert a["Seccomp"].result == "2" and a["mount"].result == "EPERM", text


# ---- the process model: one monitor, the container's parent -----------------------------------------------

def test_one_monitor_is_the_containers_parent_and_stop_goes_through_it(daemon):
    cid = daemon.cli("run", "-d", "busybox", "sleep", "300", check=True).stdout.decode().strip()
    try:
        st, info = daemon.api("GET", f"/containers/{cid}/json")
        pid = info["State"]["Pid"]
        with open(os.path.join(daemon.root, "containers", cid, "monitor.json")) as f:
            monitor = json.load(f)["monitor_pid"]
        with open(f"/proc/{pid}/status") as f:
            assert f"PPid:\t{monitor}\n" in f.read()       # no md-monitor in between
        with open(f"/proc/{monitor}/task/{monitor}/children") as f:
            assert f.read().split() == [str(pid)]
        daemon.cli("stop", "-t", "1", cid, check=True)
        st, info = daemon.api("GET", f"/containers/{cid}/json")
        assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 137
    finally:
        daemon.cli("rm", "-f", cid)


# ---- the real docker CLI sends the same flags ------------------------------------------------------------

def test_docker_cli_security_flags(daemon, tmp_path):
    docker = need_tool("docker")

    def run(*args):
        return subprocess.run([docker, "run", "--rm", *args], capture_output=True, env=daemon.env(), timeout=60)

    status = "grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status"
    r = run("busybox", "sh", "-c", status)
    assert r.stdout.decode().split() == ["CapEff:", DOCKER_CAPS, "NoNewPrivs:", "0", "Seccomp:", "2"], r.stderr
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}))
    r = run("--cap-drop", "ALL", "--security-opt", "no-new-privileges=true", "--security-opt", f"seccomp={profile}",
            "busybox", "sh", "-c", status)
    assert r.stdout.decode().split() == ["CapEff:", ZERO, "NoNewPrivs:", "1", "Seccomp:", "2"], r.stderr
    r = run("--privileged", "busybox", "sh", "-c", status)
    assert r.stdout.decode().split()[2:] == ["NoNewPrivs:", "0", "Seccomp:", "0"] and b"WARNING" in r.stderr, r.stderr
    r = run("--cap-add", "NOPE", "busybox", "true")
    assert r.returncode != 0 and b'unknown capability: "CAP_NOPE"' in r.stderr, r.stderr
