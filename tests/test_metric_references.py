"""The in-house ECE and HD95 (benchmark.record.metrics) against hand counts and, where installed,
the kept libraries that define them: torchmetrics' ``multiclass_calibration_error`` and MONAI's
``compute_hausdorff_distance``. Neither library is a dependency (docs/decisions.md, "Package
choices"), so those two comparisons run only where someone installed them."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from benchmark.record.metrics import ECE_BINS, calibration_bins, expected_calibration_error, hd95


def _random_probabilities(seed: int, n: int = 400, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = 2.0 * rng.normal(size=(n, k))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return rng.integers(0, k, n), proba


def _ece_by_hand(y: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sample by sample into the bin (lo, hi] holding its confidence, then sum of |hits - confidence| / N."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    hits, conf = [0.0] * bins, [0.0] * bins
    for label, p in zip(y, proba):
        c = float(p.max())
        b = next(i for i in range(bins) if edges[i] < c <= edges[i + 1])
        hits[b] += float(int(p.argmax()) == int(label))
        conf[b] += c
    return sum(abs(h - c) for h, c in zip(hits, conf)) / len(y)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_matches_a_hand_count(seed):
    y, proba = _random_probabilities(seed)
    assert expected_calibration_error(y, proba) == pytest.approx(_ece_by_hand(y, proba), abs=1e-12)
    count, correct, _ = calibration_bins(y, proba)
    assert count.sum() == len(y) and correct.sum() == (proba.argmax(axis=1) == y).sum()


def test_a_confidence_on_a_bin_edge_falls_in_the_lower_bin():
    proba = np.array([[0.6, 0.4, 0.0, 0.0, 0.0]])  # 0.6 = 9/15 exactly: the bin (8/15, 9/15]
    count, _, _ = calibration_bins(np.array([0]), proba)
    assert count.nonzero()[0].tolist() == [8]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_matches_torchmetrics(seed):
    torch = pytest.importorskip("torch")
    classification = pytest.importorskip("torchmetrics.functional.classification")
    y, proba = _random_probabilities(seed)
    theirs = classification.multiclass_calibration_error(torch.tensor(proba), torch.tensor(y), num_classes=5,
                                                         n_bins=ECE_BINS, norm="l1").item()
    assert expected_calibration_error(y, proba) == pytest.approx(theirs, abs=1e-6)  # theirs is float32


def _line_with_stray_pixel(stray: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    a = np.zeros((10, 10), bool)
    a[2, 2:7] = True  # one pixel wide: all 5 pixels are contour
    b = a.copy()
    b[stray] = True
    return a[None], b[None]


def test_hd95_by_hand_interpolates_and_takes_the_larger_direction():
    """a -> b: five distances 0. b -> a: five 0s and the stray pixel's distance d to the line; numpy's
    linear 95th percentile of [0, 0, 0, 0, 0, d] sits at rank 0.95 x 5 = 4.75, i.e. 0.75 d."""
    a, b = _line_with_stray_pixel((8, 4))  # straight below (2, 4): d = 6
    assert hd95(a, b) == pytest.approx([4.5]) and hd95(b, a) == pytest.approx([4.5])
    a, b = _line_with_stray_pixel((8, 8))  # nearest (2, 6): d = sqrt(36 + 4)
    assert hd95(a, b) == pytest.approx([0.75 * np.sqrt(40.0)])


def test_hd95_matches_monai():
    torch = pytest.importorskip("torch")
    metrics = pytest.importorskip("monai.metrics")
    rng = np.random.default_rng(1)
    for _ in range(20):
        a, b = (ndimage.binary_dilation(rng.random((32, 32)) > 0.95, iterations=3)[None] for _ in range(2))
        theirs = metrics.compute_hausdorff_distance(torch.tensor(a[:, None]), torch.tensor(b[:, None]), percentile=95,
                                                    include_background=True).item()
        assert hd95(a, b)[0] == pytest.approx(theirs, abs=1e-5)  # masks touching the edge included
