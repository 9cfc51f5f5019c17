"""Train once, evaluate anywhere: the weights a job saves rebuild the model bit for bit, ``evaluate``
scores finished jobs on new targets into separate files and summary rows, refuses jobs it cannot
rebuild with the reason, and an interrupted evaluation leaves every earlier result untouched."""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

import benchmark.engine.evaluate as evaluate_mod
from benchmark.engine.batches import ArraySet, to_batch
from benchmark.engine.budgets import get_budget
from benchmark.engine.checkpoint import (
    CHECKPOINT_FILE, WEIGHTS_FILE, load_checkpoint, restore_treatment, sha256_file, treatment_state, write_checkpoint,
)
from benchmark.cli.main import main
from benchmark.engine.evaluate import EVALUATIONS_DIR, evaluate_results, splits_by_hash
from benchmark.engine.job import run_job, score_target
from benchmark.engine.plan import ENGINE_VERSION, Sweep
from benchmark.engine.sweep import run_sweep
from benchmark.analysis.hypotheses import evaluate_all, to_json
from benchmark.record.jobs import completed_job_dirs
from benchmark.record.summary import build_summary
from benchmark.reports.tables import main_comparison, render_markdown
from benchmark.engine.train import seed_everything, train
from benchmark.engine.treatments import fit_treatment
from core.errors import BenchmarkError
from core.sample import CLASSES
from core.study import REFERENCE_MODELS
from models import create_model
from models.floors import MajorityClass
from protocols.resolve import load_by_domain
from wbcdata.datasets import dataset_spec

PROTOCOL = "within_dataset_synthetic"
SOURCE = "synth_romanowsky"
"""One source of the within-dataset protocol: its jobs have no stain targets, so ``hed`` and
``restain`` are new targets for them."""
MODELS_RUN = ["sg_cldff", *REFERENCE_MODELS]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A finished smoke sweep: SG-CLDFF and the two floors, one seed, one source."""
    out = tmp_path_factory.mktemp("results")
    run_sweep(Sweep(PROTOCOL, MODELS_RUN, [0], get_budget("smoke"), out, sources=[SOURCE]), log=lambda _: None)
    return out


@pytest.fixture
def folder(results, tmp_path) -> Path:
    """A private copy of the finished sweep, for tests that evaluate into it."""
    return Path(shutil.copytree(results, tmp_path / "res"))


def _job(out: Path, model: str) -> Path:
    return next(p for p in completed_job_dirs(out) if p.name.startswith(f"{model}__"))


def _digests(out: Path) -> dict[str, str]:
    """SHA-256 of every file of the folder but the evaluations: what an evaluation must not touch."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and EVALUATIONS_DIR not in p.parts}


def _outputs(model, x: torch.Tensor) -> list:
    model.eval()
    with torch.no_grad():
        out = model(x)
    return [out.class_logits, out.mask_logits, out.saliency]


def test_every_job_saves_a_restorable_checkpoint(results):
    for job in completed_job_dirs(results):
        meta = json.loads((job / CHECKPOINT_FILE).read_text())
        config = json.loads((job / "config.json").read_text())
        assert meta["restorable"] is True, meta.get("reason")
        assert meta["model"] == config["model"] and meta["model_kwargs"] == config["model_kwargs"]
        assert meta["engine_version"] == ENGINE_VERSION and meta["job_id"] == config["job_id"]
        assert meta["img_size"] == 64 and len(meta["classes"]) == 5
        assert meta["treatment"] == {"name": "none", "test_preprocess": None}
        assert sha256_file(job / WEIGHTS_FILE) == meta["weights"]["sha256"]
        assert (job / WEIGHTS_FILE).stat().st_size == meta["weights"]["bytes"]


