"""The README's headline table says what the committed folders say.

Every verdict, mean difference, bound and seed count in the table is read back from the folder's
``hypotheses.json``, and a folder is marked regenerated (✓) exactly when every environment that
produced it recorded its CPU kernels (the AVX2 pin of engine version 4). A results folder
regenerated without updating the README fails here.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADER = "| folder | seeds | H1 | H2 | H3 | H4 |"
CELL = re.compile(r"^(?:\*\*)?(SUPPORTED|RULED OUT|UNDECIDED)(?:\*\*)?, ([+−-][0-9.]+) \[([+−-][0-9.]+), ([+−-][0-9.]+)\]$")


def _number(text: str) -> float:
    return float(text.replace("−", "-"))


def _headline_rows() -> list[list[str]]:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index(HEADER) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def _verdicts(folder: Path) -> dict[str, dict]:
    """The untreated experiment's hypotheses (each headline folder has one budget)."""
    data = json.loads((folder / "hypotheses.json").read_text())
    untreated = [ex for ex in data["experiments"] if ex["treatment"] == "none"]
    assert len(untreated) == 1, f"{folder.name}: {len(untreated)} untreated experiments"
    return {h["name"]: h for h in untreated[0]["hypotheses"]}


ROWS = _headline_rows()


def test_the_headline_table_lists_folders():
    assert len(ROWS) >= 5


@pytest.mark.parametrize("row", ROWS, ids=[re.search(r"results/(\w+)/", r[0]).group(1) for r in ROWS])
def test_each_headline_row_matches_its_hypotheses_json(row):
    name = re.search(r"results/(\w+)/hypotheses\.md", row[0]).group(1)
    folder = ROOT / "results" / name
    hyps = _verdicts(folder)
    envs = json.loads((folder / "environments.json").read_text())
    assert ("✓" in row[0]) == all("kernels" in e for e in envs.values()), (
        f"{name}: the ✓ (regenerated under the pin) does not match environments.json")
    for label, cell in zip(("H1", "H2", "H3", "H4"), row[2:6]):
        h = hyps[label]
        if not cell:
            continue
        if cell == "not evaluated":
            assert h["verdict"] == "NOT EVALUATED", f"{name} {label}"
            continue
        m = CELL.match(cell)
        assert m, f"{name} {label}: unreadable cell {cell!r}"
        verdict, mean, lo, hi = m.group(1), *(_number(g) for g in m.groups()[1:])
        test = h["test"]
        assert h["verdict"] == verdict, f"{name} {label}: README {verdict}, hypotheses.json {h['verdict']}"
        assert round(test["mean_diff"] * 100, 2) == pytest.approx(mean, abs=0.005), f"{name} {label} mean"
        assert round(test["lower_bound"] * 100, 2) == pytest.approx(lo, abs=0.005), f"{name} {label} lower"
        assert round(test["upper_bound"] * 100, 2) == pytest.approx(hi, abs=0.005), f"{name} {label} upper"
        assert int(row[1]) == test["n"], f"{name} {label}: README {row[1]} seeds, hypotheses.json {test['n']}"
