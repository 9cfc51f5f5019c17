"""Classification-only baselines: EfficientSwin (Patel et al. 2024) and ResNeXt-CC (Luo et al. 2024).

Both are built from timm architectures, randomly initialized unless ``pretrained=True`` loads
locally cached timm ImageNet weights (``models.pretrained``); neither has a segmentation head.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import EcaModule
from torch import nn

from core.errors import BenchmarkError
from models.base import ModelOutput, WBCModel
from models.efficientswin_hybrid import window_for
from models.losses import loss_parts_as_floats
from models.pretrained import create_timm_backbone
from models.registry import register_model
from models.sg_cldff import IMAGENET_MEAN, IMAGENET_STD

ECA_GAMMA = 2
ECA_B = 1
CENTER_LOSS_WEIGHT = 0.05
"""beta of the paper's total loss (lambda, the w-softmax weight, is 1)."""
CENTER_ALPHA = 0.5
"""Centre learning rate alpha of Wen et al. (2016); the ResNeXt-CC paper does not state it."""
RESNEXT_CC_SMALL_LAYERS = (1, 1, 1, 2)
"""Blocks per stage of the cpu-budget variant; stage 5 keeps two blocks so Conv5_1 != Conv5_last."""


class _ClassifierBase(WBCModel):
    """Shared plumbing: class-weighted CE over labelled samples, no segmentation head."""

    has_segmenter = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("class_weights", torch.ones(num_classes), persistent=False)

    def set_class_weights(self, weights: torch.Tensor) -> None:
        if weights.shape != (self.num_classes,):
            raise BenchmarkError(
                f"{type(self).__name__}: class weights must have shape ({self.num_classes},), got {tuple(weights.shape)}"
            )
        super().set_class_weights(weights.to(self.class_weights.device))

    def _weighted_ce(self, class_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Class-weighted CE over samples with a label; exactly 0 (on the graph) when none has one."""
        labelled = labels >= 0
        if not labelled.any():
            return class_logits.sum() * 0
        return F.cross_entropy(class_logits[labelled].float(), labels[labelled], weight=self.class_weights)


class EfficientSwin(_ClassifierBase):
    """EfficientSwin (Patel et al. 2024): EfficientNet-B0 || Swin-Tiny, pooled features concatenated, one linear layer.

    Decisions / deviations:

    - timm ``efficientnet_b0`` and ``swin_tiny_patch4_window7_224``, random init unless
      ``pretrained`` (both from their cached timm ImageNet weights; timm resizes Swin's
      relative-position tables to the window used); their own heads removed (``num_classes=0``):
      B0's 1280-d and Swin-T's 768-d globally pooled features are concatenated (the output's
      ``features``) -> one ``nn.Linear`` (no dropout, always random init).
    - Swin-Tiny is built at the input size (``img_size``, a multiple of 32) with window = the
      largest divisor <= 7 of img_size / 16 (7 at 224, 4 at 64/128, 6 at 96), so the windows tile
      the stage 1-3 maps exactly; timm shrinks the window to the map where the map is smaller
      (stage 4 at 64 px: 2x2, no shift). No resizing of the input is needed at 64 px.
    - Input normalized with ImageNet mean/std inside the model; both branches see the same image.
    - Loss: class-weighted CE (weights from the training split), label -1 ignored.
    """

    def __init__(self, num_classes: int = 5, img_size: int = 224, *, pretrained: bool = False) -> None:
        super().__init__(num_classes)
        if img_size % 32:
            raise BenchmarkError(f"efficientswin: img_size must be a multiple of 32 (Swin's 4 stages), got {img_size}")
        self.img_size = img_size
        self.window_size = window_for(img_size // 16)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.cnn = create_timm_backbone("efficientnet_b0", pretrained, num_classes=0)
        self.swin = create_timm_backbone(
            "swin_tiny_patch4_window7_224", pretrained, num_classes=0, img_size=img_size, window_size=self.window_size
        )
        self.classifier = nn.Linear(self.cnn.num_features + self.swin.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        if tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            raise BenchmarkError(
                f"efficientswin: built for img_size={self.img_size}, got input {x.shape[-2]}x{x.shape[-1]}"
            )
        xn = (x - self.pixel_mean) / self.pixel_std
        features = torch.cat([self.cnn(xn), self.swin(xn)], dim=1)
        return ModelOutput(class_logits=self.classifier(features), mask_logits=None, features=features)

    def loss(self, out: ModelOutput, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        ce = self._weighted_ce(out.class_logits, batch["label"])
        return ce, loss_parts_as_floats({"ce": ce, "total": ce})


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> HSV, every channel in [0, 1] (hue / 360 deg), as ``colorsys``:
    hue 0 where the pixel is grey, saturation 0 where it is black. Float32 with autocast off, as
    every fixed image computation (the network after it may run in bf16)."""
    with torch.autocast(x.device.type, enabled=False):
        x = x.float()
        r, g, b = x.unbind(1)
        maxc, _ = x.max(1)
        minc, _ = x.min(1)
        delta = maxc - minc
        safe = torch.where(delta > 0, delta, torch.ones_like(delta))
        rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
        hue = torch.where(r == maxc, bc - gc, torch.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc))
        hue = torch.where(delta > 0, torch.remainder(hue / 6.0, 1.0), torch.zeros_like(hue))
        sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
        return torch.stack([hue, sat, maxc], dim=1)


