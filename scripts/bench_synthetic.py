"""Throughput of the procedural smear generator (single process, the way the loader runs it).

    python scripts/bench_synthetic.py [--size 128] [--n 1000]

Prints images/s for geometry + render (wall clock, and per CPU-second of this process, which a
busy machine does not distort) and the time to build the whole ``synthetic`` dataset.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.sample import CLASSES  # noqa: E402
from wbcdata.synthetic import SYNTHETIC_DOMAINS, load_synthetic, render_smear  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--n", type=int, default=1000, help="images to time")
    args = ap.parse_args(argv)

    render_smear(0, args.size, 0, SYNTHETIC_DOMAINS[0])  # warm the per-size caches (grids, texture tiles)
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(args.n):
        render_smear(i, args.size, i % len(CLASSES), SYNTHETIC_DOMAINS[i % len(SYNTHETIC_DOMAINS)])
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(
        f"render_smear: {args.n / elapsed:.0f} images/s wall, {args.n / cpu:.0f} images/s per CPU-second "
        f"at {args.size}x{args.size} ({args.n} images, {elapsed:.2f} s wall; the CPU figure ignores other load)"
    )

    start = time.perf_counter()
    samples = load_synthetic(Path("."), args.size)
    print(f"load_synthetic: {len(samples)} images in {time.perf_counter() - start:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
