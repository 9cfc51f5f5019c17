"""One job: train once, evaluate on every target of its split, write its folder atomically.

Job folder (``<out>/jobs/<model>[+<treatment>][@<options>]__<source>__seed<k>__<id>/``, the
treatment named when it is not ``none``, the model options when there are some):
``config.json`` (:class:`benchmark.record.jobs.JobConfig`), ``fingerprint.json`` (split hash,
dataset fingerprint, the fitted stain treatment), ``metrics.json`` (per target,
:class:`benchmark.record.jobs.TargetResult`, and the training record), ``predictions.jsonl.gz``
(per sample: probabilities, predicted and true mask RLE, label, domain), ``explain_examples.npz`` (a
few images per target with their mask, Grad-CAM and learned saliency, keys ``<target>|<array>``),
``weights.safetensors`` and ``checkpoint.json`` (the selected weights and what rebuilds the model:
``benchmark.engine.checkpoint``) and ``done``. Everything is written into a temporary sibling
directory that is renamed into place after ``done`` is written, so a directory without ``done`` (a
crash in an older layout) or a leftover temporary directory is never counted: it is redone.
"""
from __future__ import annotations

import glob
import gzip
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.engine.batches import ArraySet
from benchmark.engine.checkpoint import write_checkpoint
from benchmark.engine.devices import make_deterministic, peak_memory, reset_peak_memory, resolve_device
from benchmark.engine.environment import environment_record
from benchmark.engine.explain import can_explain, explain
from benchmark.engine.invariance import UnshiftedCopies, has_unshifted_copy, invariance_scores
from benchmark.engine.plan import ENGINE_VERSION, Job
from benchmark.engine.selection import ORACLE_EVERY, ORACLE_SHARE, PRIMARY_RULE, OracleRule, score_rules, split_targets
from benchmark.engine.targets import TargetBuilder
from benchmark.engine.train import SetPredictions, TrainResult, predict, score_predictions, seed_everything, train
from benchmark.engine.treatments import FittedTreatment, fit_treatment, treatment_record
from benchmark.record.atomic import write_json
from benchmark.record.jobs import JobConfig, TargetResult
from benchmark.record.metrics import mask_to_rle
from benchmark.record.vocabulary import display_name
from core.sample import NUM_CLASSES, Sample
from models import create_model
from models.base import WBCModel
from models.contract import check_model
from protocols.split import Split, TestTarget

CPU_THREADS_PER_JOB = 1
"""A CPU job is single-threaded and parallelism is across jobs (``--jobs``): the float reductions,
and so the numbers, then do not depend on the worker count, and on 2 cores two 1-thread jobs
train 70 images/s together against 51 for one 2-thread job (measured, docs/models.md "Budgets")."""

EXPLAIN_PANEL_IMAGES = 4
"""Grad-CAM costs a backward pass: saliency consistency is measured on the first
``budget.explain_images`` images (sorted ids) of each target; 4 per target are kept for the panel."""


def _sample_records(target: str, pred: SetPredictions) -> list[dict]:
    rows = []
    for i, sid in enumerate(pred.ids):
        rows.append({
            "target": target, "id": sid, "domain": pred.domains[i], "label": int(pred.labels[i]),
            "proba": None if pred.proba is None else [round(float(p), 5) for p in pred.proba[i]],
            "pred_mask": None if pred.pred_masks is None else mask_to_rle(pred.pred_masks[i]),
            "true_mask": mask_to_rle(pred.true_masks[i]) if pred.mask_valid[i] else None,
        })
    return rows


