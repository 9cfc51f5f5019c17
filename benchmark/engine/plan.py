"""A sweep and its plan (DomainBed-style): a sweep is what was asked (protocol, models, seeds,
budget, treatments, sources, targets); its :class:`Plan`, built once, is what that means on the
data: the protocol's extension, the samples grouped by domain, and the list of jobs, each keyed by
a hash of the config that changes its result. Every launcher takes the plan; nothing plans again.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from benchmark.engine.budgets import Budget
from benchmark.engine.treatments import TREATMENTS
from benchmark.record.datasets import record_datasets
from benchmark.record.vocabulary import NO_TREATMENT, display_name
from core.errors import BenchmarkError
from core.sample import NUM_CLASSES, Sample
from core.study import REFERENCE_MODELS
from models import create_model
from models.contract import check_model
from models.registry import describe, model_info
from protocols.registry import Extension
from protocols.resolve import data_versions, load_by_domain, resolve_splits, select
from protocols.split import Split

ENGINE_VERSION = "4"
"""Bump when a change to training or evaluation code changes results: it is part of every job id
(a change of crops is caught by the datasets' cache versions, also in the id)."""

OPTIONS_LABEL_CHARS = 60
"""Model options in a job folder's name are cut here (a path component has 255 bytes at most)."""


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

    @property
    def label(self) -> str:
        """How progress lines name the job."""
        return f"{display_name(self.model, self.treatment)} {self.source} seed {self.seed}"


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


@dataclass(frozen=True)
class Plan:
    """A sweep made concrete, once: the protocol's extension (None: its own splits), the samples it
    loaded grouped by domain, and every job with its split. Launchers take this and nothing else."""

    sweep: Sweep
    extension: Extension | None
    by_domain: dict[str, list[Sample]]
    jobs: list[tuple[Job, Split]]

    @cached_property
    def by_id(self) -> dict[str, Sample]:
        return {s.id: s for samples in self.by_domain.values() for s in samples}

    def todo(self) -> list[tuple[Job, Split]]:
        """The jobs whose folder holds no ``done`` marker yet."""
        return [(j, s) for j, s in self.jobs if not is_done(self.sweep.out_dir / "jobs" / j.dirname)]


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

    def plan(self) -> Plan:
        """Check the names, load the data once, write the split manifests (once) under
        ``<out>/splits`` and the dataset records, and list every job."""
        self._check_names()
        extension, sources = select(self.protocol, self.sources, self.targets)
        by_domain = load_by_domain(self.protocol, self.budget.img_size, extension)
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
        return Plan(self, extension, by_domain, jobs)

    def can_learn(self, model: str, task: str) -> bool:
        """Whether ``model`` has a head for what the split's training data teaches: a segment-only
        model has nothing to learn from a classification-only source (PBC), and the reverse. The
        registry's metadata answers; a dotted-path factory that declares no ``heads`` is built once."""
        if model not in self._heads:
            info = model_info(model)
            if info is None:
                built = create_model(model, num_classes=NUM_CLASSES, img_size=self.budget.img_size,
                                     **self.kwargs_for(model))
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
