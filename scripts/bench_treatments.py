"""Cost of each stain treatment on real crops, and Macenko's per-image fallbacks per domain.

    python scripts/bench_treatments.py [--protocol cross_dataset] [--source zheng_d1] [--size 64] [--images 300]

Fits every registered treatment on the source's first 180 crops (a Zheng D1 training split's size),
then times its preprocessing or augmentation over ``--images`` crops of each domain, single-threaded.
Needs the datasets (``WBC_DATA_MIRROR``); prints seconds and, for ``macenko``, fallbacks per domain.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmark.engine.treatments import fit_treatment, list_treatments  # noqa: E402
from protocols.resolve import load_by_domain  # noqa: E402

FIT_IMAGES = 180


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", default="cross_dataset")
    p.add_argument("--source", default="zheng_d1")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--images", type=int, default=300)
    args = p.parse_args()
    torch.set_num_threads(1)
    by_domain = load_by_domain(args.protocol, args.size)
    train = [s.image for s in by_domain[args.source][:FIT_IMAGES]]
    print(f"fit on {len(train)} {args.source} crops at {args.size} px; per domain up to {args.images} crops")
    print(f"{'treatment':<12} {'fit s':>6}  " + "  ".join(f"{d + ' s':>12}" for d in sorted(by_domain)))
    for name in list_treatments():
        t0 = time.perf_counter()
        fitted = fit_treatment(name, train)
        fit_seconds = time.perf_counter() - t0
        cells, fallbacks = [], []
        for domain in sorted(by_domain):
            images = [s.image for s in by_domain[domain][:args.images]]
            rng = np.random.default_rng(0)
            t1 = time.perf_counter()
            for image in images:
                if fitted.preprocess is not None:
                    image = fitted.preprocess(image)
                if fitted.augment is not None:
                    image = fitted.augment(image, rng)
            cells.append(f"{time.perf_counter() - t1:12.2f}")
            if name == "macenko":
                stats = fitted.preprocess.stats
                fallbacks.append(f"{domain} {stats.failures}/{len(images)}")
                stats.reset()
        print(f"{name:<12} {fit_seconds:6.2f}  " + "  ".join(cells))
        if fallbacks:
            print(f"{'':<12} per-image Macenko fallbacks: " + ", ".join(fallbacks))


if __name__ == "__main__":
    main()
