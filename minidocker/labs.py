"""The lab runner: ``minidocker lab list`` and ``minidocker lab check NN [--reference] [--file PATH]``.

What this teaches
-----------------
Each chapter has a lab in ``labs/NN-topic/``:

* ``README.md``   what to build, and hints;
* ``skeleton.py`` the same functions as the real chapter module, with bodies that
  ``raise NotImplementedError("TODO ...")`` — the student fills them in;
* ``check.py``    ``REFERENCE = "minidocker.namespaces"`` (the real module that solves the lab) and
  ``check(module) -> list[(name, ok, detail)]``, which exercises any module with that interface.

A checker is only trustworthy if it *fails* on the untouched skeleton and *passes* on the reference;
the test suite proves both for every lab. The runner loads Python files by path
(``importlib.util.spec_from_file_location``), runs the check in this process, and turns anything that
goes wrong — a syntax error in the student's file, a check that raises — into a failed line with the
exception's text instead of a traceback.
"""
from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
import re
import sys
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


# --- running -----------------------------------------------------------------------------------

def _passed(ok) -> bool:
    """Only a boolean counts (numpy's bool_ too): a detail string in the ok position must not pass."""
    return (isinstance(ok, bool) or type(ok).__name__ == "bool_") and bool(ok)


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
    """Run ``lab``'s check.py against ``target``: "skeleton" (the student's labs/NN/skeleton.py),
    "reference" (the real minidocker module), or a path to any Python file. Never raises (except on
    KeyboardInterrupt): every failure is a Result with ok=False."""
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
    if not callable(getattr(checker, "check", None)):
        return [Result("load check.py", False, f"{lab.checker} defines no check(module)")]
    try:
        module = _load_target(lab, target, tag)
        if module.__name__.startswith("_minidocker_lab"):
            loaded.append(module.__name__)
    except (Exception, SystemExit) as e:
        return [Result(f"load {target}", False, _error_text(e))]
    try:
        return _normalize(checker.check(module))
    except (Exception, SystemExit) as e:
        return [Result("check raised", False, _error_text(e) + _where(e))]


def case(name: str, fn: Callable[[], object]) -> Result:
    """Helper for check.py authors: run one check so that an exception fails only that line.

    ``fn`` returns True/False, or (ok, detail); an exception becomes ok=False with its text.
    """
    try:
        out = fn()
    except NotImplementedError as e:
        return Result(name, False, f"not implemented yet ({e})" if str(e) else "not implemented yet")
    except Exception as e:
        return Result(name, False, _error_text(e))
    if isinstance(out, tuple):
        ok, detail = out
        return Result(name, _passed(ok), str(detail))
    return Result(name, _passed(out), "")


# --- output ------------------------------------------------------------------------------------

def format_results(results: list[Result], title: str | None = None) -> str:
    """A table: one ✓ or ✗ line per check with its detail, then a summary line."""
    results = [Result(*r) if not isinstance(r, Result) else r for r in results]
    width = min(max((len(r.name) for r in results), default=10), 40)
    lines = [title] if title else []
    for r in results:
        mark = "✓" if r.ok else "✗"
        detail = r.detail.replace("\n", " ")
        if len(detail) > 200:
            detail = detail[:197] + "..."
        lines.append(f"  {mark} {r.name:<{width}}  {detail}".rstrip())
    passed = sum(r.ok for r in results)
    lines.append(f"{passed}/{len(results)} checks passed" + ("" if passed == len(results) else " — not done yet"))
    return "\n".join(lines)


def script_main(argv: list[str], check: Callable, reference: str, skeleton: str | os.PathLike,
                title: str, needs_root: str | None = None) -> int:
    """What ``python labs/NN-topic/check.py [--reference] [SOLUTION.py]`` does in every lab: load the
    student's file (the skeleton by default) or the reference module, run ``check`` on it, print the
    table, exit 0 only if every check passed. ``needs_root`` says why the lab cannot run otherwise."""
    if "--reference" in argv:
        module, what = importlib.import_module(reference), reference
    else:
        path = Path(next((a for a in argv if not a.startswith("-")), skeleton))
        module, what = load_module(path, f"lab_solution_{Path(path).stem}"), str(path)
    if needs_root and os.geteuid() != 0:
        print(f"{title} needs root ({needs_root})")
        return 1
    results = check(module)
    print(format_results(results, f"{title} — checking {what}\n"))
    return 0 if results and all(_passed(r[1]) for r in results) else 1


def format_list(labs: list[Lab], root: str | os.PathLike | None = None) -> str:
    if not labs:
        return f"no labs found in {labs_root(root)}"
    rows = [f"  {lab.number}  {lab.path.name:<22} {lab.title:<40} reference: {lab.reference or '?'}"
            for lab in labs]
    return "labs:\n" + "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """``list`` or ``check NN [--reference | --file PATH]``; exit 0 when every check passes, else 1."""
    import argparse

    p = argparse.ArgumentParser(prog="minidocker lab", description="Run the chapter labs' checkers.")
    p.add_argument("--labs", help="labs directory (default: $MINIDOCKER_LABS or the repository's labs/)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the labs")
    c = sub.add_parser("check", help="check a lab solution")
    c.add_argument("lab", help="lab number (01) or folder name (01-namespaces)")
    g = c.add_mutually_exclusive_group()
    g.add_argument("--reference", action="store_true", help="check minidocker's own module instead")
    g.add_argument("--file", metavar="PATH", help="check this Python file instead of the lab's skeleton.py")
    args = p.parse_args(argv)

    if args.command == "list":
        print(format_list(find_labs(args.labs), args.labs))
        return 0
    try:
        lab = get_lab(args.lab, args.labs)
    except LookupError as e:
        print(f"minidocker lab: {e}", file=sys.stderr)
        return 1
    target = "reference" if args.reference else (args.file or "skeleton")
    shown = lab.reference if args.reference else (args.file or str(lab.skeleton))
    results = run_check(lab, target)
    print(format_results(results, title=f"lab {lab.number} {lab.topic}: checking {shown}"))
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
