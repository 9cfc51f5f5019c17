"""Stain operations: per-domain Macenko stain profiles, re-staining, and HED perturbation.

Why these three: the cross-stain protocol tests a model on held-out images whose *stain* is
changed while geometry (and so the mask and label) is untouched. Re-staining moves an image into
another domain's appearance (stain vectors estimated from that domain); HED perturbation gives a
graded, domain-free severity axis.

Conventions. Optical density is ``OD = -ln((I + 1) / (I0 + 1))`` per channel, with ``I0`` the
estimated background (illumination) colour of the domain, so bare glass has OD 0 whatever its
tint. Stain matrices are 3x2 with unit OD vectors as columns (hematoxylin-like, eosin-like), the
layout of torchstain's ``HERef``. Macenko estimation itself is torchstain's
(:class:`torchstain.numpy.normalizers.NumpyMacenkoNormalizer`), run on background-balanced pixels.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from torchstain.numpy.normalizers import NumpyMacenkoNormalizer

from core.errors import BenchmarkError

RUIFROK_RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
"""Ruifrok & Johnston (2001) H, E, DAB OD vectors (rows), as in scikit-image's ``rgb_from_hed``."""
RUIFROK_HED_FROM_RGB = np.linalg.inv(RUIFROK_RGB_FROM_HED)

FALLBACK_STAIN_MATRIX = (RUIFROK_RGB_FROM_HED[:2] / np.linalg.norm(RUIFROK_RGB_FROM_HED[:2], axis=1, keepdims=True)).T
"""Used when Macenko fails: the standard Ruifrok hematoxylin/eosin vectors (3x2, unit columns)."""
FALLBACK_MAX_CONCENTRATION = np.array([1.9705, 1.0308])
"""torchstain's (Macenko's) reference 99th-percentile concentrations, used when none can be measured."""

OD_THRESHOLD = 0.05
"""Macenko's ``beta``: a pixel counts as stained only if its OD is >= this in every channel.
Lower than torchstain's 0.15 because smear crops are mostly pale (plasma, red cells); at 0.15 the
eosin-like stain of red cells is dropped and the estimate rests on the WBC alone."""
ANGLE_PERCENTILE = 1.0
"""Macenko's ``alpha``: robust extreme angles at the 1st/99th percentile (torchstain's default)."""
MIN_TISSUE_PIXELS = 500
MIN_STAIN_ANGLE_DEG = 3.0
MAX_NEGATIVE_COMPONENT = -0.05
MAX_POOLED_PIXELS = 200_000
HED_SHIFT_DIVISOR = 2.0
"""``hed_perturb`` shift bound is severity / this (in OD units); see :func:`hed_perturb`."""


