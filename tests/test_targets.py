"""The production target builder: a stain transform changes pixels only, never masks, labels or
ids, and every model of a seed is scored on the very same transformed images."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.targets import TargetBuilder
from protocols.resolve import resolve_splits

PROTOCOL = "cross_stain_synthetic"


@pytest.fixture(scope="module")
def by_id(by_domain):
    return {s.id: s for ss in by_domain.values() for s in ss}


@pytest.fixture(scope="module")
def split(by_domain):
    (split,) = resolve_splits(PROTOCOL, 0, by_domain)
    return split


def test_every_target_kind_keeps_masks_labels_and_ids(split, by_id):
    builder = TargetBuilder(split, by_id)
    kinds = set()
    for target in split.targets:
        built = builder.samples(target)
        kinds.add(None if target.transform is None else target.transform["kind"])
        assert [s.id for s in built] == list(target.ids)
        for s in built:
            original = by_id[s.id]
            assert s.label == original.label
            assert (s.mask is None) == (original.mask is None)
            if s.mask is not None:
                np.testing.assert_array_equal(s.mask, original.mask)
            assert s.image.shape == original.image.shape and s.image.dtype == original.image.dtype
        if target.transform is not None:  # a transform that changes nothing would test nothing
            assert any(not np.array_equal(s.image, by_id[s.id].image) for s in built), target.name
    assert kinds == {None, "restain", "hed"}


def test_two_builders_of_one_split_give_identical_images(split, by_id):
    """Jobs of one seed build their targets independently (one builder per worker process), so
    the transforms must be a function of the split alone."""
    a, b = TargetBuilder(split, by_id), TargetBuilder(split, by_id)
    for target in reversed(split.targets):  # another order of building must not matter either
        b.samples(target)
    for target in split.targets:
        for x, y in zip(a.samples(target), b.samples(target)):
            np.testing.assert_array_equal(x.image, y.image)


def test_hed_perturbation_depends_on_the_split_seed(by_domain, by_id):
    (s0,), (s1,) = (resolve_splits(PROTOCOL, seed, by_domain) for seed in (0, 1))
    hed0 = next(t for t in s0.targets if t.name == "hed:0.3")
    hed1 = next(t for t in s1.targets if t.name == "hed:0.3")
    common = sorted(set(hed0.ids) & set(hed1.ids))
    assert common, "the two seeds' test sets share no image; pick other seeds"
    img0 = {s.id: s.image for s in TargetBuilder(s0, by_id).samples(hed0)}
    img1 = {s.id: s.image for s in TargetBuilder(s1, by_id).samples(hed1)}
    assert any(not np.array_equal(img0[i], img1[i]) for i in common)
