"""SG-CLDFF (Gashti et al. 2025): saliency-guided cross-layer deep feature fusion, and its ablations.

One class, :class:`SGCLDFF`; the registered variants differ from the full model in exactly one
flag each (see the factories at the bottom).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

from core.errors import BenchmarkError
from models.base import ModelOutput, WBCModel
from models.efficientswin_hybrid import NORM_GROUPS, EfficientSwinHybrid, check_group_channels, norm_layer_for
from models.registry import register_model
from models.losses import NUCLEUS_WEIGHT, loss_parts_as_floats, wbc_nucleus_loss
from models.saliency_prior import PRIORS, saliency_prior

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ALIGN_WEIGHT = 0.5
"""lambda of the saliency-alignment penalty (the paper gives no value; see the class docstring)."""
GATINGS = ("residual", "multiply")
DECODERS = ("local", "fused")
"""``local``: the decoder also gets a light convolution of the input at 1/2 and 1/1 resolution
(default); ``fused``: it sees only the cross-layer fusion of F1..F3 (the first implementation)."""
LOCAL_CHANNELS = (16, 16)
"""Widths of the local path at 1/1 and 1/2 resolution."""


class SaliencyModule(nn.Module):
    """The paper's learned saliency branch: 3x(3x3 conv + BN + ReLU), max-pool after the first two,
    1x1 conv + sigmoid -> S in [0, 1] at 1/4 of the input resolution."""

    def __init__(self, channels: tuple[int, int, int] = (16, 32, 32), norm: str = "batch") -> None:
        super().__init__()
        c1, c2, c3 = channels
        nl = norm_layer_for(norm)
        self.body = nn.Sequential(
            ConvNormAct(3, c1, 3, norm_layer=nl),
            nn.MaxPool2d(2),
            ConvNormAct(c1, c2, 3, norm_layer=nl),
            nn.MaxPool2d(2),
            ConvNormAct(c2, c3, 3, norm_layer=nl),
            nn.Conv2d(c3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(x))


class CrossLayerFusion(nn.Module):
    """CLDFF: Conv1x1(concat(resize(F_i) to one size)) followed by BN + ReLU.

    Computed as sum_i resize(Conv1x1_i(F_i)): bilinear resizing is linear per channel, so it
    commutes with a 1x1 channel mix and the result equals the concat form (the weight of the
    concat conv is the blocks W_i side by side; tests check this). Projecting first keeps the
    full-resolution decoder stages cheap (no 448-channel map at input resolution).
    """

    def __init__(self, in_channels: tuple[int, ...], out_channels: int, norm: str = "batch") -> None:
        super().__init__()
        self.projections = nn.ModuleList(nn.Conv2d(c, out_channels, 1, bias=False) for c in in_channels)
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
        bn = nn.BatchNorm2d(out_channels) if norm == "batch" else nn.GroupNorm(NORM_GROUPS, out_channels)
        self.norm_act = nn.Sequential(bn, nn.ReLU(inplace=True))

    def forward(self, features: tuple[torch.Tensor, ...], size: tuple[int, int]) -> torch.Tensor:
        fused = self.bias
        for proj, f in zip(self.projections, features):
            fused = fused + _resize(proj(f), size)
        return self.norm_act(fused)


class DecoderStage(nn.Module):
    """U-Net-style stage: upsample the previous stage x2, concat a fresh cross-layer fusion of
    the backbone maps at this resolution (and the local path's map, if any), two 3x3 conv + BN + ReLU."""

    def __init__(self, in_channels: int, feature_channels: tuple[int, ...], out_channels: int,
                 skip_channels: int = 0, norm: str = "batch") -> None:
        super().__init__()
        nl = norm_layer_for(norm)
        self.fusion = CrossLayerFusion(feature_channels, out_channels, norm)
        self.convs = nn.Sequential(ConvNormAct(in_channels + out_channels + skip_channels, out_channels, 3, norm_layer=nl),
                                   ConvNormAct(out_channels, out_channels, 3, norm_layer=nl))

    def forward(self, x: torch.Tensor, features: tuple[torch.Tensor, ...], skip: torch.Tensor | None = None) -> torch.Tensor:
        size = (x.shape[-2] * 2, x.shape[-1] * 2)
        parts = [_resize(x, size), self.fusion(features, size)]
        return self.convs(torch.cat(parts if skip is None else [*parts, skip], dim=1))


class LocalPath(nn.Module):
    """A light high-resolution view of the (normalized) image for the decoder: two 3x3
    conv-BN-ReLU at full resolution, one strided 3x3 conv-BN-ReLU to 1/2. It is not gated and
    does not feed the backbone or the class head; it gives the mask's cell edges the pixels the
    1/4-resolution backbone maps cannot carry (the paper leaves the decoder unspecified)."""

    def __init__(self, channels: tuple[int, int] = LOCAL_CHANNELS, norm: str = "batch") -> None:
        super().__init__()
        full, half = channels
        nl = norm_layer_for(norm)
        self.at_full = nn.Sequential(ConvNormAct(3, full, 3, norm_layer=nl), ConvNormAct(full, full, 3, norm_layer=nl))
        self.at_half = ConvNormAct(full, half, 3, stride=2, norm_layer=nl)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        full = self.at_full(x)
        return full, self.at_half(full)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class SGCLDFF(WBCModel):
    """SG-CLDFF: saliency module + gated EfficientSwin hybrid + CLDFF fusion + seg/class heads.

    Flags (each ablation flips one): ``use_saliency`` (module, gating and alignment),
    ``align_weight`` (lambda; 0 = no alignment), ``cross_layer_fusion`` (False: fusion, decoder
    and class head see F3 only).

    Decisions where the paper and SPEC are silent:

    - Normalization: fixed ImageNet mean/std, applied inside the model (buffers).
    - Saliency module widths 16/32/32; max-pool after blocks 1 and 2; it reads the normalized
      image. Its S (1/4 res) gates F1 directly and F2 after area-downsampling, as each leaves its
      stage, so the gated maps also feed the deeper stages; F3 (the output) is not gated.
    - Gating: F*(1+S) (``gating="residual"``: S can only amplify, features and gradients never
      vanish where S~0) by default; the paper's plain F*S is ``gating="multiply"``. Measured:
      on short Zheng D2 runs (64 px, 300 steps, 2 seeds) the two were level (held-out IoU
      0.771/0.779 multiply vs 0.785/0.765 residual), but in the full cpu-budget cross_stain
      sweep (Zheng D1, 5 seeds) plain F*S reached in-domain IoU 92.2 +- 0.6 and shifted IoU
      85.4 +- 1.2, below the variant without any saliency (93.3 / 89.2), while F*(1+S) gave
      in-domain IoU 0.945 / 0.940 on seeds 0 / 1 (F*S: 0.927 / 0.917): with a prior that marks
      nuclei only, multiplicative gating suppresses the cytoplasm features the mask needs.
    - Prior A: frequency-tuned saliency on the hematoxylin channel (``models.saliency_prior``);
      ``prior="mask"`` (training-only, label-leaking) aligns to the GT WBC mask on samples
      that have one.
    - lambda (``align_weight``) = 0.5, not tuned: an auxiliary term at half the weight of the
      main ones, because the prior is a weak target (nuclei only, pale cytoplasm missed).
    - Backbone: stem conv s2 + depthwise-separable conv, MBConv stages (expansion 4, SE 0.25,
      SiLU) for F1/F2, one Swin stage (patch merging, 32-ch heads, window = largest divisor of
      the F3 size <= 7: 4/6/4/7 at 64/96/128/224 px) for F3; ``depths`` default (2, 2, 2).
      Input must be square at the ``img_size`` the model was built for (a multiple of 16).
      Randomly initialized: no pretrained weights exist for this hybrid.
    - CLDFF: 1x1 conv to ``fused_channels`` (128) + BN + ReLU; F2/F3 upsampled bilinearly;
      computed as project-then-resize, which is exactly the concat form (see CrossLayerFusion).
    - Decoder: from the fused 1/4 map, stages at 1/2 and 1/1, each = upsample + concat with a
      new CLDFF fusion of F1..F3 at that resolution + two 3x3 conv-BN-ReLU. Channels
      ``decoder_channels`` (64, 32, 16). ``decoder="local"`` (default) also concatenates a
      light convolution of the input (:class:`LocalPath`) at 1/2 and 1/1; every variant has it,
      so the no-fusion ablation still differs only in seeing F3 instead of F1..F3 from the
      backbone. ``decoder="fused"`` is the first implementation, without it.
    - Normalization layers: BatchNorm everywhere (``norm="batch"``), as the EfficientNet blocks
      the paper builds on; ``norm="group"`` (GroupNorm, 8 groups) and ``squeeze_excite=False``
      are investigation switches for the shift gap (docs/decisions.md), not ablations.
    - Segmentation head: 2 logits (WBC = cytoplasm + nucleus, nucleus); loss BCE + Dice on WBC
      plus 0.5 x (BCE + Dice) on nucleus, over samples with a mask.
    - Classification head: global average pool of the fused map -> linear (no dropout); the pooled
      vector is the output's ``features``.
    - Class-weighted CE uses ``class_weights`` (ones until the engine sets them); label -1
      ignored. A loss term with no eligible sample is exactly 0.
    """

    def __init__(
        self,
        num_classes: int = 5,
        img_size: int = 224,
        *,
        use_saliency: bool = True,
        align_weight: float = ALIGN_WEIGHT,
        cross_layer_fusion: bool = True,
        gating: str = "residual",
        decoder: str = "local",
        prior: str = "hematoxylin",
        depths: tuple[int, int, int] = (2, 2, 2),
        width_mult: float = 1.0,
        fused_channels: int = 128,
        decoder_channels: tuple[int, int, int] = (64, 32, 16),
        saliency_channels: tuple[int, int, int] = (16, 32, 32),
        nucleus_weight: float = NUCLEUS_WEIGHT,
        drop_path_rate: float = 0.0,
        norm: str = "batch",
        squeeze_excite: bool = True,
    ) -> None:
        super().__init__()
        if gating not in GATINGS:
            raise BenchmarkError(f"sg_cldff: unknown gating '{gating}'; valid: {', '.join(GATINGS)}")
        if decoder not in DECODERS:
            raise BenchmarkError(f"sg_cldff: unknown decoder '{decoder}'; valid: {', '.join(DECODERS)}")
        if prior not in PRIORS:
            raise BenchmarkError(f"sg_cldff: unknown saliency prior '{prior}'; valid: {', '.join(PRIORS)}")
        if not use_saliency and align_weight != 0:
            raise BenchmarkError("sg_cldff: align_weight must be 0 without the saliency module (use_saliency=False)")
        if align_weight < 0:
            raise BenchmarkError(f"sg_cldff: align_weight must be >= 0, got {align_weight}")
        norm_layer_for(norm)  # validates the name before anything is built
        check_group_channels(norm, "sg_cldff", (fused_channels, *decoder_channels, *saliency_channels, *LOCAL_CHANNELS))
        self.num_classes = num_classes
        self.align_weight = float(align_weight)
        self.cross_layer_fusion = cross_layer_fusion
        self.gating = gating
        self.decoder = decoder
        self.prior = prior
        self.nucleus_weight = nucleus_weight
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.register_buffer("class_weights", torch.ones(num_classes), persistent=False)

        self.saliency = SaliencyModule(saliency_channels, norm) if use_saliency else None
        self.backbone = EfficientSwinHybrid(img_size, depths=depths, width_mult=width_mult, drop_path_rate=drop_path_rate,
                                            norm=norm, squeeze_excite=squeeze_excite)
        fused_in = self.backbone.channels if cross_layer_fusion else self.backbone.channels[2:]
        d4, d2, d1 = decoder_channels
        self.fusion = CrossLayerFusion(fused_in, fused_channels, norm)
        self.local = LocalPath(norm=norm) if decoder == "local" else None
        full_skip, half_skip = self.local.channels if self.local is not None else (0, 0)
        self.decoder_in = ConvNormAct(fused_channels, d4, 3, norm_layer=norm_layer_for(norm))
        self.decoder_half = DecoderStage(d4, fused_in, d2, half_skip, norm)
        self.decoder_full = DecoderStage(d2, fused_in, d1, full_skip, norm)
        self.seg_head = nn.Conv2d(d1, 2, 1)
        self.classifier = nn.Linear(fused_channels, num_classes)

    @property
    def fused_layer(self) -> nn.Module:
        """Grad-CAM target layer: its output is the fused map the classification head pools."""
        return self.fusion

    def set_class_weights(self, weights: torch.Tensor) -> None:
        if weights.shape != (self.num_classes,):
            raise BenchmarkError(f"sg_cldff: class weights must have shape ({self.num_classes},), got {tuple(weights.shape)}")
        super().set_class_weights(weights.to(self.pixel_mean.device))

    def _gate(self, s: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """The gating function the backbone applies to F1 and F2 (S resized to each by area)."""

        def gate(f: torch.Tensor) -> torch.Tensor:
            g = F.adaptive_avg_pool2d(s, f.shape[-2:])
            return f * (1 + g) if self.gating == "residual" else f * g

        return gate

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h, w = x.shape[-2:]
        xn = (x - self.pixel_mean) / self.pixel_std
        s = self.saliency(xn) if self.saliency is not None else None
        f1, f2, f3 = self.backbone(xn, gate=self._gate(s) if s is not None else None)
        features = (f1, f2, f3) if self.cross_layer_fusion else (f3,)
        fused = self.fusion(features, (h // 4, w // 4))
        pooled = fused.mean(dim=(2, 3))
        class_logits = self.classifier(pooled)
        local_full, local_half = self.local(xn) if self.local is not None else (None, None)
        d = self.decoder_in(fused)
        d = self.decoder_half(d, features, local_half)
        d = self.decoder_full(d, features, local_full)
        return ModelOutput(class_logits=class_logits, mask_logits=self.seg_head(d), saliency=s, features=pooled)

    def loss(self, out: ModelOutput, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted CE + (BCE + Dice)(WBC) + nucleus_weight (BCE + Dice)(nucleus) + lambda mean|S - A|."""
        zero = out.class_logits.sum() * 0  # keeps an empty term on the graph without adding NaN
        labels = batch["label"]
        labelled = labels >= 0
        ce = (
            F.cross_entropy(out.class_logits[labelled], labels[labelled], weight=self.class_weights)
            if labelled.any()
            else zero
        )
        _, parts = wbc_nucleus_loss(out.mask_logits, batch, self.nucleus_weight)
        seg_wbc, seg_nuc = parts["seg_wbc"], parts["seg_nucleus"]
        total = ce + seg_wbc + self.nucleus_weight * seg_nuc  # this order: results stay bit-identical
        named = {"ce": ce, "seg_wbc": seg_wbc, "seg_nucleus": seg_nuc}
        if out.saliency is not None:
            # the raw distance is logged even at lambda = 0 (does S follow A without being told to?)
            align_l1 = self._alignment_l1(out.saliency, batch, zero)
            if self.align_weight > 0:
                total = total + self.align_weight * align_l1
            named.update(align_l1=align_l1, align=self.align_weight * align_l1)
        named["total"] = total
        return total, loss_parts_as_floats(named)

    def _alignment_l1(self, s: torch.Tensor, batch: dict[str, torch.Tensor], zero: torch.Tensor) -> torch.Tensor:
        """mean |S - A| over the samples that have a prior (all of them for the image prior)."""
        if self.prior == "mask":
            keep = batch["mask_valid"]
            if not keep.any():
                return zero
            s = s[keep]
            a = saliency_prior(batch["image"][keep], s.shape[-2:], "mask", batch["mask"][keep])
        else:
            a = saliency_prior(batch["image"], s.shape[-2:])
        return (s - a).abs().mean()


@register_model("sg_cldff", heads=("classifier", "segmenter"), min_size=32, size_multiple=16,
                features=True)
def sg_cldff(num_classes: int = 5, img_size: int = 224, **kwargs: Any) -> SGCLDFF:
    """SG-CLDFF (full): saliency module + gating + alignment to the prior, cross-layer fusion."""
    return SGCLDFF(num_classes, img_size, **kwargs)


@register_model("sg_cldff_no_saliency", heads=("classifier", "segmenter"), min_size=32, size_multiple=16,
                features=True)
def sg_cldff_no_saliency(num_classes: int = 5, img_size: int = 224, **kwargs: Any) -> SGCLDFF:
    """SG-CLDFF without saliency-guided preprocessing: no saliency module, gating or alignment."""
    return SGCLDFF(num_classes, img_size, use_saliency=False, align_weight=0.0, **kwargs)


@register_model("sg_cldff_no_align", heads=("classifier", "segmenter"), min_size=32, size_multiple=16,
                features=True)
def sg_cldff_no_align(num_classes: int = 5, img_size: int = 224, **kwargs: Any) -> SGCLDFF:
    """SG-CLDFF without saliency alignment (lambda = 0); module and gating kept (H1 comparison)."""
    return SGCLDFF(num_classes, img_size, align_weight=0.0, **kwargs)


@register_model("sg_cldff_no_cldff", heads=("classifier", "segmenter"), min_size=32, size_multiple=16,
                features=True)
def sg_cldff_no_cldff(num_classes: int = 5, img_size: int = 224, **kwargs: Any) -> SGCLDFF:
    """SG-CLDFF without cross-layer fusion: fusion, decoder and class head see F3 only (H2 comparison)."""
    return SGCLDFF(num_classes, img_size, cross_layer_fusion=False, **kwargs)
