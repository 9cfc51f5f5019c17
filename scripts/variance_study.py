"""Where the seed-to-seed spread of the hypothesis tests comes from, and what removes it.

    python scripts/variance_study.py --setting local [--protocol cross_stain] [--sources zheng_d1]
        [--seeds 0-4] [--models sg_cldff,sg_cldff_no_align,sg_cldff_no_cldff] [--out build/variance]

Each setting is one training configuration (SG-CLDFF decoder, cpu-budget schedule, selection rule)
run through the ordinary runner into ``<out>/<setting>/<protocol>`` (so it resumes), then the
figures the verdicts hang on are printed: per model, in-domain and shifted IoU / macro-F1 (mean
and SD over seeds) with the predicted-to-true WBC area ratio; per hypothesis, the per-seed paired
differences, their mean and SD, and the verdict, computed by ``benchmark.analysis.hypotheses`` exactly as
``hypotheses.md`` does (so the figures quoted in docs/decisions.md are the report's).
"""
from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np

from benchmark.engine.budgets import get_budget
from benchmark.analysis.hypotheses import evaluate_all
from benchmark.record.metrics import rle_to_mask
from benchmark.engine.plan import Sweep
from benchmark.engine.sweep import default_workers, run_sweep
from benchmark.record.jobs import JobConfig, completed_job_dirs
from benchmark.record.summary import build_summary

SETTINGS: dict[str, tuple[dict, dict]] = {
    # name: (SG-CLDFF model kwargs, cpu-budget overrides); "fused" is the code before issue 9
    "fused": ({"decoder": "fused"}, {"selection": "best"}),
    "local": ({"decoder": "local"}, {"selection": "best"}),
    "local_last": ({"decoder": "local"}, {"selection": "last"}),
    "fused_last": ({"decoder": "fused"}, {"selection": "last"}),
    "local_last_128": ({"decoder": "local"}, {"selection": "last", "img_size": 128}),
    # what else ties SG-CLDFF to the training stain (issue 9, section 4): norm statistics, SE
    "local_last_gn": ({"decoder": "local", "norm": "group"}, {"selection": "last"}),
    "local_last_nose": ({"decoder": "local", "squeeze_excite": False}, {"selection": "last"}),
}


def _seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def area_ratio(job_dir: Path) -> dict[str, float]:
    """Per target: sum of predicted WBC pixels / sum of true WBC pixels over images with a mask."""
    pred, true = {}, {}
    with gzip.open(job_dir / "predictions.jsonl.gz", "rt") as f:
        for line in f:
            r = json.loads(line)
            if r["pred_mask"] is None or r["true_mask"] is None:
                continue
            pred[r["target"]] = pred.get(r["target"], 0) + int((rle_to_mask(r["pred_mask"]) > 0).sum())
            true[r["target"]] = true.get(r["target"], 0) + int((rle_to_mask(r["true_mask"]) > 0).sum())
    return {t: pred[t] / true[t] for t in pred if true[t]}


def report(out: Path) -> None:
    df = build_summary(out)
    ratios = {}
    for job in completed_job_dirs(out):
        model = JobConfig.read(job).model
        for target, r in area_ratio(job).items():
            ratios.setdefault(model, []).append((target == "in_domain", r))
    print(f"\n{out}: {df['job_id'].nunique()} jobs")
    print("| model | IoU in-domain | IoU shifted | F1 in-domain | F1 shifted | area ratio in / shifted |")
    print("|:--|--:|--:|--:|--:|--:|")
    for model, g in df.groupby("model"):
        cells = []
        for metric in ("iou", "macro_f1"):
            for shifted in (False, True):
                s = g[g["shifted"] == shifted].groupby(["seed", "source"])[metric].mean().groupby("seed").mean()
                cells.append("n/a" if s.isna().all() else f"{100 * s.mean():.1f} ± {100 * s.std(ddof=1):.1f}")
        r = ratios.get(model, [])
        ind = [x for flag, x in r if flag]
        sh = [x for flag, x in r if not flag]
        cells.append(f"{np.mean(ind):.2f} / {np.mean(sh):.2f}" if ind and sh else "n/a")
        print(f"| {model} | " + " | ".join(cells) + " |")
    for ex in evaluate_all(df).experiments:  # the hypotheses exactly as the report decides them
        for ev in ex.evaluations:
            if ev.test is None:
                continue
            d = [100 * (x - y) for x, y in zip(ev.scores_model, ev.scores_ablation)]
            print(f"{ev.name} ({ev.model} - {ev.ablation}, {ev.metric}): per seed {', '.join(f'{x:+.2f}' for x in d)}; "
                  f"mean {100 * ev.test['mean_diff']:+.2f}, SD {100 * ev.test['sd_diff']:.2f} points over "
                  f"{ev.test['n']} seeds; {ev.verdict}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setting", required=True, choices=sorted(SETTINGS))
    p.add_argument("--protocol", default="cross_stain")
    p.add_argument("--sources", default="zheng_d1")
    p.add_argument("--seeds", default="0-4")
    p.add_argument("--models", default="sg_cldff,sg_cldff_no_align,sg_cldff_no_cldff,constant_mask")
    p.add_argument("--out", default="build/variance")
    p.add_argument("--jobs", type=int, default=default_workers())
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    model_kwargs, overrides = SETTINGS[args.setting]
    out = Path(args.out) / args.setting / args.protocol
    if not args.report_only:
        budget = dataclasses.replace(get_budget("cpu"), **overrides)
        sweep = Sweep(args.protocol, args.models.split(","), _seeds(args.seeds), budget, out,
                      sources=args.sources.split(","), model_kwargs=model_kwargs)
        run_sweep(sweep, workers=args.jobs)
    report(out)


if __name__ == "__main__":
    main()
