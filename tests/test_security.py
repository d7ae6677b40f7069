"""Chapter 10, security: each defence of minidocker.security against real attacks, at the chapter level.

Real tests run the static probe (tests/probe/probe.c) as the child of pid 1 of new mnt+pid+ipc+uts+net
namespaces on a busybox rootfs (security.confine.run_confined), with one defence switched on, and
check that each attack fails with the expected errno — and, in the same test, that it *succeeds*
without the defence (the control), so a test fails both when the defence does not work and when the
attack or the protected thing is simply missing. The "disk" attacked is an ext4 image on a loop
device made here, with a marker file; the host's disks, sysctls and cgroups are never touched
(the probe opens files for writing without writing, see its header). Defences are applied only in
children. Unit tests check the call order (Recorder), the profile resolution, the eBPF program (run
by a small interpreter here) and the validation messages.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import struct
import subprocess
import sys

import pytest

from conftest import need, need_root, need_tool
from probe import build_probe, parse
from minidocker import cgroups
from minidocker import rootfs as R
from minidocker.kernel import (KEYCTL_JOIN_SESSION_KEYRING, MS_BIND, MS_RDONLY, PR_CAP_AMBIENT,
                               PR_CAP_AMBIENT_CLEAR_ALL, PR_CAP_AMBIENT_RAISE, PR_CAPBSET_DROP,
                               PR_SET_NO_NEW_PRIVS, Recorder)
from minidocker.security import capabilities as C
from minidocker.security import devices as D
from minidocker.security import masks as M
from minidocker.security import seccomp as S
from minidocker.security import sysctls as Y
from minidocker.security.confine import Defences, confine, run_confined

DOCKER_CAPS_HEX = "00000000a80425fb"


def own_caps_hex() -> str:
    """This test process's effective set: what a child keeps without the capability defence (this
    host's root lacks CAP_SYS_RESOURCE, so it is not simply "all")."""
    with open("/proc/self/status") as f:
        return f"{C.from_status(f.read())['CapEff']:016x}"


# --- fixtures: a rootfs with the probe, a loop-backed disk with a marker --------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A busybox rootfs with /probe, and an ext4 image on a loop device holding ``marker``."""
    need_root()
    need_tool("gcc")
    need_tool("losetup")
    need_tool("mkfs.ext4")
    need(os.path.exists("/bin/busybox"), "/bin/busybox (Debian's busybox-static)")
    base = tmp_path_factory.mktemp("security")
    rootfs = R.make_busybox_rootfs(str(base / "rootfs"))
    shutil.copy(build_probe(), os.path.join(rootfs, "probe"))
    marker = "marker-" + secrets.token_hex(6)
    src = base / "disk-src"
    src.mkdir()
    (src / "marker").write_text(marker + "\n")
    (src / "hostname").write_text("on-the-disk\n")
    image = base / "disk.img"
    with open(image, "wb") as f:
        f.truncate(8 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(src), str(image)], check=True, capture_output=True)
    loop = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True,
                          check=True).stdout.strip()
    try:
        rdev = os.stat(loop).st_rdev
        mnt = base / "disk"
        mnt.mkdir()
        yield {"rootfs": rootfs, "loop": loop, "majmin": f"{os.major(rdev)}:{os.minor(rdev)}",
               "marker": marker, "mnt": str(mnt), "base": base}
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)


def attack(world, defences: Defences, *attacks: str, cgroup_dir: str | None = None,
           disk_mounted: bool = True) -> dict:
    """Run the probe confined by ``defences``; its answers by name. The disk is mounted (read-only,
    in the container's mount namespace only) so that /etc/hostname is a file *on the disk*: the way
    in for open_by_handle_at — as the host's disk is mounted on the host. ``disk_mounted=False``:
    not mounted anywhere. ``cgroup_dir`` is bound at /sys/fs/cgroup (the pids.max attack)."""
    binds, mounts = {}, []
    argv = ["/probe", "-b", world["majmin"]]
    if disk_mounted:
        binds["/etc/hostname"] = os.path.join(world["mnt"], "hostname")
        mounts.append(R.Mount(world["loop"], world["mnt"], "ext4", MS_RDONLY))
        argv += ["-H", "/etc/hostname"]
    if cgroup_dir:
        binds["/sys/fs/cgroup"] = cgroup_dir
        argv += ["-c", "/sys/fs/cgroup/pids.max"]
    code, out = run_confined(world["rootfs"], argv + list(attacks), defences, bind_files=binds,
                             mounts=mounts)
    assert code == 0, out
    answers = parse(out)
    assert answers, out
    return answers