def eca_kernel_size(channels: int, gamma: float = ECA_GAMMA, b: float = ECA_B) -> int:
    """ECA-Net's k = |log2(C) / gamma + b / gamma|_odd (the reference code's rounding: truncate,
    then the next odd number if even)."""
    t = int(abs(math.log2(channels) / gamma + b / gamma))
    return t if t % 2 else t + 1


def _eca(channels: int) -> EcaModule:
    return EcaModule(kernel_size=eca_kernel_size(channels))


class ResNeXtCC(_ClassifierBase):
    """ResNeXt-CC (Luo et al. 2024): HSV input, ResNeXt-50 32x4d with ECA down-sampling, CFFM, w-softmax + center loss.

    Decisions / deviations (the paper's Table 1/2 details are not all in the text):

    - Backbone: timm ``resnext50_32x4d`` (random init unless ``pretrained``), stages (3, 4, 6, 3); ``layers`` overrides
      the blocks per stage (the ``resnext_cc_small`` variant uses (1, 1, 1, 2)).
    - ``pretrained``: timm loads its cached ``resnext50_32x4d`` ImageNet weights into the plain
      timm network (built with these ``layers`` and the strided stem conv) before the ECA modules
      are wrapped around it, matching tensors by name, non-strict (timm logs the lists): loaded are
      the stem conv, every kept block and the BNs; left at random init are the stem conv + BN that
      replace the max-pool, the ECA modules, CFFM and the classifier; dropped from the checkpoint
      are ImageNet ``fc`` and, for ``resnext_cc_small``, the blocks beyond (1, 1, 1, 2). The stem
      then sees HSV, not the RGB its weights were trained on (the paper's design, kept).
    - HSV: RGB [0, 1] -> HSV in torch, each channel in [0, 1] (hue / 360), fed without further
      normalization (the stem's BatchNorm follows).
    - Down-sampling "by convolution instead of pooling": the stem max-pool is replaced by a 3x3
      stride-2 conv + BN + ReLU (timm's ``replace_stem_pool``) followed by ECA; the stages'
      own down-sampling is already by strided convolution, and ECA is applied after each
      down-sampling block (first block of Conv3, Conv4, Conv5), as "we enhance the features after
      each down-sampling". ECA kernel k from the ECA formula with gamma 2, b 1 (see
      ``eca_kernel_size``: k = 3, 5, 5, 7 for the 64, 512, 1024, 2048 channels), no lower clamp
      (unlike timm's default).
    - CFFM: one 1x1 conv (C = 2048 -> 2048, with bias) on the outputs of Conv5_1 and of the last
      Conv5 block (Conv5_3 in ResNeXt-50), Z3 = Z1 * Z2 element-wise, GAP (the output's
      ``features``), one FC. The paper's
      "followed by a 1x1 convolution for increasing information flow" is read as that same 1x1
      conv (one per branch), not a second one.
    - Loss: class-weighted CE (the paper's two-class w-softmax generalized to K classes with the
      engine's inverse-frequency weights) + 0.05 * center loss (Wen et al. 2016) on the GAP
      feature FP: mean over labelled samples of 0.5 ||x_i - c_yi||^2. The centres are a buffer
      (zeros at start) updated once per training mini-batch by Wen et al.'s rule
      c_j <- c_j - alpha * sum_{y_i=j}(c_j - x_i) / (1 + n_j), alpha = 0.5, never by the optimizer;
      updates happen in ``loss`` only in training mode.
    """

    def __init__(self, num_classes: int = 5, img_size: int = 224, *, layers: tuple[int, ...] = (3, 4, 6, 3),
                 center_weight: float = CENTER_LOSS_WEIGHT, center_alpha: float = CENTER_ALPHA,
                 pretrained: bool = False) -> None:
        super().__init__(num_classes)
        if len(layers) != 4 or layers[3] < 2:
            raise BenchmarkError(f"resnext_cc: layers must be 4 stage depths with >= 2 blocks in Conv5, got {layers}")
        self.center_weight = center_weight
        self.center_alpha = center_alpha
        net = create_timm_backbone(
            "resnext50_32x4d", pretrained, num_classes=0, global_pool="", replace_stem_pool=True, layers=tuple(layers)
        )
        net.maxpool = nn.Sequential(net.maxpool, _eca(net.conv1.out_channels))  # strided conv + ECA
        for stage in (net.layer2, net.layer3, net.layer4):
            stage[0] = nn.Sequential(stage[0], _eca(stage[0].conv3.out_channels))
        self.stem = nn.Sequential(net.conv1, net.bn1, net.act1, net.maxpool)
        self.stages = nn.Sequential(net.layer1, net.layer2, net.layer3)
        self.conv5 = net.layer4
        channels = net.num_features
        self.cffm_first = nn.Conv2d(channels, channels, 1)
        self.cffm_last = nn.Conv2d(channels, channels, 1)
        self.classifier = nn.Linear(channels, num_classes)
        self.register_buffer("centers", torch.zeros(num_classes, channels))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        f = self.stages(self.stem(rgb_to_hsv(x)))
        f = self.conv5[0](f)
        first = f
        for block in self.conv5[1:]:
            f = block(f)
        fused = self.cffm_first(first) * self.cffm_last(f)
        features = fused.mean(dim=(2, 3))
        return ModelOutput(class_logits=self.classifier(features), mask_logits=None, features=features)

    def center_loss(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean over samples of 0.5 ||x_i - c_{y_i}||^2 (labels must all be >= 0)."""
        return 0.5 * (features - self.centers[labels]).pow(2).sum(1).mean()

    @torch.no_grad()
    def update_centers(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Wen et al.'s per-mini-batch rule: c_j -= alpha * sum_{y_i=j}(c_j - x_i) / (1 + n_j)."""
        counts = torch.bincount(labels, minlength=self.num_classes).to(features.dtype)
        sums = torch.zeros_like(self.centers).index_add_(0, labels, features)
        delta = (counts[:, None] * self.centers - sums) / (1 + counts[:, None])
        self.centers -= self.center_alpha * delta

    def loss(self, out: ModelOutput, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted CE + center_weight * center loss; centres move once per training batch."""
        labels = batch["label"]
        ce = self._weighted_ce(out.class_logits, labels)
        labelled = labels >= 0
        if labelled.any():
            features = out.features[labelled].float()
            center = self.center_loss(features, labels[labelled])
            if self.training:
                self.update_centers(features.detach(), labels[labelled])
        else:
            center = out.class_logits.sum() * 0
        total = ce + self.center_weight * center
        return total, loss_parts_as_floats({"ce": ce, "center": center, "total": total})


@register_model("efficientswin", heads=("classifier",), min_size=32, size_multiple=32, features=True)
def efficientswin(num_classes: int = 5, img_size: int = 224, **kwargs: Any) -> EfficientSwin:
    """EfficientSwin baseline: EfficientNet-B0 || Swin-Tiny features -> linear; classification only."""
    return EfficientSwin(num_classes, img_size, **kwargs)


@register_model("resnext_cc", heads=("classifier",), min_size=32, features=True)
def resnext_cc(num_classes: int = 5, img_size: int = 224, **kwargs: Any) -> ResNeXtCC:
    """ResNeXt-CC baseline: HSV ResNeXt-50 32x4d + ECA down-sampling + CFFM, w-softmax + center loss."""
    return ResNeXtCC(num_classes, img_size, **kwargs)


@register_model("resnext_cc_small", heads=("classifier",), min_size=32, features=True)
def resnext_cc_small(num_classes: int = 5, img_size: int = 224, **kwargs: Any) -> ResNeXtCC:
    """ResNeXt-CC with (1, 1, 1, 2) blocks per stage instead of (3, 4, 6, 3): the cpu-budget variant."""
    return ResNeXtCC(num_classes, img_size, layers=RESNEXT_CC_SMALL_LAYERS, **kwargs)
