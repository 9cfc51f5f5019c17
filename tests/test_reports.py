"""Reports from a results folder: golden files of the committed tiny fixture, and the rules behind them.

Regenerate the fixture and its goldens after an intended change with
``python scripts/make_results_fixture.py --update-golden`` and review the diff.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import BenchmarkError
from benchmark.reports.figures import write_png, iou_severity_figure, job_predictions
from benchmark.reports.claims import claims_tables
from benchmark.analysis.intervals import seed_mean_interval
from benchmark.analysis.hypotheses import HYPOTHESES, NOT_EVALUATED, PRIMARY, TREATED, evaluate_all
from benchmark.analysis.rules import evaluate_rules
from benchmark.reports.hypotheses import main_hypotheses, render_markdown
from benchmark.analysis.stats import RULED_OUT, SUPPORTED, UNDECIDED, holm
from benchmark.record.jobs import completed_job_dirs
from benchmark.record.summary import build_summary, read_summary, write_summary
from benchmark.reports.report import main_report
from benchmark.reports.tables import build_tables, main_comparison, per_domain, render_markdown as tables_markdown

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "results_tiny"
GOLDEN = FIXTURE / "golden"


def _load_script():
    spec = importlib.util.spec_from_file_location("make_results_fixture", ROOT / "scripts" / "make_results_fixture.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return _load_script()


@pytest.fixture(scope="module")
def report(tmp_path_factory, script) -> Path:
    """The fixture's summary, tables and hypotheses, built the way the goldens were."""
    out = tmp_path_factory.mktemp("results")
    shutil.copytree(FIXTURE / "jobs", out / "jobs")
    script.build_reports(out)
    return out


@pytest.fixture(scope="module")
def summary(report) -> pd.DataFrame:
    return build_summary(report)


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_reports_match_golden_files(report):
    golden = _files(GOLDEN)
    assert golden, "golden files missing: run scripts/make_results_fixture.py --update-golden"
    assert [p for p in _files(report) if p.parts[0] != "jobs"] == golden
    for rel in golden:
        assert (report / rel).read_bytes() == (GOLDEN / rel).read_bytes(), (
            f"{rel} differs from its golden copy; if intended, regenerate with "
            "`python scripts/make_results_fixture.py --update-golden`"
        )


