"""Does a rerun reproduce a results folder? Two folders of the same sweep, job by job and verdict by verdict.

A job id hashes what decides a job's numbers (protocol, model, source, seed, budget, options, split),
never the machine, so the same job run on two machines has one id. :func:`compare` matches the
rows of two ``summary.csv`` files on (job id, target) and says:

- whether they are bit-identical (the promise for the same lock on the same kind of CPU);
- how far they drift otherwise, per model and target kind (in points), since other hardware
  changes the floating-point order of a chaotic training run;
- whether the hypotheses reach the same verdict on each seed set, and whether the mean
  differences agree within their one-sided 95% bounds: the promise for other hardware.

Only jobs both folders hold count, so a partial rerun compares on what it has.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.analysis.hypotheses import NOT_EVALUATED, evaluate_all
from benchmark.analysis.stats import POINTS_PER_UNIT, pts
from benchmark.record.jobs import read_json
from benchmark.record.summary import read_summary
from benchmark.record.vocabulary import IN_DOMAIN, METRICS, NO_SHIFT, NO_TREATMENT, PER_CLASS_F1
from core.errors import BenchmarkError

DRIFT_METRICS: tuple[str, ...] = ("iou", "macro_f1")
"""The metrics the hypotheses and the main table are decided on."""
_KEY = ["job_id", "target"]


def parse_seed_sets(text: str) -> list[list[int]]:
    """``"0-4,5-9,12"`` -> [[0..4], [5..9], [12]]; a malformed range is an error naming it."""
    sets = []
    for part in (p.strip() for p in text.split(",")):
        lo, _, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise BenchmarkError(f"seed set {part!r} is not a seed or a range like 0-4 (in {text!r})") from None
        if last < first:
            raise BenchmarkError(f"seed set {part!r} runs backwards (in {text!r})")
        sets.append(list(range(first, last + 1)))
    return sets


def _seed_label(seeds: list[int]) -> str:
    return f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ",".join(map(str, seeds))


@dataclass
class Comparison:
    shared_rows: int
    only_reference: int
    only_results: int
    identical_rows: int
    drift: pd.DataFrame
    """Per model x target group x metric: pairs, mean and SD of (results - reference), mean and max |diff|, points."""
    verdicts: pd.DataFrame
    """Per seed set x hypothesis: each folder's verdict, mean and bounds; whether categories and bounds agree."""


def _same(a: pd.Series, b: pd.Series) -> pd.Series:
    return (a == b) | (a.isna() & b.isna())


def _group(row_target: pd.Series, row_kind: pd.Series) -> pd.Series:
    """in_domain, or the target kind (restain, hed, ...), or 'other dataset' for a target scored as it is."""
    return np.where(row_target == IN_DOMAIN, IN_DOMAIN, np.where(row_kind == NO_SHIFT, "other dataset", row_kind))


def _drift(both: pd.DataFrame) -> pd.DataFrame:
    rows = []
    both = both.assign(group=_group(both["target"], both["target_kind"]))
    for (model, group), g in both.groupby(["model", "group"], sort=True):
        for m in DRIFT_METRICS:
            d = (g[f"{m}_res"] - g[f"{m}_ref"]).dropna() * POINTS_PER_UNIT
            if d.empty:
                continue
            rows.append({"model": model, "targets": group, "metric": m, "pairs": len(d), "mean_diff": d.mean(),
                         "sd_diff": d.std(ddof=1) if len(d) > 1 else float("nan"),
                         "mean_abs_diff": d.abs().mean(), "max_abs_diff": d.abs().max()})
    return pd.DataFrame(rows, columns=["model", "targets", "metric", "pairs", "mean_diff", "sd_diff",
                                       "mean_abs_diff", "max_abs_diff"])


def _verdict_rows(df: pd.DataFrame) -> dict[tuple[str, str], dict]:
    """(experiment, hypothesis) -> verdict, seeds, mean paired difference and bounds, as ``hypotheses.md`` decides them."""
    out = {}
    for ex in evaluate_all(df).experiments:
        for ev in ex.evaluations:
            if ev.verdict != NOT_EVALUATED:
                t = ev.test
                out[(f"{ex.protocol}/{ex.budget}" + ("" if ex.treatment == NO_TREATMENT else f"/{ex.treatment}"), ev.name)] = {
                    "n": t["n"], "verdict": ev.verdict, "mean": t["mean_diff"],
                    "lower": t["lower_bound"], "upper": t["upper_bound"]}
    return out


def _verdicts(ref: pd.DataFrame, res: pd.DataFrame, seed_sets: list[list[int]]) -> pd.DataFrame:
    rows = []
    for seeds in seed_sets:
        label = _seed_label(seeds)
        va, vb = (_verdict_rows(df[df["seed"].isin(seeds)]) for df in (ref, res))
        for key in sorted(set(va) | set(vb)):
            x, y = va.get(key), vb.get(key)
            overlap = None if x is None or y is None or None in (x["lower"], x["upper"], y["lower"], y["upper"]) \
                else bool(x["lower"] <= y["upper"] and y["lower"] <= x["upper"])
            rows.append({"experiment": key[0], "hypothesis": key[1], "seeds": label, "n": (x or y)["n"],
                         "reference": x, "results": y,
                         "same_verdict": None if x is None or y is None else x["verdict"] == y["verdict"],
                         "bounds_overlap": overlap})
    return pd.DataFrame(rows, columns=["experiment", "hypothesis", "seeds", "n", "reference", "results",
                                       "same_verdict", "bounds_overlap"])


