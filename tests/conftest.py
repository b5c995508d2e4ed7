"""Shared pytest fixtures: seeded generators and small synthetic scans."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.synth import make_raw

# Numba caches and matplotlib configs stay inside the test session's temp space when unset.
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator; each test gets the same stream."""
    return np.random.default_rng(20261125)


@pytest.fixture
def raw_scan(rng):
    return make_raw(rng)
