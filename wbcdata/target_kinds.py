"""Target kinds: the registry of test-time shifts a protocol can evaluate a trained model under.

A test target (:class:`protocols.split.TestTarget`) stores its kind and parameters in its
``transform`` dict (``{"kind": k, **params}``) and its severity; this registry says what each
kind does to an image. Registering a kind (``@register_target_kind``, from a plugin too) is all
it takes for the target builder, the ``targets`` command and ``evaluate`` to know it; the reports
never need it, as ``summary.csv`` carries the kind, parameters and severity of every row.

Every kind changes pixel values only: geometry, masks and labels are untouched, so they stay
valid. Two shapes of kind:

- **graded** (``grades`` non-empty): one target per severity, mild to strong, each with fixed
  parameters; a protocol names it ``<kind>:<severity>`` (e.g. HED at 0.1, defocus at level 2);
- **per domain** (``grades`` empty): one target per other domain, parameters
  ``{"source": d, "target": d2}`` (re-staining into another domain's stain profile).

Built-in kinds (docs/protocols.md says why these levels):

- ``restain``: per domain, Macenko re-staining (:func:`wbcdata.stain.restain`);
- ``hed``: HED stain jitter (:func:`wbcdata.stain.hed_perturb`), severity = its ``s``;
- ``defocus``, ``jpeg``, ``gamma``, ``resample``: the scanner (:mod:`wbcdata.acquisition`),
  severity = level 1 (mild) to 5 (strong), the parameters per level below.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, cast

import numpy as np

from core.registry import Registry
from wbcdata import acquisition, stain


class StainContext(Protocol):
    """What a kind may ask of the split it is applied in: a domain's stain profile (estimated from
    the source's training images, or from all images of another domain)."""

    def profile(self, domain: str) -> stain.StainProfile: ...


KindOp = Callable[[np.ndarray, dict, np.random.Generator, StainContext], np.ndarray]
"""``(image, params, rng, context) -> image``: uint8 HxWx3 in and out, same shape. ``rng`` is
seeded by (split seed, sample id, severity), so every model of a seed sees the same images."""


@dataclass(frozen=True)
class TargetKind:
    name: str
    apply: KindOp
    family: str
    """"stain" or "acquisition": which of the study's shifts the kind stands for."""
    severity_text: str
    """What the severity axis means, for table captions and figure axes."""
    grades: tuple[tuple[float, dict], ...] = ()
    """(severity, parameters), mild to strong; empty for a per-domain kind."""

    @property
    def graded(self) -> bool:
        return bool(self.grades)


TARGET_KINDS: Registry[KindOp] = Registry("target kind")
"""Name -> image operation; the :class:`TargetKind` is its metadata (:func:`get_target_kind`), so a
name clash names the two operations' modules."""


def register_target_kind(name: str, *, family: str, severity_text: str, description: str,
                         grades: tuple[tuple[float, dict], ...] = ()) -> Callable[[KindOp], KindOp]:
    """Register ``fn`` as the image operation of target kind ``name``."""
    severities = [s for s, _ in grades]
    if severities != sorted(set(severities)) or any(s <= 0 for s in severities):
        raise ValueError(f"target kind '{name}': severities must be > 0 and strictly increasing, got {severities}")

    def wrap(fn: KindOp) -> KindOp:
        return TARGET_KINDS.register(name, description, TargetKind(name, fn, family, severity_text, tuple(grades)))(fn)

    return wrap


def get_target_kind(name: str) -> TargetKind:
    """The registered kind ``name``; an unknown name lists the registered ones."""
    return cast(TargetKind, TARGET_KINDS.metadata(name))


def severity_text(kind: str) -> str:
    """The severity axis of ``kind``; its bare name for a kind no loaded module registers (a results
    folder may hold a plugin's kinds)."""
    return get_target_kind(kind).severity_text if kind in TARGET_KINDS else f"{kind} severity"


# ---- stain ----------------------------------------------------------------------------------

