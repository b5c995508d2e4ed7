"""nii._kernels.calib against its NumPy reference (tests/naive.py) and the public wrappers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import median_filter

from nii._kernels.calib import sigma_clip_rows
from nii.calibrate.scanner import _local_median
from tests.naive import naive_sigma_clip


@pytest.mark.parametrize("n", [3, 4, 7, 16, 48, 49, 200])
def test_sigma_clip_rows_matches_numpy_reference(rng, n):
    x = rng.normal(1000.0, 5.0, (300, n))
    # glitches, runs of bad lines, integer counts with zero MAD, constant rows
    x[rng.random(x.shape) < 0.05] = 1e6
    x[:20, : max(1, n // 3)] = -500.0
    x[20:40] = np.round(rng.normal(200.0, 0.3, (20, n)))
    x[40:50] = 7.0
    for sigma, iters in ((3.0, 5), (1.0, 10), (10.0, 1)):
        m, s = sigma_clip_rows(x, sigma, iters)
        rm, rs = naive_sigma_clip(x, sigma, iters)
        np.testing.assert_allclose(m, rm, rtol=1e-12, atol=0)
        np.testing.assert_allclose(s, rs, rtol=1e-9, atol=1e-12)


def test_sigma_clip_rows_rejects_the_glitch():
    x = np.full((1, 9), 100.0)
    x[0, 3] = 1e6
    m, s = sigma_clip_rows(x, 3.0, 5)
    assert m[0] == 100.0 and s[0] == 0.0


@pytest.mark.parametrize("size", [3, 31])
def test_local_median_equals_scipy_median_filter(rng, size):
    x = rng.normal(1000.0, 30.0, (2, 257))
    x[:, ::17] = 0.0
    np.testing.assert_array_equal(_local_median(x, size), median_filter(x, size=(1, size), mode="nearest"))
