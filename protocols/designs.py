"""The one builder that turns a protocol spec and a seed into splits, and the designs it knows.

Decisions (also in docs/protocols.md):
- within-source splits are 60 / 20 / 20 (train / val / test), stratified by class;
- cross_dataset tests on *all* images of every other domain (they never touch training);
- cross_stain trains on each source in turn and evaluates its held-out test images re-stained into
  every other domain's Macenko stain profile and under HED perturbations of graded severity; the
  untouched test set is severity 0. Several sources give independent estimates per seed, which the
  hypotheses average (more evidence per seed);
- cross_scanner trains exactly as cross_stain (the same train/val/test ids per source and seed)
  and evaluates the held-out test images under every built-in acquisition kind (defocus, JPEG,
  gamma, resampling) at each of its severities;
- every design is extensible (:class:`protocols.registry.Extension`): any dataset, built-in or a
  user's folder, can be added as a source or a target, which makes the protocol's variant
  ``<protocol>+<domain>...``; without an extension every split is built exactly as before, so
  committed hashes and job ids hold.
"""
from __future__ import annotations

from collections.abc import Callable

from core.sample import Sample
from protocols.registry import Extension, ProtocolSpec
from protocols.split import Split, TestTarget, targets_for_kind
from protocols.stratify import stratified_split
from wbcdata.target_kinds import ACQUISITION_KINDS

VAL_FRACTION, TEST_FRACTION = 0.2, 0.2

ByDomain = dict[str, list[Sample]]


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


def within(protocol: str, by_domain: ByDomain, sources: tuple[str, ...], seed: int,
           datasets: tuple[str, ...]) -> list[Split]:
    return [_with_targets(_within(protocol, d, by_domain[d], seed)[0], [], datasets) for d in sources]


def cross_dataset(protocol: str, by_domain: ByDomain, sources: tuple[str, ...], seed: int,
                  datasets: tuple[str, ...]) -> list[Split]:
    """One split per source, tested on its in-domain test set and on all images of every other source."""
    splits = []
    for src in sources:
        base, _ = _within(protocol, src, by_domain[src], seed)
        extra = [TestTarget(t, t, _ids(by_domain[t])) for t in sources if t != src]
        splits.append(_with_targets(base, extra, datasets))
    return splits


def _held_out_under(kinds: Callable[[tuple[str, ...], str, list[str]], list[TestTarget]]
                    ) -> Callable[..., list[Split]]:
    """A design whose splits test each source's held-out images untouched (severity 0) and under the
    shifted targets ``kinds(test_ids, source)`` makes (geometry, masks and labels untouched)."""
    def design(protocol: str, by_domain: ByDomain, sources: tuple[str, ...], seed: int,
               datasets: tuple[str, ...]) -> list[Split]:
        splits = []
        for source in sources:
            base, test = _within(protocol, source, by_domain[source], seed)
            in_domain = TestTarget("in_domain", source, test, None, 0.0)
            splits.append(Split(protocol, source, seed, datasets, base.train, base.val,
                                (in_domain, *kinds(test, source, sorted(by_domain))), base.task))
        return splits

    return design


cross_stain = _held_out_under(lambda test, source, domains: [*targets_for_kind("restain", test, source, domains),
                                                             *targets_for_kind("hed", test, source)])
cross_scanner = _held_out_under(lambda test, source, _: [t for kind in ACQUISITION_KINDS
                                                         for t in targets_for_kind(kind, test, source)])

DESIGN_BUILDERS = {"within": within, "cross_dataset": cross_dataset, "cross_stain": cross_stain,
                   "cross_scanner": cross_scanner}


def _extend(splits: list[Split], by_domain: ByDomain, extension: Extension | None) -> list[Split]:
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


def build_splits(spec: ProtocolSpec, seed: int, by_domain: ByDomain, extension: Extension | None = None) -> list[Split]:
    """The protocol's splits for ``seed`` (with ``extension``, its variant's): its design over its own
    sources and those the extension adds, or a plugin's own builder."""
    if spec.build is not None:
        return spec.build(seed, by_domain) if extension is None else spec.build(seed, by_domain, extension=extension)
    own = spec.own_sources()
    sources = own if extension is None else own + tuple(d for d in extension.sources if d not in own)
    return _extend(DESIGN_BUILDERS[spec.design](spec.name, by_domain, sources, seed, spec.datasets), by_domain,
                   extension)
