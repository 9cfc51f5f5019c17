"""Where a job runs: the device a user asks for, the determinism switches a GPU has, and how many
jobs share one GPU.

A small job (a 2 M-parameter model on a few hundred 224 px crops) uses a fraction of an
accelerator, so on a GPU the sweep packs several jobs, as processes, onto one device. The count
comes from memory: the peak a job of this sweep measured (recorded in each job's ``metrics.json``,
or probed with one training step when no job has run yet) against the device's free memory, each
process capped at its share (``torch.cuda.set_per_process_memory_fraction``), and never more
processes than CPU cores, which feed them (``jobs_per_gpu``).
"""
from __future__ import annotations

import os
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from core.errors import BenchmarkError

CUBLAS_WORKSPACE_CONFIG = ":4096:8"
"""cuBLAS's deterministic workspace setting (CUDA docs, "Results reproducibility"); it must be in
the environment before cuBLAS starts, so a worker sets it before its first CUDA call."""

CUDA_CONTEXT_BYTES = 600 * 2**20
"""Memory a CUDA context takes outside PyTorch's allocator (kernels, cuDNN/cuBLAS handles): counted
once per packed process on top of the job's measured peak."""

MEMORY_HEADROOM = 1.25
"""Factor on a job's measured peak: fragmentation and the evaluation pass's larger batches."""


def resolve_device(requested: str | torch.device | None) -> torch.device:
    """``--device``: None picks cuda when present, cpu otherwise; an explicit ``cuda``/``cuda:N``
    that this machine does not have is an error, never a silent fall-back to the CPU. A CUDA device
    always comes back indexed (``cuda`` is ``cuda:0``, the first visible device): several CUDA
    calls (``set_per_process_memory_fraction``, ``mem_get_info``) refuse an unindexed one."""
    if requested is None:
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError as e:
        raise BenchmarkError(f"--device {requested!r} is not a device name; use cpu, cuda or cuda:N") from e
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise BenchmarkError(f"--device {requested!r}: only cpu, cuda and cuda:N are supported")
    if not torch.cuda.is_available():
        raise BenchmarkError(f"--device {requested} was asked for, but this machine has no usable CUDA device "
                             f"(torch {torch.__version__}, torch.cuda.is_available() is False)")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise BenchmarkError(f"--device {requested}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    return torch.device("cuda", 0 if device.index is None else device.index)


def mps_active() -> bool:
    """Whether a CUDA MPS control daemon is running for this user (its control pipe exists): with it,
    the kernels of packed job processes run at once; without it, their contexts take turns on the
    GPU (time-slicing), so packing gives little (docs/gpu.md has the measurements)."""
    pipe = Path(os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")) / "control"
    return pipe.exists()


CUDA_DETERMINISM_ENV = "WBC_CUDA_DETERMINISTIC"
"""``0`` lets GPU jobs use cuDNN's autotuned, non-deterministic kernels (``run --cuda-determinism off``);
set in the launcher's environment, so spawned and Ray workers inherit it."""


def cuda_determinism() -> bool:
    return os.environ.get(CUDA_DETERMINISM_ENV, "1") != "0"


def make_deterministic(device: torch.device) -> dict:
    """Switch on the determinism a device offers and return the switches as set, for ``config.json``.
    On a GPU: cuDNN's deterministic kernels without autotuning, PyTorch's deterministic algorithms
    (warn-only: a few kernels, e.g. some scatter and interpolation backwards, have no deterministic
    version and would otherwise stop the run) and cuBLAS's fixed workspace; with
    ``WBC_CUDA_DETERMINISTIC=0``, cuDNN autotuning instead (faster, not bit-reproducible; the
    record says so). A CPU run is deterministic as it is (one thread per job)."""
    if device.type == "cuda":
        on = cuda_determinism()
        if on:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
        torch.backends.cudnn.deterministic = on
        torch.backends.cudnn.benchmark = not on
        torch.use_deterministic_algorithms(on, warn_only=True)
    return {
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "cpu_threads": torch.get_num_threads(),
    }


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


@dataclass(frozen=True)
class PeakMemory:
    """A job's peak memory: on a GPU, the bytes PyTorch's allocator held at most during the job; on
    a CPU, the worker process's peak resident set (a process that ran several jobs reports the
    largest of them)."""

    bytes: int
    kind: str

    def to_dict(self) -> dict:
        return {"peak_memory_bytes": self.bytes, "peak_memory_kind": self.kind}


def peak_memory(device: torch.device) -> PeakMemory:
    if device.type == "cuda":
        return PeakMemory(int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return PeakMemory(int(rss if sys.platform == "darwin" else rss * 1024), "process_max_rss")


def jobs_per_gpu(free_bytes: int, job_peak_bytes: int, cpu_cores: int) -> int:
    """How many jobs one GPU takes at once: as many as fit its free memory, each counted at its
    measured peak times ``MEMORY_HEADROOM`` plus a CUDA context, but no more than the CPU cores
    that prepare their batches; at least 1 (a job too big to share still runs, alone)."""
    if job_peak_bytes <= 0:
        raise BenchmarkError(f"a job's peak memory must be positive to pack jobs, got {job_peak_bytes} bytes")
    per_job = job_peak_bytes * MEMORY_HEADROOM + CUDA_CONTEXT_BYTES
    return max(1, min(int(free_bytes // per_job), max(1, cpu_cores)))


def memory_fraction(jobs: int) -> float:
    """Each packed process's cap on the device's memory (``set_per_process_memory_fraction``): its
    equal share, so one job that outgrows its measurement fails alone with an out-of-memory error
    instead of starving the others."""
    return 1.0 / max(1, jobs)