@dataclass
class StainProfile:
    """One domain's stain: ``stain_matrix`` 3x2 (unit OD columns H, E), ``max_concentration``
    (99th-percentile H and E concentrations, the reference for rescaling), ``background`` I0
    (RGB), and whether Macenko failed and the fallback was used (``reason`` says why)."""

    domain: str
    stain_matrix: np.ndarray
    max_concentration: np.ndarray
    background: np.ndarray
    fallback: bool = False
    reason: str = ""
    n_pixels: int = 0

    def to_dict(self) -> dict:
        return {
            "domain": self.domain,
            "stain_matrix": np.asarray(self.stain_matrix, float).tolist(),
            "max_concentration": np.asarray(self.max_concentration, float).tolist(),
            "background": np.asarray(self.background, float).tolist(),
            "fallback": bool(self.fallback),
            "reason": self.reason,
            "n_pixels": int(self.n_pixels),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "StainProfile":
        try:
            profile = cls(
                domain=str(d["domain"]),
                stain_matrix=np.asarray(d["stain_matrix"], dtype=float),
                max_concentration=np.asarray(d["max_concentration"], dtype=float),
                background=np.asarray(d["background"], dtype=float),
                fallback=bool(d["fallback"]),
                reason=str(d.get("reason", "")),
                n_pixels=int(d.get("n_pixels", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BenchmarkError(f"stain profile dict is malformed ({exc!r}): {d}") from exc
        shapes = (profile.stain_matrix.shape, profile.max_concentration.shape, profile.background.shape)
        if shapes != ((3, 2), (2,), (3,)):
            raise BenchmarkError(f"stain profile '{profile.domain}': expected shapes (3,2),(2,),(3,), got {shapes}")
        if not (np.all(np.isfinite(profile.max_concentration)) and np.all(profile.max_concentration > 0)):
            raise BenchmarkError(f"stain profile '{profile.domain}': max_concentration must be positive")
        return profile


@dataclass
class StainStats:
    """Counts Macenko estimates and failures so reports can say "Macenko failed on N of M"."""

    attempts: int = 0
    failures: int = 0
    reasons: list[str] = field(default_factory=list)

    def record(self, profile: StainProfile) -> None:
        self.attempts += 1
        if profile.fallback:
            self.failures += 1
            self.reasons.append(f"{profile.domain}: {profile.reason}")

    def summary(self) -> str:
        text = f"Macenko failed on {self.failures} of {self.attempts} domain estimates"
        return text + (" (" + "; ".join(self.reasons) + ")" if self.reasons else "")

    def reset(self) -> None:
        self.attempts, self.failures, self.reasons = 0, 0, []


STATS = StainStats()
"""Process-wide counter that :func:`estimate_profile` records into unless given its own."""


def _check_image(image: np.ndarray, what: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise BenchmarkError(f"{what}: expected an HxWx3 uint8 RGB image, got {desc}")


def to_od(pixels: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Optical density relative to ``background`` (bare glass -> 0); float64, same shape."""
    return np.log(np.asarray(background, float) + 1.0) - np.log(pixels.astype(float) + 1.0)


def from_od(od: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_od`, rounded and clipped to uint8."""
    rgb = (np.asarray(background, float) + 1.0) * np.exp(-od) - 1.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _image_background(image: np.ndarray) -> np.ndarray:
    """Per-channel median of the brightest 10% of an image's pixels (plasma / bare glass)."""
    pixels = image.reshape(-1, 3)
    luminance = pixels.astype(np.int32).sum(axis=1)
    return np.maximum(np.median(pixels[luminance >= np.percentile(luminance, 90)], axis=0), 1.0)


def _pooled_od(images: list[np.ndarray], domain: str) -> tuple[np.ndarray, np.ndarray]:
    """(OD of up to ``MAX_POOLED_PIXELS`` pixels, the domain's I0).

    I0 is estimated, not assumed: Macenko assumes a white background (torchstain: I0 = 240
    grey), so the rapid stain's yellow glass would read as yellow *stain*. The domain's I0 is
    the per-channel median over images of each image's background, so the majority decides in
    a mixed domain (Zheng D1: 200 images on yellow, 100 on white glass; pooling pixels first
    lets the saturated white win). Each image's pixels are taken against its own background,
    so such a domain still yields one consistent OD cloud. The subsample is fixed-seed.
    """
    if not images:
        raise BenchmarkError(f"estimate_profile: no images given for domain '{domain}'")
    for i, image in enumerate(images):
        _check_image(image, f"estimate_profile: domain '{domain}', image {i}")
    rng = np.random.default_rng(0)
    per_image = max(1, MAX_POOLED_PIXELS // len(images))
    backgrounds, ods = [], []
    for image in images:
        pixels = image.reshape(-1, 3)
        if len(pixels) > per_image:
            pixels = pixels[rng.choice(len(pixels), per_image, replace=False)]
        backgrounds.append(_image_background(image))
        ods.append(to_od(pixels, backgrounds[-1]))
    return np.concatenate(ods), np.median(np.stack(backgrounds), axis=0)


def _macenko(od: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """torchstain's Macenko fit on OD pixels: (3x2 stain matrix, 99th-percentile concentrations).

    torchstain works on intensities with a scalar I0; feeding it ``256 * exp(-OD) - 1`` with
    ``Io=256`` makes its OD equal ours (background-balanced), whatever the domain's tint.
    """
    normalizer = NumpyMacenkoNormalizer()
    balanced = 256.0 * np.exp(-od) - 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # NaN-producing numpy paths become failures
        normalizer.fit(balanced, Io=256, alpha=ANGLE_PERCENTILE, beta=OD_THRESHOLD)
    return np.asarray(normalizer.HERef, float), np.asarray(normalizer.maxCRef, float)


def _validate(matrix: np.ndarray, max_c: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Normalized stain matrix, or None and why it is unusable."""
    if not (np.all(np.isfinite(matrix)) and np.all(np.isfinite(max_c))):
        return None, "non-finite stain vectors or concentrations"
    norms = np.linalg.norm(matrix, axis=0)
    if np.any(norms < 1e-6):
        return None, "zero-length stain vector"
    matrix = matrix / norms
    if matrix.min() < MAX_NEGATIVE_COMPONENT:
        return None, f"stain vector with a negative component ({matrix.min():.3f})"
    angle = np.degrees(np.arccos(np.clip(abs(matrix[:, 0] @ matrix[:, 1]), 0.0, 1.0)))
    if angle < MIN_STAIN_ANGLE_DEG:
        return None, f"near-collinear stain vectors ({angle:.1f} deg apart)"
    if np.any(max_c <= 1e-3):
        return None, f"non-positive max concentration {np.round(max_c, 4).tolist()}"
    matrix = np.clip(matrix, 0.0, None)
    return matrix / np.linalg.norm(matrix, axis=0), ""


def _hematoxylin_first(matrix: np.ndarray, max_c: np.ndarray, tissue_od: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order the two vectors so that column 0 is the nuclear (hematoxylin-like) stain.

    torchstain calls the vector with the larger red OD hematoxylin, a rule made for H&E
    histology; in a rapid-stain smear the nuclei are maroon and that rule swaps the stains.
    Here the nuclear stain is the one that dominates the densest 1% of stained pixels
    (nuclei are the most absorbing objects in every Romanowsky-type smear).
    """
    total = tissue_od.sum(axis=1)
    densest = tissue_od[total >= np.percentile(total, 99)]
    conc = densest @ np.linalg.pinv(matrix).T
    if conc[:, 1].mean() > conc[:, 0].mean():
        return matrix[:, ::-1].copy(), max_c[::-1].copy()
    return matrix, max_c


def _fallback_max_concentration(tissue: np.ndarray) -> np.ndarray:
    """99th-percentile concentrations under the fallback vectors, or Macenko's reference if unmeasurable."""
    if len(tissue) < MIN_TISSUE_PIXELS:
        return FALLBACK_MAX_CONCENTRATION.copy()
    conc = tissue @ np.linalg.pinv(FALLBACK_STAIN_MATRIX).T
    max_c = np.percentile(conc, 99, axis=0)
    return max_c if np.all(max_c > 1e-3) else FALLBACK_MAX_CONCENTRATION.copy()


def estimate_profile(images: list[np.ndarray], domain: str, stats: StainStats | None = None) -> StainProfile:
    """Macenko stain profile of a domain from a pool of its pixels, with failure detection.

    Failures (an exception or NaN inside Macenko, fewer than ``MIN_TISSUE_PIXELS`` stained
    pixels, non-finite, negative or near-collinear vectors) fall back to the Ruifrok H&E vectors
    with concentrations measured under them; ``fallback``/``reason`` say so and ``stats``
    (default: the module's :data:`STATS`) counts it.
    """
    od, background = _pooled_od(images, domain)
    tissue = od[np.all(od >= OD_THRESHOLD, axis=1)]
    n_tissue = len(tissue)
    matrix, reason = None, ""
    if n_tissue < MIN_TISSUE_PIXELS:
        reason = f"too few stained pixels ({n_tissue} < {MIN_TISSUE_PIXELS})"
    else:
        try:
            raw_matrix, max_c = _macenko(od)
            matrix, reason = _validate(raw_matrix, max_c)
            if matrix is not None:
                matrix, max_c = _hematoxylin_first(matrix, max_c, tissue)
        except (np.linalg.LinAlgError, ValueError, IndexError, FloatingPointError, RuntimeWarning) as exc:
            reason = f"Macenko raised {type(exc).__name__}: {exc}"
    if matrix is None:
        fallback_max_c = _fallback_max_concentration(tissue)
        profile = StainProfile(domain, FALLBACK_STAIN_MATRIX.copy(), fallback_max_c, background, True, reason, n_tissue)
    else:
        profile = StainProfile(domain, matrix, max_c, background, False, "", n_tissue)
    (STATS if stats is None else stats).record(profile)
    return profile


def concentrations(image: np.ndarray, profile: StainProfile) -> np.ndarray:
    """Per-pixel (H, E) concentrations of ``image`` under ``profile``, HxWx2, clipped at 0.

    Least squares, then clipped: stain amounts are physically non-negative (StainTools solves
    with a positivity constraint). Negative values come from noise and from pixels brighter than
    the estimated background; re-staining would otherwise amplify them into false colours.
    """
    _check_image(image, f"concentrations ({profile.domain})")
    od = to_od(image, profile.background)
    return np.maximum(od @ np.linalg.pinv(profile.stain_matrix).T, 0.0)


def restain(image: np.ndarray, source: StainProfile, target: StainProfile) -> np.ndarray:
    """``image`` (stained as ``source``) shown in ``target``'s stain; same shape, uint8.

    Macenko normalization with explicit profiles: deconvolve with the source vectors and
    background, rescale each concentration by target/source reference maxima, recompose with the
    target's vectors and background. The OD residual outside the source's stain plane is
    dropped (standard Macenko). Only colour changes, pixel by pixel, so masks stay valid.
    """
    _check_image(image, f"restain {source.domain} -> {target.domain}")
    conc = concentrations(image, source) * (target.max_concentration / source.max_concentration)
    return from_od(conc @ np.asarray(target.stain_matrix, float).T, target.background)


def hed_perturb(image: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """HED-space stain jitter (Tellez et al. 2018), uint8 in and out.

    The image is unmixed into Ruifrok H, E, DAB concentrations, each channel ``c`` becomes
    ``alpha_c * c + beta_c`` with ``alpha_c ~ U(1 - s, 1 + s)`` and
    ``beta_c ~ U(-s / HED_SHIFT_DIVISOR, s / HED_SHIFT_DIVISOR)`` (OD units; ``s`` = severity),
    and it is recomposed. OD is taken against a white 255 background: ``-ln((I + 1) / 256)``.
    Severity 0 returns the image exactly; six numbers are drawn from ``rng`` at any severity so
    the stream does not depend on it.
    """
    _check_image(image, "hed_perturb")
    if not np.isfinite(severity) or severity < 0:
        raise BenchmarkError(f"hed_perturb: severity must be a finite number >= 0, got {severity}")
    alpha = rng.uniform(1.0 - severity, 1.0 + severity, 3)
    beta = rng.uniform(-severity / HED_SHIFT_DIVISOR, severity / HED_SHIFT_DIVISOR, 3)
    white = np.full(3, 255.0)
    hed = to_od(image, white) @ RUIFROK_HED_FROM_RGB
    return from_od((hed * alpha + beta) @ RUIFROK_RGB_FROM_HED, white)
