"""The course's conventions (docs/COURSE.md), checked on every notebook and lab without running them:
the project's kernel, the opening `doctor` cell, and a Makefile that installs that kernel."""
from __future__ import annotations

import glob
import json
import os
import re

import pytest

from conftest import REPO

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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_uses_the_projects_kernel(path):
    spec = _nb(path)["metadata"].get("kernelspec", {})
    assert spec.get("name") == _installed_kernel_name(), f"kernelspec {spec}: expected the one make setup installs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
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
