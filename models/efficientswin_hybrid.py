"""SG-CLDFF's "EfficientSwin" hybrid backbone, assembled from timm building blocks.

MBConv (EfficientNet) stages give the shallow maps F1 (1/4, 64 ch) and F2 (1/8, 128 ch);
a Swin stage (patch merging + shifted-window attention) gives the deep map F3 (1/16, 256 ch).
Channel counts are the paper's at ``width_mult=1``. The backbone takes an optional ``gate``
callable applied to F1 and F2 as they leave their stage, so the saliency gating of SG-CLDFF
also shapes every deeper stage.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from timm.layers import ConvNormAct, GroupNorm
from timm.models._efficientnet_blocks import DepthwiseSeparableConv, InvertedResidual, SqueezeExcite
from timm.models.swin_transformer import SwinTransformerStage
from torch import nn

from core.errors import BenchmarkError

MAX_WINDOW = 7
"""Swin's window size at 224 px; smaller inputs use the largest divisor of the F3 size <= 7."""
HEAD_DIM = 32
"""Channels per attention head (Swin-T uses 32), so F3's 256 channels give 8 heads."""
MBCONV_EXPANSION = 4
"""Inverted-residual expansion ratio (EfficientNet uses 6; 4 keeps the CPU budget fast)."""
SE_RATIO = 0.25
"""Squeeze-excite reduction relative to the block input, as in EfficientNet."""
NORMS = ("batch", "group")
"""``batch``: BatchNorm, as in EfficientNet (default); ``group``: GroupNorm with NORM_GROUPS groups,
which keeps no running statistics of the training stain (a candidate cause of the shift gap)."""
NORM_GROUPS = 8


def norm_layer_for(norm: str) -> type[nn.Module] | partial:
    """The timm ``norm_layer`` for a NORMS name (timm pairs it with the block's activation)."""
    if norm not in NORMS:
        raise BenchmarkError(f"unknown norm '{norm}'; valid: {', '.join(NORMS)}")
    return nn.BatchNorm2d if norm == "batch" else partial(GroupNorm, num_groups=NORM_GROUPS)


def check_group_channels(norm: str, owner: str, channels: tuple[int, ...]) -> None:
    """GroupNorm needs every normalized width divisible by NORM_GROUPS; say which one is not."""
    bad = [c for c in channels if c % NORM_GROUPS]
    if norm == "group" and bad:
        raise BenchmarkError(f"{owner}: norm='group' needs widths divisible by {NORM_GROUPS}, got {bad}")


def window_for(feature_size: int) -> int:
    """Largest window <= MAX_WINDOW that tiles the F3 map exactly (no padded windows)."""
    return max(w for w in range(1, min(MAX_WINDOW, feature_size) + 1) if feature_size % w == 0)


def _mbconv(in_chs: int, out_chs: int, stride: int, norm: str, squeeze_excite: bool) -> InvertedResidual:
    return InvertedResidual(
        in_chs,
        out_chs,
        dw_kernel_size=3,
        stride=stride,
        exp_ratio=MBCONV_EXPANSION,
        act_layer=nn.SiLU,
        norm_layer=norm_layer_for(norm),
        se_layer=partial(SqueezeExcite, rd_ratio=SE_RATIO / MBCONV_EXPANSION) if squeeze_excite else None,
    )


def _mbconv_stage(in_chs: int, out_chs: int, depth: int, norm: str, squeeze_excite: bool) -> nn.Sequential:
    """First block halves the resolution and changes width; the rest are residual."""
    return nn.Sequential(
        _mbconv(in_chs, out_chs, 2, norm, squeeze_excite),
        *[_mbconv(out_chs, out_chs, 1, norm, squeeze_excite) for _ in range(depth - 1)],
    )


class EfficientSwinHybrid(nn.Module):
    """Stem (1/2) -> MBConv stage -> F1 (1/4) -> MBConv stage -> F2 (1/8) -> Swin stage -> F3 (1/16).

    ``depths`` = blocks per stage (F1, F2, F3). ``img_size`` fixes the Swin stage's resolution
    and window (timm precomputes the shifted-window mask for one resolution), so the input must
    be square with that size, a multiple of 16. ``norm`` (NORMS) and ``squeeze_excite`` are
    investigation switches for the convolutional stages (issue 9); the defaults are EfficientNet's.
    """

    def __init__(
        self,
        img_size: int = 224,
        depths: tuple[int, int, int] = (2, 2, 2),
        width_mult: float = 1.0,
        drop_path_rate: float = 0.0,
        norm: str = "batch",
        squeeze_excite: bool = True,
    ) -> None:
        super().__init__()
        if img_size % 16 or img_size < 32:
            raise BenchmarkError(f"EfficientSwin backbone: img_size must be a multiple of 16 and >= 32, got {img_size}")
        if len(depths) != 3 or min(depths) < 1:
            raise BenchmarkError(f"EfficientSwin backbone: depths must be 3 positive ints, got {depths}")
        stem = max(8, int(round(32 * width_mult)))
        c1, c2 = (max(8, int(round(c * width_mult))) for c in (64, 128))
        c3 = max(1, int(round(256 * width_mult / HEAD_DIM))) * HEAD_DIM  # whole attention heads
        norm_layer = norm_layer_for(norm)
        check_group_channels(norm, "EfficientSwin backbone", (stem, c1, c2))
        self.img_size = img_size
        self.channels: tuple[int, int, int] = (c1, c2, c3)
        f3_size = img_size // 16
        self.window_size = window_for(f3_size)

        self.stem = nn.Sequential(
            ConvNormAct(3, stem, 3, stride=2, act_layer=nn.SiLU, norm_layer=norm_layer),
            DepthwiseSeparableConv(stem, stem, act_layer=nn.SiLU, norm_layer=norm_layer),
        )
        self.stage1 = _mbconv_stage(stem, c1, depths[0], norm, squeeze_excite)
        self.stage2 = _mbconv_stage(c1, c2, depths[1], norm, squeeze_excite)
        self.stage3 = SwinTransformerStage(
            dim=c2,
            out_dim=c3,
            input_resolution=(img_size // 8, img_size // 8),
            depth=depths[2],
            downsample=True,
            num_heads=c3 // HEAD_DIM,
            window_size=self.window_size,
            drop_path=drop_path_rate,
        )

    def forward(
        self, x: torch.Tensor, gate: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalized image -> (F1, F2, F3), all NCHW; ``gate`` (if any) is applied to F1 and F2."""
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise BenchmarkError(
                f"EfficientSwin backbone was built for {self.img_size}x{self.img_size} input, "
                f"got {tuple(x.shape[-2:])}; build the model with img_size={x.shape[-1]}"
            )
        f1 = self.stage1(self.stem(x))
        if gate is not None:
            f1 = gate(f1)
        f2 = self.stage2(f1)
        if gate is not None:
            f2 = gate(f2)
        f3 = self.stage3(f2.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return f1, f2, f3
