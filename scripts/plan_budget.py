"""Plan the paper-budget sweep before renting a GPU: FLOPs per image, CPU speed, GPU-hours.

    python scripts/plan_budget.py [--batch 4] [--steps 3] [--peak-tflops 989.4] [--utilisation 0.10]
                                  [--seeds 5] [--treatments hed,macenko,none,randstainna] [--out FILE]

Per registered model: FLOPs of one training step (forward, the model's own loss, backward) and of
inference per image at the paper budget's 224 px, counted by ``torch.utils.flop_counter``, and the
training images/s of one CPU thread (as the engine runs a job). The jobs come from the harness
itself: ``benchmark.runner.Sweep(...).plan()`` of the three protocols below with every registered
model, by default every treatment and seeds 0-4 (it loads the datasets: set ``WBC_DATA_MIRROR``).
Every job is charged its full 100 epochs (early stopping can only end one sooner), validation every
epoch, and one pass over each test target. GPU-hours = FLOPs / (peak x utilisation); the engine
augments on the CPU inside the training process, so that time is reported beside it (docs/gpu.md,
"Planning the paper budget"). Progress goes to stderr; the Markdown report to stdout (and ``--out``).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, sdpa_backward_flop_count, sdpa_flop_count

from benchmark.batches import ArraySet, TensorSet, paper_augmentation, train_batches
from benchmark.budgets import Budget, get_budget
from benchmark.environment import cpu_model
from benchmark.explain import can_explain
from benchmark.runner import CPU_THREADS_PER_JOB, Sweep
from benchmark.treatments import TREATMENTS
from core.sample import CLASSES
from models import create_model
from models.base import WBCModel
from models.registry import list_models

PROTOCOLS: tuple[str, ...] = ("within_dataset", "cross_dataset", "cross_stain")
DEFAULT_SEEDS = 5
PEAK_BF16_DENSE_TFLOPS = 989.4
"""H100 SXM / H200 SXM (same GH100 compute): 1,979 TFLOP/s bf16 Tensor Core *with* 2:4 sparsity on
NVIDIA's datasheets, half that dense."""
PEAK_SOURCE = ("NVIDIA H100 / H200 SXM datasheets: bf16 Tensor Core 1,979 TFLOP/s with sparsity, 989.4 dense "
               "(nvidia.com/en-us/data-center/h100, /h200)")
DEFAULT_UTILISATION = 0.10
"""Model FLOP utilisation assumed for these small CNN / windowed-attention models at batch 32."""
PIPELINE_IMAGES = 256
"""Images augmented to measure the engine's CPU input pipeline."""
Shape = Sequence[int]


def _conv_backward_flop(grad_out_shape: Shape, x_shape: Shape, w_shape: Shape, _bias: object, _stride: object,
                        _padding: object, _dilation: object, transposed: bool, _output_padding: object,
                        _groups: int, output_mask: Sequence[bool], out_shape: object = None, **kwargs: object) -> int:
    """Each of grad_input and grad_weight costs exactly what the forward convolution costs. Torch's own
    formula (2.14) ignores ``groups`` for grad_weight, counting a grouped or depthwise conv's weight
    gradient ``groups`` times over (tests/test_plan_budget.py checks a hand count): sg_cldff's training
    step came out 1.7x."""
    return conv_flop_count(x_shape, w_shape, grad_out_shape, transposed) * (int(output_mask[0]) + int(output_mask[1]))


