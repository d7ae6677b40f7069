"""Lab 06's promise — a student's first attempt cannot damage the machine — proven without putting the
machine at risk: the naive solution (``tarfile.extractall``, no filter) meets the hostile corpus inside
a throwaway mount + pid namespace whose root is a scratch tmpfs. That root holds regular decoy files
where the corpus aims (/etc/shadow, /etc/passwd, /escaped) on the same file system as the extraction
directory, so that a hard link to a decoy would succeed. The only host paths visible in there are
bind mounts made read-only (the interpreter and this checkout); /proc is the new pid namespace's own.

* control, without the lab's sandbox: the decoys change (the attack works: the test environment is
  realistic);
* through the lab's sandbox (labs.sandboxed, as lab 06's CHECKS use it): every decoy keeps its inode,
  link count, owner, mode and content.
"""
from __future__ import annotations

import hashlib
import os
import stat
import sys
import tempfile

import pytest

from conftest import REPO, need, need_root
from minidocker import kernel as K
from minidocker import labs
from minidocker.images.hostile import CORPUS
from minidocker.rootfs import _run_in_new_namespaces

NAIVE = '''
import tarfile
from minidocker.images.layers import LayerError  # the checker catches refusals of this type

def apply_layer(layer, target_dir, **kwargs):
    with tarfile.open(fileobj=layer) as tar:
        tar.extractall(target_dir)    # Python 3.11: no extraction filter by default
'''

DECOYS = {"/etc/shadow": 0o640, "/etc/passwd": 0o644, "/escaped": 0o644}


def _identity(path: str):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return st.st_ino, st.st_nlink, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), digest


def _read_only_binds() -> list[str]:
    """Host directories the interpreter needs (stdlib, venv, this checkout), outermost only."""
    wanted = sorted({"/usr", os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix), REPO})
    return [p for p in wanted if not any(p != q and p.startswith(q + "/") for q in wanted)]


def _in_scratch_root(fn):
    """``fn()`` as pid 1 of new mount + pid namespaces whose root is a fresh tmpfs with decoys."""
    def inside():
        k = K.Linux()
        k.mount(None, "/", None, K.MS_REC | K.MS_PRIVATE)   # nothing below propagates to the host
        new = mountpoint
        k.mount("tmpfs", new, "tmpfs", K.MS_NOSUID | K.MS_NODEV, "mode=0755")
        for path in _read_only_binds():
            os.makedirs(new + path, mode=0o755, exist_ok=True)
            k.mount(path, new + path, None, K.MS_BIND | K.MS_REC)
            k.mount(None, new + path, None, K.MS_BIND | K.MS_REMOUNT | K.MS_RDONLY)
        for d, mode in (("etc", 0o755), ("tmp", 0o1777), ("proc", 0o555), (".old", 0o700)):
            os.makedirs(f"{new}/{d}", exist_ok=True)   # exists already when the checkout is under /tmp
            os.chmod(f"{new}/{d}", mode)
        for path, mode in DECOYS.items():
            with open(new + path, "w") as f:
                f.write(f"decoy {path}\n")
            os.chmod(new + path, mode)
        k.pivot_root(new, new + "/.old")
        os.chdir("/")
        k.umount2("/.old", K.MNT_DETACH)      # the host's tree is gone from this namespace
        os.rmdir("/.old")
        bound_in_tmp = {p.split("/")[2] for p in _read_only_binds() if p.startswith("/tmp/")}
        if os.path.exists(REPO + "/.old") or os.path.exists("/root/.ssh") or set(os.listdir("/tmp")) - bound_in_tmp:
            raise RuntimeError("the scratch root is not what it should be: refusing to go on")
        k.mount("proc", "/proc", "proc", K.MS_NOSUID | K.MS_NODEV | K.MS_NOEXEC)
        return fn()

    mountpoint = tempfile.mkdtemp(prefix="md-scratch-root-")
    try:
        return _run_in_new_namespaces(inside, flags=K.CLONE_NEWNS | K.CLONE_NEWPID, timeout=240)
    finally:
        os.rmdir(mountpoint)   # empty on the host: the tmpfs lived in the namespace only


@pytest.mark.privileged
@pytest.mark.parametrize("through_sandbox", [False, True], ids=["control-without-sandbox", "through-sandbox"])
def test_naive_extractall_cannot_touch_decoys_through_the_sandbox(through_sandbox, tmp_path):
    need_root()
    need(open("/proc/sys/user/max_user_namespaces").read().strip() != "0", "user namespaces")
    naive_path = tmp_path / "naive.py"
    naive_path.write_text(NAIVE)
    checker = labs.load_module(os.path.join(REPO, "labs", "06-images", "check.py"), "_lab06_check_for_sandbox_test")
    naive = labs.load_module(naive_path, "_lab06_naive_solution")
    try:
        def attack():
            before = {p: _identity(p) for p in DECOYS}
            outcomes = []
            for case in CORPUS:
                check = checker.hostile(case)
                if through_sandbox:
                    check = labs.sandboxed(check)
                try:
                    check(naive)
                    outcomes.append((case.name, "passed"))
                except BaseException as e:  # noqa: BLE001 — the naive solution fails many checks
                    outcomes.append((case.name, type(e).__name__))
            return before, {p: _identity(p) for p in DECOYS}, outcomes

        before, after, outcomes = _in_scratch_root(attack)
    finally:
        sys.modules.pop("_lab06_check_for_sandbox_test", None)
        sys.modules.pop("_lab06_naive_solution", None)

    assert all(before.values()), f"decoys missing before the run: {before}"
    changed = {p: (before[p], after[p]) for p in DECOYS if before[p] != after[p]}
    if through_sandbox:
        assert not changed, f"decoys changed through the sandbox (inode, nlink, uid, gid, mode, sha256): {changed}"
        assert len(outcomes) == len(CORPUS)
    else:
        # The control: the same run without the sandbox really does reach the decoys — through a hard
        # link to /etc/shadow, tarfile chmods the decoy itself (0640 -> 0644; the link went with the
        # check's work directory), and a write lands in /escaped — so the test above means something.
        assert "/etc/shadow" in changed and after["/etc/shadow"][4] == 0o644, (changed, outcomes)
        assert "/escaped" in changed, (changed, outcomes)