def results(answers: dict, *names: str) -> dict:
    return {n: answers[n].result for n in names}


ESCAPES = ("mount", "fsopen", "open_by_handle_at")   # the three ways to read the disk's marker


@pytest.mark.privileged
def test_control_without_defences_every_attack_succeeds(world):
    """The baseline every other test is measured against: root in namespaces reads the disk three
    ways, and every attempt succeeds."""
    a = attack(world, Defences(), "facts", "blockdev", "mount", "fsopen", "handle", "keyctl", "bpf",
               "unshare", "kcmp", "net_admin", "proc_sys", "remount_sys")
    assert a["CapEff"].result == a["CapBnd"].result == own_caps_hex()
    assert a["Seccomp"].result == "0"
    assert all(a[n].ok for n in ("open_devnull", "mknod_blockdev", "open_blockdev", "keyctl", "bpf",
                                 "unshare_mnt", "kcmp", "net_admin", "write_proc_sys", "remount_sys")), a
    for n in ESCAPES:
        assert a[n].ok and a[n].detail["marker"] == world["marker"], (n, a[n])


@pytest.mark.privileged
def test_docker_capabilities_alone(world):
    """14 capabilities: no mount, no handles, no bpf, no new namespaces, no interface changes — but
    keyctl, opening a block device and writing /proc/sys still work: capabilities are not enough."""
    a = attack(world, Defences(capabilities=C.DOCKER_DEFAULT), "facts", "blockdev", "mount", "fsopen",
               "handle", "keyctl", "bpf", "unshare", "net_admin", "proc_sys", "remount_sys")
    assert results(a, "CapEff", "CapPrm", "CapBnd") == dict.fromkeys(("CapEff", "CapPrm", "CapBnd"),
                                                                     DOCKER_CAPS_HEX)
    assert int(a["CapInh"].result, 16) == int(a["CapAmb"].result, 16) == 0
    assert a["Seccomp"].result == "0"
    assert results(a, *ESCAPES, "bpf", "unshare_mnt", "net_admin", "remount_sys") == dict.fromkeys(
        (*ESCAPES, "bpf", "unshare_mnt", "net_admin", "remount_sys"), "EPERM")
    assert a["keyctl"].ok and a["open_blockdev"].ok and a["write_proc_sys"].ok


@pytest.mark.privileged
def test_docker_seccomp_alone(world):
    """Docker's profile with every capability held: the syscalls themselves are refused (EPERM
    before any capability check), keyctl included; device nodes and /proc/sys are not its job."""
    profile = S.to_oci(S.docker_default(), C.DOCKER_DEFAULT)
    a = attack(world, Defences(seccomp=profile), "facts", "blockdev", "mount", "fsopen", "handle",
               "keyctl", "bpf", "unshare", "kcmp", "net_admin", "proc_sys")
    assert a["Seccomp"].result == "2" and a["NoNewPrivs"].result == "0"
    assert a["CapEff"].result == own_caps_hex()
    blocked = (*ESCAPES, "keyctl", "bpf", "unshare_mnt", "kcmp")
    assert results(a, *blocked) == dict.fromkeys(blocked, "EPERM")
    assert a["open_blockdev"].ok and a["write_proc_sys"].ok and a["net_admin"].ok


@pytest.fixture
def pids_cgroup(request):
    """A pids cgroup of the test's own (v1 pids hierarchy, or cgroup v2), bound into the container."""
    layout = cgroups.detect()
    root = layout.v1.get("pids") or layout.unified
    need(root is not None, "a pids cgroup hierarchy")
    path = os.path.join(root, f"minidocker-test-sec-{os.getpid()}-{request.node.name[-20:]}")
    os.mkdir(path)
    try:
        if not os.path.exists(os.path.join(path, "pids.max")):
            pytest.fail(f"{path} has no pids.max (pids controller not enabled)")
        yield path
    finally:
        os.rmdir(path)


