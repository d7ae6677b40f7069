"""Running one lab check safely: in a child process of its own, with a time limit, and — for hostile
input — in a throwaway user + mount namespace. The other half of ``minidocker.labs`` (which finds
labs, loads solutions and prints reports); check.py files use what is here through that module.

What this teaches
-----------------
Student code can hang (a pipe never closed), crash the interpreter, leak a mount namespace or
``fork`` without ``os._exit``. So each check runs in a forked child (fork(2)) that leads a process
group of its own (setpgid(2)), so that everything it started can be killed with killpg(2). The parent
waits on a pidfd (pidfd_open(2)) with a deadline; at the deadline it sends SIGUSR1 to each process of
the group, and faulthandler's handler (registered in the child, inherited by every process it forks)
prints that process's Python stack: the report names the function that hung. Failures read
``WHAT: expected WANT, got GOT`` (``expect``, ``expect_raises``). The sandbox follows
user_namespaces(7) and mount_namespaces(7).
"""
from __future__ import annotations

import faulthandler
import importlib
import json
import os
import re
import select
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, NamedTuple


class Result(NamedTuple):
    """One line of a check: what was checked, whether it passed, and what was seen."""
    name: str
    ok: bool
    detail: str = ""

def _error_text(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".rstrip(": ")
    if isinstance(e, SyntaxError) and e.lineno:
        text = f"SyntaxError: {e.msg} ({Path(e.filename or '?').name} line {e.lineno})"
    return text


def _where(e: BaseException) -> str:
    """The innermost frame of a traceback as ``file:line in function``, to point at the culprit."""
    frames = traceback.extract_tb(e.__traceback__)
    if not frames:
        return ""
    f = frames[-1]
    return f" [{Path(f.filename).name}:{f.lineno} in {f.name}]"


# --- expected vs actual ------------------------------------------------------------------------

class Mismatch(AssertionError):
    """A check's failure in the one wording every lab uses: ``WHAT: expected WANT, got GOT``."""

    def __init__(self, what: str, got, want):
        self.what, self.got, self.want = what, got, want
        super().__init__(f"{what}: expected {want!r}, got {got!r}")


def expect(what: str, got, want) -> str:
    """Raise Mismatch unless ``got == want``; return ``"WHAT: GOT"`` for a passing line's detail."""
    if got != want:
        raise Mismatch(what, got, want)
    return f"{what}: {got!r}"


class _Shown(str):
    """A description, not a value: shown without quotes in a Mismatch."""

    def __repr__(self) -> str:
        return str(self)


def expect_raises(what: str, call: Callable, kinds=Exception, saying: str = "") -> BaseException:
    """``call()`` must raise one of ``kinds`` whose text contains ``saying``; return the exception.
    NotImplementedError passes through (it is reported as "not implemented yet")."""
    want = _Shown(f"{getattr(kinds, '__name__', kinds)}" + (f" saying {saying!r}" if saying else ""))
    try:
        got = call()
    except NotImplementedError:
        raise
    except kinds as e:
        if saying not in str(e):
            raise Mismatch(what, e, want) from None
        return e
    except Exception as e:  # noqa: BLE001 — the wrong kind of error is a mismatch too
        raise Mismatch(what, e, want) from None
    raise Mismatch(what, got, want)


def describe(e: BaseException) -> str:
    """One line for a failed check: Mismatch as is, TODO text for NotImplementedError, else the
    exception with the innermost frame it came from."""
    if isinstance(e, Mismatch):
        return str(e)
    if isinstance(e, NotImplementedError):
        return f"not implemented yet ({e})" if str(e) else "not implemented yet"
    remote = getattr(e, "type_name", None)   # an exception carried back from a forked child
    if remote:
        message = getattr(e, "message", "")
        if remote == "NotImplementedError":
            return f"not implemented yet ({message})"
        return message if remote == "Mismatch" else f"{remote}: {message}"
    return _error_text(e) + _where(e)


# --- running -----------------------------------------------------------------------------------

DEFAULT_TIMEOUT = 30.0   # seconds per check, unless check.py says TIMEOUT = ... or (name, fn, seconds)
_MAX_DETAIL = 4000       # a result must fit in the pipe's buffer: the child writes it before exiting


def _passed(ok) -> bool:
    """Only a boolean counts (numpy's bool_ too): a detail string in the ok position must not pass."""
    return (isinstance(ok, bool) or type(ok).__name__ == "bool_") and bool(ok)


def _outcome(fn: Callable, module) -> tuple[bool, str]:
    """Call one check: a returned string (or None) passes, (ok, detail) is taken as is, an exception
    fails with ``describe``."""
    try:
        out = fn(module)
    except (Exception, SystemExit) as e:
        return False, describe(e)
    if isinstance(out, tuple) and len(out) == 2:
        return _passed(out[0]), str(out[1])
    if isinstance(out, bool):
        return out, ""
    return True, "" if out is None else str(out)


def _where_it_hung(dump: str, prefer: str | None) -> str:
    """From a faulthandler dump (``File "x.py", line 57 in spawn``, most recent call first): the frame
    in the student's file if there is one, else the innermost one outside the standard library."""
    frames = re.findall(r'File "([^"]+)", line (\d+) in (\S+)', dump)
    stdlib = os.path.dirname(os.__file__)
    pick = next((f for f in frames if prefer and os.path.abspath(f[0]) == os.path.abspath(prefer)), None)
    pick = pick or next((f for f in frames if not f[0].startswith(stdlib) and f[0] != __file__), None)
    pick = pick or (frames[0] if frames else None)
    return f" in {pick[2]} ({Path(pick[0]).name} line {pick[1]})" if pick else ""


def _wait(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` s for child ``pid`` to exit (without reaping it); True if it did."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):   # no pidfd (Linux < 5.3): poll, the only way left
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                return True
            time.sleep(0.05)
        return False
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def _read_all(fd: int) -> str:
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def _await_clones(timeout: float = 2.0) -> None:
    """Give children that are copies of this very process (a fork that returned into the checker
    instead of calling os._exit) a moment to finish and report, so that the bug is always caught."""
    me = os.getpid()
    try:
        with open(f"/proc/{me}/task/{me}/children") as f:
            kids = f.read().split()
        with open("/proc/self/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return
    for kid in kids:
        try:
            with open(f"/proc/{kid}/cmdline", "rb") as f:
                if f.read() != cmdline:
                    continue   # it exec'd something: a real child, not a clone of the checker
            fd = os.pidfd_open(int(kid))
        except OSError:
            continue
        try:
            select.select([fd], [], [], timeout)
        finally:
            os.close(fd)


def _group_members(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` (proc(5): the 5th field of /proc/PID/stat)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                members.append(int(entry))
    return sorted(members)


def _collect_dumps(fd: int, quiet: float = 0.3, limit: float = 3.0) -> str:
    """Read what the processes of a check write after SIGUSR1, until they have been quiet a moment."""
    chunks, deadline = [], time.monotonic() + limit
    while time.monotonic() < deadline and select.select([fd], [], [], quiet)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def run_one(name: str, fn: Callable, module, timeout: float = DEFAULT_TIMEOUT,
            student_file: str | None = None) -> Result:
    """Run ``fn(module)`` in a forked child with a deadline; never raises, never hangs.

    The child leads a process group of its own, and ``faulthandler.register(SIGUSR1)`` makes it, and
    every process it forks (a signal handler survives fork(2)), print its Python stack to a pipe on
    SIGUSR1. At the deadline the parent sends SIGUSR1 to each process of the group in turn, reads
    where it was, then SIGKILLs the group. (faulthandler's own timer thread does not survive a fork: a forked
    process that re-arms it waits forever for a thread that is not there.)"""
    sys.stdout.flush()
    sys.stderr.flush()
    result_r, result_w = os.pipe()
    dump_r, dump_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run the check, write one JSON line, leave with os._exit
        me = os.getpid()
        code = 0
        try:
            os.close(result_r)
            os.close(dump_r)
            os.setpgid(0, 0)
            faulthandler.register(signal.SIGUSR1, file=dump_w, all_threads=True)
            ok, detail = _outcome(fn, module)
            if os.getpid() == me:
                _await_clones()
            stray = os.getpid() != me   # a fork in the student's code returned into the checker
            os.write(result_w, json.dumps({"ok": ok, "detail": detail[:_MAX_DETAIL], "stray": stray}).encode()
                     + b"\n")
        except BaseException:   # noqa: BLE001 — nothing may escape a forked child
            code = 70
        finally:
            os._exit(code)
    os.close(result_w)
    os.close(dump_w)
    try:
        os.setpgid(pid, pid)   # also from here: the group exists before any deadline
    except OSError:
        pass
    exited = _wait(pid, timeout)
    dump = ""
    if not exited:   # where is everyone? One at a time: faulthandler writes a line in pieces
        for member in _group_members(pid):
            try:
                os.kill(member, signal.SIGUSR1)
            except (ProcessLookupError, PermissionError):
                continue
            dump += _collect_dumps(dump_r)
    try:
        os.killpg(pid, signal.SIGKILL)   # whatever the check started and left behind
    except (ProcessLookupError, PermissionError):
        pass
    _, status = os.waitpid(pid, 0)
    raw = _read_all(result_r)
    os.close(dump_r)
    try:
        reports = [json.loads(line) for line in raw.splitlines() if line.strip()]
    except ValueError:
        reports = []
    if any(r.get("stray") for r in reports):
        return Result(name, False, "a forked child returned into the checker (the check ran twice): "
                                   "end every child with os._exit() in a finally: block")
    if reports:
        return Result(name, _passed(reports[0].get("ok")), str(reports[0].get("detail", "")))
    if not exited:
        return Result(name, False, f"timed out after {timeout:g} s{_where_it_hung(dump, student_file)}")
    why = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
           else f"exited with status {os.waitstatus_to_exitcode(status)}")
    return Result(name, False, f"the check's process {why} before reporting (os._exit or a crash in the code?)")


def run_checks(checks, module, timeout: float = DEFAULT_TIMEOUT) -> list[Result]:
    """Every ``(name, fn)`` or ``(name, fn, seconds)`` of a lab's CHECKS, each in its own child.
    ``$MINIDOCKER_LAB_TIMEOUT`` (seconds) caps every limit: for a class in a hurry, and for tests."""
    student = getattr(module, "__file__", None)
    cap = float(os.environ.get("MINIDOCKER_LAB_TIMEOUT") or "inf")
    out = []
    for entry in checks:
        name, fn, seconds = (*entry, timeout) if len(entry) == 2 else entry
        out.append(run_one(name, fn, module, min(seconds, cap), student))
    return out


def in_tempdir(fn: Callable, prefix: str = "md-lab-") -> Callable:
    """For CHECKS: ``fn(module, base)`` run with a fresh temporary directory ``base``, removed after."""
    import tempfile

    def run(module):
        base = tempfile.mkdtemp(prefix=prefix)
        try:
            return fn(module, base)
        finally:
            shutil.rmtree(base, ignore_errors=True)
    return run


# --- a sandbox for checks that feed the student's code hostile input ------------------------------

#: Root inside the sandbox is this unprivileged host uid/gid (and the 65535 after it): no host file
#: belongs to it, so the kernel's ordinary permission checks stop every write, chmod, chown or hard
#: link aimed at the host (/etc/shadow is root's, and root's is no longer us).
SANDBOX_ID = 1_600_000_000
_SANDBOX_ENV = "MINIDOCKER_LAB_SANDBOX"
#: Imported before entering: what a solution commonly imports lazily, inside a function.
_PRELOAD = ("tarfile", "gzip", "zlib", "hashlib", "posixpath", "stat", "errno", "shutil", "tempfile", "io",
            "json", "re", "pickle", "traceback")


def in_sandbox() -> bool:
    """True inside ``run_sandboxed``: mknod and the like are not permitted there."""
    return os.environ.get(_SANDBOX_ENV) == "1"


SANDBOX_PREFIX = "md-sandbox-"   # + the creating process's pid + "-": a dead creator's is swept


def _sweep_sandboxes(tmp: str) -> None:
    """Remove the (empty) scratch mount points of sandboxes whose creating process is gone: one
    killed at its deadline runs no ``finally``. rmdir(2) removes only an empty directory, so a
    directory someone still uses is never lost."""
    for name in os.listdir(tmp):
        pid = name[len(SANDBOX_PREFIX):].split("-", 1)[0] if name.startswith(SANDBOX_PREFIX) else ""
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            try:
                os.rmdir(os.path.join(tmp, name))
            except OSError:
                pass


def run_sandboxed(fn: Callable, *args, timeout: float = 60.0):
    """``fn(*args)`` in a throwaway user + mount namespace (user_namespaces(7), mount_namespaces(7)):

    * root inside maps to SANDBOX_ID outside, supplementary groups dropped: host files are read-only
      to it by plain Unix permissions, whatever the code tries;
    * the working and temporary directory is a fresh tmpfs mounted only in that namespace: nothing
      written there survives, and a hard link from it to a host file is EXDEV (another filesystem).

    Without root, the code already cannot touch root's files: it runs directly. As root, a host that
    cannot make the namespaces is refused rather than run unprotected."""
    import tempfile

    if os.geteuid() != 0:
        return fn(*args)
    for name in _PRELOAD:   # the mapped root may not reach the interpreter's files (/root/.pyenv)
        importlib.import_module(name)
    from . import kernel as K
    from .rootfs import ChildError, _run_in_new_namespaces

    _sweep_sandboxes(tempfile.gettempdir())
    scratch = tempfile.mkdtemp(prefix=f"{SANDBOX_PREFIX}{os.getpid()}-")
    os.chown(scratch, SANDBOX_ID, SANDBOX_ID)   # the mount point must be reachable by the mapped root
    os.chmod(scratch, 0o700)

    def inside():
        kernel = K.Linux()
        try:
            kernel.mount("tmpfs", scratch, "tmpfs", K.MS_NOSUID | K.MS_NODEV, "mode=0700,uid=0,gid=0")
            kernel.setgroups([])
            kernel.setresgid(0)
            kernel.setresuid(0)     # inside: 0; outside: SANDBOX_ID — from now on, no longer host root
            os.chdir(scratch)
        except OSError as e:
            raise RuntimeError(f"sandbox set-up failed: {e}") from None
        tempfile.tempdir = os.environ["TMPDIR"] = scratch
        os.environ[_SANDBOX_ENV] = "1"
        return fn(*args)

    ids = f"0 {SANDBOX_ID} 65536"
    try:
        return _run_in_new_namespaces(inside, flags=K.CLONE_NEWUSER | K.CLONE_NEWNS, timeout=timeout,
                                      uid_map=ids, gid_map=ids)
    except ChildError as e:
        if e.type_name in ("KernelError", "PermissionError") and "unshare" in e.message or \
                e.message.startswith("sandbox set-up failed"):
            raise RuntimeError(f"refusing to run hostile input as root without a sandbox: {e.message}") from None
        raise
    finally:
        os.rmdir(scratch)


def sandboxed(fn: Callable) -> Callable:
    """For CHECKS: the check ``fn(module)`` run through ``run_sandboxed``."""
    def run(module):
        return run_sandboxed(fn, module)
    run.__name__ = getattr(fn, "__name__", "sandboxed")
    return run
