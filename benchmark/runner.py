"""The sweep runner (DomainBed-style): a sweep is a list of jobs, each keyed by a hash of the
config that changes its result; a job trains once and is evaluated on every target of its split.

Job directory (``<out>/jobs/<model>[+<treatment>][@<options>]__<source>__seed<k>__<id>/``, the
treatment named when it is not ``none``, the model options when there are some):
``config.json`` (resolved config), ``fingerprint.json`` (split hash, dataset fingerprint, the fitted
stain treatment),
``metrics.json`` (per target), ``predictions.jsonl.gz`` (per sample: probabilities, predicted
and true mask RLE, label, domain), ``explain_examples.npz`` (a few images per target with their
mask, Grad-CAM and learned saliency, keys ``<target>|<array>``), ``weights.safetensors`` and
``checkpoint.json`` (the selected weights and what rebuilds the model: ``benchmark.checkpoint``)
and ``done``. Everything is written into a temporary sibling directory that is renamed into place
after ``done`` is written, so a directory without ``done`` (a crash in an older layout) or a
leftover temporary directory is never counted: it is redone.
"""
from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from benchmark.atomic import write_json
from benchmark.batches import ArraySet
from benchmark.budgets import Budget
from benchmark.checkpoint import write_checkpoint
from core.sample import Sample
from benchmark.environment import environment_record
from core.errors import BenchmarkError
from benchmark.explain import can_explain, explain
from benchmark.lockfile import pid_alive
from benchmark.metrics import mask_to_rle
from benchmark.provenance import record_datasets
from benchmark.summary import display_name
from benchmark.targets import TargetBuilder
from benchmark.treatments import NO_TREATMENT, TREATMENTS, FittedTreatment, fit_treatment, treatment_record
from benchmark.devices import (make_deterministic, memory_fraction, mps_active, peak_memory, reset_peak_memory,
                               resolve_device)
from benchmark.train import SetPredictions, predict, score_predictions, seed_everything, train
from models import create_model
from models.base import WBCModel
from models.contract import check_model
from models.registry import describe, model_info
from core.study import REFERENCE_MODELS
from protocols.registry import Extension
from protocols.resolve import data_versions, load_by_domain, resolve_splits, select
from protocols.split import Split, TestTarget

if TYPE_CHECKING:
    from benchmark.launchers import WorkerSettings

ENGINE_VERSION = "4"
"""Bump when a change to training or evaluation code changes results: it is part of every job id
(a change of crops is caught by the datasets' cache versions, also in the id)."""

CPU_THREADS_PER_JOB = 1
"""A CPU job is single-threaded and parallelism is across jobs (``--jobs``): the float reductions,
and so the numbers, then do not depend on the worker count, and on 2 cores two 1-thread jobs
train 70 images/s together against 51 for one 2-thread job (measured, docs/models.md "Budgets")."""

EXPLAIN_PANEL_IMAGES = 4
"""Grad-CAM costs a backward pass: saliency consistency is measured on the first
``budget.explain_images`` images (sorted ids) of each target; 4 per target are kept for the panel."""


