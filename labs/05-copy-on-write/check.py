"""Checker for lab 05 (copy-on-write). Makes the same changes through a real overlay mount (in a
forked child, in a throw-away mount namespace) and in a plain copied tree, then checks your diff
and layer writer against them.

    .venv/bin/python labs/05-copy-on-write/check.py               # checks skeleton.py
    .venv/bin/python labs/05-copy-on-write/check.py --reference   # checks minidocker.cow
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:
    sys.path.insert(0, str(HERE.parents[1]))

from minidocker import cow as ref  # noqa: E402
from minidocker import unionfs  # noqa: E402
from minidocker.images.layers import apply_layer  # noqa: E402
from minidocker.rootfs import Mount  # noqa: E402

REFERENCE = "minidocker.cow"
Result = tuple[str, bool, str]
EXPECTED = ["C /a", "D /b", "C /c", "C /d", "A /d/new", "D /d/x", "A /n", "A /n/f", "A /n/g"]


def _fail(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def _lower(base: str) -> str:
    lower = os.path.join(base, "lower")
    os.makedirs(f"{lower}/d")
    for name in ("a", "b", "c", "d/x"):
        with open(f"{lower}/{name}", "w") as f:
            f.write(name)
    for p in ("a", "b", "c", "d/x", "d", ""):
        os.utime(f"{lower}/{p}", (1_000_000_000, 1_000_000_000))
    return lower


def _mutate(t: str) -> None:
    with open(f"{t}/a", "a") as f:
        f.write("more")
    os.unlink(f"{t}/b")
    os.chmod(f"{t}/c", 0o600)
    shutil.rmtree(f"{t}/d")
    os.mkdir(f"{t}/d")
    open(f"{t}/d/new", "w").close()
    os.mkdir(f"{t}/n")
    with open(f"{t}/n/f", "w") as f:
        f.write("f")
    os.link(f"{t}/n/f", f"{t}/n/g")


def _tree(t: str) -> dict:
    out = {}
    for d, dn, fn in os.walk(t):
        for n in dn + fn:
            p = os.path.join(d, n)
            st = os.lstat(p)
            data = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else b""
            out[os.path.relpath(p, t)] = (stat.filemode(st.st_mode), st.st_uid, hashlib.sha256(data).hexdigest())
    return out


def _overlay(base: str):
    lower = _lower(base)
    upper, work, merged = (os.path.join(base, n) for n in ("upper", "work", "merged"))
    for d in (upper, work, merged):
        os.makedirs(d)
    mounts = [Mount("overlay", "", "overlay", 0,
                    f"lowerdir={lower},upperdir={upper},workdir={work},index=off,redirect_dir=off,metacopy=off")]

    def go(t):
        _mutate(t)
        return _tree(t)

    return lower, upper, unionfs.run_mounted(mounts, merged, go)


def check_overlay_changes(m, base) -> str:
    lower, upper, _ = _overlay(base)
    got = [str(c) for c in m.overlay_changes(upper, [lower])]
    _fail(got == EXPECTED, f"got {got}, want {EXPECTED}")
    return " ".join(got)


def check_tree_changes(m, base) -> str:
    lower = _lower(base)
    new = os.path.join(base, "new")
    subprocess.run(["cp", "-a", lower, new], check=True)
    _mutate(new)
    got = [str(c) for c in m.tree_changes(new, lower)]
    _fail(got == EXPECTED, f"got {got}, want {EXPECTED}")
    _fail([str(c) for c in m.tree_changes(lower, lower)] == [], "a tree compared with itself has changes")
    return "same list as the overlay's"


def check_write_layer(m, base) -> str:
    lower, upper, merged = _overlay(base)
    changes = ref.overlay_changes(upper, [lower])
    one, two = io.BytesIO(), io.BytesIO()
    m.write_layer(changes, upper, one)
    m.write_layer(changes, upper, two)
    _fail(one.getvalue() == two.getvalue(), "two runs gave different bytes: not deterministic")
    members = tarfile.open(fileobj=io.BytesIO(one.getvalue())).getmembers()
    names = [x.name for x in members]
    want = ["a", ".wh.b", "c", "d", "d/new", "d/.wh.x", "n", "n/f", "n/g"]
    _fail(names == want, f"entries {names}, want {want}")
    _fail(all(x.uname == "" and x.gname == "" for x in members), "uname/gname must be empty")
    _fail(members[-1].islnk() and members[-1].linkname == "n/f", "n/g should be a hard link to n/f")
    # Apply it on a copy of the lower layer: the result must be the merged tree.
    target = os.path.join(base, "applied")
    subprocess.run(["cp", "-a", lower, target], check=True)
    apply_layer(io.BytesIO(one.getvalue()), target, whiteouts="copy")
    _fail(_tree(target) == merged, "lower + your layer differs from the overlay's merged view")
    return f"{len(names)} entries, deterministic, round trip ok"


CHECKS = [
    ("1 overlay_changes", check_overlay_changes),
    ("2 tree_changes", check_tree_changes),
    ("3 write_layer", check_write_layer),
]


def check(module) -> list[Result]:
    results: list[Result] = []
    for name, fn in CHECKS:
        base = tempfile.mkdtemp(prefix="md-lab05-")
        try:
            results.append((name, True, fn(module, base)))
        except Exception as e:  # noqa: BLE001 - a failed check, reported in the table
            results.append((name, False, f"{type(e).__name__}: {e}"))
        finally:
            shutil.rmtree(base, ignore_errors=True)
    return results



def main(argv: list[str]) -> int:
    from minidocker.labs import script_main
    return script_main(argv, check, REFERENCE, HERE / "skeleton.py", 'lab 05 (copy-on-write)', needs_root='overlay mounts')


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