def test_report_commands_write_everything(tmp_path, capsys):
    """main_report / main_hypotheses on part of the fixture (fewer models keep the figures quick)."""
    keep = ("sg_cldff__", "sg_cldff_no_align__", "resnext_cc__")
    for job in completed_job_dirs(FIXTURE):
        if job.name.startswith(keep) and json.loads((job / "config.json").read_text())["protocol"] == "cross_stain":
            shutil.copytree(job, tmp_path / "jobs" / job.name)
    assert main_report(tmp_path) == 0 and main_hypotheses(tmp_path) == 0
    printed = capsys.readouterr().out
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert figures == sorted(["iou_boxplot__cross_stain__tiny.png", "iou_vs_severity__cross_stain__tiny__hed.png",
                              *[f"{kind}__cross_stain__tiny__{m}.png" for kind in ("roc_pr", "reliability")
                                for m in ("resnext_cc", "sg_cldff", "sg_cldff_no_align")]])
    for name in figures:
        data = (tmp_path / "figures" / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000, name
        assert b"Software" not in data and b"matplotlib" not in data  # no version stamp
        assert name in printed
    assert (tmp_path / "summary.csv").exists() and (tmp_path / "tables" / "main.tex").exists()
    assert "H1: SUPPORTED (mean +" in printed and "H2: NOT EVALUATED (no results for sg_cldff_no_cldff" in printed
    assert "Holm family primary (m = 1): cross_stain/tiny H1" in printed
    claims = (tmp_path / "claims.md").read_text()  # no within_dataset BCCD rows here: every measured cell is "—"
    assert "has no within_dataset BCCD results" in claims and (tmp_path / "claims.tex").exists()


def test_fixture_generator_is_deterministic_and_committed(tmp_path, script):
    script.build_fixture(tmp_path)
    assert _files(tmp_path / "jobs") == _files(FIXTURE / "jobs")
    for rel in _files(FIXTURE / "jobs"):
        assert (tmp_path / "jobs" / rel).read_bytes() == (FIXTURE / "jobs" / rel).read_bytes(), rel


def test_figure_bytes_are_stable(summary, tmp_path):
    colours = {d: (0.2, 0.4, 0.6, 1.0) for d in summary["display"].unique()}
    paths = [write_png(iou_severity_figure(summary, "hed", colours, "t"), tmp_path / f"{i}.png") for i in range(2)]
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_jobs_without_done_and_temp_dirs_are_ignored(summary, tmp_path):
    jobs = FIXTURE / "jobs"
    unfinished = [p for p in jobs.iterdir() if not (p / "done").exists()]
    hidden = [p for p in jobs.iterdir() if p.name.startswith(".")]
    assert len(unfinished) == 1 and len(hidden) == 1 and (hidden[0] / "done").exists()
    assert sorted(summary.loc[summary["display"] == "sg_cldff", "seed"].unique()) == [0, 1, 2]
    assert len(completed_job_dirs(FIXTURE)) == 73 and summary["job_id"].nunique() == 73
    assert sorted(summary.groupby("protocol")["source"].unique().map(sorted).sum()) == ["alt", "bccd", "src", "src",
                                                                                       "src"]
    # the same directory counts once it has its marker: the rule is the marker, nothing else
    shutil.copytree(jobs, tmp_path / "jobs")
    (tmp_path / "jobs" / unfinished[0].name / "done").write_text("now done\n")
    assert 3 in set(build_summary(tmp_path).query("display == 'sg_cldff'")["seed"])


def _cells(md: str, model: str) -> list[str]:
    row = next(line for line in md.splitlines() if line.startswith(f"| {model} |"))
    return [c.strip() for c in row.strip("|").split("|")][1:]


def test_missing_cells_render_dash_and_not_applicable_renders_na(summary):
    md = tables_markdown(main_comparison(summary))
    # in-domain Acc, F1, AUC, IoU, ΔIoU vs floor, then the same shifted: IoU and its gain n/a, no segmenter
    assert [_cells(md, "resnext_cc")[i] for i in (3, 4, 8, 9)] == ["n/a"] * 4
    assert _cells(md, "resnext_cc")[0].endswith("(n=2)")  # fewer seeds than the others: n shown
    no_in_domain = summary[~((summary["display"] == "sg_cldff_no_align") & (summary["target"] == "in_domain"))]
    cells = _cells(tables_markdown(main_comparison(no_in_domain)), "sg_cldff_no_align")
    assert cells[:5] == ["—"] * 5 and all(" [" in c for c in cells[5:])


def test_floors_sort_last_and_the_iou_gain_is_paired_on_seed_and_target(summary):
    summary = summary[summary["protocol"] == "cross_stain"]
    md = tables_markdown(main_comparison(summary))
    models = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ") and "Model" not in line]
    assert models[-2:] == ["constant_mask", "majority_class"]
    assert _cells(md, "constant_mask")[4] == "ref" and _cells(md, "majority_class")[4] == "n/a"
    # by hand: per seed, mean over shifted targets of (sg_cldff IoU - constant_mask IoU on that target)
    shifted = summary[summary["shifted"] & (summary["treatment"] == "none")]
    model, floor = (shifted[shifted["model"] == m].set_index(["seed", "source", "target"])["iou"]
                    for m in ("sg_cldff", "constant_mask"))
    diff = (model - floor).groupby("seed").mean()
    ci = seed_mean_interval(diff.to_numpy())
    assert _cells(md, "sg_cldff")[9] == f"+{100 * diff.mean():.1f} [{100 * ci.low:+.1f}, {100 * ci.high:+.1f}] (n=3)"
    no_floor = tables_markdown(main_comparison(summary[summary["model"] != "constant_mask"]))
    assert _cells(no_floor, "sg_cldff")[4] == "—" and "constant_mask is not in these results" in no_floor
    assert _cells(no_floor, "resnext_cc")[4] == "n/a"


def test_per_domain_worst_of_a_lower_is_better_metric_is_the_highest(summary):
    md = tables_markdown(per_domain(summary, "hd95", "HD95"))
    assert "Worst = target with the highest mean" in md
    means = summary[summary["display"] == "sg_cldff"].groupby("target")["hd95"].mean()
    assert _cells(md, "sg_cldff")[-1].startswith(f"{means.idxmax()} (")
    assert "lowest mean" in tables_markdown(per_domain(summary, "iou", "IoU"))


def test_n_is_stated_once_when_every_cell_has_the_same_seeds(summary):
    variants = summary[summary["model"].str.startswith("sg_cldff") & (summary["treatment"] == "none")]
    md = tables_markdown(main_comparison(variants))
    assert "n = 3 seeds per cell" in md and "(n=" not in md


def test_tables_do_not_depend_on_row_order(summary):
    shuffled = summary.sample(frac=1.0, random_state=7).reset_index(drop=True)
    assert not shuffled["job_id"].equals(summary["job_id"])
    assert build_tables(shuffled) == build_tables(summary)
    assert render_markdown(evaluate_all(shuffled), evaluate_rules(shuffled)) == \
        render_markdown(evaluate_all(summary), evaluate_rules(summary))


def test_summary_csv_round_trips(report, summary):
    back = read_summary(report / "summary.csv")
    pd.testing.assert_frame_equal(back, summary)
    assert build_tables(back) == build_tables(summary)


def _verdicts(df: pd.DataFrame, treatment: str = "none", protocol: str = "cross_stain") -> dict:
    report = evaluate_all(df)
    ex = next(e for e in report.experiments if e.treatment == treatment and e.protocol == protocol)
    return {ev.name: ev for ev in ex.evaluations} | {"families": report.families}


def test_hypotheses_of_the_fixture(summary):
    v = _verdicts(summary)
    assert v["H1"].verdict == SUPPORTED and v["H2"].verdict == UNDECIDED
    assert v["families"] == {PRIMARY: ["cross_stain/tiny H1", "cross_stain/tiny H2", "within_dataset/tiny H3",
                                       "within_dataset/tiny H4"], TREATED: []}
    assert v["H1"].tasks == [f"{s} -> {t}" for s in ("alt", "src") for t in ("restain:a", "hed:0.1", "hed:0.3")]
    assert v["H1"].seeds == [0, 1, 2] and list(v["H1"].per_source["per_source"]) == ["alt", "src"]
    treated = _verdicts(summary, "macenko")
    assert treated["H1"].verdict == NOT_EVALUATED and "sg_cldff_no_align+macenko" in treated["H1"].reason


def test_pooling_weighs_every_source_the_same(summary):
    """Per seed: mean over each source's targets, then over sources, even when sources have unequal targets."""
    unequal = summary[~((summary["source"] == "src") & summary["target"].isin(["hed:0.1", "hed:0.3"]))]
    ev = _verdicts(unequal)["H1"]
    rows = unequal[unequal["protocol"] == "cross_stain"]
    rows = rows[rows["target_kind"].isin(["restain", "hed"]) & (rows["treatment"] == "none")]
    by_source = rows.groupby(["model", "seed", "source"])["iou"].mean().groupby(["model", "seed"]).mean()
    expected = (by_source["sg_cldff"] - by_source["sg_cldff_no_align"]).mean()
    assert ev.test["mean_diff"] == pytest.approx(expected, rel=1e-5)
    assert ev.per_source["pooled"]["mean"] == pytest.approx(expected, rel=1e-5)
    per_source = [s["mean"] for s in ev.per_source["per_source"].values()]
    assert expected == pytest.approx(np.mean(per_source), rel=1e-5)
    task_mean = (rows[rows["model"] == "sg_cldff"].groupby("seed")["iou"].mean()
                 - rows[rows["model"] == "sg_cldff_no_align"].groupby("seed")["iou"].mean()).mean()
    assert abs(expected - task_mean) > 1e-3  # the equal-task mean would differ: the weighting is real


def test_h3_h4_are_decided_on_within_dataset_only(summary):
    cross, within = _verdicts(summary), _verdicts(summary, protocol="within_dataset")
    for name in ("H3", "H4"):
        assert cross[name].verdict == NOT_EVALUATED and "registered for within_dataset only" in cross[name].reason
        assert within[name].verdict in (SUPPORTED, RULED_OUT, UNDECIDED)
        assert within[name].tasks == ["bccd -> in_domain", "src -> in_domain"]
    assert within["H2"].verdict == NOT_EVALUATED and "none of the targets" in within["H2"].reason
    assert within["H1"].verdict == NOT_EVALUATED and "none of the targets" in within["H1"].reason
    h = {x.name: x for x in HYPOTHESES}
    assert (h["H3"].delta, h["H3"].paper, h["H3"].metric) == (0.03, (0.82, 0.76), "iou")
    assert (h["H4"].delta, h["H4"].paper, h["H4"].metric) == (0.0135, (0.958, 0.931), "accuracy")
    renamed = summary.assign(protocol=summary["protocol"].replace("within_dataset", "within_dataset_synthetic"))
    assert _verdicts(renamed, protocol="within_dataset_synthetic")["H3"].verdict == NOT_EVALUATED


def test_hypotheses_markdown_shows_paper_and_per_source(report):
    md = (report / "hypotheses.md").read_text()
    within = md[md.index("## Protocol within_dataset"):]
    h3 = within[within.index("### H3: "):within.index("### H4: ")]
    assert "the paper reports 82.00 for `sg_cldff` and 76.00 without the component, a gap of +6.00" in h3
    assert "Per source" in h3 and "| bccd |" in h3 and "| pooled (the tested mean) |" in h3
    assert "half the paper's reported gap of 6 points" in h3


def test_a_task_without_the_metric_for_a_model_is_left_out(summary):
    no_masks = summary.assign(iou=np.where((summary["protocol"] == "within_dataset") & (summary["source"] == "src"),
                                           np.nan, summary["iou"]))
    ev = _verdicts(no_masks, protocol="within_dataset")["H3"]
    assert ev.tasks == ["bccd -> in_domain"] and "src -> in_domain" in ev.excluded_tasks
    assert ev.verdict != NOT_EVALUATED and ev.seeds == [0, 1, 2]


def test_holm_runs_over_the_folder_in_two_families(summary):
    cs = summary[(summary["protocol"] == "cross_stain") & (summary["treatment"] == "none")
                 & summary["model"].isin(["sg_cldff", "sg_cldff_no_align"])]
    treated = cs.assign(treatment="hed", display=cs["display"] + "+hed")
    report = evaluate_all(pd.concat([summary, treated]))
    assert report.families[TREATED] == ["cross_stain/tiny/hed H1"]
    evs = {(ex.protocol, ex.treatment, ev.name): ev for ex in report.experiments for ev in ex.evaluations}
    primary = {m: evs[(m.split("/")[0], "none", m.split()[-1])] for m in report.families[PRIMARY]}
    raw = {m: min(ev.test["p_shifted"], ev.test["p_below"]) for m, ev in primary.items()}
    for m, p in holm(raw).items():  # one correction over all four untreated verdicts, across protocols
        assert primary[m].decision["p_adjusted"] == pytest.approx(p, rel=1e-5)
        assert primary[m].decision["family_size"] == 4
    hed = evs[("cross_stain", "hed", "H1")]  # alone in its family: not corrected for the primary ones
    assert hed.decision["family_size"] == 1 and hed.family == TREATED
    assert hed.decision["p_adjusted"] == pytest.approx(min(hed.test["p_shifted"], hed.test["p_below"]), rel=1e-5)
    assert "stain treatments, m = 1: cross_stain/tiny/hed H1" in render_markdown(report, evaluate_rules(summary))


def test_a_claim_ruled_out_is_reported_so(summary):
    """No alignment effect at all: H1's claimed 2 points are excluded."""
    key = ["protocol", "source", "seed", "target"]
    full = summary[(summary["model"] == "sg_cldff") & (summary["treatment"] == "none")].set_index(key)["iou"]
    same = summary.set_index(key).index.map(full.get).to_numpy(dtype=float) - 0.001 * summary["seed"].to_numpy()
    df = summary.assign(iou=np.where(summary["model"] == "sg_cldff_no_align", same, summary["iou"]))
    report = evaluate_all(df)
    ev = _verdicts(df)["H1"]
    assert ev.verdict == RULED_OUT and ev.test["upper_bound"] < 0.02
    md = render_markdown(report, evaluate_rules(df))
    assert "### H1: RULED OUT" in md and "a gain of delta or more is excluded" in md and "*Power*: at alpha/4" in md


def _job_dir(root: Path, protocol: str, model: str, source: str, seed: int) -> Path:
    for job in completed_job_dirs(root):
        cfg = json.loads((job / "config.json").read_text())
        if (cfg["protocol"], cfg["model"], cfg.get("treatment", "none"), cfg["source"], cfg["seed"]) == \
                (protocol, model, "none", source, seed):
            return job
    raise AssertionError(f"no fixture job {protocol} {model} {source} seed {seed}")


@pytest.mark.parametrize("model", ["sg_cldff_no_align",  # a hypothesis pair (H1)
                                   "constant_mask"])  # a floor: the tables' gain over it pairs on seed too
def test_jobs_of_one_seed_on_different_splits_are_an_error(tmp_path, summary, model):
    shutil.copytree(FIXTURE / "jobs", tmp_path / "jobs")
    job = _job_dir(tmp_path, "cross_stain", model, "alt", 1)
    cfg = json.loads((job / "config.json").read_text())
    good, cfg["split_hash"] = cfg["split_hash"], "0123456789abcdef"
    (job / "config.json").write_text(json.dumps(cfg))
    same_seed = summary[(summary["protocol"] == "cross_stain") & (summary["source"] == "alt") & (summary["seed"] == 1)]
    other_job = min(set(same_seed["job_id"]) - {cfg["job_id"]})
    assert set(same_seed["split_hash"]) == {good}
    message = (rf"protocol cross_stain, source alt, seed 1: its jobs ran on different splits: split hash "
               rf"0123456789abcdef \(e.g. job {cfg['job_id']}\), split hash {good} \(e.g. job {other_job}\)")
    with pytest.raises(BenchmarkError, match=message):
        build_summary(tmp_path)
    bad = summary.copy()  # the same from a summary.csv: every report reads one of the two
    bad.loc[bad["job_id"] == cfg["job_id"], "split_hash"] = "0123456789abcdef"
    write_summary(bad, tmp_path / "summary.csv")
    with pytest.raises(BenchmarkError, match=message):
        read_summary(tmp_path / "summary.csv")


def test_a_split_is_one_per_protocol_source_and_seed_whatever_the_model_or_treatment(summary):
    """The rule the check enforces holds in the fixture, across models, treatments and floors."""
    assert (summary.groupby(["protocol", "source", "seed"])["split_hash"].nunique() == 1).all()
    assert summary["treatment"].nunique() > 1 and summary["model"].nunique() > 4


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda df: df[df["model"] != "sg_cldff_no_align"], "no results for sg_cldff_no_align"),
        (lambda df: df.assign(iou=np.where(df["model"] == "sg_cldff_no_align", np.nan, df["iou"])), "iou is n/a"),
        (lambda df: df[(df["seed"] == 0) | (df["model"] != "sg_cldff_no_align")], "only 1 seed"),
        (lambda df: df[~df["target_kind"].isin(["restain", "hed"])], "none of the targets the claim needs: cross-stain"),
    ],
)
def test_unevaluable_hypothesis_is_not_evaluated(summary, change, reason):
    v = _verdicts(change(summary))
    assert v["H1"].verdict == NOT_EVALUATED and reason in v["H1"].reason
    assert "cross_stain/tiny H1" not in v["families"][PRIMARY]


