"""The output contract every model honours, and the base class that owns the loss.

Models take ``x``: float RGB in [0, 1], shape (B, 3, H, W); any normalization or colour-space
conversion (HSV for ResNeXt-CC) happens inside the model so that the data pipeline is the
same for all of them. A batch is a dict:

- ``image``: (B, 3, H, W) float in [0, 1]
- ``mask``:  (B, H, W) long in {0 background, 1 cytoplasm, 2 nucleus}
- ``mask_valid``: (B,) bool, False where the sample has no mask
- ``label``: (B,) long, -1 where the sample has no label
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class ModelOutput:
    """``class_logits`` (B, K) or None; ``mask_logits`` (B, C, H, W) at input resolution or None
    (C = 1: WBC logit; C = 2: WBC and nucleus logits); ``saliency`` (B, 1, h, w) in [0, 1] or None;
    ``features`` (B, D) float or None: the model's pooled image representation, what feature drift
    (``benchmark.engine.invariance``) compares between a cell and its shifted copy."""

    class_logits: torch.Tensor | None
    mask_logits: torch.Tensor | None
    saliency: torch.Tensor | None = None
    features: torch.Tensor | None = None


class WBCModel(nn.Module):
    """Base class: subclasses implement ``forward`` and ``loss``.

    ``has_classifier`` / ``has_segmenter`` tell evaluation which metrics apply; a metric a
    model cannot produce is reported as not applicable.
    """

    has_classifier: bool = True
    has_segmenter: bool = True

    def forward(self, x: torch.Tensor) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def loss(self, out: ModelOutput, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the total loss and its named parts (floats, for logging)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def set_class_weights(self, weights: torch.Tensor) -> None:
        """Class weights from the training split (inverse frequency); called by the engine."""
        self.register_buffer("class_weights", weights.float(), persistent=False)

    def after_training(self, images: np.ndarray, labels: np.ndarray, seed: int, device: torch.device,
                       masks: np.ndarray | None = None, mask_valid: np.ndarray | None = None) -> None:
        """Called once by the engine with the training split: the images (N, H, W, 3) uint8, as
        preprocessed by the job's stain treatment but not augmented, their labels (-1 = none), masks
        (N, H, W) uint8 and mask_valid (N,) bool. A trainable model gets it after the selected epoch's
        weights are restored, for a second, gradient-free stage (XIncept-ALL fits XGBoost on its
        learned features); a model without trainable parameters gets it before validation is scored,
        in place of training (the floors of ``models.floors`` fit their statistics here). The default
        does nothing."""