def test_weights_round_trip_bit_for_bit(by_domain, tmp_path):
    """A trained SG-CLDFF rebuilt from its saved weights gives identical outputs on the same inputs."""
    samples = by_domain[SOURCE]
    train_set, val_set = ArraySet.from_samples(samples[:32], "train"), ArraySet.from_samples(samples[32:48], "val")
    seed_everything(0)
    model = create_model("sg_cldff", num_classes=5, img_size=64)
    train(model, train_set, val_set, get_budget("smoke"), 0, device=torch.device("cpu"), progress=False)
    x = to_batch(val_set.images, val_set.masks, val_set.mask_valid, val_set.labels, torch.device("cpu"))["image"]
    before = _outputs(model, x)
    record = {"model": "sg_cldff", "model_kwargs": {}, "img_size": 64, "engine_version": ENGINE_VERSION, "job_id": "x"}
    none = fit_treatment("none", list(train_set.images))
    assert write_checkpoint(tmp_path, model, record, none, val_set)["restorable"]
    rebuilt, _, _ = load_checkpoint(tmp_path, ENGINE_VERSION)
    after = _outputs(rebuilt, x)
    assert before[0] is not None and before[1] is not None
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(before, after))


def test_macenko_treatment_restores_from_its_record(by_domain):
    images = [s.image for s in by_domain[SOURCE][:12]]
    fitted = fit_treatment("macenko", images)
    state = json.loads(json.dumps(treatment_state(fitted)))  # through JSON, as it is stored
    restored = restore_treatment(state)
    assert all(np.array_equal(fitted.preprocess(im), restored.preprocess(im)) for im in images[:4])


def test_a_macenko_job_restores_its_normalizer_and_reproduces_its_results(by_domain, tmp_path):
    """The fitted template travels as numbers in checkpoint.json; the rebuilt job scores its own
    in-domain target exactly as it did when it ran."""
    import dataclasses

    sweep = Sweep(PROTOCOL, ["sg_cldff"], [0], get_budget("smoke"), tmp_path, sources=[SOURCE])
    job, split = sweep.plan().jobs[0]
    by_id = {s.id: s for ss in by_domain.values() for s in ss}
    job_dir = run_job(dataclasses.replace(job, treatment="macenko"), split, by_id, tmp_path, torch.device("cpu"),
                      progress=False)
    meta = json.loads((job_dir / CHECKPOINT_FILE).read_text())
    assert meta["restorable"] and meta["treatment"]["name"] == "macenko"
    model, treatment, _ = load_checkpoint(job_dir, ENGINE_VERSION)
    target = next(t for t in split.targets if t.name == "in_domain")
    result, records, _ = score_target(model, treatment, [by_id[i] for i in target.ids], target, split.task,
                                   job.budget.explain_images, torch.device("cpu"))
    recorded = json.loads((job_dir / "metrics.json").read_text())["targets"]["in_domain"]
    assert recorded["metrics"].pop("selection")  # the rules side by side exist only for the job's own run
    assert result == recorded
    assert records == [json.loads(line) for line in gzip.open(job_dir / "predictions.jsonl.gz", "rt")]


class _OutsideState(MajorityClass):
    """A model whose fitted state is a Python attribute, not in its state_dict (like xincept_all's XGBoost)."""

    def after_training(self, images, labels, seed, device, masks=None, mask_valid=None) -> None:
        super().after_training(images, labels, seed, device, masks, mask_valid)
        self.offset = 1.0

    def forward(self, x):
        out = super().forward(x)
        out.class_logits = out.class_logits + getattr(self, "offset", 0.0) * torch.arange(5.0)
        return out


def outside_state(num_classes: int = 5, img_size: int = 64) -> _OutsideState:
    """Factory named by dotted path (``test_evaluate:outside_state``)."""
    return _OutsideState(num_classes)


