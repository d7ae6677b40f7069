"""The capstone's reference: ``mydocker run IMAGE CMD``, a container from chapters 1–5 and nothing else.

``labs/capstone/`` asks the student to write this glue around *their own* solutions of labs 01–05:
lab 01's ``spawn`` (namespaces), lab 02's ``setup_rootfs`` (mounts, /proc, /dev, pivot_root), lab 03's
``detect``, ``join`` and ``set_limits`` (cgroups), lab 04's ``overlay_options`` and ``lookup`` (which layer a
path comes from) and lab 05's ``overlay_changes`` (``mydocker diff``). ``load_labs`` finds those
solutions; this file is the glue done, run with minidocker's own modules (``MYDOCKER_LABS=reference``,
its default here). A black-box stage tester (``labs/capstone/check.py``) judges either by running it.

An IMAGE here is a directory ``IMAGE/layers/NN/`` (bottom layer first, overlay whiteouts as in chapter 4);
no registry, no JSON: the chapters 6–8 ideas are left out on purpose.

    mydocker run [--hostname H] [--pids-limit N] [--memory BYTES] [--keep DIR] IMAGE CMD [ARG...]
    mydocker diff DIR          # what the container kept in DIR changed: A/C/D lines (docker diff)
    mydocker layer IMAGE PATH  # which layer PATH comes from (0 = bottom), or "absent"
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

#: The lab solutions the capstone plugs together: name -> (lab folder, minidocker's module).
LABS = {"ns": ("01-namespaces", "minidocker.namespaces"), "rootfs": ("02-rootfs", "minidocker.rootfs"),
        "cg": ("03-cgroups", "minidocker.cgroups"), "union": ("04-union-mounts", "minidocker.unionfs"),
        "cow": ("05-copy-on-write", "minidocker.cow")}
NAMESPACES = ["mnt", "uts", "ipc", "pid", "net"]
CGROUP_PARENT = os.environ.get("MYDOCKER_CGROUP_PARENT", "mydocker")


def load_labs(default: str = "workspace") -> SimpleNamespace:
    """Your lab solutions, as ``labs.ns``, ``labs.rootfs``, ``labs.cg``, ``labs.union``, ``labs.cow``.

    ``$MYDOCKER_LABS`` (or ``default``) says where from: ``reference`` (minidocker's own modules), or a
    directory holding ``01-namespaces/skeleton.py`` ... (default: ``~/minidocker-labs``, where
    ``minidocker lab start NN`` put your copies)."""
    import importlib
    where = os.environ.get("MYDOCKER_LABS", default)
    if where == "reference":
        return SimpleNamespace(**{k: importlib.import_module(mod) for k, (_, mod) in LABS.items()})
    from minidocker.labs import load_module
    base = Path(os.path.expanduser("~/minidocker-labs") if where == "workspace" else where)
    found = {}
    for k, (folder, _) in LABS.items():
        path = base / folder / "skeleton.py"
        if not path.is_file():
            raise SystemExit(f"mydocker: no solution of lab {folder[:2]} at {path}: "
                             f"`minidocker lab start {folder[:2]}` and solve it (or MYDOCKER_LABS=reference)")
        found[k] = load_module(path, f"mydocker_lab_{k}")
    return SimpleNamespace(**found)


def layers_of(image: str) -> list[str]:
    """IMAGE/layers/NN, bottom first."""
    base = os.path.join(image, "layers")
    if not os.path.isdir(base):
        raise SystemExit(f"mydocker: {image}: not an image (no layers/ directory)")
    return [os.path.join(base, n) for n in sorted(os.listdir(base))]


# --------------------------------------------------------------------------- the glue (the exercise)
def run(a, labs) -> int:
    """Prepare the state directory and the cgroup, start pid 1 (``init`` below) in new namespaces,
    move it into the cgroup before it goes on, wait, clean up. Returns the command's exit code."""
    lowers = layers_of(a.image)
    state = a.keep or tempfile.mkdtemp(prefix="mydocker-")
    for d in ("upper", "work", "rootfs"):
        os.makedirs(os.path.join(state, d), exist_ok=True)
    config = {"lowers": lowers, "state": state, "hostname": a.hostname, "argv": a.command}
    with open(os.path.join(state, "config.json"), "w") as f:
        json.dump(config, f)

    layout = labs.cg.detect()
    cgroup = f"{CGROUP_PARENT}/{os.path.basename(state)}"    # under a parent of our own
    go_r, go_w = os.pipe()     # pid 1 waits on this until it is in its cgroup
    os.set_inheritable(go_r, True)
    proc = labs.ns.spawn([sys.executable, os.path.abspath(__file__), "init", state, str(go_r)], NAMESPACES,
                         pass_fds=(go_r,))
    os.close(go_r)
    dirs = []
    try:
        labs.cg.join(layout, cgroup, proc.pid)
        dirs = cgroup_dirs(layout, cgroup)
        labs.cg.set_limits(layout, cgroup, memory=a.memory or 0, pids=a.pids_limit or 0)
        os.write(go_w, b"1")
        os.close(go_w)
        return proc.wait()
    finally:
        for d in dirs + [os.path.dirname(d) for d in dirs]:   # ours, then the parent if now empty
            try:
                os.rmdir(d)
            except OSError:
                pass
        if not a.keep:
            shutil.rmtree(state, ignore_errors=True)


def cgroup_dirs(layout, cgroup: str) -> list[str]:
    roots = {*layout.v1.values(), *([layout.unified] if layout.unified else [])}
    return [os.path.join(r, cgroup) for r in sorted(roots) if os.path.isdir(os.path.join(r, cgroup))]


def init(state: str, go_fd: int, labs) -> None:
    """pid 1: wait to be in the cgroup, hostname, the overlay as the root filesystem, exec."""
    from minidocker.kernel import Linux
    os.read(go_fd, 1)
    os.close(go_fd)
    with open(os.path.join(state, "config.json")) as f:
        c = json.load(f)
    k = Linux()
    k.sethostname(c["hostname"])
    options = labs.union.overlay_options(list(reversed(c["lowers"])), f"{state}/upper", f"{state}/work")
    rootfs = os.path.join(state, "rootfs")
    labs.rootfs.setup_rootfs(k, labs.rootfs.RootfsSpec(
        rootfs, mounts=[labs.rootfs.Mount("overlay", rootfs, "overlay", 0, options)]))
    os.chdir("/")
    try:
        os.execvp(c["argv"][0], c["argv"])
    except OSError as e:
        print(f"mydocker: {c['argv'][0]}: {e.strerror}", file=sys.stderr)
        os._exit(127)


def diff(state: str, labs) -> int:
    with open(os.path.join(state, "config.json")) as f:
        c = json.load(f)
    for change in labs.cow.overlay_changes(os.path.join(state, "upper"), list(reversed(c["lowers"]))):
        print(f"{change.kind} {change.path}")
    return 0


def layer(image: str, path: str, labs) -> int:
    lowers = layers_of(image)
    found = labs.union.lookup(list(reversed(lowers)), path)   # lookup wants the top layer first
    print("absent" if found is None else len(lowers) - 1 - found[0])
    return 0


# ------------------------------------------------------------------------------------------- command
def parse(argv: list[str]):
    p = argparse.ArgumentParser(prog="mydocker")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--hostname", default="mydocker")
    r.add_argument("--pids-limit", type=int)
    r.add_argument("--memory", type=int, help="bytes")
    r.add_argument("--keep", metavar="DIR", help="keep the container's state (upper layer) in DIR")
    r.add_argument("image")
    r.add_argument("command", nargs=argparse.REMAINDER)
    i = sub.add_parser("init")
    i.add_argument("state")
    i.add_argument("fd", type=int)
    d = sub.add_parser("diff")
    d.add_argument("state")
    lay = sub.add_parser("layer")
    lay.add_argument("image")
    lay.add_argument("path")
    a = p.parse_args(argv)
    if a.cmd == "run" and not a.command:
        p.error("run: a command is needed")
    if a.cmd == "run" and a.keep:
        a.keep = os.path.abspath(a.keep)
    return a


def main(argv: list[str], default_labs: str = "reference", glue=None) -> int:
    """``glue``: the module whose run/init/diff/layer to use (the student's file passes itself)."""
    a = parse(argv)
    g = glue or sys.modules[__name__]
    labs = load_labs(default_labs)
    if a.cmd == "run":
        return g.run(a, labs)
    if a.cmd == "init":
        g.init(a.state, a.fd, labs)
        return 127
    if a.cmd == "diff":
        return g.diff(a.state, labs)
    return g.layer(a.image, a.path, labs)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
