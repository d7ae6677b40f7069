"""The lab runner, on a fixture lab made here, and the property every real lab must have: its checker
fails on the untouched skeleton and passes on the reference module."""
from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import need, need_root
from minidocker import labs

REF_MODULE = "_labfixture_adder_ref"

SKELETON = '''
def add(a, b):
    raise NotImplementedError("TODO: return a + b")

def double(x):
    raise NotImplementedError("TODO: return 2 * x")
'''

SOLUTION = '''
def add(a, b):
    return a + b

def double(x):
    return 2 * x
'''

CHECK = f'''
from minidocker.labs import case

REFERENCE = "{REF_MODULE}"

def check(module):
    results = []
    try:
        got = module.add(2, 3)
        results.append(("add(2, 3) == 5", got == 5, f"got {{got!r}}"))
    except NotImplementedError as e:
        results.append(("add(2, 3) == 5", False, f"not implemented: {{e}}"))
    results.append(case("double(4) == 8", lambda: (module.double(4) == 8, "double(4)")))
    return results
'''

BROKEN_CHECK = '''
REFERENCE = "os"

def check(module):
    raise RuntimeError("checker bug: forgot something")
'''


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def fixture_labs(tmp_path, monkeypatch):
    """labs/01-adder (a good lab), labs/02-broken (a checker that raises), plus noise to ignore."""
    root = tmp_path / "labs"
    _write(root / "01-adder" / "README.md", "# Lab 01: an adder\n\nImplement add().\n")
    _write(root / "01-adder" / "skeleton.py", SKELETON)
    _write(root / "01-adder" / "check.py", CHECK)
    _write(root / "02-broken" / "skeleton.py", SKELETON)
    _write(root / "02-broken" / "check.py", BROKEN_CHECK)
    _write(root / "03-nochecker" / "README.md", "# no check.py: not a lab\n")
    _write(root / "notalab" / "check.py", BROKEN_CHECK)
    _write(tmp_path / "refs" / f"{REF_MODULE}.py", SOLUTION)
    monkeypatch.syspath_prepend(str(tmp_path / "refs"))
    yield root
    sys.modules.pop(REF_MODULE, None)


def test_find_labs(fixture_labs, monkeypatch):
    found = labs.find_labs(fixture_labs)
    assert [(lab.number, lab.topic) for lab in found] == [("01", "adder"), ("02", "broken")]
    assert found[0].reference == REF_MODULE and found[0].title == "Lab 01: an adder"
    monkeypatch.setenv("MINIDOCKER_LABS", str(fixture_labs))
    assert labs.find_labs() == found
    assert labs.find_labs(fixture_labs / "missing") == []


def test_default_root_is_the_repository_labs_dir(monkeypatch):
    import minidocker
    monkeypatch.delenv("MINIDOCKER_LABS", raising=False)
    assert labs.labs_root() == Path(minidocker.__file__).resolve().parents[1] / "labs"


def test_get_lab(fixture_labs):
    for name in ("1", "01", "01-adder", "adder"):
        assert labs.get_lab(name, fixture_labs).number == "01"
    with pytest.raises(LookupError, match="01-adder, 02-broken"):
        labs.get_lab("09", fixture_labs)


def test_skeleton_fails_with_the_todo_text(fixture_labs):
    results = labs.run_check(labs.get_lab("01", fixture_labs), "skeleton")
    assert [r.ok for r in results] == [False, False]
    assert "TODO: return a + b" in results[0].detail
    assert "not implemented yet" in results[1].detail


def test_reference_passes(fixture_labs):
    results = labs.run_check(labs.get_lab("01", fixture_labs), "reference")
    assert results and all(r.ok for r in results), results


def test_student_file_passes_and_edits_are_seen(fixture_labs, tmp_path):
    lab = labs.get_lab("01", fixture_labs)
    student = _write(tmp_path / "mine.py", SOLUTION)
    assert all(r.ok for r in labs.run_check(lab, student))
    _write(student, SOLUTION.replace("return a + b", "return a - b"))
    results = labs.run_check(lab, str(student))
    assert not results[0].ok and "got -1" in results[0].detail
    assert not [m for m in sys.modules if m.startswith("_minidocker_lab")]


