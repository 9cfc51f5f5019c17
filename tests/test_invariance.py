"""Per-cell invariance (``benchmark.engine.invariance``): each metric against a hand count, where each
does not apply, the features contract, and a smoke job and evaluation that fill the metrics while
predicting the unshifted cells once."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import torch
from torch import nn

import benchmark.engine.job as job_mod
from benchmark.engine.budgets import get_budget
from benchmark.engine.evaluate import evaluate_results
from benchmark.engine.invariance import cosine_distance, feature_drift, flip_rate, invariance_scores, iou_change
from benchmark.engine.plan import Sweep
from benchmark.engine.sweep import run_sweep
from benchmark.engine.train import SetPredictions
from benchmark.record.jobs import completed_job_dirs
from benchmark.record.vocabulary import EVALUATIONS_DIR, IN_DOMAIN, INVARIANCE_METRICS
from core.errors import BenchmarkError
from core.sample import CLASSES
from models import create_model, list_models
from models.base import ModelOutput, WBCModel
from models.contract import check_output_contract
from models.registry import ModelInfo, model_info

K = len(CLASSES)


def _onehot(classes: list[int]) -> np.ndarray:
    return np.eye(K)[classes]


# ---- the three numbers, by hand -------------------------------------------------------------------

def test_flip_rate_counts_changed_arg_max_classes():
    assert flip_rate(_onehot([0, 1, 2, 3]), _onehot([0, 1, 2, 4])) == 0.25  # 4 cells, 1 flip
    assert flip_rate(_onehot([0, 1]), _onehot([1, 0])) == 1.0
    confident, hesitant = _onehot([2]), np.array([[0.1, 0.1, 0.4, 0.3, 0.1]])
    assert flip_rate(confident, hesitant) == 0.0  # a lower confidence in the same class is no flip
    assert flip_rate(np.zeros((0, K)), np.zeros((0, K))) is None


def test_iou_change_is_the_mean_per_cell_difference_over_cells_with_a_mask():
    truth = np.array([[[1, 1], [0, 0]], [[0, 0], [2, 2]], [[1, 1], [1, 1]]], np.uint8)
    unshifted = np.array([[[1, 1], [0, 0]], [[2, 0], [0, 0]], [[0, 0], [0, 0]]], np.uint8)
    shifted = np.array([[[1, 0], [0, 0]], [[0, 0], [1, 2]], [[1, 1], [1, 1]]], np.uint8)
    valid = np.array([True, True, False])
    # cell 0: IoU 1 -> 1/2 (-0.5); cell 1: 0/3 -> 2/2 (+1); cell 2 has no true mask: left out
    assert iou_change(unshifted, shifted, truth, valid) == pytest.approx(0.25)
    assert iou_change(unshifted, unshifted, truth, valid) == 0.0
    assert iou_change(unshifted, shifted, truth, np.zeros(3, bool)) is None


def test_feature_drift_is_the_mean_cosine_distance():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0], [1.0, 1.0]])
    b = np.array([[0.0, 5.0], [0.0, 1.0], [-3.0, -4.0], [2.0, 2.0]])
    assert cosine_distance(a, b) == pytest.approx([1.0, 0.0, 2.0, 0.0])  # orthogonal, same, opposite, scaled
    assert feature_drift(a[:1], b[:1]) == pytest.approx(1.0)
    assert feature_drift(a, b) == pytest.approx(0.75)
    zero = np.zeros((1, 2))
    assert cosine_distance(zero, zero) == [0.0] and cosine_distance(zero, a[:1]) == [1.0]
    assert feature_drift(np.zeros((0, 3)), np.zeros((0, 3))) is None


def test_copies_of_different_shapes_are_an_error():
    with pytest.raises(BenchmarkError, match="differ in shape"):
        flip_rate(_onehot([0, 1]), _onehot([0]))


# ---- when each applies ----------------------------------------------------------------------------

def _preds(classes: list[int] | None, masks: np.ndarray | None, features: np.ndarray | None,
           ids: tuple[str, ...] = ("a", "b")) -> SetPredictions:
    n = len(ids)
    truth = np.ones((n, 2, 2), np.uint8)
    return SetPredictions(list(ids), ["d"] * n, np.zeros(n, int), None if classes is None else _onehot(classes),
                          masks, truth, np.ones(n, bool), features=features)


def test_invariance_scores_apply_as_the_model_and_task_allow():
    full = _preds([0, 1], np.ones((2, 2, 2), np.uint8), np.eye(2))
    shifted = _preds([0, 0], np.zeros((2, 2, 2), np.uint8), np.eye(2)[::-1])
    assert invariance_scores(full, shifted, "multitask") == {"flip_rate": 0.5, "iou_change": -1.0, "feature_drift": 1.0}
    assert invariance_scores(None, shifted, "multitask") == dict.fromkeys(INVARIANCE_METRICS)
    seg_only = invariance_scores(full, shifted, "segmentation")
    assert seg_only["flip_rate"] is None and seg_only["iou_change"] == -1.0
    cls_only = invariance_scores(full, shifted, "classification")
    assert cls_only["iou_change"] is None and cls_only["flip_rate"] == 0.5
    no_heads = invariance_scores(_preds(None, None, None), _preds(None, None, None), "multitask")
    assert no_heads == dict.fromkeys(INVARIANCE_METRICS)
    with pytest.raises(BenchmarkError, match="different cells"):
        invariance_scores(full, _preds([0, 1], None, None, ids=("a", "c")), "multitask")


# ---- the features contract ------------------------------------------------------------------------

class _Featured(WBCModel):
    """A one-conv segmenter whose features are what a test asks for."""

    has_classifier = False

    def __init__(self, fault: str = "") -> None:
        super().__init__()
        self.fault, self.conv = fault, nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        logits = self.conv(x)
        pooled = logits.mean(dim=(2, 3))
        features = {"": pooled, "none": None, "map": logits[:, :, :1, :1], "nan": pooled * float("nan"),
                    "eval_none": pooled if self.training else None, "int": pooled.long()}[self.fault]
        return ModelOutput(class_logits=None, mask_logits=logits, features=features)

    def loss(self, out: ModelOutput, batch: dict) -> tuple[torch.Tensor, dict]:
        total = out.mask_logits.mean()
        return total, {"total": total.item()}


NAME = "tests.test_invariance:featured"
DECLARES = ModelInfo(("segmenter",), features=True)


@pytest.mark.parametrize("fault, info, expected", [
    ("none", DECLARES, "its metadata declares features but forward (training mode) gives none"),
    ("eval_none", DECLARES, "its metadata declares features but forward (eval mode) gives none"),
    ("map", DECLARES, "features (training mode) is a float32 tensor (2, 2, 1, 1), expected a float tensor (2, D)"),
    ("int", DECLARES, "features (training mode) is a int64 tensor (2, 2), expected a float tensor (2, D)"),
    ("nan", DECLARES, "features (training mode) hold non-finite values"),
    ("", ModelInfo(("segmenter",)), "forward (training mode) gives features but its metadata declares none"),
    ("eval_none", None, "its metadata declares features but forward (eval mode) gives none"),
])
def test_features_that_break_the_declaration_are_a_clear_error(fault: str, info, expected: str):
    with pytest.raises(BenchmarkError) as err:
        check_output_contract(_Featured(fault), NAME, 16, info)
    message = str(err.value)
    assert f"model '{NAME}'" in message and expected in message and "docs/plugins.md" in message, message


def test_features_as_declared_pass_the_contract():
    check_output_contract(_Featured(), NAME, 16, DECLARES)
    check_output_contract(_Featured("none"), NAME, 16, ModelInfo(("segmenter",)))
    check_output_contract(_Featured(), NAME, 16, None)  # no metadata: the training-mode output declares them
    with pytest.raises(BenchmarkError, match="features must be True or False"):
        ModelInfo(("segmenter",), features="yes")


def test_every_trainable_built_in_declares_features_and_the_rest_none():
    """The contract (tests/test_model_metadata.py runs it on every model) holds each to its declaration."""
    without = {name for name in list_models() if not model_info(name).features}
    assert without == {"classical", "constant_mask", "majority_class"}


def test_features_expose_a_computed_tensor_without_changing_the_outputs():
    torch.manual_seed(0)
    model = create_model("sg_cldff", num_classes=K, img_size=64).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        assert torch.equal(out.class_logits, model.classifier(out.features))
    unet = create_model("unet", num_classes=K, img_size=64).eval()
    with torch.no_grad():
        assert unet(x).features.shape == (2, 256)


# ---- a smoke job and an evaluation ----------------------------------------------------------------

PROTOCOL = "cross_stain_synthetic"


def _counting(sizes: list[int]):
    """``predict`` as the job calls it, noting the size of every set it predicts."""
    real = job_mod.predict

    def counting(model, data, device, *args, **kwargs):
        sizes.append(len(data))
        return real(model, data, device, *args, **kwargs)

    return counting


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, list[int]]:
    """One SG-CLDFF smoke job of the cross_stain protocol, with the sizes of the sets scoring predicted."""
    out, sizes = tmp_path_factory.mktemp("invariance"), []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(job_mod, "predict", _counting(sizes))
        run_sweep(Sweep(PROTOCOL, ["sg_cldff"], [0], get_budget("smoke"), out), workers=1, log=lambda _: None,
                  device=torch.device("cpu"))
    return out, sizes


def test_a_job_fills_the_metrics_for_shifted_targets_and_predicts_the_in_domain_cells_once(swept):
    out, sizes = swept
    (job,) = completed_job_dirs(out)
    targets = json.loads((job / "metrics.json").read_text())["targets"]
    assert len(sizes) == len(targets), "one prediction per target: the in-domain predictions are reused"
    assert all(targets[IN_DOMAIN]["metrics"][m] is None for m in INVARIANCE_METRICS)
    shifted = [t for name, t in targets.items() if name != IN_DOMAIN]
    assert shifted and all(t["transform"] is not None for t in shifted)
    for t in shifted:
        values = [t["metrics"][m] for m in INVARIANCE_METRICS]
        assert all(v is not None and np.isfinite(v) for v in values), t
        assert 0 <= t["metrics"]["flip_rate"] <= 1 and 0 <= t["metrics"]["feature_drift"] <= 2


def test_evaluate_compares_new_kinds_with_one_prediction_of_the_unshifted_cells(swept, tmp_path, monkeypatch):
    folder = Path(shutil.copytree(swept[0], tmp_path / "res"))
    sizes: list[int] = []
    monkeypatch.setattr(job_mod, "predict", _counting(sizes))
    run = evaluate_results(folder, ["gamma"], log=lambda _: None, device="cpu")
    assert len(run.scored) == 5 and len(sizes) == 5 + 1, sizes  # five levels, the unshifted cells once
    (job,) = completed_job_dirs(folder)
    for _, _, name in run.scored:
        result = json.loads((job / EVALUATIONS_DIR / f"{quote(name, safe='')}.json").read_text())["result"]
        assert all(np.isfinite(result["metrics"][m]) for m in INVARIANCE_METRICS), result
