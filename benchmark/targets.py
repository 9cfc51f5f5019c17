"""Realize a split's test targets as samples: untouched, re-stained into another domain's stain
profile, or HED-perturbed. Transforms never touch masks or labels, so they stay valid.

Stain profiles: the source profile is estimated from the *training* images of the source domain,
a target domain's from all of its images (it never trains the model). HED perturbations are
seeded by (split seed, sample id, severity), so every model of a seed sees the same test images.
"""
from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np

from wbcdata import stain
from core.sample import Sample
from core.errors import BenchmarkError
from protocols.split import Split, TestTarget


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
        t = target.transform
        if t is None:
            return base
        if t["kind"] == "restain":
            src, dst = self.profile(t["source"]), self.profile(t["target"])
            return [replace(s, image=stain.restain(s.image, src, dst), domain=target.domain) for s in base]
        if t["kind"] == "hed":
            sev = float(t["severity"])
            return [
                replace(s, image=stain.hed_perturb(s.image, sev, self._rng(s.id, sev)), domain=target.domain)
                for s in base
            ]
        raise BenchmarkError(f"split {self.split.key}: unknown transform kind '{t['kind']}' in target '{target.name}'")

    def _rng(self, sample_id: str, severity: float) -> np.random.Generator:
        return np.random.default_rng([self.split.seed, zlib.crc32(sample_id.encode()), int(round(severity * 1e4))])

    def profiles_used(self) -> dict[str, dict]:
        return {d: p.to_dict() for d, p in sorted(self._profiles.items())}