@pytest.mark.privileged
def test_masked_and_readonly_paths(world, pids_cgroup):
    """Masked paths exist and read empty; /proc/sys and a bound cgroupfs refuse writes with EROFS.
    The control reads the same files with content and opens them for writing."""
    ro = [*M.READONLY_PATHS, "/sys/fs/cgroup"]
    on = attack(world, Defences(masked_paths=M.MASKED_PATHS, readonly_paths=ro), "masked", "proc_sys",
                "pids", cgroup_dir=pids_cgroup)
    off = attack(world, Defences(), "masked", "proc_sys", "pids", cgroup_dir=pids_cgroup)
    assert on["write_proc_sys"].result == "EROFS" and off["write_proc_sys"].ok
    assert on["write_pids_max"].result == "EROFS" and off["write_pids_max"].ok
    present = [p for p in M.MASKED_PATHS if off[f"masked:{p}"].ok]
    with_content = [p for p in present if int(off[f"masked:{p}"].detail["size"]) > 0]
    assert "/proc/interrupts" in with_content and "/proc/timer_list" in with_content, off
    for p in present:   # each still exists (stat works) and reads nothing
        assert on[f"masked:{p}"].ok and on[f"masked:{p}"].detail["size"] == "0", (p, on[f"masked:{p}"])


@pytest.mark.privileged
def test_proc_sys_stays_readable(world):
    code, out = run_confined(world["rootfs"], ["/bin/cat", "/proc/sys/kernel/ostype", "/proc/cpuinfo"],
                             Defences.docker())
    assert code == 0 and out.startswith("Linux\n") and "processor" in out, out


def _device_cgroup(version: str, name: str):
    layout = cgroups.detect()
    if version == "v1":
        need("devices" in layout.v1, "the cgroup v1 devices controller")
        path = os.path.join(layout.v1["devices"], name)
    else:
        need(layout.unified is not None, "a cgroup2 hierarchy (device programs attach to any cgroup2 directory)")
        path = os.path.join(layout.unified, name)
    os.mkdir(path)
    return path


@pytest.fixture(params=["v1", "v2"])
def device_cgroup(request):
    """A cgroup with Docker's device rules: v1 files, or the v2 eBPF program attached to it."""
    from minidocker.kernel import Linux
    path = _device_cgroup(request.param, f"minidocker-test-sec-dev-{os.getpid()}")
    try:
        if request.param == "v1":
            D.apply_v1(path, D.DEFAULT_RULES)
            with open(os.path.join(path, "devices.list")) as f:
                assert "c 1:3 rwm" in f.read().split("\n")
        else:
            assert D.attach_v2(Linux(), path, D.DEFAULT_RULES) > 0
        yield os.path.join(path, "cgroup.procs")
    finally:
        if request.param == "v2":
            D.detach_v2(Linux(), path)
        os.rmdir(path)


@pytest.mark.privileged
def test_device_cgroup(world, device_cgroup):
    """mknod of the disk works (Docker allows ``b *:* m``), opening it does not; the default devices
    keep working. Every capability is held and there is no seccomp: only the cgroup.

    And its limit: mounting a disk that is *already mounted* somewhere (as the host's root disk always
    is) reuses the mounted superblock without opening the device again, so the device cgroup is not
    asked: only capabilities and seccomp stop that mount (see test_docker_capabilities_alone)."""
    on = attack(world, Defences(cgroup_procs=device_cgroup), "blockdev", "mount", "fsopen",
                disk_mounted=False)
    off = attack(world, Defences(), "blockdev", "mount", "fsopen", disk_mounted=False)
    assert on["mknod_blockdev"].ok and on["open_devnull"].ok
    assert on["open_blockdev"].result == "EPERM" and off["open_blockdev"].ok
    for n in ("mount", "fsopen"):
        assert on[n].result == "EPERM" and off[n].detail["marker"] == world["marker"], (n, on[n], off[n])
    mounted = attack(world, Defences(cgroup_procs=device_cgroup), "blockdev", "mount")
    assert mounted["open_blockdev"].result == "EPERM"
    assert mounted["mount"].detail.get("marker") == world["marker"], mounted["mount"]