@dataclass(frozen=True)
class Job:
    protocol: str
    model: str
    source: str
    seed: int
    budget: Budget
    split_hash: str
    model_kwargs: dict = field(default_factory=dict)
    treatment: str = NO_TREATMENT
    data_versions: dict = field(default_factory=dict)
    """Crop-cache version per dataset (``protocols.resolve.data_versions``): the split hash names the
    images, this names how they were cropped."""

    def config(self) -> dict:
        """What changes the result; paths, worker count and device are deliberately not in it."""
        return {
            "engine_version": ENGINE_VERSION, "protocol": self.protocol, "model": self.model,
            "model_kwargs": self.model_kwargs, "treatment": self.treatment, "source": self.source, "seed": self.seed,
            "budget": self.budget.to_dict(), "split_hash": self.split_hash, "data_versions": self.data_versions,
        }

    @property
    def id(self) -> str:
        blob = json.dumps(self.config(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def dirname(self) -> str:
        """The options are named only when there are some, so the folders of jobs without options keep
        the names committed results resume on; the id, not this label, tells options apart."""
        name = safe_folder_name(display_name(self.model, self.treatment))
        if self.model_kwargs:
            name += "@" + safe_folder_name(options_label(self.model_kwargs))[:OPTIONS_LABEL_CHARS]
        return f"{name}__{self.source}__seed{self.seed}__{self.id}"


OPTIONS_LABEL_CHARS = 60
"""Model options in a job folder's name are cut here (a path component has 255 bytes at most)."""


def safe_folder_name(text: str) -> str:
    """``text`` with every character a portable folder name should not hold (``:`` of a dotted-path
    model, ``/``, quotes, spaces, brackets) replaced by ``-``; registered names pass unchanged."""
    return re.sub(r"[^A-Za-z0-9._+=,-]", "-", text)


def options_label(options: dict) -> str:
    """``key=value,...`` sorted by key: model options as a job folder names them."""
    return ",".join(f"{k}={v if isinstance(v, str) else json.dumps(v, separators=(',', ':'))}"
                    for k, v in sorted(options.items()))


def is_done(job_dir: Path) -> bool:
    return (job_dir / "done").exists()


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
                 task: str, explain_images: int, device: torch.device) -> tuple[dict, list[dict], dict | None]:
    """One target's ``metrics.json`` record, its per-sample records and its explanation-panel entry
    (None for a model without Grad-CAM): what a job writes for each target of its split, and what
    ``evaluate`` writes for a target added later, so the two can never drift apart."""
    data = ArraySet.from_samples(samples, f"target {target.name}").map_images(treatment.preprocess)
    pred = predict(model, data, device)
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
    result = {"domain": target.domain, "severity": target.severity, "transform": target.transform,
              "n": len(data), "metrics": scores}
    return result, _sample_records(target.name, pred), panel


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
    final = out_dir / "jobs" / job.dirname
    for earlier in (out_dir / "jobs").glob(f".{glob.escape(job.dirname)}.tmp-*"):
        shutil.rmtree(earlier, ignore_errors=True)  # an earlier attempt of this job, killed (e.g. a Ray retry)
    tmp = out_dir / "jobs" / f".{job.dirname}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True)
    try:
        environment = environment_record()  # before training: the code that runs is the code loaded now
        reset_peak_memory(device)
        seed_everything(job.seed)
        model = create_model(job.model, num_classes=5, img_size=job.budget.img_size, **job.model_kwargs)
        treatment = fit_treatment(job.treatment, [by_id[i].image for i in split.train])
        train_set = ArraySet.from_samples([by_id[i] for i in split.train], f"{split.key} train")
        val_set = ArraySet.from_samples([by_id[i] for i in split.val], f"{split.key} val")
        result = train(model, train_set.map_images(treatment.preprocess), val_set.map_images(treatment.preprocess),
                       job.budget, job.seed, task=split.task, device=device, extra_augment=treatment.augment,
                       progress=progress, desc=f"{display_name(job.model, job.treatment)} {job.source} s{job.seed}")
        builder = builder or TargetBuilder(split, by_id, job.data_versions)
        metrics, records, panel = {}, [], {}
        t_eval = time.perf_counter()
        for target in split.targets:
            metrics[target.name], rows, entry = score_target(model, treatment, builder.samples(target), target,
                                                             split.task, job.budget.explain_images, device)
            records += rows
            if entry is not None:
                panel[target.name] = entry
        config = {**job.config(), "job_id": job.id, "device": device.type,
                  "environment": environment, "determinism": determinism,
                  "task": split.task, "has_classifier": model.has_classifier, "has_segmenter": model.has_segmenter}
        write_json(tmp / "config.json", config)
        write_json(tmp / "fingerprint.json", {**builder.fingerprint(), "stain_profiles": builder.profiles_used(),
                                               "treatment": treatment_record(treatment)})
        write_json(tmp / "metrics.json", {
            "targets": metrics,
            "train": {"best_epoch": result.best_epoch, "val": result.val_metrics, "history": result.history,
                      "seconds": round(result.train_seconds, 2), "images_seen": result.images_seen,
                      "train_images_per_s": round(result.images_seen / max(result.train_seconds, 1e-9), 1),
                      "eval_seconds": round(time.perf_counter() - t_eval, 2), **peak_memory(device).to_dict()},
        })
        with gzip.open(tmp / "predictions.jsonl.gz", "wt") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        if panel:
            np.savez_compressed(tmp / "explain_examples.npz",
                                **{f"{t}|{k}": v for t, arrays in panel.items() for k, v in arrays.items()})
        write_checkpoint(tmp, model, {"model": job.model, "model_kwargs": job.model_kwargs,
                                      "img_size": job.budget.img_size, "engine_version": ENGINE_VERSION,
                                      "job_id": job.id}, treatment, val_set)
        (tmp / "done").write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
        if final.exists():  # an incomplete directory from an interrupted older run
            shutil.rmtree(final)
        os.replace(tmp, final)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Sweep:
    """Every (seed, source, model, treatment) job of a protocol, less the (model, source) pairs where the
    model has no head for the source's task (see :meth:`can_learn`); the training-free floors run
    untreated only (a stain treatment cannot change what ignores the image). ``sources`` restricts the splits
    to some source datasets or domains (None: all); ``targets`` adds datasets as test targets; a source or
    target beyond the protocol's own makes its variant (``protocols.resolve.select``); ``model_kwargs``
    go to every model but the floors (e.g. ``pretrained``)."""

    protocol: str
    models: list[str]
    seeds: list[int]
    budget: Budget
    out_dir: Path
    treatments: list[str] = field(default_factory=lambda: [NO_TREATMENT])
    sources: list[str] | None = None
    model_kwargs: dict = field(default_factory=dict)
    targets: list[str] | None = None
    _heads: dict[str, tuple[bool, bool]] = field(default_factory=dict, init=False, repr=False)

    def plan(self) -> list[tuple[Job, Split]]:
        """All jobs of the sweep; split manifests are written (once) under ``<out>/splits``."""
        self._check_names()
        extension, sources = select(self.protocol, self.sources, self.targets)
        by_domain = self.samples_by_domain()
        versions = data_versions(self.protocol, extension)
        record_datasets(self.out_dir, versions)
        jobs = []
        for seed in self.seeds:
            for split in resolve_splits(self.protocol, seed, by_domain, self.out_dir / "splits", extension, sources):
                for m in self.models:
                    if not self.can_learn(m, split.task):
                        continue
                    for t in [NO_TREATMENT] if m in REFERENCE_MODELS else self.treatments:
                        jobs.append((Job(split.protocol, m, split.source, seed, self.budget, split.hash,
                                         self.kwargs_for(m), t, versions), split))
        return jobs

    def can_learn(self, model: str, task: str) -> bool:
        """Whether ``model`` has a head for what the split's training data teaches: a segment-only
        model has nothing to learn from a classification-only source (PBC), and the reverse. The
        registry's metadata answers; a dotted-path factory that declares no ``heads`` is built once."""
        if model not in self._heads:
            info = model_info(model)
            if info is None:
                built = create_model(model, num_classes=5, img_size=self.budget.img_size, **self.kwargs_for(model))
                self._heads[model] = (built.has_classifier, built.has_segmenter)
            else:
                self._heads[model] = (info.has_classifier, info.has_segmenter)
        has_classifier, has_segmenter = self._heads[model]
        return {"classification": has_classifier, "segmentation": has_segmenter}.get(task, True)

    def kwargs_for(self, model: str) -> dict:
        """The sweep's model options, except for the floors, which take none."""
        return {} if model in REFERENCE_MODELS else self.model_kwargs

    def _check_names(self) -> None:
        """Before anything is loaded or trained: unknown models or treatments fail, so does an input
        size a model's metadata rules out, and each model is built once with its options and its
        output contract checked on a dummy batch (``models.contract``)."""
        for m in self.models:
            info = model_info(m)
            problem = info.size_problem(self.budget.img_size) if info else None
            if problem:
                raise BenchmarkError(f"{describe(m)} {problem} (budget {self.budget.name}): pick a budget whose "
                                     f"img_size it takes")
            check_model(m, self.kwargs_for(m), self.budget.img_size)
        for t in self.treatments:
            TREATMENTS.get(t)

    def extension(self) -> Extension | None:
        return select(self.protocol, self.sources, self.targets)[0]

    def samples_by_domain(self) -> dict[str, list[Sample]]:
        return load_by_domain(self.protocol, self.budget.img_size, self.extension())


def default_workers() -> int:
    """One job per core on CPU: each job is single-threaded (on a GPU, ``worker_plan`` packs by memory)."""
    return os.cpu_count() or 1


def remove_stale_temporaries(out_dir: Path) -> list[str]:
    """Delete the temporary job directories (``.<job>.tmp-<pid>``) of processes that no longer
    run: what a killed worker left. A live process's temporary is left alone. Returns the names."""
    root = out_dir / "jobs"
    removed = []
    for tmp in sorted(root.glob(".*.tmp-*")) if root.is_dir() else []:
        pid = tmp.name.rsplit(".tmp-", 1)[1]
        if not pid.isdigit() or not pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp.name)
    return removed


