"""Procedural blood-smear crops with exact masks, renderable in several stains.

Why procedural: the cross-stain protocol needs the *same* cells under different stains with
masks that stay exact, and the real datasets cannot give that. A smear is built in two steps:

1. :func:`make_geometry` draws the scene (plasma, red cells with central pallor, one WBC with
   class-dependent morphology) as two optical-density *concentration* maps, a hematoxylin-like
   one (azure / methylene-blue: nuclei, basophilic cytoplasm and granules) and an eosin-like one
   (hemoglobin, eosinophilic granules), plus the mask (0 background incl. red cells,
   1 cytoplasm, 2 nucleus). Soft edges and optical blur live in the concentrations; the mask is
   the hard, exact partition of the same signed-distance shapes.
2. :func:`render` applies Beer-Lambert with a :class:`StainModel`:
   ``I = I0 * exp(-(C * gain) @ M.T)`` where ``M`` is the 3x2 matrix of unit OD stain vectors
   (columns: hematoxylin-like, eosin-like) and ``I0`` the background (illumination) colour.

Everything is vectorized over precomputed coordinate grids and deterministic per seed.
Lengths are fractions of the crop size, so a seed gives the same layout at any size (the
fine textures and the sensor noise are drawn per size).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wbcdata.registry import register_dataset
from wbcdata.smear_fields import blur, capsule_sdf, coverage, disc_sdf, dist, ellipse_sdf, grid, rotate, sensor_noise, texture
from core.sample import CLASSES, MASK_BACKGROUND, MASK_CYTOPLASM, MASK_NUCLEUS, Sample
from core.errors import BenchmarkError

NEUTROPHIL, LYMPHOCYTE, MONOCYTE, EOSINOPHIL, BASOPHIL = range(len(CLASSES))
MIN_SIZE = 32


def _unit(v: tuple[float, float, float]) -> tuple[float, float, float]:
    n = float(np.linalg.norm(v))
    return (v[0] / n, v[1] / n, v[2] / n)


@dataclass(frozen=True)
class StainModel:
    """The ground-truth stain of a synthetic domain.

    ``hematoxylin`` / ``eosin`` are unit optical-density vectors (R, G, B absorbance per unit
    concentration), ``background`` the illumination colour ``I0`` seen through bare glass,
    ``gain`` the per-stain uptake (how strongly this reagent/protocol stains).
    """

    name: str
    hematoxylin: tuple[float, float, float]
    eosin: tuple[float, float, float]
    background: tuple[float, float, float]
    gain: tuple[float, float]

    @property
    def stain_matrix(self) -> np.ndarray:
        """3x2 OD matrix, columns (hematoxylin-like, eosin-like): the convention of torchstain's HERef."""
        return np.array([self.hematoxylin, self.eosin], dtype=np.float64).T


STAINS: dict[str, StainModel] = {
    # Standard Romanowsky (CellaVision-like, Zheng D2 / PBC): purple nuclei, pink red cells, near-white glass.
    "synth_romanowsky": StainModel(
        "synth_romanowsky", _unit((0.58, 0.78, 0.23)), _unit((0.10, 0.72, 0.62)), (250.0, 244.0, 240.0), (1.0, 1.0)
    ),
    # Rapid stain (Zheng D1-like): yellow background, red-brown-purple nuclei, faint red cells.
    "synth_rapid": StainModel(
        "synth_rapid", _unit((0.42, 0.80, 0.44)), _unit((0.20, 0.55, 0.81)), (255.0, 243.0, 158.0), (1.05, 0.4)
    ),
    # Bluer Giemsa (thin-smear Giemsa, BCCD-like): blue-violet nuclei, mauve red cells, cool background.
    "synth_giemsa": StainModel(
        "synth_giemsa", _unit((0.76, 0.62, 0.20)), _unit((0.22, 0.80, 0.56)), (232.0, 238.0, 250.0), (0.95, 0.85)
    ),
}
"""Synthetic stain domains; each is a distinct stain matrix and background colour."""

SYNTHETIC_DOMAINS: tuple[str, ...] = tuple(STAINS)

