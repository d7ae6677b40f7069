"""Checker for lab 06 (images): your layer applier against the basics of OCI layers and the
hostile corpus of minidocker/images/hostile.py (30 archives).

Safety: a first attempt (``tarfile.extractall``) given "hardlink to /etc/shadow" as root would link
and chmod the real /etc/shadow. So every check runs in a throwaway user + mount namespace
(``labs.run_sandboxed``): root inside is an unprivileged uid outside, and the work directory is a
tmpfs of that namespace. Device nodes cannot be made there: that case is skipped.

    minidocker lab check 06                                # your copy (after `minidocker lab start 06`)
    .venv/bin/python labs/06-images/check.py               # checks labs/06-images/skeleton.py
    .venv/bin/python labs/06-images/check.py --reference   # checks minidocker.images.layers
    .venv/bin/python labs/06-images/check.py path/to/mine.py
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(HERE.parents[1]))

from minidocker.images.hostile import CORPUS, _tar, fingerprint, make_host  # noqa: E402
from minidocker.labs import expect, expect_raises, in_sandbox, run_checks, sandboxed, script_main  # noqa: E402

REFERENCE = "minidocker.images.layers"


def _workdir():
    return tempfile.mkdtemp(prefix="lab06-")


def _apply(module, layer: bytes, **kw):
    d = _workdir()
    target = os.path.join(d, "target")
    os.mkdir(target)
    return d, target, module.apply_layer(io.BytesIO(layer), target, **kw)


def check_clean_names(m):
    for name, want in [("/etc/./passwd", "etc/passwd"), ("a/b/../c/", "a/c"), ("./", ".")]:
        expect(f"clean_member_name({name!r})", m.clean_member_name(name), want)
    expect_raises("clean_member_name('a/../../x')", lambda: m.clean_member_name("a/../../x"), m.LayerError)
    return "normalises names, refuses a climb out"


def check_basic_layer(m):
    layer = _tar(("dir", "etc", None), ("file", "etc/motd", "hi", {"mode": 0o640}),
                 ("sym", "bin/sh", "/bin/busybox"), ("link", "etc/motd2", "etc/motd"))
    d, target, result = _apply(m, layer)
    try:
        motd = os.path.join(target, "etc", "motd")
        expect("etc/motd content", open(motd).read(), "hi")
        expect("etc/motd mode", oct(stat.S_IMODE(os.stat(motd).st_mode)), oct(0o640))
        expect("etc/motd mtime", int(os.stat(motd).st_mtime), 1_000_000_000)
        expect("bin/sh symlink target", os.readlink(os.path.join(target, "bin", "sh")), "/bin/busybox")
        expect("etc/motd2 is a hard link of etc/motd", os.stat(os.path.join(target, "etc", "motd2")).st_ino == os.stat(motd).st_ino, True)
        want = "sha256:" + hashlib.sha256(layer).hexdigest()
        expect("diff_id", result.diff_id, want)
        return "files, modes, mtimes, symlinks, hardlinks, DiffID"
    finally:
        shutil.rmtree(d)


def check_gzip(m):
    layer = _tar(("file", "z", "zipped"))
    d, target, result = _apply(m, gzip.compress(layer, mtime=0))
    try:
        expect("z content", open(os.path.join(target, "z")).read(), "zipped")
        expect("diff_id (of the uncompressed tar)", result.diff_id, "sha256:" + hashlib.sha256(layer).hexdigest())
        return "gzip detected; DiffID of the uncompressed tar"
    finally:
        shutil.rmtree(d)


def check_whiteouts(m):
    d = _workdir()
    try:
        target = os.path.join(d, "t")
        os.mkdir(target)
        m.apply_layer(io.BytesIO(_tar(("dir", "a", None), ("file", "a/x", "x"), ("file", "a/y", "y"),
                                      ("dir", "o", None), ("file", "o/old", "1"))), target)
        m.apply_layer(io.BytesIO(_tar(("file", "a/.wh.x", ""), ("file", "o/new", "2"),
                                      ("file", "o/.wh..wh..opq", ""))), target)
        expect("a/ after a/.wh.x", sorted(os.listdir(os.path.join(target, "a"))), ["y"])
        expect("o/ after an opaque whiteout", sorted(os.listdir(os.path.join(target, "o"))), ["new"])
        return "whiteout and opaque whiteout (copy semantics)"
    finally:
        shutil.rmtree(d)


def check_chain_ids(m):
    """Two layers applied in order: their DiffIDs (from your apply_layer) and the ChainIDs of the
    stacks they make, computed here from the spec's formula."""
    one, two = _tar(("file", "a", "1")), _tar(("file", "b", "2"))
    d = _workdir()
    try:
        target = os.path.join(d, "t")
        os.mkdir(target)
        diff_ids = [m.apply_layer(io.BytesIO(layer), target).diff_id for layer in (one, two)]
    finally:
        shutil.rmtree(d)
    want_diff = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in (one, two)]
    expect("the two layers' DiffIDs", diff_ids, want_diff)
    expect("chain_ids([])", m.chain_ids([]), [])
    expect("chain_ids([D0])", m.chain_ids(want_diff[:1]), want_diff[:1])
    chain1 = "sha256:" + hashlib.sha256(f"{want_diff[0]} {want_diff[1]}".encode()).hexdigest()
    expect("chain_ids([D0, D1])", m.chain_ids(want_diff), [want_diff[0], chain1])
    return "ChainID(L0) = DiffID(L0), ChainID(L0|L1) = sha256(ChainID(L0) + ' ' + DiffID(L1))"


def hostile(c):
    def run(m):
        if c.root_only and (os.geteuid() != 0 or in_sandbox()):
            return "skipped (needs real root; the checker runs in a user namespace)"
        d = _workdir()
        try:
            host = make_host(d)
            target = os.path.join(d, "target")
            os.mkdir(target)
            before = fingerprint(host)
            try:
                m.apply_layer(io.BytesIO(c.build(host)), target)
                outcome, msg = "contained", ""
            except m.LayerError as e:
                outcome, msg = "refused", str(e)
            after = fingerprint(host)
            changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            expect("entries of the host directory that changed", changed, [])
            expect("entries beside the target", sorted(os.listdir(d)), ["host", "target"])
            if c.expect == "refused":
                if outcome != "refused" or not re.search(c.match, msg):
                    raise AssertionError(f"LayerError message: expected one matching {c.match!r}, got {msg!r}")
                return f"refused: {msg[:70]}"
            expect("outcome (should succeed inside the target)", (outcome, msg[:80]), ("contained", ""))
            expect("the entry is where it belongs inside the target", bool(c.check(target, host)), True)
            return "contained"
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return run


CHECKS = [(name, sandboxed(fn)) for name, fn in [
    ("clean_member_name", check_clean_names),
    ("a plain layer", check_basic_layer),
    ("a gzip layer", check_gzip),
    ("whiteouts", check_whiteouts),
    ("chain_ids: naming a stack of layers", check_chain_ids),
    *[(f"hostile: {c.name}", hostile(c)) for c in CORPUS],
]]


def check(module):
    return run_checks(CHECKS, module)


if __name__ == "__main__":
    sys.exit(script_main(sys.argv[1:], check, REFERENCE, HERE / "skeleton.py", "lab 06 (images)"))
