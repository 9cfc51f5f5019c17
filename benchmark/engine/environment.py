"""What produced a number: package versions, processor, threads and code commit of a run.

Training here is deterministic within one environment but chaotic across them: another timm or
numpy release, or another CPU's float-reduction order, sends a seed down another trajectory. So
every job's ``config.json`` records the environment it ran in, and the report writes the distinct
ones to ``<out>/environments.json`` keyed by the ``env_id`` column of ``summary.csv``. Two jobs
give bit-identical numbers only when their ``env_id`` (lock, packages, processor and its instruction
sets, the kernels pinned by ``core.isa``, threads) match;
otherwise they agree statistically at best (README "Reproducing the numbers").
"""
from __future__ import annotations

import hashlib
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from core.isa import kernels, processor

RECORDED_PACKAGES: tuple[str, ...] = (
    "torch", "torchvision", "timm", "numpy", "opencv-python-headless", "torchstain",
    "scikit-learn", "xgboost-cpu", "scipy", "pandas", "statsmodels",
)
"""Distributions whose version can change a trained model or a reported statistic."""

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK_FILE = REPO_ROOT / "requirements.lock"
CODE_PATHS: tuple[str, ...] = ("core", "wbcdata", "benchmark", "models", "protocols", "pyproject.toml", "requirements.lock")
"""Tracked paths whose uncommitted edits make the recorded commit an incomplete description of the code."""


def package_versions(names: tuple[str, ...] = RECORDED_PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution; None where it is not installed."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


@lru_cache(maxsize=1)
def gpu_runtime() -> dict[str, str | bool | None]:
    """What else decides a GPU job's numbers and speed: the driver, the CUDA and cuDNN that torch
    was built with, and whether the CUDA MPS server lets packed jobs run at once (docs/gpu.md). Read
    once per process (``nvidia-smi`` is not asked again for every job)."""
    import torch

    from benchmark.engine.devices import mps_active

    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20)
        driver = done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        driver = None
    cudnn = torch.backends.cudnn.version()
    return {"driver": driver, "cuda": torch.version.cuda, "cudnn": None if cudnn is None else str(cudnn),
            "mps": mps_active()}


@lru_cache(maxsize=1)
def code_commit() -> dict[str, str | bool | None]:
    """HEAD of the checkout the code runs from, and whether the code paths had uncommitted edits;
    commit None outside a git checkout (an installed wheel). Read once per process, at its first
    job's start, so a commit made while a long sweep runs is not credited to code loaded before it."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    if head is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
    return {"commit": head, "dirty": bool(status)}


def lock_digest() -> str | None:
    """SHA-256 (first 12 hex) of ``requirements.lock``, None when the file is absent."""
    return hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()[:12] if LOCK_FILE.exists() else None


def environment_record(threads: int | None = None) -> dict:
    """Everything :func:`env_id` hashes, plus the code commit (which does not enter the id: a
    commit that leaves training untouched does not change numbers; ``engine_version`` in the job
    id covers one that does)."""
    import torch

    gpu = gpu_name()
    return {
        "packages": package_versions(),
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu": cpu_model(),
        "processor": processor(),  # vendor, family, model, instruction-set flags (core/isa.py)
        "kernels": kernels(),  # the ISA pin and what ATen, oneDNN and MKL run
        "gpu": gpu,
        **({"gpu_runtime": gpu_runtime()} if gpu is not None else {}),  # absent on CPU: CPU env ids stay as they were
        "threads": int(threads if threads is not None else torch.get_num_threads()),
        "lock": lock_digest(),
        "code": code_commit(),
    }