def test_hypotheses_markdown_states_the_power_limit_and_the_rule(report):
    md = (report / "hypotheses.md").read_text()
    assert "With 5 seeds this test can only decide a large, steady effect" in md
    assert "the one-sided 95% upper bound is below delta" in md and "corrected separately" in md
    assert "| Seeds for 80% power at the observed mean | Seeds to tell delta from 0 |" in md
    assert "one of the two verdicts comes out with probability up to 2 x 0.05 = 0.1" in md  # the 2 alpha, stated
    assert "**Seeds to tell delta from 0**" in md and "noncentrality √n · delta / SD" in md


def test_seeds_to_tell_delta_from_zero_in_the_table_and_the_verdict(report, summary):
    md = (report / "hypotheses.md").read_text()
    h1 = _verdicts(summary)["H1"]
    n = h1.decision["seeds_delta_vs_zero"]
    assert n is not None and h1.decision["seeds_needed"] != n
    row = next(line for line in md.splitlines() if line.startswith("| cross_stain/tiny | H1 |"))
    assert row.endswith(f"| {n} |")
    assert f"seeds to tell delta from 0 at the observed SD: about {n} seeds would tell a true difference of 2.00" \
           in h1.reason
    assert f"*Verdict*: **{h1.verdict}** — {h1.reason}." in md


