"""Segmentation-only baselines: a plain U-Net, the Saliency-UNet, and a training-free classical segmenter.

All three emit SG-CLDFF's two mask logits (channel 0 WBC = cytoplasm + nucleus, channel 1
nucleus), so the same evaluation code scores them; none has a classification head.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import ConvNormAct
from torch import nn

from core.errors import BenchmarkError
from models.base import ModelOutput, WBCModel
from models.registry import register_model
from models.saliency_prior import hematoxylin_density, saliency_prior
from models.losses import NUCLEUS_WEIGHT, loss_parts_as_floats, wbc_nucleus_loss
from models.sg_cldff import IMAGENET_MEAN, IMAGENET_STD

UNET_WIDTHS = (16, 32, 64, 128, 256)
"""Channels per U-Net level (input level first, bottleneck last): ~1.9M parameters."""
CLASSICAL_LOGIT = 10.0
"""Magnitude of the classical model's logits: its binary masks as confident +/- logits."""
OTSU_BINS = 64
"""Histogram bins of the classical model's per-image multi-level Otsu."""
MIN_CONTRAST = 0.01
"""Hematoxylin OD range below which an image is treated as blank (no thresholds, empty masks)."""


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(ConvNormAct(in_channels, out_channels, 3), ConvNormAct(out_channels, out_channels, 3))


