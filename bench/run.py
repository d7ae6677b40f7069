#!/usr/bin/env python3
"""Benchmarks: minidocker against the reference tools, on the same workload, on this machine.

    make bench                                   # = .venv/bin/python bench/run.py
    .venv/bin/python bench/run.py start --runs 20 --tools runc,crun,unshare

What this teaches
-----------------
Where the time of a container start goes. The same busybox ``true`` is started by:

* ``minidocker run --rm busybox true``  the whole path: Python CLI -> HTTP on a UNIX socket ->
  daemon -> runtime -> namespaces, rootfs, cgroups -> exit status back to the CLI;
* ``runc run`` / ``crun run``           an OCI runtime alone, from a ready bundle (Go / C);
* ``podman run --rm --network=none``    a daemonless engine: storage, runtime, conmon (Go);
* ``unshare ... chroot ROOTFS /bin/true`` the floor: the namespaces and nothing else.

Each contender runs ``--warmup`` times untimed, then ``--runs`` times timed (wall clock around the
whole command, from this process). We report the median, the 90th percentile and the ratio of each
median to minidocker's. Numbers are for reading, not asserting: tests never time anything.

Everything a run creates lives in one temporary directory (rootfs, OCI bundle, runtime state, podman
storage and configuration, minidocker's root and socket) and under one cgroup name
(``minidocker-bench-PID``) in every hierarchy; both are removed at the end, and a leak check
reports any mount, cgroup or process left behind. To add a benchmark, write a function
``bench_NAME(ws: Workspace, args) -> list[Measurement]`` and add it to ``BENCHMARKS``.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
BUSYBOX = "/bin/busybox"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_NAME = f"minidocker-bench-{os.getpid()}"   # our cgroups, in every hierarchy, removed at the end
IMAGE = "localhost/minidocker-bench-busybox"     # podman's copy of our busybox rootfs

# linux/sched.h, linux/mount.h
CLONE_NEWNS = 0x00020000
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2


# --- results -----------------------------------------------------------------------------------

@dataclass
class Measurement:
    """One contender in one benchmark. status: ok | not installed | unavailable | failed."""
    name: str
    command: str = ""
    status: str = "ok"
    why: str = ""
    samples_ms: list[float] = field(default_factory=list)
    median_ms: float | None = None
    p90_ms: float | None = None
    ratio: float | None = None   # median / the baseline's median (minidocker's)


def p90(samples: list[float]) -> float:
    """90th percentile, nearest-rank: the smallest sample >= 90% of the samples."""
    s = sorted(samples)
    return s[max(0, -(-len(s) * 9 // 10) - 1)]


def summarize(m: Measurement) -> Measurement:
    if m.samples_ms:
        m.median_ms = round(statistics.median(m.samples_ms), 2)
        m.p90_ms = round(p90(m.samples_ms), 2)
    return m


def add_ratios(results: list[Measurement], baseline: str) -> str | None:
    """Fill ``ratio`` against ``baseline``'s median (or the first measured one); return its name."""
    measured = [m for m in results if m.median_ms]
    base = next((m for m in measured if m.name.startswith(baseline)), measured[0] if measured else None)
    for m in measured:
        m.ratio = round(m.median_ms / base.median_ms, 3)
    return base.name if base else None


def format_table(title: str, results: list[Measurement], base: str | None) -> str:
    w = max([len(m.name) for m in results] + [10])
    head = f"vs {base.split()[0]}" if base else "ratio"
    lines = [title, f"  {'tool':<{w}}  {'median ms':>9}  {'p90 ms':>8}  {head:>14}"]
    for m in results:
        if m.status != "ok":
            lines.append(f"  {m.name:<{w}}  {m.status}: {m.why}" if m.why else f"  {m.name:<{w}}  {m.status}")
            continue
        note = ""
        if m.ratio and m.ratio < 1:
            note = f" ({1 / m.ratio:.1f}x faster)"
        elif m.ratio and m.ratio > 1:
            note = f" ({m.ratio:.1f}x slower)"
        lines.append(f"  {m.name:<{w}}  {m.median_ms:>9.1f}  {m.p90_ms:>8.1f}  {m.ratio:>6.2f}{note}")
    return "\n".join(lines)


# --- timing ------------------------------------------------------------------------------------

class CommandFailed(Exception):
    pass