@pytest.mark.privileged
def test_docker_defaults_all_layers(world, pids_cgroup):
    """Everything Docker does, together: the issue's "done when" list."""
    layout = cgroups.detect()
    need("devices" in layout.v1, "the cgroup v1 devices controller (the v2 program is tested above)")
    dev = _device_cgroup("v1", f"minidocker-test-sec-all-{os.getpid()}")
    try:
        D.apply_v1(dev, D.DEFAULT_RULES)
        d = Defences.docker(cgroup_procs=os.path.join(dev, "cgroup.procs"),
                            readonly_paths=[*M.READONLY_PATHS, "/sys/fs/cgroup"])
        a = attack(world, d, cgroup_dir=pids_cgroup)
    finally:
        os.rmdir(dev)
    assert results(a, "CapEff", "CapBnd") == {"CapEff": DOCKER_CAPS_HEX, "CapBnd": DOCKER_CAPS_HEX}
    assert results(a, "CapInh", "CapAmb", "Seccomp", "NoNewPrivs") == {
        "CapInh": "0" * 16, "CapAmb": "0" * 16, "Seccomp": "2", "NoNewPrivs": "0"}
    eperm = ("open_blockdev", *ESCAPES, "keyctl", "bpf", "unshare_mnt", "remount_sys")
    assert results(a, *eperm) == dict.fromkeys(eperm, "EPERM")
    assert results(a, "write_proc_sys", "write_pids_max") == {"write_proc_sys": "EROFS",
                                                              "write_pids_max": "EROFS"}
    assert a["open_devnull"].ok
    assert a["masked:/proc/interrupts"].detail["size"] == "0"


@pytest.mark.privileged
@pytest.mark.parametrize("cap, probe_attack, answer", [
    ("SYS_ADMIN", "mount", "mount"), ("SYS_ADMIN", "fsopen", "fsopen"),
    ("SYS_ADMIN", "unshare", "unshare_mnt"), ("SYS_ADMIN", "bpf", "bpf"),
    ("SYS_PTRACE", "kcmp", "kcmp"), ("NET_ADMIN", "net_admin", "net_admin"),
    ("DAC_READ_SEARCH", "handle", "open_by_handle_at"),
])
def test_cap_add_reenables(world, cap, probe_attack, answer):
    """The capability matrix: ``--cap-add X`` gives the capability *and* the seccomp rules tied to
    it, and the attack works again; Docker's default refuses it."""
    default = attack(world, Defences.docker(), probe_attack)
    added = attack(world, Defences.docker(cap_add=[cap]), probe_attack)
    assert default[answer].result == "EPERM"
    assert added[answer].ok, added[answer]


@pytest.mark.privileged
def test_no_new_privs_order(world):
    """With no_new_privs the filter is loaded after the capabilities are dropped (it no longer needs
    CAP_SYS_ADMIN); the result is the same confinement plus NoNewPrivs 1."""
    a = attack(world, Defences.docker(no_new_privs=True), "facts", "mount")
    assert results(a, "NoNewPrivs", "Seccomp", "CapEff", "mount") == {
        "NoNewPrivs": "1", "Seccomp": "2", "CapEff": DOCKER_CAPS_HEX, "mount": "EPERM"}


# --- unit tests: capabilities ---------------------------------------------------------------------

def test_docker_default_mask():
    assert len(C.DOCKER_DEFAULT) == 14
    assert f"{C.mask(C.DOCKER_DEFAULT):016x}" == DOCKER_CAPS_HEX
    assert C.names(0xa80425fb) == sorted(C.DOCKER_DEFAULT, key=C.NUMBERS.get)
    assert C.NUMBERS["CAP_CHECKPOINT_RESTORE"] == 40 and C.NUMBERS["CAP_SYS_ADMIN"] == 21


