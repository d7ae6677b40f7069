"""The course's conventions (docs/COURSE.md), checked on every notebook and lab without running them:
the project's kernel, the opening `doctor` cell, and a Makefile that installs that kernel."""
from __future__ import annotations

import glob
import json
import os
import re

import pytest

from conftest import REPO

# Chapters that landed before they were converted to the conventions: each test on them is expected
# to fail (strict: once a chapter conforms, its xfail fails too — then delete its line here).
PENDING: dict[str, str] = {}


def _params(paths):
    return [pytest.param(p, id=os.path.basename(p),
                         marks=[pytest.mark.xfail(strict=True, reason=PENDING[os.path.basename(p)])]
                         if os.path.basename(p) in PENDING else []) for p in paths]


NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "notebooks", "[0-9][0-9]-*.ipynb")))
IDS = [os.path.basename(p) for p in NOTEBOOKS]


def _nb(path):
    with open(path) as f:
        return json.load(f)


def _installed_kernel_name() -> str:
    """The --name the Makefile gives `ipykernel install` (every install of it must agree)."""
    with open(os.path.join(REPO, "Makefile")) as f:
        names = set(re.findall(r"ipykernel install\b[^\n]*--name[ =](\S+)", f.read()))
    assert len(names) == 1, f"the Makefile installs kernels {names or 'none'}: expected exactly one name"
    return names.pop()


@pytest.mark.parametrize("path", _params(NOTEBOOKS))
def test_notebook_uses_the_projects_kernel(path):
    spec = _nb(path)["metadata"].get("kernelspec", {})
    assert spec.get("name") == _installed_kernel_name(), f"kernelspec {spec}: expected the one make setup installs"


@pytest.mark.parametrize("path", _params(NOTEBOOKS))
def test_notebook_asks_doctor_first(path):
    cells = _nb(path)["cells"]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# Chapter")
    first_code = next(c for c in cells if c["cell_type"] == "code")
    number = os.path.basename(path)[:2]
    assert f'doctor.chapter("{number}")' in "".join(first_code["source"]), "first code cell must call doctor.chapter"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_committed_without_outputs(path):
    dirty = [i for i, c in enumerate(_nb(path)["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"cells {dirty} have outputs: jupyter nbconvert --clear-output --inplace"


@pytest.mark.parametrize("path", _params(NOTEBOOKS))
def test_notebook_has_predict_then_run_exercises(path):
    exercises = [c for c in _nb(path)["cells"] if c["cell_type"] == "markdown"
                 and "".join(c["source"]).startswith("### Predict, then run")]
    assert len(exercises) >= 2, "two or three '### Predict, then run' cells per notebook (docs/COURSE.md)"
    for c in exercises:
        text = "".join(c["source"])
        assert "<details><summary>Answer</summary>" in text and text.rstrip().endswith("</details>"), text


@pytest.mark.parametrize("path", _params(NOTEBOOKS))
def test_notebook_ends_with_summary_and_lab_pointer(path):
    last = _nb(path)["cells"][-1]
    text = "".join(last["source"])
    assert last["cell_type"] == "markdown" and text.startswith("## Summary"), "the last cell is '## Summary'"
    number = os.path.basename(path)[:2]
    lab = glob.glob(os.path.join(REPO, "labs", f"{number}-*"))
    if lab:
        folder = os.path.basename(lab[0])
        for line in (f"**Lab {number}** — `labs/{folder}/README.md`", f"minidocker lab start {number}",
                     f"minidocker lab check {number}", f"minidocker lab hint {number}"):
            assert line in text, f"the summary lacks {line!r}"
    else:
        assert "**Lab:** none for this chapter." in text
    assert "**Next:**" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_refers_to_no_file_outside_the_repository(path):
    text = "".join("".join(c["source"]) for c in _nb(path)["cells"])
    outside = sorted(set(re.findall(r"(?:/work/|shared/(?:notes|specs)/)\S*", text)))
    assert not outside, f"paths outside the repository: {outside}"


# Names a notebook gives what it makes (docs/COURSE.md, "Every run cleans up after itself"): a literal
# with one of these prefixes must carry the kernel's pid, or the next run's sweep cannot tell whose it is.
NAME = re.compile(r"""(f?)(["'])((?:md-nb|minidocker-nb|minidocker_nb|mdnb)[^"']*)\2""")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_names_what_it_makes_for_its_chapter_and_kernel_pid(path):
    from minidocker import nbrun
    cells = ["".join(c["source"]) for c in _nb(path)["cells"] if c["cell_type"] == "code"]
    code, number = "\n".join(cells), os.path.basename(path)[:2]
    values = {"os.getpid()": "4242"}   # what each pid-carrying variable holds, for a kernel of pid 4242
    for var, rhs in re.findall(r"^(\w+)\s*=\s*([^\n#]*os\.getpid\(\)[^\n#]*?)\s*(?:#.*)?$", code, re.M):
        literal = re.fullmatch(r"""f(["'])(.*)\1""", rhs)
        values[var] = literal.group(2).replace("{os.getpid()}", "4242") if literal else "4242"
    bad = []
    for m in NAME.finditer(code):
        if code[:m.start()].rstrip().endswith(("prefix=", "startswith(", "startswith((", ".names(")):
            continue   # tempfile's prefix (the directory lands in the run's own directory), or a search
        sample = re.sub(r"\{([^}]*)\}", lambda v: values.get(v.group(1), "x"), m.group(3))
        if not (m.group(1) and nbrun.owner(sample, number) == 4242):
            bad.append(m.group(0))
    assert not bad, f"names without chapter {number} and the kernel's pid (nbrun.owner cannot read them): {bad}"
    for cell in cells:
        if "minidocker.daemon.main" in cell:
            missing = [f for f in ("--cgroup-parent", "--bridge", "--nft-table") if f'"{f}"' not in cell]
            assert not missing, f"a daemon started without {missing}: it would use the host daemon's names"
