"""WBC-centred square crops at one relative scale for every domain.

Why: the source domains frame cells very differently (Zheng D1: a tight ~110 px field around
the cell; Zheng D2: 300 px CellaVision field; BCCD: a whole 640x480 smear field with up to two
WBCs; PBC: 360x363 CellaVision field with the cell in the centre). A model must not be able to
tell the domain, or the class, from framing alone, so every loader crops the same way:

* the **WBC box** is the bounding box of the cell (nucleus + cytoplasm);
* the crop is a **square centred on the box centre with side = CONTEXT (1.5) x the box's longer
  side**, so the cell spans 2/3 of the crop in every domain;
* where the square leaves the frame it is **padded with a constant colour: the per-channel median
  of the image's 1-pixel outer border ring, using only ring pixels the mask marks background
  when a mask exists** (the smear background, not the cell; mirrored padding would invent
  cells); mask padding is background (0);
* the square is resized to ``size`` x ``size``: image bilinear (antialiased, so area-like when
  shrinking), mask nearest.

Where the WBC box comes from, per domain (the loaders in :mod:`benchmark.data.real` apply it):

* **zheng_d1, zheng_d2**: bounding box of all mask pixels >= 64 (the WBC; masks are 0/128/255).
* **bccd**: bounding box of one connected component (8-connectivity) of the thresholded Banik
  mask; one crop per component of at least ``MIN_COMPONENT_PX`` (1000 px; real WBCs there are
  >= 5,878 px, smaller ones are JPEG specks). The crop mask keeps every WBC pixel in the window
  (a neighbouring WBC stays labelled as WBC; it is truth).
* **pbc** and mask-less ``folder`` data: no mask, so :func:`detect_wbc_box` finds the cell
  training-free from blue-minus-red (B - R): under Romanowsky stains the nucleus is the bluest
  object, the WBC cytoplasm next, red cells and background the least. The nucleus blob
  containing (else nearest to) the frame centre is the seed, because CellaVision centres the
  cell it classifies; the box then takes in the paler cytoplasm connected to it (details in the
  function). Checked against the Zheng D2 masks (CellaVision too) at PBC's working resolution
  (subsampled by 2): median box IoU 0.91, median longer-side ratio 0.98 (5th-95th percentile
  0.72-1.11). Eosinophils' orange granular cytoplasm is the part it most often leaves out. If
  no plausible blob is found the box falls back to a centred square of side
  ``min(H, W) / CONTEXT`` (the crop is then the central ``min(H, W)`` square) and the sample's
  ``meta["box"]`` says ``"centre_fallback"``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

from benchmark.data.sample import MASK_BACKGROUND, MASK_CYTOPLASM, MASK_NUCLEUS

CONTEXT = 1.5
"""Crop side / WBC box longer side: 1.5 keeps a ring of neighbouring cells for context."""

MIN_COMPONENT_PX = 1000
"""Smallest mask component kept as a WBC (BCCD JPEG-noise specks are 1-2 px, WBCs >= 5,878 px)."""

WBC_GREY_MIN, NUCLEUS_GREY_MIN = 64, 192
"""Grey-mask thresholds: >= 64 is WBC, >= 192 nucleus. Zheng masks are 0/128/255 (a few
interpolated edge values in D2), Banik BCCD masks ~0/~158/~255 with JPEG noise."""

DETECT_WORK_SIDE = 160
"""The detector subsamples by an integer step so the shorter side is about this (PBC: step 2)."""

_DETECT_MIN_AREA = 0.005
_DETECT_MAX_AREA = 0.6
"""A nucleus seed must cover 0.5%..60% of the frame (smaller: platelets and specks; larger: Otsu
split the smear itself), and a cell box larger than 60% means it leaked into the smear, in which
case the seed's own box is used."""


@dataclass(frozen=True)
class Box:
    """Half-open pixel box [y0, y1) x [x0, x1)."""

    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def longer_side(self) -> int:
        return max(self.y1 - self.y0, self.x1 - self.x0)


def grey_to_codes(grey: np.ndarray) -> np.ndarray:
    """Map a grey mask (0 bg, mid cytoplasm, bright nucleus) to codes {0,1,2} by thresholds."""
    codes = np.full(grey.shape, MASK_BACKGROUND, np.uint8)
    codes[grey >= WBC_GREY_MIN] = MASK_CYTOPLASM
    codes[grey >= NUCLEUS_GREY_MIN] = MASK_NUCLEUS
    return codes


def mask_box(wbc: np.ndarray) -> Box | None:
    """Bounding box of the true pixels of a boolean WBC map; None if there are none."""
    rows, cols = np.nonzero(wbc.any(axis=1))[0], np.nonzero(wbc.any(axis=0))[0]
    if rows.size == 0:
        return None
    return Box(int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)


_EIGHT_CONNECTED = np.ones((3, 3), bool)


def _labelled(binary: np.ndarray) -> tuple[np.ndarray, int, np.ndarray, list[Box]]:
    """8-connected components: label image, count, pixel count per label (index 0 = background)
    and each component's box, in raster order of their first pixel."""
    labels, n = ndimage.label(binary, structure=_EIGHT_CONNECTED)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    boxes = [Box(sl[0].start, sl[1].start, sl[0].stop, sl[1].stop) for sl in ndimage.find_objects(labels)]
    return labels, n, sizes, boxes


def wbc_components(wbc: np.ndarray, min_px: int = MIN_COMPONENT_PX) -> tuple[list[Box], np.ndarray, int]:
    """Boxes of the 8-connected WBC components of at least ``min_px`` pixels (in raster order of
    their first pixel), the WBC map without the smaller ones, and how many were dropped."""
    labels, n, sizes, boxes = _labelled(wbc)
    keep = sizes >= min_px
    keep[0] = False
    return [b for b, k in zip(boxes, keep[1:]) if k], keep[labels], n - int(keep.sum())


