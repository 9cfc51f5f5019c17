"""Plan the paper-budget sweep before renting a GPU: FLOPs per image, CPU speed, GPU-hours.

    python scripts/plan_budget.py [--batch 4] [--steps 3] [--peak-tflops 989.4]
                                  [--utilisation 0.10 | --measured-img-s R [--measured-model sg_cldff]]
                                  [--from-results DIR ...] [--seeds 5]
                                  [--treatments hed,macenko,none,randstainna] [--out FILE]

Per registered model: FLOPs of one training step (forward, the model's own loss, backward) and of
inference per image at the paper budget's 224 px, counted by ``torch.utils.flop_counter``, and the
training images/s of one CPU thread (as the engine runs a job). The jobs come from the harness
itself: ``benchmark.engine.plan.Sweep(...).plan()`` of the three protocols below with every registered
model, by default every treatment and seeds 0-4 (it loads the datasets: set ``WBC_DATA_MIRROR``).
Each job is charged its epochs of training with validation after each, and one pass over each test
target. GPU-hours = FLOPs / (peak x utilisation). Augmentation runs batched on the training device,
inside those FLOPs' time, so there is no separate input-pipeline term.

Two measurements replace the two guesses (docs/gpu.md, "Planning the paper budget"):

- ``--measured-img-s R``: the aggregate training images/s of ``--measured-model`` jobs packed on one
  GPU, as ``scripts/bench_training.py`` prints it (its ``agg @k`` column). The utilisation becomes
  R x that model's training FLOPs per image / peak, instead of ``--utilisation``, and every model is
  charged at it (the small models fill the GPU about equally badly). The peak then cancels out of
  the GPU-hours; it only names the utilisation.
- ``--from-results DIR`` (repeatable): the finished jobs (``DIR/jobs/*/`` holding ``done``) of the
  planned budget. Whenever it is given, each model's jobs are charged the mean number of epochs its
  finished jobs ran (``metrics.json`` train history; early stopping ends most before the budget's
  100), a model without one the mean over all of them; their measured wall-clock is tabled too.
  Unreadable job folders are skipped and counted on stderr.

Progress goes to stderr; the Markdown report, ending in a one-line plan summary, to stdout (and
``--out``).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

import torch

from benchmark.engine.budgets import Budget, get_budget
from benchmark.engine.environment import cpu_model
from benchmark.engine.explain import can_explain
from benchmark.engine.flops import flop_counter
from benchmark.engine.job import CPU_THREADS_PER_JOB
from benchmark.engine.plan import Sweep
from benchmark.engine.treatments import TREATMENTS
from benchmark.record.jobs import JobConfig
from core.errors import BenchmarkError
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
"""Model FLOP utilisation assumed for these small CNN / windowed-attention models at batch 32, when
no measured rate is given (``--measured-img-s``)."""
MEASURED_MODEL = "sg_cldff"
"""The model whose packed training rate ``--measured-img-s`` gives by default: the paper's own."""
TARGET_GPU_HOURS = 2.0
"""What the full paper plan may cost; the plan summary says whether it fits."""


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
    """Whether jobs run Grad-CAM on each classification target (``benchmark.engine.explain.can_explain``)."""


