"""Shared test helpers.

Rule: under CI=true a test never skips for lack of a prerequisite — it fails and names what is
missing. Use ``need(condition, "what is missing")`` instead of pytest.skip.
"""
from __future__ import annotations

import os
import shutil

import pytest

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, what: str) -> None:
    """Skip (on a developer's machine) or fail (under CI=true) when a prerequisite is missing."""
    if condition:
        return
    if CI:
        pytest.fail(f"missing prerequisite under CI: {what}")
    pytest.skip(f"missing prerequisite: {what}")


def need_root() -> None:
    need(os.geteuid() == 0, "root (real namespaces, mounts and cgroups need it)")


def need_tool(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"the '{name}' command (installed by 'make setup')")
    return path


@pytest.fixture
def root_required():
    need_root()


# ---- a minidockerd of the test session's own --------------------------------------------------
import json
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tests never reach Docker Hub: the daemons they start fetch Docker Hub names (other than busybox,
# built offline) from a closed port on loopback (minidockerd --default-registry).
os.environ.setdefault("MINIDOCKER_DEFAULT_REGISTRY", "127.0.0.1:1")


class Daemon:
    """A minidockerd on a temporary root and socket (never the user's /var/lib/minidocker)."""

    def __init__(self, base: str, driver: str | None = None):
        self.base = base
        self.driver = driver  # --storage-driver (None: the daemon's default)
        self.root = os.path.join(base, "root")
        self.sock = os.path.join(base, "d.sock")
        self.host = "unix://" + self.sock
        self.log = open(os.path.join(base, "daemon.log"), "ab")
        self.proc = None
        # Container cgroups of this test session go under their own parent, so a leak is easy to see.
        self.cgroup_parent = f"minidocker-test-{os.getpid()}"
        # Network objects too: a bridge and an nftables table of this daemon's own (chapter 11).
        # Named after the base directory: a daemon restarted on the same root finds its own again.
        import hashlib
        tag = hashlib.sha256(os.path.abspath(base).encode()).hexdigest()[:8]
        self.bridge = f"mdt{tag}"
        self.table = f"minidocker_test_{tag}"
        self.net_flags = ["--bridge", self.bridge, "--nft-table", self.table]

    def start(self, timeout: float = 60) -> "Daemon":
        self.proc = subprocess.Popen([sys.executable, "-m", "minidocker.daemon.main", "--root", self.root,
                                      "-H", self.host, "--debug", "--cgroup-parent", self.cgroup_parent,
                                      *self.net_flags,
                                      *(["--storage-driver", self.driver] if self.driver else [])],
                                     stdout=self.log, stderr=self.log, cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"minidockerd exited {self.proc.returncode}: {self.logtext()[-2000:]}")
            if self.ping():
                return self
            time.sleep(0.05)
        raise RuntimeError("minidockerd did not answer in time: " + self.logtext()[-2000:])

    def ping(self) -> bool:
        try:
            return self.api("GET", "/_ping")[0] == 200
        except OSError:
            return False

    def api(self, method: str, path: str, body=None, timeout: float = 30, ctype: str = "application/json"):
        """A raw request with the standard library: (status, parsed JSON or bytes). ``body`` is sent
        as JSON, or as is when it is bytes (with ``ctype``)."""
        import http.client

        class Conn(http.client.HTTPConnection):
            def connect(inner):
                inner.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                inner.sock.settimeout(timeout)
                inner.sock.connect(self.sock)

        c = Conn("localhost", timeout=timeout)
        data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else None
        c.request(method, path, body=data, headers={"Content-Type": ctype} if data is not None else {})
        r = c.getresponse()
        raw = r.read()
        c.close()
        try:
            return r.status, json.loads(raw) if raw else None
        except ValueError:
            return r.status, raw

    def env(self, **extra) -> dict:
        e = dict(os.environ, MINIDOCKER_HOST=self.host, DOCKER_HOST=self.host)
        e.pop("DOCKER_API_VERSION", None)
        e.update(extra)
        return e

    def cli(self, *args, input=None, timeout: float = 60, check: bool = False):
        """Run the real `minidocker` command against this daemon."""
        r = subprocess.run([sys.executable, "-m", "minidocker.cli.main", *args], input=input,
                           capture_output=True, env=self.env(), timeout=timeout, cwd=REPO)
        if check and r.returncode != 0:
            raise AssertionError(f"minidocker {' '.join(args)} exited {r.returncode}: {r.stderr.decode()}")
        return r

    def logtext(self) -> str:
        try:
            with open(os.path.join(self.base, "daemon.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def remove_all(self) -> None:
        status, items = self.api("GET", "/containers/json?all=1")
        for it in items or []:
            self.api("DELETE", f"/containers/{it['Id']}?force=1")

    def shutdown(self) -> list[str]:
        """For a test's own daemon: remove its containers, stop it, delete its base directory;
        return what it left behind (mounts, processes) for the test to assert empty."""
        try:
            if self.proc and self.proc.poll() is None:
                self.remove_all()
        finally:
            self.stop()
            left = leftovers(self.base)
            shutil.rmtree(self.base, ignore_errors=True)
        return left

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def network_leftovers(d: "Daemon") -> list[str]:
    """The daemon's bridge, nftables table and ip_forward hold: all gone after a clean stop with
    no containers (netns pins live under its root: ``leftovers`` sees them as mounts)."""
    found = []
    if os.path.exists(f"/sys/class/net/{d.bridge}"):
        found.append(f"link {d.bridge}")
    r = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
    if f"table ip {d.table}" in r.stdout.split("\n"):
        found.append(f"nft table ip {d.table}")
    if os.path.exists(f"/run/minidocker-sysctl/net.ipv4.ip_forward/{d.table}"):
        found.append(f"ip_forward hold {d.table}")
    return found


def leftovers(path: str) -> list[str]:
    """Mounts and processes that mention ``path``: what a test must not leave behind."""
    found = []
    with open("/proc/self/mountinfo") as f:
        found += [f"mount: {line.split()[4]}" for line in f if path in line]
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if path in cmd:
            found.append(f"process {pid}: {cmd[:200]}")
    return found


@pytest.fixture(scope="session")
def daemon():
    """One minidockerd for the session (with busybox:latest built offline at its start)."""
    yield from _session_daemon(None)


@pytest.fixture(scope="session")
def copy_daemon():
    """A second minidockerd, on the copy storage driver."""
    yield from _session_daemon("copy")


def _session_daemon(driver, cgroup_tag: str = ""):
    """A daemon with its cleanup; ``cgroup_tag`` gives it a cgroup parent of its own (for a daemon
    that lives beside the session's: each checks only its own containers' cgroups)."""
    need_root()
    need(os.path.exists("/bin/busybox"), "/bin/busybox (Debian's busybox-static; make setup installs it)")
    base = tempfile.mkdtemp(prefix="mdtest-", dir="/tmp")
    d = Daemon(base, driver)
    d.cgroup_parent += cgroup_tag
    try:
        d.start()
        yield d
    finally:
        try:
            if d.proc and d.proc.poll() is None:
                d.remove_all()
        finally:
            d.stop()
            import shutil
            left = leftovers(base)
            # Monitors of containers still running would show here; give them a moment to exit.
            deadline = time.monotonic() + 10
            while left and time.monotonic() < deadline:
                time.sleep(0.2)
                left = leftovers(base)
            shutil.rmtree(base, ignore_errors=True)
            cgroups_left = cgroup_leftovers(d.cgroup_parent)
            remove_cgroup_parent(d.cgroup_parent)
            net_left = network_leftovers(d)
            assert not left, f"left behind by the session's daemon: {left}"
            assert not net_left, f"network objects left behind by the session's daemon: {net_left}"
            assert not cgroups_left, f"container cgroups left behind by the session: {cgroups_left}"


def cgroup_dirs(parent: str) -> list[str]:
    """The directories named ``parent`` in every mounted cgroup hierarchy (v1, v2 or both)."""
    from minidocker import cgroups
    layout = cgroups.detect()
    roots = set(layout.v1.values()) | ({layout.unified} if layout.unified else set())
    return [os.path.join(r, parent) for r in sorted(roots) if os.path.isdir(os.path.join(r, parent))]


def cgroup_leftovers(parent: str) -> list[str]:
    """Container cgroups still under ``parent``: every test must have removed its own."""
    return [os.path.join(d, x) for d in cgroup_dirs(parent) for x in os.listdir(d)
            if os.path.isdir(os.path.join(d, x))]


def remove_cgroup_parent(parent: str) -> None:
    for d in cgroup_dirs(parent):
        try:
            os.rmdir(d)
        except OSError:
            pass


@pytest.fixture(scope="session", autouse=True)
def no_cgroup_parent_left():
    """Every daemon a test starts uses the session's cgroup parent (``Daemon.cgroup_parent``); it is
    removed at the end even when the shared ``daemon`` fixture was not used."""
    yield
    parent = f"minidocker-test-{os.getpid()}"
    if os.geteuid() == 0:
        left = cgroup_leftovers(parent)
        remove_cgroup_parent(parent)
        assert not left, f"container cgroups left behind: {left}"


@pytest.fixture(scope="session")
def btrfs_dir():
    """A directory on a btrfs file system on a loop device (minidocker/scratchfs.py: gone after the run,
    also a killed one)."""
    need_root()
    need_tool("mkfs.btrfs")
    need_tool("btrfs")
    with open("/proc/filesystems") as f:
        need("btrfs" in f.read(), "btrfs in the kernel (/proc/filesystems)")
    from minidocker import scratchfs
    # On the host's mount table (private=False), not in a private mount namespace: entering one would
    # move this process - and every daemon a later test starts - into it for the rest of the session,
    # so that tests would see different mount tables depending on their order. A killed session leaves
    # the mount under scratchfs.STALE_PREFIX, which the next run's btrfs_mount() removes.
    with scratchfs.btrfs_mount(private=False) as where:
        yield where