def test_state_outside_the_state_dict_is_not_kept_and_says_why(by_domain, tmp_path):
    data = ArraySet.from_samples(by_domain[SOURCE][:8], "probe")
    model = _OutsideState(5)
    model.set_class_weights(torch.ones(5))
    model.after_training(data.images, data.labels, 0, torch.device("cpu"))
    record = {"model": f"{__name__}:outside_state", "model_kwargs": {}, "img_size": 64,
              "engine_version": ENGINE_VERSION, "job_id": "x"}
    meta = write_checkpoint(tmp_path, model, record, fit_treatment("none", list(data.images)), data)
    assert meta["restorable"] is False and "outside the state_dict" in meta["reason"]
    assert not (tmp_path / WEIGHTS_FILE).exists()
    with pytest.raises(BenchmarkError, match="weights were not kept: a model rebuilt"):
        load_checkpoint(tmp_path, ENGINE_VERSION)


def test_rebuilt_job_reproduces_its_own_in_domain_results(results):
    """Scoring the split's own in-domain target from the checkpoint gives the job's metrics.json and
    predictions exactly: evaluation computes what the runner computed."""
    split = splits_by_hash(results)[json.loads((_job(results, "sg_cldff") / "config.json").read_text())["split_hash"]]
    target = next(t for t in split.targets if t.name == "in_domain")
    by_id = {s.id: s for ss in load_by_domain(PROTOCOL, 64).values() for s in ss}
    torch.set_num_threads(1)
    for model_name in MODELS_RUN:
        job = _job(results, model_name)
        model, treatment, _ = load_checkpoint(job, ENGINE_VERSION)
        config = json.loads((job / "config.json").read_text())
        result, records, _ = score_target(model, treatment, [by_id[i] for i in target.ids], target, config["task"],
                                       config["budget"]["explain_images"], torch.device("cpu"))
        recorded = json.loads((job / "metrics.json").read_text())["targets"]["in_domain"]
        assert recorded["metrics"].pop("selection")  # the rules side by side exist only for the job's own run
        assert result == recorded
        saved = [json.loads(line) for line in gzip.open(job / "predictions.jsonl.gz", "rt")]
        assert records == [r for r in saved if r["target"] == "in_domain"]


def test_evaluate_adds_targets_as_summary_rows_and_resumes(folder, capsys):
    before = build_summary(folder)
    main_table = (folder / "tables" / "main.md").read_text() if (folder / "tables" / "main.md").exists() else None
    assert main(["evaluate", "--results", str(folder), "--targets", "hed,restain"]) == 0
    summary = pd.read_csv(folder / "summary.csv")
    new = summary[~summary["target"].isin(before["target"])]
    # added targets are marked and stay out of the protocol's shifted means and verdicts
    assert new["evaluated"].all() and not summary[summary["target"].isin(before["target"])]["evaluated"].any()
    after = build_summary(folder)
    note = ("Targets added by `evaluate` (hed:0.05, hed:0.1, hed:0.2, hed:0.3, restain:synth_giemsa, "
            "restain:synth_rapid) are not in the shifted mean, which stays the protocol's own: see the per-domain "
            "tables. ")  # the main table names them, and its numbers do not move
    assert note in render_markdown(main_comparison(after))
    assert render_markdown(main_comparison(after)).replace(note, "") == render_markdown(main_comparison(before))
    assert to_json(evaluate_all(after)) == to_json(evaluate_all(before))
    assert main_table is None or (folder / "tables" / "main.md").read_text().replace(note, "") == main_table
    assert sorted(set(new["target"])) == ["hed:0.05", "hed:0.1", "hed:0.2", "hed:0.3",
                                          "restain:synth_giemsa", "restain:synth_rapid"]
    assert len(new) == 6 * len(MODELS_RUN) and new["shifted"].all()
    assert new.loc[new["model"] == "sg_cldff", "iou"].notna().all()
    assert set(new.loc[new["target"] == "hed:0.2", "severity"]) == {0.2}
    assert (folder / "tables" / "main.md").exists()
    job = _job(folder, "sg_cldff")
    record = json.loads((job / EVALUATIONS_DIR / "hed%3A0.1.json").read_text())
    assert record["target"] == "hed:0.1" and record["requested"] == "hed" and record["result"]["n"] > 0
    assert (job / EVALUATIONS_DIR / record["predictions"]).exists()
    out = capsys.readouterr().out
    assert f"scored {6 * len(MODELS_RUN)} (job, target) pair(s)" in out
    assert main(["evaluate", "--results", str(folder), "--targets", "hed"]) == 0
    assert f"scored 0 (job, target) pair(s), {4 * len(MODELS_RUN)} already scored" in capsys.readouterr().out