def _central_blob(binary: np.ndarray) -> np.ndarray | None:
    """The plausible-sized blob containing the frame centre, else the one whose box centre is nearest."""
    labels, n, sizes, boxes = _labelled(binary)
    h, w = binary.shape
    candidates = [i for i in range(1, n + 1) if _DETECT_MIN_AREA * h * w <= sizes[i] <= _DETECT_MAX_AREA * h * w]
    if not candidates:
        return None
    centre_label = int(labels[h // 2, w // 2])
    if centre_label not in candidates:
        dist = [np.hypot((b.y0 + b.y1 - h) / 2, (b.x0 + b.x1 - w) / 2) for b in (boxes[i - 1] for i in candidates)]
        centre_label = candidates[int(np.argmin(dist))]
    return labels == centre_label


def detect_wbc_box(image: np.ndarray, work_side: int = DETECT_WORK_SIDE) -> Box | None:
    """Training-free WBC box for images without a mask (see the module docstring); None if no
    plausible cell is found.

    Two thresholds on blue-minus-red (B - R, blurred, offset by 128 into 0..255): Otsu splits the
    dark nucleus from everything; the nucleus blob at the centre is the seed. The cell is the seed
    plus the connected regions above the midpoint between Otsu's threshold and the median of the
    pixels below it (the smear), which takes in the paler cytoplasm and separate nuclear lobes.
    Runs on the image subsampled so its shorter side is about ``work_side`` px (speed), and
    returns the box in full-resolution pixels.
    """
    step = max(1, min(image.shape[:2]) // work_side)
    rgb = image[::step, ::step].astype(np.int16)
    blue_excess = np.clip(rgb[..., 2] - rgb[..., 0] + 128, 0, 255).astype(np.uint8)
    blue_excess = cv2.GaussianBlur(blue_excess, (5, 5), 0)
    nucleus_t, nuclei = cv2.threshold(blue_excess, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    seed = _central_blob(cv2.morphologyEx(nuclei, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)))
    if seed is None:
        return None
    below = np.bincount(blue_excess.ravel(), minlength=256)[: int(nucleus_t) + 1]
    smear_level = int(np.searchsorted(np.cumsum(below), below.sum() / 2))
    cell = (blue_excess >= (smear_level + nucleus_t) / 2).astype(np.uint8)
    kernel = np.ones((5, 5), np.uint8)
    cell = cv2.morphologyEx(cv2.morphologyEx(cell, cv2.MORPH_CLOSE, kernel), cv2.MORPH_OPEN, kernel)
    labels, n = ndimage.label(cell | seed, structure=_EIGHT_CONNECTED)
    touching = np.zeros(n + 1, bool)
    touching[labels[seed]] = True
    box = mask_box(touching[labels])
    h, w = cell.shape
    if box is None or (box.y1 - box.y0) * (box.x1 - box.x0) > _DETECT_MAX_AREA * h * w:
        box = mask_box(seed)
    height, width = image.shape[:2]
    return Box(box.y0 * step, box.x0 * step, min(box.y1 * step, height), min(box.x1 * step, width))


def centre_fallback_box(height: int, width: int) -> Box:
    """Centred square whose crop (x CONTEXT) is the central min(H, W) square of the frame."""
    side = int(round(min(height, width) / CONTEXT))
    y0, x0 = (height - side) // 2, (width - side) // 2
    return Box(y0, x0, y0 + side, x0 + side)


def border_colour(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Median RGB of the 1-px outer ring, restricted to background pixels when a mask is known."""
    ring = np.zeros(image.shape[:2], bool)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    if mask is not None and (ring & (mask == MASK_BACKGROUND)).any():
        ring &= mask == MASK_BACKGROUND
    return np.median(image[ring], axis=0).round().astype(np.uint8)


def crop_square(
    image: np.ndarray, mask: np.ndarray | None, box: Box, size: int, context: float = CONTEXT
) -> tuple[np.ndarray, np.ndarray | None]:
    """Square of side ``context * box.longer_side`` centred on ``box``, padded outside the frame
    with :func:`border_colour`, resized to ``size`` px (image bilinear, mask nearest)."""
    side = max(2, int(round(context * box.longer_side)))
    cy, cx = (box.y0 + box.y1) / 2, (box.x0 + box.x1) / 2
    top, left = int(round(cy - side / 2)), int(round(cx - side / 2))
    h, w = image.shape[:2]
    sy0, sx0, sy1, sx1 = max(top, 0), max(left, 0), min(top + side, h), min(left + side, w)
    dy0, dx0 = sy0 - top, sx0 - left

    canvas = np.empty((side, side, 3), np.uint8)
    canvas[:] = border_colour(image, mask)
    canvas[dy0 : dy0 + sy1 - sy0, dx0 : dx0 + sx1 - sx0] = image[sy0:sy1, sx0:sx1]
    out_image = np.asarray(Image.fromarray(canvas).resize((size, size), Image.Resampling.BILINEAR))

    if mask is None:
        return out_image, None
    mcanvas = np.full((side, side), MASK_BACKGROUND, np.uint8)
    mcanvas[dy0 : dy0 + sy1 - sy0, dx0 : dx0 + sx1 - sx0] = mask[sy0:sy1, sx0:sx1]
    out_mask = np.asarray(Image.fromarray(mcanvas).resize((size, size), Image.Resampling.NEAREST))
    return out_image, out_mask
