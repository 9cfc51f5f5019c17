"""The packages import only downward: core <- wbcdata <- {models, protocols} <- benchmark (the engine),
and the statistics and reports read results files, never the model zoo. A new import that
crosses a layer fails here with the file, the line and the rule it breaks."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("core", "wbcdata", "models", "protocols", "benchmark")
REPORTS = ("stats", "tables", "summary", "hypotheses", "claims", "figures", "environment", "atomic")

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "core": ("wbcdata", "models", "protocols", "benchmark"),
    "wbcdata": ("models", "protocols", "benchmark"),
    "models": ("wbcdata", "protocols", "benchmark"),
    "protocols": ("models", "benchmark"),
    **{f"benchmark.{m}": ("models", "protocols") for m in REPORTS},
}
"""Importer (a package, or one engine module) -> the top-level packages it must not import."""


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every project module a file imports, at any depth (function-level imports count too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.split(".")[0] in PROJECT]


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _rules_for(module: str) -> tuple[str, ...]:
    banned: tuple[str, ...] = ()
    for importer, targets in FORBIDDEN.items():
        if module == importer or module.startswith(importer + "."):
            banned += targets
    return banned


def _violations(paths: list[Path]) -> list[str]:
    out = []
    for path in paths:
        banned = _rules_for(_module(path))
        for line, name in _imports(path):
            if name.split(".")[0] in banned:
                out.append(f"{path.relative_to(ROOT)}:{line} imports {name} ({_module(path)} may not import {name.split('.')[0]})")
    return sorted(set(out))


def test_no_forbidden_import_edge() -> None:
    paths = [p for pkg in PROJECT for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(paths) > 40, "the walk found too few modules: did a package move?"
    assert _violations(paths) == []


@pytest.mark.parametrize(("importer", "source", "banned"), [
    ("models/fake.py", "from benchmark.runner import Job\n", "benchmark"),
    ("protocols/fake.py", "def f():\n    import models.registry\n", "models"),
    ("benchmark/tables.py", "from models import create_model\n", "models"),
    ("core/fake.py", "from wbcdata.stain import restain\n", "wbcdata"),
])
def test_the_walk_catches_a_forbidden_edge(tmp_path, monkeypatch, importer, source, banned) -> None:
    """The checker itself can fail: a planted upward import (even inside a function) is reported."""
    fake = tmp_path / importer
    fake.parent.mkdir(parents=True)
    fake.write_text(source)
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (found,) = _violations([fake])
    assert f"may not import {banned}" in found and importer in found
