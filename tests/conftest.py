"""Shared test helpers.

Rule: under CI=true a test never skips for lack of a prerequisite — it fails and names what is
missing. Use ``need(condition, "what is missing")`` instead of pytest.skip.
"""
from __future__ import annotations

import os
import shutil

import pytest

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(condition: bool, what: str) -> None:
    """Skip (on a developer's machine) or fail (under CI=true) when a prerequisite is missing."""
    if condition:
        return
    if CI:
        pytest.fail(f"missing prerequisite under CI: {what}")
    pytest.skip(f"missing prerequisite: {what}")


def need_root() -> None:
    need(os.geteuid() == 0, "root (real namespaces, mounts and cgroups need it)")


def need_tool(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"the '{name}' command (installed by 'make setup')")
    return path


@pytest.fixture
def root_required():
    need_root()
