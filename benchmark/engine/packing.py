"""How many jobs of a sweep share one GPU (``benchmark.engine.devices.jobs_per_gpu``), from the peak memory
the sweep's jobs measured: recorded by finished jobs of the same budget in the results folder, or,
before any has run, probed with one training step of each model at the budget's batch and size (one
prediction batch's forward for a model without trainable parameters).
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import torch

from benchmark.engine.budgets import Budget
from benchmark.engine.devices import jobs_per_gpu, memory_fraction, reset_peak_memory
from benchmark.engine.train import PREDICT_BATCH, autocast_for
from benchmark.record.jobs import JobConfig
from core.errors import BenchmarkError
from core.sample import NUM_CLASSES
from models import create_model


@dataclass(frozen=True)
class GpuPlan:
    """Jobs run at once on one GPU, each process's memory cap, and where the peak came from."""

    jobs: int
    fraction: float
    peak_bytes: int
    free_bytes: int
    source: str

    def describe(self) -> str:
        return (f"{self.jobs} job(s) per GPU: peak {self.peak_bytes / 2**30:.2f} GiB per job ({self.source}), "
                f"{self.free_bytes / 2**30:.1f} GiB free, each process capped at {self.fraction:.0%} of the device")


def recorded_peak(out_dir: Path, models: set[str], budget: Budget) -> int | None:
    """The largest GPU peak that a finished job of these models under this budget recorded; None if none did."""
    peaks = []
    for metrics_file in sorted((out_dir / "jobs").glob("*/metrics.json")):
        try:
            config = JobConfig.read(metrics_file.parent)
            train = json.loads(metrics_file.read_text())["train"]
        except (BenchmarkError, OSError, ValueError, KeyError):
            continue
        if (config.model in models and config.budget == budget.to_dict()
                and train.get("peak_memory_kind") == "cuda_max_allocated"):
            peaks.append(int(train["peak_memory_bytes"]))
    return max(peaks) if peaks else None


def probe_peak(models: dict[str, dict], budget: Budget, device: torch.device) -> int:
    """The largest allocator peak of one training step (forward, loss, backward, Adam step) over
    ``models`` (name -> options) at the budget's batch size and input size, under the engine's autocast.
    A model without trainable parameters (a floor, a frozen-encoder probe) never takes a step: its
    jobs run forward passes only, so its peak is one eval forward of a prediction batch."""
    peak = 0
    for name, options in models.items():
        model = create_model(name, num_classes=NUM_CLASSES, img_size=budget.img_size, **options).to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        torch.cuda.empty_cache()
        reset_peak_memory(device)
        n, size = budget.batch_size if params else PREDICT_BATCH, budget.img_size
        batch = {"image": torch.rand(n, 3, size, size, device=device),
                 "mask": torch.randint(0, 3, (n, size, size), device=device),
                 "mask_valid": torch.ones(n, dtype=torch.bool, device=device),
                 "label": torch.randint(0, 5, (n,), device=device)}
        _peak_step(model, params, batch, device)
        peak = max(peak, int(torch.cuda.max_memory_allocated(device)))
        del model
    return peak


def _peak_step(model: torch.nn.Module, params: list[torch.Tensor], batch: dict[str, torch.Tensor],
               device: torch.device) -> None:
    """What a job's peak comes from: one training step, or one eval forward for a model without
    trainable parameters. Its tensors and optimizer state are freed on return, before the next model."""
    if not params:
        model.eval()
        with torch.no_grad(), autocast_for(device):
            model(batch["image"])
        return
    opt = torch.optim.Adam(params)
    model.train()
    with autocast_for(device):
        loss, _ = model.loss(model(batch["image"]), batch)
    loss.backward()
    opt.step()


def plan_gpu(out_dir: Path, models: dict[str, dict], budget: Budget, device: torch.device) -> GpuPlan:
    """Jobs per GPU for a sweep of ``models`` under ``budget``: run where CUDA is initialised, in a
    process that then hands the device to the workers (the launcher's probe process)."""
    recorded = recorded_peak(out_dir, set(models), budget)
    peak, source = (recorded, "recorded by finished jobs") if recorded else (
        probe_peak(models, budget, device), "probed: one training step per model")
    free, _ = torch.cuda.mem_get_info(device)
    jobs = jobs_per_gpu(free, peak, os.cpu_count() or 1)
    return GpuPlan(jobs, memory_fraction(jobs), peak, int(free), source)


def plan_gpu_in_subprocess(out_dir: Path, models: dict[str, dict], budget: Budget, device: torch.device) -> GpuPlan:
    """:func:`plan_gpu` in a spawned process, so the launcher's own process never holds a CUDA
    context (and its memory) while the packed workers run."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(plan_gpu, out_dir, models, budget, device).result()