def _sdpa_cpu_flop(query_shape: Shape, key_shape: Shape, value_shape: Shape, *args: object, out_shape: object = None,
                   **kwargs: object) -> int:
    """On CPU ``F.scaled_dot_product_attention`` runs a kernel torch's counter has no formula for (it
    counted 0); its FLOPs are those of the GPU kernels."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flop(grad_out_shape: Shape, query_shape: Shape, key_shape: Shape, value_shape: Shape,
                            *args: object, out_shape: object = None, **kwargs: object) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


FLOP_FORMULAS = {
    torch.ops.aten.convolution_backward: _conv_backward_flop,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flop,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_backward_flop,
}


def flop_counter() -> FlopCounterMode:
    """Torch's counter (matmuls, convolutions, attention; 2 FLOPs per multiply-add; elementwise ops,
    norms and pooling are not counted) with the corrections above."""
    return FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS)


@dataclass(frozen=True)
class ModelCost:
    """What one image costs a model: FLOPs per training step and per inference, and CPU speed."""

    name: str
    params: int
    trainable: bool
    train_flops: float
    infer_flops: float
    cpu_img_s: float | None
    explains: bool
    """Whether jobs run Grad-CAM on each classification target (``benchmark.explain.can_explain``)."""


def synthetic_batch(batch: int, img_size: int) -> dict[str, torch.Tensor]:
    """A batch as the engine builds it (``benchmark.batches.to_batch``), every sample with mask and label
    so every head and loss term runs: the costliest case."""
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.rand(batch, 3, img_size, img_size, generator=g).contiguous(memory_format=torch.channels_last),
        "mask": torch.randint(0, 3, (batch, img_size, img_size), generator=g),
        "mask_valid": torch.ones(batch, dtype=torch.bool),
        "label": torch.arange(batch) % len(CLASSES),
    }


def _train_step(model: WBCModel, opt: torch.optim.Optimizer, batch: dict[str, torch.Tensor]) -> None:
    out = model(batch["image"])
    loss, _ = model.loss(out, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def measure_model(name: str, img_size: int, batch: int, steps: int) -> ModelCost:
    """Count one training step's and one inference's FLOPs per image, then time ``steps`` training steps
    (after the counted one, which warms up) on the CPU threads torch has."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=len(CLASSES), img_size=img_size).to(memory_format=torch.channels_last)
    model.set_class_weights(torch.ones(len(CLASSES)))
    data = synthetic_batch(batch, img_size)
    params = [p for p in model.parameters() if p.requires_grad]
    train_flops, img_s = 0.0, None
    if params:
        model.train()
        opt = torch.optim.Adam(params, lr=1e-4)
        with flop_counter() as counter:
            _train_step(model, opt, data)
        train_flops = counter.get_total_flops() / batch
        start = time.perf_counter()
        for _ in range(steps):
            _train_step(model, opt, data)
        img_s = steps * batch / (time.perf_counter() - start)
    model.eval()
    with torch.no_grad(), flop_counter() as counter:
        model(data["image"])
    return ModelCost(name, sum(p.numel() for p in model.parameters()), bool(params), train_flops,
                     counter.get_total_flops() / batch, img_s, can_explain(model))


def measure_pipeline(img_size: int, batch: int, images: int = PIPELINE_IMAGES) -> float:
    """Images/s of the engine's training input path on one CPU core: batching + tensor augmentation."""
    rng = np.random.default_rng(0)
    data = ArraySet([str(i) for i in range(images)], ["x"] * images,
                    rng.integers(0, 256, (images, img_size, img_size, 3), dtype=np.uint8),
                    rng.integers(0, 3, (images, img_size, img_size), dtype=np.uint8),
                    np.ones(images, bool), np.zeros(images, np.int64))
    start = time.perf_counter()
    seen = sum(len(b["label"]) for b in train_batches(TensorSet.upload(data, torch.device("cpu")), batch, 0, 0,
                                                      paper_augmentation()))
    return seen / (time.perf_counter() - start)


@dataclass(frozen=True)
class JobLoad:
    """The images one job of the sweep trains, validates and tests on."""

    protocol: str
    model: str
    task: str
    train: int
    val: int
    test: int
    """Images over all test targets (a re-stained copy counts again)."""
    explain: int
    """Images Grad-CAM runs on if the model explains: ``budget.explain_images`` per target at most."""


def job_loads(budget: Budget, models: list[str], treatments: list[str], seeds: list[int],
              protocols: tuple[str, ...] = PROTOCOLS) -> list[JobLoad]:
    """Every job of the sweep, as the runner plans it (splits written to a temporary folder)."""
    loads = []
    for protocol in protocols:
        with tempfile.TemporaryDirectory() as tmp:
            sweep = Sweep(protocol, models=models, seeds=seeds, budget=budget, out_dir=Path(tmp),
                          treatments=treatments)
            for job, split in sweep.plan():
                loads.append(JobLoad(protocol, job.model, split.task, len(split.train), len(split.val),
                                     sum(len(t.ids) for t in split.targets),
                                     sum(min(budget.explain_images, len(t.ids)) for t in split.targets)))
    return loads