def score_target(model: WBCModel, treatment: FittedTreatment, samples: list[Sample], target: TestTarget,
                 task: str, explain_images: int, device: torch.device,
                 unshifted: UnshiftedCopies | None = None,
                 kept: dict[str, SetPredictions] | None = None,
                 prepared: ArraySet | None = None) -> tuple[dict, list[dict], dict | None]:
    """One target's ``metrics.json`` record, its per-sample records and its explanation-panel entry
    (None for a model without Grad-CAM): what a job writes for each target of its split, and what
    ``evaluate`` writes for a target added later, so the two can never drift apart. ``unshifted``
    holds the model's predictions on the unshifted cells, shared by the targets of one job (None:
    none to compare with, the invariance metrics n/a). ``kept`` receives the target's predictions
    (the selection rules reuse them for the job's own weights); ``prepared``: the samples already as
    preprocessed arrays (a job prepares each target once, for the oracle and for scoring)."""
    data = prepared if prepared is not None else \
        ArraySet.from_samples(samples, f"target {target.name}").map_images(treatment.preprocess)

    def run(d: ArraySet) -> SetPredictions:
        return predict(model, d, device)

    plain = target.kind is None and unshifted is not None  # images as they are: maybe another target's copy
    pred = unshifted.predictions(data.ids, run, data) if plain else run(data)
    base = unshifted.predictions(data.ids, run) if unshifted is not None and has_unshifted_copy(target) else None
    if kept is not None:
        kept[target.name] = pred
    scores = score_predictions(pred, task)
    scores["saliency_consistency"] = None
    panel = None
    if can_explain(model) and task != "segmentation":
        sub = data.subset(slice(0, explain_images))
        ex = explain(model, sub, device)
        valid = ex.consistency[~np.isnan(ex.consistency)]
        scores["saliency_consistency"] = float(valid.mean()) if len(valid) else None
        k = slice(0, EXPLAIN_PANEL_IMAGES)
        panel = {"image": sub.images[k], "mask": sub.masks[k], "cam": ex.cam[k], "predicted": ex.predicted[k],
                 "label": sub.labels[k], **({"saliency": ex.saliency[k]} if ex.saliency is not None else {})}
    scores.update(invariance_scores(base, pred, task))
    result = TargetResult(target.domain, len(data), scores, target.severity, target.transform)
    return result.to_json(), _sample_records(target.name, pred), panel


def _train_record(result: TrainResult, eval_seconds: float, device: torch.device, selection: dict) -> dict:
    """``metrics.json``'s ``train``: the selected epoch, its validation scores, the history, what it
    cost, and the side-by-side selection rules' settings and cost (``seconds`` includes the oracle's)."""
    return {"best_epoch": result.best_epoch, "val": result.val_metrics, "history": result.history,
            "seconds": round(result.train_seconds, 2), "images_seen": result.images_seen,
            "train_images_per_s": round(result.images_seen / max(result.train_seconds, 1e-9), 1),
            "eval_seconds": round(eval_seconds, 2), "selection": selection, **peak_memory(device).to_dict()}


def _score_rules(model: WBCModel, result: TrainResult, oracle: OracleRule, rest: dict[str, ArraySet],
                 train_set: ArraySet, job: Job, device: torch.device, metrics: dict,
                 kept: dict[str, SetPredictions]) -> dict:
    """Each target's ``metrics.selection`` (the rules side by side, ``benchmark.engine.selection``);
    returns the ``train.selection`` record: the primary rule, the oracle's settings and the cost."""
    t0 = time.perf_counter()
    primary = PRIMARY_RULE[job.budget.selection]
    for name, rules in score_rules(model, result, oracle, rest, train_set, job.seed, device, primary, kept).items():
        metrics[name]["metrics"]["selection"] = rules
    return {"primary": primary, "oracle_share": ORACLE_SHARE, "oracle_every": ORACLE_EVERY,
            "oracle_seconds": round(oracle.seconds, 2), "scoring_seconds": round(time.perf_counter() - t0, 2)}


def _write_records(folder: Path, records: list[dict], panel: dict) -> None:
    with gzip.open(folder / "predictions.jsonl.gz", "wt") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    if panel:
        np.savez_compressed(folder / "explain_examples.npz",
                            **{f"{t}|{k}": v for t, arrays in panel.items() for k, v in arrays.items()})


