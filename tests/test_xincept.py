"""XIncept-ALL's second stage: XGBoost fitted by ``after_training`` drives eval-mode predictions.

CPU, 64 px toy smears from tests/test_models.py (the registry-driven tests cover the contract).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import BenchmarkError
from benchmark.engine.explain import can_explain
from models.registry import create_model
from test_models import K, SIZE, toy_batch  # pytest puts tests/ on sys.path (no __init__.py)

CPU = torch.device("cpu")
TRAIN_LABELS = np.array([0, 1, 2] * 4)
"""Classes 3 and 4 are absent from training."""


def _uint8_images(n: int, seed: int) -> np.ndarray:
    return (toy_batch(n, seed=seed)["image"].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("xincept_all", num_classes=K, img_size=SIZE)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return _uint8_images(len(TRAIN_LABELS), seed=1)


def _x(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def test_xgboost_drives_eval_predictions_after_fitting(model, images) -> None:
    x = _x(images[:4])
    assert model.net_size == 75  # 64 px is below InceptionV3's minimum
    with torch.no_grad():
        linear = model.eval()(x).class_logits
        assert torch.allclose(linear, model.classifier(model.features(x)))  # unfitted: the linear head
        labels = np.concatenate([TRAIN_LABELS, [-1, -1]])
        model.after_training(np.concatenate([images, images[:2]]), labels, seed=0, device=CPU)
        assert model.training is False and list(model.xgb_classes) == [0, 1, 2]
        logits = model(x).class_logits
        expected = model.xgb.predict_proba(model.features(x).numpy())
        model.train()  # training mode keeps the linear head (BatchNorm uses batch statistics here)
        assert torch.equal(model(x).class_logits, model.classifier(model.features(x)))
        model.eval()
    proba = logits.exp()
    assert logits.shape == (4, K) and torch.isfinite(logits).all()
    assert torch.allclose(proba.sum(1), torch.ones(4), atol=1e-5)
    assert (proba[:, 3:] < 1e-9).all()
    assert np.allclose(proba[:, :3].numpy(), expected, atol=1e-6)
    assert not torch.allclose(proba, torch.softmax(linear, 1), atol=1e-3)
    assert not can_explain(model)  # XGBoost has no gradient for Grad-CAM


def test_xgboost_fit_is_deterministic_for_a_seed(model, images) -> None:
    x = _x(images[:4])
    runs = []
    for _ in range(2):
        model.after_training(images, TRAIN_LABELS, seed=3, device=CPU)
        with torch.no_grad():
            runs.append(model.eval()(x).class_logits)
    assert torch.equal(runs[0], runs[1])


def test_fitted_xgboost_travels_in_the_state_dict(model, images) -> None:
    """Checkpoints are tensors only: the booster rides in ``_extra_state`` and a rebuilt model scores
    exactly as the fitted one; an unfitted model's state restores the linear head."""
    x = _x(images[:4])
    model.after_training(images, TRAIN_LABELS, seed=3, device=CPU)
    state = model.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values()) and state["_extra_state"].numel() > 0
    torch.manual_seed(1)
    rebuilt = create_model("xincept_all", num_classes=K, img_size=SIZE)
    rebuilt.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x).class_logits, model.eval()(x).class_logits)
    assert list(rebuilt.xgb_classes) == [0, 1, 2]
    fresh = create_model("xincept_all", num_classes=K, img_size=SIZE)
    rebuilt.load_state_dict(fresh.state_dict())
    assert rebuilt.xgb is None and rebuilt.xgb_classes is None


@pytest.mark.parametrize("labels", [np.zeros(12, int), np.full(12, -1), np.array([2] * 6 + [-1] * 6)])
def test_fewer_than_two_training_classes_is_a_clear_error(model, images, labels) -> None:
    with pytest.raises(BenchmarkError, match="xincept_all: XGBoost needs .* at least 2 classes"):
        model.after_training(images, labels, seed=0, device=CPU)