def job_flops(load: JobLoad, cost: ModelCost, epochs: int) -> float:
    """Upper bound on one job's FLOPs: every epoch trains on every training image and validates, then
    each test target is predicted once. A training-free model validates once and trains nothing.
    Grad-CAM is charged as one more inference (its backward stops at the fused layer)."""
    if not cost.trainable:
        return (load.val + load.test) * cost.infer_flops
    explain = load.explain if cost.explains and load.task != "segmentation" else 0
    per_epoch = load.train * cost.train_flops + load.val * cost.infer_flops
    return epochs * per_epoch + (load.test + explain) * cost.infer_flops


def gpu_hours(flops: float, peak_tflops: float, utilisation: float) -> float:
    """Hours of one GPU that sustains ``utilisation`` of its ``peak_tflops``."""
    return flops / (peak_tflops * 1e12 * utilisation) / 3600


def pipeline_hours(load: JobLoad, cost: ModelCost, epochs: int, pipeline_img_s: float) -> float:
    """Hours the training process spends augmenting on its one CPU core: the engine does it between
    GPU steps, not in parallel with them, so it adds to the job's GPU time."""
    return epochs * load.train / pipeline_img_s / 3600 if cost.trainable else 0.0


def cpu_core_hours(flops: float, cost: ModelCost) -> float | None:
    """Hours on one core at the FLOP rate the model trained at there; None for a training-free model."""
    return flops / (cost.train_flops * cost.cpu_img_s) / 3600 if cost.trainable and cost.cpu_img_s else None


@dataclass
class Totals:
    """Sums over the jobs of one model, one protocol or the whole sweep."""

    jobs: int = 0
    train_images: float = 0.0
    flops: float = 0.0
    gpu_h: float = 0.0
    wall_h: float = 0.0
    cpu_h: float = 0.0

    def add(self, load: JobLoad, cost: ModelCost, epochs: int, peak_tflops: float, utilisation: float,
            pipeline_img_s: float) -> None:
        flops = job_flops(load, cost, epochs)
        self.jobs += 1
        self.train_images += epochs * load.train if cost.trainable else 0
        self.flops += flops
        hours = gpu_hours(flops, peak_tflops, utilisation)
        self.gpu_h += hours
        self.wall_h += hours + pipeline_hours(load, cost, epochs, pipeline_img_s)
        self.cpu_h += cpu_core_hours(flops, cost) or 0.0


