"""Checks for lab 00 (the kernel-call layer): your flag_names, KernelError, Linux and Recorder against
what the kernel says. Real calls run in forked children that first enter new UTS and mount namespaces
(through the reference kernel layer), so the host's hostname and mounts never change.

    minidocker lab check 00                                  # your copy (after `minidocker lab start 00`)
    .venv/bin/python labs/00-kernel-calls/check.py [FILE]    # checks FILE (default: the skeleton)
    .venv/bin/python labs/00-kernel-calls/check.py --reference
"""
from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:
    sys.path.insert(0, str(HERE.parents[1]))

from minidocker import kernel as K  # noqa: E402  (the reference: sets up namespaces, names constants)
from minidocker.labs import expect, expect_raises, run_checks, script_main  # noqa: E402
from minidocker.rootfs import _fork_call  # noqa: E402  (run a function in a forked child, get its result)

REFERENCE = "minidocker.kernel"
NEEDS_ROOT = "sethostname and mount need CAP_SYS_ADMIN"
TIMEOUT = 20
MS = {K.MS_RDONLY: "MS_RDONLY", K.MS_BIND: "MS_BIND", K.MS_REC: "MS_REC", K.MS_PRIVATE: "MS_PRIVATE"}


def check_flag_names(m) -> str:
    expect("flag_names(MS_BIND|MS_REC)", m.flag_names(K.MS_BIND | K.MS_REC, MS), "MS_BIND|MS_REC")
    expect("flag_names(MS_REC|MS_PRIVATE|MS_RDONLY)", m.flag_names(K.MS_REC | K.MS_PRIVATE | K.MS_RDONLY, MS),
           "MS_RDONLY|MS_REC|MS_PRIVATE")
    expect("flag_names(MS_BIND|0x30)", m.flag_names(K.MS_BIND | 0x30, MS), "MS_BIND|0x30")
    expect("flag_names(0)", m.flag_names(0, MS), "0")
    return "named bits in order, the rest in hex, 0"


def check_kernel_error(m) -> str:
    e = m.KernelError(errno.EINVAL, "pivot_root", ("/x", "/x/.old"))
    expect("isinstance(KernelError(...), OSError)", isinstance(e, OSError), True)
    expect(".errno", e.errno, errno.EINVAL)
    expect("str()", str(e), "pivot_root('/x', '/x/.old') failed: EINVAL (Invalid argument)")
    return str(e)


def _in_new_namespaces(fn):
    """fn() in a forked child that first unshares UTS and mount namespaces (the reference's unshare)
    and makes every mount private: whatever fn does to hostname and mounts stays in the child."""
    def child():
        K.Linux().unshare(K.CLONE_NEWUTS | K.CLONE_NEWNS)
        K.Linux().mount(None, "/", None, K.MS_REC | K.MS_PRIVATE)
        return fn()
    return _fork_call(child, timeout=15)


def check_sethostname(m) -> str:
    def child():
        m.Linux().sethostname("lab-00")
        with open("/proc/sys/kernel/hostname") as f:
            return f.read().strip()
    host = os.uname().nodename
    expect("hostname inside after sethostname('lab-00')", _in_new_namespaces(child), "lab-00")
    expect("the host's hostname afterwards", os.uname().nodename, host)
    return "set in a new UTS namespace only"


def check_errors(m) -> str:
    def child():
        kernel = m.Linux()
        too_long = expect_raises("sethostname('x' * 100)", lambda: kernel.sethostname("x" * 100), m.KernelError)
        missing = expect_raises("mount('tmpfs', '/nonexistent/dir', 'tmpfs')",
                                lambda: kernel.mount("tmpfs", "/nonexistent/dir", "tmpfs"), m.KernelError)
        return too_long.errno, str(too_long), missing.errno
    too_long, text, missing = _in_new_namespaces(child)
    expect("errno of sethostname('x' * 100)", errno.errorcode.get(too_long), "EINVAL")
    expect("the message starts with the call", text.split(" failed:")[0], "sethostname(" + repr("x" * 100) + ")")
    expect("errno of a mount on a missing directory", errno.errorcode.get(missing), "ENOENT")
    return "EINVAL and ENOENT, as KernelError naming the call"


