"""XIncept-ALL baseline (2025): InceptionV3 and Xception features fused, classified by XGBoost.

Two stages: the extractor is trained end to end with a linear head by the engine, then
``after_training`` fits an XGBoost classifier on the fused features of the training images.
"""
from __future__ import annotations

import json

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD
from torch import nn

from core.errors import BenchmarkError
from models.base import ModelOutput
from models.baselines_cls import _ClassifierBase
from models.losses import loss_parts_as_floats
from models.pretrained import create_timm_backbone
from models.registry import register_model

MIN_NET_SIZE = 75
"""InceptionV3's smallest input (its stem and grid reductions leave 1x1 at 75 px, nothing below)."""
FUSION_DIM = 512
"""Width of the feature fusion block, the vector XGBoost sees; the abstract gives no size."""
XGB_PARAMS: dict[str, Any] = {
    "n_estimators": 200, "max_depth": 4, "learning_rate": 0.1, "tree_method": "hist", "n_jobs": 1,
}
FEATURE_BATCH = 32
PROBA_FLOOR = 1e-12
"""Probability given to classes XGBoost never saw, so the log-probabilities stay finite."""


class XInceptAll(_ClassifierBase):
    """XIncept-ALL: InceptionV3 || Xception pooled features -> fusion block -> linear head, then XGBoost.

    Decisions / deviations (only the abstract is available):

    - Backbones: timm ``inception_v3`` (no aux head) and ``legacy_xception`` (Chollet's original
      Xception; timm's ``xception41/65/71`` are DeepLab's aligned variants), random init unless
      ``pretrained`` (see ``models.pretrained``; the paper starts from ImageNet weights, this
      benchmark trains from scratch by default), their ImageNet heads removed: each gives a
      2048-d globally average-pooled vector. Fusion block and linear head are always random init.
    - "Feature fusion blocks": concat (4096-d) -> Linear(4096, 512) + BatchNorm1d + ReLU; the
      512-d output is the fused feature (the output's ``features``, in both modes). A linear head
      on it is what the engine trains (class-weighted CE, label -1 ignored) and what picks the best
      epoch on validation.
    - Input: RGB [0, 1] normalized inside the model with timm's Inception mean/std (0.5, 0.5) (both
      backbones' ImageNet weights expect [-1, 1], not the ResNet mean/std), then resized bilinearly
      to max(img_size, 75) px, InceptionV3's minimum: 64 px inputs (cpu budget) become 75 px.
    - XGBoost: fitted once by ``after_training`` (after the best epoch is restored) on the fused
      features of the labelled training images, un-augmented, eval mode; ``XGBClassifier`` with
      200 trees, depth 4, learning rate 0.1, hist trees, ``n_jobs=1``, ``random_state=seed``
      (deterministic); sample weights = the engine's class weights (mirroring the weighted CE).
      Labels are remapped to the classes present; absent classes get probability ~0 (1e-12).
      Fewer than 2 labelled classes in training is a ``BenchmarkError`` (nothing to fit).
    - After fitting, eval-mode ``class_logits`` are log XGBoost probabilities (so the engine's
      softmax returns them); train mode, and eval mode before fitting (validation during
      training), use the linear head. The XGBoost model is not in the state_dict: a model rebuilt
      from saved weights predicts with the linear head until ``after_training`` runs again.
    - The abstract's data auto-augmentation is not reproduced; the engine's shared augmentation is
      used, as for every model.
    - Grad-CAM: not offered (``fused_layer = None``): the scored decision is XGBoost's, which has
      no gradient; a Grad-CAM of the linear head would explain a classifier that is not scored.
    """

    fused_layer = None

    def __init__(self, num_classes: int = 5, img_size: int = 224, *, pretrained: bool = False) -> None:
        super().__init__(num_classes)
        self.net_size = max(img_size, MIN_NET_SIZE)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_INCEPTION_MEAN).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_INCEPTION_STD).view(1, 3, 1, 1))
        self.inception = create_timm_backbone("inception_v3", pretrained, num_classes=0)
        self.xception = create_timm_backbone("legacy_xception", pretrained, num_classes=0)
        width = self.inception.num_features + self.xception.num_features
        self.fusion = nn.Sequential(nn.Linear(width, FUSION_DIM), nn.BatchNorm1d(FUSION_DIM), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(FUSION_DIM, num_classes)
        self.xgb: Any = None  # xgboost.XGBClassifier once fitted (xgboost is imported lazily)
        self.xgb_classes: np.ndarray | None = None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Fused (B, FUSION_DIM) features of RGB [0, 1] images of any size."""
        x = (x - self.pixel_mean) / self.pixel_std
        if tuple(x.shape[-2:]) != (self.net_size, self.net_size):
            x = F.interpolate(x, size=(self.net_size, self.net_size), mode="bilinear", align_corners=False)
        return self.fusion(torch.cat([self.inception(x), self.xception(x)], dim=1))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        f = self.features(x)
        if self.training or self.xgb is None:
            return ModelOutput(class_logits=self.classifier(f), mask_logits=None, features=f)
        return ModelOutput(class_logits=self.xgb_log_proba(f), mask_logits=None, features=f)

    def xgb_log_proba(self, features: torch.Tensor) -> torch.Tensor:
        """(B, num_classes) log XGBoost probabilities; classes absent from training get PROBA_FLOOR."""
        part = self.xgb.predict_proba(features.detach().float().cpu().numpy())
        proba = np.full((len(part), self.num_classes), PROBA_FLOOR, dtype=np.float32)
        proba[:, self.xgb_classes] = np.maximum(part, PROBA_FLOOR)
        return torch.from_numpy(np.log(proba)).to(features.device)

    def loss(self, out: ModelOutput, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        ce = self._weighted_ce(out.class_logits, batch["label"])
        return ce, loss_parts_as_floats({"ce": ce, "total": ce})

    @torch.no_grad()
    def extract(self, images: np.ndarray, device: torch.device) -> np.ndarray:
        """Fused features (N, FUSION_DIM) of N >= 1 uint8 (N, H, W, 3) images, in batches; leaves the
        model in eval mode. On a GPU under the bf16 autocast the engine predicts with, so that fit and
        test features come from the same arithmetic."""
        self.eval()
        out = []
        for start in range(0, len(images), FEATURE_BATCH):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + FEATURE_BATCH])).to(device)
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out.append(self.features(x).float().cpu().numpy())
        return np.concatenate(out)

    def after_training(self, images: np.ndarray, labels: np.ndarray, seed: int, device: torch.device,
                       masks: np.ndarray | None = None, mask_valid: np.ndarray | None = None) -> None:
        """Fit XGBoost on the fused features of the labelled training images (see class docstring)."""
        from xgboost import XGBClassifier  # imported here: ~1 s that listing models should not pay

        labelled = labels >= 0
        classes = np.unique(labels[labelled])
        if len(classes) < 2:
            raise BenchmarkError(
                f"xincept_all: XGBoost needs labelled training images of at least 2 classes, got "
                f"{len(classes)} class(es) {classes.tolist()} among {int(labelled.sum())} labelled of {len(labels)} images"
            )
        y = labels[labelled]
        features = self.extract(images[labelled], device)
        weights = self.class_weights.detach().cpu().numpy()[y]
        xgb = XGBClassifier(**XGB_PARAMS, random_state=seed)
        xgb.fit(features, np.searchsorted(classes, y), sample_weight=weights)
        self.xgb, self.xgb_classes = xgb, classes


    def get_extra_state(self) -> torch.Tensor:
        """The fitted XGBoost stage as bytes in a uint8 tensor (a JSON header line with the classes,
        then the booster in XGBoost's binary UBJSON format, which round-trips exactly), so the
        tensors-only checkpoint restores the scored classifier; empty before ``after_training``."""
        if self.xgb is None:
            return torch.empty(0, dtype=torch.uint8)
        header = json.dumps({"classes": self.xgb_classes.tolist()}).encode() + b"\n"
        raw = bytes(self.xgb.get_booster().save_raw("ubj"))
        return torch.frombuffer(bytearray(header + raw), dtype=torch.uint8).clone()

    def set_extra_state(self, state: torch.Tensor) -> None:
        if state.numel() == 0:
            self.xgb, self.xgb_classes = None, None
            return
        from xgboost import XGBClassifier

        blob = state.cpu().numpy().tobytes()
        header, raw = blob.split(b"\n", 1)
        xgb = XGBClassifier()
        xgb.load_model(bytearray(raw))
        self.xgb, self.xgb_classes = xgb, np.array(json.loads(header)["classes"])


@register_model("xincept_all", heads=("classifier",), min_size=32, features=True)
def xincept_all(num_classes: int = 5, img_size: int = 224, **kwargs: Any) -> XInceptAll:
    """XIncept-ALL baseline: InceptionV3 || Xception features fused, trained with a linear head, then XGBoost."""
    return XInceptAll(num_classes, img_size, **kwargs)

