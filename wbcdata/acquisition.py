"""Acquisition shifts: what another scanner does to the same smear, pixel values only.

Why: a stain change is one of the three shifts the study names ("stain, reagent or scanner");
these four model the scanner. Each is a deterministic uint8 -> uint8 operation of the same shape,
so masks and labels stay valid, and each is parameterized relative to the crop so a severity
means the same blur or the same resolution loss at 64 px as at 224 px (crops frame the cell
alike in every domain, :mod:`wbcdata.crops`):

- :func:`defocus`: an out-of-focus optic, a uniform disk point-spread function (geometric
  defocus), antialiased so sub-pixel radii are well defined;
- :func:`jpeg`: lossy storage, baseline JPEG with 4:2:0 chroma subsampling (what scanners write);
- :func:`gamma_curve`: another lamp and camera tone curve, ``255 (I / 255) ** gamma``;
- :func:`resample`: a coarser sensor, area-averaged down by ``factor`` and bilinearly back up to
  the model's input size.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

from core.errors import BenchmarkError

DISK_SUPERSAMPLING = 16
"""Sub-samples per pixel side when integrating the disk kernel: coverage error below 1%."""


def _check(image: np.ndarray, what: str) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise BenchmarkError(f"{what}: expected an HxWx3 uint8 image, got {image.dtype} {image.shape}")


def _positive(value: float, what: str, minimum: float = 0.0) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= minimum:
        raise BenchmarkError(f"{what} must be a finite number > {minimum:g}, got {value}")
    return value


def disk_kernel(radius: float) -> np.ndarray:
    """Normalized uniform disk of ``radius`` px; each weight is the share of its pixel the disk covers."""
    radius = _positive(radius, "defocus radius")
    half = int(np.ceil(radius))
    step = 1.0 / DISK_SUPERSAMPLING
    sub = (np.arange(DISK_SUPERSAMPLING) + 0.5) * step - 0.5
    centres = np.arange(-half, half + 1)
    coords = (centres[:, None] + sub[None, :]).ravel()
    inside = (coords[:, None] ** 2 + coords[None, :] ** 2) <= radius ** 2
    n = 2 * half + 1
    kernel = inside.reshape(n, DISK_SUPERSAMPLING, n, DISK_SUPERSAMPLING).mean(axis=(1, 3))
    return kernel / kernel.sum()


def defocus(image: np.ndarray, radius_frac: float) -> np.ndarray:
    """Disk blur of radius ``radius_frac`` x the image side (reflected borders, no dark rim)."""
    _check(image, "defocus")
    kernel = disk_kernel(_positive(radius_frac, "defocus radius_frac") * max(image.shape[:2]))
    x = image.astype(np.float32)
    out = np.stack([ndimage.convolve(x[..., c], kernel.astype(np.float32), mode="reflect") for c in range(3)], -1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode as baseline JPEG at ``quality`` (1-95, libjpeg's scale) and decode again."""
    _check(image, "jpeg")
    if not 1 <= int(quality) <= 95:
        raise BenchmarkError(f"jpeg quality must be in 1..95, got {quality}")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=int(quality), subsampling="4:2:0", optimize=False)
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8).copy()


def gamma_curve(image: np.ndarray, gamma: float) -> np.ndarray:
    """Tone curve ``255 (I / 255) ** gamma``: above 1 darker mid-tones, white stays white."""
    _check(image, "gamma_curve")
    g = _positive(gamma, "gamma")
    lut = np.clip(np.rint(255.0 * (np.arange(256) / 255.0) ** g), 0, 255).astype(np.uint8)
    return lut[image]


def resample(image: np.ndarray, factor: float) -> np.ndarray:
    """Area-average down to side / ``factor`` (a sensor with larger pixels), bilinear back up."""
    _check(image, "resample")
    f = _positive(factor, "resample factor", minimum=1.0)
    h, w = image.shape[:2]
    small = (max(1, round(w / f)), max(1, round(h / f)))
    pil = Image.fromarray(image).resize(small, Image.Resampling.BOX)
    return np.asarray(pil.resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8).copy()
