"""Model-selection rules side by side: the oracle's held-out share, what each rule picks, that the
rules never change the primary numbers, and the verdicts under each rule in the reports."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.analysis.rules import evaluate_rules, rule_frame
from benchmark.engine.batches import ArraySet
from benchmark.engine.budgets import get_budget
from benchmark.engine.job import run_job
from benchmark.engine.plan import Sweep
from benchmark.engine.selection import ORACLE_SHARE, OracleRule, oracle_mask, split_targets
from benchmark.engine.train import train
from benchmark.record.summary import build_summary
from benchmark.record.vocabulary import SELECTION_COLUMNS
from benchmark.reports.rules import rules_markdown
from benchmark.analysis.hypotheses import evaluate_all
from models import create_model

THREE_EPOCHS = dataclasses.replace(get_budget("smoke"), name="smoke3", epochs=3, patience=3, selection="last")


@pytest.fixture(scope="module")
def by_id(by_domain):
    return {s.id: s for ss in by_domain.values() for s in ss}


def test_oracle_mask_holds_out_a_fixed_share_by_id_whatever_the_order():
    ids = [f"cell{i}" for i in range(20)]
    m = oracle_mask(ids)
    assert m.sum() == round(ORACLE_SHARE * 20) == 4
    shuffled = ids[::-1]
    assert {i for i, k in zip(shuffled, oracle_mask(shuffled)) if k} == {i for i, k in zip(ids, m) if k}
    assert oracle_mask(ids[:3]).sum() == 1  # at least one
    assert not oracle_mask(["only"]).any()  # nothing would be left to score


class _Scripted(torch.nn.Module):
    """Stands in for a model: the oracle only calls predict on it, which we replace."""


def test_oracle_picks_the_best_candidate_epoch_per_target_and_keeps_only_those_weights(monkeypatch):
    scores = {"a": [0.2, 0.9, 0.5, 0.7], "b": [0.1, 0.3, 0.8, 0.4]}  # per epoch
    held = {"a": None, "b": None}
    epoch_now = {"e": 0}
    monkeypatch.setattr("benchmark.engine.selection.TensorSet.upload", lambda data, device: None)
    monkeypatch.setattr("benchmark.engine.selection.predict", lambda model, data, device, on_device=None: data)
    monkeypatch.setattr("benchmark.engine.selection.selection_metrics", lambda pred, task: {})
    it = iter([])

    def fake_score(_):
        return next(it)
    monkeypatch.setattr("benchmark.engine.selection.selection_score", fake_score)
    model = torch.nn.Linear(1, 1)
    oracle = OracleRule(held, "multitask", torch.device("cpu"), every=2)
    for e in range(4):
        epoch_now["e"] = e
        with torch.no_grad():
            model.weight.fill_(e)
        candidate = (e + 1) % 2 == 0
        it = iter([scores["a"][e], scores["b"][e]] if candidate else [])
        oracle.after_epoch(e, model)
    it = iter([])
    oracle.after_epoch(3, model, last=True)  # already scored: nothing again
    # candidates are epochs 1 and 3: a prefers 1 (0.9), b prefers 3 (0.4 > 0.3)
    assert {k: e for k, (_, e) in oracle.best.items()} == {"a": 1, "b": 3}
    assert sorted(oracle.weights) == [1, 3]
    assert oracle.weights[1]["weight"].item() == 1 and oracle.weights[3]["weight"].item() == 3


def test_split_targets_partitions_each_target():
    n = 10
    data = ArraySet([f"c{i}" for i in range(n)], ["d"] * n, np.zeros((n, 4, 4, 3), np.uint8),
                    np.zeros((n, 4, 4), np.uint8), np.ones(n, bool), np.zeros(n, np.int64))
    held, rest = split_targets({"t": data})
    assert len(held["t"]) == 2 and len(rest["t"]) == 8
    assert not set(held["t"].ids) & set(rest["t"].ids)


def test_the_oracle_observer_changes_no_primary_number(tmp_path, by_id):
    (job, split), = Sweep("cross_stain_synthetic", ["sg_cldff"], [0], THREE_EPOCHS, tmp_path).plan().jobs
    sets = {n: ArraySet.from_samples([by_id[i] for i in ids], n) for n, ids in (("train", split.train), ("val", split.val))}
    target = ArraySet.from_samples([by_id[i] for i in split.targets[0].ids], "t")
    results = []
    for observer in (None, OracleRule({"t": target}, split.task, torch.device("cpu"), every=1)):
        torch.manual_seed(0)
        model = create_model("sg_cldff", num_classes=5, img_size=64)
        r = train(model, sets["train"], sets["val"], THREE_EPOCHS, 0, device=torch.device("cpu"), progress=False,
                  observer=observer)
        results.append(r)
    a, b = results
    assert a.history == b.history and a.val_metrics == b.val_metrics
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert set(a.candidates) == {"train_val", "last"} and a.candidates["last"][0] == 2


def test_a_job_records_every_rule_per_target_and_the_summary_has_their_columns(tmp_path, by_id):
    (job, split), = Sweep("cross_stain_synthetic", ["sg_cldff"], [0], THREE_EPOCHS, tmp_path).plan().jobs
    folder = run_job(job, split, by_id, tmp_path, device=torch.device("cpu"), progress=False)
    m = json.loads((folder / "metrics.json").read_text())
    sel = m["train"]["selection"]
    assert sel["primary"] == "last" and sel["oracle_share"] == ORACLE_SHARE
    for name, t in m["targets"].items():
        rules = t["metrics"]["selection"]
        assert set(rules) == {"train_val", "last", "oracle"}
        assert rules["last"]["epoch"] == 2
        assert rules["train_val"]["epoch"] == int(np.nanargmax([h["val_score"] for h in m["train"]["history"]]))
        assert rules["oracle"]["epoch"] == 2  # smoke3 with ORACLE_EVERY 5: the last epoch is the one candidate
        # the primary rule is `last`, so its held-out-share score comes from the same weights as the job's own
        assert rules["oracle"]["iou"] == pytest.approx(rules["last"]["iou"])
    df = build_summary(tmp_path)
    assert df[list(SELECTION_COLUMNS)].notna().all().all()


def _rule_df(gain_last: float) -> pd.DataFrame:
    """Two models, 5 seeds, one shifted target: H1 holds under train_val (+5 IoU points) and, under
    last, holds or not depending on ``gain_last``."""
    rows = []
    for seed in range(5):
        for model, base in (("sg_cldff", 0.70), ("sg_cldff_no_align", 0.65)):
            gain = 0.0 if model == "sg_cldff_no_align" else 1.0
            for target, kind in (("in_domain", "none"), ("restain:x", "restain")):
                noise = 0.003 * seed * gain  # per-seed differences with some spread
                rows.append({"protocol": "cross_stain", "budget": "cpu", "treatment": "none", "model": model,
                             "display": model, "source": "s", "seed": seed, "job_id": f"{model}{seed}",
                             "split_hash": f"h{seed}", "target": target, "domain": "d", "target_kind": kind,
                             "target_params": "{}", "severity": np.nan, "shifted": target != "in_domain",
                             "evaluated": False, "n": 10, "iou": base + noise, "macro_f1": 0.5,
                             "iou__train_val": base + noise, "macro_f1__train_val": 0.5,
                             "iou__last": 0.65 + gain * gain_last + noise, "macro_f1__last": 0.5,
                             "iou__oracle": base + 0.1 + noise, "macro_f1__oracle": 0.5})
    return pd.DataFrame(rows)


def test_verdicts_under_each_rule_and_where_the_rule_changes_one():
    same = evaluate_rules(_rule_df(0.05))
    assert set(same.reports) == {"train_val", "last", "oracle"} and same.changed == []
    flip = evaluate_rules(_rule_df(0.0))
    assert any(c.startswith("cross_stain/cpu/none H1: train_val SUPPORTED, last RULED OUT") for c in flip.changed)
    lines = "\n".join(rules_markdown(evaluate_all(_rule_df(0.0)), flip))
    assert "| cross_stain/cpu | H1 | SUPPORTED" in lines and "The rule changes a verdict" in lines


def test_results_from_before_the_rules_say_so():
    df = _rule_df(0.05).assign(**{c: np.nan for c in ("iou__train_val", "macro_f1__train_val", "iou__last",
                                                       "macro_f1__last", "iou__oracle", "macro_f1__oracle")})
    assert rule_frame(df, "last") is None
    text = "\n".join(rules_markdown(evaluate_all(df), evaluate_rules(df)))
    assert "before the selection rules were recorded" in text


def test_a_hypothesis_on_a_metric_the_rules_do_not_score_keeps_only_its_primary_verdict():
    """H4 is on accuracy, which no rule scores: under a rule it must not borrow the primary weights'
    accuracy (it did, and showed the primary verdict in every rule's column)."""
    rows = []
    for seed in range(5):
        for model, acc in (("sg_cldff", 0.90), ("sg_cldff_no_cldff", 0.80)):
            rows.append({"protocol": "within_dataset", "budget": "cpu", "treatment": "none", "model": model,
                         "display": model, "source": "bccd", "seed": seed, "job_id": f"{model}{seed}",
                         "split_hash": f"h{seed}", "target": "in_domain", "domain": "d", "target_kind": "none",
                         "target_params": "{}", "severity": np.nan, "shifted": False, "evaluated": False,
                         "n": 10, "accuracy": acc + 0.004 * seed * (model == "sg_cldff"), "iou": 0.9,
                         "macro_f1": 0.5, **{f"{m}__{r}": v for r in ("train_val", "last", "oracle")
                                              for m, v in (("iou", 0.9), ("macro_f1", 0.5))}})
    df = pd.DataFrame(rows)
    primary = evaluate_all(df)
    h4 = {ev.name: ev for ex in primary.experiments for ev in ex.evaluations}["H4"]
    assert h4.verdict == "SUPPORTED"
    assert np.isnan(rule_frame(df, "last")["accuracy"]).all()
    rules = evaluate_rules(df)
    for report in rules.reports.values():
        assert {ev.name: ev for ex in report.experiments for ev in ex.evaluations}["H4"].verdict == "NOT EVALUATED"
    table = "\n".join(rules_markdown(primary, rules))
    assert "| within_dataset/cpu | H4 | SUPPORTED (+" in table and table.count("| n/a") == 3
    assert rules.changed == []
