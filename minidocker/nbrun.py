"""A notebook's run and what it leaves behind: names that say whose they are, and the cleanup of
runs whose kernel is gone (docs/COURSE.md, "Every run cleans up after itself").

What this teaches
-----------------
A student may stop a notebook anywhere: interrupt it, restart the kernel, close the browser. The
last cell's clean-up then never runs, and what the notebook made outlives it — a ``minidockerd``
with containers, cgroups (some frozen by the pause demos), network namespaces, veths, bridges, nft
tables, loop devices, mounts, temporary directories. None of that belongs to a process the kernel
knows about any more: a daemon whose parent died is re-parented to pid 1; a cgroup, a bridge or a
table belongs to nobody. The only thing that can say whose it is, is its **name**. So:

* every object a notebook makes is named for its chapter and its kernel's pid: the run directory
  ``$TMPDIR/md-nbNN-PID/`` (``doctor.chapter`` makes it and points ``tempfile`` at it, so every
  ``tempfile.mkdtemp`` of the notebook lands inside), cgroups ``md-nbNN-…PID…`` and
  ``minidocker-nbNN-PID`` (a daemon's ``--cgroup-parent``), links ``mdnbNN-PID…`` (15 characters at
  most: IFNAMSIZ), nft tables ``minidocker_nbNN…_PID…`` (also the holder of a sysctl hold);
* a run is **dead** when no process has that pid any more — or one has, but started at another
  time (``/proc/PID/stat`` field 22, recorded in the run directory's ``owner`` file): pids are
  reused;
* ``doctor.chapter(NN)`` sweeps what dead runs of chapter NN left (``sweep``), and registers an
  ``atexit`` clean-up of its own run (``clean_run``): a kernel restart is an ordinary interpreter
  exit — or a SIGTERM from Jupyter when the kernel does not exit at once (ipykernel first waits for
  its children), which ``start`` turns into one. A kernel killed outright (SIGKILL, a power cut)
  leaves its objects to the next run's sweep.

Nothing alive and nothing not named this way is touched: a process is ended only if its command
line names a path inside a dead run's directory (a daemon's ``--root``), by pid, SIGTERM first (a
daemon removes its own bridge, table and sysctl hold) and SIGKILL after a grace period; the only
links not named for a notebook it deletes are the bridges a dead run's own daemon recorded in its
``networks.json`` (user networks, ``mdbr-…``).

Man pages: proc(5) (``/proc/PID/stat``, ``cmdline``, ``mountinfo``), cgroups(7) (freezer, rmdir of
an empty group), umount(2) (MNT_DETACH), loop(4), ip-link(8), nft(8), atexit (Python library).
"""
from __future__ import annotations

import atexit
import contextlib
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

from . import kernel as K
from .util import start_time

#: How a notebook's objects' names start (then the chapter number, then the owner's pid).
PREFIXES = ("md-nb", "minidocker-nb", "minidocker_nb", "mdnb")
SYSCTL_HOLDS = "/run/minidocker-sysctl"      # network/sysctl.py's HOLDS
SINGULAR = {"processes": "process", "directories": "directory"}
GRACE = 10.0                                 # seconds a process gets between SIGTERM and SIGKILL

_base = None          # tempfile's directory before start() pointed it at the run directory
_registered: set[str] = set()


def owner(name: str, chapter: str) -> int | None:
    """The pid a name says owns it, for chapter ``chapter``, or None if it is not named for that
    chapter: a prefix, the chapter, optional letters, a separator, optional words, then the pid
    (``md-nb10-dev-v1-4242``, ``minidocker-nb03-4242-clone3``, ``mdnb11-4242a``, ``minidocker_nb11d_4242``)."""
    m = re.match(r"(?:%s)%s[a-z]*[-_](?:[a-z][a-z0-9]*[-_])*([0-9]+)(?![0-9])"
                 % ("|".join(map(re.escape, PREFIXES)), re.escape(chapter)), name)
    return int(m.group(1)) if m else None


def base() -> str:
    """Where run directories live: tempfile's directory as it was before any run pointed it away."""
    return _base or tempfile.gettempdir()


def run_dir(chapter: str, pid: int) -> str:
    return os.path.join(base(), f"md-nb{chapter}-{pid}")


def alive(chapter: str, pid: int) -> bool:
    """Is the run (chapter, pid) still going? Its pid exists, and (if the run directory recorded it)
    started when the run's kernel did."""
    started = start_time(pid)
    if started is None:
        return False
    try:
        with open(os.path.join(run_dir(chapter, pid), "owner")) as f:
            return f.read().split()[1] == str(started)
    except (OSError, IndexError):
        return True   # no record: a live pid may be the owner, so it is


# --- finding what a run made -------------------------------------------------------------------

def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _argv(pid: int | str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a for a in f.read().decode(errors="replace").split("\0") if a]
    except OSError:
        return None


