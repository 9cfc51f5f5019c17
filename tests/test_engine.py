"""Training engine and runner: determinism, NaN handling, job ids, atomic job dirs, resume."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from benchmark.engine.batches import ArraySet
from benchmark.engine.budgets import get_budget
from core.errors import BenchmarkError
from benchmark.engine.job import run_job
from benchmark.engine.plan import Job, Sweep, is_done
from benchmark.engine.sweep import run_sweep
from benchmark.record.jobs import completed_job_dirs
from benchmark.record.summary import build_summary
from benchmark.engine.train import class_weights, predict, score_predictions, train
from models import create_model, list_models
from models.base import ModelOutput, WBCModel
from protocols import split as split_types

PROTOCOL = "cross_stain_synthetic"
SMOKE = get_budget("smoke")



@pytest.fixture(scope="module")
def by_id(by_domain):
    return {s.id: s for ss in by_domain.values() for s in ss}


def _sweep(out, models=("sg_cldff",), seeds=(0,)):
    return Sweep(PROTOCOL, list(models), list(seeds), SMOKE, out)


def test_class_weights_inverse_frequency_clipped_and_zero_for_absent():
    w = class_weights(np.array([0] * 90 + [1] * 9 + [2] + [-1] * 5))
    assert w[3] == 0 and w[4] == 0
    assert w[0] == pytest.approx(100 / (3 * 90))
    assert w[1] == pytest.approx(100 / (3 * 9))
    assert w[2] == 10.0  # 100/3 clipped


def test_same_seed_gives_identical_metrics_on_cpu(tmp_path, by_id):
    (job, split), = _sweep(tmp_path / "a").plan().jobs
    a = run_job(job, split, by_id, tmp_path / "a", device=torch.device("cpu"), progress=False)
    b = run_job(job, split, by_id, tmp_path / "b", device=torch.device("cpu"), progress=False)
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert ma["targets"] == mb["targets"]
    assert ma["train"]["history"] == mb["train"]["history"]
    targets = ma["targets"]
    assert {"in_domain", "hed:0.3"} <= set(targets) and any(t.startswith("restain:") for t in targets)
    assert targets["in_domain"]["metrics"]["iou"] is not None


def test_job_id_depends_on_result_relevant_config_only(tmp_path):
    base = Job(PROTOCOL, "sg_cldff", "synth_a", 0, SMOKE, "abc")
    assert base.id == Job(PROTOCOL, "sg_cldff", "synth_a", 0, SMOKE, "abc").id
    assert base.id != Job(PROTOCOL, "sg_cldff", "synth_a", 1, SMOKE, "abc").id
    assert base.id != Job(PROTOCOL, "sg_cldff", "synth_a", 0, get_budget("cpu"), "abc").id
    assert base.id != Job(PROTOCOL, "sg_cldff", "synth_a", 0, SMOKE, "abd").id
    assert base.id != Job(PROTOCOL, "sg_cldff_no_align", "synth_a", 0, SMOKE, "abc").id
    recropped = Job(PROTOCOL, "sg_cldff", "synth_a", 0, SMOKE, "abc", data_versions={"synthetic": "v2"})
    assert recropped.id != Job(PROTOCOL, "sg_cldff", "synth_a", 0, SMOKE, "abc", data_versions={"synthetic": "v1"}).id


def test_a_sweep_stamps_the_crop_versions_of_its_datasets(tmp_path):
    from wbcdata.datasets import dataset_spec

    (job, _), = _sweep(tmp_path).plan().jobs
    assert job.config()["data_versions"] == {"synthetic": dataset_spec("synthetic").cache_version}


def test_resume_skips_done_jobs_and_redoes_incomplete_ones(tmp_path, capsys):
    out = tmp_path / "res"
    sweep = _sweep(out, models=("sg_cldff", "sg_cldff_no_align"))
    first = run_sweep(sweep)
    assert len(first) == 2 and all(is_done(d) for d in first)
    uninterrupted = build_summary(out)
    assert run_sweep(sweep) == []  # everything done: nothing re-run
    # simulate a crash: one job dir loses its done marker, and a temp dir is left behind
    (first[0] / "done").unlink()
    (out / "jobs" / ".leftover.tmp-1").mkdir()
    assert len(completed_job_dirs(out)) == 1
    redone = run_sweep(sweep)
    assert [d.name for d in redone] == [first[0].name]
    assert len(completed_job_dirs(out)) == 2
    pd.testing.assert_frame_equal(build_summary(out), uninterrupted)  # same tables as without the crash


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(BenchmarkError, match="unknown model 'sg_cldf'.*valid models"):
        _sweep(tmp_path, models=("sg_cldf",)).plan()


class _NaNModel(WBCModel):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 5)

    def forward(self, x):
        return ModelOutput(self.lin(x.mean((2, 3))), None)

    def loss(self, out, batch):
        return out.class_logits.sum() * float("nan"), {"ce": float("nan")}


def test_nan_loss_stops_with_a_clear_error(by_domain):
    samples = next(iter(by_domain.values()))[:8]
    data = ArraySet.from_samples(samples, "toy")
    with pytest.raises(BenchmarkError, match="non-finite loss.*epoch 0 step 0"):
        train(_NaNModel(), data, data, SMOKE, seed=0, progress=False)


def test_job_failing_after_training_leaves_no_job_directory(tmp_path, by_id):
    (job, split), = _sweep(tmp_path).plan().jobs
    bad = split_types.TestTarget("bad", "x", split.targets[0].ids, {"kind": "sepia"})
    broken = dataclasses.replace(split, targets=split.targets + (bad,))
    with pytest.raises(BenchmarkError, match="unknown transform kind 'sepia'"):
        run_job(job, broken, by_id, tmp_path, progress=False)
    assert list((tmp_path / "jobs").iterdir()) == []


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_trains_and_predicts_through_the_engine(name, by_domain):
    """Registry-driven: one smoke epoch of the real engine, then prediction, for every model."""
    samples = next(iter(by_domain.values()))[:16]
    data = ArraySet.from_samples(samples, "toy")
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, img_size=SMOKE.img_size)
    result = train(model, data, data, SMOKE, seed=0, progress=False)
    scores = score_predictions(predict(model, data, torch.device("cpu")), "multitask")
    assert result.best_epoch == 0
    assert (scores["macro_f1"] is None) == (not model.has_classifier)
    assert (scores["iou"] is None) == (not model.has_segmenter)


def test_selection_last_keeps_the_final_epoch_and_best_keeps_the_best(by_domain):
    samples = next(iter(by_domain.values()))[:16]
    data = ArraySet.from_samples(samples, "toy")
    budget = dataclasses.replace(SMOKE, epochs=3, patience=3)
    picked = {}
    for selection in ("best", "last"):
        torch.manual_seed(0)
        result = train(create_model("unet", img_size=SMOKE.img_size), data, data,
                       dataclasses.replace(budget, selection=selection), seed=0, progress=False)
        scores = [h["val_score"] for h in result.history]
        picked[selection] = (result.best_epoch, scores)
    assert picked["last"][0] == 2
    best_epoch, scores = picked["best"]
    assert scores == picked["last"][1]  # same trajectory, only the kept weights differ
    assert best_epoch == int(np.argmax(scores))


def test_unknown_selection_is_a_clear_error():
    with pytest.raises(BenchmarkError, match="unknown selection 'median'.*valid: best, last"):
        dataclasses.replace(SMOKE, selection="median")


def test_more_seeds_on_an_existing_folder_trains_only_the_new_ones(tmp_path):
    """`SEEDS=N` on a results folder made with fewer seeds adds seeds by resume."""
    out = tmp_path / "res"
    first = run_sweep(_sweep(out, models=("classical",), seeds=(0,)), log=lambda _: None)
    added = run_sweep(_sweep(out, models=("classical",), seeds=(0, 1)), log=lambda _: None)
    assert [d.name.split("__")[2] for d in first] == ["seed0"]
    assert [d.name.split("__")[2] for d in added] == ["seed1"]
    assert sorted(build_summary(out)["seed"].unique()) == [0, 1]
