"""The SG-CLDFF paper's reported numbers (its Tables 2 and 3): the claims table sets ours beside
them, and the hypotheses take half the paper's reported gaps as their deltas."""
from __future__ import annotations

from dataclasses import dataclass

from core.errors import BenchmarkError


@dataclass(frozen=True)
class Claim:
    """One reported figure: ``value`` and ``sd`` in the metric's own [0, 1] units."""

    model: str
    metric: str
    value: float
    sd: float
    where: str


PAPER_CLAIMS: tuple[Claim, ...] = (
    Claim("sg_cldff", "accuracy", 0.958, 0.004, "Tables 2, 3"),
    Claim("sg_cldff", "macro_f1", 0.94, 0.01, "Tables 2, 3"),
    Claim("sg_cldff", "auc_macro_ovr", 0.96, 0.01, "Table 2"),
    Claim("sg_cldff", "iou", 0.82, 0.01, "Tables 2, 3"),
    Claim("sg_cldff_no_saliency", "accuracy", 0.924, 0.006, "Table 3"),
    Claim("sg_cldff_no_saliency", "macro_f1", 0.90, 0.01, "Table 3"),
    Claim("sg_cldff_no_saliency", "iou", 0.76, 0.02, "Table 3"),
    Claim("sg_cldff_no_cldff", "accuracy", 0.931, 0.005, "Table 3"),
    Claim("sg_cldff_no_cldff", "macro_f1", 0.91, 0.01, "Table 3"),
    Claim("sg_cldff_no_cldff", "iou", 0.78, 0.01, "Table 3"),
    Claim("resnext_cc", "accuracy", 0.932, 0.007, "Table 2 (Luo et al.)"),
    Claim("resnext_cc", "macro_f1", 0.89, 0.01, "Table 2 (Luo et al.)"),
    Claim("resnext_cc", "auc_macro_ovr", 0.93, 0.02, "Table 2 (Luo et al.)"),
    Claim("resnext_cc", "iou", 0.77, 0.02, "Table 2 (Luo et al.)"),
)

def paper_value(model: str, metric: str) -> float:
    """The paper's reported mean of ``metric`` for ``model`` (hypotheses show it beside their estimate)."""
    for c in PAPER_CLAIMS:
        if (c.model, c.metric) == (model, metric):
            return c.value
    raise BenchmarkError(f"the paper reports no {metric} for {model}")
