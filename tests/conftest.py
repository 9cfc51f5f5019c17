"""Shared fixtures: the procedural smears behind the engine, protocol and treatment tests."""
from __future__ import annotations

import pytest

from protocols.resolve import load_by_domain

SYNTHETIC_PROTOCOL = "cross_stain_synthetic"
SYNTHETIC_SIZE = 64
"""The smoke budget's input size, so engine tests can train on these samples directly."""


@pytest.fixture(scope="session")
def by_domain():
    """Samples of every procedural stain domain at 64 px, loaded once for the whole session."""
    return load_by_domain(SYNTHETIC_PROTOCOL, SYNTHETIC_SIZE)
