"""``python -m benchmark evaluate``: score the finished jobs of a results folder on new targets
without retraining, from the weights each job saved (``benchmark.engine.checkpoint``).

A target name is either

- a dataset (built-in or registered by a plugin): all of its images, one target named after the
  dataset. A job whose training or validation images belong to that dataset (its source) is
  refused for it: the whole dataset would score images the model trained on, and the held-out
  part is already the job's ``in_domain`` target;
- a registered target kind (:mod:`wbcdata.target_kinds`: ``hed``, ``restain``, the scanner's
  ``defocus``, ``jpeg``, ``gamma``, ``resample``, or a plugin's), applied to the job's held-out
  in-domain test images as a protocol applies it: one target per severity of a graded kind, one
  per other domain of the job's protocol for ``restain``.

Each (job, target) is written into the job folder as ``evaluations/<target>.json`` (the same
per-target record as ``metrics.json``'s, with what was evaluated and how) and
``evaluations/<target>.predictions.jsonl.gz`` (the same per-sample records as
``predictions.jsonl.gz``), the target name URL-quoted (``hed%3A0.1``). The predictions are
written first and the JSON last, each atomically, so a target counts only once both are complete;
an interrupted or failed evaluation leaves every file the job had before untouched, and a rerun
skips the targets already evaluated. The summary, tables and figures are then rebuilt
(``report``), with the evaluated targets as rows.
"""
from __future__ import annotations

import gzip
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import torch

from benchmark.record.atomic import write_json
from benchmark.engine.names import check_target_names
from benchmark.engine.checkpoint import JobRefused, ModelNotTrusted, load_checkpoint
from benchmark.engine.environment import environment_record
from benchmark.engine.invariance import UnshiftedCopies
from benchmark.engine.job import CPU_THREADS_PER_JOB, score_target
from benchmark.engine.lockfile import pid_alive
from benchmark.engine.plan import ENGINE_VERSION
from benchmark.record.jobs import read_job, require_jobs
from benchmark.record.vocabulary import EVALUATIONS_DIR
from benchmark.engine.targets import TargetBuilder
from benchmark.engine.devices import make_deterministic, resolve_device
from benchmark.engine.treatments import treatment_record
from core.errors import BenchmarkError
from core.sample import Sample
from protocols.split import Split, TestTarget, read_manifest, targets_for_kind
from wbcdata.datasets import dataset_spec, list_datasets, load_dataset
from wbcdata.target_kinds import TARGET_KINDS

IN_DOMAIN = "in_domain"


def _in_domain_ids(split: Split) -> tuple[str, ...]:
    for t in split.targets:
        if t.name == IN_DOMAIN:
            return t.ids
    raise JobRefused(f"split {split.key} has no '{IN_DOMAIN}' target to transform")


def file_stem(target: str) -> str:
    """A file name for a target name that no other name shares (``hed:0.1`` -> ``hed%3A0.1``: a colon
    is not allowed in Windows file names); the JSON keeps the real name."""
    return quote(target, safe="")