def test_normalize():
    assert C.normalize(["net_admin", "CAP_SYS_ADMIN", "all", "Net_Admin"]) == [
        "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "ALL"]
    with pytest.raises(ValueError, match='^unknown capability: "CAP_FOO"$'):
        C.normalize(["foo"])


def test_adjust_follows_docker():
    d = C.DOCKER_DEFAULT
    got = C.adjust(d, add=["sys_admin"], drop=["NET_RAW", "cap_mknod"])
    assert got == [c for c in d if c not in ("CAP_NET_RAW", "CAP_MKNOD")] + ["CAP_SYS_ADMIN"]
    assert C.adjust(d, add=["CHOWN"], drop=["CHOWN"]) == [c for c in d if c != "CAP_CHOWN"] + ["CAP_CHOWN"]
    assert C.adjust(d, drop=["ALL"], add=["NET_BIND_SERVICE"]) == ["CAP_NET_BIND_SERVICE"]
    everything = C.adjust(d, add=["ALL"], drop=["SYS_MODULE"])
    assert "CAP_SYS_MODULE" not in everything and len(everything) == len(C.known()) - 1
    assert C.adjust(d, privileged=True) == C.known()
    assert C.adjust(d) == d
    with pytest.raises(ValueError, match="unknown capability"):
        C.adjust(d, add=["NOPE"])


def test_apply_order_on_the_recorder():
    rec = Recorder()
    C.apply(rec, {"bounding": C.DOCKER_DEFAULT, "effective": ["CAP_KILL"], "permitted": C.DOCKER_DEFAULT,
                  "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]})
    drops = [c.args[1] for c in rec.calls if c.name == "prctl" and c.args[0] == PR_CAPBSET_DROP]
    assert sorted(drops) == sorted(set(range(C.last_cap() + 1)) - {C.NUMBERS[c] for c in C.DOCKER_DEFAULT})
    names = rec.names()
    first_capset = names.index("capset")
    assert first_capset == len(drops)       # every drop before capset (capset may drop CAP_SETPCAP)
    assert rec.calls[first_capset].args == (1 << 5, 0xa80425fb, 1 << 5)
    assert [c.args for c in rec.calls[first_capset + 1:]] == [
        (PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL), (PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, 5)]


def test_from_status():
    text = ("Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\n"
            "CapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n"
            "Seccomp_filters:\t1\n")
    st = C.from_status(text)
    assert st == {"CapInh": 0, "CapPrm": 0xa80425fb, "CapEff": 0xa80425fb, "CapBnd": 0xa80425fb,
                  "CapAmb": 0, "NoNewPrivs": 1, "Seccomp": 2, "Seccomp_filters": 1}
    with open("/proc/self/status") as f:
        mine = C.from_status(f.read())
    assert {"CapEff", "CapBnd", "Seccomp", "NoNewPrivs"} <= set(mine)


# --- unit tests: seccomp --------------------------------------------------------------------------

def test_profile_is_docker_format_and_default_deny():
    p = S.docker_default()
    assert p["defaultAction"] == "SCMP_ACT_ERRNO" and p["defaultErrnoRet"] == 1
    first = p["syscalls"][0]
    assert first["action"] == "SCMP_ACT_ALLOW" and "read" in first["names"] and "mount" not in first["names"]
    every = {n for s in p["syscalls"] for n in s["names"]}
    for never in ("kexec_load", "keyctl", "add_key", "request_key", "userfaultfd"):
        assert never not in every, never


def test_to_oci_default_capabilities():
    o = S.to_oci(S.docker_default(), C.DOCKER_DEFAULT, arch="amd64", kernel_release="6.1.0")
    assert o["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert o["defaultAction"] == "SCMP_ACT_ERRNO" and "archMap" not in o
    for name in ("read", "execve", "capset", "arch_prctl", "ptrace", "chroot"):   # chroot: SYS_CHROOT
        assert S.allowed(o, name), name
    for name in ("mount", "umount2", "unshare", "setns", "fsopen", "fsmount", "open_by_handle_at", "bpf",
                 "reboot", "init_module", "kcmp", "keyctl", "kexec_load", "clone3", "perf_event_open"):
        assert not S.allowed(o, name), name
    clone = [r for r in o["syscalls"] if r["names"] == ["clone"]]
    assert clone and clone[0]["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"   # clone without CLONE_NEW*
    assert {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38} in o["syscalls"]


@pytest.mark.parametrize("cap, enables", [
    ("SYS_ADMIN", ("mount", "umount2", "unshare", "setns", "fsopen", "fsmount", "bpf", "clone", "clone3")),
    ("SYS_PTRACE", ("kcmp", "pidfd_getfd", "process_madvise")),
    ("DAC_READ_SEARCH", ("open_by_handle_at",)),
    ("SYS_BOOT", ("reboot",)), ("SYS_MODULE", ("init_module", "finit_module", "delete_module")),
    ("SYS_TIME", ("settimeofday", "clock_settime")), ("BPF", ("bpf",)), ("PERFMON", ("perf_event_open",)),
])
def test_to_oci_cap_add(cap, enables):
    caps = C.adjust(C.DOCKER_DEFAULT, add=[cap])
    base = S.to_oci(S.docker_default(), C.DOCKER_DEFAULT, arch="amd64")
    o = S.to_oci(S.docker_default(), caps, arch="amd64")
    for name in enables:
        assert not S.allowed(base, name) and S.allowed(o, name), name
    if cap == "SYS_ADMIN":   # the argument-filtered clone rule and clone3's ENOSYS go away
        assert not [r for r in o["syscalls"] if r["names"] in (["clone"], ["clone3"])]
    assert not S.allowed(o, "keyctl")


def test_to_oci_net_admin_changes_no_rule():
    """NET_ADMIN is re-enabled by the capability alone: Docker's profile ties no syscall to it."""
    base = S.to_oci(S.docker_default(), C.DOCKER_DEFAULT, arch="amd64")
    assert S.to_oci(S.docker_default(), C.adjust(C.DOCKER_DEFAULT, add=["NET_ADMIN"]), arch="amd64") == base


def test_to_oci_kernel_and_arch():
    old = S.to_oci(S.docker_default(), C.DOCKER_DEFAULT, arch="amd64", kernel_release="4.4.0-1-amd64")
    assert not S.allowed(old, "ptrace")     # before 4.8 ptrace could bypass seccomp: SYS_PTRACE only
    assert S.allowed(S.to_oci(S.docker_default(), C.adjust(C.DOCKER_DEFAULT, add=["SYS_PTRACE"]),
                              arch="amd64", kernel_release="4.4.0"), "ptrace")
    arm = S.to_oci(S.docker_default(), C.DOCKER_DEFAULT, arch="arm64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert S.allowed(arm, "set_tls") and not S.allowed(arm, "arch_prctl")
    with pytest.raises(S.SeccompError, match="both 'architectures' and 'archMap'"):
        S.to_oci({"architectures": ["SCMP_ARCH_X86_64"], "archMap": [{}], "syscalls": []}, [])


def test_load_profile_errors():
    with pytest.raises(S.SeccompError, match="^Decoding seccomp profile failed: "):
        S.load_profile("{not json")
    assert S.load_profile(json.dumps(S.docker_default())) == S.docker_default()


def test_compile_is_cached_and_install_records(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIDOCKER_CACHE", str(tmp_path))
    o = S.to_oci(S.docker_default(), C.DOCKER_DEFAULT)
    o = dict(o, syscalls=o["syscalls"] + [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW",
                                           "args": [{"index": 0, "value": secrets.randbelow(1000),
                                                     "op": "SCMP_CMP_EQ"}]}])  # a key no other test has
    program, skipped = S.compile_bpf(o)
    assert len(program) % 8 == 0 and len(program) // 8 > 100
    assert "read" not in skipped and "mount" not in skipped
    (cached,) = (tmp_path / "seccomp").iterdir()
    assert bytes.fromhex(json.loads(cached.read_text())["bpf"]) == program
    S._memory.clear()
    assert S.compile_bpf(o)[0] == program          # from disk
    rec = Recorder()
    S.install(rec, dict(o, flags=["SECCOMP_FILTER_FLAG_TSYNC"]))
    assert rec.calls[0].name == "seccomp_load" and rec.calls[0].args[1] == 1
    assert "instructions>" in rec.transcript()
    with pytest.raises(S.SeccompError, match="unknown seccomp flag"):
        S.install(Recorder(), dict(o, flags=["SECCOMP_FILTER_FLAG_NOPE"]))


def test_seccomp_cache_follows_rules_and_library(tmp_path, monkeypatch):
    """The disk cache is keyed by the rules and the library's identity: a changed profile or an
    upgraded libseccomp/pyseccomp gets a fresh compile, never a stale program."""
    monkeypatch.setenv("MINIDOCKER_CACHE", str(tmp_path))
    base = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 + secrets.randbelow(100)}]}
    first, _ = S.compile_bpf(base)
    changed = dict(base, syscalls=[dict(base["syscalls"][0], names=["getppid"])])
    second, _ = S.compile_bpf(changed)
    assert second != first and len(list((tmp_path / "seccomp").iterdir())) == 2
    assert S.cache_key(base) != S.cache_key(changed)
    ident = S.library_identity()
    assert ident and any(S.LIBRARY in i for i in ident)      # found without importing pyseccomp
    before = S.cache_key(base)
    monkeypatch.setattr(S, "library_identity", lambda: ident[:-1] + ["pyseccomp.py:1:2"])
    assert S.cache_key(base) != before                       # an upgraded binding: another key
    S._memory.clear()
    assert S.compile_bpf(base)[0] == first                   # recompiled under the new key
    assert len(list((tmp_path / "seccomp").iterdir())) == 3


def test_seccomp_cache_hit_does_not_import_libseccomp(tmp_path):
    """A cached program is read without importing pyseccomp (whose import runs ldconfig)."""
    code = ("import json, sys; from minidocker.security import seccomp as S; "
            "p, _ = S.compile_bpf(json.loads(sys.argv[1])); "
            "print(p.hex(), 'pyseccomp' in sys.modules)")
    rules = json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 + secrets.randbelow(100)}]})
    env = dict(os.environ, MINIDOCKER_CACHE=str(tmp_path))
    run = lambda: subprocess.run([sys.executable, "-c", code, rules], env=env, capture_output=True,
                                 text=True, check=True).stdout.split()
    cold, warm = run(), run()
    assert cold == [cold[0], "True"] and warm == [cold[0], "False"]