def check_unshare(m) -> str:
    def child():
        before = os.stat("/proc/self/ns/uts").st_ino
        m.Linux().unshare(K.CLONE_NEWUTS)
        return before, os.stat("/proc/self/ns/uts").st_ino
    before, after = _fork_call(child, timeout=15)
    expect("the UTS namespace changed after unshare(CLONE_NEWUTS)", before != after, True)
    return "a new UTS namespace"


def check_mount(m) -> str:
    def child():
        import tempfile
        d = tempfile.mkdtemp(prefix="lab00-")
        try:
            m.Linux().mount("lab00", d, "tmpfs", 0, "size=1m")
            with open("/proc/self/mountinfo") as f:
                found = [line.split(" - ")[1].split()[:2] for line in f if f" {d} " in line]
            m.Linux().mount(None, d, None, K.MS_REMOUNT | K.MS_BIND | K.MS_RDONLY)
            try:
                open(os.path.join(d, "x"), "w").close()
                writable = True
            except OSError:
                writable = False
            return found, writable
        finally:
            try:
                K.Linux().umount2(d, K.MNT_DETACH)
            except OSError:
                pass   # nothing was mounted
            os.rmdir(d)
    found, writable = _in_new_namespaces(child)
    expect("(fstype, source) of the new mount in mountinfo", found, [["tmpfs", "lab00"]])
    expect("writable after a read-only remount (flags as unsigned long, data None)", writable, False)
    return "tmpfs mounted, then remounted read-only"


def check_recorder(m) -> str:
    rec = m.Recorder()
    expect("rec.unshare(CLONE_NEWNS)", rec.unshare(K.CLONE_NEWNS), 0)
    rec.mount(None, "/", None, K.MS_REC | K.MS_PRIVATE)
    rec.sethostname(name="box")
    expect("rec.names()", rec.names(), ["unshare", "mount", "sethostname"])
    expect("the calls, as describe_call shows them", [str(c) for c in rec.calls],
           ["unshare(CLONE_NEWNS)", "mount(None, '/', None, MS_REC|MS_PRIVATE)", "sethostname('box')"])
    expect_raises("rec.no_such_call", lambda: rec.no_such_call, AttributeError)
    return "records in order, keyword values too; unknown names refused"


def check_recorder_fail(m) -> str:
    rec = m.Recorder(fail={"mount": errno.EPERM})
    e = expect_raises("the first rec.mount(...) with fail={'mount': EPERM}",
                      lambda: rec.mount("proc", "/proc", "proc"), m.KernelError)
    expect("its errno", e.errno, errno.EPERM)
    expect("the second rec.mount(...)", rec.mount("proc", "/proc", "proc"), 0)
    expect("rec.names()", rec.names(), ["mount", "mount"])
    return "fails once, recorded both times"


CHECKS = [
    ("1 flag_names", check_flag_names),
    ("2 KernelError", check_kernel_error),
    ("3 Linux.sethostname", check_sethostname),
    ("3 Linux: errors are KernelErrors", check_errors),
    ("3 Linux.unshare", check_unshare),
    ("3 Linux.mount", check_mount),
    ("4 Recorder: records", check_recorder),
    ("4 Recorder: fail injection", check_recorder_fail),
]


def check(module) -> list:
    return run_checks(CHECKS, module, timeout=TIMEOUT)


if __name__ == "__main__":
    sys.exit(script_main(sys.argv[1:], check, REFERENCE, HERE / "skeleton.py", "lab 00 (kernel calls)",
                         needs_root=NEEDS_ROOT))
