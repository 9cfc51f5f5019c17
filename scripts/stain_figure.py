"""Figure of the cross-stain targets: every domain's examples re-stained into every other domain,
plus a row of HED perturbation severities. Prints each domain's Macenko profile and the failures.

    python scripts/stain_figure.py --out results/figures/stain_examples.png --datasets synthetic
    python scripts/stain_figure.py --out results/figures/stain_examples.png --datasets zheng_d1,zheng_d2,bccd,pbc
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from wbcdata import stain  # noqa: E402
from wbcdata.datasets import load_dataset  # noqa: E402
from core.sample import CLASSES, Sample  # noqa: E402
from core.errors import BenchmarkError  # noqa: E402

SEVERITIES = (0.0, 0.05, 0.1, 0.2, 0.3)


def group_by_domain(samples: list[Sample]) -> dict[str, list[Sample]]:
    """Samples per domain; a domain name used by two datasets is prefixed with the dataset."""
    datasets_of: dict[str, set[str]] = {}
    for s in samples:
        datasets_of.setdefault(s.domain, set()).add(s.dataset)
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        key = s.domain if len(datasets_of[s.domain]) == 1 else f"{s.dataset}/{s.domain}"
        groups.setdefault(key, []).append(s)
    return groups


def pick_examples(samples: list[Sample], n: int, rng: np.random.Generator) -> list[Sample]:
    """``n`` samples of different classes where possible, chosen reproducibly."""
    order = rng.permutation(len(samples))
    chosen, seen = [], set()
    for i in order:  # first pass: one per class
        if samples[i].label not in seen:
            chosen.append(samples[i])
            seen.add(samples[i].label)
        if len(chosen) == n:
            return chosen
    taken = {c.id for c in chosen}
    rest = [samples[i] for i in order if samples[i].id not in taken]
    return chosen + rest[: n - len(chosen)]


def build_figure(samples: list[Sample], per_domain: int, seed: int) -> tuple[plt.Figure, stain.StainStats]:
    groups = group_by_domain(samples)
    domains = sorted(groups)
    stats = stain.StainStats()
    profiles = {d: stain.estimate_profile([s.image for s in groups[d]], d, stats) for d in domains}
    for d, p in profiles.items():
        vectors = np.round(p.stain_matrix.T, 3).tolist()
        status = f"FALLBACK ({p.reason})" if p.fallback else "macenko"
        print(f"{d}: n={len(groups[d])} I0={np.round(p.background).tolist()} H,E={vectors} "
              f"maxC={np.round(p.max_concentration, 3).tolist()} {status}")
    print(stats.summary())

    rng = np.random.default_rng(seed)
    rows = [(d, s) for d in domains for s in pick_examples(groups[d], per_domain, rng)]
    n_cols = max(len(domains), len(SEVERITIES))
    fig, axes = plt.subplots(len(rows) + 1, n_cols, figsize=(1.9 * n_cols, 2.0 * (len(rows) + 1)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, (d, s) in enumerate(rows):
        for c, t in enumerate(domains):
            img = s.image if t == d else stain.restain(s.image, profiles[d], profiles[t])
            axes[r, c].imshow(img)
            axes[r, c].set_title("original" if t == d else f"-> {t}", fontsize=7)
        cls = CLASSES[s.label] if s.label is not None else "unlabelled"
        axes[r, 0].text(-0.08, 0.5, f"{d}\n{cls}", transform=axes[r, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize=7)
    d, s = rows[0]
    for c, sev in enumerate(SEVERITIES):
        axes[-1, c].imshow(stain.hed_perturb(s.image, sev, np.random.default_rng([seed, c])))
        axes[-1, c].set_title(f"HED severity {sev:g}", fontsize=7)
    axes[-1, 0].text(-0.08, 0.5, f"HED jitter\n{d}", transform=axes[-1, 0].transAxes, rotation=90,
                     ha="right", va="center", fontsize=7)
    fig.suptitle("Columns: stain target (diagonal = original). " + stats.summary(), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return fig, stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="PNG path")
    ap.add_argument("--datasets", default="synthetic", help="comma-separated dataset names")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--per-domain", type=int, default=2, help="example rows per domain")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        names = [n.strip() for n in args.datasets.split(",") if n.strip()]
        if not names:
            raise BenchmarkError("--datasets is empty")
        samples = [s for n in names for s in load_dataset(n, size=args.size)]
        if not samples:
            raise BenchmarkError(f"datasets {names} yielded no samples")
        fig, _ = build_figure(samples, args.per_domain, args.seed)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
