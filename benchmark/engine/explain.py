"""Explainability (SPEC item 10): Grad-CAM of the class decision at the fused layer (captum),
the learned saliency map S, and a per-image saliency-consistency number.

Saliency consistency = share of the (ReLU'd) Grad-CAM energy that falls inside the ground-truth
WBC mask: 1 means the decision looked only at the cell, the WBC area fraction is what a
uniform map would get. It is None for an image without a mask or with an all-zero map, and for
models without a classifier or without a ``fused_layer``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam

from benchmark.engine.batches import ArraySet, TensorSet, eval_batches
from models.base import WBCModel


@dataclass
class Explanations:
    """Per image: Grad-CAM (N,H,W) in [0,1] at input resolution, S upsampled (N,H,W) or None,
    predicted class (N,), and saliency consistency (N,) with NaN where not applicable."""

    cam: np.ndarray
    saliency: np.ndarray | None
    predicted: np.ndarray
    consistency: np.ndarray


def can_explain(model: WBCModel) -> bool:
    return model.has_classifier and getattr(model, "fused_layer", None) is not None


def explain(model: WBCModel, data: ArraySet, device: torch.device, batch_size: int = 32) -> Explanations:
    """Grad-CAM for the predicted class of each image, at ``model.fused_layer``."""
    model.eval()
    gradcam = LayerGradCam(lambda x: model(x).class_logits, model.fused_layer)
    cams, sals, preds = [], [], []
    for batch in eval_batches(TensorSet.upload(data, device), batch_size):
        x = batch["image"]
        with torch.no_grad():
            out = model(x)
        pred = out.class_logits.argmax(1)
        cam = gradcam.attribute(x, target=pred, relu_attributions=True).detach()
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        cam = cam / cam.flatten(1).amax(1).clamp(min=1e-12)[:, None, None]
        cams.append(cam.cpu().numpy())
        preds.append(pred.cpu().numpy())
        if out.saliency is not None:
            s = F.interpolate(out.saliency.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
            sals.append(s[:, 0].cpu().numpy())
    cam = np.concatenate(cams)
    return Explanations(cam, np.concatenate(sals) if sals else None, np.concatenate(preds),
                        saliency_consistency(cam, data.masks, data.mask_valid))


def saliency_consistency(cam: np.ndarray, masks: np.ndarray, mask_valid: np.ndarray) -> np.ndarray:
    """Share of Grad-CAM energy inside the WBC mask per image; NaN where it does not apply."""
    energy = cam.reshape(len(cam), -1).sum(1)
    inside = (cam * (masks > 0)).reshape(len(cam), -1).sum(1)
    ok = mask_valid & (energy > 0)
    return np.where(ok, inside / np.where(energy > 0, energy, 1.0), np.nan)