def test_claims_table_puts_the_paper_beside_within_dataset_bccd(summary):
    md = tables_markdown(claims_tables(summary))
    ours = summary[(summary["protocol"] == "within_dataset") & (summary["source"] == "bccd")
                   & (summary["model"] == "sg_cldff")].groupby("seed")["iou"].mean()
    row = next(line for line in md.splitlines() if line.startswith("| sg_cldff | IoU |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3:] == ["82.0 ± 1.0", f"{100 * ours.mean():.1f} ± {100 * ours.std():.1f} (n=3)",  # resnext_cc: n=2
                         f"{100 * ours.mean() - 82.0:+.1f}"]
    assert "| resnext_cc | IoU | Table 2 (Luo et al.) | 77.0 ± 2.0 | n/a | n/a |" in md
    assert "Table 3 (ablations) is stated to be on BCCD" in md
    empty = tables_markdown(claims_tables(summary[summary["protocol"] != "within_dataset"]))
    assert "has no within_dataset BCCD results" in empty
    assert "| sg_cldff | IoU | Tables 2, 3 | 82.0 ± 1.0 | — | — |" in empty


def test_tables_and_figures_skip_what_has_no_data(summary, capsys):
    ungraded = summary[summary["severity"].isna() | (summary["target_kind"] == "none")]
    assert isinstance(build_tables(ungraded)["iou_vs_severity"], str)
    assert iou_severity_figure(ungraded, "hed", {}, "t") is None
    no_variants = summary[summary["model"] == "resnext_cc"]
    assert "no SG-CLDFF variant" in build_tables(no_variants)["ablation"]


def test_empty_or_missing_results_folder_is_an_error(tmp_path):
    with pytest.raises(BenchmarkError, match="results folder .*nowhere does not exist"):
        main_report(tmp_path / "nowhere")
    (tmp_path / "jobs" / "m__s__seed0__x").mkdir(parents=True)  # unfinished only
    with pytest.raises(BenchmarkError, match="no completed jobs"):
        main_hypotheses(tmp_path)


def test_corrupt_or_duplicate_jobs_are_errors(tmp_path):
    shutil.copytree(FIXTURE / "jobs", tmp_path / "jobs")
    job = sorted(completed_job_dirs(tmp_path))[0]
    shutil.copytree(job, tmp_path / "jobs" / (job.name + "_copy"))
    with pytest.raises(BenchmarkError, match="several completed jobs"):
        build_summary(tmp_path)
    shutil.rmtree(tmp_path / "jobs" / (job.name + "_copy"))
    (job / "metrics.json").write_text("{not json")
    with pytest.raises(BenchmarkError, match="metrics.json is not valid JSON"):
        build_summary(tmp_path)


def test_corrupt_predictions_are_errors_naming_the_file(tmp_path):
    job = tmp_path / "job"
    shutil.copytree(completed_job_dirs(FIXTURE)[0], job)
    rows = [json.loads(line) for line in gzip.open(job / "predictions.jsonl.gz", "rt")]
    rows[3]["pred_mask"] = {"shape": [4, 4], "values": [0], "counts": [16]}  # another image size
    with gzip.open(job / "predictions.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with pytest.raises(BenchmarkError, match=r"predictions.jsonl.gz line 4, sample .*differ in shape"):
        job_predictions(job)
    (job / "predictions.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(BenchmarkError, match="predictions.jsonl.gz is corrupt"):
        job_predictions(job)
