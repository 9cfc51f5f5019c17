"""Does a committed results folder come back bit for bit on this machine? Reruns one trained job
of each folder (seed 0, the first trained model and source of its summary, untreated unless the
folder has only treated rows) from this checkout into a scratch folder, then matches the rows with
``compare``'s rule (job id and target; every metric equal, NaN = NaN). Exit status 1 when a shared
row differs or no job is shared.

    .venv/bin/python scripts/rerun_check.py results/cross_stain results/cross_scanner ...
    .venv/bin/python scripts/rerun_check.py results/cross_stain --model sg_cldff_no_align --source zheng_d2

Run it from a fresh clone (``git clone``, ``make install``) to check what the README promises; each
job takes the minutes its budget takes (about 2-3 min at the cpu budget on one core, 10 at cpu128).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.analysis.compare import compare  # noqa: E402
from benchmark.record.summary import read_summary  # noqa: E402
from benchmark.record.vocabulary import NO_TREATMENT  # noqa: E402
from core.study import REFERENCE_MODELS  # noqa: E402


def _job_of(folder: Path, model: str | None, source: str | None) -> dict:
    df = read_summary(folder / "summary.csv")
    rows = df[(df["seed"] == 0) & ~df["model"].isin(REFERENCE_MODELS) & ~df["evaluated"]]
    rows = rows[rows["model"] == model] if model else rows
    rows = rows[rows["source"] == source] if source else rows
    if rows.empty:
        raise SystemExit(f"{folder}: no trained seed-0 job{f' of {model}' if model else ''}"
                         f"{f' from {source}' if source else ''} in its summary.csv")
    untreated = rows[rows["treatment"] == NO_TREATMENT]
    first = (untreated if not untreated.empty else rows).iloc[0]
    return {k: str(first[k]) for k in ("protocol", "model", "treatment", "source", "budget")}


def check(folder: Path, model: str | None, source: str | None) -> bool:
    job = _job_of(folder, model, source)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / folder.name
        cmd = [sys.executable, "-m", "benchmark", "run", "--protocol", job["protocol"], "--models", job["model"],
               "--treatments", job["treatment"], "--sources", job["source"], "--budget", job["budget"],
               "--seeds", "1", "--jobs", "1", "--out", str(out)]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{folder}: the rerun failed:\n{done.stderr}", file=sys.stderr)
            return False
        subprocess.run([sys.executable, "-m", "benchmark", "report", "--out", str(out)], cwd=ROOT, check=True,
                       capture_output=True)
        c = compare(read_summary(folder / "summary.csv"), read_summary(out / "summary.csv"))
    what = f"{job['model']} ({job['treatment']}) from {job['source']}, seed 0, budget {job['budget']}"
    print(f"{folder}: {what} (+ the floors): {c.identical_rows} of {c.shared_rows} shared rows bit-identical "
          f"({time.perf_counter() - t0:.0f} s)")
    return c.shared_rows > 0 and c.identical_rows == c.shared_rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--model")
    p.add_argument("--source")
    args = p.parse_args()
    ok = [check(f, args.model, args.source) for f in args.folders]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
