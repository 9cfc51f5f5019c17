"""The training-free saliency prior A that SG-CLDFF's learned saliency map S is aligned to.

Default (``"hematoxylin"``): frequency-tuned saliency (Achanta et al. 2009: distance of a
slightly blurred image from the image mean) computed on the hematoxylin channel of a
Ruifrok-Johnston colour deconvolution instead of on Lab. WHY this space: in Romanowsky /
Giemsa / rapid-stained smears the WBC nucleus is the strongest hematoxylin-like (blue-purple)
absorber, while red cells absorb mostly in the eosin band and the background hardly at all, so
the hematoxylin channel separates nuclei from red cells where Lab contrast does not. Only the
positive side of the distance (more stain than the image mean) counts as salient, because
pale background is below the mean and would otherwise be "salient" too.

Measured on real masked images (60 per domain, 96 px; share of prior mass inside the WBC mask,
chance = WBC area fraction): Zheng D1 0.96 (chance 0.34), Zheng D2 0.93 (0.22), BCCD 0.66
(0.06); the classical Lab frequency-tuned map, same pipeline, scored 0.52 / 0.43 / 0.21.

Everything is torch on the batch, so the prior runs on whatever device the model runs on.
``"mask"`` uses the ground-truth WBC mask and is a training-only, label-leaking variant.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.errors import BenchmarkError

PRIORS: tuple[str, ...] = ("hematoxylin", "mask")
"""Valid ``prior`` names; ``"hematoxylin"`` is the default and never looks at labels."""

# Ruifrok & Johnston (2001) stain OD vectors (rows: hematoxylin, eosin, DAB), as in skimage.
_RGB_FROM_HED = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
_HED_FROM_RGB = torch.linalg.inv(_RGB_FROM_HED)

_BLUR_SIGMA = 1.0
"""Gaussian sigma in pixels of the prior's grid (1/4 of the input, so ~4 input pixels):
the frequency-tuned method keeps low spatial frequencies and drops texture and noise."""


def hematoxylin_density(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) float32 hematoxylin concentration (optical-density
    units). Float32 with autocast off: under bf16 autocast the einsum would run as a bf16 matmul."""
    with torch.autocast(image.device.type, enabled=False):
        od = -torch.log(image.float().clamp(min=1.0 / 255.0))
        hed = torch.einsum("bchw,cs->bshw", od, _HED_FROM_RGB.to(image.device))
    return hed[:, :1]


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable per-channel Gaussian blur, reflect padding (radius capped so tiny maps work)."""
    radius = max(1, min(int(round(3 * sigma)), x.shape[-2] - 1, x.shape[-1] - 1))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = (g / g.sum()).repeat(x.shape[1], 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), g[:, None, None, :], groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), g[:, None, :, None], groups=x.shape[1])


def _normalize_per_image(s: torch.Tensor) -> torch.Tensor:
    """Min-max to [0, 1] per image; a flat map (no contrast at all) becomes all zeros."""
    lo = s.amin(dim=(2, 3), keepdim=True)
    hi = s.amax(dim=(2, 3), keepdim=True)
    return (s - lo) / (hi - lo).clamp(min=1e-6)


@torch.no_grad()
def saliency_prior(
    image: torch.Tensor,
    size: tuple[int, int],
    prior: str = "hematoxylin",
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The prior A at ``size`` (S's resolution): (B, 1, h, w) float32 in [0, 1], no gradient.

    ``image``: (B, 3, H, W) RGB in [0, 1] (not normalized). ``mask`` (B, H, W) in {0, 1, 2} is
    needed only for ``prior="mask"``, which returns the area-averaged WBC mask. Float32 with
    autocast off, whatever precision the model runs in: A is a fixed target, so a GPU's bf16
    autocast must not change it (nor make GPU and CPU results differ).
    """
    if prior not in PRIORS:
        raise BenchmarkError(f"unknown saliency prior '{prior}'; valid priors: {', '.join(PRIORS)}")
    if image.ndim != 4 or image.shape[1] != 3:
        raise BenchmarkError(f"saliency prior expects images (B, 3, H, W), got {tuple(image.shape)}")
    with torch.autocast(image.device.type, enabled=False):
        if prior == "mask":
            if mask is None:
                raise BenchmarkError("saliency prior 'mask' needs the batch's ground-truth mask")
            return F.adaptive_avg_pool2d((mask > 0).unsqueeze(1).float(), size)
        density = F.adaptive_avg_pool2d(hematoxylin_density(image), size)
        blurred = _gaussian_blur(density, _BLUR_SIGMA)
        excess = F.relu(blurred - density.mean(dim=(2, 3), keepdim=True))
        return _normalize_per_image(excess)
