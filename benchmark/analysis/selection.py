"""Which rows of the summary a report or a verdict is over, and in what order: models in the paper's
order with the floors last, targets from in-domain to the most shifted, experiments by protocol
and budget. Pure functions of the summary DataFrame, shared by analysis and reports."""
from __future__ import annotations

import json
import math

import pandas as pd

from benchmark.record.summary import canonical
from benchmark.record.vocabulary import IN_DOMAIN, NO_SHIFT, NO_TREATMENT
from core.study import REFERENCE_MODELS, SG_CLDFF_VARIANTS


def model_sort_key(model: str, treatment: str) -> tuple:
    """SG-CLDFF variants first in their paper order, then the others by name; untreated first;
    the floors (``REFERENCE_MODELS``) last, in their listed order, as the reference rows."""
    rank = SG_CLDFF_VARIANTS.index(model) if model in SG_CLDFF_VARIANTS else len(SG_CLDFF_VARIANTS)
    floor = REFERENCE_MODELS.index(model) if model in REFERENCE_MODELS else -1
    return (floor, treatment != NO_TREATMENT, treatment, rank, model)


def ordered_displays(df: pd.DataFrame) -> list[str]:
    pairs = df[["display", "model", "treatment"]].drop_duplicates()
    pairs = sorted(pairs.itertuples(index=False), key=lambda p: model_sort_key(p.model, p.treatment))
    return [p.display for p in pairs]


def target_sort_key(name: str, kind: str, severity: float) -> tuple:
    """in_domain; then per-domain kinds (re-stains) by name; then graded kinds by kind and
    severity ascending; then untouched other domains."""
    if name == IN_DOMAIN:
        return (0, "", 0.0, name)
    if kind == NO_SHIFT:
        return (3, "", 0.0, name)
    if math.isnan(severity):
        return (1, kind, 0.0, name)
    return (2, kind, severity, name)


def ordered_targets(df: pd.DataFrame) -> list[str]:
    first = df.groupby("target")[["target_kind", "severity"]].first()
    return sorted(first.index, key=lambda t: target_sort_key(t, first.at[t, "target_kind"],
                                                             float(first.at[t, "severity"])))


def graded_kinds(df: pd.DataFrame) -> list[str]:
    """Target kinds with a severity axis in ``df`` (per-domain kinds such as re-staining have none)."""
    rows = df[(df["target_kind"] != NO_SHIFT) & df["severity"].notna()]
    return sorted(rows["target_kind"].unique())


def severity_levels(df: pd.DataFrame, kind: str) -> list[tuple[float, str]]:
    """(severity, label) of ``kind``'s targets ascending; the label adds the parameters where they
    are not the severity itself (``2 (quality=70)``; HED's ``0.1`` is its parameter)."""
    rows = df[df["target_kind"] == kind].drop_duplicates("severity").sort_values("severity")
    out = []
    for s, params in zip(rows["severity"], rows["target_params"]):
        shown = {k: v for k, v in json.loads(params).items() if not (k == "severity" and v == s)}
        text = ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in shown.items())
        out.append((float(s), f"{s:g} ({text})" if text else f"{s:g}"))
    return out


def groups(df: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(protocol, budget, rows) per experiment, sorted; rows in canonical order."""
    df = canonical(df)
    return [(p, b, g) for (p, b), g in df.groupby(["protocol", "budget"], sort=True)]


def protocol_targets(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of the protocol's own targets: what its shifted means and verdicts are over (targets
    that ``evaluate`` added later are listed per domain and per severity only)."""
    return df[~df["evaluated"]]
