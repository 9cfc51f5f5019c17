"""A tiny two-head U-Net (about 3k parameters at width 8): the smallest model that honours the
harness's output contract with both heads, to copy from (docs/plugins.md in the harness)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models import register_model
from models.base import ModelOutput, WBCModel
from models.losses import loss_parts_as_floats, wbc_nucleus_loss


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyUNet(WBCModel):
    """One down-sampling: encoder at full and half resolution, a skip, a 2-channel mask head (WBC,
    nucleus) at input resolution and a class head on the pooled half-resolution features. Input
    sides must be even."""

    def __init__(self, num_classes: int = 5, width: int = 8) -> None:
        super().__init__()
        self.enc1, self.enc2 = _conv(3, width), _conv(width, 2 * width)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.dec = _conv(2 * width, width)
        self.mask_head = nn.Conv2d(width, 2, 1)
        self.class_head = nn.Linear(2 * width, num_classes)
        # the engine replaces these with the training split's inverse-frequency weights
        self.register_buffer("class_weights", torch.ones(num_classes), persistent=False)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        f1 = self.enc1(x)
        f2 = self.enc2(F.max_pool2d(f1, 2))
        mask_logits = self.mask_head(self.dec(torch.cat([f1, self.up(f2)], dim=1)))
        return ModelOutput(class_logits=self.class_head(f2.mean(dim=(2, 3))), mask_logits=mask_logits)

    def loss(self, out: ModelOutput, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        seg, _ = wbc_nucleus_loss(out.mask_logits, batch)
        labelled = batch["label"] >= 0
        ce = (F.cross_entropy(out.class_logits[labelled].float(), batch["label"][labelled], weight=self.class_weights)
              if labelled.any() else out.class_logits.sum() * 0)
        total = seg + ce
        return total, loss_parts_as_floats({"seg": seg, "ce": ce, "total": total})


@register_model("example_tiny_unet", heads=("classifier", "segmenter"), min_size=8, size_multiple=2)
def example_tiny_unet(num_classes: int = 5, img_size: int = 224, width: int = 8) -> TinyUNet:
    """Example plugin model: a tiny two-head U-Net (~3k parameters at width 8)."""
    return TinyUNet(num_classes, width)
