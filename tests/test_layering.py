"""The packages import only downward: core <- wbcdata <- {models, protocols} <- benchmark, and inside
benchmark: record <- {engine, analysis} and analysis <- reports <- the CLI. The engine never imports
analysis or reports; analysis, reports and the record read results files and never import the
engine, torch, the model zoo or the protocols. A new import that crosses a layer fails here with the
file, the line and the rule it breaks."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("core", "wbcdata", "models", "protocols", "benchmark", "torch")
READERS = ("models", "protocols", "torch", "benchmark.engine", "benchmark.cli")
"""What the rooms that read results (record, analysis, reports) may not import."""

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "core": ("wbcdata", "models", "protocols", "benchmark"),
    "wbcdata": ("models", "protocols", "benchmark"),
    "models": ("wbcdata", "protocols", "benchmark"),
    "protocols": ("models", "benchmark"),
    "benchmark.record": READERS + ("benchmark.analysis", "benchmark.reports"),
    "benchmark.analysis": READERS + ("benchmark.reports",),
    "benchmark.reports": READERS,
    "benchmark.engine": ("benchmark.analysis", "benchmark.reports", "benchmark.cli"),
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


def _is_under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _rules_for(module: str) -> tuple[str, ...]:
    banned: tuple[str, ...] = ()
    for importer, targets in FORBIDDEN.items():
        if _is_under(module, importer):
            banned += targets
    return banned


def _violations(paths: list[Path]) -> list[str]:
    out = []
    for path in paths:
        banned = _rules_for(_module(path))
        for line, name in _imports(path):
            for target in banned:
                if _is_under(name, target):
                    out.append(f"{path.relative_to(ROOT)}:{line} imports {name} ({_module(path)} may not import {target})")
    return sorted(set(out))


def test_no_forbidden_import_edge() -> None:
    paths = [p for pkg in PROJECT if (ROOT / pkg).is_dir() for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(paths) > 40, "the walk found too few modules: did a package move?"
    assert _violations(paths) == []


@pytest.mark.parametrize(("importer", "source", "banned"), [
    ("models/fake.py", "from benchmark.engine.plan import Job\n", "benchmark"),
    ("protocols/fake.py", "def f():\n    import models.registry\n", "models"),
    ("benchmark/reports/tables.py", "from models import create_model\n", "models"),
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


def _module_of(name: str, known: set[str]) -> str | None:
    """The project module an import name lands on: itself, or the longest known prefix of it."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _graph(paths: list[Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a ``from pkg import sub`` lands on ``pkg.sub``)."""
    known = {_module(p).removesuffix(".__init__") for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        me = _module(path).removesuffix(".__init__")
        edges = graph.setdefault(me, set())
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [f"{node.module}.{a.name}" for a in node.names]
            edges.update(t for t in (_module_of(n, known) for n in names) if t and t != me)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_import_circle() -> None:
    """No module reaches itself through imports, function-level ones included."""
    paths = [p for pkg in PROJECT if (ROOT / pkg).is_dir() for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert _circles(_graph(paths)) == []


def test_the_circle_check_finds_a_circle(tmp_path, monkeypatch) -> None:
    """The checker itself can fail: a planted two-module circle (one side inside a function) is found."""
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "a.py").write_text("from core.b import f\n")
    (tmp_path / "core" / "b.py").write_text("def f():\n    from core import a\n")
    (tmp_path / "core" / "c.py").write_text("import core.a\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert _circles(_graph(sorted((tmp_path / "core").glob("*.py")))) == [["core.a", "core.b"]]


def test_reading_results_imports_no_torch_engine_or_models() -> None:
    """What the import walk says, checked in a fresh process: every module of record, analysis and
    reports loads without torch, the engine, the model zoo or the protocols."""
    import subprocess
    import sys

    readers = sorted(_module(p).removesuffix(".__init__") for room in ("record", "analysis", "reports")
                     for p in (ROOT / "benchmark" / room).rglob("*.py"))
    code = (f"import importlib, sys\nfor m in {readers!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'models', 'protocols')"
            " or m.startswith('benchmark.engine')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