@register_target_kind("restain", family="stain", severity_text="re-staining (no severity)",
                      description="re-stained into another domain's Macenko stain profile (one target per domain)")
def _restain(image: np.ndarray, params: dict, rng: np.random.Generator, context: StainContext) -> np.ndarray:
    return stain.restain(image, context.profile(params["source"]), context.profile(params["target"]))


HED_GRADES = tuple((s, {"severity": s}) for s in (0.05, 0.1, 0.2, 0.3))
"""Tellez's HED-light (0.05) to beyond HED-strong (0.2); the ``hed`` training treatment (0.2) lies inside."""


@register_target_kind("hed", family="stain", severity_text="HED stain-perturbation severity",
                      description="HED stain jitter (Tellez): alpha ~ U(1-s, 1+s), beta ~ U(-s/2, s/2) OD",
                      grades=HED_GRADES)
def _hed(image: np.ndarray, params: dict, rng: np.random.Generator, context: StainContext) -> np.ndarray:
    return stain.hed_perturb(image, float(params["severity"]), rng)


# ---- acquisition (scanner) ------------------------------------------------------------------

def _levels(key: str, values: tuple[float, ...]) -> tuple[tuple[float, dict], ...]:
    return tuple((float(level), {key: v}) for level, v in enumerate(values, 1))


DEFOCUS_GRADES = _levels("radius_frac", (0.01, 0.02, 0.03, 0.045, 0.06))
"""Disk radius / crop side. The crop is ~18 um (a ~12 um WBC spans 2/3 of it): 0.2 to 1.1 um."""
JPEG_GRADES = _levels("quality", (90, 70, 50, 30, 10))
"""Scanners store at 70-90; 50 and below are stress levels with visible 8x8 blocks."""
GAMMA_GRADES = _levels("gamma", (1.1, 1.25, 1.4, 1.6, 2.0))
"""Darker mid-tones (a dimmer lamp, another tone curve); pure white stays white, tinted glass deepens."""
RESAMPLE_GRADES = _levels("factor", (1.5, 2.0, 3.0, 4.0, 6.0))
"""Pixel size x factor: a 40x scan seen at ~27x, 20x, ~13x, 10x and ~7x."""


@register_target_kind("defocus", family="acquisition", grades=DEFOCUS_GRADES,
                      severity_text="defocus-blur level (disk radius / crop side)",
                      description="defocus blur: uniform disk PSF, radius 1-6% of the crop side")
def _defocus(image: np.ndarray, params: dict, rng: np.random.Generator, context: StainContext) -> np.ndarray:
    return acquisition.defocus(image, params["radius_frac"])


@register_target_kind("jpeg", family="acquisition", grades=JPEG_GRADES,
                      severity_text="JPEG compression level (quality)",
                      description="JPEG compression, 4:2:0, quality 90 down to 10")
def _jpeg(image: np.ndarray, params: dict, rng: np.random.Generator, context: StainContext) -> np.ndarray:
    return acquisition.jpeg(image, params["quality"])


@register_target_kind("gamma", family="acquisition", grades=GAMMA_GRADES,
                      severity_text="illumination/gamma level (gamma)",
                      description="illumination/gamma: tone curve 255 (I/255)^gamma, gamma 1.1 to 2.0")
def _gamma(image: np.ndarray, params: dict, rng: np.random.Generator, context: StainContext) -> np.ndarray:
    return acquisition.gamma_curve(image, params["gamma"])


@register_target_kind("resample", family="acquisition", grades=RESAMPLE_GRADES,
                      severity_text="resolution-loss level (down-then-up factor)",
                      description="lower-resolution scanner: area-average down x1.5 to x6, bilinear back up")
def _resample(image: np.ndarray, params: dict, rng: np.random.Generator, context: StainContext) -> np.ndarray:
    return acquisition.resample(image, params["factor"])


ACQUISITION_KINDS: tuple[str, ...] = ("defocus", "jpeg", "gamma", "resample")
"""The built-in scanner kinds ``cross_scanner`` tests, fixed so a plugin cannot change its split."""
