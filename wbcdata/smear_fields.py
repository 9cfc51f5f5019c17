"""Fields on a smear's pixel grid, the procedural smears' drawing tools: pixel coordinates, smooth
band-limited textures and sensor noise (random-offset crops of fixed tiles), signed distances of
discs, ellipses and capsules, anti-aliased coverage, rotation into cell-local axes, optical blur."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage


@lru_cache(maxsize=8)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), computed once per size."""
    axis = np.arange(size, dtype=np.float32) + 0.5
    return axis[:, None].repeat(size, 1), axis[None, :].repeat(size, 0)


@lru_cache(maxsize=32)
def _texture_tile(size: int, sigma: float) -> np.ndarray:
    """A fixed 4x-size tile of zero-mean, unit-std band-limited noise (``sigma`` in pixels).

    Filtering fresh noise per image costs more than the whole rest of a smear, so textures
    (chromatin, granules, plasma) are random-offset crops of one tile per (size, sigma).
    """
    rng = np.random.default_rng([size, int(sigma * 1000)])
    field = ndimage.gaussian_filter(rng.standard_normal((4 * size, 4 * size)).astype(np.float32), sigma, mode="wrap")
    return field / field.std()


def texture(rng: np.random.Generator, size: int, sigma: float, shape: tuple[int, int]) -> np.ndarray:
    tile = _texture_tile(size, round(sigma, 3))
    oy, ox = rng.integers(0, tile.shape[0] - shape[0] + 1), rng.integers(0, tile.shape[1] - shape[1] + 1)
    return tile[oy : oy + shape[0], ox : ox + shape[1]]


@lru_cache(maxsize=8)
def _sensor_noise_tile(size: int) -> np.ndarray:
    return np.random.default_rng([size, 0x5EED]).standard_normal((4 * size, 4 * size, 3), dtype=np.float32)


def sensor_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Unit white noise for a ``size`` crop: a random-offset crop of a fixed tile (drawing fresh
    normals costs as much as rendering)."""
    tile = _sensor_noise_tile(size)
    oy, ox = rng.integers(0, 3 * size + 1, 2)
    return tile[oy : oy + size, ox : ox + size]


def dist(dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Euclidean length; ``np.hypot`` is several times slower and its overflow care is not needed here."""
    return np.sqrt(dy * dy + dx * dx)


def coverage(sdf: np.ndarray, width: float) -> np.ndarray:
    """Anti-aliased inside-ness (1 inside, 0 outside) of a signed distance; > 0.5 exactly where sdf < 0."""
    out = 0.5 - sdf * (1.0 / width)
    return np.minimum(np.maximum(out, 0.0, out=out), 1.0, out=out)


def disc_sdf(y: np.ndarray, x: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    return dist(y - cy, x - cx) - r


def ellipse_sdf(u: np.ndarray, v: np.ndarray, cu: float, cv: float, a: float, b: float) -> np.ndarray:
    """Approximate signed distance of an axis-aligned ellipse (exact on the axes; good enough for shading)."""
    return (dist((u - cu) / a, (v - cv) / b) - 1.0) * min(a, b)


def capsule_sdf(y: np.ndarray, x: np.ndarray, p: tuple[float, float], q: tuple[float, float], r: float) -> np.ndarray:
    """Signed distance to a thick segment p-q: the chromatin strand joining nuclear lobes."""
    dy, dx = q[0] - p[0], q[1] - p[1]
    t = np.clip(((y - p[0]) * dy + (x - p[1]) * dx) / (dy * dy + dx * dx + 1e-9), 0.0, 1.0)
    return dist(y - p[0] - t * dy, x - p[1] - t * dx) - r


def rotate(y: np.ndarray, x: np.ndarray, cy: float, cx: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Cell-local coordinates (u along the cell's random axis, v across), origin at the cell centre."""
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = y - cy, x - cx
    return dx * c + dy * s, -dx * s + dy * c


def blur(a: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur of an HxWxC array (Gaussian sigma ~0.7 px), edges replicated: optical blur."""
    p = np.concatenate([a[:1], a, a[-1:]], axis=0)
    a = 0.25 * (p[:-2] + p[2:]) + 0.5 * p[1:-1]
    p = np.concatenate([a[:, :1], a, a[:, -1:]], axis=1)
    return 0.25 * (p[:, :-2] + p[:, 2:]) + 0.5 * p[:, 1:-1]
