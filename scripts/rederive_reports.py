"""Does each committed results folder's report still follow from its summary.csv under this code?

Rebuilds the tables, hypotheses and claims of every ``results/*/summary.csv`` into a scratch folder
and compares them byte for byte with the committed files (a check for refactors that must not change
numbers; ``report`` itself rebuilds from job folders, which are not committed). Exit status 1 when
any file differs.

    .venv/bin/python scripts/rederive_reports.py [RESULTS_DIR ...]
"""
from __future__ import annotations

import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.record.summary import read_summary  # noqa: E402
from benchmark.reports.claims import write_claims  # noqa: E402
from benchmark.reports.hypotheses import write_hypotheses  # noqa: E402
from benchmark.reports.tables import write_tables  # noqa: E402


def differing(folder: Path) -> tuple[int, list[str]]:
    """(files re-derived, those that differ from or are missing in ``folder``)."""
    df = read_summary(folder / "summary.csv")
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        write_tables(df, out / "tables")
        write_hypotheses(df, out)
        write_claims(df, out)
        files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
        bad = [str(f) for f in files if not (folder / f).exists() or not filecmp.cmp(folder / f, out / f, shallow=False)]
    return len(files), bad


def main(argv: list[str]) -> int:
    folders = [Path(a) for a in argv] or sorted(p for p in (ROOT / "results").iterdir() if (p / "summary.csv").exists())
    failed = 0
    for folder in folders:
        n, bad = differing(folder)
        print(f"{folder}: {n} files re-derived, {len(bad)} differ{': ' + ', '.join(bad) if bad else ''}")
        failed += bool(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
