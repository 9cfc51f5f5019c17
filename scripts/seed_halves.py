"""Do disjoint seed sets reach the same verdicts? The hypotheses of one results folder decided
separately on each seed set and on all of them, from its ``summary.csv`` alone.

    python scripts/seed_halves.py results/cross_stain [--sets 0-4,5-9]

Prints, per hypothesis and seed set: verdict, mean paired difference, per-seed SD, one-sided 95%
bounds and Holm-adjusted decisive p (Holm within the set's own report, as if that set were the
whole folder). A verdict that holds on both halves is not an artefact of which seeds were drawn.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.analysis.compare import parse_seed_sets
from benchmark.analysis.hypotheses import NOT_EVALUATED, evaluate_all
from benchmark.analysis.stats import pts
from benchmark.record.summary import read_summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="results folder holding summary.csv")
    p.add_argument("--sets", default="0-4,5-9", help="comma-separated seed ranges (default 0-4,5-9)")
    args = p.parse_args()
    df = read_summary(args.out / "summary.csv")
    sets = list(zip(args.sets.split(","), parse_seed_sets(args.sets)))
    sets.append(("all", sorted(int(x) for x in df["seed"].unique())))
    print("| Experiment | Hypothesis | Seeds | Verdict | Mean diff | Per-seed SD | One-sided 95% bounds | Holm p |")
    print("|:--|:--|:--|:--|--:|--:|--:|--:|")
    for label, seeds in sets:
        part = df[df["seed"].isin(seeds)]
        if part.empty:
            print(f"| — | — | {label} | no rows | | | | |")
            continue
        for ex in evaluate_all(part).experiments:
            for ev in ex.evaluations:
                if ev.verdict == NOT_EVALUATED:
                    continue
                t, d = ev.test, ev.decision or {}
                bounds = f"[{pts(t['lower_bound'])}, {pts(t['upper_bound'])}]"
                holm = "—" if d.get("p_adjusted") is None else f"{d['p_adjusted']:.3g}"
                print(f"| {ex.protocol}/{ex.budget} | {ev.name} | {label} (n={t['n']}) | {ev.verdict} | "
                      f"{pts(t['mean_diff'])} | {pts(t['sd_diff'], signed=False)} | {bounds} | {holm} |")


if __name__ == "__main__":
    main()
