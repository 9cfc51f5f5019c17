"""Training-free reference models ("floors"): what a score is worth when the image is ignored.

The crops of every domain are centred on the WBC, which spans about 2/3 of the crop, so a mask
that never looks at the image already scores a high IoU; a classifier that always answers with
the training prior already scores the majority share. Both are fitted on the split's training
data by the engine's :meth:`~models.base.WBCModel.after_training` hook (called before validation
for models without trainable parameters), keep what they fitted in buffers (so the state_dict
carries it), and have a zero loss. Their logits are float32 with autocast off, so a GPU's bf16
autocast cannot change a floor.
"""
from __future__ import annotations

import numpy as np
import torch

from core.sample import MASK_NUCLEUS
from core.errors import BenchmarkError
from models.base import ModelOutput, WBCModel
from models.registry import register_model

LOGIT_EPS = 1e-6
"""Clamp of the mean mask before its log-odds: pixels no (or every) training mask covers get a
finite logit of about -/+13.8 instead of -/+inf."""
PRIOR_FLOOR = 1e-12
"""Probability of classes absent from the training labels, so the log-prior stays finite."""


class _ReferenceModel(WBCModel):
    """Shared plumbing: no parameters, so the engine fits the buffers instead of training."""

    def loss(self, out: ModelOutput, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Nothing to learn: a zero loss that needs no backward pass."""
        logits = out.mask_logits if out.mask_logits is not None else out.class_logits
        return torch.zeros((), device=logits.device), {"total": 0.0}


class ConstantMask(_ReferenceModel):
    """The mean training mask, thresholded at 0.5, whatever the image.

    ``mean_mask`` (2, S, S) holds the pixelwise mean over the training samples that have a mask
    of (mask > 0) (the WBC, channel 0) and of (mask == nucleus) (channel 1, so nucleus IoU is
    defined); the output logits are its log-odds, positive exactly where more than half of the
    training masks cover the pixel (a tie at 0.5 is background). Before fitting the mean is 0,
    an empty mask. Decision: no resizing; the training masks and the input must be at the model's
    ``img_size``, as the runner loads every crop at the budget's size.
    """

    has_classifier = False

    def __init__(self, img_size: int) -> None:
        super().__init__()
        self.register_buffer("mean_mask", torch.zeros(2, img_size, img_size))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        if tuple(x.shape[-2:]) != tuple(self.mean_mask.shape[-2:]):
            raise BenchmarkError(f"constant_mask: input {tuple(x.shape[-2:])} differs from the fitted mask size "
                                 f"{tuple(self.mean_mask.shape[-2:])}")
        with torch.autocast(x.device.type, enabled=False):
            logits = torch.logit(self.mean_mask.float(), eps=LOGIT_EPS)
        return ModelOutput(class_logits=None, mask_logits=logits.unsqueeze(0).expand(x.shape[0], -1, -1, -1))

    def after_training(self, images: np.ndarray, labels: np.ndarray, seed: int, device: torch.device,
                       masks: np.ndarray | None = None, mask_valid: np.ndarray | None = None) -> None:
        """Fit ``mean_mask`` on the training samples that have a mask."""
        if masks is None or mask_valid is None:
            raise BenchmarkError("constant_mask: fitting needs the training masks and their validity")
        valid = np.asarray(masks)[np.asarray(mask_valid, bool)]
        if len(valid) == 0:
            raise BenchmarkError(f"constant_mask: none of the {len(masks)} training samples has a mask")
        if valid.shape[1:] != tuple(self.mean_mask.shape[1:]):
            raise BenchmarkError(f"constant_mask: training masks are {valid.shape[1:]}, the model is built for "
                                 f"{tuple(self.mean_mask.shape[1:])}")
        mean = np.stack([(valid > 0).mean(axis=0), (valid == MASK_NUCLEUS).mean(axis=0)])
        self.mean_mask.copy_(torch.from_numpy(mean))


class MajorityClass(_ReferenceModel):
    """The class frequencies of the labelled training samples, for every image.

    ``prior`` (K,) is uniform before fitting. Its arg-max is the majority class (the lowest index
    on a tie), and the probabilities are the prior itself, so AUC is 0.5 (constant scores) and
    ECE measures how far the prior is from the test set's majority share.
    """

    has_segmenter = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("prior", torch.full((num_classes,), 1.0 / num_classes))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        with torch.autocast(x.device.type, enabled=False):
            logits = torch.log(self.prior.float().clamp(min=PRIOR_FLOOR))
        return ModelOutput(class_logits=logits.unsqueeze(0).expand(x.shape[0], -1), mask_logits=None)

    def after_training(self, images: np.ndarray, labels: np.ndarray, seed: int, device: torch.device,
                       masks: np.ndarray | None = None, mask_valid: np.ndarray | None = None) -> None:
        """Fit ``prior`` on the labelled training samples (label -1 = none)."""
        y = np.asarray(labels)
        y = y[y >= 0]
        k = len(self.prior)
        if y.size == 0:
            raise BenchmarkError(f"majority_class: none of the {len(labels)} training samples has a label")
        if y.max() >= k:
            raise BenchmarkError(f"majority_class: training label {int(y.max())} outside 0..{k - 1}")
        counts = np.bincount(y, minlength=k)
        self.prior.copy_(torch.from_numpy(counts / counts.sum()))


@register_model("constant_mask", heads=("segmenter",))
def constant_mask(num_classes: int = 5, img_size: int = 224) -> ConstantMask:
    """Segmentation floor: the mean training mask thresholded at 0.5, image ignored; no classifier."""
    return ConstantMask(img_size)


@register_model("majority_class", heads=("classifier",))
def majority_class(num_classes: int = 5, img_size: int = 224) -> MajorityClass:
    """Classification floor: the training label prior for every image; no segmenter."""
    return MajorityClass(num_classes)
