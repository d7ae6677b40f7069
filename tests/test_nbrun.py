"""A notebook run that dies half-way leaves nothing behind for long (minidocker/nbrun.py, docs/COURSE.md):
the next `doctor.chapter(NN)` of the same chapter sweeps what the dead run left — its orphaned daemon
with a paused container, a frozen cgroup, a netns with a veth on a bridge, an nft table, a sysctl hold,
a mount and a loop device in its run directory — and leaves a live run's objects alone; a run that
exits normally or on SIGTERM (a kernel restart) cleans up after itself at exit.

Every run here is a subprocess, as a notebook's kernel is: the test process never sweeps, never
moves its own tempfile directory and never registers the atexit clean-up."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import REPO, need_root, need_tool
from minidocker import nbrun

pytestmark = pytest.mark.privileged
# A chapter no notebook has: a real notebook's first cell (another session's) would sweep this test's
# dead run before the test looks at it. Everything else is as notebook 08 does it.
CHAPTER = "99"

# A notebook-like run: doctor.chapter first, then one of each kind of object, named as the
# notebooks name them; prints the names as JSON, then either dies without any clean-up (os._exit:
# a killed kernel) or waits for a line on stdin and exits normally (a kernel restart: atexit runs).
RUN = r'''
import json, os, subprocess, sys, tempfile, time
from minidocker import doctor, cgroups
from minidocker.network import links, netns, nft, sysctl
from minidocker import kernel as K
NN, MODE, NET = sys.argv[1], sys.argv[2], sys.argv[3]
HOST = doctor.chapter(NN)
P = os.getpid()
WORK = tempfile.mkdtemp(prefix=f"md-nb{NN}-")
got = {"pid": P, "work": WORK, "run_dir": tempfile.gettempdir()}

if MODE == "crash":   # the daemon, started as notebook 08 starts it, with a paused container
    SOCK = os.path.join(WORK, "api.sock")
    PARENT = f"minidocker-nb{NN}-{P}"
    daemon = subprocess.Popen([sys.executable, "-m", "minidocker.daemon.main", "--root", os.path.join(WORK, "root"),
                               "-H", "unix://" + SOCK, "--cgroup-parent", PARENT,
                               "--bridge", f"mdnb{NN}-{P}d", "--nft-table", f"minidocker_nb{NN}_{P}"],
                              stdout=open(os.path.join(WORK, "daemon.log"), "wb"), stderr=subprocess.STDOUT)
    from minidocker.cli.client import Client
    api = Client("unix://" + SOCK)
    for _ in range(600):
        try:
            api.request("GET", "/_ping").check(); break
        except Exception:
            time.sleep(0.05)
    cid = api.request("POST", "/containers/create", body={"Image": "busybox", "Cmd": ["sleep", "600"]}).check().json()["Id"]
    api.request("POST", f"/containers/{cid}/start").check()
    api.request("POST", f"/containers/{cid}/pause").check()
    got.update(daemon=daemon.pid, container_pid=api.request("GET", f"/containers/{cid}/json").check().json()["State"]["Pid"],
               cgroup_parent=PARENT)

# a frozen cgroup of our own with a process in it
cg = cgroups.open_cgroup(f"/md-nb{NN}-{P}/box")
cg.create()
sleeper = subprocess.Popen(["sleep", "600"], start_new_session=True, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
cg.add(sleeper.pid)
cg.freeze()
got.update(cgroup=f"/md-nb{NN}-{P}/box", cgroup_dirs=cg.directories(), sleeper=sleeper.pid)

# a netns pinned in the work directory, a veth in it on a bridge, an nft table, a sysctl hold
ns = netns.create(os.path.join(WORK, "c1"))
BR, VETH, TABLE = f"mdnb{NN}-{P}a", f"mdnb{NN}-{P}v", f"minidocker_nb{NN}h_{P}"
links.create_bridge(BR, f"10.249.{NET}.1", 24)
links.attach(ns, BR, VETH, "eth0", f"10.249.{NET}.2", 24, f"10.249.{NET}.1")
nft.apply(TABLE, [{"bridge": BR, "subnet": f"10.249.{NET}.0/24", "internal": False}], [])
sysctl.hold("net.ipv4.ip_forward", "1", TABLE)
got.update(netns=ns, links=[BR, VETH], table=TABLE)

# a mount in the work directory, and a loop device backed by a file there
MNT = os.path.join(WORK, "mnt"); os.mkdir(MNT)
K.Linux().mount("tmpfs", MNT, "tmpfs", 0, "size=1m")
img = os.path.join(WORK, "disk.img")
with open(img, "wb") as f:
    f.truncate(1 << 20)
loop = subprocess.run(["losetup", "-f", "--show", img], capture_output=True, text=True, check=True).stdout.strip()
got.update(mount=MNT, loop=loop)

print(json.dumps(got), flush=True)
if MODE == "crash":
    os._exit(0)            # no clean-up at all: what a killed kernel leaves
sys.stdin.readline()       # live until the test says so, then a normal exit: atexit cleans up
'''


def _env():
    return dict(os.environ, PYTHONPATH=REPO)


def _mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def _loop_of(dev):
    try:
        with open(f"/sys/block/{os.path.basename(dev)}/loop/backing_file") as f:
            return f.read().strip()
    except OSError:
        return None


def _tables():
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.split("\n")


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _present(run) -> dict[str, bool]:
    """Each object of a run: does it still exist?"""
    out = {"run directory": os.path.isdir(run["run_dir"]),
           "cgroup": any(os.path.isdir(d) for d in run["cgroup_dirs"]),
           "process in the frozen cgroup": _running(run["sleeper"]),
           "netns pin": _mounted(run["netns"]),
           "mount": _mounted(run["mount"]),
           "loop device": (_loop_of(run["loop"]) or "").startswith(run["work"]),
           "nft table": f"table ip {run['table']}" in _tables(),
           "sysctl hold": os.path.exists(f"/run/minidocker-sysctl/net.ipv4.ip_forward/{run['table']}")}
    out.update({f"link {n}": os.path.exists(f"/sys/class/net/{n}") for n in run["links"]})
    if "daemon" in run:
        out["daemon"] = _running(run["daemon"])
        out["paused container"] = _running(run["container_pid"])
        out["daemon's cgroup parent"] = any(
            os.path.isdir(os.path.join(os.path.dirname(d), run["cgroup_parent"])) for d in
            [os.path.dirname(x) for x in run["cgroup_dirs"]])
    return out


def _clean(pid):
    """Whatever the test's runs left, also when it fails: the clean-up of that run, in a subprocess."""
    subprocess.run([sys.executable, "-c", f"from minidocker import nbrun; nbrun.clean_run({CHAPTER!r}, {pid})"],
                   env=_env(), timeout=60, capture_output=True)