def _num(x: float | None, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def report(costs: list[ModelCost], loads: list[JobLoad], budget: Budget, peak_tflops: float, utilisation: float,
           pipeline_img_s: float, header: list[str]) -> str:
    """The Markdown plan: one row per model, then one per protocol and the total."""
    by_model = {c.name: Totals() for c in costs}
    by_protocol = {p: Totals() for p in dict.fromkeys(load.protocol for load in loads)}
    total = Totals()
    cost_of = {c.name: c for c in costs}
    for load in loads:
        for t in (by_model[load.model], by_protocol[load.protocol], total):
            t.add(load, cost_of[load.model], budget.epochs, peak_tflops, utilisation, pipeline_img_s)
    lines = [*header, "",
             "| model | params (M) | train GFLOP/img | inference GFLOP/img | CPU train img/s | jobs (3 protocols) | "
             "GPU-h (FLOPs) | GPU-h (+ input pipeline) | CPU core-h |",
             "|:--|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for c in costs:
        t = by_model[c.name]
        lines.append(f"| {c.name} | {c.params / 1e6:.2f} | {c.train_flops / 1e9:.2f} | {c.infer_flops / 1e9:.2f} | "
                     f"{_num(c.cpu_img_s, '.2f')} | {t.jobs} | {t.gpu_h:.2f} | {t.wall_h:.2f} | "
                     f"{_num(t.cpu_h if c.trainable else None, ',.0f')} |")
    lines += ["", "| protocol | jobs | training images x epochs | PFLOP | GPU-h (FLOPs) | GPU-h (+ input pipeline) | "
              "CPU core-h |", "|:--|--:|--:|--:|--:|--:|--:|"]
    for name, t in [*by_protocol.items(), ("**all**", total)]:
        lines.append(f"| {name} | {t.jobs} | {t.train_images:,.0f} | {t.flops / 1e15:,.1f} | {t.gpu_h:.1f} | "
                     f"{t.wall_h:.1f} | {t.cpu_h:,.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4, help="images per timed CPU training step (default 4)")
    p.add_argument("--steps", type=int, default=3, help="timed CPU steps per model after one warm-up (default 3)")
    p.add_argument("--peak-tflops", type=float, default=PEAK_BF16_DENSE_TFLOPS,
                   help=f"GPU peak bf16 dense TFLOP/s (default {PEAK_BF16_DENSE_TFLOPS}: H100/H200 SXM)")
    p.add_argument("--utilisation", type=float, default=DEFAULT_UTILISATION,
                   help=f"sustained share of the peak (default {DEFAULT_UTILISATION})")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help=f"seeds 0..N-1 (default {DEFAULT_SEEDS})")
    p.add_argument("--treatments", type=lambda s: s.split(","), default=TREATMENTS.names(),
                   help=f"comma-separated stain treatments (default all: {','.join(TREATMENTS.names())})")
    p.add_argument("--out", type=Path, help="also write the Markdown here")
    args = p.parse_args(argv)
    started, load_avg = time.perf_counter(), os.getloadavg()[0]
    torch.set_num_threads(CPU_THREADS_PER_JOB)
    budget, models = get_budget("paper"), list_models()
    costs = []
    for name in models:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        costs.append(measure_model(name, budget.img_size, args.batch, args.steps))
    pipeline_img_s = measure_pipeline(budget.img_size, budget.batch_size)
    print("planning the sweep (loads the datasets) ...", file=sys.stderr, flush=True)
    seeds = list(range(args.seeds))
    loads = job_loads(budget, models, args.treatments, seeds)
    header = [
        f"Generated by `{shlex.join(['python', 'scripts/plan_budget.py', *(sys.argv[1:] if argv is None else argv)])}` "
        f"on {time.strftime('%Y-%m-%d')}, torch {torch.__version__}.",
        "",
        f"- Budget `paper`: {budget.img_size} px, batch {budget.batch_size}, every job charged {budget.epochs} epochs "
        f"(an upper bound: early stopping at patience {budget.patience} can end sooner); protocols "
        f"{', '.join(PROTOCOLS)}; seeds 0-{seeds[-1]}; treatments {', '.join(args.treatments)} "
        f"(the training-free floors untreated), as `Sweep.plan()` lists the jobs.",
        f"- FLOPs: `torch.utils.flop_counter` (2 per multiply-add; elementwise ops, norms, pooling not counted), "
        f"grouped-conv backward corrected; train = forward + loss + backward of a {args.batch}-image batch, "
        f"per image.",
        f"- CPU: {cpu_model()}, {CPU_THREADS_PER_JOB} thread, batch {args.batch}, {args.steps} timed steps after a "
        f"warm-up, including the Adam step; load average {load_avg:.1f} at the start (a busy machine gives lower "
        f"img/s). Input pipeline (batching + tensor augmentation, one CPU core): {pipeline_img_s:.0f} img/s.",
        f"- GPU: peak {args.peak_tflops:g} TFLOP/s ({PEAK_SOURCE}) at utilisation {args.utilisation:g}; "
        f"GPU-h (FLOPs) = FLOPs / (peak x utilisation); (+ input pipeline) adds training images x epochs / "
        f"{pipeline_img_s:.0f} img/s, the augmentation the engine does between GPU steps.",
    ]
    text = report(costs, loads, budget, args.peak_tflops, args.utilisation, pipeline_img_s, header)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    print(f"done in {time.perf_counter() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
