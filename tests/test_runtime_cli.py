"""minidocker-runtime, judged as an OCI runtime: runc's verbs and process model, a bundle written by
`runc spec`, and podman driving it through conmon (`podman --runtime`).

Each container test uses its own state root (``--root``), bundle and cgroup parent, and removes the
container (and the parent) afterwards, also on failure.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import need, need_root, need_tool

pytestmark = pytest.mark.privileged
TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- helpers --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> str:
    """An executable ``minidocker-runtime`` for *this* tree (the venv's entry point may be another's)."""
    path = tmp_path_factory.mktemp("bin") / "minidocker-runtime"
    path.write_text(f"#!/bin/sh\nPYTHONPATH={TREE} exec {sys.executable} -m minidocker.runtime.cli \"$@\"\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory) -> str:
    need_root()
    from minidocker import rootfs as R
    return R.make_busybox_rootfs(str(tmp_path_factory.mktemp("busybox") / "rootfs"))


CG_PARENT = f"minidocker-rt-test-{os.getpid()}"


@pytest.fixture(scope="module", autouse=True)
def cgroup_parent():
    yield CG_PARENT
    from conftest import cgroup_leftovers, remove_cgroup_parent
    left = cgroup_leftovers(CG_PARENT)
    remove_cgroup_parent(CG_PARENT)
    assert not left, f"cgroups left behind: {left}"


def make_bundle(tmp_path, rootfs: str, args: list[str], cid: str, terminal: bool = False, **linux) -> str:
    """A bundle from our own ``spec`` (runc's default) with a plain-process tweak; the rootfs is a
    symlink-free bind target: the shared busybox tree, copied by reference (read-only root)."""
    from minidocker.runtime.cli import default_spec
    bundle = tmp_path / f"bundle-{cid}"
    bundle.mkdir()
    os.symlink(rootfs, bundle / "rootfs")
    spec = default_spec()
    spec["process"].update(terminal=terminal, args=args)
    spec["linux"]["cgroupsPath"] = f"/{CG_PARENT}/{cid}"
    spec["linux"].update(linux)
    (bundle / "config.json").write_text(json.dumps(spec))
    return str(bundle)


class RT:
    def __init__(self, exe: str, root: str):
        self.exe, self.root = exe, root

    def __call__(self, *args, check=True, timeout=60, **kw) -> subprocess.CompletedProcess:
        """Run the runtime; output through files, not pipes: a created container's init inherits
        the runtime's stdio (as under conmon), and would hold a pipe open long after we return."""
        import tempfile
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            code = subprocess.run([self.exe, "--root", self.root, *args], stdout=out, stderr=err,
                                  timeout=timeout, **kw).returncode
            out.seek(0), err.seek(0)
            p = subprocess.CompletedProcess(args, code, out.read().decode(), err.read().decode())
        if check and p.returncode != 0:
            raise AssertionError(f"{args}: exit {p.returncode}: {p.stderr}")
        return p

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid).stdout)

    def cleanup(self) -> None:
        for st in json.loads(self("list", "-f", "json", check=False).stdout or "[]"):
            self("delete", "--force", st["id"], check=False)


@pytest.fixture
def rt(runtime, tmp_path):
    r = RT(runtime, str(tmp_path / "state"))
    yield r
    r.cleanup()


def wait_gone(pid: int, timeout: float = 10) -> None:
    """Wait until a pid that is not our child exits (a pidfd becomes readable)."""
    import select
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        assert select.select([fd], [], [], timeout)[0], f"pid {pid} still running"
    finally:
        os.close(fd)


# ---- the command line -----------------------------------------------------------------------------

