"""The procedural smear generator: determinism, exact masks, morphology, stains, the dataset loader."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from wbcdata.registry import DATASETS
from core.sample import CLASSES, MASK_CYTOPLASM, MASK_NUCLEUS
from wbcdata.synthetic import (
    CLASS_COUNTS_PER_DOMAIN,
    IMAGES_PER_DOMAIN,
    LYMPHOCYTE,
    MONOCYTE,
    NEUTROPHIL,
    STAINS,
    SYNTHETIC_DOMAINS,
    load_synthetic,
    make_geometry,
    render,
    render_smear,
)
from core.errors import BenchmarkError

SIZE = 64


def true_concentrations(image: np.ndarray, stain: str) -> np.ndarray:
    """Deconvolve with the generator's own stain: HxWx2 (hematoxylin, eosin) concentrations."""
    model = STAINS[stain]
    od = np.log(np.asarray(model.background)) - np.log(np.maximum(image.astype(float), 1.0))
    return od @ np.linalg.pinv(model.stain_matrix * np.asarray(model.gain)).T


def test_deterministic_per_seed() -> None:
    a_img, a_mask = render_smear(11, SIZE, NEUTROPHIL, "synth_rapid")
    b_img, b_mask = render_smear(11, SIZE, NEUTROPHIL, "synth_rapid")
    c_img, c_mask = render_smear(12, SIZE, NEUTROPHIL, "synth_rapid")
    assert np.array_equal(a_img, b_img) and np.array_equal(a_mask, b_mask)
    assert not np.array_equal(a_mask, c_mask)
    assert np.abs(a_img.astype(int) - c_img.astype(int)).mean() > 5


@pytest.mark.parametrize("label", range(len(CLASSES)))
def test_each_class_renders_a_centred_wbc(label: int) -> None:
    image, mask = render_smear(3, SIZE, label, "synth_romanowsky")
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert mask.shape == (SIZE, SIZE) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, MASK_CYTOPLASM, MASK_NUCLEUS}
    ys, xs = np.nonzero(mask)
    assert abs(ys.mean() - SIZE / 2) < 0.15 * SIZE and abs(xs.mean() - SIZE / 2) < 0.15 * SIZE
    assert 0.05 < (mask > 0).mean() < 0.5  # one WBC at a consistent scale, plenty of background


@pytest.mark.parametrize("label", range(len(CLASSES)))
def test_mask_is_exact(label: int) -> None:
    """The nucleus mask is where hematoxylin is dense: it matches a threshold of the true H map."""
    geometry = make_geometry(5, 128, label)
    hema = true_concentrations(render(geometry, "synth_giemsa", noise=0.0), "synth_giemsa")[..., 0]
    nucleus, cytoplasm, background = (geometry.mask == k for k in (MASK_NUCLEUS, MASK_CYTOPLASM, 0))
    assert np.median(hema[nucleus]) > 0.6
    assert np.median(hema[nucleus]) > 2 * np.median(hema[cytoplasm]) > 0
    assert np.median(hema[cytoplasm]) > 3 * np.median(hema[background])
    if label in (NEUTROPHIL, LYMPHOCYTE, MONOCYTE):  # no granules over the nucleus: the H threshold is the mask
        dense = hema > 0.5 * np.median(hema[nucleus])
        iou = (dense & nucleus).sum() / (dense | nucleus).sum()
        assert iou > 0.9, iou


def test_morphology_nucleus_to_cell_ratio() -> None:
    """Lymphocytes have the largest N:C ratio, monocytes the largest cells."""

    def stats(label: int) -> tuple[float, float]:
        masks = [make_geometry(s, SIZE, label).mask for s in range(8)]
        ratio = np.mean([(m == MASK_NUCLEUS).sum() / (m > 0).sum() for m in masks])
        return float(ratio), float(np.mean([(m > 0).sum() for m in masks]))

    (lym_ratio, lym_area), (neu_ratio, neu_area), (mono_ratio, mono_area) = (
        stats(LYMPHOCYTE),
        stats(NEUTROPHIL),
        stats(MONOCYTE),
    )
    assert lym_ratio > 0.5 > neu_ratio
    assert lym_ratio > mono_ratio
    assert mono_area > neu_area > lym_area


def test_same_geometry_two_stains_same_mask_different_colour() -> None:
    geometry = make_geometry(7, SIZE, MONOCYTE)
    a = render(geometry, "synth_romanowsky")
    b = render(geometry, "synth_rapid")
    img_a, mask_a = render_smear(7, SIZE, MONOCYTE, "synth_romanowsky")
    img_b, mask_b = render_smear(7, SIZE, MONOCYTE, "synth_rapid")
    assert np.array_equal(mask_a, mask_b) and np.array_equal(mask_a, geometry.mask)
    assert np.array_equal(a, img_a) and np.array_equal(b, img_b)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 15
    # the rapid stain's background is yellow: blue is absorbed by the glass/illumination
    background = geometry.mask == 0
    assert b[background][:, 2].mean() < a[background][:, 2].mean() - 40


def test_bad_inputs_raise() -> None:
    with pytest.raises(BenchmarkError, match="size"):
        render_smear(0, 8, 0, "synth_rapid")
    with pytest.raises(BenchmarkError, match="label"):
        render_smear(0, SIZE, len(CLASSES), "synth_rapid")
    with pytest.raises(BenchmarkError, match="synth_rapid"):  # the message lists the valid stains
        render_smear(0, SIZE, 0, "nope")


def test_registered_dataset_and_loader() -> None:
    spec = DATASETS.get("synthetic")
    assert spec.domains == SYNTHETIC_DOMAINS and len(spec.domains) >= 3 and not spec.fetched
    samples = load_synthetic(Path("."), SIZE)
    assert len(samples) == IMAGES_PER_DOMAIN * len(SYNTHETIC_DOMAINS)
    assert len({s.id for s in samples}) == len(samples)
    assert {s.domain for s in samples} == set(SYNTHETIC_DOMAINS)
    assert all(s.dataset == "synthetic" and s.source == "procedural" for s in samples)
    assert samples[7].id == f"synthetic/{SYNTHETIC_DOMAINS[0]}/0007"
    for domain in SYNTHETIC_DOMAINS:
        counts = Counter(s.label for s in samples if s.domain == domain)
        assert tuple(counts[k] for k in range(len(CLASSES))) == CLASS_COUNTS_PER_DOMAIN
    # different domains hold different cells
    first = {s.domain: s.mask for s in samples if s.id.endswith("/0000")}
    assert not np.array_equal(first[SYNTHETIC_DOMAINS[0]], first[SYNTHETIC_DOMAINS[1]])
    again = load_synthetic(Path("."), SIZE)
    assert all(np.array_equal(a.image, b.image) and a.label == b.label for a, b in zip(samples[::37], again[::37]))
