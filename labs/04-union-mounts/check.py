"""Checker for lab 04 (union mounts). Builds small layer directories (with real whiteouts and opaque
directories: root needed), asks your functions about them, and mounts real overlays in forked
children inside throw-away mount namespaces.

    .venv/bin/python labs/04-union-mounts/check.py               # checks skeleton.py
    .venv/bin/python labs/04-union-mounts/check.py --reference   # checks minidocker.unionfs
"""
from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:
    sys.path.insert(0, str(HERE.parents[1]))

from minidocker import kernel as K  # noqa: E402
from minidocker import unionfs as ref  # noqa: E402
from minidocker.rootfs import Mount  # noqa: E402

from minidocker.labs import expect, expect_raises, in_tempdir, run_checks  # noqa: E402

REFERENCE = "minidocker.unionfs"
Result = tuple[str, bool, str]


def _fail(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def _stack(base: str) -> list[str]:
    """top: whiteout 'a', opaque 'd' with 'y', file 'e' over a directory, 'only-top'
    middle: 'b' (hides bottom's b), whiteout 'gone' of something that never existed
    bottom: a, b, c, d/x, e/f"""
    top, mid, bot = (os.path.join(base, n) for n in ("top", "mid", "bot"))
    for d in (top, mid, bot):
        os.makedirs(d)
    os.mknod(f"{top}/a", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    os.mkdir(f"{top}/d")
    os.setxattr(f"{top}/d", ref.OPAQUE_XATTR, b"y")
    open(f"{top}/d/y", "w").close()
    open(f"{top}/e", "w").close()
    open(f"{top}/only-top", "w").close()
    open(f"{mid}/b", "w").write("mid")
    os.mknod(f"{mid}/gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    for name in ("a", "b", "c"):
        open(f"{bot}/{name}", "w").write("bottom")
    os.makedirs(f"{bot}/d")
    open(f"{bot}/d/x", "w").close()
    os.makedirs(f"{bot}/e")
    open(f"{bot}/e/f", "w").close()
    return [top, mid, bot]


def check_is_whiteout(m, base) -> str:
    layers = _stack(base)
    expect("is_whiteout(a 0:0 char device)", m.is_whiteout(os.lstat(f"{layers[0]}/a")), True)
    expect("is_whiteout(/dev/null, 1:3)", m.is_whiteout(os.lstat("/dev/null")), False)
    expect("is_whiteout(a regular file)", m.is_whiteout(os.lstat(f"{layers[2]}/a")), False)
    return "0:0 yes, 1:3 no, file no"


def check_lookup(m, base) -> str:
    layers = _stack(base)
    want = {"/a": None, "/b": 1, "/c": 2, "/d": 0, "/d/x": None, "/d/y": 0, "/e": 0, "/e/f": None,
            "/only-top": 0, "/gone": None, "/nothing": None, "/": 0}
    for path, index in want.items():
        got = m.lookup(layers, path)
        expect(f"layer of lookup({path!r})", got[0] if got else None, index)
    return f"{len(want)} paths: whiteouts, opaque dir, a file over a directory"


def check_merged_listdir(m, base) -> str:
    layers = _stack(base)
    root = m.merged_listdir(layers, "/")
    expect("merged_listdir('/')", root, {"b": 1, "c": 2, "d": 0, "e": 0, "only-top": 0})
    expect("merged_listdir('/d') (opaque: only the top layer's y)", m.merged_listdir(layers, "/d"), {"y": 0})
    return "matches what the overlay mount would show"


def _forked_ns(fn):
    """Run fn() in a forked child in a private mount namespace; return its result or raise."""
    return ref.run_mounted([], "/", lambda _t: fn())


def check_mount_all_recorded(m, base) -> str:
    rec = K.Recorder()
    m.mount_all([Mount("/src", "", None, K.MS_BIND | K.MS_RDONLY, None, cwd="/somewhere")], "/t", rec)
    calls = [(c.name, c.args) for c in rec.calls]
    _fail(calls and calls[0] == ("chdir", ("/somewhere",)), f"first call should be chdir(cwd): {calls}")
    mounts = [a for n, a in calls if n == "mount"]
    expect("mount calls for a read-only bind", len(mounts), 2)
    _fail(mounts[0][:2] == ("/src", "/t") and mounts[0][3] & K.MS_BIND, f"first: the bind, got {mounts[0]}")
    _fail(mounts[1][3] & K.MS_REMOUNT and mounts[1][3] & K.MS_RDONLY, f"second: remount ro, got {mounts[1]}")
    return "chdir(cwd), bind, remount read-only"


def check_mount_all_real(m, base) -> str:
    layers = _stack(base)
    up, work, target = (os.path.join(base, n) for n in ("up", "work", "merged"))
    for d in (up, work, target):
        os.makedirs(d)
    rel = ":".join(os.path.relpath(p, base) for p in layers)
    mounts = [Mount("overlay", "", "overlay", 0, f"lowerdir={rel},upperdir=up,workdir=work", cwd=base)]
    cwd = os.getcwd()

    def inside():
        m.mount_all(mounts, target, K.Linux())
        return sorted(os.listdir(target)), os.getcwd()

    listing, after = _forked_ns(inside)
    expect("the merged overlay's listing", listing, ["b", "c", "d", "e", "only-top"])
    expect("working directory afterwards (restored)", after, cwd)
    return "overlay with relative lowerdirs mounted: " + " ".join(listing)


def check_overlay_options_string(m, base) -> str:
    expect("overlay_options(['/l/top', '/l/bottom'], '/u', '/w')",
           m.overlay_options(["/l/top", "/l/bottom"], "/u", "/w"), "lowerdir=/l/top:/l/bottom,upperdir=/u,workdir=/w")
    expect("overlay_options(['/l/top', '/l/bottom']) (read-only: no upper)",
           m.overlay_options(["/l/top", "/l/bottom"]), "lowerdir=/l/top:/l/bottom")
    expect_raises("overlay_options([])", lambda: m.overlay_options([]), ValueError)
    expect_raises("overlay_options(['/l'], '/u') (an upper without a workdir)",
                  lambda: m.overlay_options(["/l"], "/u"), ValueError)
    return "lowerdir top first, upperdir + workdir, errors"


def check_overlay_options_mount(m, base) -> str:
    """The student's string, mounted for real: layer directories whose names hold ':' (the lowerdir
    separator) must be escaped, top first must win, writes must land in the upper."""
    layers = _stack(base)
    odd = [os.path.join(base, f"layer:{i}") for i in range(len(layers))]
    for src, dst in zip(layers, odd):
        os.rename(src, dst)
    up, work, target = (os.path.join(base, n) for n in ("up", "work", "merged"))
    for d in (up, work, target):
        os.makedirs(d)
    data = m.overlay_options(odd, up, work)

    def inside():
        K.Linux().mount("overlay", target, "overlay", 0, data)
        with open(os.path.join(target, "new"), "w") as f:
            f.write("x")
        return sorted(os.listdir(target))

    try:
        listing = _forked_ns(inside)
    except Exception as e:  # noqa: BLE001 — the kernel's refusal is the student's answer here
        raise AssertionError(f"mount -t overlay -o {data!r}: expected it to mount, got {e}") from None
    expect("the merged listing", listing, ["b", "c", "d", "e", "new", "only-top"])
    expect("the upper directory after writing /new", sorted(os.listdir(up)), ["new"])
    return "mounted with ':' in layer names; /new landed in the upper"


CHECKS = [(name, in_tempdir(fn, "md-lab04-")) for name, fn in [
    ("1 is_whiteout", check_is_whiteout),
    ("2 lookup", check_lookup),
    ("3 merged_listdir", check_merged_listdir),
    ("4 mount_all: recorded", check_mount_all_recorded),
    ("4 mount_all: a real overlay", check_mount_all_real),
    ("5 overlay_options: the string", check_overlay_options_string),
    ("5 overlay_options: mounted for real", check_overlay_options_mount),
]]


def check(module) -> list[Result]:
    """Every check against ``module``, each in a child of its own with a timeout (minidocker.labs)."""
    return run_checks(CHECKS, module)


def main(argv: list[str]) -> int:
    from minidocker.labs import script_main
    return script_main(argv, check, REFERENCE, HERE / "skeleton.py", 'lab 04 (union mounts)', needs_root='whiteout device nodes, trusted.* xattrs, overlay mounts')


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
