"""Checker for lab 09 (the OCI runtime's verbs). Makes real busybox containers with the reference
``runtime.create`` and drives them with your ``state``/``start``/``kill``/``delete`` (as root).

    .venv/bin/python labs/09-oci-runtime/check.py               # checks labs/09-oci-runtime/skeleton.py
    .venv/bin/python labs/09-oci-runtime/check.py --reference   # checks minidocker.runtime (must pass)
    .venv/bin/python labs/09-oci-runtime/check.py path/to/mine.py

The checks run in a forked child: ``runtime.create`` makes its caller a child subreaper (the
container's init is its child, as under conmon), and that must not stick to whoever loaded us.
Every container, cgroup and file is removed at the end, also when a check fails.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(HERE.parents[1]))

REFERENCE = "minidocker.runtime"
Result = tuple[str, bool, str]
STEP_TIMEOUT = 20  # seconds: a verb that hangs (a fifo opened without a guard) fails, not the checker


class Lab:
    """A state root, one bundle per workload, our own cgroup parent; everything removed by close()."""

    def __init__(self):
        from minidocker import rootfs
        from minidocker import runtime as ref
        self.ref = ref
        self.dir = tempfile.mkdtemp(prefix="lab09-")
        self.root = os.path.join(self.dir, "state")
        self.parent = f"lab09-{os.getpid()}"
        self.rootfs = rootfs.make_busybox_rootfs(os.path.join(self.dir, "rootfs"))
        self.procs = {}

    def create(self, cid: str, args: list[str], stdout=None):
        from minidocker.runtime.cli import default_spec
        bundle = os.path.join(self.dir, f"bundle-{cid}")
        os.mkdir(bundle)
        spec = default_spec()
        spec["process"].update(terminal=False, args=args)
        spec["root"] = {"path": self.rootfs, "readonly": True}
        spec["linux"]["cgroupsPath"] = f"/{self.parent}/{cid}"
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f)
        self.procs[cid] = self.ref.create(self.root, cid, bundle, stdio=(None, stdout, None))
        return self.procs[cid]

    def status(self, cid: str) -> str:
        try:
            return self.ref.state(self.root, cid)["status"]
        except RuntimeError:
            return "(no record)"

    def close(self) -> None:
        for cid, proc in self.procs.items():
            try:
                self.ref.delete(self.root, cid, force=True)
            except Exception:  # noqa: BLE001 - already deleted by the student's delete
                pass
            try:
                proc.kill(signal.SIGKILL)
                proc.wait(10)
            except Exception:  # noqa: BLE001
                pass
        import glob
        for d in sorted(glob.glob(f"/sys/fs/cgroup/*/{self.parent}") + glob.glob(f"/sys/fs/cgroup/{self.parent}"),
                        reverse=True):
            try:
                os.rmdir(d)
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def _fail(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def _raises(fn, what: str) -> str:
    try:
        fn()
    except NotImplementedError:
        raise
    except Exception as e:  # noqa: BLE001 - any error is the expected refusal
        return f"refused: {e}"
    raise AssertionError(f"{what}: no error raised")


def check_state_created(m, lab: Lab) -> str:
    lab.create("c1", ["sleep", "30"])
    mine, want = m.state(lab.root, "c1"), lab.ref.state(lab.root, "c1")
    _fail(mine == want, f"got {mine}, want {want}")
    return f"created, pid {want['pid']}"


def check_state_recycled_pid(m, lab: Lab) -> str:
    d = os.path.join(lab.root, "ghost")
    os.makedirs(d)
    rec = json.load(open(os.path.join(lab.root, "c1", "runtime.json")))
    rec.update(id="ghost", pid=os.getpid(), starttime=1)  # a live process, but not the one recorded
    json.dump(rec, open(os.path.join(d, "runtime.json"), "w"))
    st = m.state(lab.root, "ghost")
    shutil.rmtree(d)
    _fail((st["status"], st["pid"]) == ("stopped", 0),
          f"pid {os.getpid()} is alive but started at another time: want stopped/0, got {st['status']}/{st['pid']}")
    return "a live pid with another start time is not the container"


def check_state_missing(m, lab: Lab) -> str:
    return _raises(lambda: m.state(lab.root, "nosuch"), "state of a container that does not exist")


def check_start(m, lab: Lab) -> str:
    r, w = os.pipe()
    try:
        lab.create("c2", ["sh", "-c", "echo started; exec sleep 30"], stdout=w)
        os.close(w)
        w = None
        _fail(lab.status("c2") == "created", "not created")
        m.start(lab.root, "c2")
        line = os.read(r, 100)
    finally:
        os.close(r)
        if w is not None:
            os.close(w)
    _fail(line == b"started\n", f"the process printed {line!r}, want b'started\\n'")
    _fail(lab.status("c2") == "running", f"status after start: {lab.status('c2')}")
    _fail(not os.path.exists(os.path.join(lab.root, "c2", "exec.fifo")), "the exec fifo is still there")
    return "the init exec'd, status running, fifo removed"


def check_start_twice(m, lab: Lab) -> str:
    return _raises(lambda: m.start(lab.root, "c2"), "start of a running container")


def check_start_dead_init(m, lab: Lab) -> str:
    proc = lab.create("c3", ["true"])
    proc.kill(signal.SIGKILL)
    proc.wait(10)
    return _raises(lambda: m.start(lab.root, "c3"), "start of a container whose init died")


def check_state_paused(m, lab: Lab) -> str:
    lab.ref.pause(lab.root, "c2")
    try:
        st = m.state(lab.root, "c2")
    finally:
        lab.ref.resume(lab.root, "c2")
    _fail(st["status"] == "paused", f"frozen cgroup: want paused, got {st['status']}")
    return "paused while frozen"


def check_kill(m, lab: Lab) -> str:
    m.kill(lab.root, "c2", signal.SIGKILL)
    code = lab.procs["c2"].wait(10)
    _fail(code == 128 + signal.SIGKILL, f"the init exited with {code}, want 137")
    _fail(lab.status("c2") == "stopped", f"status after kill: {lab.status('c2')}")
    return "SIGKILL reached the init (137); " + _raises(lambda: m.kill(lab.root, "c2", signal.SIGTERM),
                                                        "kill of a stopped container")


def check_delete_running(m, lab: Lab) -> str:
    lab.create("c4", ["sleep", "30"])
    lab.ref.start(lab.root, "c4")
    refused = _raises(lambda: m.delete(lab.root, "c4"), "delete of a running container without force")
    _fail(lab.status("c4") == "running", "delete without force stopped the container")
    m.delete(lab.root, "c4", force=True)
    _fail(lab.status("c4") == "(no record)", "runtime.json is still there after delete --force")
    _fail(not os.path.exists(os.path.join(lab.root, "c4")), "the container's directory is still there")
    left = [d for d in (f"/sys/fs/cgroup/pids/{lab.parent}/c4", f"/sys/fs/cgroup/{lab.parent}/c4") if os.path.isdir(d)]
    _fail(not left, f"its cgroup is still there: {left}")
    return refused.split(":")[0] + " without force; removed with force (record, directory, cgroup)"


def check_delete_created(m, lab: Lab) -> str:
    proc = lab.create("c5", ["sleep", "30"])
    m.delete(lab.root, "c5")
    code = proc.wait(10)
    _fail(lab.status("c5") == "(no record)", "still recorded")
    return f"a created container is deleted without force (its init ended: {code})"


# The steps share one Lab (containers made by one step are used by the next), so they run in order
# in one child with check() below, not one child each as CHECKS would.
STEPS = [("state: created", check_state_created), ("state: a recycled pid", check_state_recycled_pid),
          ("state: no such container", check_state_missing), ("start: the exec fifo", check_start),
          ("start: not twice", check_start_twice), ("start: a dead init is an error, not a hang", check_start_dead_init),
          ("state: paused", check_state_paused), ("kill", check_kill),
          ("delete: running needs --force", check_delete_running), ("delete: created", check_delete_created)]


def _timeout(signum, frame):
    raise TimeoutError(f"no answer in {STEP_TIMEOUT} s (a blocking open or wait without a guard?)")


def _run_checks(module) -> list[Result]:
    results: list[Result] = []
    signal.signal(signal.SIGALRM, _timeout)
    lab = None
    try:
        lab = Lab()
        for name, fn in STEPS:
            signal.alarm(STEP_TIMEOUT)
            try:
                results.append((name, True, fn(module, lab)))
            except Exception as e:  # noqa: BLE001 - a failed check, reported in the table
                results.append((name, False, f"{type(e).__name__}: {e}"))
            finally:
                signal.alarm(0)
    except Exception as e:  # noqa: BLE001 - the lab could not even be set up
        results.append(("setup", False, f"{type(e).__name__}: {e}"))
    finally:
        if lab is not None:
            lab.close()
    return results


def check(module) -> list[Result]:
    """Run every check against ``module`` in a forked child; its results come back as JSON."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            out = json.dumps(_run_checks(module)).encode()
        except BaseException as e:  # noqa: BLE001
            out = json.dumps([("checker", False, f"{type(e).__name__}: {e}")]).encode()
        with os.fdopen(w, "wb") as f:
            f.write(out)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    try:
        return [tuple(x) for x in json.loads(data)]
    except ValueError:
        return [("checker", False, "the checking process died without an answer")]


def main(argv: list[str]) -> int:
    from minidocker.labs import script_main
    return script_main(argv, check, REFERENCE, HERE / "skeleton.py", "lab 09 (the OCI runtime)",
                       needs_root="it creates real containers")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
