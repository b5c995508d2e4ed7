"""nii._kernels.evidence.cue_counts against its NumPy reference (tests.naive.naive_cue_counts)."""

from __future__ import annotations

import numpy as np
import pytest

from nii._kernels.evidence import cue_counts
from tests.naive import naive_cue_counts

PARAMS = (0.02, 12.0, 16.0, 2.0, 10.0, 12.0, 0.19)


@pytest.mark.parametrize("with_material", [True, False])
@pytest.mark.parametrize("with_valid", [True, False])
@pytest.mark.parametrize("grid", [(1, 1), (3, 3), (7, 5)])
def test_cue_counts_match_numpy(rng, with_material, with_valid, grid):
    h, w = 53, 71
    l_high = rng.uniform(-0.1, 6.0, (h, w)).astype(np.float32)
    zeff = rng.uniform(5.0, 20.0, (h, w)).astype(np.float32)
    zeff[rng.random((h, w)) < 0.1] = np.nan
    # values on the thresholds exactly
    zeff[0, :10] = 12.0
    zeff[1, :10] = 16.0
    l_high[2, :10] = np.float32(2.0) * np.float32(0.19)
    mat = rng.integers(0, 5, (h, w)).astype(np.uint8) if with_material else None
    valid = rng.random((h, w)) > 0.1 if with_valid else None
    f = np.float32
    got = cue_counts(l_high, zeff, np.zeros((0, 0), np.uint8) if mat is None else mat,
                     np.zeros((0, 0), np.bool_) if valid is None else valid, grid[0], grid[1], *(f(p) for p in PARAMS))
    want = naive_cue_counts(l_high, zeff, mat, valid, grid[0], grid[1], *PARAMS)
    for g, r in zip(got, want):
        assert g.shape == r.shape
        np.testing.assert_array_equal(g, r)
    assert want[0].sum() > 0 and want[1].sum() > 0