IMAGES_PER_DOMAIN = 120
CLASS_COUNTS_PER_DOMAIN: tuple[int, ...] = (36, 30, 22, 18, 14)
"""Per-domain class counts (neutrophil .. basophil): neutrophil-heavy and basophil-rare as in
real smears, but with enough basophils (14) that per-class metrics exist."""

# Cell radius as a fraction of the crop size: one red cell (~7.5 um) is ~0.13 of the crop, and
# WBC radii follow their real size ratio to it (lymphocyte smallest, monocyte largest).
_RBC_RADIUS = 0.13
_WBC_RADIUS = {NEUTROPHIL: 0.22, LYMPHOCYTE: 0.165, MONOCYTE: 0.27, EOSINOPHIL: 0.235, BASOPHIL: 0.21}

# (hematoxylin, eosin) concentrations per compartment and class, before stain gains.
_CYTOPLASM = {
    NEUTROPHIL: (0.10, 0.20),  # pale lilac-pink
    LYMPHOCYTE: (0.34, 0.06),  # thin sky-blue rim
    MONOCYTE: (0.26, 0.13),  # grey-blue, vacuolated
    EOSINOPHIL: (0.08, 0.30),  # plus red-orange granules
    BASOPHIL: (0.22, 0.14),  # plus dark granules
}
_NUCLEUS = {
    NEUTROPHIL: (1.25, 0.38),
    LYMPHOCYTE: (1.45, 0.34),
    MONOCYTE: (0.95, 0.30),  # lacy, lighter chromatin
    EOSINOPHIL: (1.15, 0.36),
    BASOPHIL: (1.00, 0.30),
}
_PLASMA_EOSIN = 0.035
_RBC_EOSIN = 0.42


@dataclass(frozen=True)
class SmearGeometry:
    """A stain-free scene: ``concentration`` HxWx2 float32 (hematoxylin-like, eosin-like OD
    concentrations) and the exact ``mask`` (uint8, 0/1/2). Render it with :func:`render`."""

    seed: int
    label: int
    concentration: np.ndarray
    mask: np.ndarray

    @property
    def hematoxylin(self) -> np.ndarray:
        return self.concentration[..., 0]

    @property
    def eosin(self) -> np.ndarray:
        return self.concentration[..., 1]


