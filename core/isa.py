"""Which x86 instruction sets decide a CPU job's numbers, and the pin that makes hosts agree.

oneDNN (convolutions), ATen's vectorised kernels and MKL (matrix products) each choose a code path
from the processor at run time. AVX-512 kernels add floats in another order than AVX2 kernels, and
MKL takes vendor-specific branches, so one seed trains to other numbers on another host of the same
lock (docs/reproducibility.md has the measurements). The pin caps all three at AVX2, which every
x86 server of the last decade has. Each library reads its setting once, when first used, so the pin
must be in the environment before torch runs an operation: importing ``benchmark`` applies it, and
spawned workers and Ray tasks inherit it.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

from core.errors import BenchmarkError

PIN_ENV = "WBC_CPU_ISA"
"""``avx2`` (the default) pins the kernels below; ``native`` lets each library take the fastest
kernels this processor has (faster on AVX-512 hosts, numbers then match only the same processor)."""

MODES: tuple[str, ...] = ("avx2", "native")

PINNED: dict[str, str] = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN: convolutions, pooling
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen's vectorised element-wise and reduction kernels
    "MKL_CBWR": "AVX2",  # MKL's conditional numerical reproducibility: one code branch on Intel and AMD
}
"""What the ``avx2`` pin sets (a variable the user set already is left as it is, and recorded)."""

ISA_FLAGS: tuple[str, ...] = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512dq", "avx512bw", "avx512vl",
    "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8",
)
"""The ``/proc/cpuinfo`` flags that decide which kernels the libraries may choose."""


def pin_mode() -> str:
    mode = os.environ.get(PIN_ENV, "avx2").strip().lower() or "avx2"
    if mode not in MODES:
        raise BenchmarkError(f"${PIN_ENV}={os.environ[PIN_ENV]!r}: expected one of {', '.join(MODES)} "
                             f"(docs/reproducibility.md)")
    return mode


def apply_pin() -> None:
    """Put the pin's variables in this process's environment unless ``$WBC_CPU_ISA=native``; the
    user's own values win. Must run before torch's first operation (importing ``benchmark`` does);
    it never fails (an import must not): a misspelt mode pins, and :func:`pin_mode` names the error."""
    if os.environ.get(PIN_ENV, "").strip().lower() != "native":
        for name, value in PINNED.items():
            os.environ.setdefault(name, value)


def _cpuinfo() -> dict[str, str]:
    """The first processor block of ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            out.setdefault(key.strip(), value.strip())
    return out


def processor() -> dict:
    """Vendor, family, model and the kernel-relevant instruction-set flags of this processor: a
    hypervisor's model string ("AMD EPYC", "Intel Xeon Processor") hides the difference these show."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    return {
        "vendor": info.get("vendor_id", platform.machine()),
        "family": info.get("cpu family"),
        "model": info.get("model"),
        "flags": [f for f in ISA_FLAGS if f in flags],
    }


def kernels() -> dict[str, str]:
    """The kernels this process uses: ATen's as torch reports it, oneDNN's and MKL's caps as set
    (``native``: the library chooses from the processor)."""
    import torch

    return {
        "pin": pin_mode(),
        "aten": torch.backends.cpu.get_cpu_capability(),
        "onednn": os.environ.get("ONEDNN_MAX_CPU_ISA", "native"),
        "mkl": os.environ.get("MKL_CBWR", "native"),
    }
