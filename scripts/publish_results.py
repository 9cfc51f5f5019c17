"""Publish a finished run as a committed reference folder: report and decide it from its job
folders, then copy every file but ``jobs/`` into ``results/<name>`` (files the run no longer makes
are removed there), so that the committed folder is exactly what ``report`` wrote.

    .venv/bin/python scripts/publish_results.py runs/cross_scanner results/cross_scanner

The split manifests and dataset records are compared first: a run whose splits differ from the
committed ones is refused (its rows would not be the committed protocol's). Maintainers only: a
user's run stays in ``runs/``, and ``compare`` checks it against the reference.
"""
from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and "jobs" not in p.relative_to(root).parts}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    run, target = Path(argv[0]), Path(argv[1])
    for command in ("report", "hypotheses"):
        subprocess.run([sys.executable, "-m", "benchmark", command, "--out", str(run)], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    made, kept = _files(run), _files(target) if target.exists() else set()
    changed_splits = [str(f) for f in made & kept if f.parts[0] == "splits"
                      and not filecmp.cmp(run / f, target / f, shallow=False)]
    if changed_splits:
        print(f"refused: split manifests differ from the committed ones: {', '.join(changed_splits[:5])}")
        return 1
    for f in sorted(kept - made):
        (target / f).unlink()
    for f in sorted(made):
        (target / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / f, target / f)
    print(f"{target}: {len(made)} files from {run} ({len(kept - made)} removed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
