"""The protocols of SPEC.md, on real data and on the procedural smears (for tests and no-download runs).

Decisions (also in docs/protocols.md):
- within-source splits are 60 / 20 / 20 (train / val / test), stratified by class;
- cross_dataset tests on *all* images of every other domain (they never touch training);
- cross_stain trains on each masked real domain in turn (Zheng D1, Zheng D2, BCCD) and evaluates
  its held-out test images re-stained into every other domain's Macenko stain profile and under
  HED perturbations of graded severity; the untouched test set is severity 0. Three sources give
  three independent estimates per seed, which the hypotheses average (more evidence per seed);
- cross_scanner trains exactly as cross_stain (the same train/val/test ids per source and seed)
  and evaluates the held-out test images under every built-in acquisition kind (defocus, JPEG,
  gamma, resampling) at each of its severities; it is a protocol of its own so that cross_stain's
  splits, hashes and job ids stay as they were;
- within_dataset, cross_dataset, cross_stain and their synthetic versions are extensible
  (:class:`protocols.registry.Extension`): any dataset, built-in or a user's folder, can be added as
  a source or a target, which makes the protocol's variant ``<protocol>+<domain>...``; without an
  extension every split is built exactly as before, so committed hashes and job ids hold.
"""
from __future__ import annotations

from wbcdata.datasets import dataset_domains
from core.sample import Sample
from protocols.registry import Extension, register_protocol
from protocols.split import Split, TestTarget, targets_for_kind
from protocols.stratify import stratified_split
from wbcdata.target_kinds import ACQUISITION_KINDS

VAL_FRACTION, TEST_FRACTION = 0.2, 0.2
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
        restained = targets_for_kind("restain", test, source, sorted(by_domain))
        hed = targets_for_kind("hed", test, source)
        splits.append(Split(protocol, source, seed, datasets, base.train, base.val, (in_domain, *restained, *hed),
                            base.task))
    return splits


def build_cross_scanner(protocol: str, by_domain: dict[str, list[Sample]], sources: tuple[str, ...], seed: int,
                        datasets: tuple[str, ...]) -> list[Split]:
    """One split per source, trained as cross_stain: its held-out test set untouched and under each
    acquisition kind (:data:`wbcdata.target_kinds.ACQUISITION_KINDS`) at each severity."""
    splits = []
    for source in sources:
        base, test = _within(protocol, source, by_domain[source], seed)
        shifted = [t for kind in ACQUISITION_KINDS for t in targets_for_kind(kind, test, source)]
        splits.append(Split(protocol, source, seed, datasets, base.train, base.val,
                            (TestTarget("in_domain", source, test, None, 0.0), *shifted), base.task))
    return splits


def _sources(own: tuple[str, ...], extension: Extension | None) -> tuple[str, ...]:
    """A protocol's own source domains, then those an extension adds."""
    return own if extension is None else own + tuple(d for d in extension.sources if d not in own)


def _extend(splits: list[Split], by_domain: dict[str, list[Sample]], extension: Extension | None) -> list[Split]:
    """The splits of a protocol's variant: named after it, with its datasets, and each added domain's
    images, as they are, a test target of every split whose source it is not (unless already one)."""
    if extension is None:
        return splits
    out = []
    for s in splits:
        have = {t.name for t in s.targets}
        added = [TestTarget(d, d, _ids(by_domain[d])) for d in extension.domains if d != s.source and d not in have]
        out.append(Split(extension.name, s.source, s.seed, extension.datasets, s.train, s.val,
                         s.targets + tuple(added), s.task))
    return out


# ---- real data ---------------------------------------------------------------------------

_REAL = MASKED_REAL + CLASSIFICATION_ONLY_REAL


@register_protocol("within_dataset", datasets=_REAL, sources=_REAL,
                   description="train/val/test inside each real dataset (60/20/20, stratified)")
def within_dataset(seed: int, by_domain: dict[str, list[Sample]], extension: Extension | None = None) -> list[Split]:
    sources = _sources(_REAL, extension)
    return _extend(build_within("within_dataset", by_domain, sources, seed, _REAL), by_domain, extension)


@register_protocol("cross_dataset", datasets=_REAL, sources=_REAL,
                   description="train on one real dataset, test on every other (in-domain test beside)")
def cross_dataset(seed: int, by_domain: dict[str, list[Sample]], extension: Extension | None = None) -> list[Split]:
    domains = _sources(_REAL, extension)
    return _extend(build_cross_dataset("cross_dataset", by_domain, domains, domains, seed, _REAL), by_domain, extension)


@register_protocol("cross_stain", datasets=_REAL, sources=MASKED_REAL,
                   description="train on each masked dataset; test its held-out images re-stained into each other domain and under HED severities")
def cross_stain(seed: int, by_domain: dict[str, list[Sample]], extension: Extension | None = None) -> list[Split]:
    sources = _sources(MASKED_REAL, extension)
    return _extend(build_cross_stain("cross_stain", by_domain, sources, seed, _REAL), by_domain, extension)


@register_protocol("cross_scanner", datasets=MASKED_REAL, sources=MASKED_REAL,
                   description="train as cross_stain; test its held-out images under defocus, JPEG, gamma and "
                               "resampling, each at 5 severities")
def cross_scanner(seed: int, by_domain: dict[str, list[Sample]], extension: Extension | None = None) -> list[Split]:
    sources = _sources(MASKED_REAL, extension)
    return _extend(build_cross_scanner("cross_scanner", by_domain, sources, seed, MASKED_REAL), by_domain, extension)


# ---- procedural smears: the same protocols with no download ------------------------------

_SYN = ("synthetic",)


@register_protocol("within_dataset_synthetic", datasets=_SYN, sources=dataset_domains("synthetic"),
                   description="within_dataset on each procedural stain domain")
def within_dataset_synthetic(seed: int, by_domain: dict[str, list[Sample]],
                             extension: Extension | None = None) -> list[Split]:
    sources = _sources(dataset_domains("synthetic"), extension)
    return _extend(build_within("within_dataset_synthetic", by_domain, sources, seed, _SYN), by_domain, extension)


@register_protocol("cross_dataset_synthetic", datasets=_SYN, sources=dataset_domains("synthetic"),
                   description="cross_dataset between the procedural stain domains")
def cross_dataset_synthetic(seed: int, by_domain: dict[str, list[Sample]],
                            extension: Extension | None = None) -> list[Split]:
    domains = _sources(dataset_domains("synthetic"), extension)
    return _extend(build_cross_dataset("cross_dataset_synthetic", by_domain, domains, domains, seed, _SYN),
                   by_domain, extension)


@register_protocol("cross_stain_synthetic", datasets=_SYN, sources=dataset_domains("synthetic")[:1],
                   description="cross_stain from the first procedural domain to the others, plus HED severities")
def cross_stain_synthetic(seed: int, by_domain: dict[str, list[Sample]],
                          extension: Extension | None = None) -> list[Split]:
    sources = _sources(dataset_domains("synthetic")[:1], extension)
    return _extend(build_cross_stain("cross_stain_synthetic", by_domain, sources, seed, _SYN), by_domain, extension)


@register_protocol("cross_scanner_synthetic", datasets=_SYN, sources=dataset_domains("synthetic")[:1],
                   description="cross_scanner from the first procedural domain")
def cross_scanner_synthetic(seed: int, by_domain: dict[str, list[Sample]],
                            extension: Extension | None = None) -> list[Split]:
    sources = _sources(dataset_domains("synthetic")[:1], extension)
    return _extend(build_cross_scanner("cross_scanner_synthetic", by_domain, sources, seed, _SYN), by_domain,
                   extension)
