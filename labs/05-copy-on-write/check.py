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

from minidocker.labs import expect, in_tempdir, run_checks  # noqa: E402

REFERENCE = "minidocker.cow"
Result = tuple[str, bool, str]
EXPECTED = ["C /a", "D /b", "C /c", "C /d", "A /d/new", "D /d/x", "A /n", "A /n/f", "A /n/g"]


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


# Each task's result is checked one behaviour at a time, so that progress shows: the changes of
# one kind (a modified file, a deletion, a replaced directory, a new directory, the order).
KINDS_OF_CHANGE = [
    ("modified files", ("/a", "/c")),
    ("a deleted file", ("/b",)),
    ("an opaque directory", ("/d",)),
    ("a new directory", ("/n",)),
]


def _only(changes: list[str], prefixes) -> list[str]:
    return [c for c in changes if any(c[2:] == p or c[2:].startswith(p + "/") for p in prefixes)]


def _kind_check(get_changes, prefixes):
    def run(m, base):
        got = get_changes(m, base)
        return expect(f"changes under {', '.join(prefixes)}", _only(got, prefixes), _only(EXPECTED, prefixes))
    return run


def _overlay_got(m, base) -> list[str]:
    lower, upper, _ = _overlay(base)
    return [str(c) for c in m.overlay_changes(upper, [lower])]


def _tree_got(m, base) -> list[str]:
    lower = _lower(base)
    new = os.path.join(base, "new")
    subprocess.run(["cp", "-a", lower, new], check=True)
    _mutate(new)
    return [str(c) for c in m.tree_changes(new, lower)]


def check_overlay_order(m, base) -> str:
    expect("the whole list, sorted by path", _overlay_got(m, base), EXPECTED)
    return " ".join(EXPECTED)


def check_tree_order(m, base) -> str:
    expect("the whole list, sorted by path", _tree_got(m, base), EXPECTED)
    lower = os.path.join(base, "lower")
    expect("a tree compared with itself", [str(c) for c in m.tree_changes(lower, lower)], [])
    return "same list as the overlay's; none for a tree compared with itself"


def _layer(m, base):
    lower, upper, merged = _overlay(base)
    changes = ref.overlay_changes(upper, [lower])   # the reference's list: task 3 on its own
    out = io.BytesIO()
    m.write_layer(changes, upper, out)
    return lower, upper, merged, changes, out.getvalue()


def check_layer_entries(m, base) -> str:
    *_, data = _layer(m, base)
    members = tarfile.open(fileobj=io.BytesIO(data)).getmembers()
    want = ["a", ".wh.b", "c", "d", "d/new", "d/.wh.x", "n", "n/f", "n/g"]
    expect("entries, in order", [x.name for x in members], want)
    expect("uname/gname of every entry", sorted({(x.uname, x.gname) for x in members}), [("", "")])
    expect("n/g", (members[-1].islnk(), members[-1].linkname), (True, "n/f"))
    return f"{len(want)} entries: whiteouts, hard link, empty owner names"


def check_layer_deterministic(m, base) -> str:
    _, upper, _, changes, data = _layer(m, base)
    again = io.BytesIO()
    m.write_layer(changes, upper, again)
    expect("the same layer written twice is byte-identical", again.getvalue() == data, True)
    return "two runs, the same bytes"


def check_layer_round_trip(m, base) -> str:
    lower, _, merged, _, data = _layer(m, base)
    target = os.path.join(base, "applied")
    subprocess.run(["cp", "-a", lower, target], check=True)
    apply_layer(io.BytesIO(data), target, whiteouts="copy")
    got, want = _tree(target), merged
    expect("paths that differ between lower + your layer and the overlay's merged view",
           sorted(p for p in set(got) | set(want) if got.get(p) != want.get(p)), [])
    return "lower + your layer == the overlay's merged view"


CHECKS = [(name, in_tempdir(fn, "md-lab05-")) for name, fn in [
    *[(f"1 overlay_changes: {what}", _kind_check(_overlay_got, paths)) for what, paths in KINDS_OF_CHANGE],
    ("1 overlay_changes: the whole list, sorted", check_overlay_order),
    *[(f"2 tree_changes: {what}", _kind_check(_tree_got, paths)) for what, paths in KINDS_OF_CHANGE],
    ("2 tree_changes: the whole list, sorted", check_tree_order),
    ("3 write_layer: entries", check_layer_entries),
    ("3 write_layer: deterministic", check_layer_deterministic),
    ("3 write_layer: round trip", check_layer_round_trip),
]]


def check(module) -> list[Result]:
    """Every check against ``module``, each in a child of its own with a timeout (minidocker.labs)."""
    return run_checks(CHECKS, module)


def main(argv: list[str]) -> int:
    from minidocker.labs import script_main
    return script_main(argv, check, REFERENCE, HERE / "skeleton.py", 'lab 05 (copy-on-write)', needs_root='overlay mounts')


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
