"""The capstone's stage tester: runs your ``mydocker`` as a black box, stage by stage.

Nothing of your code is imported or called directly: each stage builds a small image of its own
(busybox from busybox-static in layer 00; layer 01 with a file that shadows one below, a new file and a
whiteout), runs ``python YOUR_FILE run ...`` as a program, and judges only what a user of docker would
see: output, exit code, hostname, the image's files, the layers on disk, the host's cgroups. Each stage
says what it expected and what it got. Your lab solutions come from ``$MYDOCKER_LABS`` (default: your
copies in ~/minidocker-labs; ``reference`` = minidocker's own modules). Every stage uses its own cgroup
parent and removes it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from minidocker.labs import Mismatch, expect, run_checks, script_main

REFERENCE = "minidocker.capstone"
NEEDS_ROOT = "mydocker makes namespaces, mounts and cgroups"
TIMEOUT = 30
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


class Box:
    """One stage's image, state and cgroup parent, in a temporary directory removed afterwards."""

    def __init__(self, module):
        self.file = os.path.abspath(module.__file__)
        self.tmp = tempfile.mkdtemp(prefix="mydocker-check-")
        self.image = os.path.join(self.tmp, "image")
        self.parent = f"mydocker-check-{os.getpid()}"
        self.env = {**os.environ, "MYDOCKER_CGROUP_PARENT": self.parent,
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        from minidocker import rootfs
        bottom, top = (os.path.join(self.image, "layers", n) for n in ("00", "01"))
        rootfs.make_busybox_rootfs(bottom)
        _write(os.path.join(bottom, "etc", "greeting"), "from the bottom layer\n")
        _write(os.path.join(top, "etc", "greeting"), "from the top layer\n")
        _write(os.path.join(top, "etc", "motd"), f"image {os.path.basename(self.tmp)}\n")
        os.makedirs(os.path.join(top, "bin"))
        os.mknod(os.path.join(top, "bin", "vi"), 0o20000, os.makedev(0, 0))   # overlay whiteout: no /bin/vi

    def mydocker(self, *args, timeout=20) -> tuple[int, str, str]:
        try:
            r = subprocess.run([sys.executable, self.file, *args], capture_output=True, text=True,
                               env=self.env, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise Mismatch(f"`mydocker {' '.join(args)}`", f"still running after {timeout} s", "it to finish") from None
        return r.returncode, r.stdout, r.stderr

    def run(self, *argv, opts=()) -> tuple[int, str, str]:
        return self.mydocker("run", *opts, self.image, *argv)

    def leftover_cgroups(self) -> list[str]:
        from minidocker import cgroups
        layout = cgroups.detect()
        roots = {*layout.v1.values(), *([layout.unified] if layout.unified else [])}
        left = []
        for r in roots:
            p = os.path.join(r, self.parent)
            if os.path.isdir(p):
                left += [os.path.join(p, c) for c in os.listdir(p) if os.path.isdir(os.path.join(p, c))] or [p]
        return left

    def close(self) -> None:
        for p in sorted(self.leftover_cgroups(), key=len, reverse=True):
            try:
                os.rmdir(p)
            except OSError:
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _said(what: str, result, want_out: str, want_code: int = 0) -> str:
    """stdout (and the exit code) of a run must be exactly these; a failure shows stderr's last line."""
    code, out, err = result
    if (out, code) != (want_out, want_code):
        tail = err.strip().splitlines()[-1] if err.strip() else "nothing on stderr"
        raise Mismatch(what, f"{out!r} exit {code} ({tail})", f"{want_out!r} exit {want_code}")
    return f"{what}: {out.strip()!r}"


def stage(fn):
    """Each stage gets a fresh Box and always cleans it up."""
    def wrapped(module):
        box = Box(module)
        try:
            return fn(box)
        finally:
            box.close()
    wrapped.__name__ = fn.__name__
    return wrapped


@stage
def check_runs(box):
    return _said("`mydocker run IMAGE echo hello` printed", box.run("echo", "hello"), "hello\n")


@stage
def check_exit_code(box):
    return _said("`mydocker run IMAGE sh -c 'exit 3'`", box.run("sh", "-c", "exit 3"), "", 3)


@stage
def check_pid_1(box):
    return _said("`echo $$` (the pid of the command, in its own pid namespace)", box.run("sh", "-c", "echo $$"), "1\n")


@stage
def check_hostname(box):
    before = socket.gethostname()
    detail = _said("`hostname` with --hostname capstone-box",
                   box.run("hostname", opts=["--hostname", "capstone-box"]), "capstone-box\n")
    expect("the host's hostname afterwards (a uts namespace of its own)", socket.gethostname(), before)
    return detail


@stage
def check_root_filesystem(box):
    _said("`cat /etc/motd` (a file of the image)", box.run("cat", "/etc/motd"),
          f"image {os.path.basename(box.tmp)}\n")
    return _said(f"`test -e {box.tmp}` (the host's directories must be out of sight)",
                 box.run("sh", "-c", f"test -e {box.tmp} && echo host || echo image"), "image\n")


@stage
def check_proc_and_dev(box):
    return _said("`cat /proc/1/comm; test -c /dev/null` (a /proc of its pid namespace, a /dev)",
                 box.run("sh", "-c", "cat /proc/1/comm; test -c /dev/null && echo dev-null"), "sh\ndev-null\n")


@stage
def check_layers(box):
    return _said("`cat /etc/greeting; test -e /bin/vi` (the top layer wins, a whiteout hides)",
                 box.run("sh", "-c", "cat /etc/greeting; test -e /bin/vi && echo vi || echo no-vi"),
                 "from the top layer\nno-vi\n")


def _tree_digest(root: str) -> str:
    h = hashlib.sha256()
    for d, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for n in sorted(files + dirs):
            p = os.path.join(d, n)
            st = os.lstat(p)
            h.update(f"{os.path.relpath(p, root)} {st.st_mode} {st.st_size}\n".encode())
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()[:16]


@stage
def check_copy_on_write(box):
    layers = os.path.join(box.image, "layers")
    before = _tree_digest(layers)
    _said("`echo changed > /etc/greeting; rm /bin/ls; cat /etc/greeting`",
          box.run("sh", "-c", "echo changed > /etc/greeting; rm /bin/ls; echo new > /new; cat /etc/greeting"),
          "changed\n")
    return expect("the image's layers after the container wrote (digest of every file)", _tree_digest(layers), before)


@stage
def check_pids_limit(box):
    script = "i=0; while [ $i -lt 12 ]; do sleep 2 & i=$((i+1)); done; echo started"
    _said("12 background sleeps without a limit", box.run("sh", "-c", script), "started\n")
    code, out, err = box.run("sh", "-c", script, opts=["--pids-limit", "6"])
    if code == 0 or "fork" not in err:
        raise Mismatch("12 background sleeps with --pids-limit 6", f"exit {code}, stderr {err.strip()[-80:]!r}",
                       "a failing fork (sh: can't fork), exit status not 0")
    return "--pids-limit 6: the 6th fork fails (pids.max)"


@stage
def check_cleanup(box):
    code, out, err = box.run("cat", "/proc/self/cgroup")
    inside = [line for line in out.splitlines() if f"/{box.parent}/" in line]
    if code != 0 or not inside:
        raise Mismatch("/proc/self/cgroup inside the container", (out.strip() or err.strip())[-160:],
                       f"lines naming a cgroup under {box.parent}/ ($MYDOCKER_CGROUP_PARENT)")
    box.run("sh", "-c", "exit 1")
    return expect(f"cgroups left under {box.parent} after two runs", box.leftover_cgroups(), [])


@stage
def check_diff(box):
    keep = os.path.join(box.tmp, "kept")
    box.run("sh", "-c", "echo new > /etc/new; rm /bin/ls", opts=["--keep", keep])
    code, out, err = box.mydocker("diff", keep)
    lines = out.splitlines()
    want = ["A /etc/new", "C /etc", "D /bin/ls"]
    missing = [w for w in want if w not in lines]
    if code != 0 or missing:
        raise Mismatch("`mydocker diff DIR` after `echo new > /etc/new; rm /bin/ls`",
                       f"{lines[:8]} exit {code} {err.strip()[-80:]}", f"lines including {want}")
    return f"diff: {', '.join(want)}"


@stage
def check_layer(box):
    got = {p: box.mydocker("layer", box.image, p)[1].strip() for p in ("/etc/greeting", "/bin/sh", "/bin/vi")}
    return expect("`mydocker layer IMAGE PATH` for /etc/greeting, /bin/sh, /bin/vi", got,
                  {"/etc/greeting": "1", "/bin/sh": "0", "/bin/vi": "absent"})


CHECKS = [
    ("1 run: the command runs", check_runs),
    ("2 run: its exit code passes through", check_exit_code),
    ("3 namespaces: the command is pid 1", check_pid_1),
    ("4 namespaces: its own hostname", check_hostname),
    ("5 rootfs: the image's files, not the host's", check_root_filesystem),
    ("6 rootfs: /proc and /dev", check_proc_and_dev),
    ("7 layers: top wins, whiteouts hide", check_layers),
    ("8 copy-on-write: layers unchanged", check_copy_on_write),
    ("9 cgroups: --pids-limit", check_pids_limit),
    ("10 cgroups: its own, removed after", check_cleanup),
    ("11 diff: what the container changed", check_diff),
    ("12 layer: where a path comes from", check_layer),
]


def check(module):
    return run_checks(CHECKS, module, timeout=TIMEOUT)


if __name__ == "__main__":
    sys.exit(script_main(sys.argv[1:], check, REFERENCE, HERE / "skeleton.py", "the capstone",
                         needs_root=NEEDS_ROOT))
