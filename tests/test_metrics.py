"""Metrics: hand-worked tiny cases, agreement with sklearn, n/a handling, RLE, worst domain."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from core.sample import CLASSES
from core.errors import BenchmarkError
from benchmark.record.metrics import (
    CLASSIFICATION_METRICS,
    LOWER_IS_BETTER,
    SEGMENTATION_METRICS,
    Predictions,
    _boundary_band,
    boundary_iou,
    classification_metrics,
    evaluate_by_domain,
    expected_calibration_error,
    hd95,
    mask_to_rle,
    rle_to_mask,
    segmentation_metrics,
)

# Five labelled samples (classes 0, 0, 1, 1, 2) and one unlabelled (-1, ignored).
# arg-max predictions: 0, 1, 1, 1, 0.
HAND_Y = np.array([0, 0, 1, 1, 2, -1])
HAND_P = np.array(
    [
        [0.6, 0.3, 0.1, 0.0, 0.0],
        [0.3, 0.5, 0.2, 0.0, 0.0],
        [0.2, 0.7, 0.1, 0.0, 0.0],
        [0.1, 0.8, 0.1, 0.0, 0.0],
        [0.5, 0.2, 0.3, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 1.0],  # unlabelled: would be wrong if counted
    ]
)


def test_classification_hand_worked():
    m = classification_metrics(HAND_Y, HAND_P)
    # correct: samples 0, 2, 3 -> 3/5
    assert m["accuracy"] == pytest.approx(0.6)
    # class 0: TP 1, FP 1 (sample 4), FN 1 (sample 1) -> P 1/2, R 1/2, F1 1/2
    # class 1: TP 2, FP 1 (sample 1), FN 0 -> P 2/3, R 1, F1 0.8
    # class 2: TP 0, FP 0, FN 1 -> P 0 (zero division), R 0, F1 0
    # classes 3, 4 have no support and are left out of the macro averages
    assert m["recall_macro"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    assert m["precision_macro"] == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0) / 3)
    # one-vs-rest AUC by pair counting:
    # class 0: positives {.6, .3} vs negatives {.2, .1, .5}: 5 of 6 pairs ordered -> 5/6
    # class 1: positives {.7, .8} vs {.3, .5, .2}: 6/6; class 2: {.3} vs {.1, .2, .1, .1}: 4/4
    assert m["auc_macro_ovr"] == pytest.approx((5 / 6 + 1 + 1) / 3)
    # ECE, 15 bins: confidences .6 (right), .5 (wrong), .7 (right), .8 (right), .5 (wrong); the two
    # .5 share a bin (accuracy 0) -> (|1 - .6| + 2 |0 - .5| + |1 - .7| + |1 - .8|) / 5 = 1.9 / 5
    assert m["ece"] == pytest.approx(0.38)
    assert m["per_class"] == {
        "neutrophil": {"f1": pytest.approx(0.5), "support": 2},
        "lymphocyte": {"f1": pytest.approx(0.8), "support": 2},
        "monocyte": {"f1": 0.0, "support": 1},
        "eosinophil": {"f1": None, "support": 0},
        "basophil": {"f1": None, "support": 0},
    }


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # sklearn's reference, same result
@pytest.mark.parametrize("missing", [None, 4])
def test_classification_agrees_with_sklearn(missing):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, 300)
    if missing is not None:
        y[y == missing] = 0
    logits = rng.normal(size=(300, 5)) + 1.5 * np.eye(5)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = proba.argmax(1)
    present = np.unique(y).tolist()
    m = classification_metrics(y, proba)
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, labels=present, average="macro"))
    assert m["precision_macro"] == pytest.approx(precision_score(y, pred, labels=present, average="macro"))
    assert m["recall_macro"] == pytest.approx(recall_score(y, pred, labels=present, average="macro"))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    if missing is None:
        assert m["auc_macro_ovr"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    else:
        # sklearn's multi-class ovr needs scores summing to 1 over the listed labels; the
        # benchmark averages the binary one-vs-rest AUCs of the raw class scores instead
        expected = np.mean([roc_auc_score(y == c, proba[:, c]) for c in present])
        assert m["auc_macro_ovr"] == pytest.approx(expected)
        assert m["per_class"][CLASSES[missing]] == {"f1": None, "support": 0}


def test_classification_not_applicable_cases():
    empty = classification_metrics(np.zeros(0, int), np.zeros((0, 5)))
    unlabelled = classification_metrics(np.array([-1, -1]), np.full((2, 5), 0.2))
    for m in (empty, unlabelled):
        assert all(m[k] is None for k in CLASSIFICATION_METRICS)
        assert all(v == {"f1": None, "support": 0} for v in m["per_class"].values())
    one_class = classification_metrics(np.array([2, 2]), np.eye(5)[[2, 1]])
    assert one_class["auc_macro_ovr"] is None
    assert one_class["accuracy"] == pytest.approx(0.5)


def test_ece_is_zero_when_confidence_matches_accuracy():
    y = np.array([0] * 8 + [1] * 2)
    proba = np.tile([0.8, 0.2, 0.0, 0.0, 0.0], (10, 1))  # always class 0 at 0.8; right 8 times in 10
    assert expected_calibration_error(y, proba) == pytest.approx(0.0)
    assert expected_calibration_error(y[:5], proba[:5]) == pytest.approx(0.2)  # right 5/5 at 0.8


def test_constant_scores_give_auc_one_half_and_an_honest_ece():
    """A classifier that ignores the image (the majority_class floor): AUC 0.5, not n/a or an error."""
    y = np.array([0, 0, 0, 1])
    m = classification_metrics(y, np.tile([0.6, 0.4, 0.0, 0.0, 0.0], (4, 1)))
    assert m["auc_macro_ovr"] == 0.5 and m["accuracy"] == 0.75
    assert m["ece"] == pytest.approx(0.15)  # |0.75 - 0.6|


@pytest.mark.parametrize(
    "y, p, needle",
    [
        (np.array([0, 1]), np.full((2, 4), 0.25), "proba (N, 5)"),
        (np.array([0, 1]), np.array([[np.nan] * 5, [0.2] * 5]), "NaN"),
        (np.array([0, 7]), np.full((2, 5), 0.2), "labels must be integers"),
    ],
)
def test_classification_bad_input(y, p, needle):
    with pytest.raises(BenchmarkError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        classification_metrics(y, p)


# Image A (2x3), hand-worked:
#   true [[0,1,2],[0,1,1]] -> WBC [[0,1,1],[0,1,1]] (4 px), nucleus {(0,2)}
#   pred [[1,1,2],[0,0,2]] -> WBC [[1,1,1],[0,0,1]] (4 px), nucleus {(0,2),(1,2)}
#   WBC: intersection 3, union 5 -> IoU 0.6; Dice 2*3/(4+4) = 0.75; pixels agreeing 4/6
#   nucleus: intersection 1, union 2 -> 0.5
#   Boundary IoU: diagonal sqrt(13) -> d = 1 px, and every pixel of a 2-row image touches the
#   edge, so each band is the whole mask and Boundary IoU = IoU = 0.6
#   HD95: contours = whole masks; pred -> true distances [1, 0, 0, 0] ((0,0) is 1 from (0,1)),
#   true -> pred [1, 0, 0, 0] ((1,1)); linear 95th percentile of [0, 0, 0, 1] = 0.85
# Image B: both empty -> IoU = Dice = pixel accuracy = nucleus IoU = Boundary IoU = 1, HD95 = 0
# (convention)
SEG_TRUE = np.array([[[0, 1, 2], [0, 1, 1]], [[0, 0, 0], [0, 0, 0]]], np.uint8)
SEG_PRED = np.array([[[1, 1, 2], [0, 0, 2]], [[0, 0, 0], [0, 0, 0]]], np.uint8)


def test_segmentation_hand_worked():
    m = segmentation_metrics(SEG_PRED, SEG_TRUE)
    assert m["iou"] == pytest.approx((0.6 + 1) / 2)
    assert m["dice"] == pytest.approx((0.75 + 1) / 2)
    assert m["pixel_accuracy"] == pytest.approx((4 / 6 + 1) / 2)
    assert m["nucleus_iou"] == pytest.approx((0.5 + 1) / 2)
    assert m["boundary_iou"] == pytest.approx((0.6 + 1) / 2)
    assert m["hd95"] == pytest.approx((0.85 + 0) / 2)


def test_segmentation_false_positive_on_empty_truth_scores_zero():
    true = np.zeros((1, 2, 2), np.uint8)
    pred = np.array([[[1, 0], [0, 0]]], np.uint8)
    m = segmentation_metrics(pred, true)
    assert m["iou"] == 0.0 and m["dice"] == 0.0 and m["pixel_accuracy"] == pytest.approx(0.75)
    assert m["boundary_iou"] == 0.0
    assert m["hd95"] == pytest.approx(np.sqrt(8))  # one mask empty: capped at the image diagonal
    assert segmentation_metrics(true, pred)["hd95"] == pytest.approx(np.sqrt(8))  # missed cell, same cap


def _square(top: int, left: int, side: int = 20, size: int = 64) -> np.ndarray:
    mask = np.zeros((1, size, size), bool)
    mask[0, top:top + side, left:left + side] = True
    return mask


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_hd95_of_a_shifted_square_is_the_shift(k):
    # the leading and trailing edges (~40 of ~76 contour pixels) are k away, nothing is farther
    assert hd95(_square(10, 10), _square(10, 10 + k)) == pytest.approx([k])
    assert hd95(_square(10 + k, 10), _square(10, 10)) == pytest.approx([k])


def test_hd95_ignores_a_few_stray_pixels_and_is_zero_for_a_perfect_mask():
    truth = _square(10, 10, side=30)
    pred = truth.copy()
    pred[0, 60, 60] = True  # 1 of 117 contour pixels, 29.7 px away: under the 5% the percentile drops
    assert hd95(truth, truth) == pytest.approx([0.0])
    assert hd95(pred, truth) == pytest.approx([0.0])


def test_boundary_iou_hand_worked():
    # 64 px: d = round(0.02 * 90.5) = 2. A 20x20 square's band: 400 - 16x16 core = 144 px. Shifted
    # by one column: rows 10, 11, 28, 29 share 19 px each (76), rows 12..27 share columns 11 and 29
    # (32): intersection 108, union 2 x 144 - 108 = 180 -> 0.6, while the mask IoU is 380/420
    truth, pred = _square(10, 10), _square(10, 11)
    assert _boundary_band(truth).sum() == 144
    assert boundary_iou(pred, truth) == pytest.approx([0.6])
    m = segmentation_metrics(pred.astype(np.uint8), truth.astype(np.uint8))
    assert m["iou"] == pytest.approx(380 / 420) and m["boundary_iou"] == pytest.approx(0.6)


def test_boundary_band_matches_the_authors_opencv_code():
    """Cheng et al.'s ``mask_to_boundary``: pad by 1, erode d times with a 3x3 kernel, subtract."""
    def reference(mask: np.ndarray) -> np.ndarray:
        h, w = mask.shape
        d = max(1, int(round(0.02 * np.sqrt(h**2 + w**2))))
        padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:h + 1, 1:w + 1]
        return (mask.astype(np.uint8) - eroded) > 0

    rng = np.random.default_rng(0)
    for shape in [(40, 50), (64, 64), (224, 224)]:
        masks = rng.random((3, *shape)) < 0.8
        masks[0] = False
        masks[1] = True
        assert np.array_equal(_boundary_band(masks), np.stack([reference(m) for m in masks]))


