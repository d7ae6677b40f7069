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
the test suite proves both for every lab. Running the checks — each in a child process with a time
limit that names what hung, failures as expected vs actual, hostile input in a sandbox — is
``minidocker/labcheck.py``; its names are re-exported here, for check.py files.
"""
from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
import re
import shutil
import sys
import textwrap
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

from .labcheck import (DEFAULT_TIMEOUT, SANDBOX_ID, Mismatch, Result, _error_text, _passed,  # noqa: F401
                       _where, describe, expect, expect_raises, in_sandbox, in_tempdir, run_checks,
                       run_one, run_sandboxed, sandboxed)

LAB_DIR_RE = re.compile(r"^(\d\d)-([A-Za-z0-9_.-]+)$")
CAPSTONE = "capstone"    # labs/capstone: the labs put together (number and topic "capstone")


def _lab_in(d: Path) -> Lab | None:
    """The lab a folder holds (``NN-topic`` or ``capstone``), by its name; else None."""
    if d.name == CAPSTONE:
        return Lab(CAPSTONE, CAPSTONE, d)
    m = LAB_DIR_RE.match(d.name)
    return Lab(m.group(1), m.group(2), d) if m else None
_runs = itertools.count(1)  # unique module names per run
REFERENCE_RE = re.compile(r"""^REFERENCE\s*=\s*["']([\w.]+)["']""", re.M)


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
        lab = _lab_in(d)
        if lab and d.is_dir() and (d / "check.py").is_file():
            labs.append(lab)
    return labs


def get_lab(which: str, root: str | os.PathLike | None = None) -> Lab:
    """A lab by number ("1", "01"), folder name ("01-namespaces") or topic ("namespaces")."""
    labs = find_labs(root)
    for lab in labs:
        if which in (lab.number, lab.path.name, lab.topic) or (which.isdigit() and lab.number.isdigit() and int(which) == int(lab.number)):
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
    lab = _lab_in(lab_dir) or Lab("??", lab_dir.name, lab_dir)
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
        shutil.copymode(src, dest / src.name)   # the capstone's ./mydocker stays executable
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
