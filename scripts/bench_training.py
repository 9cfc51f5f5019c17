"""Training throughput per model: the engine beside a bare loop, packed jobs, share of the chip,
and the wall time of a small sweep.

    python scripts/bench_training.py [--budget cpu] [--models a,b] [--device cuda] [--steps 30]
        [--jobs 1,8,16] [--seconds 10] [--determinism on|off] [--sweep-seeds 0] [--sweep-protocol P]

Per model it prints:
- ``engine img/s``: the engine's own training input path (data held on the device, a batch gathered
  and augmented there by ``benchmark.engine.augment``) and step, validation excluded;
- ``bare img/s``: the same model, batch and step on one pre-made batch (no input path at all);
  ``engine/bare`` is the share of the device's training speed the engine's input path leaves a job
  (1.0: the model never waits for data);
- ``agg img/s @k``: images/s of ``k`` engine loops run at once as separate processes (as the runner
  packs jobs on one GPU), all started together and timed over ``--seconds``;
- ``GFLOP/img`` (forward + loss + backward, ``torch.utils.flop_counter``) and ``% peak``: the best
  rate's FLOP/s against a dense matrix product's rate measured on this device just before (bf16 on
  a GPU; fp32 on one CPU thread, times the cores the k processes use), i.e. how much of the chip
  these models use.

``--sweep-seeds N`` then times a whole sweep (``--sweep-protocol``, these models plus the floors,
seeds 0..N-1, in a temporary folder) through the runner, as ``make benchmark`` runs it. Every job
applies the engine's determinism switches (``--determinism off`` measures what they cost). Runs on
a CPU too (small sizes: ``--budget smoke``), which is how the tests cover it; run it on an otherwise
idle machine.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import torch

from benchmark.engine.batches import ArraySet, TensorSet, paper_augmentation, train_batches
from benchmark.engine.budgets import Budget, get_budget
from benchmark.engine.devices import CUDA_DETERMINISM_ENV, make_deterministic, mps_active, resolve_device
from benchmark.engine.flops import flop_counter
from benchmark.engine.train import autocast_for, class_weights
from core.study import REFERENCE_MODELS, SG_CLDFF_VARIANTS
from core.sample import NUM_CLASSES
from models import create_model
from wbcdata.synthetic import load_synthetic


def _step(model, opt, batch) -> None:
    with autocast_for(batch["image"].device):  # bf16 on a GPU, as the engine trains
        out = model(batch["image"])
        loss, _ = model.loss(out, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model(name: str, size: int, device: torch.device, data: ArraySet | None = None):
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES, img_size=size).to(device).to(memory_format=torch.channels_last)
    if data is not None:
        model.set_class_weights(class_weights(data.labels).to(device))
    model.train()
    return model, torch.optim.Adam(model.parameters(), 1e-3)


def _fixed_batch(batch_size: int, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "image": torch.rand(batch_size, 3, size, size, device=device).contiguous(memory_format=torch.channels_last),
        "mask": torch.randint(0, 3, (batch_size, size, size), device=device),
        "mask_valid": torch.ones(batch_size, dtype=torch.bool, device=device),
        "label": torch.randint(0, 5, (batch_size,), device=device),
    }


def bare_loop(name: str, size: int, batch_size: int, steps: int, device: torch.device) -> float:
    model, opt = _model(name, size, device)
    batch = _fixed_batch(batch_size, size, device)
    _step(model, opt, batch)  # warm-up
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        _step(model, opt, batch)
    _sync(device)
    return steps * batch_size / (time.perf_counter() - t)


def engine_batches(data: TensorSet, batch_size: int):
    """The engine's batches, epoch after epoch, forever."""
    aug, epoch = paper_augmentation(), 0
    while True:
        yield from train_batches(data, batch_size, 0, epoch, aug)
        epoch += 1


def engine_loop(name: str, data: ArraySet, size: int, batch_size: int, steps: int, device: torch.device) -> float:
    model, opt = _model(name, size, device, data)
    batches = engine_batches(TensorSet.upload(data, device), batch_size)
    _step(model, opt, next(batches))  # warm-up
    _sync(device)
    seen, t = 0, time.perf_counter()
    for _ in range(steps):
        batch = next(batches)
        _step(model, opt, batch)
        seen += len(batch["label"])
    _sync(device)
    return seen / (time.perf_counter() - t)


def _packed_worker(name: str, budget: Budget, device: str, seconds: float, barrier, results) -> None:
    """One of k engine loops: set up, wait for the others, train for ``seconds``, report images."""
    torch.set_num_threads(1)
    dev = torch.device(device)
    make_deterministic(dev)
    data = ArraySet.from_samples(load_synthetic(None, budget.img_size), "synthetic")
    model, opt = _model(name, budget.img_size, dev, data)
    batches = engine_batches(TensorSet.upload(data, dev), budget.batch_size)
    for _ in range(3):
        _step(model, opt, next(batches))
    _sync(dev)
    barrier.wait()
    seen, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        batch = next(batches)
        _step(model, opt, batch)
        seen += len(batch["label"])
    _sync(dev)
    results.put((seen, time.perf_counter() - t))