def test_load_errors_are_failures_not_tracebacks(fixture_labs, tmp_path):
    lab = labs.get_lab("01", fixture_labs)
    bad = _write(tmp_path / "bad.py", "def add(a, b)\n    return a + b\n")
    (r,) = labs.run_check(lab, bad)
    assert not r.ok and r.detail.startswith("SyntaxError") and "line 1" in r.detail
    (r,) = labs.run_check(lab, tmp_path / "missing.py")
    assert not r.ok and "no such file" in r.detail
    exits = _write(tmp_path / "exits.py", "import sys\nsys.exit(3)\n")
    (r,) = labs.run_check(lab, exits)
    assert not r.ok and "SystemExit" in r.detail


def test_a_check_that_raises_is_a_failure_with_its_text(fixture_labs):
    (r,) = labs.run_check(labs.get_lab("02", fixture_labs), "reference")
    assert not r.ok
    assert "RuntimeError: checker bug: forgot something" in r.detail and "check.py" in r.detail


@pytest.mark.parametrize("returned, why", [("None", "not a list"), ("[]", "no results"),
                                           ("[('x', 'yes', 'a string is not a pass')]", None)])
def test_odd_check_results_never_pass(tmp_path, returned, why):
    root = tmp_path / "labs"
    _write(root / "01-odd" / "skeleton.py", "")
    _write(root / "01-odd" / "check.py", f"REFERENCE = 'os'\ndef check(module):\n    return {returned}\n")
    results = labs.run_check(labs.find_labs(root)[0], "skeleton")
    assert results and not any(r.ok for r in results)
    if why:
        assert why in results[0].detail


def test_format_results():
    text = labs.format_results([labs.Result("one", True, "fine"), ("two", False, "broken\nbadly")],
                               title="lab 01")
    lines = text.splitlines()
    assert lines[0] == "lab 01"
    assert lines[1].startswith("  ✓ one") and lines[1].endswith("fine")
    assert lines[2].startswith("  ✗ two") and "broken badly" in lines[2]
    assert lines[-1].startswith("1/2 checks passed")


def test_main_exit_codes(fixture_labs, tmp_path, capsys):
    base = ["--labs", str(fixture_labs)]
    assert labs.main(base + ["check", "01", "--skeleton"]) == 1
    assert "✗" in capsys.readouterr().out
    assert labs.main(base + ["check", "01", "--reference"]) == 0
    assert "2/2 checks passed" in capsys.readouterr().out
    assert labs.main(base + ["check", "1", "--file", str(_write(tmp_path / "s.py", SOLUTION))]) == 0
    assert labs.main(base + ["check", "02", "--reference"]) == 1
    assert labs.main(base + ["check", "42"]) == 1
    assert "no lab '42'" in capsys.readouterr().err
    assert labs.main(base + ["list"]) == 0
    out = capsys.readouterr().out
    assert "01-adder" in out and "02-broken" in out and "03-nochecker" not in out


# --- the student's workspace ------------------------------------------------------------------------