# --- unit tests: the device cgroup ----------------------------------------------------------------

def run_bpf(program: bytes, dev_type: int, access: int, major: int, minor: int) -> int:
    """A tiny interpreter for the eBPF instructions devices.program emits (enough to check its logic
    without root; the kernel's verifier and the real tests above check the rest)."""
    ctx = struct.pack("<III", access << 16 | dev_type, major, minor)
    regs, pc = [0] * 11, 0
    insns = [struct.unpack_from("<BBhi", program, i) for i in range(0, len(program), 8)]
    for _ in range(10000):
        code, regs_byte, off, imm = insns[pc]
        dst, src = regs_byte & 0xF, regs_byte >> 4
        pc += 1
        if code == 0x61:
            assert src == 1
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == 0x54:
            regs[dst] &= imm & 0xFFFFFFFF
        elif code == 0x74:
            regs[dst] >>= imm
        elif code == 0xBC:
            regs[dst] = regs[src]
        elif code == 0xB4:
            regs[dst] = imm
        elif code in (0x55, 0x5D, 0x15):
            other = regs[src] if code == 0x5D else imm
            if (regs[dst] != other) if code in (0x55, 0x5D) else (regs[dst] == other):
                pc += off
        elif code == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
    raise AssertionError("no exit")


CHR, BLK = 2, 1
MKNOD, READ, WRITE = 1, 2, 4


