"""The protocols of SPEC.md, on real data and on the procedural smears (for tests and no-download runs).

Decisions (also in docs/protocols.md):
- within-source splits are 60 / 20 / 20 (train / val / test), stratified by class;
- cross_dataset tests on *all* images of every other domain (they never touch training);
- cross_stain trains on each masked real domain in turn (Zheng D1, Zheng D2, BCCD) and evaluates
  its held-out test images re-stained into every other domain's Macenko stain profile and under
  HED perturbations of graded severity; the untouched test set is severity 0. Three sources give
  three independent estimates per seed, which the hypotheses average (more evidence per seed).
"""
from __future__ import annotations

from wbcdata.datasets import dataset_domains
from core.sample import Sample
from protocols.registry import register_protocol
from protocols.split import Split, TestTarget
from protocols.stratify import stratified_split

VAL_FRACTION, TEST_FRACTION = 0.2, 0.2
HED_SEVERITIES: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)
MASKED_REAL = ("zheng_d1", "zheng_d2", "bccd")
CLASSIFICATION_ONLY_REAL = ("pbc",)


def _ids(samples: list[Sample]) -> tuple[str, ...]:
    return tuple(sorted(s.id for s in samples))


def _task(samples: list[Sample]) -> str:
    has_mask = any(s.mask is not None for s in samples)
    has_label = any(s.label is not None for s in samples)
    if has_mask and has_label:
        return "multitask"
    return "segmentation" if has_mask else "classification"


def _within(protocol: str, domain: str, samples: list[Sample], seed: int) -> tuple[Split, tuple[str, ...]]:
    strata = ["none" if s.label is None else s.label for s in samples]
    train, val, test = stratified_split([s.id for s in samples], strata, (VAL_FRACTION, TEST_FRACTION), seed)
    in_domain = TestTarget("in_domain", domain, tuple(test))
    split = Split(protocol, domain, seed, (), tuple(train), tuple(val), (in_domain,), _task(samples))
    return split, tuple(test)


def _with_targets(split: Split, extra: list[TestTarget], datasets: tuple[str, ...]) -> Split:
    return Split(split.protocol, split.source, split.seed, datasets, split.train, split.val,
                 split.targets + tuple(extra), split.task)


def build_within(protocol: str, by_domain: dict[str, list[Sample]], sources: tuple[str, ...], seed: int,
                 datasets: tuple[str, ...]) -> list[Split]:
    return [_with_targets(_within(protocol, d, by_domain[d], seed)[0], [], datasets) for d in sources]


def build_cross_dataset(protocol: str, by_domain: dict[str, list[Sample]], sources: tuple[str, ...],
                        targets: tuple[str, ...], seed: int, datasets: tuple[str, ...]) -> list[Split]:
    splits = []
    for src in sources:
        base, _ = _within(protocol, src, by_domain[src], seed)
        extra = [TestTarget(t, t, _ids(by_domain[t])) for t in targets if t != src]
        splits.append(_with_targets(base, extra, datasets))
    return splits


def build_cross_stain(protocol: str, by_domain: dict[str, list[Sample]], sources: tuple[str, ...], seed: int,
                      datasets: tuple[str, ...]) -> list[Split]:
    """One split per source: its held-out test set untouched, re-stained into every other
    domain's profile, and under each HED severity (geometry, masks and labels untouched)."""
    splits = []
    for source in sources:
        base, test = _within(protocol, source, by_domain[source], seed)
        in_domain = TestTarget("in_domain", source, test, None, 0.0)
        restained = [
            TestTarget(f"restain:{d}", d, test, {"kind": "restain", "source": source, "target": d}, None)
            for d in sorted(by_domain) if d != source
        ]
        hed = [TestTarget(f"hed:{s:g}", f"hed:{s:g}", test, {"kind": "hed", "severity": s}, s) for s in HED_SEVERITIES]
        splits.append(Split(protocol, source, seed, datasets, base.train, base.val, (in_domain, *restained, *hed),
                            base.task))
    return splits


# ---- real data ---------------------------------------------------------------------------

_REAL = MASKED_REAL + CLASSIFICATION_ONLY_REAL


@register_protocol("within_dataset", datasets=_REAL,
                   description="train/val/test inside each real dataset (60/20/20, stratified)")
def within_dataset(seed: int, by_domain: dict[str, list[Sample]]) -> list[Split]:
    return build_within("within_dataset", by_domain, _REAL, seed, _REAL)


@register_protocol("cross_dataset", datasets=_REAL,
                   description="train on one real dataset, test on every other (in-domain test beside)")
def cross_dataset(seed: int, by_domain: dict[str, list[Sample]]) -> list[Split]:
    return build_cross_dataset("cross_dataset", by_domain, _REAL, _REAL, seed, _REAL)


@register_protocol("cross_stain", datasets=_REAL,
                   description="train on each masked dataset; test its held-out images re-stained into each other domain and under HED severities")
def cross_stain(seed: int, by_domain: dict[str, list[Sample]]) -> list[Split]:
    return build_cross_stain("cross_stain", by_domain, MASKED_REAL, seed, _REAL)


# ---- procedural smears: the same protocols with no download ------------------------------

_SYN = ("synthetic",)


@register_protocol("within_dataset_synthetic", datasets=_SYN,
                   description="within_dataset on each procedural stain domain")
def within_dataset_synthetic(seed: int, by_domain: dict[str, list[Sample]]) -> list[Split]:
    return build_within("within_dataset_synthetic", by_domain, dataset_domains("synthetic"), seed, _SYN)


@register_protocol("cross_dataset_synthetic", datasets=_SYN,
                   description="cross_dataset between the procedural stain domains")
def cross_dataset_synthetic(seed: int, by_domain: dict[str, list[Sample]]) -> list[Split]:
    domains = dataset_domains("synthetic")
    return build_cross_dataset("cross_dataset_synthetic", by_domain, domains, domains, seed, _SYN)


@register_protocol("cross_stain_synthetic", datasets=_SYN,
                   description="cross_stain from the first procedural domain to the others, plus HED severities")
def cross_stain_synthetic(seed: int, by_domain: dict[str, list[Sample]]) -> list[Split]:
    return build_cross_stain("cross_stain_synthetic", by_domain, dataset_domains("synthetic")[:1], seed, _SYN)