def run_once(argv: list[str], env: dict | None = None, timeout: float = 120) -> float:
    """Run ``argv`` to completion; return its wall-clock time in ms. Non-zero exit -> CommandFailed."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CommandFailed(f"timed out after {timeout} s") from None
    ms = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        tail = p.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise CommandFailed(f"exit {p.returncode}: {' | '.join(tail) or '(no stderr)'}")
    return ms


def time_command(argv: list[str], runs: int, warmup: int, env: dict | None = None) -> list[float]:
    for _ in range(warmup):
        run_once(argv, env)
    return [round(run_once(argv, env), 3) for _ in range(runs)]


def libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def time_in_private_mount_ns(argv: list[str], runs: int, warmup: int, unmount: list[str],
                             env: dict | None = None) -> list[float]:
    """Time ``argv`` from a forked child that lives in its own mount namespace, with ``unmount``
    detached there only (crun refuses a hybrid cgroup layout; hiding /sys/fs/cgroup/unified from it
    makes the host look v1). The namespace, and the unmount, end with the child."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            c = libc()
            _check(c.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
            _check(c.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
            for path in unmount:
                _check(c.umount2(path.encode(), MNT_DETACH), f"umount2({path})")
            out = {"samples": time_command(argv, runs, warmup, env)}
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            out = {"error": str(e) or type(e).__name__}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    out = json.loads(data or '{"error": "child died"}')
    if "error" in out:
        raise CommandFailed(out["error"])
    return out["samples"]


# --- the workspace: every file, mount and cgroup we make, and their removal --------------------

def mountpoints() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4].replace("\\040", " ") for line in f]