def synthetic_batch(batch: int, img_size: int) -> dict[str, torch.Tensor]:
    """A batch as the engine builds it (``benchmark.engine.batches.to_batch``), every sample with mask and label
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
            for job, split in sweep.plan().jobs:
                loads.append(JobLoad(protocol, job.model, split.task, len(split.train), len(split.val),
                                     sum(len(t.ids) for t in split.targets),
                                     sum(min(budget.explain_images, len(t.ids)) for t in split.targets)))
    return loads


def job_flops(load: JobLoad, cost: ModelCost, epochs: float) -> float:
    """One job's FLOPs: every epoch trains on every training image and validates, then each test
    target is predicted once. ``epochs`` may be a mean over finished jobs. A training-free model
    validates once and trains nothing. Grad-CAM is charged as one more inference (its backward stops
    at the fused layer)."""
    if not cost.trainable:
        return (load.val + load.test) * cost.infer_flops
    explain = load.explain if cost.explains and load.task != "segmentation" else 0
    per_epoch = load.train * cost.train_flops + load.val * cost.infer_flops
    return epochs * per_epoch + (load.test + explain) * cost.infer_flops


def gpu_hours(flops: float, peak_tflops: float, utilisation: float) -> float:
    """Hours of one GPU that sustains ``utilisation`` of its ``peak_tflops``."""
    return flops / (peak_tflops * 1e12 * utilisation) / 3600


def measured_utilisation(img_s: float, train_flops: float, peak_tflops: float) -> float:
    """The share of the peak a measured training rate uses: ``img_s`` x training FLOPs per image /
    peak. Charging every model at it makes GPU-h = FLOPs / (``img_s`` x ``train_flops``): the peak
    cancels out."""
    return img_s * train_flops / (peak_tflops * 1e12)


def cpu_core_hours(flops: float, cost: ModelCost) -> float | None:
    """Hours on one core at the FLOP rate the model trained at there; None for a training-free model."""
    return flops / (cost.train_flops * cost.cpu_img_s) / 3600 if cost.trainable and cost.cpu_img_s else None


@dataclass(frozen=True)
class JobRun:
    """What one finished job of a results folder ran and measured."""

    model: str
    budget: str
    epochs: int
    """Epochs trained (one train history entry each); 0 for a training-free model."""
    seconds: float
    """Training wall-clock, validation included."""
    images_seen: int
    eval_seconds: float
    """Wall-clock of scoring every test target (and Grad-CAM)."""


def read_results(dirs: Sequence[Path]) -> tuple[list[JobRun], int]:
    """The finished jobs under each ``DIR/jobs/`` (a folder counts only once it holds ``done``: the
    runner writes that last) and how many of them could not be read (missing or corrupt
    ``config.json`` / ``metrics.json``, or a field missing), which are skipped."""
    runs, unreadable = [], 0
    for d in dirs:
        for done in sorted((d / "jobs").glob("*/done")):
            folder = done.parent
            if folder.name.startswith("."):  # a runner's temporary folder, not a result
                continue
            try:
                config = JobConfig.read(folder)
                train = json.loads((folder / "metrics.json").read_text())["train"]
                runs.append(JobRun(config.model, config.budget_name, len(train["history"]),
                                   float(train["seconds"]), int(train["images_seen"]), float(train["eval_seconds"])))
            except (BenchmarkError, OSError, ValueError, KeyError, TypeError):
                unreadable += 1
    return runs, unreadable


def mean_epochs(runs: Sequence[JobRun]) -> tuple[dict[str, float], float | None]:
    """Mean epochs run per model, and over every job, of the jobs that trained (None: none did)."""
    per_model: dict[str, list[int]] = defaultdict(list)
    for r in runs:
        if r.epochs:
            per_model[r.model].append(r.epochs)
    overall = [e for epochs in per_model.values() for e in epochs]
    return {m: mean(e) for m, e in per_model.items()}, (mean(overall) if overall else None)


def charged_epochs(costs: Sequence[ModelCost], runs: Sequence[JobRun] | None,
                   budget_epochs: int) -> tuple[dict[str, float], list[str]]:
    """Epochs each model's jobs are charged, and the trainable models that got the overall mean for
    want of a finished job of their own. Without results (or without a trained job in them) every
    model is charged the budget's epochs, an upper bound; a training-free model trains none."""
    per_model, overall = mean_epochs(runs or [])
    epochs, fallback = {}, []
    for c in costs:
        if not c.trainable:
            epochs[c.name] = 0.0
        elif overall is None:
            epochs[c.name] = float(budget_epochs)
        else:
            epochs[c.name] = per_model.get(c.name, overall)
            if c.name not in per_model:
                fallback.append(c.name)
    return epochs, fallback