def test_segmentation_not_applicable_and_errors():
    assert segmentation_metrics(SEG_PRED, SEG_TRUE, score_nucleus=False)["nucleus_iou"] is None
    empty = segmentation_metrics(np.zeros((0, 4, 4), np.uint8), np.zeros((0, 4, 4), np.uint8))
    assert all(empty[k] is None for k in SEGMENTATION_METRICS)
    with pytest.raises(BenchmarkError, match=r"\(2, 2, 3\).*\(2, 3, 2\)"):
        segmentation_metrics(SEG_PRED, SEG_TRUE.transpose(0, 2, 1))
    with pytest.raises(BenchmarkError, match=r"outside \{0, 1, 2\}"):
        segmentation_metrics(SEG_PRED * 2, SEG_TRUE)


def _two_domain_predictions(with_classifier: bool = True) -> Predictions:
    """Domain "a": all labels right, masks half right; domain "b": labels half wrong, masks exact."""
    label = np.array([0, 1, 0, 1])
    proba = np.eye(5)[[0, 1, 0, 0]] * 0.9 + 0.02  # sample 3 (domain b) predicted 0 instead of 1
    true = np.stack([SEG_TRUE[0]] * 4)
    pred = np.stack([SEG_PRED[0], SEG_PRED[0], SEG_TRUE[0], SEG_TRUE[0]])
    return Predictions(
        domain=np.array(["a", "a", "b", "b"]),
        label=label,
        proba=proba if with_classifier else None,
        pred_mask=pred,
        true_mask=true,
    )


