"""What the AVX2 pin (core/isa.py) costs, and what it changes, on this host.

Runs one job twice at the same time, one per core (each job is single-threaded): once pinned
(``WBC_CPU_ISA=avx2``, the default) and once with each library's fastest kernels
(``WBC_CPU_ISA=native``). Prints each run's training and scoring seconds from its ``metrics.json``,
the pin's cost in percent, and whether the two runs' metrics are bit-identical (they are not on a
host with AVX-512: that difference is why the pin exists). ``--repeats`` swaps and reruns, so a
core that is faster than the other does not decide the figure.

    .venv/bin/python scripts/isa_pin_cost.py [--protocol cross_stain --model sg_cldff --source zheng_d1
                                              --budget cpu --repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _launch(mode: str, out: Path, args: argparse.Namespace) -> subprocess.Popen:
    env = {**os.environ, "WBC_CPU_ISA": mode}
    for name in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_CBWR"):
        env.pop(name, None)  # the mode alone decides
    cmd = [sys.executable, "-m", "benchmark", "run", "--protocol", args.protocol, "--models", args.model,
           "--sources", args.source, "--seeds", "1", "--budget", args.budget, "--jobs", "1", "--out", str(out)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _job(out: Path, model: str) -> tuple[dict, dict]:
    job = next(p for p in (out / "jobs").iterdir() if p.name.startswith(f"{model}__") and (p / "done").exists())
    metrics = json.loads((job / "metrics.json").read_text())
    kernels = json.loads((job / "config.json").read_text())["environment"].get("kernels", {})
    return metrics, kernels


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--protocol", default="cross_stain")
    p.add_argument("--model", default="sg_cldff")
    p.add_argument("--source", default="zheng_d1")
    p.add_argument("--budget", default="cpu")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    seconds: dict[str, list[float]] = {"avx2": [], "native": []}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for rep in range(args.repeats):
            modes = ("avx2", "native") if rep % 2 == 0 else ("native", "avx2")
            procs = {m: _launch(m, Path(scratch) / f"{m}{rep}", args) for m in modes}
            for mode, proc in procs.items():
                _, err = proc.communicate()
                if proc.returncode != 0:
                    print(f"{mode} run failed:\n{err}", file=sys.stderr)
                    return 1
                metrics, kernels = _job(Path(scratch) / f"{mode}{rep}", args.model)
                seconds[mode].append(metrics["train"]["seconds"] + metrics["train"].get("eval_seconds", 0.0))
                results[mode] = {"targets": metrics["targets"], "kernels": kernels}
                print(f"repeat {rep}: {mode:<6} {seconds[mode][-1]:7.1f} s  kernels {kernels}")
    pinned, native = (sum(v) / len(v) for v in (seconds["avx2"], seconds["native"]))
    same = results["avx2"]["targets"] == results["native"]["targets"]
    print(f"\n{args.model} {args.protocol} {args.source} budget {args.budget}, mean of {args.repeats}: "
          f"pinned {pinned:.1f} s, native {native:.1f} s, pin cost {100 * (pinned / native - 1):+.1f}%")
    print(f"pinned and native metrics bit-identical on this host: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
