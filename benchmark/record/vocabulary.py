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
INVARIANCE_METRICS: tuple[str, ...] = ("flip_rate", "iou_change", "feature_drift")
"""Per-cell invariance of a shifted target against the unshifted copy of the same cells
(``benchmark.engine.invariance``): share of cells whose predicted class changes, mean per-cell IoU
change (shifted minus unshifted; negative is a loss), mean cosine distance between the pooled
features of the two copies. n/a where a target has no unshifted copy (another dataset)."""
METRICS: tuple[str, ...] = CLASSIFICATION_METRICS + SEGMENTATION_METRICS + EXPLAIN_METRICS + INVARIANCE_METRICS

SELECTION_RULES: tuple[str, ...] = ("train_val", "last", "oracle")
"""Model-selection rules scored side by side (``benchmark.engine.selection``): the best epoch on the
training domain's validation set, the last epoch, and the test-domain oracle (the best epoch on a held-out
share of each target: an upper bound, never part of the primary verdicts)."""
SELECTION_METRICS: tuple[str, ...] = ("iou", "macro_f1")
"""What each rule's weights are scored on, per target (on the target's share not held out for the oracle)."""
SELECTION_COLUMNS: tuple[str, ...] = tuple(
    [f"{m}__{r}" for r in SELECTION_RULES for m in SELECTION_METRICS] + [f"epoch__{r}" for r in SELECTION_RULES])
"""``summary.csv`` columns of the side-by-side rules: ``<metric>__<rule>`` and ``epoch__<rule>``."""
PER_CLASS_F1: tuple[str, ...] = tuple(f"f1_{c}" for c in CLASSES)


def display_name(model: str, treatment: str) -> str:
    """How a model appears in tables: ``model`` alone, or ``model+treatment`` under a stain treatment."""
    return model if treatment == NO_TREATMENT else f"{model}+{treatment}"