def test_device_program_semantics():
    p = D.program(D.DEFAULT_RULES)
    assert run_bpf(p, CHR, READ | WRITE, 1, 3) == 1          # /dev/null rw
    assert run_bpf(p, BLK, MKNOD, 8, 0) == 1                 # mknod of a disk: b *:* m
    assert run_bpf(p, BLK, READ, 8, 0) == 0                  # ... but not opening it
    assert run_bpf(p, CHR, READ, 136, 7) == 1                # a pty slave
    assert run_bpf(p, CHR, READ, 10, 229) == 0               # /dev/fuse, denied after being... never allowed
    assert run_bpf(p, CHR, MKNOD, 10, 229) == 0              # the later deny wins over c *:* m
    assert run_bpf(p, CHR, READ | MKNOD, 4, 1) == 0          # partly allowed is not allowed
    partial = D.program([{"allow": False, "access": "rwm"}, {"allow": True, "type": "c", "major": 1,
                                                             "minor": 3, "access": "r"}])
    assert run_bpf(partial, CHR, READ, 1, 3) == 1 and run_bpf(partial, CHR, WRITE, 1, 3) == 0
    assert run_bpf(D.program([]), CHR, READ, 1, 3) == 0     # no rules: nothing allowed


def test_device_rules_and_v1_writes():
    assert D.rule_line(D.DEFAULT_RULES[0]) == "a"
    assert [D.rule_line(r) for r in D.DEFAULT_RULES[1:3]] == ["c *:* m", "b *:* m"]
    assert {(d["major"], d["minor"]) for d in D.DEFAULT_DEVICES} == {(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0)}
    rec = Recorder()
    D.apply_v1("/cg", D.DEFAULT_RULES, kernel=rec)
    assert rec.calls[0].args == ("/cg/devices.deny", "a")
    assert rec.calls[1].args == ("/cg/devices.allow", "c *:* m")
    assert rec.calls[-1].args == ("/cg/devices.deny", "c 10:229 rwm")
    with pytest.raises(ValueError, match="access must be"):
        D.apply_v1("/cg", [{"allow": True, "type": "c", "access": "x"}], kernel=Recorder())


