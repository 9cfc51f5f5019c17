"""Does each committed results folder's report still follow from its summary.csv under this code?

Rebuilds the tables, severity figures, hypotheses and claims of every ``results/*/summary.csv`` into
a scratch folder and compares them byte for byte with the committed files (a check for refactors
that must not change numbers; ``report`` and ``hypotheses`` on a folder without job folders write
the same files in place). Exit status 1 when
any file differs. ``--write`` instead rewrites the differing files in place: for a change of the
reports' code (a new table, a new section), never of the numbers behind them.

    .venv/bin/python scripts/rederive_reports.py [--write] [RESULTS_DIR ...]
"""
from __future__ import annotations

import contextlib
import filecmp
import io
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.record.summary import read_summary  # noqa: E402
from benchmark.reports.claims import write_claims  # noqa: E402
from benchmark.reports.figures import write_figures  # noqa: E402
from benchmark.reports.hypotheses import write_hypotheses  # noqa: E402
from benchmark.reports.tables import write_tables  # noqa: E402


def differing(folder: Path, write: bool = False) -> tuple[int, list[str]]:
    """(files re-derived, those that differ from or are missing in ``folder``); with ``write`` those
    are copied into ``folder``."""
    df = read_summary(folder / "summary.csv")
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        write_tables(df, out / "tables")
        with contextlib.redirect_stdout(io.StringIO()):  # the figures' skip notes
            write_figures(folder, df, out / "figures", from_jobs=False)
        write_hypotheses(df, out)
        write_claims(df, out)
        files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
        bad = [str(f) for f in files if not (folder / f).exists() or not filecmp.cmp(folder / f, out / f, shallow=False)]
        for f in bad if write else []:
            (folder / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / f, folder / f)
    return len(files), bad


def main(argv: list[str]) -> int:
    write = "--write" in argv
    argv = [a for a in argv if a != "--write"]
    folders = [Path(a) for a in argv] or sorted(p for p in (ROOT / "results").iterdir() if (p / "summary.csv").exists())
    failed = 0
    for folder in folders:
        n, bad = differing(folder, write)
        verb = "rewritten" if write else "differ"
        print(f"{folder}: {n} files re-derived, {len(bad)} {verb}{': ' + ', '.join(bad) if bad else ''}")
        failed += bool(bad) and not write
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
