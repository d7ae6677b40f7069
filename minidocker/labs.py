"""The lab runner: ``minidocker lab list | start NN | check NN | hint NN [K]``.

What this teaches
-----------------
Each chapter has a lab in ``labs/NN-topic/`` (conventions: docs/COURSE.md, section 2):

* ``README.md``   what to build, what is checked, and a ``## Hints`` list;
* ``skeleton.py`` the same functions as the real chapter module, with bodies that
  ``raise NotImplementedError("TODO ...")``;
* ``check.py``    ``REFERENCE = "minidocker.namespaces"`` (the real module that solves the lab),
  ``CHECKS = [(name, fn[, timeout])]`` and ``check(module) -> list[(name, ok, detail)]``.

The student never edits the repository: ``lab start NN`` copies the lab into a workspace of their own
(``~/minidocker-labs/NN-topic``) and ``lab check NN`` checks that copy.

A checker is only trustworthy if it *fails* on the untouched skeleton and *passes* on the reference;
the test suite proves both for every lab. Student code can hang (a pipe never closed), crash the
interpreter, leak a mount namespace or ``fork`` without ``os._exit``: so each check runs in a forked
child of its own (``fork(2)``; ``setpgid(2)`` so that everything it started can be killed with
``killpg``), the parent waits on a pidfd (``pidfd_open(2)``) with a deadline, and at the deadline
sends SIGUSR1 to each process of the group: ``faulthandler``'s handler in each Python process prints
where it was stuck, and the line names what hung. Failures say ``WHAT: expected WANT, got GOT`` (``expect``).
"""
from __future__ import annotations

import faulthandler
import importlib
import importlib.util
import itertools
import json
import os
import re
import select
import shutil
import signal
import sys
import textwrap
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, NamedTuple

LAB_DIR_RE = re.compile(r"^(\d\d)-([A-Za-z0-9_.-]+)$")
_runs = itertools.count(1)  # unique module names per run
REFERENCE_RE = re.compile(r"""^REFERENCE\s*=\s*["']([\w.]+)["']""", re.M)


class Result(NamedTuple):
    """One line of a check: what was checked, whether it passed, and what was seen."""
    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Lab:
    number: str          # "01"
    topic: str           # "namespaces"
    path: Path           # .../labs/01-namespaces

    @property
    def readme(self) -> Path:
        return self.path / "README.md"

    @property
    def skeleton(self) -> Path:
        return self.path / "skeleton.py"

    @property
    def checker(self) -> Path:
        return self.path / "check.py"

    @property
    def reference(self) -> str | None:
        """The dotted name in check.py's ``REFERENCE = "..."``, read without running check.py."""
        try:
            m = REFERENCE_RE.search(self.checker.read_text())
        except OSError:
            return None
        return m.group(1) if m else None

    @property
    def title(self) -> str:
        """The README's first heading, or the topic."""
        try:
            for line in self.readme.read_text().splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
        except OSError:
            pass
        return self.topic


# --- finding and loading -----------------------------------------------------------------------

def labs_root(root: str | os.PathLike | None = None) -> Path:
    """``root``, else ``$MINIDOCKER_LABS``, else the repository's ``labs/`` beside the package."""
    if root is not None:
        return Path(root)
    if os.environ.get("MINIDOCKER_LABS"):
        return Path(os.environ["MINIDOCKER_LABS"])
    import minidocker
    return Path(minidocker.__file__).resolve().parents[1] / "labs"


def find_labs(root: str | os.PathLike | None = None) -> list[Lab]:
    """Every ``NN-topic`` folder with a check.py under the labs root, in order."""
    base = labs_root(root)
    if not base.is_dir():
        return []
    labs = []
    for d in sorted(base.iterdir()):
        m = LAB_DIR_RE.match(d.name)
        if m and d.is_dir() and (d / "check.py").is_file():
            labs.append(Lab(number=m.group(1), topic=m.group(2), path=d))
    return labs


def get_lab(which: str, root: str | os.PathLike | None = None) -> Lab:
    """A lab by number ("1", "01"), folder name ("01-namespaces") or topic ("namespaces")."""
    labs = find_labs(root)
    for lab in labs:
        if which in (lab.number, lab.path.name, lab.topic) or (which.isdigit() and int(which) == int(lab.number)):
            return lab
    have = ", ".join(lab.path.name for lab in labs) or f"none (looked in {labs_root(root)})"
    raise LookupError(f"no lab {which!r}; labs here: {have}")


