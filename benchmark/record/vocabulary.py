"""Words every room shares: target and treatment names that mean "none", the metric columns, and how
a model is named in tables. The engine writes them, analysis and reports read them."""
from __future__ import annotations

from benchmark.record.metrics import CLASSIFICATION_METRICS, SEGMENTATION_METRICS
from core.sample import CLASSES

IN_DOMAIN = "in_domain"
"""Target name of the untouched test set of the source domain; every other target is shifted."""

NO_TREATMENT = "none"
"""The stain treatment of an untreated model (and of jobs whose config predates the ``treatment`` field)."""

NO_SHIFT = "none"
"""``target_kind`` of a target whose images are scored as they are (in-domain, another dataset). The
same string as :data:`NO_TREATMENT`, but another column: the two never meet."""

EVALUATIONS_DIR = "evaluations"
"""Sub-folder of a job where ``evaluate`` adds targets after the job ran (``benchmark.engine.evaluate``)."""

EXPLAIN_METRICS: tuple[str, ...] = ("saliency_consistency",)
"""Share of Grad-CAM energy inside the WBC mask (``benchmark.engine.explain``)."""
METRICS: tuple[str, ...] = CLASSIFICATION_METRICS + SEGMENTATION_METRICS + EXPLAIN_METRICS
PER_CLASS_F1: tuple[str, ...] = tuple(f"f1_{c}" for c in CLASSES)


def display_name(model: str, treatment: str) -> str:
    """How a model appears in tables: ``model`` alone, or ``model+treatment`` under a stain treatment."""
    return model if treatment == NO_TREATMENT else f"{model}+{treatment}"
