"""Per-cell invariance of a shifted target: each cell's prediction on its shifted copy against the
same cell's prediction on its unshifted copy (the same ids, untransformed, preprocessed by the job's
stain treatment like the target). A target's mean score can hold while single cells change their
answer; these numbers count the changes, cell by cell.

- ``flip_rate``: share of cells whose arg-max class differs between the two copies (every cell,
  labels not needed);
- ``iou_change``: mean over the cells with a true mask of IoU(shifted, truth) - IoU(unshifted,
  truth), the per-image WBC IoU of ``benchmark.record.metrics`` (negative: the shift costs overlap);
- ``feature_drift``: mean over cells of the cosine distance 1 - cos(f_unshifted, f_shifted) between
  the model's pooled features (``ModelOutput.features``).

Each is None where it does not apply: flip rate without a classifier or on a segmentation-only
task, IoU change without a segmenter, masks or on a classification-only task (the rules of
``score_predictions``), feature drift for a model that gives no features, and all three for a
target without a kind (images as they are: there is no other copy) and for the in-domain target.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from benchmark.engine.batches import ArraySet
from benchmark.engine.train import SetPredictions
from benchmark.engine.treatments import FittedTreatment
from benchmark.record.metrics import per_image_iou
from benchmark.record.vocabulary import IN_DOMAIN, INVARIANCE_METRICS
from core.errors import BenchmarkError
from core.sample import Sample
from protocols.split import TestTarget


def _pair(name: str, unshifted: np.ndarray, shifted: np.ndarray) -> None:
    if unshifted.shape != shifted.shape:
        raise BenchmarkError(f"{name}: unshifted {unshifted.shape} and shifted {shifted.shape} copies differ in shape")


def flip_rate(unshifted_proba: np.ndarray, shifted_proba: np.ndarray) -> float | None:
    """Share of cells whose arg-max class changes, from (N, K) probabilities; None for no cell."""
    _pair("flip_rate", unshifted_proba, shifted_proba)
    if len(shifted_proba) == 0:
        return None
    return float(np.mean(unshifted_proba.argmax(1) != shifted_proba.argmax(1)))


def iou_change(unshifted_masks: np.ndarray, shifted_masks: np.ndarray, true_masks: np.ndarray,
               mask_valid: np.ndarray) -> float | None:
    """Mean of IoU(shifted, truth) - IoU(unshifted, truth) over the cells with a valid true mask, from
    (N, H, W) label maps; None when no cell has one."""
    _pair("iou_change", unshifted_masks, shifted_masks)
    valid = np.asarray(mask_valid, bool)
    if not valid.any():
        return None
    truth = true_masks[valid]
    return float(np.mean(per_image_iou(shifted_masks[valid], truth) - per_image_iou(unshifted_masks[valid], truth)))


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - cos(a_i, b_i) per row of (N, D) arrays, in float64. A zero vector has no direction: two
    zero vectors are at distance 0 (the same point), a zero and a non-zero one at 1 (cos taken as 0)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    cos = np.einsum("nd,nd->n", a, b) / np.maximum(na * nb, np.finfo(np.float64).tiny)
    both_zero = (na == 0) & (nb == 0)
    return np.where(both_zero, 0.0, 1.0 - np.clip(cos, -1.0, 1.0))


def feature_drift(unshifted_features: np.ndarray, shifted_features: np.ndarray) -> float | None:
    """Mean cosine distance between the (N, D) features of the two copies; None for no cell."""
    _pair("feature_drift", unshifted_features, shifted_features)
    if len(shifted_features) == 0:
        return None
    return float(cosine_distance(unshifted_features, shifted_features).mean())


def invariance_scores(unshifted: SetPredictions | None, shifted: SetPredictions, task: str) -> dict:
    """The three metrics of a shifted target against its unshifted copy (None: there is none, all n/a)."""
    out: dict = {m: None for m in INVARIANCE_METRICS}
    if unshifted is None:
        return out
    if list(unshifted.ids) != list(shifted.ids):
        raise BenchmarkError("invariance: the shifted and unshifted copies hold different cells")
    if unshifted.proba is not None and shifted.proba is not None and task != "segmentation":
        out["flip_rate"] = flip_rate(unshifted.proba, shifted.proba)
    if unshifted.pred_masks is not None and shifted.pred_masks is not None and task != "classification":
        out["iou_change"] = iou_change(unshifted.pred_masks, shifted.pred_masks, shifted.true_masks, shifted.mask_valid)
    if unshifted.features is not None and shifted.features is not None:
        out["feature_drift"] = feature_drift(unshifted.features, shifted.features)
    return out


def has_unshifted_copy(target: TestTarget) -> bool:
    """Whether ``target`` is a shifted copy of cells the job also has as they are (a kind applied to them)."""
    return target.kind is not None and target.name != IN_DOMAIN


class UnshiftedCopies:
    """One model's predictions on the unshifted copies of the cells its shifted targets hold, by tuple
    of ids, each computed at most once: every shifted target of a cross_stain split holds the in-domain
    target's ids, so the in-domain predictions serve them all. One instance per model and treatment
    (a job, or one job's ``evaluate``); ``targets`` are those it will score, so only the predictions a
    shifted target needs are kept."""

    def __init__(self, targets: Sequence[TestTarget], samples_of: Callable[[tuple[str, ...]], list[Sample]],
                 treatment: FittedTreatment) -> None:
        """``samples_of``: the untransformed samples of some ids (the job's own), asked only for ids
        that no target without a kind holds."""
        self._wanted = {tuple(t.ids) for t in targets if has_unshifted_copy(t)}
        self._samples_of = samples_of
        self._treatment = treatment
        self._kept: dict[tuple[str, ...], SetPredictions] = {}

    def predictions(self, ids: Sequence[str], predict_set: Callable[[ArraySet], SetPredictions],
                    data: ArraySet | None = None) -> SetPredictions:
        """``predict_set`` of the unshifted cells ``ids``, or what it gave before: ``data`` is their
        preprocessed images when the caller has them (a target without a kind), else they are built."""
        key = tuple(ids)
        if key in self._kept:
            return self._kept[key]
        if data is None:
            data = ArraySet.from_samples(self._samples_of(key), "unshifted copy").map_images(self._treatment.preprocess)
        pred = predict_set(data)
        if key in self._wanted:
            self._kept[key] = pred
        return pred