def _processes(top: str) -> list[tuple[int, list[str]]]:
    """Processes whose command line names a path inside ``top`` (``--root=P`` counts), with it."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (1, os.getpid()):
            continue
        argv = _argv(entry) or []
        if any(_under(a.split("=", 1)[-1] if a.startswith("--") else a, top) for a in argv):
            found.append((int(entry), argv))
    return found


def _gone(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)         # our own child (the current run's daemon): reap it
    return start_time(pid) is None


def _end(procs: list[tuple[int, list[str]]]) -> list[str]:
    """SIGTERM each (checking the command line again just before: pids are reused), wait, SIGKILL."""
    ended = []
    for pid, argv in procs:
        with contextlib.suppress(OSError):
            if _argv(pid) == argv:
                os.kill(pid, signal.SIGTERM)
                ended.append((pid, " ".join(argv)))
    deadline = time.monotonic() + GRACE
    while any(not _gone(p) for p, _ in ended) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid, _ in ended:
        if not _gone(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    return [f"{pid} ({cmd[:60]})" for pid, cmd in ended]


def _cgroup_roots():
    from . import cgroups
    try:
        layout = cgroups.detect()
    except OSError:
        return None, []
    return layout, sorted(set(layout.v1.values()) | ({layout.unified} if layout.unified else set()))


def _cgroups(chapter: str, pid: int) -> list[str]:
    """Every cgroup (relative path, parents first) under a top-level group named for the run."""
    _, roots = _cgroup_roots()
    paths = set()
    for root in roots:
        with contextlib.suppress(OSError):
            for top in os.listdir(root):
                if owner(top, chapter) == pid and os.path.isdir(os.path.join(root, top)):
                    for d, _, _ in os.walk(os.path.join(root, top)):
                        paths.add("/" + os.path.relpath(d, root))
    return sorted(paths, key=lambda p: (p.count("/"), p))


def _remove_cgroups(paths: list[str]) -> list[str]:
    """Thaw parents first (a frozen parent keeps its children frozen; a frozen task does not die of
    SIGKILL), then kill and rmdir children first."""
    from . import cgroups
    layout, _ = _cgroup_roots()
    for p in paths:
        with contextlib.suppress(OSError):
            cg = cgroups.open_cgroup(p, layout)
            if cg.frozen():
                cg.thaw()
    removed = []
    for p in reversed(paths):
        with contextlib.suppress(OSError):
            cgroups.open_cgroup(p, layout).destroy()
            removed.append(p)
    return removed


def _mounts(top: str) -> list[str]:
    from .rootfs import mountinfo
    return [m.mountpoint for m in mountinfo() if _under(m.mountpoint, top)]


def _unmount(points: list[str]) -> list[str]:
    k, done = K.Linux(), []
    for mp in sorted(set(points), key=len, reverse=True):
        with contextlib.suppress(OSError):
            k.umount2(mp, K.MNT_DETACH)
            done.append(mp)
    return done


def _loops(top: str) -> list[str]:
    """Loop devices whose backing file lies inside ``top`` (/sys/block/loopN/loop/backing_file)."""
    found = []
    with contextlib.suppress(OSError):
        for dev in sorted(os.listdir("/sys/block")):
            with contextlib.suppress(OSError), open(f"/sys/block/{dev}/loop/backing_file") as f:
                if _under(f.read().strip().removesuffix(" (deleted)"), top):
                    found.append("/dev/" + dev)
    return found


def _links(chapter: str, pid: int, top: str) -> list[str]:
    """Host links named for the run, and the bridges its daemon recorded (``mdbr-…`` networks)."""
    names = [n for n in _link_names() if owner(n, chapter) == pid]
    for recorded in glob.glob(os.path.join(glob.escape(top), "*", "*", "network", "networks.json")):
        with contextlib.suppress(OSError, ValueError, AttributeError):   # WORK/ROOT/network/
            with open(recorded) as f:
                names += [n["bridge"] for n in json.load(f).values() if n.get("bridge")]
    return sorted(n for n in set(names) if os.path.exists(f"/sys/class/net/{n}"))


def _holds() -> list[tuple[str, str]]:
    """Every sysctl hold: (key, holder) (network/sysctl.py's files)."""
    found = []
    with contextlib.suppress(OSError):
        for key in os.listdir(SYSCTL_HOLDS):
            with contextlib.suppress(OSError):
                found += [(key, h) for h in os.listdir(os.path.join(SYSCTL_HOLDS, key))
                          if not h.startswith(".")]
    return found


# --- cleaning -----------------------------------------------------------------------------------

def clean_run(chapter: str, pid: int) -> dict[str, list[str]]:
    """Remove everything the run (chapter, pid) made, in the order that lets each step work: its
    processes (a daemon tidies its own network as it stops), its cgroups (the containers die with
    them), its mounts (netns pins, overlays), its loop devices, links, nft tables, sysctl holds,
    the scratch btrfs of that pid, and the run directory. Returns kind -> what went."""
    top = run_dir(chapter, pid)
    out: dict[str, list[str]] = {}
    if os.path.isdir(top):
        out["processes"] = _end(_processes(top))
    out["cgroups"] = _remove_cgroups(_cgroups(chapter, pid))
    from .scratchfs import STALE_PREFIX
    out["mounts"] = _unmount(_mounts(top) + _mounts(STALE_PREFIX + str(pid)))
    out["loop devices"] = [dev for dev in _loops(top)
                           if subprocess.run(["losetup", "-d", dev], capture_output=True).returncode == 0]
    from .network import links, nft, sysctl
    out["links"] = [n for n in _links(chapter, pid, top) if _quiet(links.delete, n)]
    out["nft tables"] = [t for t in _table_names() if owner(t, chapter) == pid and _quiet(nft.remove, t)]
    out["sysctl holds"] = [f"{k}:{h}" for k, h in _holds()
                           if owner(h, chapter) == pid and _quiet(sysctl.release, k, h, SYSCTL_HOLDS)]
    for d in (top, STALE_PREFIX + str(pid)):
        if os.path.isdir(d) and not _mounts(d):   # never rmtree through a mount that stayed
            shutil.rmtree(d, ignore_errors=True)
            out.setdefault("directories", []).append(d)
    return {k: v for k, v in out.items() if v}


def _quiet(fn, *args) -> bool:
    try:
        fn(*args)
        return True
    except Exception:  # noqa: BLE001 - a leftover that will not go is reported by its absence
        return False


def dead_runs(chapter: str) -> list[int]:
    """Pids of chapter ``chapter``'s runs that left something and whose kernel is gone."""
    pids = set()
    with contextlib.suppress(OSError):
        pids |= {owner(n, chapter) for n in os.listdir(base())}
    _, roots = _cgroup_roots()
    for root in roots:
        with contextlib.suppress(OSError):
            pids |= {owner(n, chapter) for n in os.listdir(root)}
    pids |= {owner(n, chapter) for n in _link_names()}
    pids |= {owner(n, chapter) for n in _table_names()}
    pids |= {owner(h, chapter) for _, h in _holds()}
    return sorted(p for p in pids if p and p != os.getpid() and not alive(chapter, p))


def _link_names() -> list[str]:
    """The host's links, from sysfs: no netlink (and no pyroute2 import, most of a second) unless
    there is something to delete."""
    try:
        return os.listdir("/sys/class/net")
    except OSError:
        return []


def _table_names() -> list[str]:
    """The host's ``ip`` nft tables (nft -j list tables)."""
    if not shutil.which("nft"):
        return []
    r = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True)
    try:
        return [t["table"]["name"] for t in json.loads(r.stdout or "{}").get("nftables", [])
                if t.get("table", {}).get("family") == "ip"]
    except ValueError:
        return []


