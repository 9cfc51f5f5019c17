"""scripts/bench_training.py on a CPU at the smoke budget: every figure it prints is there and sane."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))  # the spawned workers import the script by its module name
_spec = importlib.util.spec_from_file_location("bench_training", ROOT / "scripts" / "bench_training.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench
_spec.loader.exec_module(bench)


def test_prints_engine_bare_packed_peak_and_sweep_figures(capsys):
    bench.main(["--budget", "smoke", "--models", "unet", "--steps", "2", "--device", "cpu", "--jobs", "1",
                "--seconds", "0.5", "--sweep-seeds", "1"])
    out = capsys.readouterr().out
    assert "device cpu" in out and "determinism on" in out and "MPS off" in out
    header = next(line for line in out.splitlines() if line.startswith("model"))
    assert header.split() == ["model", "engine", "img/s", "bare", "img/s", "engine/bare", "agg", "@1", "GFLOP/img",
                              "%", "peak"]
    row = next(line for line in out.splitlines() if line.startswith("unet")).split()
    engine, bare, ratio, packed, gflop = map(float, row[1:6])
    assert engine > 0 and bare > 0 and packed > 0 and abs(ratio - engine / bare) < 0.01
    assert 0.1 < gflop < 10 and 0 < float(row[6].rstrip("%")) <= 100
    sweep = re.search(r"sweep cross_stain_synthetic, budget smoke, unet \+ floors, seeds 0-0: (\d+) jobs in ([\d.]+) s",
                      out)
    assert sweep and int(sweep.group(1)) == 3 and float(sweep.group(2)) > 0