def test_evaluate_by_domain_worst_domain():
    r = evaluate_by_domain(_two_domain_predictions())
    assert set(r["per_domain"]) == {"a", "b"}
    assert r["per_domain"]["a"]["accuracy"] == 1.0 and r["per_domain"]["b"]["accuracy"] == 0.5
    assert r["overall"]["accuracy"] == pytest.approx(0.75) and r["overall"]["n"] == 4
    assert r["worst_domain"]["accuracy"] == {"domain": "b", "value": 0.5}
    assert r["worst_domain"]["iou"] == {"domain": "a", "value": pytest.approx(0.6)}
    assert r["per_domain"]["b"]["iou"] == 1.0


def test_worst_domain_of_a_lower_is_better_metric_is_the_highest():
    r = evaluate_by_domain(_two_domain_predictions())
    assert LOWER_IS_BETTER == {"ece", "hd95", "flip_rate", "feature_drift"}
    # masks: domain a is image A twice (HD95 0.85), domain b exact (0)
    assert r["worst_domain"]["hd95"] == {"domain": "a", "value": pytest.approx(0.85)}
    # labels: a right at confidence 0.92 (ECE 0.08); b one right, one wrong at 0.92 (ECE 0.42)
    assert r["per_domain"]["a"]["ece"] == pytest.approx(0.08)
    assert r["worst_domain"]["ece"] == {"domain": "b", "value": pytest.approx(0.42)}


