"""The handbook's layout rules, checked on the source without running it: every module opens with a
docstring, imports point down only (the tiers of docs/CONTRACTS.md, with no exception), and the
daemon's engine.py stays the short composition of its modules."""
from __future__ import annotations

import ast
import os
import re
from pathlib import Path

from conftest import REPO

PACKAGE = Path(REPO) / "minidocker"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _tiers() -> dict[str, int]:
    """docs/CONTRACTS.md's layout block: top-level module or package -> its tier (line number)."""
    text = (Path(REPO) / "docs" / "CONTRACTS.md").read_text()
    block = re.search(r"Package layout:.*?\n\n((?:    \S[^\n]*\n)+)", text, re.S)
    assert block, "docs/CONTRACTS.md lost its layout block"
    tiers = {}
    for rank, line in enumerate(block.group(1).splitlines()):
        for name in re.sub(r"\(.*\)", "", line).split(","):
            tiers[name.strip().removesuffix("/").removesuffix(".py")] = rank
    stale = [n for n in tiers if not ((PACKAGE / n).is_dir() or (PACKAGE / f"{n}.py").exists())]
    assert stale == [], "the layout block names modules that do not exist"
    return tiers


def _top(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imported_tops(path: Path) -> set[str]:
    """The top-level minidocker modules ``path`` imports (at the top or inside a function)."""
    dotted = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = dotted[:-1]  # the package a relative import starts from (an __init__'s is its own)
    tops = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name.split(".") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = base + (node.module.split(".") if node.module else [])
            targets = [mod + [a.name] for a in node.names] if node.module is None else [mod]
        else:
            continue
        for t in targets:
            if t[0] == "minidocker" and len(t) > 1 and ((PACKAGE / t[1]).is_dir()
                                                          or (PACKAGE / f"{t[1]}.py").exists()):
                tops.add(t[1])
    return tops - {_top(path)}


def test_every_module_opens_with_a_docstring():
    missing = [str(p.relative_to(REPO)) for p in MODULES if not ast.get_docstring(ast.parse(p.read_text()))]
    assert missing == []


def test_every_module_is_in_a_tier_of_the_layout():
    tiers = _tiers()
    unplaced = sorted({_top(p) for p in MODULES} - set(tiers) - {"__init__"})
    assert unplaced == [], "add them to the layout block of docs/CONTRACTS.md"


def test_imports_point_down_only():
    tiers = _tiers()
    upward = sorted(f"{p.relative_to(REPO)} imports {t}" for p in MODULES if _top(p) in tiers
                    for t in _imported_tops(p) if tiers.get(t, -1) >= tiers[_top(p)])
    assert upward == []


def test_the_checker_sees_the_imports():
    """(It would pass vacuously if it resolved no import.)"""
    assert {"kernel", "util"} <= _imported_tops(PACKAGE / "rootfs.py")
    assert "daemon" in _imported_tops(PACKAGE / "diagrams" / "daemon.py")
    assert {"runtime", "images", "unionfs"} <= _imported_tops(PACKAGE / "daemon" / "lifecycle.py") | \
        _imported_tops(PACKAGE / "daemon" / "create.py")
    assert _tiers()["daemon"] > _tiers()["runtime"] > _tiers()["kernel"]


def test_the_engine_stays_a_short_composition():
    engine = PACKAGE / "daemon" / "engine.py"
    lines = len(engine.read_text().splitlines())
    assert lines < 200, f"daemon/engine.py has {lines} lines: put the new idea in a module of its own"