def _nucleus_sdf(label: int, u: np.ndarray, v: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Class-dependent nucleus shape in cell-local coordinates (u, v), lengths scaled by the cell radius."""
    R = radius
    if label == LYMPHOCYTE:  # round, fills most of the cell (high N:C ratio), slightly eccentric
        off = rng.uniform(0.0, 0.08) * R
        return ellipse_sdf(u, v, off, 0.0, rng.uniform(0.76, 0.84) * R, rng.uniform(0.70, 0.78) * R)
    if label == MONOCYTE:  # kidney / bean: an ellipse with a notch bitten out of one long side
        a, b = rng.uniform(0.66, 0.74) * R, rng.uniform(0.48, 0.56) * R
        cv = rng.uniform(0.05, 0.15) * R
        body = ellipse_sdf(u, v, 0.0, cv, a, b)
        notch_v, notch_u = cv - b * rng.uniform(1.3, 1.5), rng.uniform(-0.15, 0.15) * R
        notch = disc_sdf(v, u, notch_v, notch_u, rng.uniform(0.45, 0.55) * R)
        return np.maximum(body, -notch)
    if label == NEUTROPHIL:  # 3-5 lobes on a C-shaped arc joined by thin strands
        n = int(rng.choice([3, 4, 5], p=[0.45, 0.4, 0.15]))
        arc = rng.uniform(0.34, 0.42) * R
        step = np.deg2rad(rng.uniform(55.0, 72.0)) * (4.0 / (n + 1)) ** 0.3
        angles = (np.arange(n) - (n - 1) / 2) * step + rng.normal(0.0, 0.12, n)
        centres = [(arc * np.sin(t), arc * np.cos(t) - 0.15 * R) for t in angles]  # (v, u)
        sdf = None
        for cv_, cu_ in centres:
            lobe = ellipse_sdf(u, v, cu_, cv_, rng.uniform(0.24, 0.30) * R, rng.uniform(0.20, 0.26) * R)
            sdf = lobe if sdf is None else np.minimum(sdf, lobe)
        for (v0, u0), (v1, u1) in zip(centres[:-1], centres[1:]):
            sdf = np.minimum(sdf, capsule_sdf(v, u, (v0, u0), (v1, u1), rng.uniform(0.04, 0.06) * R))
        return sdf
    if label == EOSINOPHIL:  # bilobed ("spectacles"), lobes joined by a strand
        half = rng.uniform(0.30, 0.38) * R
        bend = rng.uniform(0.0, 0.12) * R
        r0, r1 = rng.uniform(0.24, 0.30, 2) * R
        sdf = np.minimum(disc_sdf(v, u, bend, -half, r0), disc_sdf(v, u, bend, half, r1))
        return np.minimum(sdf, capsule_sdf(v, u, (bend, -half), (bend, half), 0.06 * R))
    # BASOPHIL: irregular, weakly lobed nucleus (mostly hidden by granules)
    sdf = None
    for _ in range(int(rng.integers(2, 4))):
        cu_, cv_ = rng.uniform(-0.25, 0.25, 2) * R
        blob = disc_sdf(v, u, cv_, cu_, rng.uniform(0.28, 0.36) * R)
        sdf = blob if sdf is None else np.minimum(sdf, blob)
    return sdf


def _add_red_cells(eosin: np.ndarray, size: int, wbc: tuple[float, float, float], rng: np.random.Generator) -> None:
    """Add the red cells' eosin-like density: discs with a darker rim and central pallor.

    Centres are kept outside the WBC so red cells overlap only its edge, and apart from each
    other so they overlap only slightly (the monolayer of a good smear). Each disc is drawn
    in its bounding box only.
    """
    y, x = grid(size)
    cy, cx, wr = wbc
    n_candidates = 80
    radii = _RBC_RADIUS * size * rng.uniform(0.88, 1.1, n_candidates)
    centres = rng.uniform(-0.1, 1.1, (n_candidates, 2)) * size
    shade = rng.uniform(0.0, 1.0, (n_candidates, 3))  # pallor depth, pallor width, density
    clear_of_wbc = np.hypot(centres[:, 0] - cy, centres[:, 1] - cx) >= wr + 0.35 * radii
    target = int(rng.integers(8, 15))
    placed: list[int] = []
    for i in np.flatnonzero(clear_of_wbc):
        if len(placed) == target:
            break
        if placed:
            gap = np.hypot(*(centres[placed] - centres[i]).T)
            if np.any(gap < 1.7 * np.minimum(radii[placed], radii[i])):
                continue
        placed.append(i)
        (py, px), r = centres[i], radii[i]
        box = (
            slice(max(0, int(py - r - 2)), max(0, min(size, int(py + r + 3)))),
            slice(max(0, int(px - r - 2)), max(0, min(size, int(px + r + 3)))),
        )
        d2 = (y[box] - py) ** 2 + (x[box] - px) ** 2
        d2 *= 1.0 / (r * r)
        d = np.sqrt(d2)
        depth, width, density = 0.55 + 0.25 * shade[i, 0], 0.4 + 0.15 * shade[i, 1], 0.85 + 0.3 * shade[i, 2]
        profile = 1.0 - depth * np.exp(d2 * d2 * (-1.0 / width**4)) + 0.3 * np.exp(((d - 0.88) * 10.0) ** 2 * -1.0)
        eosin[box] += (_RBC_EOSIN * density) * coverage((d - 1.0) * r, 1.2 * size / 128) * profile


def _check(size: int, label: int) -> None:
    if size < MIN_SIZE:
        raise BenchmarkError(f"synthetic smear: size {size} px is below the minimum of {MIN_SIZE}")
    if not 0 <= label < len(CLASSES):
        raise BenchmarkError(f"synthetic smear: label {label} outside 0..{len(CLASSES) - 1} ({', '.join(CLASSES)})")


def _wobble(u: np.ndarray, v: np.ndarray, label: int, rng: np.random.Generator) -> np.ndarray:
    """1 + sum_k a_k cos(k theta + phi_k), k = 2..5: a gently irregular cell outline.

    cos/sin of k*theta come from the angle-addition recurrence on u/r, v/r (arctan2 + cos on
    the grid cost more than the rest of the cell).
    """
    r = dist(u, v) + 1e-6
    c1, s1 = u / r, v / r
    ck, sk = c1, s1
    out = np.ones_like(u)
    for k in range(2, 6):
        ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
        amp, phase = rng.uniform(0.0, 0.05 if label == MONOCYTE else 0.03), rng.uniform(0, 2 * np.pi)
        out += amp * (ck * np.cos(phase) - sk * np.sin(phase))
    return out


def _granules_and_vacuoles(label: int, hema: np.ndarray, eosin: np.ndarray,
                           parts: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                           frame: tuple[np.ndarray, np.ndarray, float, float, float], size: int,
                           rng: np.random.Generator) -> None:
    """Each class's cytoplasm detail, added in place to the hematoxylin and eosin fields of its window;
    ``parts``: the cell, cytoplasm and nucleus coverages and the fine texture; ``frame``: the cell-local
    axes, the radius, the edge width and the pixel scale."""
    cell, cyto, nucleus, fine = parts
    u, v, radius, edge, px = frame
    ch, ce = _CYTOPLASM[label]
    if label == EOSINOPHIL:  # dense, round red-orange granules filling the cytoplasm
        eosin += cell * (0.6 + 0.4 * np.clip(fine, -1.0, 1.0)) * 0.7 * (1.0 - 0.5 * nucleus)
    elif label == BASOPHIL:  # coarse dark granules over the whole cell, obscuring the nucleus
        granules = cell * np.clip((texture(rng, size, 1.6 * px, u.shape) + 0.2) * 1.2, 0.0, 1.0)
        hema += granules * 1.2
        eosin += granules * 0.25
    elif label == NEUTROPHIL:  # fine neutral granulation
        eosin += cyto * np.clip(fine - 1.0, 0.0, 1.0) * 0.12
    elif label == MONOCYTE:  # a few vacuoles
        for _ in range(int(rng.integers(0, 4))):
            vr, va = rng.uniform(0.55, 0.85) * radius, rng.uniform(0, 2 * np.pi)
            hole = disc_sdf(u, v, vr * np.cos(va), vr * np.sin(va), rng.uniform(0.05, 0.09) * radius)
            vac = cyto * coverage(hole, edge)
            hema -= vac * ch * 0.7
            eosin -= vac * ce * 0.7


def make_geometry(seed: int, size: int, label: int) -> SmearGeometry:
    """Draw one stain-free smear crop with one WBC of class ``label``, deterministic in (seed, label)."""
    _check(size, label)
    rng = np.random.default_rng([seed, label])
    px = size / 128.0  # texture scales are given in pixels of a 128 px crop

    radius = _WBC_RADIUS[label] * size * rng.uniform(0.92, 1.08)
    cy, cx = size / 2 + np.clip(rng.normal(0.0, 0.035, 2), -0.08, 0.08) * size
    angle = rng.uniform(0.0, 2 * np.pi)
    stretch = rng.uniform(0.92, 1.0)

    # The WBC is drawn in a window around it (the outline stays within 1.2 radii of the centre).
    half = 1.25 * radius + 3
    win = (
        slice(max(0, int(cy - half)), min(size, int(np.ceil(cy + half)))),
        slice(max(0, int(cx - half)), min(size, int(np.ceil(cx + half)))),
    )
    y, x = grid(size)
    u, v = rotate(y[win], x[win], cy, cx, angle)
    shape = u.shape

    cell_sdf = dist(u, v / stretch) - radius * _wobble(u, v / stretch, label, rng)
    nuc_sdf = np.maximum(_nucleus_sdf(label, u, v, radius, rng), cell_sdf + 0.07 * radius)

    mask = np.full((size, size), MASK_BACKGROUND, dtype=np.uint8)
    mask[win][cell_sdf < 0] = MASK_CYTOPLASM
    mask[win][nuc_sdf < 0] = MASK_NUCLEUS

    edge = 1.2 * px
    cell = coverage(cell_sdf, edge)
    nucleus = coverage(nuc_sdf, edge)
    cyto = cell - nucleus
    chromatin = texture(rng, size, 1.3 * px, shape)
    fine = texture(rng, size, 0.8 * px, shape)

    ch, ce = _CYTOPLASM[label]
    nh, ne = _NUCLEUS[label]
    tex = 1.0 + (0.28 if label == MONOCYTE else 0.2) * chromatin
    grain = cyto * (1.0 + 0.12 * fine)
    hema = grain * ch + nucleus * nh * tex
    eosin = grain * ce + nucleus * ne * tex

    _granules_and_vacuoles(label, hema, eosin, (cell, cyto, nucleus, fine), (u, v, radius, edge, px), size, rng)

    plasma = 1.0 + 0.3 * texture(rng, size, 12.0 * px, (size, size))
    conc = np.empty((size, size, 2), dtype=np.float32)
    conc[..., 0] = 0.01 * plasma
    conc[..., 1] = _PLASMA_EOSIN * plasma
    conc[win + (0,)] += hema
    conc[win + (1,)] += eosin
    _add_red_cells(conc[..., 1], size, (cy, cx, radius), rng)
    conc = np.maximum(blur(conc), 0.0)
    return SmearGeometry(seed=seed, label=label, concentration=conc, mask=mask)


def stain_model(stain: StainModel | str) -> StainModel:
    """Resolve a domain name to its :class:`StainModel`."""
    if isinstance(stain, StainModel):
        return stain
    if stain not in STAINS:
        raise BenchmarkError(f"unknown synthetic stain '{stain}'; valid stains: {', '.join(STAINS)}")
    return STAINS[stain]


def render(geometry: SmearGeometry, stain: StainModel | str, noise: float = 1.5) -> np.ndarray:
    """Beer-Lambert image (HxWx3 uint8) of ``geometry`` under ``stain``.

    Sensor noise (std ``noise`` grey levels) is seeded by the geometry, so the same cell gets
    the same noise in every stain and only the stain differs.
    """
    model = stain_model(stain)
    absorb = (model.stain_matrix * np.asarray(model.gain)).astype(np.float32)  # 3x2, gain folded in
    conc = geometry.concentration
    od = conc[..., :1] * absorb[:, 0] + conc[..., 1:] * absorb[:, 1]  # C @ M.T without a tiny-matrix matmul
    image = np.exp(-od, out=od)
    image *= np.asarray(model.background, np.float32)
    if noise > 0:
        rng = np.random.default_rng([geometry.seed, geometry.label, 0x5EED])
        image += noise * sensor_noise(rng, image.shape[0])
    image += 0.5  # round half up on the cast below
    return np.clip(image, 0.0, 255.0, out=image).astype(np.uint8)


def render_smear(rng_seed: int, size: int, label: int, stain: StainModel | str) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic crop: (image HxWx3 uint8, mask HxW uint8 in {0,1,2})."""
    geometry = make_geometry(rng_seed, size, label)
    return render(geometry, stain), geometry.mask


def domain_plan(domain: str) -> list[tuple[int, int]]:
    """(seed, label) of every image of a domain, in id order.

    Each domain has its own seeds (different cells, like real datasets); labels follow
    :data:`CLASS_COUNTS_PER_DOMAIN`, shuffled deterministically so ids carry no class order.
    """
    index = SYNTHETIC_DOMAINS.index(stain_model(domain).name)
    labels = np.repeat(np.arange(len(CLASSES)), CLASS_COUNTS_PER_DOMAIN)
    np.random.default_rng(index).shuffle(labels)
    return [(1_000_000 * (index + 1) + i, int(label)) for i, label in enumerate(labels)]


@register_dataset(
    "synthetic",
    domains=SYNTHETIC_DOMAINS,
    fetched=False,
    cache_version="v1",
    licence="generated by wbcdata/synthetic.py (no third-party data)",
    description=f"procedural smears with exact masks, {IMAGES_PER_DOMAIN} per stain domain ({', '.join(STAINS)})",
)
def load_synthetic(root: Path, size: int) -> list[Sample]:
    """All synthetic samples; ``root`` is unused (nothing is read from disk)."""
    samples = []
    for domain in SYNTHETIC_DOMAINS:
        for i, (seed, label) in enumerate(domain_plan(domain)):
            image, mask = render_smear(seed, size, label, domain)
            samples.append(
                Sample(
                    id=f"synthetic/{domain}/{i:04d}",
                    image=image,
                    mask=mask,
                    label=label,
                    dataset="synthetic",
                    domain=domain,
                    source="procedural",
                    meta={"seed": seed},
                )
            )
    return samples