def test_attach_v2_calls():
    rec = Recorder(returns={"open": 7, "bpf": 9})
    D.attach_v2(rec, "/sys/fs/cgroup/x", D.DEFAULT_RULES)
    cmds = [c.args[0] for c in rec.calls if c.name == "bpf"]
    assert cmds == [D.BPF_PROG_QUERY, D.BPF_PROG_LOAD, D.BPF_PROG_ATTACH, D.BPF_OBJ_GET_INFO_BY_FD]
    load = next(c for c in rec.calls if c.name == "bpf" and c.args[0] == D.BPF_PROG_LOAD).args[1]
    assert struct.unpack_from("<II", load) == (D.BPF_PROG_TYPE_CGROUP_DEVICE,
                                               len(D.program(D.DEFAULT_RULES)) // 8)
    attach = next(c for c in rec.calls if c.name == "bpf" and c.args[0] == D.BPF_PROG_ATTACH).args[1]
    assert struct.unpack("<IIIII", attach) == (7, 9, D.BPF_CGROUP_DEVICE, D.BPF_F_ALLOW_MULTI, 0)
    assert [c.args for c in rec.calls if c.name == "close"] == [(9,), (7,)]   # prog fd, then dir fd


# --- unit tests: masks, sysctls, confine ----------------------------------------------------------

def test_masks_lists_and_calls():
    assert set(M.MASKED_PATHS) == {"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore",
                                   "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                                   "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                                   "/sys/firmware", "/sys/devices/virtual/powercap"}
    assert M.READONLY_PATHS == ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    rec = Recorder()
    M.apply(rec, ["/proc/kcore"], ["/proc/sys"])
    assert [c.args for c in rec.calls] == [
        ("/dev/null", "/proc/kcore", None, MS_BIND, None),
        ("/proc/sys", "/proc/sys", None, MS_BIND | R.MS_REC, None),
        (None, "/proc/sys", None, R.MS_REMOUNT | MS_BIND | MS_RDONLY | R.MS_NOSUID | R.MS_NODEV | R.MS_NOEXEC,
         None)]


@pytest.mark.parametrize("sysctl, kw, message", [
    ("kernel.shmmax", {"ipc_host": True}, 'sysctl "kernel.shmmax" is not allowed in the hosts ipc namespace'),
    ("fs.mqueue.msg_max", {"ipc_host": True}, "hosts ipc namespace"),
    ("net.ipv4.ip_forward", {"net_host": True}, 'sysctl "net.ipv4.ip_forward" is not allowed in the hosts network namespace'),
    ("kernel.hostname", {}, 'sysctl "kernel.hostname" is not allowed as it conflicts with the OCI "hostname" field'),
    ("kernel.domainname", {"uts_host": True}, 'sysctl "kernel.domainname" is not in a separate kernel namespace'),
    ("vm.overcommit_memory", {}, 'sysctl "vm.overcommit_memory" is not in a separate kernel namespace'),
    ("kernel.core_pattern", {}, "is not in a separate kernel namespace"),
])
def test_sysctl_validation_refuses(sysctl, kw, message):
    flags = {"ipc_host": False, "net_host": False, "uts_host": False, **kw}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        Y.validate({sysctl: "1"}, **flags)


def test_sysctl_validation_accepts_namespaced_and_apply_writes():
    ok = {"kernel.shmmax": "1", "kernel.msgmax": "2", "fs.mqueue.msg_max": "3", "net.ipv4.ip_forward": "1",
          "net/ipv4/conf/all/forwarding": "0", "kernel.domainname": "example"}
    Y.validate(ok, ipc_host=False, net_host=False, uts_host=False)
    rec = Recorder()
    Y.apply(rec, {"net.ipv4.ip_forward": 1})
    assert rec.calls[0].args == ("/proc/sys/net/ipv4/ip_forward", "1")


def test_confine_order_on_the_recorder():
    """runc's order: keyring (before seccomp refuses keyctl), seccomp while CAP_SYS_ADMIN is held,
    then capabilities; with no_new_privs, seccomp last."""
    d = Defences.docker()
    rec = Recorder()
    confine(rec, d)
    names = rec.names()
    assert names[0] == "keyctl" and rec.calls[0].args[:2] == (KEYCTL_JOIN_SESSION_KEYRING, None)
    assert names[1] == "seccomp_load" and names.index("capset") > 1
    rec = Recorder()
    confine(rec, Defences.docker(no_new_privs=True))
    names = rec.names()
    assert rec.calls[1].args[:2] == (PR_SET_NO_NEW_PRIVS, 1)
    assert names[-1] == "seccomp_load" and names.index("capset") < len(names) - 1
