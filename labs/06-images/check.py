"""Checker for lab 06 (images): your layer applier against the basics of OCI layers and the
hostile corpus of minidocker/images/hostile.py (30 archives). Runs as any user; device nodes and
ownership are only checked as root.

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
from minidocker.labs import case  # noqa: E402

REFERENCE = "minidocker.images.layers"


def _workdir():
    return tempfile.mkdtemp(prefix="lab06-")


def _apply(module, layer: bytes, **kw):
    d = _workdir()
    target = os.path.join(d, "target")
    os.mkdir(target)
    return d, target, module.apply_layer(io.BytesIO(layer), target, **kw)


def check_clean_names(m):
    ok = (m.clean_member_name("/etc/./passwd") == "etc/passwd" and m.clean_member_name("a/b/../c/")
          == "a/c" and m.clean_member_name("./") == ".")
    try:
        m.clean_member_name("a/../../x")
        return False, "'a/../../x' was accepted"
    except m.LayerError:
        pass
    return ok, "normalises names, refuses a climb out"


def check_basic_layer(m):
    layer = _tar(("dir", "etc", None), ("file", "etc/motd", "hi", {"mode": 0o640}),
                 ("sym", "bin/sh", "/bin/busybox"), ("link", "etc/motd2", "etc/motd"))
    d, target, result = _apply(m, layer)
    try:
        motd = os.path.join(target, "etc", "motd")
        assert open(motd).read() == "hi", "etc/motd content"
        assert stat.S_IMODE(os.stat(motd).st_mode) == 0o640, "etc/motd mode"
        assert int(os.stat(motd).st_mtime) == 1_000_000_000, "mtime kept"
        assert os.readlink(os.path.join(target, "bin", "sh")) == "/bin/busybox", "symlink kept as is"
        assert os.stat(os.path.join(target, "etc", "motd2")).st_ino == os.stat(motd).st_ino, "hardlink"
        want = "sha256:" + hashlib.sha256(layer).hexdigest()
        assert result.diff_id == want, f"diff_id {result.diff_id} != {want}"
        return True, "files, modes, mtimes, symlinks, hardlinks, DiffID"
    finally:
        shutil.rmtree(d)


def check_gzip(m):
    layer = _tar(("file", "z", "zipped"))
    d, target, result = _apply(m, gzip.compress(layer, mtime=0))
    try:
        assert open(os.path.join(target, "z")).read() == "zipped"
        assert result.diff_id == "sha256:" + hashlib.sha256(layer).hexdigest(), "DiffID is of the tar"
        return True, "gzip detected; DiffID of the uncompressed tar"
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
        assert sorted(os.listdir(os.path.join(target, "a"))) == ["y"], "a/.wh.x removes a/x"
        assert sorted(os.listdir(os.path.join(target, "o"))) == ["new"], "opaque keeps only o/new"
        return True, "whiteout and opaque whiteout (copy semantics)"
    finally:
        shutil.rmtree(d)


def hostile(m, c):
    def run():
        if c.root_only and os.geteuid() != 0:
            return True, "skipped (needs root)"
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
            assert fingerprint(host) == before, "the host directory changed!"
            assert sorted(os.listdir(d)) == ["host", "target"], "something was written beside the target"
            if c.expect == "refused":
                assert outcome == "refused", "should be refused with a LayerError"
                assert re.search(c.match, msg), f"message {msg!r} should match {c.match!r}"
                return True, f"refused: {msg[:70]}"
            assert outcome == "contained", f"should succeed inside the target, got: {msg[:80]}"
            assert c.check(target, host), "the entry is not where it belongs inside the target"
            return True, "contained"
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return run


def check(module):
    results = [case("clean_member_name", lambda: check_clean_names(module)),
               case("a plain layer", lambda: check_basic_layer(module)),
               case("a gzip layer", lambda: check_gzip(module)),
               case("whiteouts", lambda: check_whiteouts(module))]
    results += [case(f"hostile: {c.name}", hostile(module, c)) for c in CORPUS]
    return results



def main(argv: list[str]) -> int:
    from minidocker.labs import script_main
    return script_main(argv, check, REFERENCE, HERE / "skeleton.py", 'lab 06 (images: a safe layer applier)')


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
