"""What the side-by-side selection rules cost each job of a results folder, from the times its
``metrics.json`` records (``train.selection``): the oracle's scoring during training and the rules'
scoring afterwards, as a share of the job without them (training less the oracle, plus evaluation).

    .venv/bin/python scripts/selection_overhead.py results/cross_scanner

Prints one line per model (median and maximum share over its jobs) and the overall median.
Training-free models (the floors) are left out: they train for 0 s, so any share is meaningless.
"""
from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.record.jobs import completed_job_dirs, read_json  # noqa: E402


def overheads(folder: Path) -> dict[str, list[float]]:
    """model -> the rules' share of each of its jobs (fraction)."""
    out: dict[str, list[float]] = defaultdict(list)
    for job in completed_job_dirs(folder):
        train = read_json(job / "metrics.json")["train"]
        sel = train.get("selection")
        if not sel or not train.get("seconds"):
            continue
        extra = sel["oracle_seconds"] + sel["scoring_seconds"]
        base = train["seconds"] - sel["oracle_seconds"] + train["eval_seconds"]
        out[read_json(job / "config.json")["model"]].append(extra / base)
    return dict(sorted(out.items()))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    shares = overheads(Path(argv[0]))
    if not shares:
        print(f"{argv[0]}: no trained job records the selection rules")
        return 1
    for model, s in shares.items():
        print(f"{model:22s} {len(s):3d} jobs  median {100 * statistics.median(s):5.1f}%  max {100 * max(s):5.1f}%")
    every = [x for s in shares.values() for x in s]
    print(f"{'all':22s} {len(every):3d} jobs  median {100 * statistics.median(every):5.1f}%  max {100 * max(every):5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