def cgroup_hierarchies() -> list[Path]:
    """Mount points of every cgroup hierarchy (v1 and v2)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fstype = line.split(" - ")[1].split()[0]
            if fstype in ("cgroup", "cgroup2"):
                out.append(Path(line.split()[4]))
    return out


def cgroup_children() -> set[str]:
    return {str(d) for h in cgroup_hierarchies() if h.is_dir() for d in h.iterdir() if d.is_dir()}


def remove_cgroup_tree(path: Path) -> None:
    """rmdir a cgroup and its descendants, deepest first (a cgroup with processes stays: EBUSY)."""
    if not path.is_dir():
        return
    for child in [d for d in path.iterdir() if d.is_dir()]:
        remove_cgroup_tree(child)
    for _ in range(20):  # an exited container's cgroup can take a moment to empty
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)
    print(f"warning: could not remove cgroup {path}", file=sys.stderr)


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and int(pid) != os.getpid():
            found.append(f"{pid}: {cmd[:120]}")
    return found


class Workspace:
    """A temporary directory plus the host-side traces reference tools leave outside it."""

    # Paths some tools create outside any directory we give them; removed at the end only if they did
    # not exist before we started (podman 4.3: the shm lock and c/image's blob-info cache).
    OUTSIDE = ["/dev/shm/libpod_lock", "/var/lib/containers/cache/blob-info-cache-v1.boltdb",
               "/var/lib/containers/cache", "/var/lib/containers"]

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="minidocker-bench-"))
        self.mounts_before = set(mountpoints())
        self.cgroups_before = cgroup_children()
        self.preexisting = {p for p in self.OUTSIDE if os.path.lexists(p)}
        self.cleanups: list[Callable[[], None]] = []
        self._rootfs: Path | None = None

    def path(self, *parts: str) -> Path:
        p = self.dir.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def rootfs(self) -> Path:
        """A busybox root filesystem (built once per run)."""
        if self._rootfs is None:
            self._rootfs = build_busybox_rootfs(self.path("rootfs"))
        return self._rootfs

    def close(self) -> list[str]:
        """Undo everything; return what leaked anyway."""
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as e:  # keep cleaning
                print(f"warning: cleanup {getattr(fn, '__name__', fn)}: {e}", file=sys.stderr)
        c = libc()
        for mp in sorted((m for m in mountpoints() if m.startswith(str(self.dir))), key=len, reverse=True):
            if c.umount2(mp.encode(), MNT_DETACH) != 0:  # e.g. podman's private bind of its overlay dir
                print(f"warning: umount {mp}: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        for h in cgroup_hierarchies():
            remove_cgroup_tree(h / CGROUP_NAME)
        shutil.rmtree(self.dir, ignore_errors=True)
        for p in self.OUTSIDE:
            if p in self.preexisting or not os.path.lexists(p):
                continue
            try:
                os.rmdir(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
            except OSError:
                pass  # not empty: someone else uses it now; leave it
        leaks = [f"mount {m}" for m in set(mountpoints()) - self.mounts_before]
        leaks += [f"cgroup {c}" for c in cgroup_children() - self.cgroups_before]
        leaks += [f"process {p}" for p in processes_mentioning(str(self.dir))]
        leaks += [f"file {p}" for p in self.OUTSIDE if p not in self.preexisting and os.path.lexists(p)]
        return leaks


def build_busybox_rootfs(dest: Path) -> Path:
    """/bin/busybox plus one relative symlink per applet (``bin/true -> busybox``), the empty
    directories a runtime mounts on, and a minimal /etc. Relative links keep working under chroot
    and pivot_root, unlike ``busybox --install -s``, which links to the host path of the binary."""
    if not os.access(BUSYBOX, os.X_OK):
        raise FileNotFoundError(f"{BUSYBOX} not found: apt-get install busybox-static")
    for d in ("bin", "proc", "sys", "dev", "etc", "tmp", "root"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in applets:
        link = dest / "bin" / a
        if a != "busybox" and not link.exists():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\n")
    return dest


# --- contenders for "container start" ----------------------------------------------------------

@dataclass
class Contender:
    name: str
    argv: list[str] | None = None
    env: dict | None = None
    unmount_first: list[str] = field(default_factory=list)   # run in a private mount ns without these
    status: str = "ok"
    why: str = ""


def venv_tool(name: str) -> str | None:
    """The project's own entry points sit beside the interpreter running us (.venv/bin)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def ping_unix(sock: Path, timeout: float = 0.5) -> bool:
    """GET /_ping on a UNIX socket, written by hand; True on a 200 answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: localhost\r\n\r\n")
            return s.recv(64).split(b" ")[1:2] == [b"200"]
    except (OSError, IndexError):
        return False


def start_minidockerd(ws: Workspace, tree: str | None = None) -> tuple[str | None, str]:
    """Start our own minidockerd on a temporary root and socket, once per run (the ``minidocker``
    and ``docker`` contenders and the ``rss`` benchmark share it); returns (host URL, "") or
    (None, why it is unavailable). ``ws.minidockerd_pid`` holds its pid. ``tree``: run another
    checkout's code instead (``--compare-tree``), as a second daemon with its own root."""
    attr = "minidockerd_other" if tree else "minidockerd"
    if hasattr(ws, attr):
        return getattr(ws, attr)
    daemon = venv_tool("minidockerd")
    if not daemon:
        setattr(ws, attr, (None, "minidockerd not installed in the venv (make setup)"))
        return getattr(ws, attr)
    sub = "minidocker-other" if tree else "minidocker"
    root, sock = ws.path(sub, "root"), ws.dir / sub / "md.sock"
    host = f"unix://{sock}"
    log = open(ws.dir / sub / "minidockerd.log", "wb")
    env = dict(python_env(), PYTHONPATH=tree) if tree else python_env()
    # Its own bridge, nft table and cgroup parent: two daemons with --compare-tree, and two benchmark
    # runs at once (a shared machine) must not share a bridge or a table.
    n, run_tag = (1 if tree else 0), os.getpid() % 100000
    proc = subprocess.Popen([daemon, "--root", str(root), "--host", host,
                             "--bridge", f"mdb{run_tag}x{n}",
                             "--nft-table", f"minidocker_bench_{run_tag}" + ("_other" if tree else ""),
                             "--cgroup-parent", f"{CGROUP_NAME}/{sub}"], stdin=subprocess.DEVNULL, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    if not tree:
        ws.minidockerd_pid = proc.pid

    def stop_daemon():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        try:  # anything the daemon left in its own session (we created it: its id is the daemon's pid)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
    stop_daemon.__name__ = "stop minidockerd"
    ws.cleanups.append(stop_daemon)

    deadline = time.monotonic() + 30  # the first start builds busybox:latest
    while time.monotonic() < deadline and proc.poll() is None and not ping_unix(sock):
        time.sleep(0.05)
    if not ping_unix(sock):
        tail = (ws.dir / sub / "minidockerd.log").read_text(errors="replace").strip().splitlines()[-3:]
        state = f"exited with {proc.returncode}" if proc.poll() is not None else "did not answer in 30 s"
        setattr(ws, attr, (None, f"minidockerd {state}: {' | '.join(tail)}"))
    else:
        setattr(ws, attr, (host, ""))
    return getattr(ws, attr)


def minidocker_contender(ws: Workspace, tree: str | None = None, network: str | None = None) -> Contender:
    """``minidocker run --rm busybox true`` against our own minidockerd (``tree``: CLI and daemon
    from another checkout; ``network``: ``--network`` — podman's contender runs with none)."""
    name = "minidocker run --rm" + (f" --network={network}" if network else "") + (" (--compare-tree)" if tree else "")
    cli = venv_tool("minidocker")
    host, why = start_minidockerd(ws, tree)
    if not cli or not host:
        return Contender(name, status="unavailable", why=why or "minidocker not installed in the venv (make setup)")
    env = python_env(MINIDOCKER_HOST=host, DOCKER_HOST=host)
    if tree:
        env["PYTHONPATH"] = tree
    return Contender(name, [cli, "run", "--rm", *([f"--network={network}"] if network else []), "busybox", "true"],
                     env=env)


def docker_contender(ws: Workspace) -> Contender:
    """The real ``docker run --rm busybox true`` (Go CLI) against the same minidockerd."""
    name = "docker run --rm (minidockerd)"
    docker = shutil.which("docker")
    host, why = start_minidockerd(ws)
    if not docker or not host:
        return Contender(name, status="unavailable" if docker else "not installed", why=why or "docker CLI")
    env = dict(os.environ, DOCKER_HOST=host, DOCKER_CONFIG=str(ws.path("docker-config")))
    return Contender(name, [docker, "run", "--rm", "busybox", "true"], env=env)


def python_env(**extra) -> dict:
    """The environment minidocker's commands run in: this tree first on the path (the venv's entry
    points would otherwise import the tree they were installed from), and bytecode written and
    used — an installed tool has its ``.pyc`` files; PYTHONDONTWRITEBYTECODE (set in some shells)
    would make every run compile every module from source (~2x the start-up)."""
    env = dict(os.environ, PYTHONPATH=str(BENCH_DIR.parent), **extra)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def oci_bundle(ws: Workspace, tool: str, name: str | None = None) -> Path:
    """An OCI bundle over the busybox rootfs: ``TOOL spec``, then no terminal, args ["true"], the
    absolute rootfs path (read-only, shared by runc and crun), and a cgroup under our own name.
    ``name``: the bundle directory's, when one run of the benchmark needs two bundles of ``tool``."""
    bundle = ws.path(f"bundle-{name or tool}")
    subprocess.run([tool, "spec"], cwd=bundle, check=True, capture_output=True)
    cfg_path = bundle / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["true"]
    cfg["root"] = {"path": str(ws.rootfs()), "readonly": True}
    cfg["linux"]["cgroupsPath"] = f"/{CGROUP_NAME}/{tool}"
    cfg_path.write_text(json.dumps(cfg, indent=1))
    return bundle


def runtime_contender(ws: Workspace, tool: str) -> Contender:
    name = f"{tool} run"
    exe = shutil.which(tool)
    if not exe:
        return Contender(name, status="not installed", why="bash bench/setup.sh")
    bundle = oci_bundle(ws, tool)
    state = ws.path(f"{tool}-state")
    argv = [exe, "--root", str(state), "run", "--bundle", str(bundle), f"bench-{os.getpid()}"]
    unmount = []
    if tool == "crun" and any(str(h) == "/sys/fs/cgroup/unified" for h in cgroup_hierarchies()):
        unmount = ["/sys/fs/cgroup/unified"]  # crun 1.8 refuses hybrid cgroups
    return Contender(name, argv, unmount_first=unmount)


def podman_contender(ws: Workspace) -> Contender:
    """podman with its own configuration and storage in the workspace (CONTAINERS_CONF and
    CONTAINERS_STORAGE_CONF replace every system file), the busybox rootfs imported as an image."""
    name = "podman run --rm --network=none"
    exe = shutil.which("podman")
    if not exe:
        return Contender(name, status="not installed", why="bash bench/setup.sh")
    d = ws.path("podman")
    # No static_dir/volume_path: conmon's exit command (`podman container cleanup`) does not get our
    # CONTAINERS_CONF, only --root/--runroot/--tmpdir flags, so both must derive their state database
    # from graphroot; otherwise the cleanup marks the exit in another database and `podman run` waits
    # out a 20 s timeout.
    # Root here lacks CAP_SYS_RESOURCE: rlimits above the current hard limits fail with EPERM, and
    # podman starts conmon with RLIMIT_NPROC lowered to 32768, so ask for no more than that.
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 32768)
    (d / "containers.conf").write_text(f"""\
[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]
netns = "none"
log_driver = "k8s-file"

[network]
network_config_dir = "{d}/networks"

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
events_logfile_path = "{d}/events.log"
tmp_dir = "{d}/tmp"
""")
    (d / "storage.conf").write_text(f"""\
[storage]
driver = "overlay"
graphroot = "{d}/graph"
runroot = "{d}/run"
""")
    env = dict(os.environ, CONTAINERS_CONF=str(d / "containers.conf"),
               CONTAINERS_STORAGE_CONF=str(d / "storage.conf"))
    tar = d / "rootfs.tar"
    with tarfile.open(tar, "w") as t:
        t.add(ws.rootfs(), arcname=".")
    p = subprocess.run([exe, "import", str(tar), IMAGE], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        return Contender(name, status="failed", why=f"podman import: {p.stderr.strip()[-200:]}")
    argv = [exe, "run", "--rm", "--network=none", f"--cgroup-parent=/{CGROUP_NAME}/podman", IMAGE, "true"]
    return Contender(name, argv, env=env)


def unshare_contender(ws: Workspace) -> Contender:
    name = "unshare + chroot"
    exe, chroot = shutil.which("unshare"), shutil.which("chroot")
    if not exe or not chroot:
        return Contender(name, status="not installed", why="util-linux / coreutils")
    return Contender(name, [exe, "--pid", "--fork", "--mount", "--uts", "--ipc", "--net",
                            chroot, str(ws.rootfs()), "/bin/true"])


START_CONTENDERS: dict[str, Callable[[Workspace], Contender]] = {
    "minidocker": minidocker_contender,
    "minidocker-none": lambda ws: minidocker_contender(ws, network="none"),
    "docker": docker_contender,
    "runc": lambda ws: runtime_contender(ws, "runc"),
    "crun": lambda ws: runtime_contender(ws, "crun"),
    "podman": podman_contender,
    "unshare": unshare_contender,
}


def measure(c: Contender, runs: int, warmup: int) -> Measurement:
    m = Measurement(c.name, " ".join(c.argv or []), c.status, c.why)
    if c.status != "ok":
        return m
    try:
        if c.unmount_first:
            m.samples_ms = time_in_private_mount_ns(c.argv, runs, warmup, c.unmount_first, c.env)
            m.why = f"in a private mount namespace without {', '.join(c.unmount_first)}"
        else:
            m.samples_ms = time_command(c.argv, runs, warmup, c.env)
    except (CommandFailed, OSError, subprocess.SubprocessError) as e:
        m.status, m.why = "failed", str(e)[:300]
    return summarize(m)


def measure_interleaved(contenders: list[Contender], runs: int, warmup: int) -> list[Measurement]:
    """Like :func:`measure` for each contender, but run by run in turn (A B C A B C …): a load
    burst from other work on the machine then hits every contender, not only the one being timed
    (one after the other, the ratios moved by ±20 % and more between runs). Contenders that need
    a private mount namespace (``unmount_first``) are measured on their own, after."""
    ms = {id(c): Measurement(c.name, " ".join(c.argv or []), c.status, c.why) for c in contenders}
    turn = [c for c in contenders if c.status == "ok" and not c.unmount_first]
    try:
        for c in turn:
            for _ in range(warmup):
                run_once(c.argv, c.env)
        for _ in range(runs):
            for c in turn:
                ms[id(c)].samples_ms.append(round(run_once(c.argv, c.env), 3))
    except (CommandFailed, OSError, subprocess.SubprocessError) as e:
        for c in turn:
            ms[id(c)].status, ms[id(c)].why, ms[id(c)].samples_ms = "failed", str(e)[:300], []
    out = []
    for c in contenders:
        m = measure(c, runs, warmup) if c.unmount_first else summarize(ms[id(c)])
        print(f"  {m.name}: {m.status}" + (f" ({m.median_ms} ms)" if m.median_ms else ""), file=sys.stderr)
        out.append(m)
    return out


def bench_start(ws: Workspace, args) -> list[Measurement]:
    """Container start: `true` in busybox, each tool's whole command."""
    results = []
    keys = list(args.tools)
    if args.compare_tree and "minidocker" in keys:
        keys.insert(keys.index("minidocker") + 1, "minidocker-compare")
    for key in keys:
        try:
            contender = (minidocker_contender(ws, args.compare_tree) if key == "minidocker-compare"
                         else START_CONTENDERS[key](ws))
        except Exception as e:  # a broken setup is reported, not fatal
            contender = Contender(key, status="failed", why=f"setup: {type(e).__name__}: {e}")
        m = measure(contender, args.runs, args.warmup)
        print(f"  {m.name}: {m.status}" + (f" ({m.median_ms} ms)" if m.median_ms else ""), file=sys.stderr)
        results.append(m)
    return results


# --- runtime: minidocker-runtime against runc and crun, one prepared bundle ---------------------------

def bench_runtime(ws: Workspace, args) -> list[Measurement]:
    """``TOOL run`` of one bundle (made by ``runc spec``, edited as :func:`oci_bundle` does): the
    OCI runtime alone, runc's process model (create + start + wait + delete). minidocker-runtime runs
    from this tree (the entry point's code: ``from minidocker.runtime.cli import main``); its config.json
    validator is compiled on the first (warm-up) run and cached under its --root."""
    if not shutil.which("runc"):
        return [Measurement("runc run", status="not installed", why="bash bench/setup.sh")]
    bundle = oci_bundle(ws, "runc", "runtime")   # not start's bundle-runc: `runtime start` in one run
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["linux"]["cgroupsPath"] = f"/{CGROUP_NAME}/runtime"
    (bundle / "config.json").write_text(json.dumps(cfg, indent=1))
    cid = f"bench-{os.getpid()}"
    # What the installed entry point runs (pip's bin/minidocker-runtime: import main, call it), not
    # ``python -m`` (runpy, importlib.util and contextlib on top: ~3-5 ms no caller pays); -P: no
    # current directory in front of sys.path, so PYTHONPATH decides which tree runs (from a
    # checkout's directory both contenders would otherwise run that checkout).
    mdr = [sys.executable, "-P", "-c", "import sys; from minidocker.runtime.cli import main; sys.exit(main())"]
    contenders = [Contender("runc run", [shutil.which("runc"), "--root", str(ws.path("rt-runc")), "run",
                                         "--bundle", str(bundle), cid]),
                  Contender("minidocker-runtime run", mdr + ["--root", str(ws.path("rt-md")), "run",
                                                            "--bundle", str(bundle), cid],
                            env=python_env())]
    if args.compare_tree:  # another checkout (e.g. main) side by side: a change measured in one run
        contenders.append(Contender("minidocker-runtime run (--compare-tree)",
                                    mdr + ["--root", str(ws.path("rt-md-other")), "run", "--bundle", str(bundle), cid],
                                    env=dict(python_env(), PYTHONPATH=args.compare_tree)))
    crun = shutil.which("crun")
    unmount = ["/sys/fs/cgroup/unified"] if any(str(h) == "/sys/fs/cgroup/unified" for h in cgroup_hierarchies()) else []
    contenders.append(Contender("crun run", [crun, "--root", str(ws.path("rt-crun")), "run", "--bundle", str(bundle), cid],
                                unmount_first=unmount) if crun else
                      Contender("crun run", status="not installed", why="bash bench/setup.sh"))
    return measure_interleaved(contenders, args.runs, args.warmup)


# --- registry: pull a ~100 MB multi-layer image from a local registry -------------------------------

def make_pull_image(ws: Workspace, layers: int = 4, layer_mb: int = 25):
    """An image of ``layers`` gzip layers of ~``layer_mb`` MB each (incompressible files, so the
    transfer really is ~100 MB), on busybox, in an ImageStore; returns (store, image)."""
    import gzip
    import io
    sys.path.insert(0, str(BENCH_DIR.parent))
    from minidocker.images.busybox import build_busybox
    from minidocker.images.store import ImageStore
    store = ImageStore(str(ws.path("pull-source")))
    base = build_busybox(store)
    descs, diff_ids = list(base.manifest["layers"]), list(base.diff_ids)
    for n in range(layers):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            for i in range(layer_mb * 8):  # 128 KiB files
                data = os.urandom(128 * 1024)
                info = tarfile.TarInfo(f"data/layer{n}/file{i:04}")
                info.size, info.mtime = len(data), 0
                tar.addfile(info, io.BytesIO(data))
        blob = gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)
        import hashlib
        diff_ids.append("sha256:" + hashlib.sha256(raw.getvalue()).hexdigest())
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "digest": store.content.put(blob), "size": len(blob)})
    config = json.dumps({"architecture": base.architecture, "os": "linux", "config": base.config.get("config"),
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": store.content.put(config), "size": len(config)}, "layers": descs}
    return store, store.add_image(json.dumps(manifest).encode(), "bench/pull:1")


def start_local_registry(ws: Workspace) -> str:
    """Debian's docker-registry (distribution) if installed, else minidocker's server; host:port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = ws.path("registry")
    if shutil.which("docker-registry"):
        (d / "config.yml").write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                                      f"    rootdirectory: {d}/data\nhttp:\n  addr: 127.0.0.1:{port}\n")
        argv = ["docker-registry", "serve", str(d / "config.yml")]
    else:
        argv = [sys.executable, "-m", "minidocker.registry.server", "--port", str(port), "--root", str(d / "data")]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(BENCH_DIR.parent))

    def stop():
        proc.terminate()
        proc.wait(10)
    ws.cleanups.append(stop)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{argv[0]} did not start")


def bench_registry(ws: Workspace, args) -> list[Measurement]:
    """Pull (into a store) and pull + unpack, minidocker against skopeo copy (+ umoci unpack).
    Each run pulls into a fresh, empty destination; removing it afterwards is not timed."""
    store, image = make_pull_image(ws)
    host = start_local_registry(ws)
    from minidocker.registry.client import Registry
    Registry(host).push("bench/pull", "1", store, image)
    size_mb = sum(int(layer["size"]) for layer in image.manifest["layers"]) / 1e6
    print(f"  image: {len(image.manifest['layers'])} layers, {size_mb:.0f} MB compressed, on {host}", file=sys.stderr)
    env = python_env()
    # With a snapshotter the store extracts each layer as it downloads (images/unpack.py stream_layer).
    md = ("import sys; from minidocker.registry.client import Registry; from minidocker.images.store import ImageStore; "
          "from minidocker.unionfs import new_snapshotter; "
          "s = ImageStore(sys.argv[1], snapshotter=new_snapshotter('overlay', sys.argv[1] + '-snapshots') "
          "if sys.argv[3:] else None); Registry(sys.argv[2]).pull('bench/pull', '1', s, tag_as='bench/pull:1')")
    skopeo, umoci = shutil.which("skopeo"), shutil.which("umoci")
    src = f"docker://{host}/bench/pull:1"
    contenders = [
        ("minidocker pull", lambda d: [sys.executable, "-c", md, d, host], True),
        ("skopeo copy", lambda d: [skopeo, "copy", "-q", "--src-tls-verify=false", src, f"oci:{d}:pull"], skopeo),
        ("minidocker pull + unpack", lambda d: [sys.executable, "-c", md, d, host, "unpack"], True),
        ("skopeo copy + umoci unpack", lambda d: ["sh", "-c", f'"$0" copy -q --src-tls-verify=false {src} oci:{d}:pull '
                                                  f'&& "$1" unpack --image {d}:pull {d}-bundle', skopeo, umoci],
         skopeo and umoci),
    ]
    results = []
    for name, argv_for, available in contenders:
        m = Measurement(name, " ".join(argv_for("DEST")))
        if not available:
            m.status, m.why = "not installed", "skopeo/umoci missing (bash bench/setup.sh)"
            results.append(m)
            continue
        try:
            for i in range(args.warmup + args.runs):
                dest = str(ws.dir / f"pull-{name.split()[0]}-{i}")
                ms = run_once(argv_for(dest), env)
                if i >= args.warmup:
                    m.samples_ms.append(round(ms, 3))
                shutil.rmtree(dest, ignore_errors=True)
                shutil.rmtree(dest + "-bundle", ignore_errors=True)
                shutil.rmtree(dest + "-snapshots", ignore_errors=True)
        except CommandFailed as e:
            m.status, m.why = "failed", str(e)[:300]
        results.append(summarize(m))
        print(f"  {m.name}: {m.status}" + (f" ({m.median_ms} ms)" if m.median_ms else ""), file=sys.stderr)
    return results


#: name -> (function, description). Add "unpack" (an image layer: tar / tarfile / umoci / minidocker)
#: and "pull" (skopeo copy / minidocker pull from a local registry) here.
def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def pss_kb(pid: int) -> int:
    """Proportional set size: each shared page divided among the processes sharing it (the monitors
    are forked from one pre-loaded launcher, so their RSS counts the same pages five times)."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))


def monitor_pids(root: Path) -> list[int]:
    """The per-container monitors (minidocker's conmon), from each container's monitor.json."""
    pids = []
    for rec in (root / "containers").glob("*/monitor.json"):
        try:
            pids.append(int(json.loads(rec.read_text())["monitor_pid"]))
        except (OSError, ValueError, KeyError):
            pass
    return pids


def bench_rss(ws: Workspace, args) -> list[Measurement]:
    """minidockerd's resident memory: idle (after one container ran and was removed, so the
    lazily imported start path is counted), then with 5 running containers (``sleep``)."""
    host, why = start_minidockerd(ws)
    cli = venv_tool("minidocker")
    if not host or not cli:
        return [Measurement("minidockerd RSS", status="unavailable", why=why)]
    env = python_env(MINIDOCKER_HOST=host)
    run = lambda *a: subprocess.run([cli, *a], env=env, check=True, capture_output=True, text=True).stdout.strip()
    pid = ws.minidockerd_pid
    fresh = rss_kb(pid)
    run("run", "--rm", "busybox", "true")
    idle = rss_kb(pid)
    ids = [run("run", "-d", "busybox", "sleep", "600") for _ in range(5)]
    busy = rss_kb(pid)
    mpids = monitor_pids(ws.dir / "minidocker" / "root")
    monitors, monitors_pss = [rss_kb(p) for p in mpids], [pss_kb(p) for p in mpids]
    run("rm", "-f", *ids)
    print(f"  minidockerd RSS: fresh {fresh / 1024:.1f} MB, idle after a run {idle / 1024:.1f} MB, "
          f"5 running {busy / 1024:.1f} MB ({(busy - idle) / 5 / 1024:.2f} MB per container); "
          f"{len(monitors)} monitors: RSS {sum(monitors) / 1024:.1f} MB in all, PSS {sum(monitors_pss) / 1024:.1f} MB",
          file=sys.stderr)
    return [Measurement(n, status="measured", why=f"{kb / 1024:.1f} MB") for n, kb in
            (("RSS fresh", fresh), ("RSS idle after one run", idle), ("RSS with 5 running", busy),
             (f"RSS of the {len(monitors)} monitors", sum(monitors)),
             (f"PSS of the {len(monitors)} monitors", sum(monitors_pss)))]


BENCHMARKS: dict[str, tuple[Callable[[Workspace, argparse.Namespace], list[Measurement]], str]] = {
    "start": (bench_start, "container start: `true` in busybox"),
    "runtime": (bench_runtime, "OCI runtime alone: `true` from one prepared bundle (minidocker-runtime, runc, crun)"),
    "rss": (bench_rss, "minidockerd's RSS idle and with 5 running containers"),
    "registry": (bench_registry, "pull of a ~100 MB 5-layer image from a local registry (and pull + unpack)"),
    "unpack": (lambda ws, args: __import__("unpack_bench").bench(ws, args, sys.modules[__name__]),
               "image unpack: 100 MB / 5,000 files, 1 and 4 layers (bench/unpack_bench.py)"),
    "network": (lambda ws, args: __import__("network_bench").bench(ws, args, sys.modules[__name__]),
                "networking: start on the bridge vs none vs podman's bridge; published port vs direct (bench/network_bench.py)"),
    "pullrun": (lambda ws, args: __import__("pull_bench").bench(ws, args, sys.modules[__name__]),
                "pull + first run of a one-layer ~100 MB / 5,000-file image from a local registry (bench/pull_bench.py)"),
    "build": (lambda ws, args: __import__("build_bench").bench(ws, args, sys.modules[__name__]),
              "a 10-step Dockerfile, cold and cached: minidocker build vs podman build (bench/build_bench.py)"),
}


BASELINES = {"runtime": "runc", "pullrun": "skopeo copy + umoci unpack"}   # ratios against this tool's median (default: minidocker's)


# --- main --------------------------------------------------------------------------------------

def host_facts() -> dict:
    return {"kernel": platform.release(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "tools": {t: shutil.which(t) for t in
                                                           ("runc", "crun", "podman", "unshare")}}


def write_json(name: str, desc: str, results: list[Measurement], base: str | None, args) -> Path:
    out = Path(args.json_dir) / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": name, "description": desc, "runs": args.runs, "warmup": args.warmup,
        "baseline": base, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": host_facts(),
        "results": [asdict(m) for m in results]}, indent=1) + "\n")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="minidocker benchmarks against reference tools")
    p.add_argument("benchmarks", nargs="*", default=["start"], help=f"which: {', '.join(BENCHMARKS)}")
    p.add_argument("--runs", type=int, default=10, help="timed runs per tool (default 10, at least 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    p.add_argument("--tools", default=",".join(START_CONTENDERS),
                   help=f"comma-separated subset of {','.join(START_CONTENDERS)}")
    p.add_argument("--compare-tree", metavar="DIR",
                   help="start, runtime, network: also time minidocker (its own daemon) / minidocker-runtime "
                        "from another checkout, e.g. main's, side by side")
    p.add_argument("--json-dir", default=str(RESULTS_DIR), help="where NAME.json goes (default bench/results)")
    args = p.parse_args(argv)
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in args.tools if t not in START_CONTENDERS] + [b for b in args.benchmarks if b not in BENCHMARKS]
    if unknown:
        p.error(f"unknown: {', '.join(unknown)}")
    if args.runs < 10:
        p.error("--runs must be at least 10 (medians and p90 of fewer runs mean little)")
    return args


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/run.py: run as root (namespaces, cgroups, mounts)", file=sys.stderr)
        return 1
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the workspace is always cleaned up.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    ws = Workspace()
    leaks: list[str] = []
    try:
        for name in args.benchmarks:
            fn, desc = BENCHMARKS[name]
            print(f"{name}: {desc}", file=sys.stderr)
            results = fn(ws, args)
            base = add_ratios(results, BASELINES.get(name, "minidocker"))
            title = f"{desc} — {args.runs} runs after {args.warmup} warm-ups, wall clock of the whole command"
            print(format_table(title, results, base))
            print(f"(json: {write_json(name, desc, results, base, args)})")
    finally:
        leaks = ws.close()
    if leaks:
        print("LEFT BEHIND:\n  " + "\n  ".join(leaks), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