def _place(tmp: Path, final: Path) -> None:
    """``done`` last, then the folder renamed into place (over an incomplete one of an older run)."""
    (tmp / "done").write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def _temporary(job: Job, out_dir: Path) -> Path:
    """A fresh temporary folder for ``job``, after removing those of its earlier, killed attempts
    (e.g. a Ray retry)."""
    for earlier in (out_dir / "jobs").glob(f".{glob.escape(job.dirname)}.tmp-*"):
        shutil.rmtree(earlier, ignore_errors=True)
    tmp = out_dir / "jobs" / f".{job.dirname}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True)
    return tmp


def run_job(job: Job, split: Split, by_id: dict[str, Sample], out_dir: Path,
            device: torch.device | None = None, progress: bool | None = None,
            builder: TargetBuilder | None = None) -> Path:
    """Train once, evaluate on every target, write the job directory atomically; returns it.
    Jobs of one split may share a ``builder`` so stain profiles and transformed test images are
    computed once per split rather than once per model."""
    device = device or resolve_device(None)
    if device.type == "cpu":
        torch.set_num_threads(CPU_THREADS_PER_JOB)
    determinism = make_deterministic(device)
    check_model(job.model, job.model_kwargs, job.budget.img_size)  # once per process; before the job seeds
    tmp = _temporary(job, out_dir)
    try:
        environment = environment_record()  # before training: the code that runs is the code loaded now
        reset_peak_memory(device)
        seed_everything(job.seed)
        model = create_model(job.model, num_classes=NUM_CLASSES, img_size=job.budget.img_size, **job.model_kwargs)
        treatment = fit_treatment(job.treatment, [by_id[i].image for i in split.train])
        train_set = ArraySet.from_samples([by_id[i] for i in split.train], f"{split.key} train")
        val_set = ArraySet.from_samples([by_id[i] for i in split.val], f"{split.key} val")
        builder = builder or TargetBuilder(split, by_id, job.data_versions)
        prepared = {t.name: ArraySet.from_samples(builder.samples(t), f"target {t.name}").map_images(treatment.preprocess)
                    for t in split.targets}
        held, rest = split_targets(prepared)
        oracle = OracleRule(held, split.task, device)
        train_set = train_set.map_images(treatment.preprocess)
        result = train(model, train_set, val_set.map_images(treatment.preprocess),
                       job.budget, job.seed, task=split.task, device=device, extra_augment=treatment.augment,
                       progress=progress, desc=f"{display_name(job.model, job.treatment)} {job.source} s{job.seed}",
                       observer=oracle)
        unshifted = UnshiftedCopies(split.targets, lambda ids: [by_id[i] for i in ids], treatment)
        metrics, records, panel, kept = {}, [], {}, {}
        t_eval = time.perf_counter()
        for target in split.targets:
            metrics[target.name], rows, entry = score_target(model, treatment, builder.samples(target), target,
                                                             split.task, job.budget.explain_images, device, unshifted, kept,
                                                             prepared[target.name])
            records += rows
            if entry is not None:
                panel[target.name] = entry
        config = JobConfig(**job.config(), job_id=job.id, device=device.type, environment=environment,
                           determinism=determinism, task=split.task, has_classifier=model.has_classifier,
                           has_segmenter=model.has_segmenter)
        write_json(tmp / "config.json", config.to_json())
        write_json(tmp / "fingerprint.json", {**builder.fingerprint(), "stain_profiles": builder.profiles_used(),
                                               "treatment": treatment_record(treatment)})
        eval_seconds = time.perf_counter() - t_eval
        _write_records(tmp, records, panel)
        write_checkpoint(tmp, model, {"model": job.model, "model_kwargs": job.model_kwargs,
                                      "img_size": job.budget.img_size, "engine_version": ENGINE_VERSION,
                                      "job_id": job.id}, treatment, val_set)
        selection = _score_rules(model, result, oracle, rest, train_set, job, device, metrics, kept)
        write_json(tmp / "metrics.json", {"targets": metrics,
                                          "train": _train_record(result, eval_seconds, device, selection)})
        final = out_dir / "jobs" / job.dirname
        _place(tmp, final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
