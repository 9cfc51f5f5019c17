"""Classification and segmentation metrics, per domain, and a compact mask encoding.

Conventions (the tables rely on them):

- A metric that does not apply (no classifier, no masks, no labelled sample, a single class
  present for AUC) is ``None`` and is shown "n/a"; it is never 0.
- Macro averages run over the classes WITH SUPPORT in the evaluated set (labels present in
  ``y_true``): a class absent from a test set has no defined recall, and counting it as 0 or
  skipping it silently would make domains with different class coverage incomparable.
  A class with support that the model never predicts gets precision 0 (sklearn
  ``zero_division=0``): never predicting a present class is a real failure.
- Segmentation scores are means of per-image scores (each cell image weighs the same,
  whatever the size of its cell). An image whose predicted and true masks are both empty
  scores IoU = Dice = Boundary IoU = 1 and HD95 = 0 (nothing to find, nothing found).
- Every metric is higher-is-better except those in :data:`LOWER_IS_BETTER` (``ece``, ``hd95``,
  ``flip_rate``, ``feature_drift``):
  code that ranks or picks a worst value must look there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from core.sample import CLASSES, MASK_NUCLEUS
from core.errors import BenchmarkError

CLASSIFICATION_METRICS: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "precision_macro",
    "recall_macro",
    "macro_f1",
    "auc_macro_ovr",
    "ece",
)
"""Scalar classification metrics; ``per_class`` comes beside them."""

SEGMENTATION_METRICS: tuple[str, ...] = ("iou", "dice", "pixel_accuracy", "nucleus_iou", "boundary_iou", "hd95")
"""Scalar segmentation metrics; ``hd95`` is in pixels, the others are fractions."""

LOWER_IS_BETTER: frozenset[str] = frozenset({"ece", "hd95", "flip_rate", "feature_drift"})
"""The metrics where a smaller value is better (calibration error, boundary distance, and the
invariance measures of ``benchmark.record.vocabulary.INVARIANCE_METRICS``: prediction flips and feature drift)."""

ECE_BINS = 15
"""Equal-width confidence bins of the expected calibration error (Guo et al. 2017 use 15)."""

BOUNDARY_DILATION_RATIO = 0.02
"""Boundary IoU band width as a fraction of the image diagonal (Cheng et al. 2021's default)."""

HD_PERCENTILE = 95.0
"""The percentile of the boundary distances that HD95 reports (robust to a few stray pixels)."""

NO_LABEL = -1
"""``y_true`` value of a sample without a class label (matches the batch contract)."""


def _empty_classification(class_names: tuple[str, ...] | list[str]) -> dict:
    out: dict = {name: None for name in CLASSIFICATION_METRICS}
    out["per_class"] = {c: {"f1": None, "support": 0} for c in class_names}
    return out


def calibration_bins(y: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> tuple[np.ndarray, ...]:
    """Per equal-width confidence bin ((b-1)/bins, b/bins] of the top-label confidence (max
    probability): sample count, correct predictions and summed confidence. The bins of
    :func:`expected_calibration_error`, shared with the reliability diagrams."""
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(np.float64)
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    return (np.bincount(idx, minlength=bins), np.bincount(idx, weights=correct, minlength=bins),
            np.bincount(idx, weights=conf, minlength=bins))


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE (Guo et al. 2017) of labelled samples: the confidence (max probability) is
    binned into ``bins`` equal-width bins ((b-1)/bins, b/bins] (:func:`calibration_bins`), and ECE =
    sum over bins of (bin share) x |accuracy - mean confidence| in the bin. 0 is perfectly
    calibrated; lower is better. A classifier that always answers with the training prior is
    calibrated exactly when the test set's majority share equals the prior's largest probability."""
    _, correct, conf = calibration_bins(y, proba, bins)
    return float(np.abs(correct - conf).sum() / len(y))


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, class_names: tuple[str, ...] | list[str] = CLASSES
) -> dict:
    """Scores of class probabilities ``proba`` (N, K) against labels ``y_true`` (N,).

    Samples with ``y_true == -1`` (unlabelled) are ignored; if none is left every metric is
    None. The prediction is the arg-max of ``proba``. Balanced accuracy is by definition
    (sklearn, ``adjusted=False``) the mean recall over classes with support, so it equals
    ``recall_macro``; both are kept because reports name both. AUC is the unweighted mean of
    one-vs-rest binary AUCs of the raw class scores over classes with support (sklearn's
    ``multi_class="ovr", average="macro"`` when all classes are present); None with fewer
    than two classes present, because a one-vs-rest split then has no negatives; constant
    scores (a model that ignores the image) give 0.5. ``ece``: :func:`expected_calibration_error`.
    """
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    k = len(class_names)
    if y_true.ndim != 1 or proba.ndim != 2 or proba.shape != (y_true.shape[0], k):
        raise BenchmarkError(
            f"classification_metrics: expected y_true (N,) and proba (N, {k}) for classes {list(class_names)}, "
            f"got y_true {y_true.shape} and proba {proba.shape}"
        )
    if not np.all(np.isfinite(proba)):
        raise BenchmarkError("classification_metrics: proba contains NaN or infinite values")
    if y_true.size and (not np.issubdtype(y_true.dtype, np.integer) or y_true.min() < NO_LABEL or y_true.max() >= k):
        raise BenchmarkError(
            f"classification_metrics: labels must be integers in -1..{k - 1}, got {np.unique(y_true)[:10].tolist()}"
        )
    keep = y_true != NO_LABEL
    y, p = y_true[keep], proba[keep]
    if y.size == 0:
        return _empty_classification(class_names)

    y_pred = p.argmax(axis=1)
    present = np.unique(y)
    labels = present.tolist()
    f1_present = f1_score(y, y_pred, labels=labels, average=None, zero_division=0)
    recall = float(recall_score(y, y_pred, labels=labels, average="macro", zero_division=0))
    support = np.bincount(y, minlength=k)
    f1_of = dict(zip(labels, f1_present.tolist()))
    auc = None
    if present.size >= 2:
        auc = float(np.mean([roc_auc_score(y == c, p[:, c]) for c in labels]))
    return {
        "accuracy": float(accuracy_score(y, y_pred)),
        "balanced_accuracy": recall,
        "precision_macro": float(precision_score(y, y_pred, labels=labels, average="macro", zero_division=0)),
        "recall_macro": recall,
        "macro_f1": float(np.mean(f1_present)),
        "auc_macro_ovr": auc,
        "ece": expected_calibration_error(y, p),
        "per_class": {
            name: {"f1": f1_of.get(i), "support": int(support[i])} for i, name in enumerate(class_names)
        },
    }


def _check_label_maps(pred: np.ndarray, true: np.ndarray) -> None:
    if pred.shape != true.shape:
        raise BenchmarkError(
            f"segmentation_metrics: predicted masks {pred.shape} and true masks {true.shape} differ in shape"
        )
    if pred.ndim != 3:
        raise BenchmarkError(f"segmentation_metrics: masks must be (N, H, W) label maps, got shape {pred.shape}")
    for name, m in (("predicted", pred), ("true", true)):
        bad = np.setdiff1d(np.unique(m), (0, 1, 2))
        if bad.size:
            raise BenchmarkError(
                f"segmentation_metrics: {name} masks hold values {bad[:10].tolist()} outside {{0, 1, 2}}"
            )


def _per_image_iou(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """IoU of boolean (N, H, W) masks per image; both empty -> 1."""
    inter = np.logical_and(p, t).sum(axis=(1, 2))
    union = np.logical_or(p, t).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def _boundary_band(masks: np.ndarray) -> np.ndarray:
    """Boundary IoU's band of boolean (N, H, W) masks: the mask pixels within d of its contour,
    d = round(0.02 x image diagonal), at least 1 px. As in the authors' ``mask_to_boundary``: the
    mask minus its erosion by d iterations of the 3x3 square, outside the image counting as
    background (so the image edge is contour)."""
    h, w = masks.shape[1:]
    d = max(1, int(round(BOUNDARY_DILATION_RATIO * float(np.hypot(h, w)))))
    square = np.zeros((3, 3, 3), bool)
    square[1] = True  # 3x3 within each image, never across images
    return masks & ~ndimage.binary_erosion(masks, structure=square, iterations=d, border_value=0)


def boundary_iou(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-image Boundary IoU (Cheng et al. 2021) of boolean (N, H, W) masks: the IoU of the two
    boundary bands (:func:`_boundary_band`). Unlike mask IoU it does not grow with the object's
    interior, so a large centred cell cannot hide a wrong outline. Both empty -> 1."""
    return _per_image_iou(_boundary_band(p), _boundary_band(t))


def _contour(mask: np.ndarray) -> np.ndarray:
    """Pixels of a boolean (H, W) mask 4-adjacent to background or to the image edge."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hd95(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-image 95th-percentile symmetric Hausdorff distance in pixels of boolean (N, H, W) masks.

    Per direction, the 95th percentile (numpy's linear interpolation) of the Euclidean distances
    from each contour pixel of one mask to the nearest contour pixel of the other; the larger of
    the two directions (MONAI's ``compute_hausdorff_distance(percentile=95)`` convention).
    Empty masks, where no distance exists: both empty -> 0 (nothing to find, nothing found, as
    IoU = 1); one empty -> the image diagonal, the largest distance the image allows (a documented
    cap rather than None: dropping those images would reward a model for missing cells).
    Implemented with scipy's exact Euclidean distance transform: MONAI and medpy compute the same
    thing but would add a large dependency for one function.
    """
    cap = float(np.hypot(*p.shape[1:]))
    out = np.empty(len(p))
    for i, (a, b) in enumerate(zip(p, t)):
        if not a.any() or not b.any():
            out[i] = 0.0 if a.any() == b.any() else cap
            continue
        ca, cb = _contour(a), _contour(b)
        a_to_b = ndimage.distance_transform_edt(~cb)[ca]
        b_to_a = ndimage.distance_transform_edt(~ca)[cb]
        out[i] = max(np.percentile(a_to_b, HD_PERCENTILE), np.percentile(b_to_a, HD_PERCENTILE))
    return out


def per_image_iou(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """IoU of the binary WBC masks (label > 0) of label maps (N, H, W), one per image: what
    :func:`mean_iou` averages, and what the per-cell IoU change of ``benchmark.engine.invariance`` compares."""
    return _per_image_iou(np.asarray(pred) > 0, np.asarray(true) > 0)


def mean_iou(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean per-image IoU of the binary WBC masks (label > 0) of label maps (N >= 1, H, W): the
    ``iou`` of :func:`segmentation_metrics`, alone (what model selection needs every epoch)."""
    return float(per_image_iou(pred, true).mean())


def segmentation_metrics(pred: np.ndarray, true: np.ndarray, score_nucleus: bool = True) -> dict:
    """Mean per-image scores of label maps ``pred`` vs ``true``, both (N, H, W) in {0, 1, 2}.

    ``iou``, ``dice``, ``pixel_accuracy``, ``boundary_iou`` (:func:`boundary_iou`) and ``hd95``
    (:func:`hd95`, pixels, lower is better) use the binary WBC mask (label > 0, nucleus +
    cytoplasm), which every segmenter predicts; ``nucleus_iou`` uses label == 2 and is None
    when ``score_nucleus`` is False (a model without a nucleus output would otherwise score
    0 for a part it does not claim to predict). Both masks empty -> IoU = Dice = Boundary IoU
    = 1, HD95 = 0. No image -> every metric None.
    """
    pred, true = np.asarray(pred), np.asarray(true)
    _check_label_maps(pred, true)
    if pred.shape[0] == 0:
        return {name: None for name in SEGMENTATION_METRICS}
    p, t = pred > 0, true > 0
    inter = np.logical_and(p, t).sum(axis=(1, 2))
    size_sum = p.sum(axis=(1, 2)) + t.sum(axis=(1, 2))
    dice = np.where(size_sum > 0, 2 * inter / np.maximum(size_sum, 1), 1.0)
    nucleus = None
    if score_nucleus:
        nucleus = float(_per_image_iou(pred == MASK_NUCLEUS, true == MASK_NUCLEUS).mean())
    return {
        "iou": mean_iou(pred, true),
        "dice": float(dice.mean()),
        "pixel_accuracy": float((p == t).mean(axis=(1, 2)).mean()),
        "nucleus_iou": nucleus,
        "boundary_iou": float(boundary_iou(p, t).mean()),
        "hd95": float(hd95(p, t).mean()),
    }


@dataclass(frozen=True)
class Predictions:
    """Per-sample outputs of one model on one test set, the input of :func:`evaluate_by_domain`.

    - ``domain``: (N,) str, the domain of each sample (e.g. "zheng_d1" or a stain target);
    - ``label``: (N,) int class index, -1 where the sample has no label;
    - ``proba``: (N, K) class probabilities, or None for a model without a classifier;
    - ``pred_mask``: (N, H, W) uint8 label map {0, 1, 2}, or None for a model without a segmenter;
    - ``true_mask``: (N, H, W) uint8 label map, or None when no sample has a mask;
    - ``mask_valid``: (N,) bool, False where a sample has no true mask (None: all valid);
    - ``score_nucleus``: False when the model predicts only the WBC mask (nucleus IoU n/a).
    """

    domain: np.ndarray
    label: np.ndarray
    proba: np.ndarray | None = None
    pred_mask: np.ndarray | None = None
    true_mask: np.ndarray | None = None
    mask_valid: np.ndarray | None = None
    score_nucleus: bool = True

    def __post_init__(self) -> None:
        n = len(self.domain)
        sizes = {"domain": n, "label": len(self.label)}
        for name in ("proba", "pred_mask", "true_mask", "mask_valid"):
            value = getattr(self, name)
            if value is not None:
                sizes[name] = len(value)
        if len(set(sizes.values())) != 1:
            raise BenchmarkError(f"Predictions: per-sample arrays differ in length: {sizes}")

    def subset(self, keep: np.ndarray) -> Predictions:
        """The predictions of the samples where boolean ``keep`` is True."""

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.asarray(a)[keep]

        return Predictions(
            domain=np.asarray(self.domain)[keep],
            label=np.asarray(self.label)[keep],
            proba=pick(self.proba),
            pred_mask=pick(self.pred_mask),
            true_mask=pick(self.true_mask),
            mask_valid=pick(self.mask_valid),
            score_nucleus=self.score_nucleus,
        )


def _score(preds: Predictions, class_names: tuple[str, ...] | list[str]) -> dict:
    """All metrics of one group of samples; the parts a model or data set lacks are None."""
    if preds.proba is None:
        out = _empty_classification(class_names)
    else:
        out = classification_metrics(np.asarray(preds.label), preds.proba, class_names)
    if preds.pred_mask is None or preds.true_mask is None:
        out.update({name: None for name in SEGMENTATION_METRICS})
    else:
        valid = np.ones(len(preds.domain), bool) if preds.mask_valid is None else np.asarray(preds.mask_valid, bool)
        pred, true = np.asarray(preds.pred_mask), np.asarray(preds.true_mask)
        out.update(segmentation_metrics(pred[valid], true[valid], preds.score_nucleus))
    out["n"] = len(preds.domain)
    return out


def evaluate_by_domain(preds: Predictions, class_names: tuple[str, ...] | list[str] = CLASSES) -> dict:
    """Metrics overall, per domain, and the worst domain per metric.

    Returns ``{"overall": m, "per_domain": {domain: m}, "worst_domain": {metric: {"domain": d,
    "value": v} or None}}`` where ``m`` holds :data:`CLASSIFICATION_METRICS`,
    :data:`SEGMENTATION_METRICS`, ``per_class`` and ``n`` (samples). The worst domain is the
    one with the lowest value, or the highest for a metric in :data:`LOWER_IS_BETTER`; domains
    where the metric is None are skipped (None if no domain has it); ties go to the first domain
    name in sorted order, for determinism.
    """
    if len(preds.domain) == 0:
        raise BenchmarkError("evaluate_by_domain: no predictions to evaluate (0 samples)")
    domains = np.asarray(preds.domain).astype(str)
    per_domain = {d: _score(preds.subset(domains == d), class_names) for d in sorted(set(domains.tolist()))}
    worst: dict = {}
    for metric in CLASSIFICATION_METRICS + SEGMENTATION_METRICS:
        sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        scored = [(m[metric], d) for d, m in per_domain.items() if m[metric] is not None]
        value, domain = min(scored, key=lambda vd: sign * vd[0]) if scored else (None, None)
        worst[metric] = None if domain is None else {"domain": domain, "value": value}
    return {"overall": _score(preds, class_names), "per_domain": per_domain, "worst_domain": worst}


def mask_to_rle(mask: np.ndarray) -> dict:
    """Run-length encoding of a 2-D uint8 label map, row-major, as plain JSON-able ints.

    ``{"shape": [H, W], "values": [v0, v1, ...], "counts": [c0, c1, ...]}``: the flattened
    mask is ``c0`` times ``v0``, then ``c1`` times ``v1``, ... Label maps of one cell are a few
    hundred runs, so per-sample predictions can be stored and re-scored later.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise BenchmarkError(f"mask_to_rle: expected a 2-D uint8 label map, got {mask.dtype} {mask.shape}")
    flat = mask.ravel()
    if flat.size == 0:
        return {"shape": list(mask.shape), "values": [], "counts": []}
    starts = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1))
    counts = np.diff(np.concatenate((starts, [flat.size])))
    return {"shape": list(mask.shape), "values": flat[starts].tolist(), "counts": counts.tolist()}


def rle_to_mask(rle: dict, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Decode :func:`mask_to_rle` output to a uint8 (H, W) label map.

    ``shape`` defaults to the stored one; if given it must agree with it, which catches a
    prediction stored for another image size.
    """
    try:
        stored = tuple(int(s) for s in rle["shape"])
        values = np.asarray(rle["values"], dtype=np.int64)
        counts = np.asarray(rle["counts"], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as exc:
        raise BenchmarkError(f"rle_to_mask: not a run-length encoding (needs shape, values, counts): {exc}") from exc
    if shape is not None and tuple(shape) != stored:
        raise BenchmarkError(f"rle_to_mask: encoding is for shape {stored}, asked to decode to {tuple(shape)}")
    if (
        len(stored) != 2
        or values.shape != counts.shape
        or values.ndim != 1
        or np.any(counts <= 0)
        or np.any((values < 0) | (values > 255))
        or counts.sum() != stored[0] * stored[1]
    ):
        raise BenchmarkError(
            f"rle_to_mask: corrupt encoding for shape {stored}: {values.size} values, {counts.size} counts "
            f"summing to {int(counts.sum())}"
        )
    return np.repeat(values.astype(np.uint8), counts).reshape(stored)