def test_two_worker_processes_score_as_one(results, folder, tmp_path):
    """Jobs are scored independently, so the worker count changes no number and no prediction."""
    other = Path(shutil.copytree(results, tmp_path / "two"))
    evaluate_results(folder, ["jpeg"], log=lambda _: None)
    assert main(["evaluate", "--results", str(other), "--targets", "jpeg", "--jobs", "2", "--device", "cpu"]) == 0
    for one, two in zip(completed_job_dirs(folder), completed_job_dirs(other)):
        files = sorted(p.name for p in (one / EVALUATIONS_DIR).iterdir())
        assert files == sorted(p.name for p in (two / EVALUATIONS_DIR).iterdir()) and len(files) == 10
        for name in files:
            if name.endswith(".json"):
                assert json.loads((one / EVALUATIONS_DIR / name).read_text())["result"] == \
                    json.loads((two / EVALUATIONS_DIR / name).read_text())["result"]
            else:
                assert gzip.decompress((one / EVALUATIONS_DIR / name).read_bytes()) == \
                    gzip.decompress((two / EVALUATIONS_DIR / name).read_bytes())


def _lab_folder(root: Path, samples) -> Path:
    """A user folder in the documented layout: images, masks (codes 0/1/2) and labels.csv."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["id,class"]
    for i, s in enumerate(samples):
        cv2.imwrite(str(root / "images" / f"cell{i}.png"), cv2.cvtColor(s.image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "masks" / f"cell{i}.png"), s.mask)
        rows.append(f"cell{i},{CLASSES[s.label]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_a_user_dataset_is_scored_whole_by_every_job(folder, by_domain, tmp_path, monkeypatch):
    lab = _lab_folder(tmp_path / "lab", by_domain["synth_giemsa"][:6])
    monkeypatch.setenv("WBC_DATASETS", f"evallab={lab}")
    monkeypatch.setenv("WBC_DATA_DIR", str(tmp_path / "data"))  # its crop cache stays in the test's folder
    before = _digests(folder)
    assert main(["evaluate", "--results", str(folder), "--targets", "evallab"]) == 0
    rows = pd.read_csv(folder / "summary.csv").query("target == 'evallab'")
    assert sorted(rows["model"]) == sorted(MODELS_RUN) and set(rows["n"]) == {6} and set(rows["domain"]) == {"evallab"}
    assert rows.loc[rows["model"] == "sg_cldff", ["iou", "macro_f1"]].notna().all(axis=None)
    record = json.loads((_job(folder, "sg_cldff") / EVALUATIONS_DIR / "evallab.json").read_text())
    assert record["data_versions"] == {"evallab": dataset_spec("evallab").cache_version}
    jobs_before = {k: v for k, v in before.items() if k.startswith("jobs")}
    assert {k: v for k, v in _digests(folder).items() if k.startswith("jobs")} == jobs_before


def test_an_evaluation_that_fails_mid_way_leaves_earlier_results_intact(folder, monkeypatch):
    main(["report", "--out", str(folder)])
    before = _digests(folder)
    calls = {"n": 0}
    real = evaluate_mod.score_target

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed mid-way")
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_mod, "score_target", failing)
    with pytest.raises(RuntimeError, match="killed mid-way"):
        evaluate_results(folder, ["hed"], log=lambda _: None)
    assert _digests(folder) == before  # every job file, summary.csv and the tables byte-identical
    written = sorted(p.name for p in folder.rglob(f"{EVALUATIONS_DIR}/*"))
    assert written == ["hed%3A0.05.json", "hed%3A0.05.predictions.jsonl.gz",
                       "hed%3A0.1.json", "hed%3A0.1.predictions.jsonl.gz"]
    monkeypatch.setattr(evaluate_mod, "score_target", real)
    run = evaluate_results(folder, ["hed"], log=lambda _: None)
    assert len(run.skipped) == 2 and len(run.scored) == 4 * len(MODELS_RUN) - 2


def test_jobs_without_weights_or_of_another_engine_are_refused_by_name(folder, monkeypatch, capsys):
    old = _job(folder, "sg_cldff")
    (old / CHECKPOINT_FILE).unlink()
    (old / WEIGHTS_FILE).unlink()
    assert main(["evaluate", "--results", str(folder), "--targets", "hed"]) == 0
    out = capsys.readouterr().out
    assert f"{old.name} [every target]: no saved weights" in out
    assert "scored 8 (job, target) pair(s)" in out

    monkeypatch.setattr(evaluate_mod, "ENGINE_VERSION", "999")
    assert main(["evaluate", "--results", str(folder), "--targets", "restain"]) == 2
    err = capsys.readouterr().err
    assert "nothing in" in err and "could be scored on restain" in err
    for model in REFERENCE_MODELS:
        assert f"{_job(folder, model).name} [every target]: trained under engine version {ENGINE_VERSION}, " \
               "this code is version 999" in err


def test_a_job_whose_crops_changed_is_refused_for_its_own_images(folder):
    job = _job(folder, "majority_class")
    config = json.loads((job / "config.json").read_text())
    (job / "config.json").write_text(json.dumps({**config, "data_versions": {"synthetic": "v0"}}))
    run = evaluate_results(folder, ["gamma"], log=lambda _: None)
    assert (job.name, "gamma", "the crops of dataset 'synthetic' changed since the job ran (version v0, now v1)") \
        in run.refused
    assert len(run.scored) == 2 * 5


def test_corrupt_weights_are_refused(folder):
    job = _job(folder, "constant_mask")
    (job / WEIGHTS_FILE).write_bytes(b"x" + (job / WEIGHTS_FILE).read_bytes()[1:])
    run = evaluate_results(folder, ["hed"], log=lambda _: None)
    assert (job.name, "*", f"{WEIGHTS_FILE} does not match its SHA-256 in {CHECKPOINT_FILE} (corrupt or replaced)") \
        in run.refused


def test_the_source_dataset_is_refused_and_no_job_can_score_it(folder, capsys):
    before = _digests(folder)
    assert main(["evaluate", "--results", str(folder), "--targets", "synthetic"]) == 2
    err = capsys.readouterr().err
    assert "could be scored on synthetic" in err
    assert "dataset 'synthetic' holds" in err and "training/validation images (it is the job's source)" in err
    assert _digests(folder) == before


def test_cli_bad_input_exit_codes_and_messages(folder, tmp_path, capsys):
    assert main(["evaluate", "--results", str(tmp_path / "nowhere"), "--targets", "hed"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", "--results", str(folder), "--targets", "hed", "--device", "tpu"]) == 2
    assert "--device 'tpu' is not a device name" in capsys.readouterr().err
    assert not any((job / EVALUATIONS_DIR).exists() for job in completed_job_dirs(folder))
    assert main(["evaluate", "--results", str(folder), "--targets", "hed,nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown target(s) nope" in err and "synthetic" in err and "restain" in err
    assert main(["evaluate", "--results", str(tmp_path), "--targets", "hed"]) == 2
    assert "no completed jobs" in capsys.readouterr().err
    assert main(["evaluate", "--results", str(folder), "--targets", "synthetic,hed"]) == 2
    captured = capsys.readouterr()
    assert "no job could score target(s) synthetic" in captured.err and "scored 12 (job, target)" in captured.out
