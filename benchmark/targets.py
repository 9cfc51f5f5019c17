"""Realize a split's test targets as samples: untouched, or transformed by their registered target
kind (:mod:`wbcdata.target_kinds`: re-staining, HED jitter, the scanner's acquisition shifts).
Kinds never touch masks or labels, and the builder refuses an image whose shape or type changed,
so masks stay valid.

Stain profiles: the source profile is estimated from the *training* images of the source domain,
a target domain's from all of its images (it never trains the model). Each image's random stream
is seeded by (split seed, sample id, severity), so every model of a seed sees the same test images.
"""
from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np

from core.errors import BenchmarkError
from core.sample import Sample
from protocols.split import Split, TestTarget
from wbcdata import stain
from wbcdata.target_kinds import TARGET_KINDS, get_target_kind


class TargetBuilder:
    def __init__(self, split: Split, by_id: dict[str, Sample]) -> None:
        self.split, self.by_id = split, by_id
        self._profiles: dict[str, stain.StainProfile] = {}
        self._samples: dict[str, list[Sample]] = {}

    def profile(self, domain: str) -> stain.StainProfile:
        if domain not in self._profiles:
            if domain == self.split.source:
                ids = self.split.train
            else:
                ids = tuple(i for i, s in self.by_id.items() if s.domain == domain)
            if not ids:
                raise BenchmarkError(f"split {self.split.key}: no images of domain '{domain}' to estimate its stain")
            self._profiles[domain] = stain.estimate_profile([self.by_id[i].image for i in ids], domain)
        return self._profiles[domain]

    def samples(self, target: TestTarget) -> list[Sample]:
        """The target's samples, transformed once and then reused (the builder is per split)."""
        if target.name not in self._samples:
            self._samples[target.name] = self._build(target)
        return self._samples[target.name]

    def _build(self, target: TestTarget) -> list[Sample]:
        base = [self.by_id[i] for i in target.ids]
        if target.kind is None:
            return base
        if target.kind not in TARGET_KINDS:
            raise BenchmarkError(f"split {self.split.key}: unknown transform kind '{target.kind}' in target "
                                 f"'{target.name}'; registered target kinds: {', '.join(TARGET_KINDS.names())}")
        kind, params, severity = get_target_kind(target.kind), target.params, target.severity or 0.0
        out = []
        for s in base:
            image = kind.apply(s.image, params, self._rng(s.id, severity), self)
            if image.shape != s.image.shape or image.dtype != np.uint8:
                raise BenchmarkError(f"target kind '{target.kind}' turned {s.id} from {s.image.shape} uint8 into "
                                     f"{image.shape} {image.dtype}: a kind may change pixel values only")
            out.append(replace(s, image=image, domain=target.domain))
        return out

    def _rng(self, sample_id: str, severity: float) -> np.random.Generator:
        return np.random.default_rng([self.split.seed, zlib.crc32(sample_id.encode()), int(round(severity * 1e4))])

    def profiles_used(self) -> dict[str, dict]:
        return {d: p.to_dict() for d, p in sorted(self._profiles.items())}
