"""Shared fixtures: the procedural smears behind the engine, protocol and treatment tests."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import benchmark  # noqa: F401 - applies the ISA pin (core/isa.py) before torch runs, as every entry point does
import pandas as pd
import pytest

from protocols.resolve import load_by_domain

SYNTHETIC_PROTOCOL = "cross_stain_synthetic"
SYNTHETIC_SIZE = 64
"""The smoke budget's input size, so engine tests can train on these samples directly."""


@pytest.fixture(scope="session")
def by_domain():
    """Samples of every procedural stain domain at 64 px, loaded once for the whole session."""
    return load_by_domain(SYNTHETIC_PROTOCOL, SYNTHETIC_SIZE)


REQUIRE_REALDATA = "WBC_REQUIRE_REALDATA"
"""Set to 1 (CI does) to make a skipped ``realdata`` test a failure: a clone without the mirror
must not pass by skipping the tests that check the real data."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.get_closest_marker("realdata") and os.environ.get(REQUIRE_REALDATA) == "1":
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} needs the dataset mirror but was skipped ({REQUIRE_REALDATA}=1): "
                           "set WBC_DATA_MIRROR to the folder holding the dataset archives")



TINY_SUMMARY = Path(__file__).resolve().parent / "fixtures" / "results_tiny" / "golden" / "summary.csv"


@pytest.fixture(scope="session")
def tiny_summary() -> pd.DataFrame:
    """The tiny results fixture's summary (its golden summary.csv)."""
    from benchmark.record.summary import read_summary

    return read_summary(TINY_SUMMARY)


@pytest.fixture(scope="session")
def tiny_summary_with_invariance(tiny_summary) -> pd.DataFrame:
    """The tiny summary with other invented invariance values on every shifted row (the
    in-domain rows stay null, as the engine leaves them): no IoU change without masks, no flips
    without classes."""
    df, rng = tiny_summary, np.random.default_rng(3)
    n, shifted = len(df), df["shifted"].to_numpy()
    return df.assign(flip_rate=np.where(shifted & df["accuracy"].notna(), rng.uniform(0.0, 0.4, n), np.nan),
                     iou_change=np.where(shifted & df["iou"].notna(), rng.uniform(-0.2, 0.0, n), np.nan),
                     feature_drift=np.where(shifted, rng.uniform(0.0, 0.3, n), np.nan))