def summary(removed: dict[int, dict[str, list[str]]]) -> str:
    """One line: what the clean-up of these runs removed."""
    parts = []
    for pid, kinds in removed.items():
        what = ", ".join(f"{len(v)} {k if len(v) != 1 else SINGULAR.get(k, k[:-1])}" for k, v in kinds.items())
        parts.append(f"run of pid {pid}: {what}")
    return "; ".join(parts)


def sweep(chapter: str) -> dict[int, dict[str, list[str]]]:
    """Clean every dead run of ``chapter``; pid -> what went (runs that left nothing are omitted)."""
    out = {}
    for pid in dead_runs(chapter):
        if got := clean_run(chapter, pid):
            out[pid] = got
    return out


def start(chapter: str) -> dict[int, dict[str, list[str]]]:
    """A notebook run of ``chapter`` begins in this process: sweep the dead runs, make this run's
    directory (with its ``owner`` record) and point ``tempfile`` at it, and clean this run at exit.
    Calling it again in the same process (the first cell re-run) sweeps again and changes nothing
    else. Returns what the sweep removed."""
    global _base
    me = os.getpid()
    removed = sweep(chapter)
    if not alive(chapter, me):               # our pid's directory is a dead run's: clean it first
        if got := clean_run(chapter, me):
            removed[me] = got
    top = run_dir(chapter, me)
    os.makedirs(top, mode=0o755, exist_ok=True)
    with open(os.path.join(top, "owner"), "w") as f:
        f.write(f"{me} {start_time(me)}\n")
    if _base is None:
        _base = tempfile.gettempdir()
    tempfile.tempdir = top
    if chapter not in _registered:
        _registered.add(chapter)
        atexit.register(_at_exit, chapter, me)
    with contextlib.suppress(ValueError):      # not the main thread: no handler, the sweep remains
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    return removed


def _on_sigterm(signum, frame):
    """Jupyter stops a kernel that does not exit at once (ipykernel first waits for its children —
    a Popen'ed daemon is one, and stays a zombie) with SIGTERM, whose default action skips atexit.
    As an exception it is an ordinary exit: this run's clean-up runs."""
    raise SystemExit(128 + signum)


def _at_exit(chapter: str, pid: int) -> None:
    if os.getpid() != pid:      # a forked child that exits normally inherits atexit: not its run
        return
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)   # a second SIGTERM must not cut this short
    tempfile.tempdir = _base
    got = clean_run(chapter, pid)
    if set(got) - {"directories"}:    # more than the run directory: say what the last cell missed
        print(f"chapter {chapter}: cleaned up at exit: {summary({pid: got})}", flush=True)