def test_evaluate_by_domain_not_applicable():
    r = evaluate_by_domain(_two_domain_predictions(with_classifier=False))
    assert all(r["overall"][k] is None for k in CLASSIFICATION_METRICS)
    assert all(r["worst_domain"][k] is None for k in CLASSIFICATION_METRICS)
    assert r["overall"]["iou"] == pytest.approx(0.8)
    # single-class domains have no AUC; the worst AUC skips them (here: none has one)
    r2 = evaluate_by_domain(
        Predictions(domain=np.array(["a", "b", "b"]), label=np.array([0, 1, 2]), proba=np.eye(5)[[0, 1, 2]])
    )
    assert r2["per_domain"]["a"]["auc_macro_ovr"] is None
    assert r2["worst_domain"]["auc_macro_ovr"] == {"domain": "b", "value": 1.0}
    assert r2["overall"]["iou"] is None and r2["worst_domain"]["iou"] is None


def test_evaluate_by_domain_mask_valid_excludes_unmasked_samples():
    p = _two_domain_predictions()
    valid = np.array([False, False, True, True])  # domain a has no usable ground truth
    r = evaluate_by_domain(Predictions(p.domain, p.label, p.proba, p.pred_mask, p.true_mask, valid))
    assert r["per_domain"]["a"]["iou"] is None and r["overall"]["iou"] == 1.0
    assert r["worst_domain"]["iou"] == {"domain": "b", "value": 1.0}


def test_predictions_validation():
    with pytest.raises(BenchmarkError, match="differ in length"):
        Predictions(domain=np.array(["a", "b"]), label=np.array([0]))
    with pytest.raises(BenchmarkError, match="0 samples"):
        evaluate_by_domain(Predictions(domain=np.array([]), label=np.array([], int)))


def test_rle_hand_worked_and_round_trip():
    mask = np.array([[0, 0, 1], [1, 2, 0]], np.uint8)
    rle = mask_to_rle(mask)
    assert rle == {"shape": [2, 3], "values": [0, 1, 2, 0], "counts": [2, 2, 1, 1]}
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 5), (64, 64)]:
        m = rng.integers(0, 3, shape).astype(np.uint8)
        back = rle_to_mask(json.loads(json.dumps(mask_to_rle(m))), shape)
        assert back.dtype == np.uint8 and np.array_equal(back, m)
    blob = np.zeros((64, 64), np.uint8)
    blob[20:40, 20:40] = 1
    blob[25:35, 25:35] = 2
    assert len(mask_to_rle(blob)["counts"]) < 100  # compact for a cell-shaped mask
    assert np.array_equal(rle_to_mask(mask_to_rle(np.zeros((0, 3), np.uint8))), np.zeros((0, 3), np.uint8))


def test_rle_errors():
    rle = mask_to_rle(np.array([[0, 1], [1, 1]], np.uint8))
    with pytest.raises(BenchmarkError, match=r"shape \(2, 2\).*\(3, 3\)"):
        rle_to_mask(rle, (3, 3))
    with pytest.raises(BenchmarkError, match="corrupt"):
        rle_to_mask({**rle, "counts": [1, 2]})
    with pytest.raises(BenchmarkError, match="needs shape"):
        rle_to_mask({"values": [0]})
    with pytest.raises(BenchmarkError, match="uint8"):
        mask_to_rle(np.zeros((2, 2), np.int64))
