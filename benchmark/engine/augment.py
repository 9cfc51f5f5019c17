"""The paper's training augmentation on whole batches of tensors, on the device that trains.

SPEC's recipe (rotation +-15 degrees, horizontal and vertical flips, contrast, Gaussian noise) as
batched tensor operations, so a GPU job never waits for per-image work on a CPU core (the former
albumentations pipeline fed an H200 at 0.12 of its bare training speed). One code path serves CPU
and GPU. Every random draw is a function of (seed, epoch): the per-image parameters come from a
CPU generator, so they are the same on every device; the noise pixels come from a generator on
the training device, seeded from that stream (the same numbers on every run of one device type).
What differs from the albumentations version is written in docs/decisions.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PaperAugment:
    """Probabilities and ranges of each transform, applied in this order (as the paper lists them)."""

    rotate_degrees: float = 15.0
    p_rotate: float = 0.5
    p_hflip: float = 0.5
    p_vflip: float = 0.5
    contrast: float = 0.2
    """Contrast factor drawn from [1 - contrast, 1 + contrast]; intensities are multiplied by it."""
    p_contrast: float = 0.5
    noise_std: tuple[float, float] = (0.01, 0.05)
    """Standard deviation of the additive Gaussian noise, in units of the intensity range [0, 1]."""
    p_noise: float = 0.3

    def __call__(self, images: torch.Tensor, masks: torch.Tensor, params: torch.Generator,
                 noise: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``images`` (B,3,H,W) float in [0, 1], ``masks`` (B,H,W) integer labels, both on one device;
        returns augmented copies. ``params`` (CPU) draws each image's parameters, ``noise`` (on the
        images' device) the noise pixels."""
        n, device = images.shape[0], images.device
        u = torch.rand(n, 6, generator=params)  # per image: rotate?, angle, hflip?, vflip?, contrast?, noise?
        factor = 1.0 + (2.0 * torch.rand(n, generator=params) - 1.0) * self.contrast
        std = self.noise_std[0] + torch.rand(n, generator=params) * (self.noise_std[1] - self.noise_std[0])
        rotate = u[:, 0] < self.p_rotate
        if bool(rotate.any()):  # a CPU tensor: no device sync
            angles = (2.0 * u[:, 1] - 1.0) * self.rotate_degrees
            images, masks = rotate_subset(images, masks, rotate.to(device), angles)
        hflip, vflip = (u[:, 2] < self.p_hflip).to(device), (u[:, 3] < self.p_vflip).to(device)
        images = torch.where(hflip[:, None, None, None], images.flip(-1), images)
        masks = torch.where(hflip[:, None, None], masks.flip(-1), masks)
        images = torch.where(vflip[:, None, None, None], images.flip(-2), images)
        masks = torch.where(vflip[:, None, None], masks.flip(-2), masks)
        scale = torch.where(u[:, 4] < self.p_contrast, factor, torch.ones(n)).to(device)
        images = (images * scale[:, None, None, None]).clamp_(0.0, 1.0)
        noisy = u[:, 5] < self.p_noise
        sigma = torch.where(noisy, std, torch.zeros(n)).to(device)
        if bool(noisy.any()):  # decided on the CPU copy: no device sync
            z = torch.randn(images.shape, generator=noise, device=device, dtype=images.dtype)
            images = (images + z * sigma[:, None, None, None]).clamp_(0.0, 1.0)
        return images, masks


def rotation_grid(angles_deg: torch.Tensor, height: int, width: int, device: torch.device) -> torch.Tensor:
    """``affine_grid`` sampling grid of a rotation about the image centre, per image; normalised
    coordinates are rescaled by the aspect ratio so a non-square image rotates rigidly."""
    a = angles_deg.to(torch.float32) * (math.pi / 180.0)
    cos, sin = torch.cos(a), torch.sin(a)
    zero = torch.zeros_like(a)
    theta = torch.stack([torch.stack([cos, -sin * height / width, zero], 1),
                         torch.stack([sin * width / height, cos, zero], 1)], 1)
    return F.affine_grid(theta.to(device), [len(a), 1, height, width], align_corners=False)


def rotate_subset(images: torch.Tensor, masks: torch.Tensor, chosen: torch.Tensor,
                  angles_deg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate the ``chosen`` images (bilinear) and masks (nearest), borders filled by reflection;
    the others come back bit-identical (every image is resampled, in one launch without a host sync,
    and ``torch.where`` keeps the originals of those not chosen)."""
    grid = rotation_grid(angles_deg, images.shape[-2], images.shape[-1], images.device).to(images.dtype)
    rotated = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    rotated_masks = F.grid_sample(masks[:, None].to(images.dtype), grid, mode="nearest", padding_mode="reflection",
                                  align_corners=False)[:, 0].round().to(masks.dtype)
    return (torch.where(chosen[:, None, None, None], rotated, images),
            torch.where(chosen[:, None, None], rotated_masks, masks))