def test_start_copies_the_lab_and_check_checks_the_copy(fixture_labs, tmp_path, capsys):
    base, ws = ["--labs", str(fixture_labs)], tmp_path / "ws"
    pristine = (fixture_labs / "01-adder" / "skeleton.py").read_text()
    assert labs.main(base + ["check", "01", "--dir", str(ws)]) == 1
    assert "lab start 01 --dir" in capsys.readouterr().err          # no copy yet: says what to do

    assert labs.main(base + ["start", "01", "--dir", str(ws)]) == 0
    mine = ws / "01-adder" / "skeleton.py"
    assert mine.read_text() == pristine and (ws / "01-adder" / "README.md").is_file()
    assert not (ws / "01-adder" / "check.py").exists()
    capsys.readouterr()
    assert labs.main(base + ["check", "01", "--dir", str(ws)]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"lab 01 adder: checking {mine}" and "0/2 checks passed" in out

    mine.write_text(SOLUTION)   # the student solves it in the copy; the repository stays untouched
    assert labs.main(base + ["check", "01", "--dir", str(ws)]) == 0
    assert "2/2 checks passed" in capsys.readouterr().out
    assert (fixture_labs / "01-adder" / "skeleton.py").read_text() == pristine

    assert labs.main(base + ["start", "01", "--dir", str(ws)]) == 0   # a second start keeps the work
    assert "already" in capsys.readouterr().out and mine.read_text() == SOLUTION
    assert labs.main(base + ["start", "01", "--dir", str(ws), "--force"]) == 0
    assert mine.read_text() == pristine


def test_workspace_defaults(fixture_labs, tmp_path, monkeypatch):
    lab = labs.get_lab("01", fixture_labs)
    monkeypatch.setenv("MINIDOCKER_WORKSPACE", str(tmp_path / "env"))
    assert labs.workspace(lab) == tmp_path / "env" / "01-adder"
    monkeypatch.delenv("MINIDOCKER_WORKSPACE")
    monkeypatch.delenv("SUDO_UID", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert labs.workspace(lab) == tmp_path / "home" / "minidocker-labs" / "01-adder"


def test_hints_one_at_a_time(fixture_labs, capsys):
    readme = fixture_labs / "01-adder" / "README.md"
    readme.write_text("# Lab 01\n\n## Hints\n\n1. Look at `+`.\n2. It is `return a + b`,\n   really.\n\n## After\n")
    base = ["--labs", str(fixture_labs)]
    assert labs.main(base + ["hint", "01"]) == 0
    out = capsys.readouterr().out
    assert "hint 1 of 2" in out and "Look at `+`." in out and "It is" not in out and "hint 01 2" in out
    assert labs.main(base + ["hint", "01", "2"]) == 0
    out = capsys.readouterr().out
    assert "It is `return a + b`,\nreally." in out and "After" not in out
    assert labs.main(base + ["hint", "01", "3"]) == 1
    assert "hints 1 to 2" in capsys.readouterr().err


@pytest.mark.parametrize("lab", REAL_LABS_NAMES := [p.name for p in sorted((Path(labs.labs_root())).glob("[0-9][0-9]-*"))])
def test_every_real_lab_has_hints(lab):
    assert labs.hints(labs.get_lab(lab)), f"{lab}: no ## Hints list and no *Hints:* blocks in its README"


# --- timeouts, messages, isolation of each check --------------------------------------------------

HANGING = '''
import os
def add(a, b):
    r, w = os.pipe()        # the classic deadlock: waiting for an end-of-file that never comes,
    return os.read(r, 1)    # because this process still holds the write end
'''

CHECKS_LAB = '''
import os
from minidocker.labs import expect, run_checks

REFERENCE = "{ref}"
TIMEOUT = 1.5

def check_add(m):
    return expect("add(2, 3)", m.add(2, 3), 5)

def check_exit(m):
    m.double(1)
    return "fine"

def check_fork(m):
    m.forks()
    return "one result only"

CHECKS = [("add", check_add), ("double", check_exit, 5), ("forks", check_fork)]
'''


@pytest.fixture
def checks_lab(tmp_path, monkeypatch):
    root = tmp_path / "labs"
    _write(root / "01-adder" / "skeleton.py", SKELETON + "\ndef forks():\n    raise NotImplementedError\n")
    _write(root / "01-adder" / "check.py", CHECKS_LAB.format(ref=REF_MODULE))
    _write(tmp_path / "refs" / f"{REF_MODULE}.py", SOLUTION + "\ndef forks():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "refs"))
    yield labs.get_lab("01", root)
    sys.modules.pop(REF_MODULE, None)


def test_a_hanging_check_times_out_and_names_where(checks_lab, tmp_path):
    student = _write(tmp_path / "mine.py", HANGING + "\ndef double(x):\n    return 2 * x\ndef forks():\n    pass\n")
    add, double, forks = labs.run_check(checks_lab, student)
    assert not add.ok
    assert add.detail.startswith("timed out after 1.5 s in add (mine.py line 5)"), add.detail
    assert double.ok and forks.ok   # the hang cost one check, not the run


def test_failures_show_expected_and_actual(checks_lab, tmp_path):
    student = _write(tmp_path / "mine.py", SOLUTION.replace("a + b", "a - b") + "\ndef forks():\n    pass\n")
    (add, *_) = labs.run_check(checks_lab, student)
    assert add.detail == "add(2, 3): expected 5, got -1"


def test_a_check_that_kills_its_process_or_forks_wildly_fails_alone(checks_lab, tmp_path):
    student = _write(tmp_path / "mine.py", SOLUTION + '''
import os
def double(x):
    os._exit(0)
def forks():
    os.fork()               # the child returns into the checker: both would report
''')
    add, double, forks = labs.run_check(checks_lab, student)
    assert add.ok
    assert not double.ok and "exited with status 0 before reporting" in double.detail
    assert not forks.ok and "forked child returned into the checker" in forks.detail


DEADLOCKED_SPAWN = '''
import os
from minidocker.namespaces import *   # everything right, except spawn

def spawn(target, namespaces, **kwargs):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return os.read(r, 8)   # the write end is still open here: end-of-file never comes
'''


def test_lab01_a_deadlocked_spawn_fails_its_checks_and_names_spawn(tmp_path, monkeypatch):
    need(os.geteuid() == 0, "root, for lab 01's namespaces")
    monkeypatch.setenv("MINIDOCKER_LAB_TIMEOUT", "2")
    student = _write(tmp_path / "mine.py", DEADLOCKED_SPAWN)
    line = DEADLOCKED_SPAWN.splitlines().index("    return os.read(r, 8)   # the write end is still open here: "
                                                "end-of-file never comes") + 1
    results = labs.run_check(labs.get_lab("01"), student)
    spawn = [r for r in results if r.name.startswith("4 spawn")]
    assert spawn and all(not r.ok for r in spawn)
    for r in spawn:
        assert r.detail == f"timed out after 2 s in spawn (mine.py line {line})", r.detail
    assert all(r.ok for r in results if not r.name.startswith("4 spawn")), labs.format_results(results)


def test_lab06_a_hang_inside_the_sandbox_names_the_students_function(tmp_path, monkeypatch):
    need(os.geteuid() == 0, "root: lab 06 sandboxes its checks only as root")
    monkeypatch.setenv("MINIDOCKER_LAB_TIMEOUT", "3")
    student = _write(tmp_path / "mine.py", "from minidocker.images.layers import *\n"
                                           "def clean_member_name(name):\n"
                                           "    while True:\n"
                                           "        pass\n")
    lab = labs.get_lab("06")
    checker = labs.load_module(lab.checker, "_lab06_checker_for_hang_test")
    module = labs.load_module(student, "_lab06_hanging_solution")
    try:
        (result,) = labs.run_checks(checker.CHECKS[:1], module)
    finally:
        sys.modules.pop("_lab06_checker_for_hang_test", None)
        sys.modules.pop("_lab06_hanging_solution", None)
    assert not result.ok
    assert result.detail.startswith("timed out after 3 s in clean_member_name (mine.py line "), result.detail


def test_reference_passes_with_checks(checks_lab):
    assert all(r.ok for r in labs.run_check(checks_lab, "reference"))


def test_script_and_cli_print_the_same_report(checks_lab, capsys):
    checker = labs.load_module(checks_lab.checker, "_labfixture_checker")
    try:
        code = labs.script_main([], lambda m: labs.run_checks(checker.CHECKS, m, checker.TIMEOUT),
                                REF_MODULE, checks_lab.skeleton, "ignored title")
        script = capsys.readouterr().out
        assert code == 1
        assert labs.main(["--labs", str(checks_lab.path.parent), "check", "01", "--skeleton"]) == 1
        assert capsys.readouterr().out == script
        assert script.splitlines()[0] == f"lab 01 adder: checking {checks_lab.skeleton}"
    finally:
        sys.modules.pop("_labfixture_checker", None)


# --- every lab: the checker fails on the skeleton and passes on the reference -------------------

REAL_LABS = labs.find_labs()


@pytest.mark.parametrize("which", [lab.path.name for lab in REAL_LABS] + ["fixture"])
def test_checker_fails_on_skeleton_and_passes_on_reference(which, request):
    """Runs for each lab in labs/ and for the fixture lab (so it never runs zero cases)."""
    if which == "fixture":
        lab = labs.get_lab("01", request.getfixturevalue("fixture_labs"))
    else:
        lab = labs.get_lab(which)
    assert lab.skeleton.is_file(), f"{lab.path} has no skeleton.py"
    assert lab.readme.is_file(), f"{lab.path} has no README.md"
    assert lab.reference, f"{lab.checker} has no REFERENCE"

    on_skeleton = labs.run_check(lab, "skeleton")
    assert on_skeleton and not all(r.ok for r in on_skeleton), (
        "the checker passes on the untouched skeleton:\n" + labs.format_results(on_skeleton))

    on_reference = labs.run_check(lab, "reference")
    if not all(r.ok for r in on_reference):
        need(os.geteuid() == 0, f"root, to run lab {lab.number}'s checks against the reference")
    assert on_reference and all(r.ok for r in on_reference), (
        f"the checker fails on the reference {lab.reference}:\n" + labs.format_results(on_reference))


# --- the capstone: a black-box stage tester of the student's own mydocker ---------------------------

@pytest.mark.privileged
def test_capstone_tester_fails_every_stage_on_the_empty_solution_and_passes_on_the_reference(monkeypatch):
    """With minidocker's modules standing in for the lab solutions, only the glue is judged: the
    untouched skeleton fails every stage, each saying what it expected; the reference passes all."""
    need_root()
    lab = labs.get_lab("capstone")
    monkeypatch.setenv("MYDOCKER_LABS", "reference")
    empty = labs.run_check(lab, "skeleton")
    assert len(empty) >= 10 and not any(r.ok for r in empty), labs.format_results(empty)
    assert all("expected" in r.detail for r in empty), labs.format_results(empty)
    assert any("TODO: run" in r.detail for r in empty), labs.format_results(empty)
    reference = labs.run_check(lab, "reference")
    assert all(r.ok for r in reference), labs.format_results(reference)


@pytest.mark.privileged
def test_capstone_says_which_lab_solution_is_missing(monkeypatch, tmp_path):
    need_root()
    lab = labs.get_lab("capstone")
    monkeypatch.setenv("MYDOCKER_LABS", str(tmp_path))
    (first, *_) = labs.run_check(lab, "reference")
    assert not first.ok and f"no solution of lab 01 at {tmp_path}/01-namespaces/skeleton.py" in first.detail


def test_capstone_is_a_lab_by_name_and_has_hints():
    lab = labs.get_lab("capstone")
    assert lab.number == lab.topic == "capstone" and lab in labs.find_labs()
    assert len(labs.hints(lab)) >= 3


def test_sandbox_scratch_of_a_killed_check_is_swept(monkeypatch):
    """A check killed at its deadline leaves its sandbox's (empty) scratch mount point behind; the
    next sandboxed check removes those whose creating process is gone, and only those."""
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path
    from conftest import need_root
    from minidocker import labcheck
    need_root()
    base = Path(tempfile.mkdtemp(prefix="mdtest-sandbox-sweep-", dir="/tmp"))
    try:
        base.chmod(0o755)   # the sandbox's mapped root must reach its mount point
        monkeypatch.setattr(tempfile, "tempdir", str(base))
        gone = subprocess.Popen(["true"])
        gone.wait()
        dead = base / f"{labcheck.SANDBOX_PREFIX}{gone.pid}-abc"
        live = base / f"{labcheck.SANDBOX_PREFIX}{os.getpid()}-def"
        other = base / "md-sandbox-unrelated"
        for d in (dead, live, other):
            d.mkdir()
        assert labcheck.run_sandboxed(lambda: 42) == 42
        assert not dead.exists() and live.exists() and other.exists()
        assert sorted(p.name for p in base.iterdir()) == sorted([live.name, other.name])   # its own went too
    finally:
        shutil.rmtree(base, ignore_errors=True)