def compare(ref: pd.DataFrame, res: pd.DataFrame, seed_sets: list[list[int]] | None = None) -> Comparison:
    """Pure function of two summaries; ``seed_sets`` (default: all shared seeds) are decided separately,
    the shared seeds as a whole always last. Each folder is first cut to the jobs both hold."""
    jobs = sorted(set(ref["job_id"]) & set(res["job_id"]))
    if not jobs:
        raise BenchmarkError("the two results folders share no job: a job id hashes protocol, model, source, seed, "
                             "budget, options and split, so they are not runs of the same sweep")
    a, b = ref[ref["job_id"].isin(jobs)], res[res["job_id"].isin(jobs)]
    both = a.merge(b, on=_KEY, suffixes=("_ref", "_res"))
    metrics = list(METRICS + PER_CLASS_F1)
    identical = pd.concat([_same(both[f"{m}_ref"], both[f"{m}_res"]) for m in metrics], axis=1).all(axis=1)
    keys_a, keys_b = set(map(tuple, ref[_KEY].to_numpy())), set(map(tuple, res[_KEY].to_numpy()))
    both = both.rename(columns={"model_ref": "model", "target_kind_ref": "target_kind"})
    shared_seeds = sorted(int(s) for s in set(a["seed"]))
    sets = [s for s in (seed_sets or []) if set(s) & set(shared_seeds)]
    sets = [[x for x in s if x in shared_seeds] for s in sets]
    if shared_seeds not in sets:
        sets.append(shared_seeds)
    return Comparison(len(both), len(keys_a - keys_b), len(keys_b - keys_a), int(identical.sum()),
                      _drift(both), _verdicts(a, b, sets))


def _cell(v: dict | None) -> str:
    if v is None:
        return "—"
    return f"{v['verdict']} {pts(v['mean'])} [{pts(v['lower'])}, {pts(v['upper'])}]"


def _yes(flag: bool | None) -> str:
    return "—" if flag is None else ("yes" if flag else "**no**")


def _environment_line(folder: Path) -> str:
    path = folder / "environments.json"
    if not path.is_file():
        return f"`{folder}`: no environments.json"
    envs = read_json(path)
    parts = [f"{k} ({e.get('cpu')}{', ' + e['gpu'] if e.get('gpu') else ''}, {e.get('threads')} thread(s), "
             f"lock {e.get('lock')}, {e.get('jobs')} jobs)" for k, e in envs.items()]
    return f"`{folder}`: " + "; ".join(parts)


def render_markdown(c: Comparison, reference: Path, results: Path) -> str:
    lines = ["# Reproduction check", "", f"- reference {_environment_line(reference)}",
             f"- results {_environment_line(results)}",
             f"- (job, target) rows in both: {c.shared_rows}; only in the reference: {c.only_reference}; "
             f"only in the results: {c.only_results}",
             f"- bit-identical rows (every metric equal): {c.identical_rows} of {c.shared_rows}", "",
             "## Drift per model and target group (results minus reference, points)", "",
             "| Model | Targets | Metric | Pairs | Mean diff | SD | Mean abs diff | Max abs diff |",
             "|:--|:--|:--|--:|--:|--:|--:|--:|"]
    for r in c.drift.itertuples(index=False):
        sd = "—" if np.isnan(r.sd_diff) else f"{r.sd_diff:.2f}"
        lines.append(f"| {r.model} | {r.targets} | {r.metric} | {r.pairs} | {r.mean_diff:+.2f} | {sd} | "
                     f"{r.mean_abs_diff:.2f} | {r.max_abs_diff:.2f} |")
    lines += ["", "## Verdicts per seed set (each set decided alone, Holm within it)", "",
              "Cells: verdict, mean paired difference, one-sided 95% bounds (points).", "",
              "| Experiment | Hypothesis | Seeds | Reference | Results | Same verdict | Bounds overlap |",
              "|:--|:--|:--|:--|:--|:--|:--|"]
    for r in c.verdicts.itertuples(index=False):
        lines.append(f"| {r.experiment} | {r.hypothesis} | {r.seeds} (n={r.n}) | {_cell(r.reference)} | "
                     f"{_cell(r.results)} | {_yes(r.same_verdict)} | {_yes(r.bounds_overlap)} |")
    return "\n".join(lines) + "\n"


def main_compare(reference: Path, results: Path, sets: str | None) -> int:
    """``compare``: prints the Markdown report; writes nothing."""
    seed_sets = parse_seed_sets(sets) if sets else None
    summaries = []
    for folder in (reference, results):
        if not folder.is_dir():
            raise BenchmarkError(f"results folder {folder} does not exist")
        summaries.append(read_summary(folder / "summary.csv"))
    print(render_markdown(compare(*summaries, seed_sets), reference, results), end="")
    return 0