def aggregate(name: str, budget: Budget, device: torch.device, k: int, seconds: float) -> float:
    """Images/s of ``k`` engine loops in ``k`` spawned processes running at once."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(k), ctx.Queue()
    procs = [ctx.Process(target=_packed_worker, args=(name, budget, str(device), seconds, barrier, results))
             for _ in range(k)]
    for p in procs:
        p.start()
    try:
        got = [results.get(timeout=300 + seconds) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    return sum(seen for seen, _ in got) / max(elapsed for _, elapsed in got)


def train_gflop_per_image(name: str, size: int) -> float:
    """Forward + loss + backward FLOPs of one image, counted on a 2-image batch on the CPU (the count
    per image does not depend on the device or the batch; a full batch at 224 px takes a minute here)."""
    model, opt = _model(name, size, torch.device("cpu"))
    batch_size = 2
    batch = _fixed_batch(batch_size, size, torch.device("cpu"))
    with flop_counter() as counter:
        out = model(batch["image"])
        model.loss(out, batch)[0].backward()
    return counter.get_total_flops() / batch_size / 1e9


def matmul_tflops(device: torch.device) -> float:
    """A dense matrix product's rate on this device: bf16 8192^3 on a GPU, fp32 512^3 on a CPU."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (512, torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    reps, t = 10, time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


def chip_tflops(peak: float, device: torch.device, k: int) -> float:
    """What ``k`` packed processes can reach: the whole GPU, or on a CPU one core's rate per process
    (each job is single-threaded) up to the cores there are."""
    return peak if device.type == "cuda" else peak * min(k, os.cpu_count() or 1)


def time_sweep(protocol: str, models: list[str], seeds: int, budget: Budget, device: torch.device) -> tuple[int, float]:
    """Jobs and wall seconds of a sweep through the runner (its own packing and worker choice)."""
    from benchmark.engine.plan import Sweep
    from benchmark.engine.sweep import run_sweep

    with tempfile.TemporaryDirectory() as out:
        sweep = Sweep(protocol, [*models, *REFERENCE_MODELS], list(range(seeds)), budget, Path(out))
        t = time.perf_counter()
        done = run_sweep(sweep, device=device, log=lambda line: print("  " + line, flush=True))
        return len(done), time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default="cpu")
    p.add_argument("--models", default=",".join(SG_CLDFF_VARIANTS))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (jobs run single-threaded)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")
    p.add_argument("--jobs", default="", help="comma-separated k: aggregate img/s of k packed processes")
    p.add_argument("--seconds", type=float, default=10.0, help="timed seconds of each packed measurement")
    p.add_argument("--determinism", choices=("on", "off"), default="on",
                   help="the engine's determinism switches (cuDNN deterministic, no autotuning; default on)")
    p.add_argument("--sweep-seeds", type=int, default=0, help="also time a sweep of seeds 0..N-1 (default: none)")
    p.add_argument("--sweep-protocol", default="cross_stain_synthetic")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    budget, device = get_budget(args.budget), resolve_device(args.device)
    os.environ[CUDA_DETERMINISM_ENV] = "1" if args.determinism == "on" else "0"  # the packed workers inherit it
    make_deterministic(device)
    ks = [int(k) for k in args.jobs.split(",") if k]
    models = args.models.split(",")
    data = ArraySet.from_samples(load_synthetic(None, budget.img_size), "synthetic")
    peak = matmul_tflops(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"budget {budget.name}: {budget.img_size} px, batch {budget.batch_size}, device {device} ({where}), "
          f"{args.threads} thread(s), {args.steps} steps, determinism {args.determinism}, "
          f"MPS {'on' if mps_active() else 'off'}; dense matmul {peak:.1f} TFLOP/s "
          f"({'bf16' if device.type == 'cuda' else 'fp32'}), {os.cpu_count()} CPU cores", flush=True)
    head = f"{'model':<20}{'engine img/s':>13}{'bare img/s':>12}{'engine/bare':>12}"
    head += "".join(f"{f'agg @{k}':>11}" for k in ks) + f"{'GFLOP/img':>11}{'% peak':>8}"
    print(head, flush=True)
    for name in models:  # each figure is printed as soon as it is measured: a run cut short keeps them
        gflop = train_gflop_per_image(name, budget.img_size)
        e = engine_loop(name, data, budget.img_size, budget.batch_size, args.steps, device)
        b = bare_loop(name, budget.img_size, budget.batch_size, args.steps, device)
        print(f"{name:<20}{e:>13.1f}{b:>12.1f}{e / b:>12.2f}", end="", flush=True)
        rates = [(e, 1)]
        for k in ks:
            rates.append((aggregate(name, budget, device, k, args.seconds), k))
            print(f"{rates[-1][0]:>11.1f}", end="", flush=True)
        share = max(rate * gflop / 1e3 / chip_tflops(peak, device, k) for rate, k in rates)
        print(f"{gflop:>11.2f}{100 * share:>7.2f}%", flush=True)
    if args.sweep_seeds:
        jobs, seconds = time_sweep(args.sweep_protocol, models, args.sweep_seeds, budget, device)
        print(f"sweep {args.sweep_protocol}, budget {budget.name}, {','.join(models)} + floors, "
              f"seeds 0-{args.sweep_seeds - 1}: {jobs} jobs in {seconds:.1f} s wall", flush=True)


if __name__ == "__main__":
    main()