def test_lifecycle_create_start_state_kill_delete(rt, tmp_path, rootfs):
    bundle = make_bundle(tmp_path, rootfs, ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.05; done"], "life")
    pidfile = tmp_path / "pid"
    rt("create", "--bundle", bundle, "--pid-file", str(pidfile), "life")
    st = rt.state("life")
    assert set(st) == {"ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner", "annotations"}
    assert st["status"] == "created" and st["id"] == "life" and st["bundle"] == bundle
    assert int(pidfile.read_text()) == st["pid"] and st["owner"] == ""  # as runc (list shows the user)
    # Created: the init waits on the exec fifo, before exec (still the runtime's Python, not sh).
    assert open(f"/proc/{st['pid']}/comm").read().strip() != "sh"
    rt("start", "life")
    assert rt.state("life")["status"] == "running"
    assert rt("start", "life", check=False).returncode == 1
    bad = rt("delete", "life", check=False)
    assert bad.returncode == 1 and "not stopped" in bad.stderr
    rt("kill", "life", "TERM")
    wait_gone(st["pid"])
    assert rt.state("life") | {"pid": 0} == {**st, "status": "stopped", "pid": 0}
    assert rt("kill", "life", "KILL", check=False).returncode == 1
    rt("delete", "life")
    gone = rt("state", "life", check=False)
    assert gone.returncode == 1 and "does not exist" in gone.stderr
    assert rt("delete", "life", check=False).returncode == 1
    assert rt("delete", "--force", "life", check=False).returncode == 0  # runc: cleanup after failures
    assert not os.path.exists(f"/sys/fs/cgroup/pids/{CG_PARENT}/life")


def test_create_leaves_only_the_init_and_the_callers_monitor_is_its_parent(rt, tmp_path, rootfs, runtime):
    """conmon's model: a subreaper runs `create` and becomes the container's parent when the
    runtime exits; after `start` it reaps the container and sees its exit status."""
    bundle = make_bundle(tmp_path, rootfs, ["sh", "-c", "exit 42"], "reap")
    monitor = textwrap.dedent(f"""
        import ctypes, json, os, subprocess
        ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER, as conmon
        rt = [{runtime!r}, "--root", {rt.root!r}]
        create = subprocess.run(rt + ["create", "-b", {bundle!r}, "reap"], check=True)
        pid = json.loads(subprocess.run(rt + ["state", "reap"], capture_output=True, check=True).stdout)["pid"]
        ppid = int(open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()[1])
        subprocess.run(rt + ["start", "reap"], check=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({{"ppid_is_me": ppid == os.getpid(), "code": os.waitstatus_to_exitcode(status)}}))
    """)
    out = subprocess.run([sys.executable, "-c", monitor], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": TREE})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"ppid_is_me": True, "code": 42}
    assert rt.state("reap")["status"] == "stopped"
    rt("delete", "reap")


def test_run_propagates_exit_code_and_output(rt, tmp_path, rootfs):
    bundle = make_bundle(tmp_path, rootfs, ["sh", "-c", "echo pid=$$ host=$(hostname); exit 3"], "run1")
    p = rt("run", "--bundle", bundle, "run1", check=False)
    assert p.returncode == 3, p.stderr
    assert p.stdout.strip() == "pid=1 host=runc"
    assert rt("list", "-q").stdout.strip() == ""  # run deletes the container after it exits


def test_exec_argv_and_process_file(rt, tmp_path, rootfs):
    bundle = make_bundle(tmp_path, rootfs, ["sleep", "60"], "ex")
    rt("run", "-d", "--bundle", bundle, "ex")
    p = rt("exec", "ex", "sh", "-c", "echo $$ $(cat /proc/1/cmdline | tr '\\0' ' '); exit 4", check=False)
    assert p.returncode == 4, p.stderr
    pid, cmdline = p.stdout.split(" ", 1)
    assert int(pid) > 1 and cmdline.strip() == "sleep 60"  # in the container's pid namespace
    proc = tmp_path / "process.json"
    proc.write_text(json.dumps({"args": ["sh", "-c", "id -u; pwd"], "cwd": "/tmp", "env": ["PATH=/bin"],
                                "user": {"uid": 65534, "gid": 65534}}))
    p = rt("exec", "--process", str(proc), "ex")
    assert p.stdout.split() == ["65534", "/tmp"]
    pidfile = tmp_path / "exec.pid"
    rt("exec", "-d", "--pid-file", str(pidfile), "ex", "sleep", "30")
    assert int(pidfile.read_text()) in json.loads(rt("ps", "-f", "json", "ex").stdout)


def test_pause_resume_update_ps_list(rt, tmp_path, rootfs):
    bundle = make_bundle(tmp_path, rootfs, ["sleep", "60"], "pz")
    rt("run", "-d", "--bundle", bundle, "pz")
    pid = rt.state("pz")["pid"]
    rt("pause", "pz")
    assert rt.state("pz")["status"] == "paused"
    assert open(f"/sys/fs/cgroup/freezer/{CG_PARENT}/pz/freezer.state").read().strip() == "FROZEN"
    rt("resume", "pz")
    assert rt.state("pz")["status"] == "running"
    rt("update", "--pids-limit", "17", "pz")
    assert open(f"/sys/fs/cgroup/pids/{CG_PARENT}/pz/pids.max").read().strip() == "17"
    res = tmp_path / "res.json"
    res.write_text(json.dumps({"pids": {"limit": 23}}))
    rt("update", "--resources", str(res), "pz")
    assert open(f"/sys/fs/cgroup/pids/{CG_PARENT}/pz/pids.max").read().strip() == "23"
    assert json.loads(rt("ps", "--format", "json", "pz").stdout) == [pid]
    assert str(pid) in rt("ps", "pz").stdout
    listed = json.loads(rt("list", "--format", "json").stdout)
    assert [(s["id"], s["status"], s["pid"]) for s in listed] == [("pz", "running", pid)]
    table = rt("list").stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"] and table[1].startswith("pz ")


def test_bad_input_is_refused_clearly(rt, tmp_path, rootfs):
    bundle = make_bundle(tmp_path, rootfs, ["true"], "bad")
    cfg = json.loads(open(os.path.join(bundle, "config.json")).read())
    cfg["process"]["user"]["uid"] = "root"
    open(os.path.join(bundle, "config.json"), "w").write(json.dumps(cfg))
    p = rt("create", "-b", bundle, "bad", check=False)
    assert p.returncode == 1 and "process.user.uid must be integer" in p.stderr
    assert rt("list", "-q").stdout == ""  # nothing half-made
    p = rt("--systemd-cgroup", "create", "-b", bundle, "bad", check=False)
    assert p.returncode == 1 and "--systemd-cgroup is not supported" in p.stderr
    log = tmp_path / "log.json"
    p = rt("--log", str(log), "--log-format", "json", "state", "nope", check=False)
    assert p.returncode == 1
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "does not exist" in entry["msg"] and "nope" in entry["msg"]
    p = rt("spec", "--rootless", cwd=tmp_path, check=False)
    assert p.returncode == 1 and "--rootless is not supported" in p.stderr


def test_spec_writes_runcs_default(rt, tmp_path):
    runc = need_tool("runc")
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    mine.mkdir(), theirs.mkdir()
    rt("spec", "--bundle", str(mine))
    subprocess.run([runc, "spec", "--bundle", str(theirs)], check=True)
    assert json.loads((mine / "config.json").read_text()) == json.loads((theirs / "config.json").read_text())
    again = rt("spec", "--bundle", str(mine), check=False)
    assert again.returncode == 1 and "exists" in again.stderr


# ---- a bundle written by `runc spec`, with its terminal, under both runtimes ----------------------

def _console_session(cmd: list[str], sock_path: str, start: list[str], script: bytes) -> bytes:
    """Listen on a console socket, run ``cmd`` (create), receive the pty master (SCM_RIGHTS),
    run ``start``, type ``script`` and read until the shell exits (EIO on the master)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)
    srv.settimeout(30)
    creator = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        conn, _ = srv.accept()
        _, fds, _, _ = socket.recv_fds(conn, 64, 1)
        conn.close()
        assert creator.wait(timeout=30) == 0, creator.stderr.read()
    finally:
        srv.close()
        if creator.poll() is None:
            creator.kill()
            creator.wait()
    master = fds[0]
    out = b""
    try:
        subprocess.run(start, check=True, timeout=30)
        os.write(master, script)
        import select
        while select.select([master], [], [], 30)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the last slave fd closed, the shell is gone
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
    return out


@pytest.mark.parametrize("which", ["runc", "minidocker-runtime"])
def test_runc_spec_bundle_runs_unchanged_with_a_terminal(which, runtime, tmp_path, rootfs):
    need_root()
    runc = need_tool("runc")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copytree(rootfs, bundle / "rootfs", symlinks=True)
    subprocess.run([runc, "spec"], cwd=bundle, check=True)  # terminal on, sh, read-only root
    exe = runc if which == "runc" else runtime
    root = str(tmp_path / "state")
    cid = f"spec-{os.getpid()}"
    try:
        out = _console_session([exe, "--root", root, "create", "--bundle", str(bundle), "--console-socket",
                                str(tmp_path / "c.sock"), cid], str(tmp_path / "c.sock"),
                               [exe, "--root", root, "start", cid],
                               b"echo tty=$(tty) sum=$((40+2)); exit 5\n")
        assert b"tty=/dev/pts/0 sum=42" in out
        st = json.loads(subprocess.run([exe, "--root", root, "state", cid], capture_output=True, check=True).stdout)
        wait_gone(st["pid"]) if st["pid"] else None
    finally:
        subprocess.run([exe, "--root", root, "delete", "--force", cid], capture_output=True)


# ---- podman --runtime minidocker-runtime -----------------------------------------------------------

@pytest.fixture(scope="module")
def podman(tmp_path_factory, runtime, rootfs):
    """podman with its own config, storage and state in a temp dir (host-facts: cgroupfs, no
    network, nofile/nproc ulimits), the busybox rootfs imported as an image, and our runtime."""
    need_root()
    exe = need_tool("podman")
    need_tool("conmon")
    from test_image_archives import CONTAINERS_TRACES  # podman's lock and cache outside any dir we give
    traces_before = {p for p in CONTAINERS_TRACES if os.path.lexists(p)}
    d = tmp_path_factory.mktemp("podman")
    # Our own state root: podman's cleanup process (conmon's exit command) gets neither
    # --runtime-flag nor our CONTAINERS_CONF, so the root goes into the runtime's command line here.
    wrapper = d / "minidocker-runtime"
    wrapper.write_text(f'#!/bin/sh\nexec {runtime} --root {d}/runtime-state "$@"\n')
    wrapper.chmod(0o755)
    runtime = str(wrapper)
    (d / "containers.conf").write_text(textwrap.dedent(f"""
        [containers]
        default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
        netns = "none"
        [engine]
        cgroup_manager = "cgroupfs"
        events_logger = "file"
        events_logfile_path = "{d}/events.log"
        tmp_dir = "{d}/tmp"
        volume_path = "{d}/volumes"
        static_dir = "{d}/graph/libpod"
        runtime = "minidocker"
        [engine.runtimes]
        minidocker = ["{runtime}"]
    """))
    (d / "storage.conf").write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{d}/graph"\nrunroot = "{d}/run"\n')
    env = {**os.environ, "CONTAINERS_CONF": str(d / "containers.conf"),
           "CONTAINERS_STORAGE_CONF": str(d / "storage.conf")}
    base = [exe, "--cgroup-manager", "cgroupfs", "--runtime", runtime]
    tar = d / "busybox.tar"
    subprocess.run(["tar", "-C", rootfs, "-cf", str(tar), "."], check=True)
    subprocess.run(base + ["import", str(tar), "localhost/busybox:latest"], env=env, check=True, capture_output=True)

    def run(*args, check=False, timeout=120):
        return subprocess.run(base + list(args), env=env, capture_output=True, text=True, timeout=timeout)
    before = set(os.listdir("/sys/fs/cgroup/pids/libpod_parent")) if os.path.isdir("/sys/fs/cgroup/pids/libpod_parent") else set()
    yield run
    run("rm", "-a", "-f", "-t", "0")
    left = os.listdir(f"{d}/runtime-state") if os.path.isdir(f"{d}/runtime-state") else []
    now = set(os.listdir("/sys/fs/cgroup/pids/libpod_parent")) if os.path.isdir("/sys/fs/cgroup/pids/libpod_parent") else set()
    subprocess.run(["umount", "-R", f"{d}/graph/overlay"], capture_output=True)  # podman's own mount of its store
    for p in CONTAINERS_TRACES:
        if p not in traces_before and os.path.lexists(p):
            shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
    assert [x for x in left if not x.startswith(".")] == [], f"containers left in the runtime's state: {left}"
    assert not {x for x in now - before if x.startswith("libpod-")}, f"container cgroups left: {now - before}"


def test_podman_run_rm_prints_and_propagates_exit_code(podman):
    p = podman("run", "--rm", "--network=none", "busybox", "echo", "hi")
    assert (p.returncode, p.stdout) == (0, "hi\n"), p.stderr
    p = podman("run", "--rm", "--network=none", "busybox", "sh", "-c", "exit 7")
    assert p.returncode == 7, p.stderr
    assert podman("ps", "-a", "-q").stdout == ""


def test_podman_detached_exec_stop_rm(podman):
    p = podman("run", "-d", "--network=none", "busybox", "sh", "-c",
               "trap 'echo got TERM; exit 0' TERM; while :; do sleep 0.05; done")
    assert p.returncode == 0, p.stderr
    cid = p.stdout.strip()
    try:
        assert podman("inspect", "-f", "{{.State.Status}}", cid).stdout.strip() == "running"
        ex = podman("exec", cid, "sh", "-c", "echo in-$(hostname); exit 9")
        assert ex.returncode == 9 and ex.stdout.strip() == f"in-{cid[:12]}", ex.stderr
        st = podman("stop", "-t", "10", cid)
        assert st.returncode == 0, st.stderr
        assert podman("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", cid).stdout.split() == ["exited", "0"]
        assert "got TERM" in podman("logs", cid).stdout
    finally:
        rm = podman("rm", "-f", cid)
    assert rm.returncode == 0, rm.stderr
    assert podman("ps", "-a", "-q").stdout == ""


# ---- the same probe under runc and minidocker-runtime ---------------------------------------------

def _docker_like(spec: dict) -> dict:
    """Docker's confinement of a default container, in OCI terms (the 14 capabilities, moby's
    seccomp profile, no_new_privs off), as the daemon's specconv writes it."""
    from minidocker.security import capabilities, seccomp
    spec["process"]["capabilities"] = capabilities.oci(capabilities.DOCKER_DEFAULT)
    spec["process"]["noNewPrivileges"] = False
    spec["linux"]["seccomp"] = seccomp.to_oci(seccomp.docker_default(), capabilities.DOCKER_DEFAULT)
    return spec


@pytest.mark.parametrize("confinement", ["runc-spec", "docker"])
def test_probe_sees_the_same_confinement_under_runc_crun_and_minidocker_runtime(confinement, runtime, tmp_path, rootfs):
    need_root()
    runc = need_tool("runc")
    need_tool("gcc")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from probe import build_probe, parse
    from minidocker.runtime.cli import default_spec
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copytree(rootfs, bundle / "rootfs", symlinks=True)
    shutil.copy(build_probe(), bundle / "rootfs" / "probe")
    spec = default_spec()
    spec["process"].update(terminal=False, args=["/probe", "facts"])
    if confinement == "docker":
        spec = _docker_like(spec)
    (bundle / "config.json").write_text(json.dumps(spec))
    crun = tmp_path / "crun-wrapper"  # crun 1.8 refuses hybrid cgroups: give it a mount ns without cgroup2
    crun.write_text(f"#!/bin/sh\nexec unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; "
                    f"exec {need_tool('crun')} \"$@\"' crun \"$@\"\n")
    crun.chmod(0o755)
    seen = {}
    for name, exe in (("runc", runc), ("crun", str(crun)), ("minidocker-runtime", runtime)):
        cid = f"probe-{name}-{os.getpid()}"
        p = subprocess.run([exe, "--root", str(tmp_path / name), "run", "--bundle", str(bundle), cid],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, f"{name}: {p.stderr}"
        facts = parse(p.stdout)
        seen[name] = {k: facts[k].result for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
                                                   "Seccomp", "NoNewPrivs", "uid")}
    assert seen["minidocker-runtime"] == seen["runc"] == seen["crun"]
    if confinement == "docker":  # and it is Docker's confinement, not merely the same mistake twice
        assert (seen["runc"]["CapEff"], seen["runc"]["Seccomp"]) == ("00000000a80425fb", "2")


def test_config_validator_cache_follows_the_schema_files(tmp_path, monkeypatch):
    """The compiled config.json validator is cached by the schema files' identity: an edited schema
    is compiled anew (a stale validator would accept what the new schema refuses)."""
    from minidocker.runtime import specschema as V
    from minidocker.runtime.spec import example
    schemas, cache = tmp_path / "schema", tmp_path / "cache"
    shutil.copytree(V.SCHEMA_DIR, schemas)
    monkeypatch.setattr(V, "SCHEMA_DIR", str(schemas))
    monkeypatch.setattr(V, "_validate", None)
    config = example(["true"], False)
    config.pop("hostname", None)
    V.validate(config, str(cache))
    (first,) = cache.iterdir()
    top = schemas / V.TOP
    doc = json.loads(top.read_text())
    doc["required"] = sorted(set(doc.get("required", [])) | {"hostname"})
    top.write_text(json.dumps(doc))
    monkeypatch.setattr(V, "_validate", None)
    with pytest.raises(V.InvalidConfig, match="hostname"):
        V.validate(config, str(cache))
    assert len(list(cache.iterdir())) == 2 and first.exists()
    monkeypatch.setattr(V, "_validate", None)          # from the cache this time: still the new schema
    with pytest.raises(V.InvalidConfig, match="hostname"):
        V.validate(config, str(cache))


QUICK_LINES = [
    ["run", "--bundle", "B", "c1"],
    ["--root", "/r", "--log", "/l", "--log-format", "json", "create", "--bundle", "B", "--pid-file", "P",
     "--console-socket", "S", "--no-new-keyring", "--preserve-fds", "2", "c1"],
    ["--root", "/r", "run", "-b", "B", "-d", "--keep", "--no-pivot", "c1", "--explain"],   # flags after the id
    ["--systemd-cgroup", "--debug", "--rootless", "false", "start", "c1"],
    ["state", "c1"], ["delete", "-f", "c1"], ["delete", "c1", "--force"],
    ["kill", "c1"], ["kill", "-a", "c1", "KILL"], ["--root", "/a", "--root", "/b", "kill", "c1", "9"],
]
ARGPARSE_LINES = [
    [], ["-v"], ["--help"], ["run", "--help"], ["run", "--bund", "B", "c1"], ["--root=/r", "state", "c1"],
    ["run", "-b", "B"], ["run", "-b", "B", "c1", "c2"], ["state", "--bundle", "B", "c1"],
    ["run", "--root", "/r", "c1"], ["--log-format", "xml", "state", "c1"], ["run", "--preserve-fds", "x", "c1"],
    ["run", "-db", "B", "c1"], ["kill", "c1", "-9"], ["exec", "c1", "true"], ["list"], ["bogus"],
    ["run", "--", "c1"], ["run", "-b", "-x", "c1"],
]


@pytest.mark.parametrize("argv", QUICK_LINES, ids=" ".join)
def test_quick_flag_parser_agrees_with_argparse(argv):
    """The hand parser of the hot verbs gives argparse's namespace, field for field."""
    from minidocker.runtime import cli
    quick = cli.quick_parse(argv)
    assert quick is not None, argv
    assert vars(quick) == vars(cli._parser(cli.command_of(argv)).parse_args(argv))


@pytest.mark.parametrize("argv", ARGPARSE_LINES, ids=lambda a: " ".join(a) or "(none)")
def test_quick_flag_parser_leaves_anything_else_to_argparse(argv):
    """Help, errors, abbreviations, ``--flag=value``, other verbs: argparse answers (its messages)."""
    from minidocker.runtime import cli
    assert cli.quick_parse(argv) is None
