"""The training-free floors: what they fit, that the engine fits them on the training split only,
and that their predictions do not depend on the test image."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.engine.batches import ArraySet
from benchmark.engine.budgets import get_budget
from core.errors import BenchmarkError
from benchmark.reports.tables import IOU_FLOOR
from benchmark.engine.train import predict, score_predictions, train
from models.registry import create_model, list_models
from core.study import REFERENCE_MODELS

SIZE = 16
K = 5
CPU = torch.device("cpu")


def _arrays(masks: np.ndarray, labels: np.ndarray, seed: int = 0, mask_valid: np.ndarray | None = None) -> ArraySet:
    """A split of random-noise images (the floors must not care) with the given masks and labels."""
    rng = np.random.default_rng(seed)
    n = len(masks)
    images = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)
    valid = np.ones(n, bool) if mask_valid is None else mask_valid
    return ArraySet([f"s/{i}" for i in range(n)], ["s"] * n, images, masks.astype(np.uint8), valid,
                    labels.astype(np.int64))


def _disk(radius: float, nucleus: float) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    d2 = (yy - (SIZE - 1) / 2) ** 2 + (xx - (SIZE - 1) / 2) ** 2
    return (d2 <= radius**2).astype(np.uint8) + (d2 <= nucleus**2).astype(np.uint8)


def _fit(name: str, data: ArraySet):
    torch.manual_seed(0)
    model = create_model(name, num_classes=K, img_size=SIZE)
    result = train(model, data, data, get_budget("smoke"), seed=0, progress=False)
    return model, result


def test_floors_are_registered_training_free_and_named_in_the_tables() -> None:
    assert set(REFERENCE_MODELS) <= set(list_models()) and IOU_FLOOR in REFERENCE_MODELS
    heads = {}
    for name in REFERENCE_MODELS:
        model = create_model(name, num_classes=K, img_size=SIZE)
        assert not list(model.parameters())
        heads[name] = (model.has_classifier, model.has_segmenter)
    assert heads == {"constant_mask": (False, True), "majority_class": (True, False)}


def test_constant_mask_is_the_thresholded_mean_training_mask() -> None:
    rng = np.random.default_rng(1)
    masks = rng.integers(0, 3, (7, SIZE, SIZE))
    valid = np.array([True] * 6 + [False])
    masks[6] = 2  # an unmasked sample: must not count
    model, result = _fit("constant_mask", _arrays(masks, np.full(7, -1), mask_valid=valid))
    wbc_mean, nucleus_mean = (masks[:6] > 0).mean(0), (masks[:6] == 2).mean(0)
    assert np.allclose(model.mean_mask.numpy(), np.stack([wbc_mean, nucleus_mean]))
    assert torch.equal(result.state_dict["mean_mask"], model.mean_mask)  # the fit travels with the weights
    logits = model.eval()(torch.rand(3, 3, SIZE, SIZE)).mask_logits
    assert logits.shape == (3, 2, SIZE, SIZE) and torch.isfinite(logits).all()
    assert np.array_equal(logits[0, 0].numpy() > 0, wbc_mean > 0.5)  # 0.5 exactly: background
    assert np.array_equal(logits[0, 1].numpy() > 0, nucleus_mean > 0.5)
    assert result.best_epoch == 0 and result.history == []


def test_constant_mask_scores_iou_one_when_every_cell_is_the_same_centred_disk() -> None:
    disks = np.stack([_disk(5.0, 2.5)] * 8)
    model, result = _fit("constant_mask", _arrays(disks, np.zeros(8)))
    test = _arrays(disks[:4], np.zeros(4), seed=9)
    scores = score_predictions(predict(model, test, CPU), "segmentation")
    assert scores["iou"] == 1.0 and scores["nucleus_iou"] == 1.0 and scores["boundary_iou"] == 1.0
    assert scores["hd95"] == 0.0 and result.val_metrics["iou"] == 1.0  # fitted before validation


def test_majority_class_predicts_the_training_prior() -> None:
    labels = np.array([1, 1, 1, 0, 2, -1, -1, 1])  # unlabelled samples do not count
    model, result = _fit("majority_class", _arrays(np.zeros((8, SIZE, SIZE)), labels))
    prior = np.array([1, 4, 1, 0, 0]) / 6
    assert np.allclose(model.prior.numpy(), prior)
    assert torch.equal(result.state_dict["prior"], model.prior)
    pred = predict(model, _arrays(np.zeros((3, SIZE, SIZE)), np.array([0, 1, 4]), seed=5), CPU)
    assert np.allclose(pred.proba, np.tile(prior, (3, 1)), atol=1e-6) and pred.pred_masks is None
    scores = score_predictions(pred, "classification")
    assert scores["accuracy"] == pytest.approx(1 / 3) and scores["auc_macro_ovr"] == 0.5
    assert scores["iou"] is None and scores["hd95"] is None


@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_a_fitted_floor_ignores_the_test_images(name: str) -> None:
    rng = np.random.default_rng(2)
    masks = np.stack([_disk(rng.uniform(3, 7), rng.uniform(1, 3)) for _ in range(10)])
    model, _ = _fit(name, _arrays(masks, rng.integers(0, K, 10)))
    model.eval()
    with torch.no_grad():
        a, b = model(torch.rand(2, 3, SIZE, SIZE)), model(torch.zeros(2, 3, SIZE, SIZE))
    for ta, tb in ((a.class_logits, b.class_logits), (a.mask_logits, b.mask_logits)):
        assert (ta is None) == (tb is None)
        if ta is not None:
            assert torch.equal(ta, tb) and torch.equal(ta[0], ta[1])


def test_refitting_on_another_split_changes_the_floor() -> None:
    small, large = np.stack([_disk(3.0, 1.0)] * 4), np.stack([_disk(6.0, 2.0)] * 4)
    a, _ = _fit("constant_mask", _arrays(small, np.zeros(4)))
    b, _ = _fit("constant_mask", _arrays(large, np.zeros(4)))
    assert (a.mean_mask[0] > 0.5).sum() < (b.mean_mask[0] > 0.5).sum()


@pytest.mark.parametrize("name, labels, valid, needle", [
    ("constant_mask", np.zeros(3), np.zeros(3, bool), "none of the 3 training samples has a mask"),
    ("majority_class", np.full(3, -1), np.ones(3, bool), "none of the 3 training samples has a label"),
])
def test_a_floor_with_nothing_to_fit_is_an_error(name: str, labels: np.ndarray, valid: np.ndarray,
                                                 needle: str) -> None:
    with pytest.raises(BenchmarkError, match=needle):
        _fit(name, _arrays(np.zeros((3, SIZE, SIZE)), labels, mask_valid=valid))


def test_constant_mask_rejects_another_input_size() -> None:
    model = create_model("constant_mask", img_size=SIZE)
    with pytest.raises(BenchmarkError, match="differs from the fitted mask size"):
        model(torch.rand(1, 3, 2 * SIZE, 2 * SIZE))