class UNet(WBCModel):
    """U-Net (Ronneberger et al. 2015) segmentation reference; optionally the Saliency-UNet.

    ``saliency_channel=True`` is the only difference between the two: the training-free prior
    (``models.saliency_prior.saliency_prior``, hematoxylin frequency-tuned saliency) becomes a 4th
    input channel.

    Decisions (no paper pins these down):

    - Widths 16/32/64/128/256 (4 down-samplings, ~1.9M parameters): a small reference next to
      SG-CLDFF, cheap enough for the cpu budget. Each level: two 3x3 conv + BN + ReLU (BN is not
      in the 2015 paper; padded convs keep input and output the same size, unlike the paper's
      valid convs). Down: 2x2 max-pool; up: 2x2 transposed conv, concat the skip.
    - RGB is normalized with ImageNet mean/std inside the model, as for SG-CLDFF.
    - Prior channel: computed at 1/4 resolution (the grid its blur is calibrated for) and
      bilinearly upsampled to the input size; fed in [0, 1] unnormalized (the first conv's BN
      takes care of scale). It never sees the mask.
    - Head and loss as SG-CLDFF's segmentation branch: 2 logits (WBC, nucleus), BCE + Dice on WBC
      + 0.5 (BCE + Dice) on nucleus, over samples with a mask.
    - Input height and width must be multiples of 16 (four 2x down-samplings).
    - ``features``: the bottleneck map, globally average-pooled (what feature drift compares).
    """

    has_classifier = False

    def __init__(self, *, saliency_channel: bool = False, widths: tuple[int, ...] = UNET_WIDTHS,
                 nucleus_weight: float = NUCLEUS_WEIGHT) -> None:
        super().__init__()
        self.saliency_channel = saliency_channel
        self.nucleus_weight = nucleus_weight
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.down_factor = 2 ** (len(widths) - 1)
        in_channels = 4 if saliency_channel else 3
        self.encoder = nn.ModuleList()
        for w in widths:
            self.encoder.append(_double_conv(in_channels, w))
            in_channels = w
        self.upsample = nn.ModuleList(nn.ConvTranspose2d(hi, lo, 2, stride=2) for lo, hi in zip(widths[:-1], widths[1:]))
        self.decoder = nn.ModuleList(_double_conv(2 * lo, lo) for lo in widths[:-1])
        self.head = nn.Conv2d(widths[0], 2, 1)

    @property
    def first_conv(self) -> nn.Conv2d:
        """The convolution that reads the input (3 or 4 channels)."""
        return self.encoder[0][0].conv

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h, w = x.shape[-2:]
        if h % self.down_factor or w % self.down_factor:
            raise BenchmarkError(f"unet: input {h}x{w} must have sides that are multiples of {self.down_factor}")
        inp = (x - self.pixel_mean) / self.pixel_std
        if self.saliency_channel:
            prior = saliency_prior(x, (h // 4, w // 4))
            inp = torch.cat([inp, F.interpolate(prior, size=(h, w), mode="bilinear", align_corners=False)], dim=1)
        skips = []
        for i, block in enumerate(self.encoder):
            inp = block(inp if i == 0 else F.max_pool2d(inp, 2))
            skips.append(inp)
        d = skips.pop()
        bottleneck = d
        for up, block in zip(reversed(self.upsample), reversed(self.decoder)):
            d = block(torch.cat([skips.pop(), up(d)], dim=1))
        return ModelOutput(class_logits=None, mask_logits=self.head(d), features=bottleneck.mean(dim=(2, 3)))

    def loss(self, out: ModelOutput, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        total, named = wbc_nucleus_loss(out.mask_logits, batch, self.nucleus_weight)
        return total, loss_parts_as_floats({**named, "total": total})


def _grow(mask: torch.Tensor) -> torch.Tensor:
    """One step of binary dilation of a bool (B, 1, H, W) mask with the 3x3 square, by array
    shifts (separable: rows, then columns; cheaper than max-pooling floats on CPU)."""
    vertical = mask.clone()
    vertical[..., 1:, :] |= mask[..., :-1, :]
    vertical[..., :-1, :] |= mask[..., 1:, :]
    out = vertical.clone()
    out[..., :, 1:] |= vertical[..., :, :-1]
    out[..., :, :-1] |= vertical[..., :, 1:]
    return out


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    for _ in range(radius):
        mask = _grow(mask)
    return mask


def _erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Erosion as the dual of dilation; pixels beyond the border count as foreground."""
    return ~_dilate(~mask, radius)


def _close_open(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Closing bridges small gaps (grainy nuclei), opening then cuts thin links and specks."""
    closed = _erode(_dilate(mask, radius), radius)
    return _dilate(_erode(closed, radius), radius)


def _reconstruct(seed: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Everything in ``region`` 8-connected to ``seed`` (geodesic reconstruction by repeated dilation)."""
    reached = seed & region
    while True:
        grown = _grow(reached) & region
        if torch.equal(grown, reached):
            return reached
        reached = grown


def _fill_holes(mask: torch.Tensor) -> torch.Tensor:
    """Add the background pixels that see the mask along all four axis directions.

    Every true hole (background not connected to the border) is such a pixel, because a
    straight path to the border would otherwise connect it. The converse is approximate: a
    hole with a narrow opening is filled except along the rows and columns that see out
    through it (after closing, cell masks rarely have such notches). Four cumulative maxima
    instead of an iterative flood fill from the border: much cheaper on CPU.
    """
    m = mask.float()

    def seen(dim: int, reverse: bool) -> torch.Tensor:
        t = m.flip(dim) if reverse else m
        t = t.cummax(dim).values
        return (t.flip(dim) if reverse else t) > 0

    return mask | (seen(-1, False) & seen(-1, True) & seen(-2, False) & seen(-2, True))


def _component_nearest_centre(mask: torch.Tensor) -> torch.Tensor:
    """Keep, per image, the 8-connected component with the pixel closest to the image centre
    (crops in these datasets are centred on the WBC); an empty mask stays empty."""
    b, _, h, w = mask.shape
    yy, xx = torch.meshgrid(torch.arange(h, device=mask.device), torch.arange(w, device=mask.device), indexing="ij")
    dist = ((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2).float().expand(b, 1, h, w)
    nearest = torch.where(mask, dist, torch.full_like(dist, float("inf"))).flatten(1).argmin(dim=1)
    seed = torch.zeros_like(mask).flatten(1).scatter_(1, nearest[:, None], True).view_as(mask)
    return _reconstruct(seed, mask)


def multi_otsu_thresholds(values: torch.Tensor, bins: int = OTSU_BINS) -> torch.Tensor:
    """Per-image two-threshold (3-class) Otsu: (B, N) values -> (B, 2) thresholds t1 < t2 that
    maximize the between-class variance of the histogram (exhaustive over bin pairs, batched).
    An image whose range is below ``MIN_CONTRAST`` gets +inf thresholds: nothing is foreground."""
    lo, hi = values.amin(1, keepdim=True), values.amax(1, keepdim=True)
    span = (hi - lo).clamp(min=1e-6)
    idx = ((values - lo) / span * bins).long().clamp(max=bins - 1)
    hist = torch.zeros(values.shape[0], bins, device=values.device).scatter_add_(1, idx, torch.ones_like(values))
    p = hist / hist.sum(1, keepdim=True)
    centres = (torch.arange(bins, device=values.device, dtype=p.dtype) + 0.5) / bins
    cum_w, cum_m = p.cumsum(1), (p * centres).cumsum(1)
    total_m = cum_m[:, -1:]
    w0, m0 = cum_w[:, :, None], cum_m[:, :, None]  # class 0: bins <= i
    w1, m1 = cum_w[:, None, :] - w0, cum_m[:, None, :] - m0  # class 1: i < bins <= j
    w2, m2 = 1 - cum_w[:, None, :], total_m[:, :, None] - cum_m[:, None, :]  # class 2: bins > j
    score = sum(m**2 / w.clamp(min=1e-12) for m, w in ((m0, w0), (m1, w1), (m2, w2)))
    i_idx, j_idx = torch.meshgrid(torch.arange(bins, device=values.device), torch.arange(bins, device=values.device), indexing="ij")
    score = score.masked_fill((j_idx <= i_idx) | (w0 <= 0) | (w1 <= 0) | (w2 <= 0), -1.0)
    best = score.flatten(1).argmax(1)
    upper_edges = torch.stack([best // bins, best % bins], dim=1).to(p.dtype) + 1  # threshold above bin
    thresholds = lo + upper_edges / bins * span
    return torch.where(hi - lo >= MIN_CONTRAST, thresholds, torch.full_like(thresholds, float("inf")))


class ClassicalSegmenter(WBCModel):
    """Training-free classical segmenter: multi-level Otsu on hematoxylin density + morphology
    (a baseline, measured against the ``constant_mask`` floor like every other model).

    Steps (all torch, batched, on the model's device):

    1. Hematoxylin optical density (Ruifrok-Johnston colour deconvolution, the same
       ``hematoxylin_density`` as the saliency prior), smoothed by a 3x3 mean filter.
    2. Per-image 3-class Otsu (two thresholds): the darkest class is the nucleus, the two upper
       classes together are the WBC (cytoplasm stains hematoxylin more weakly than the nucleus
       but more than red cells and background). Decision: 3 classes rather than a single Otsu
       threshold because the contract needs both a WBC and a nucleus mask.
    3. Closing then opening with a square of radius max(1, size // 64); the WBC keeps only the
       connected component nearest the image centre (crops are centred on the WBC), then its
       holes are filled (background enclosed along all four axis directions, see ``_fill_holes``);
       the nucleus is its own closed/opened mask inside that WBC (no hole filling: lobed nuclei
       have gaps between lobes).
    4. Logits are +/-10 from the binary masks; no classifier, no parameters, zero loss.

    Every step runs in float32 with autocast off: a fixed computation must give the same masks
    whatever precision the engine runs in (bf16 on a GPU would shift the Otsu thresholds).
    """

    has_classifier = False

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h, w = x.shape[-2:]
        radius = max(1, min(h, w) // 64)
        with torch.autocast(x.device.type, enabled=False):
            density = F.avg_pool2d(hematoxylin_density(x.float()), 3, stride=1, padding=1, count_include_pad=False)
            t = multi_otsu_thresholds(density.flatten(1))
            wbc_raw = (density > t[:, 0].view(-1, 1, 1, 1))
            nucleus_raw = (density > t[:, 1].view(-1, 1, 1, 1))
            wbc = _fill_holes(_component_nearest_centre(_close_open(wbc_raw, radius)))
            nucleus = _close_open(nucleus_raw, radius) & wbc
            masks = torch.cat([wbc, nucleus], dim=1).float()
            return ModelOutput(class_logits=None, mask_logits=(2 * masks - 1) * CLASSICAL_LOGIT)

    def loss(self, out: ModelOutput, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Nothing to learn: a zero loss that needs no backward pass."""
        return torch.zeros((), device=out.mask_logits.device), {"total": 0.0}


@register_model("unet", heads=("segmenter",), min_size=16, size_multiple=16, features=True)
def unet(num_classes: int = 5, img_size: int = 224, **kwargs: Any) -> UNet:
    """U-Net segmentation reference (~1.9M params, RGB input); no classifier."""
    return UNet(**kwargs)


@register_model("saliency_unet", heads=("segmenter",), min_size=16, size_multiple=16, features=True)
def saliency_unet(num_classes: int = 5, img_size: int = 224, **kwargs: Any) -> UNet:
    """Saliency-UNet: the U-Net with the training-free hematoxylin saliency prior as a 4th input channel."""
    return UNet(saliency_channel=True, **kwargs)


@register_model("classical", heads=("segmenter",), min_size=16)
def classical(num_classes: int = 5, img_size: int = 224, **kwargs: Any) -> ClassicalSegmenter:
    """Classical training-free segmenter: Otsu on hematoxylin density + morphology; no classifier."""
    return ClassicalSegmenter(**kwargs)