def load_module(path: str | os.PathLike, name: str) -> ModuleType:
    """Import the Python file at ``path`` as a module called ``name`` (registered in sys.modules while
    it runs, so dataclasses and pickling inside it work). Errors propagate: SyntaxError, ImportError..."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


@contextmanager
def _on_sys_path(directory: Path):
    """Let check.py and skeleton.py import helpers that sit beside them."""
    entry = str(directory)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        try:
            sys.path.remove(entry)
        except ValueError:
            pass


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

    scratch = tempfile.mkdtemp(prefix="md-sandbox-")
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


def _normalize(raw) -> list[Result]:
    """Accept what check() returned if it is a list of (name, ok, detail); flag anything else."""
    if not isinstance(raw, (list, tuple)):
        return [Result("check() result", False, f"check() returned {type(raw).__name__}, not a list")]
    if not raw:
        return [Result("check() result", False, "check() returned no results")]
    out = []
    for item in raw:
        if isinstance(item, (tuple, list)) and len(item) in (2, 3):
            name, ok, detail = (*item, "") if len(item) == 2 else item
            out.append(Result(str(name), _passed(ok), str(detail)))
        else:
            out.append(Result(repr(item)[:40], False, "not a (name, ok, detail) tuple"))
    return out


def _load_target(lab: Lab, target: str | os.PathLike, tag: str) -> ModuleType:
    if str(target) == "skeleton":
        return load_module(lab.skeleton, f"_minidocker_lab{lab.number}_skeleton_{tag}")
    if str(target) == "reference":
        ref = lab.reference
        if not ref:
            raise LookupError(f"{lab.checker} defines no REFERENCE = \"minidocker.xxx\"")
        return importlib.import_module(ref)
    return load_module(target, f"_minidocker_lab{lab.number}_file_{tag}")


def run_check(lab: Lab, target: str | os.PathLike = "skeleton") -> list[Result]:
    """Run ``lab``'s check.py against ``target``: "skeleton" (the repository's labs/NN/skeleton.py),
    "reference" (the real minidocker module), or a path to any Python file (the student's copy).
    Never raises (except on KeyboardInterrupt): every failure is a Result with ok=False."""
    tag = str(next(_runs))
    loaded: list[str] = []
    with _on_sys_path(lab.path):
        try:
            return _run_check(lab, target, tag, loaded)
        finally:
            for name in loaded:  # a fresh load next time sees the student's latest edits
                sys.modules.pop(name, None)


def _run_check(lab: Lab, target, tag: str, loaded: list[str]) -> list[Result]:
    try:
        checker = load_module(lab.checker, f"_minidocker_lab{lab.number}_check_{tag}")
        loaded.append(checker.__name__)
    except (Exception, SystemExit) as e:
        return [Result("load check.py", False, _error_text(e))]
    checks = getattr(checker, "CHECKS", None)
    if not checks and not callable(getattr(checker, "check", None)):
        return [Result("load check.py", False, f"{lab.checker} defines no CHECKS and no check(module)")]
    try:
        module = _load_target(lab, target, tag)
        if module.__name__.startswith("_minidocker_lab"):
            loaded.append(module.__name__)
    except (Exception, SystemExit) as e:
        return [Result(f"load {target}", False, _error_text(e))]
    if checks:  # the runner runs them itself: every check in a child, with its timeout
        return run_checks(checks, module, getattr(checker, "TIMEOUT", DEFAULT_TIMEOUT))
    try:
        return _normalize(checker.check(module))
    except (Exception, SystemExit) as e:
        return [Result("check raised", False, _error_text(e) + _where(e))]


def case(name: str, fn: Callable[[], object]) -> Result:
    """Helper for check.py authors: run one check in this process so that an exception fails only that
    line (prefer CHECKS: those run in a child with a timeout). ``fn`` returns True/False, or (ok, detail)."""
    try:
        out = fn()
    except Exception as e:
        return Result(name, False, describe(e))
    if isinstance(out, tuple):
        ok, detail = out
        return Result(name, _passed(ok), str(detail))
    return Result(name, _passed(out), "")


# --- output ------------------------------------------------------------------------------------

def heading(lab: Lab, shown: str) -> str:
    """The first line of every report, whichever entry point printed it."""
    return f"lab {lab.number} {lab.topic}: checking {shown}\n"


def format_results(results: list[Result], title: str | None = None) -> str:
    """A table: one ✓ or ✗ line per check with its detail, then a summary line."""
    results = [Result(*r) if not isinstance(r, Result) else r for r in results]
    width = min(max((len(r.name) for r in results), default=10), 40)
    lines = [title] if title else []
    for r in results:
        mark = "✓" if r.ok else "✗"
        detail = r.detail.replace("\n", " ")
        if len(detail) > 300:
            detail = detail[:297] + "..."
        lines.append(f"  {mark} {r.name:<{width}}  {detail}".rstrip())
    passed = sum(r.ok for r in results)
    lines.append(f"{passed}/{len(results)} checks passed" + ("" if passed == len(results) else " — not done yet"))
    return "\n".join(lines)


def _needs_root(lab: Lab) -> str | None:
    """check.py's ``NEEDS_ROOT = "why"`` (read without running it), if we are not root."""
    if os.geteuid() == 0:
        return None
    try:
        m = re.search(r"""^NEEDS_ROOT\s*=\s*["'](.+)["']""", lab.checker.read_text(), re.M)
    except OSError:
        return None
    return m.group(1) if m else None


def script_main(argv: list[str], check: Callable, reference: str, skeleton: str | os.PathLike,
                title: str = "", needs_root: str | None = None) -> int:
    """What ``python labs/NN-topic/check.py [--reference] [SOLUTION.py]`` does in every lab: the same
    runner, report and exit status as ``minidocker lab check NN`` (``title`` is kept for old callers;
    the heading is the lab's own)."""
    lab_dir = Path(skeleton).resolve().parent
    m = LAB_DIR_RE.match(lab_dir.name)
    lab = Lab(m.group(1), m.group(2), lab_dir) if m else Lab("??", lab_dir.name, lab_dir)
    if "--reference" in argv:
        target, shown = "reference", reference
    else:
        target = next((a for a in argv if not a.startswith("-")), None) or "skeleton"
        shown = str(lab.skeleton) if target == "skeleton" else target
    if needs_root and os.geteuid() != 0:
        print(f"lab {lab.number} {lab.topic} needs root ({needs_root})")
        return 1
    results = run_check(lab, target)
    print(format_results(results, heading(lab, shown)))
    return 0 if results and all(r.ok for r in results) else 1


def format_list(labs: list[Lab], root: str | os.PathLike | None = None) -> str:
    if not labs:
        return f"no labs found in {labs_root(root)}"
    rows = [f"  {lab.number}  {lab.path.name:<22} {lab.title:<40} reference: {lab.reference or '?'}"
            for lab in labs]
    return "labs:\n" + "\n".join(rows)


# --- the student's workspace and hints ---------------------------------------------------------

def _invoking_user() -> tuple[int, int, Path] | None:
    """(uid, gid, home) of the user behind ``sudo``, when root was reached through it."""
    if os.geteuid() != 0 or not os.environ.get("SUDO_UID", "").isdigit():
        return None
    import pwd
    try:
        entry = pwd.getpwuid(int(os.environ["SUDO_UID"]))
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid, Path(entry.pw_dir)


def workspace_root(directory: str | os.PathLike | None = None) -> Path:
    """``directory``, else ``$MINIDOCKER_WORKSPACE``, else ``~/minidocker-labs`` (the sudo user's ~)."""
    if directory:
        return Path(directory).expanduser()
    if os.environ.get("MINIDOCKER_WORKSPACE"):
        return Path(os.environ["MINIDOCKER_WORKSPACE"]).expanduser()
    user = _invoking_user()
    return (user[2] if user else Path.home()) / "minidocker-labs"


def workspace(lab: Lab, directory: str | os.PathLike | None = None) -> Path:
    return workspace_root(directory) / lab.path.name


def start(lab: Lab, directory: str | os.PathLike | None = None, force: bool = False) -> tuple[Path, bool]:
    """Copy the lab (everything but check.py) into the workspace; (where, copied?). An existing copy
    is the student's work: it is kept unless ``force``."""
    dest = workspace(lab, directory)
    if (dest / "skeleton.py").exists() and not force:
        return dest, False
    dest.mkdir(parents=True, exist_ok=True)
    user = _invoking_user() if not directory else None
    for src in sorted(lab.path.iterdir()):
        if src.name in ("check.py", "__pycache__") or not src.is_file():
            continue
        shutil.copyfile(src, dest / src.name)
        if user:
            os.chown(dest / src.name, user[0], user[1])
    if user:
        for d in (dest, dest.parent):
            os.chown(d, user[0], user[1])
    return dest, True


def hints(lab: Lab) -> list[str]:
    """The README's ``## Hints`` list (numbered or bulleted), one item per hint; else each task's
    ``*Hints:*`` paragraph, in the order of the tasks."""
    try:
        text = lab.readme.read_text()
    except OSError:
        return []
    section = re.search(r"^## Hints[^\n]*\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if section:
        items = re.split(r"^(?:\d+\.|[*-])\s+", section.group(1), flags=re.M)[1:]
        return [_dedent_item(item).strip() for item in items if item.strip()]
    blocks = re.findall(r"\*Hints?:\*(.*?)(?=\n\s*\n|\n\s*\d+\.\s|\n#|\Z)", text, re.S)
    return [" ".join(line.strip() for line in b.strip().splitlines()) for b in blocks if b.strip()]


def _dedent_item(item: str) -> str:
    """A list item's continuation lines are indented under its first line."""
    first, _, rest = item.partition("\n")
    return first + ("\n" + textwrap.dedent(rest) if rest else "")


def main(argv: list[str] | None = None) -> int:
    """``list``, ``start NN``, ``check NN``, ``hint NN [K]``; exit 0 when every check passes, else 1."""
    import argparse

    p = argparse.ArgumentParser(prog="minidocker lab", description="The chapter labs: start, check, hints.")
    p.add_argument("--labs", help="labs directory (default: $MINIDOCKER_LABS or the repository's labs/)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the labs")
    s = sub.add_parser("start", help="copy a lab into your workspace (~/minidocker-labs/NN-topic)")
    s.add_argument("lab", help="lab number (01) or folder name (01-namespaces)")
    s.add_argument("--dir", help="workspace directory (default: $MINIDOCKER_WORKSPACE or ~/minidocker-labs)")
    s.add_argument("--force", action="store_true", help="start over: overwrite your copy")
    c = sub.add_parser("check", help="check your copy of a lab (see `lab start`)")
    c.add_argument("lab", help="lab number (01) or folder name (01-namespaces)")
    c.add_argument("--dir", help="workspace directory your copy is in (as given to `lab start --dir`)")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--reference", action="store_true", help="check minidocker's own module instead")
    g.add_argument("--skeleton", action="store_true", help="check the repository's untouched skeleton.py")
    g.add_argument("--file", metavar="PATH", help="check this Python file")
    h = sub.add_parser("hint", help="show the lab's hints, one at a time")
    h.add_argument("lab", help="lab number (01) or folder name (01-namespaces)")
    h.add_argument("k", nargs="?", type=int, default=1, help="which hint (default 1)")
    args = p.parse_args(argv)

    if args.command == "list":
        print(format_list(find_labs(args.labs), args.labs))
        return 0
    try:
        lab = get_lab(args.lab, args.labs)
    except LookupError as e:
        print(f"minidocker lab: {e}", file=sys.stderr)
        return 1
    if args.command == "start":
        return _cmd_start(lab, args)
    if args.command == "hint":
        return _cmd_hint(lab, args.k)
    if args.reference:
        target, shown = "reference", lab.reference or "?"
    elif args.skeleton:
        target, shown = "skeleton", str(lab.skeleton)
    elif args.file:
        target = shown = args.file
    else:
        mine = workspace(lab, args.dir) / "skeleton.py"
        if not mine.is_file():
            print(f"minidocker lab: no copy of lab {lab.number} at {mine}: run `minidocker lab start "
                  f"{lab.number}{' --dir ' + args.dir if args.dir else ''}` first (or check --file PATH, "
                  "--skeleton, --reference)", file=sys.stderr)
            return 1
        target = shown = str(mine)
    why = _needs_root(lab)
    if why:
        print(f"lab {lab.number} {lab.topic} needs root ({why})", file=sys.stderr)
        return 1
    results = run_check(lab, target)
    print(format_results(results, heading(lab, shown)))
    return 0 if results and all(r.ok for r in results) else 1


def _cmd_start(lab: Lab, args) -> int:
    dest, copied = start(lab, args.dir, args.force)
    d = f" --dir {args.dir}" if args.dir else ""
    if not copied:
        print(f"lab {lab.number}: your copy is already at {dest} (kept; `--force` starts over)")
    else:
        print(f"lab {lab.number} {lab.topic}: your copy is in {dest}\n"
              f"  read    {dest / 'README.md'}\n"
              f"  edit    {dest / 'skeleton.py'}\n"
              f"  check   minidocker lab check {lab.number}{d}\n"
              f"  stuck?  minidocker lab hint {lab.number}")
    return 0


def _cmd_hint(lab: Lab, k: int) -> int:
    found = hints(lab)
    if not found:
        print(f"lab {lab.number} has no hints in {lab.readme}")
        return 1
    if not 1 <= k <= len(found):
        print(f"minidocker lab: lab {lab.number} has hints 1 to {len(found)}", file=sys.stderr)
        return 1
    print(f"lab {lab.number} hint {k} of {len(found)}:\n\n{found[k - 1]}")
    if k < len(found):
        print(f"\n(next: minidocker lab hint {lab.number} {k + 1})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