@dataclass
class Totals:
    """Sums over the jobs of one model, one protocol or the whole sweep."""

    jobs: int = 0
    train_images: float = 0.0
    flops: float = 0.0
    gpu_h: float = 0.0
    cpu_h: float = 0.0

    def add(self, load: JobLoad, cost: ModelCost, epochs: float, peak_tflops: float, utilisation: float) -> None:
        flops = job_flops(load, cost, epochs)
        self.jobs += 1
        self.train_images += epochs * load.train if cost.trainable else 0
        self.flops += flops
        self.gpu_h += gpu_hours(flops, peak_tflops, utilisation)
        self.cpu_h += cpu_core_hours(flops, cost) or 0.0


def _num(x: float | None, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def results_table(runs: Sequence[JobRun]) -> list[str]:
    """The finished jobs' measured wall-clock, per model and over all: what a real run took."""
    by_model: dict[str, list[JobRun]] = defaultdict(list)
    for r in runs:
        by_model[r.model].append(r)
    lines = ["| model (finished jobs) | jobs | mean epochs run | train img/s per job | mean train min/job | "
             "mean eval min/job | job-h (train + eval) |", "|:--|--:|--:|--:|--:|--:|--:|"]
    for name, rs in [*sorted(by_model.items()), ("**all**", list(runs))]:
        trained = [r for r in rs if r.epochs]
        seconds = sum(r.seconds for r in trained)
        img_s = sum(r.images_seen for r in trained) / seconds if seconds else None
        lines.append(f"| {name} | {len(rs)} | {_num(mean(r.epochs for r in trained) if trained else None, '.1f')} | "
                     f"{_num(img_s, ',.0f')} | {mean(r.seconds for r in rs) / 60:.1f} | "
                     f"{mean(r.eval_seconds for r in rs) / 60:.1f} | "
                     f"{sum(r.seconds + r.eval_seconds for r in rs) / 3600:.2f} |")
    return [*lines, "", "Jobs packed k to a GPU run at once, so their job-hours / k approximate the GPU-hours they "
                        "took."]


def report(costs: list[ModelCost], loads: list[JobLoad], epochs: Mapping[str, float], peak_tflops: float,
           utilisation: float, header: list[str], settings: str, runs: Sequence[JobRun] = ()) -> str:
    """The Markdown plan: one row per model, then one per protocol and the total, the finished jobs'
    wall-clock when there are any, and a one-line summary against the target; ``settings`` says in
    a few words which utilisation and epochs the summary's hours rest on."""
    by_model = {c.name: Totals() for c in costs}
    by_protocol = {p: Totals() for p in dict.fromkeys(load.protocol for load in loads)}
    total = Totals()
    cost_of = {c.name: c for c in costs}
    for load in loads:
        for t in (by_model[load.model], by_protocol[load.protocol], total):
            t.add(load, cost_of[load.model], epochs[load.model], peak_tflops, utilisation)
    lines = [*header, "",
             "| model | params (M) | train GFLOP/img | inference GFLOP/img | CPU train img/s | epochs charged | "
             "jobs (3 protocols) | GPU-h | CPU core-h |",
             "|:--|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for c in costs:
        t = by_model[c.name]
        lines.append(f"| {c.name} | {c.params / 1e6:.2f} | {c.train_flops / 1e9:.2f} | {c.infer_flops / 1e9:.2f} | "
                     f"{_num(c.cpu_img_s, '.2f')} | {_num(epochs[c.name] if c.trainable else None, '.1f')} | "
                     f"{t.jobs} | {t.gpu_h:.2f} | {_num(t.cpu_h if c.trainable else None, ',.0f')} |")
    lines += ["", "| protocol | jobs | training images x epochs | PFLOP | GPU-h | CPU core-h |",
              "|:--|--:|--:|--:|--:|--:|"]
    for name, t in [*by_protocol.items(), ("**all**", total)]:
        lines.append(f"| {name} | {t.jobs} | {t.train_images:,.0f} | {t.flops / 1e15:,.1f} | {t.gpu_h:.2f} | "
                     f"{t.cpu_h:,.0f} |")
    if runs:
        lines += ["", *results_table(runs)]
    verdict = "within" if total.gpu_h <= TARGET_GPU_HOURS else "over"
    lines += ["", f"**Plan summary:** the full plan, {total.jobs} jobs ({len(costs)} models, {len(by_protocol)} "
                  f"protocols, seeds and treatments as above), costs **{total.gpu_h:.2f} GPU-h** at "
                  f"{settings}: {verdict} the target of full paper plan <= {TARGET_GPU_HOURS:g} h."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4, help="images per timed CPU training step (default 4)")
    p.add_argument("--steps", type=int, default=3, help="timed CPU steps per model after one warm-up (default 3)")
    p.add_argument("--peak-tflops", type=float, default=PEAK_BF16_DENSE_TFLOPS,
                   help=f"GPU peak bf16 dense TFLOP/s (default {PEAK_BF16_DENSE_TFLOPS}: H100/H200 SXM)")
    p.add_argument("--utilisation", type=float, default=DEFAULT_UTILISATION,
                   help=f"assumed sustained share of the peak, without --measured-img-s (default {DEFAULT_UTILISATION})")
    p.add_argument("--measured-img-s", type=float,
                   help="aggregate training img/s of --measured-model jobs packed on one GPU (scripts/bench_training.py, "
                        "its 'agg @k' column): replaces --utilisation")
    p.add_argument("--measured-model", default=MEASURED_MODEL,
                   help=f"the model --measured-img-s was measured with (default {MEASURED_MODEL})")
    p.add_argument("--from-results", type=Path, action="append", default=[], metavar="DIR",
                   help="a sweep's results folder (repeatable): charge each model the mean epochs its finished jobs "
                        "ran, and table their wall-clock")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help=f"seeds 0..N-1 (default {DEFAULT_SEEDS})")
    p.add_argument("--treatments", type=lambda s: s.split(","), default=TREATMENTS.names(),
                   help=f"comma-separated stain treatments (default all: {','.join(TREATMENTS.names())})")
    p.add_argument("--out", type=Path, help="also write the Markdown here")
    args = p.parse_args(argv)
    models = list_models()
    if args.measured_img_s is not None and args.measured_model not in models:
        p.error(f"--measured-model {args.measured_model}: not a registered model")
    for d in args.from_results:
        if not (d / "jobs").is_dir():
            p.error(f"--from-results {d}: no jobs/ folder in it")
    started, load_avg = time.perf_counter(), os.getloadavg()[0]
    torch.set_num_threads(CPU_THREADS_PER_JOB)
    budget = get_budget("paper")
    runs = None
    if args.from_results:
        found, unreadable = read_results(args.from_results)
        runs = [r for r in found if r.budget == budget.name]
        if unreadable:
            print(f"skipped {unreadable} unreadable finished job folder(s)", file=sys.stderr)
        if len(runs) < len(found):
            print(f"ignored {len(found) - len(runs)} finished job(s) of budgets other than {budget.name}",
                  file=sys.stderr)
    costs = []
    for name in models:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        costs.append(measure_model(name, budget.img_size, args.batch, args.steps))
    if args.measured_img_s is None:
        utilisation = args.utilisation
        utilisation_line = (f"utilisation {utilisation:g} assumed (`--utilisation`, a planning value, not a "
                            f"measurement); GPU-h = FLOPs / (peak x utilisation).")
        settings = f"utilisation {utilisation:g} (assumed)"
    else:
        ref = next(c for c in costs if c.name == args.measured_model)
        if not ref.trainable:
            p.error(f"--measured-model {ref.name}: trains nothing, so its img/s gives no FLOP rate")
        utilisation = measured_utilisation(args.measured_img_s, ref.train_flops, args.peak_tflops)
        if utilisation > 1:
            print(f"warning: measured utilisation {utilisation:.2f} > 1: check --measured-img-s and --peak-tflops",
                  file=sys.stderr)
        utilisation_line = (f"utilisation {utilisation:.4f} measured: {args.measured_img_s:g} training img/s of "
                            f"`{ref.name}` jobs packed on one GPU (`--measured-img-s`, scripts/bench_training.py "
                            f"'agg @k') x {ref.train_flops / 1e9:.2f} GFLOP/img / peak. Every model, and inference, "
                            f"is charged at that utilisation, assuming the small models fill the GPU about equally "
                            f"badly: GPU-h = FLOPs / (peak x utilisation), i.e. FLOPs / ({args.measured_img_s:g} "
                            f"img/s x {ref.train_flops / 1e9:.2f} GFLOP/img), whatever the peak.")
        settings = f"utilisation {utilisation:.4f} (measured with {ref.name})"
    epochs, fallback = charged_epochs(costs, runs, budget.epochs)
    if runs is None or not any(r.epochs for r in runs):
        epochs_line = (f"every job charged {budget.epochs} epochs (an upper bound: early stopping at patience "
                       f"{budget.patience} can end sooner)")
        if runs is not None:
            epochs_line += f"; `--from-results` held no trained `{budget.name}` job, so no measured epochs"
        settings += f", {budget.epochs} epochs per job (upper bound)"
    else:
        where = ", ".join(str(d) for d in args.from_results)
        epochs_line = (f"each model's jobs charged the mean epochs its {len(runs)} finished `{budget.name}` jobs in "
                       f"{where} ran (column 'epochs charged'; early stopping at patience {budget.patience} of "
                       f"{budget.epochs})")
        if fallback:
            epochs_line += (f"; without a finished job of their own, {', '.join(fallback)} charged the mean over "
                            f"all of them, {mean_epochs(runs)[1]:.1f}")
            print(f"no finished job, charged the overall mean epochs: {', '.join(fallback)}", file=sys.stderr)
        settings += ", the epochs run in the results"
    print("planning the sweep (loads the datasets) ...", file=sys.stderr, flush=True)
    seeds = list(range(args.seeds))
    loads = job_loads(budget, models, args.treatments, seeds)
    header = [
        f"Generated by `{shlex.join(['python', 'scripts/plan_budget.py', *(sys.argv[1:] if argv is None else argv)])}` "
        f"on {time.strftime('%Y-%m-%d')}, torch {torch.__version__}.",
        "",
        f"- Budget `{budget.name}`: {budget.img_size} px, batch {budget.batch_size}, {epochs_line}; protocols "
        f"{', '.join(PROTOCOLS)}; seeds 0-{seeds[-1]}; treatments {', '.join(args.treatments)} "
        f"(the training-free floors untreated), as `Sweep.plan()` lists the jobs.",
        f"- FLOPs: `torch.utils.flop_counter` (2 per multiply-add; elementwise ops, norms, pooling not counted), "
        f"grouped-conv backward corrected; train = forward + loss + backward of a {args.batch}-image batch, "
        f"per image.",
        f"- CPU: {cpu_model()}, {CPU_THREADS_PER_JOB} thread, batch {args.batch}, {args.steps} timed steps after a "
        f"warm-up, including the Adam step; load average {load_avg:.1f} at the start (a busy machine gives lower "
        f"img/s).",
        f"- GPU: peak {args.peak_tflops:g} TFLOP/s "
        f"({PEAK_SOURCE if args.peak_tflops == PEAK_BF16_DENSE_TFLOPS else 'given with --peak-tflops'}) "
        f"at {utilisation_line} Augmentation runs on the "
        f"GPU inside that time: no CPU input-pipeline term.",
    ]
    text = report(costs, loads, epochs, args.peak_tflops, utilisation, header, settings, runs or ())
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(f"done in {time.perf_counter() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
