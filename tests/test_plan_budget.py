"""scripts/plan_budget.py: the FLOP counting, the hours arithmetic and the report's rows (no datasets)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

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
    assert plan_budget.pipeline_hours(LOAD, _cost(), epochs, pipeline_img_s=500.0) == pytest.approx(1000 / 500 / 3600)
    assert plan_budget.pipeline_hours(LOAD, _cost(trainable=False), epochs, 500.0) == 0.0
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
    from benchmark.budgets import get_budget
    from models.registry import list_models

    names = list_models()
    costs = [plan_budget.measure_model(n, img_size=32, batch=2, steps=1) for n in names]
    loads = [plan_budget.JobLoad("within_dataset", n, "multitask", 10, 2, 3, 3) for n in names]
    text = plan_budget.report(costs, loads, get_budget("paper"), 989.4, 0.1, 500.0, ["header"])
    rows = {line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")}
    assert set(names) <= rows
    assert {"within_dataset", "**all**"} <= rows
    for c in costs:
        assert (c.cpu_img_s is None) == (not c.trainable) and (c.train_flops > 0) == c.trainable
    assert next(c for c in costs if c.name == "sg_cldff").train_flops > 2 * next(
        c for c in costs if c.name == "sg_cldff").infer_flops