@dataclass
class EvaluationRun:
    """What one ``evaluate`` call did: ``scored`` holds (job, requested name, target), ``skipped``
    (job, requested name, why: scored before), ``refused`` (job, requested name or '*' for all, reason);
    ``untrusted`` the jobs of ``refused`` whose model the user must name first (:class:`ModelNotTrusted`)."""

    scored: list[tuple[str, str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    refused: list[tuple[str, str, str]] = field(default_factory=list)
    untrusted: list[str] = field(default_factory=list)

    def merge(self, other: "EvaluationRun") -> None:
        self.scored += other.scored
        self.skipped += other.skipped
        self.refused += other.refused
        self.untrusted += other.untrusted

    def covered(self, name: str) -> bool:
        """Whether some job has requested target ``name`` scored (now, before, or when it trained)."""
        return any(t == name for _, t, _ in self.scored) or any(t == name for _, t, _ in self.skipped)


class _Data:
    """Samples loaded once per call, whatever the number of jobs: datasets by (name, size), target
    builders by split."""

    def __init__(self) -> None:
        self._datasets: dict[tuple[str, int], list[Sample]] = {}
        self._builders: dict[tuple[str, int], TargetBuilder] = {}
        self._job_samples: dict[tuple[tuple[tuple[str, str], ...], int], dict[str, Sample]] = {}

    def dataset(self, name: str, size: int) -> list[Sample]:
        if (name, size) not in self._datasets:
            self._datasets[name, size] = load_dataset(name, size=size)
        return self._datasets[name, size]

    def job_domains(self, versions: dict[str, str], size: int) -> dict[str, list[Sample]]:
        """The samples a job loaded (the datasets of its ``data_versions``), grouped by domain; refused
        when a dataset is not registered now or its crops changed since the job ran, because the job's
        own images would then differ from the ones it was trained and scored on."""
        if not versions:
            raise JobRefused("its config.json records no data_versions, so its own images cannot be reloaded")
        by_domain: dict[str, list[Sample]] = {}
        for name, version in sorted(versions.items()):
            if name not in list_datasets():
                raise JobRefused(f"it was trained on dataset '{name}', which is not registered now (a user "
                                 f"folder: name it again with --dataset {name}=PATH or $WBC_DATASETS)")
            if dataset_spec(name).cache_version != version:
                raise JobRefused(f"the crops of dataset '{name}' changed since the job ran (version {version}, "
                                 f"now {dataset_spec(name).cache_version})")
            for sample in self.dataset(name, size):
                by_domain.setdefault(sample.domain, []).append(sample)
        return by_domain

    def by_id(self, versions: dict[str, str], size: int) -> dict[str, Sample]:
        """The samples a job loaded (:meth:`job_domains`) by id, built once per data versions and size."""
        key = (tuple(sorted(versions.items())), size)
        if key not in self._job_samples:
            self._job_samples[key] = {s.id: s for ss in self.job_domains(versions, size).values() for s in ss}
        return self._job_samples[key]

    def samples(self, name: str, target: TestTarget, split: Split, versions: dict[str, str],
                size: int) -> list[Sample]:
        """A target's samples in its id order: a dataset's as loaded, a kind's transformed by the
        split's target builder (stain profiles as when the job ran)."""
        if name not in TARGET_KINDS:
            by_id = {s.id: s for s in self.dataset(name, size)}
            return [by_id[i] for i in target.ids]
        if (split.hash, size) not in self._builders:
            self._builders[split.hash, size] = TargetBuilder(split, self.by_id(versions, size), versions)
        return self._builders[split.hash, size].samples(target)


def splits_by_hash(out_dir: Path) -> dict[str, Split]:
    """Every split manifest under ``<out>/splits``, keyed by its hash (the ``split_hash`` of a job)."""
    root = out_dir / "splits"
    manifests = [read_manifest(p) for p in sorted(root.rglob("*.json"))] if root.is_dir() else []
    return {s.hash: s for s in manifests}


def job_targets(name: str, split: Split, versions: dict[str, str], size: int,
                data: _Data) -> tuple[list[TestTarget], dict[str, str]]:
    """The targets requested ``name`` gives for a job's split (``versions``: the job's recorded
    ``data_versions``), and the crop versions of the datasets they add (none for a kind: its images
    are the job's own); refuses (:class:`JobRefused`) a dataset that holds the job's training images."""
    if name in TARGET_KINDS:
        domains = sorted(data.job_domains(versions, size))
        return targets_for_kind(name, _in_domain_ids(split), split.source, domains), {}
    samples = data.dataset(name, size)
    seen = set(split.train) | set(split.val)
    leak = sum(s.id in seen for s in samples)
    if leak:
        raise JobRefused(
            f"dataset '{name}' holds {leak} of this job's training/validation images (it is the job's source): "
            f"scoring all of it would score images the model trained on; its held-out images are the job's "
            f"'{IN_DOMAIN}' target already")
    domains = sorted({s.domain for s in samples})
    domain = domains[0] if len(domains) == 1 else name
    return [TestTarget(name, domain, tuple(sorted(s.id for s in samples)))], {name: dataset_spec(name).cache_version}


def _remove_stale_temporaries(folder: Path) -> None:
    """Temporaries (``.<file>.<pid>.tmp``) that a killed evaluation left; a live process's are kept."""
    for tmp in folder.glob(".*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if not pid.isdigit() or not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def write_evaluation(job_dir: Path, target: TestTarget, result: dict, records: list[dict], provenance: dict) -> Path:
    """Predictions, then the JSON that marks the target evaluated; each written to a temporary and
    renamed, so a reader never sees half a file and an interruption leaves no evaluated target."""
    folder = job_dir / EVALUATIONS_DIR
    folder.mkdir(exist_ok=True)
    stem = file_stem(target.name)
    preds = folder / f"{stem}.predictions.jsonl.gz"
    tmp = folder / f".{preds.name}.{os.getpid()}.tmp"
    try:
        with gzip.open(tmp, "wt") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, preds)
    finally:
        tmp.unlink(missing_ok=True)
    path = folder / f"{stem}.json"
    write_json(path, {"target": target.name, "result": result, "predictions": preds.name, **provenance})
    return path


def _evaluate_job(job_dir: Path, names: list[str], splits: dict[str, Split], data: _Data,
                  device_name: str | None = None, allowed: frozenset[str] = frozenset()) -> EvaluationRun:
    """Score one job on each named target it has not been scored on, on ``device_name`` (``--device``;
    None: cuda when present); what it refused says why."""
    job, run = job_dir.name, EvaluationRun()
    record = read_job(job_dir)
    cfg = record.config
    done = set(record.targets) - record.evaluated
    already = set(record.evaluated)
    split = splits.get(cfg.split_hash)
    if split is None:
        run.refused.append((job, "*", f"its split manifest (hash {cfg.split_hash}) is not under "
                                      f"{job_dir.parent.parent / 'splits'}"))
        return run
    size, recorded = int(cfg.budget["img_size"]), dict(cfg.data_versions)
    todo: list[tuple[str, TestTarget, dict[str, str]]] = []
    for name in names:
        try:
            targets, added = job_targets(name, split, recorded, size, data)
        except JobRefused as e:
            run.refused.append((job, name, str(e)))
            continue
        for t in targets:
            if t.name in done:
                run.skipped.append((job, name, f"'{t.name}' was scored when the job ran"))
            elif t.name in already:
                run.skipped.append((job, name, f"'{t.name}' already evaluated"))
            else:
                todo.append((name, t, added))
    if not todo:
        return run
    try:
        model, treatment, meta = load_checkpoint(job_dir, ENGINE_VERSION, allowed)
    except JobRefused as e:
        run.refused.append((job, "*", str(e)))
        if isinstance(e, ModelNotTrusted):
            run.untrusted.append(job)
        return run
    device = resolve_device(device_name)
    if device.type == "cpu":
        torch.set_num_threads(CPU_THREADS_PER_JOB)  # the runner's thread count: the same float reductions
    make_deterministic(device)
    model.to(device)
    _remove_stale_temporaries(job_dir / EVALUATIONS_DIR)
    environment = environment_record()
    unshifted = UnshiftedCopies([t for _, t, _ in todo], lambda ids: [data.by_id(recorded, size)[i] for i in ids],
                                treatment)
    for name, target, added in todo:
        samples = data.samples(name, target, split, recorded, size)
        t0 = time.perf_counter()
        result, records, _ = score_target(model, treatment, samples, target, str(cfg.task),
                                       int(cfg.budget["explain_images"]), device, unshifted)
        provenance = {"requested": name, "data_versions": added, "engine_version": ENGINE_VERSION,
                      "weights_sha256": meta["weights"]["sha256"], "treatment": treatment_record(treatment),
                      "device": device.type, "environment": environment,
                      "seconds": round(time.perf_counter() - t0, 2),
                      "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_evaluation(job_dir, target, result, records, provenance)
        run.scored.append((job, name, target.name))
    return run


_worker_data: _Data | None = None
"""A worker process's loaded datasets, kept across the jobs it is given (one worker, many jobs)."""


def _evaluate_in_worker(job_dir: Path, names: list[str], splits: dict[str, Split],
                        device_name: str | None, allowed: frozenset[str]) -> EvaluationRun:
    global _worker_data
    _worker_data = _worker_data or _Data()
    return _evaluate_job(job_dir, names, splits, _worker_data, device_name, allowed)


def evaluate_results(out_dir: Path, names: list[str], workers: int = 1, device: str | None = None,
                     log: Callable[[str], None] = print, allowed: frozenset[str] = frozenset()) -> EvaluationRun:
    """Score every completed job of ``out_dir`` on each named target it has not been scored on, in
    ``workers`` processes (jobs are independent and each is scored alike, so the count changes no number),
    on ``device`` (None: cuda when present, cpu otherwise), checked here before any job is loaded.
    ``allowed``: the dotted-path models the user named (``--allow-model``); no other is imported."""
    check_target_names(names)
    resolve_device(device)
    if not out_dir.is_dir():
        raise BenchmarkError(f"results folder {out_dir} does not exist; pass the --out of a `run`")
    jobs, splits, run = require_jobs(out_dir), splits_by_hash(out_dir), EvaluationRun()

    def report(i: int, part: EvaluationRun) -> None:
        run.merge(part)
        if part.scored:
            log(f"[{i}/{len(jobs)}] {part.scored[0][0]}: scored {', '.join(t for _, _, t in part.scored)}")

    if workers <= 1 or len(jobs) <= 1:
        data = _Data()
        for i, job_dir in enumerate(jobs, 1):
            report(i, _evaluate_job(job_dir, names, splits, data, device, allowed))
        return run
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_evaluate_in_worker, job_dir, names, splits, device, allowed) for job_dir in jobs]
        for i, fut in enumerate(as_completed(futures), 1):
            report(i, fut.result())
    return run