def run_sweep(sweep: Sweep, workers: int | None = None, log=print, device: torch.device | None = None,
              launcher: str = "local", ray_address: str | None = None) -> list[Path]:
    """Run every job not yet done (after clearing what killed runs left) with ``launcher``; prints
    jobs done / total and an ETA. ``workers`` None picks one job per core on a CPU and packs jobs
    by memory on a GPU. A job that fails does not stop the others: the failures are listed at the
    end, in a BenchmarkError, and left no job folder."""
    from benchmark.launchers import LAUNCHERS, launch_local

    if launcher not in LAUNCHERS:
        raise BenchmarkError(f"unknown launcher '{launcher}'; valid launchers: {', '.join(LAUNCHERS)}")
    device = device or resolve_device(None)
    planned = sweep.plan()
    stale = remove_stale_temporaries(sweep.out_dir)
    if stale:
        log(f"removed {len(stale)} unfinished job folder(s) of runs that no longer run: {', '.join(stale)}")
    todo = [(j, s) for j, s in planned if not is_done(sweep.out_dir / "jobs" / j.dirname)]
    settings, workers = worker_plan(sweep, todo, device, workers, log)
    log(f"{sweep.protocol}: {len(planned)} jobs, {len(planned) - len(todo)} already done, {len(todo)} to run "
        f"(budget {sweep.budget.name}, device {device}, {workers} worker(s), launcher {launcher})")
    if launcher == "ray":
        from benchmark.ray_launcher import launch_ray

        outcomes = launch_ray(todo, sweep, settings, workers, ray_address) if todo else iter(())
    else:
        outcomes = launch_local(todo, sweep, settings, workers)
    t0, done, failed = time.perf_counter(), [], []
    for i, outcome in enumerate(outcomes, 1):
        job = outcome.job
        el = time.perf_counter() - t0
        eta = el / i * (len(todo) - i)
        what = f"{display_name(job.model, job.treatment)} {job.source} seed {job.seed}"
        if outcome.error is None:
            done.append(outcome.path)
            log(f"[{len(planned) - len(todo) + i}/{len(planned)}] {what} done; elapsed {el / 60:.1f} min, "
                f"ETA {eta / 60:.1f} min")
        else:
            failed.append(f"{job.dirname}: {outcome.error}")
            log(f"[{len(planned) - len(todo) + i}/{len(planned)}] {what} FAILED: {outcome.error}")
    if failed:
        raise BenchmarkError(f"{len(failed)} of {len(todo)} job(s) failed and wrote nothing (the other "
                             f"{len(done)} are done; rerun to retry the failed ones):\n  " + "\n  ".join(failed))
    return done


def worker_plan(sweep: Sweep, todo: list, device: torch.device, workers: int | None,
                log=print) -> tuple[WorkerSettings, int]:
    """The workers' device settings and how many jobs run at once: ``--jobs`` when given; on a CPU
    one per core; on a GPU as many as its memory takes (``benchmark.packing``), each process capped
    at its share."""
    from benchmark.launchers import WorkerSettings

    if device.type != "cuda" or not todo:
        return WorkerSettings(str(device)), workers or default_workers()
    from benchmark.packing import plan_gpu_in_subprocess

    models = {job.model: job.model_kwargs for job, _ in todo}
    plan = plan_gpu_in_subprocess(sweep.out_dir, models, sweep.budget, device)
    log(plan.describe() + ("" if workers is None else f"; --jobs {workers} overrides the count"))
    jobs = workers or plan.jobs
    if jobs > 1 and not mps_active():
        log("CUDA MPS is not running: packed jobs take turns on the GPU instead of running at once "
            "(start it with `nvidia-cuda-mps-control -d`; docs/gpu.md)")
    return WorkerSettings(str(device), memory_fraction(jobs) if jobs > 1 else None), jobs
