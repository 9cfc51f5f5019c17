"""Deterministic stratified splitting that copes with classes of one or two members.

sklearn's stratified splitters refuse classes with a single member (Zheng D1 has one
basophil), so ids are allocated per class: shuffled by the seed, then rounded shares go to
test and val, the rest (and always the first member) to train.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np


def stratified_split(
    ids: list[str], strata: list[object], fractions: tuple[float, float], seed: int
) -> tuple[list[str], list[str], list[str]]:
    """Return (train, val, test) ids; ``fractions`` = (val share, test share)."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[str]] = defaultdict(list)
    for i, s in zip(ids, strata):
        groups[str(s)].append(i)
    train, val, test = [], [], []
    val_frac, test_frac = fractions
    for key in sorted(groups):
        members = sorted(groups[key])
        members = [members[j] for j in rng.permutation(len(members))]
        n = len(members)
        n_test = int(round(n * test_frac)) if n >= 3 else 0
        n_val = int(round(n * val_frac)) if n >= 3 else 0
        test += members[:n_test]
        val += members[n_test : n_test + n_val]
        train += members[n_test + n_val :]
    return sorted(train), sorted(val), sorted(test)