def test_the_next_run_sweeps_a_dead_runs_leftovers_and_a_live_run_cleans_up_at_exit():
    need_root()
    need_tool("nft")
    need_tool("losetup")
    pids, lives = [], []
    try:
        for net in ("2", "3"):   # two live runs: one will exit normally, one by SIGTERM
            lives.append(subprocess.Popen([sys.executable, "-c", RUN, CHAPTER, "live", net], env=_env(), cwd=REPO,
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        alive = [json.loads(next(line for line in p.stdout if line.startswith("{"))) for p in lives]
        pids += [a["pid"] for a in alive]
        dead = subprocess.run([sys.executable, "-c", RUN, CHAPTER, "crash", "1"], env=_env(), cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        assert dead.returncode == 0, dead.stderr
        dead = json.loads(dead.stdout.splitlines()[-1])
        pids.append(dead["pid"])
        assert all(_present(dead).values()), f"the dead run did not leave everything: {_present(dead)}"
        for a in alive:
            assert all(_present(a).values()), _present(a)
        assert nbrun.owner(os.path.basename(dead["run_dir"]), CHAPTER) == dead["pid"]
        assert not nbrun.alive(CHAPTER, dead["pid"]) and all(nbrun.alive(CHAPTER, a["pid"]) for a in alive)

        # The next run of the chapter: its first cell's doctor.chapter sweeps.
        nxt = subprocess.run([sys.executable, "-c", f"from minidocker import doctor; doctor.chapter({CHAPTER!r})"],
                             env=_env(), cwd=REPO, capture_output=True, text=True, timeout=60)
        assert nxt.returncode == 0, nxt.stderr
        assert f"run of pid {dead['pid']}:" in nxt.stdout, nxt.stdout
        left = [k for k, v in _present(dead).items() if v]
        assert left == [], f"the sweep left the dead run's {left}"
        for a in alive:
            assert f"pid {a['pid']}" not in nxt.stdout, nxt.stdout
            assert all(_present(a).values()), f"the sweep touched a live run: {_present(a)}"

        # A kernel restart: the kernel exits normally, or Jupyter sends SIGTERM to one that does not
        # exit at once. Either way the run's atexit clean-up removes everything.
        lives[0].stdin.write("\n")
        lives[0].stdin.flush()
        lives[1].send_signal(signal.SIGTERM)
        for p, a, code in zip(lives, alive, (0, 128 + signal.SIGTERM)):
            out, _ = p.communicate(timeout=60)
            assert p.returncode == code
            assert f"run of pid {a['pid']}" in out, out
            left = [k for k, v in _present(a).items() if v]
            assert left == [], f"the exit of the run of pid {a['pid']} left its {left}"
    finally:
        for p in lives:
            if p.poll() is None:
                p.kill()
                p.wait()
        for pid in pids:
            _clean(pid)


def test_names_say_their_chapter_and_owner():
    for name, pid in [("md-nb08-4242", 4242), ("md-nb08-dev-v1-4242", 4242), ("minidocker-nb08-4242-clone3", 4242),
                      ("mdnb08-4242a", 4242), ("minidocker_nb08d_4242", 4242), ("minidocker_nb08_4242", 4242),
                      ("md-nb08-pids-17", 17)]:
        assert nbrun.owner(name, "08") == pid, name
    for name in ["md-nb09-4242", "md-nb08-abcdefgh", "minidocker", "minidocker0", "mdnb08", "minidocker_nb08",
                 "md-nb080-4242", "mdbr-0123456789", "md0123456789", "minidocker-test-4242"]:
        assert nbrun.owner(name, "08") is None, name


def test_a_reused_pid_does_not_keep_a_dead_run_alive(tmp_path):
    """The run directory's owner file holds the kernel's start time: a live process with the same pid
    but another start time is not the run's kernel (pids are reused)."""
    pid, top = os.getpid(), nbrun.run_dir(CHAPTER, os.getpid())
    assert not os.path.exists(top)
    try:
        os.makedirs(top)
        assert nbrun.alive(CHAPTER, pid), "no owner record: a live pid counts as the owner"
        with open(os.path.join(top, "owner"), "w") as f:
            f.write(f"{pid} 1\n")            # a kernel that started at tick 1: not this process
        assert not nbrun.alive(CHAPTER, pid)
        with open(f"/proc/{pid}/stat") as f:
            started = f.read().rsplit(")", 1)[1].split()[19]
        with open(os.path.join(top, "owner"), "w") as f:
            f.write(f"{pid} {started}\n")
        assert nbrun.alive(CHAPTER, pid)
    finally:
        import shutil
        shutil.rmtree(top, ignore_errors=True)
