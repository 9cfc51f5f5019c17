"""Reading a dataset's files into samples: decode an image or a mask (a clear error naming the file),
and crop it square around its WBC box. Shared by the built-in loaders (:mod:`wbcdata.real`) and the
user-folder format (:mod:`wbcdata.folder`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from core.errors import BenchmarkError
from core.sample import Sample
from wbcdata.crops import DETECTOR_VERSION, Box, centre_fallback_box, crop_square, detect_wbc_box, grey_to_codes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
CACHE_VERSION = "v1"
"""Bump when the crop rule, thresholds or label rules change: load_dataset caches by it."""
DETECTED_CACHE_VERSION = f"{CACHE_VERSION}-{DETECTOR_VERSION}"
"""Cache key of the datasets framed by the detector: a new detector rule never reuses old crops."""


@dataclass(frozen=True)
class Record:
    """One future sample, before decoding: where its pixels and mask are and its label."""

    id: str
    image: Path
    mask: Path | None
    label: int | None
    box: Box | None = None
    """Set where the inventory already knows the WBC box (BCCD components)."""


def read_rgb(path: Path) -> np.ndarray:
    """Decode an image as HxWx3 uint8 RGB, or raise a BenchmarkError naming the file."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise BenchmarkError(f"{path}: unreadable image ({e})") from e


def read_mask_codes(
    path: Path, image_shape: tuple[int, ...], image_path: Path, *, codes_ok: bool = False, raw: bool = False
) -> np.ndarray:
    """Decode a grey (or RGB) mask as codes {0,1,2}: thresholded grey levels, or taken as is when
    ``codes_ok`` and its maximum is <= 2; with ``raw`` the grey levels themselves (a user folder's
    descriptor says what they mean). Its size must match the image's."""
    try:
        with Image.open(path) as im:
            grey = np.asarray(im.convert("L"))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise BenchmarkError(f"{path}: unreadable mask ({e})") from e
    if grey.shape != tuple(image_shape[:2]):
        raise BenchmarkError(
            f"{path}: mask is {grey.shape[1]}x{grey.shape[0]} px but image {image_path} is "
            f"{image_shape[1]}x{image_shape[0]} px"
        )
    if raw or (codes_ok and grey.max() <= 2):
        return grey.copy()
    return grey_to_codes(grey)


def relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def crop_sample(
    rec: Record, root: Path, size: int, dataset: str, domain: str, image: np.ndarray,
    codes: np.ndarray | None, box: Box, how: str,
) -> Sample:
    img, mask = crop_square(image, codes, box, size)
    return Sample(rec.id, img, mask, rec.label, dataset, domain, relative(rec.image, root), {"box": how})


def detected_box(image: np.ndarray) -> tuple[Box, str]:
    box = detect_wbc_box(image)
    if box is None:
        return centre_fallback_box(*image.shape[:2]), "centre_fallback"
    return box, "detected"
