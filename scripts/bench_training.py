"""Training throughput per model: the engine (augmentation, batching, loss, validation excluded)
beside a bare PyTorch loop of the same model and batch on pre-made tensors.

    python scripts/bench_training.py [--budget cpu] [--models a,b] [--threads 1] [--steps 30] [--device cuda]

The gap between the two columns is the engine's overhead (albumentations, tensor conversion); on a
GPU, ``engine/bare`` is the fraction of the device's training speed that data loading and
augmentation let a job use (1.0: the GPU is never starved). Prints images/s; run it on an otherwise
idle machine.
"""
from __future__ import annotations

import argparse
import time

import torch

from benchmark.batches import ArraySet, paper_augmentation, train_batches
from benchmark.budgets import get_budget
from wbcdata.synthetic import load_synthetic
from benchmark.devices import resolve_device
from benchmark.train import autocast_for, class_weights
from models import create_model
from core.study import SG_CLDFF_VARIANTS


def _step(model, opt, batch) -> None:
    with autocast_for(batch["image"].device):  # bf16 on a GPU, as the engine trains
        out = model(batch["image"])
        loss, _ = model.loss(out, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def bare_loop(name: str, size: int, batch_size: int, steps: int, device: torch.device) -> float:
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, img_size=size).to(device).to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    batch = {
        "image": torch.rand(batch_size, 3, size, size, device=device).contiguous(memory_format=torch.channels_last),
        "mask": torch.randint(0, 3, (batch_size, size, size), device=device),
        "mask_valid": torch.ones(batch_size, dtype=torch.bool, device=device),
        "label": torch.randint(0, 5, (batch_size,), device=device),
    }
    _step(model, opt, batch)  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        _step(model, opt, batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - t)


def engine_loop(name: str, data: ArraySet, size: int, batch_size: int, steps: int, device: torch.device) -> float:
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, img_size=size).to(device).to(memory_format=torch.channels_last)
    model.set_class_weights(class_weights(data.labels).to(device))
    model.train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    aug = paper_augmentation()
    seen, epoch, t = 0, 0, None
    while seen < (steps + 1) * batch_size:
        for batch in train_batches(data, batch_size, 0, epoch, device, aug):
            _step(model, opt, batch)
            if t is None:
                t = time.perf_counter()  # after the warm-up step
            else:
                seen += len(batch["label"])
            if seen >= steps * batch_size:
                break
        epoch += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", default="cpu")
    p.add_argument("--models", default=",".join(SG_CLDFF_VARIANTS))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (jobs run single-threaded)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    budget, device = get_budget(args.budget), resolve_device(args.device)
    data = ArraySet.from_samples(load_synthetic(None, budget.img_size), "synthetic")
    print(f"budget {budget.name}: {budget.img_size} px, batch {budget.batch_size}, device {device.type}, "
          f"{args.threads} thread(s), {args.steps} steps")
    print(f"{'model':<24}{'engine img/s':>14}{'bare loop img/s':>17}{'engine/bare':>13}")
    for name in args.models.split(","):
        e = engine_loop(name, data, budget.img_size, budget.batch_size, args.steps, device)
        b = bare_loop(name, budget.img_size, budget.batch_size, args.steps, device)
        print(f"{name:<24}{e:>14.1f}{b:>17.1f}{e / b:>13.2f}")


if __name__ == "__main__":
    main()
