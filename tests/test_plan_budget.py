"""scripts/plan_budget.py: the FLOP counting, the hours arithmetic, reading finished jobs and the report's
rows (no datasets, no GPU)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmark.record.jobs import JobConfig

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("plan_budget", ROOT / "scripts" / "plan_budget.py")
plan_budget = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = plan_budget  # dataclasses resolve their module by name
_spec.loader.exec_module(plan_budget)


def test_flops_of_a_small_network_match_the_hand_count():
    """2 FLOPs per multiply-add; each backward product costs what its forward costs, a depthwise conv's
    weight gradient included, and the input of the first layer gets no gradient."""
    torch.manual_seed(0)
    b, hw = 2, 8 * 8
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.Conv2d(4, 4, 3, padding=1, groups=4),
                        nn.Flatten(), nn.Linear(4 * hw, 5))
    with plan_budget.flop_counter() as counter:
        net(torch.rand(b, 3, 8, 8)).sum().backward()
    conv = 2 * b * hw * 4 * 3 * 9      # out channels x in channels x 3x3 per output pixel
    depthwise = 2 * b * hw * 4 * 1 * 9  # one input channel per group
    linear = 2 * b * 4 * hw * 5
    forward = conv + depthwise + linear
    backward = conv + 2 * depthwise + 2 * linear  # weight grads everywhere, input grads after the first layer
    assert counter.get_total_flops() == forward + backward


def test_cpu_attention_is_counted():
    b, h, s, d = 1, 2, 49, 32
    q = torch.rand(b, h, s, d)
    with plan_budget.flop_counter() as counter:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    assert counter.get_total_flops() == 2 * (2 * b * h * s * s * d)  # Q K^T, then (softmax) V


def _cost(name: str = "m", trainable: bool = True, explains: bool = True) -> object:
    return plan_budget.ModelCost(name, 10, trainable, 3e9 if trainable else 0.0, 1e9, 2.0 if trainable else None,
                                 explains)


LOAD = plan_budget.JobLoad("cross_stain", "m", "multitask", train=100, val=20, test=80, explain=40)


def test_job_flops_and_hours():
    epochs = 10
    flops = plan_budget.job_flops(LOAD, _cost(), epochs)
    assert flops == epochs * (100 * 3e9 + 20 * 1e9) + (80 + 40) * 1e9
    assert plan_budget.job_flops(LOAD, _cost(explains=False), epochs) == flops - 40 * 1e9
    seg = plan_budget.JobLoad("cross_stain", "m", "segmentation", 100, 20, 80, 40)
    assert plan_budget.job_flops(seg, _cost(), epochs) == flops - 40 * 1e9  # no Grad-CAM without a class target
    assert plan_budget.job_flops(LOAD, _cost(trainable=False), epochs) == (20 + 80) * 1e9
    assert plan_budget.gpu_hours(989.4e12 * 0.1 * 3600, 989.4, 0.1) == pytest.approx(1.0)
    assert plan_budget.gpu_hours(1e15, 1000.0, 0.5) == pytest.approx(2 / 3600)
    assert plan_budget.job_flops(LOAD, _cost(), 2.5) == 2.5 * (100 * 3e9 + 20 * 1e9) + (80 + 40) * 1e9  # a mean
    assert plan_budget.cpu_core_hours(6e9 * 3600, _cost()) == pytest.approx(1.0)  # 3 GFLOP x 2 img/s
    assert plan_budget.cpu_core_hours(1e9, _cost(trainable=False)) is None


@pytest.fixture
def one_thread():
    """As the script and the engine run: one thread, which is also what keeps this test fast on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_every_registered_model_gets_a_row(one_thread):
    from benchmark.engine.budgets import get_budget
    from models.registry import list_models

    names = list_models()
    costs = [plan_budget.measure_model(n, img_size=32, batch=2, steps=1) for n in names]
    loads = [plan_budget.JobLoad("within_dataset", n, "multitask", 10, 2, 3, 3) for n in names]
    epochs, _ = plan_budget.charged_epochs(costs, None, get_budget("paper").epochs)
    text = plan_budget.report(costs, loads, epochs, 989.4, 0.1, ["header"], "utilisation 0.1 (assumed)")
    rows = {line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")}
    assert set(names) <= rows
    assert {"within_dataset", "**all**"} <= rows
    assert "pipeline" not in text.lower()  # augmentation runs on the device: no CPU input-pipeline column
    assert text.splitlines()[-1].startswith("**Plan summary:** the full plan, ")
    for c in costs:
        assert (c.cpu_img_s is None) == (not c.trainable) and (c.train_flops > 0) == c.trainable
    assert next(c for c in costs if c.name == "sg_cldff").train_flops > 2 * next(
        c for c in costs if c.name == "sg_cldff").infer_flops


def test_measured_utilisation_replaces_the_guess():
    """R img/s x F FLOPs per image is the FLOP rate used; charged at it, a job's hours are its FLOPs over
    that rate, whatever the peak."""
    u = plan_budget.measured_utilisation(2000.0, 14.4e9, 989.4)
    assert u == pytest.approx(2000 * 14.4e9 / 989.4e12)
    flops = 3600 * 2000.0 * 14.4e9  # an hour of that model's measured training
    assert plan_budget.gpu_hours(flops, 989.4, u) == pytest.approx(1.0)
    u_other_peak = plan_budget.measured_utilisation(2000.0, 14.4e9, 500.0)
    assert plan_budget.gpu_hours(flops, 500.0, u_other_peak) == pytest.approx(1.0)


def _job(root: Path, name: str, model: str, epochs: int, done: bool = True) -> Path:
    folder = root / "jobs" / name
    folder.mkdir(parents=True)
    config = JobConfig("4", "cross_stain", model, {}, "none", "zheng_d1", 0, {"name": "paper", "epochs": 100}, "h", {},
                       name)
    (folder / "config.json").write_text(json.dumps(config.to_json()))
    history = [{"epoch": e, "loss": 1.0, "val_score": 0.5} for e in range(epochs)]
    (folder / "metrics.json").write_text(json.dumps({"train": {
        "history": history, "seconds": 60.0 * epochs, "images_seen": 1000 * epochs,
        "train_images_per_s": 1000 / 60, "eval_seconds": 30.0}}))
    if done:
        (folder / "done").write_text("2026-01-01T00:00:00\n")
    return folder


def test_epochs_and_wall_clock_come_from_finished_jobs(tmp_path):
    _job(tmp_path, "sg_cldff__a__seed0", "sg_cldff", 12)
    _job(tmp_path, "sg_cldff__a__seed1", "sg_cldff", 18)
    _job(tmp_path, "unet__a__seed0", "unet", 40, done=False)  # still running (or killed): not counted
    (_job(tmp_path, "unet__a__seed1", "unet", 30) / "metrics.json").write_text('{"train": {"hist')  # corrupt
    _job(tmp_path, "majority_class__a__seed0", "majority_class", 0)  # training-free: no epochs
    _job(tmp_path, ".sg_cldff__a__seed2.tmp-123", "sg_cldff", 99)  # a runner's temporary folder
    runs, unreadable = plan_budget.read_results([tmp_path])
    assert unreadable == 1
    assert sorted((r.model, r.epochs) for r in runs) == [("majority_class", 0), ("sg_cldff", 12), ("sg_cldff", 18)]
    assert plan_budget.mean_epochs(runs) == ({"sg_cldff": 15}, 15)

    costs = [_cost("sg_cldff"), _cost("unet"), _cost("majority_class", trainable=False)]
    epochs, fallback = plan_budget.charged_epochs(costs, runs, 100)
    assert epochs == {"sg_cldff": 15, "unet": 15, "majority_class": 0}
    assert fallback == ["unet"]  # no finished job of its own: the overall mean
    assert plan_budget.charged_epochs(costs, None, 100)[0] == {"sg_cldff": 100, "unet": 100, "majority_class": 0}

    loads = [plan_budget.JobLoad("cross_stain", c.name, "multitask", 100, 20, 80, 40) for c in costs]
    text = plan_budget.report(costs, loads, epochs, 989.4, 0.1, ["header"], "settings", runs)
    assert "pipeline" not in text.lower()
    wall = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in text.splitlines()
            if line.startswith("| ") and len(line.split("|")) == 9}
    assert [c.strip() for c in wall["sg_cldff"][:3]] == ["2", "15.0", "17"]  # jobs, mean epochs, 1000 img / 60 s
    assert wall["**all**"][-1].strip() == f"{(60.0 * 30 + 3 * 30.0) / 3600:.2f}"  # train + eval job-hours
    gpu_h = sum(plan_budget.gpu_hours(plan_budget.job_flops(load, c, epochs[c.name]), 989.4, 0.1)
                for load, c in zip(loads, costs))
    assert f"costs **{gpu_h:.2f} GPU-h** at settings" in text.splitlines()[-1]
