"""Every committed results folder's tables, hypotheses and claims follow from its summary.csv under
the current code (scripts/rederive_reports.py), so a change of the report code that would change a
committed file fails here; and the check itself sees a changed file."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("rederive_reports", ROOT / "scripts" / "rederive_reports.py")
rederive = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rederive)


def test_committed_reports_follow_from_their_summaries() -> None:
    assert rederive.main([]) == 0


def test_a_changed_committed_file_is_reported(tmp_path) -> None:
    folder = shutil.copytree(ROOT / "results" / "cross_stain", tmp_path / "cross_stain")
    (folder / "hypotheses.md").write_text("edited\n")
    n, bad = rederive.differing(folder)
    assert n > 10 and bad == ["hypotheses.md"]
