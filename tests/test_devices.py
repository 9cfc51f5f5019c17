"""Device choice, the GPU packing rule and what each job records about both (CI has no GPU: the
rule is arithmetic on measured numbers, tested here; the device errors are tested where CUDA is absent)."""
from __future__ import annotations

import json

import pytest
import torch

from benchmark.record.jobs import JobConfig
from benchmark.engine.budgets import get_budget
from benchmark.engine.devices import (CUDA_CONTEXT_BYTES, MEMORY_HEADROOM, jobs_per_gpu, make_deterministic, memory_fraction,
                               peak_memory, resolve_device)
from benchmark.engine import packing
from benchmark.engine.packing import recorded_peak
from core.errors import BenchmarkError

GIB = 2**30
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="tests the error on a machine without CUDA")


def test_no_request_picks_what_the_machine_has():
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@no_cuda
@pytest.mark.parametrize("requested", ["cuda", "cuda:0", "cuda:3"])
def test_a_missing_gpu_is_an_error_not_a_fallback(requested):
    with pytest.raises(BenchmarkError, match=f"--device {requested} was asked for, but this machine has no usable CUDA"):
        resolve_device(requested)


@pytest.mark.parametrize("requested, message", [("tpu", "not a device name"), ("mps", "only cpu, cuda and cuda:N")])
def test_an_unknown_device_is_an_error(requested, message):
    with pytest.raises(BenchmarkError, match=message):
        resolve_device(requested)


def test_jobs_per_gpu_fits_free_memory_at_the_measured_peak():
    peak = 2 * GIB
    per_job = peak * MEMORY_HEADROOM + CUDA_CONTEXT_BYTES
    assert jobs_per_gpu(int(10 * per_job) + 1, peak, cpu_cores=64) == 10
    assert jobs_per_gpu(int(10 * per_job) - 1, peak, cpu_cores=64) == 9


def test_jobs_per_gpu_never_exceeds_the_cores_that_feed_them_and_never_drops_below_one():
    assert jobs_per_gpu(139 * GIB, GIB // 2, cpu_cores=16) == 16
    assert jobs_per_gpu(GIB, 80 * GIB, cpu_cores=16) == 1
    with pytest.raises(BenchmarkError, match="peak memory must be positive"):
        jobs_per_gpu(GIB, 0, cpu_cores=4)


def test_a_sweep_of_training_free_models_probes_a_positive_peak(monkeypatch):
    """A sweep of models without trainable parameters (the floors, a frozen-encoder probe) still gets a
    peak to pack by, from one eval forward each, not 0 (which packing refuses). No GPU here: the
    allocator's counters are faked and the forwards run on the CPU."""
    monkeypatch.setattr(packing, "reset_peak_memory", lambda device: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 4096)
    assert packing.probe_peak({"majority_class": {}, "constant_mask": {}}, get_budget("smoke"), torch.device("cpu")) == 4096


def test_memory_fraction_is_an_equal_share():
    assert memory_fraction(4) == 0.25 and memory_fraction(1) == 1.0


def test_a_cpu_job_records_its_determinism_switches_and_peak_memory():
    rec = make_deterministic(torch.device("cpu"))
    assert set(rec) >= {"cudnn_deterministic", "deterministic_algorithms", "cublas_workspace_config", "cpu_threads"}
    peak = peak_memory(torch.device("cpu"))
    assert peak.kind == "process_max_rss" and peak.bytes > 50 * 2**20


def _job(root, name: str, model: str, budget: str, peak: int, kind: str = "cuda_max_allocated") -> None:
    d = root / "jobs" / name
    d.mkdir(parents=True)
    config = JobConfig("4", "cross_stain", model, {}, "none", "zheng_d1", 0, get_budget(budget).to_dict(), "h", {}, name)
    (d / "config.json").write_text(json.dumps(config.to_json()))
    (d / "metrics.json").write_text(json.dumps({"train": {"peak_memory_bytes": peak, "peak_memory_kind": kind}}))


def test_recorded_peak_is_the_largest_gpu_peak_of_the_same_models_and_budget(tmp_path):
    _job(tmp_path, "a", "unet", "paper", 3 * GIB)
    _job(tmp_path, "b", "sg_cldff", "paper", 5 * GIB)
    _job(tmp_path, "c", "sg_cldff", "cpu", 9 * GIB)  # another budget
    _job(tmp_path, "d", "xincept_all", "paper", 9 * GIB)  # a model not in this sweep
    _job(tmp_path, "e", "unet", "paper", 9 * GIB, kind="process_max_rss")  # a CPU run
    assert recorded_peak(tmp_path, {"unet", "sg_cldff"}, get_budget("paper")) == 5 * GIB
    assert recorded_peak(tmp_path, {"classical"}, get_budget("paper")) is None


@pytest.fixture
def fake_cuda(monkeypatch):
    """One pretend CUDA device: enough of torch.cuda for the device choice and a worker's setup. The
    memory cap checks its device argument as torch's own does (an unindexed ``cuda`` is refused),
    and the determinism switches are recorded without flipping this process's global flags."""
    calls = []

    def set_fraction(fraction, device=None):
        torch.cuda._utils._get_device_index(device, optional=False)  # torch's check: ValueError for "cuda"
        calls.append((fraction, device))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", set_fraction)
    monkeypatch.setattr("benchmark.engine.launchers.base.make_deterministic", lambda device: calls.append(("deterministic", device)))
    threads = torch.get_num_threads()
    yield calls
    torch.set_num_threads(threads)  # a packed worker goes single-threaded; this test process does not


@pytest.mark.parametrize("requested", [None, "cuda", "cuda:0", torch.device("cuda")])
def test_every_cuda_spelling_resolves_to_an_indexed_device(fake_cuda, requested):
    assert resolve_device(requested) == torch.device("cuda", 0)


def test_the_unindexed_device_is_what_torch_refuses(fake_cuda):
    """The crash of every packed GPU job on an H200 (issue 18): the check the fake reproduces."""
    with pytest.raises(ValueError, match="specified index"):
        torch.cuda.set_per_process_memory_fraction(0.5, torch.device("cuda"))


@pytest.mark.parametrize("requested", ["cuda", "cuda:0"])
def test_a_packed_worker_caps_its_memory_on_an_indexed_device(fake_cuda, requested):
    from benchmark.engine.launchers.base import WorkerSettings, prepare_worker

    device = prepare_worker(WorkerSettings(requested, memory_fraction=0.25))
    assert device == torch.device("cuda", 0)
    assert fake_cuda == [("deterministic", torch.device("cuda", 0)), (0.25, torch.device("cuda", 0))]


def test_a_worker_alone_on_the_gpu_sets_no_cap(fake_cuda):
    from benchmark.engine.launchers.base import WorkerSettings, prepare_worker

    assert prepare_worker(WorkerSettings("cuda")) == torch.device("cuda", 0)
    assert fake_cuda == [("deterministic", torch.device("cuda", 0))]
