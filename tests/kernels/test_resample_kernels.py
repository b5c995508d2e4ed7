"""nii._kernels.resample against its NumPy reference (tests.naive.naive_weighted_gather)."""

import numpy as np
import pytest

from nii.normalization import _resample_axis, area_weights
from tests.naive import naive_area_resample, naive_weighted_gather


@pytest.mark.parametrize("axis", [1, 2])
@pytest.mark.parametrize("factor", [1.0, 2.0, 2.5, 3.7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weighted_gather_matches_numpy_exactly(rng, axis, factor, dtype):
    x = rng.normal(1.0, 0.5, size=(3, 37, 53)).astype(dtype)
    n_in = x.shape[axis]
    n_out = int(n_in // factor)
    idx, wts = area_weights(factor, 0, n_out, n_in)
    got = _resample_axis(x, axis, idx, wts)
    want = naive_weighted_gather(x, axis, idx, wts)
    assert got.dtype == np.float64 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_integer_factor_is_block_mean(rng):
    x = rng.random((2, 12, 18)).astype(np.float32)
    ih, wh = area_weights(3.0, 0, 4, 12)
    iw, ww = area_weights(2.0, 0, 9, 18)
    r = _resample_axis(_resample_axis(x, 1, ih, wh), 2, iw, ww)
    np.testing.assert_allclose(r, naive_area_resample(x, 3, 2), rtol=1e-12)


@pytest.mark.parametrize("factors", [(1.0, 1.0), (2.0, 2.0), (1.2, 1.2), (2.5, 1.7), (3.7, 0.8)])
@pytest.mark.parametrize("masks", ["random", "banded", "clean"])
def test_area_resample_2d_equals_two_gathers_bit_for_bit(rng, factors, masks):
    """The fused 2-D kernel equals NumPy's gather along rows then columns (float64), cast/thresholded,
    whether an output row's masks are summed or known from its source rows (all valid / no
    impenetrable pixel: the row shortcut)."""
    from nii._kernels.resample import area_resample_2d
    from nii.normalization import _resample_block

    att = rng.normal(1.0, 0.7, size=(2, 41, 67)).astype(np.float32)
    valid = rng.random((41, 67)) > 0.2
    imp = rng.random((41, 67)) > 0.8
    if masks == "banded":  # runs of clean rows between mixed ones: some output rows take the shortcut
        valid[5:20] = True
        imp[5:20] = False
        imp[30:] = False
    elif masks == "clean":
        valid[:] = True
        imp[:] = False
    fh, fw = factors
    nh, nw = int(41 // fh), int(67 // fw)
    ih, wh = area_weights(fh, 0, nh, 41)
    iw, ww = area_weights(fw, 0, nw, 67)
    stack = np.concatenate([att, valid[None].astype(np.float32), imp[None].astype(np.float32)])
    r = naive_weighted_gather(naive_weighted_gather(stack, 1, ih, wh), 2, iw, ww)
    want_imp = r[3] >= 0.5 - 1e-9
    want_valid = (r[2] >= 0.5 - 1e-9) & ~want_imp
    summed = area_resample_2d(att, valid, imp, ih, wh, iw, ww, np.zeros(41, bool), np.ones(41, bool), False)
    known = _resample_block(att, valid, imp, ih, wh, iw, ww)  # the wrapper's row flags and shortcut
    for a, v, i in (summed, known):
        np.testing.assert_array_equal(a, r[:2].astype(np.float32))
        np.testing.assert_array_equal(i, want_imp)
        np.testing.assert_array_equal(v, want_valid)
    if masks == "clean":
        assert known[1].all() and not known[2].any()


def test_row_shortcut_is_refused_when_weights_do_not_reach_half_an_output():
    """Weights summing to less than 1/2 (not an area average) must be summed, not assumed valid."""
    from nii.normalization import _resample_block

    att = np.ones((1, 4, 4), np.float32)
    valid = np.ones((4, 4), bool)
    imp = np.zeros((4, 4), bool)
    idx = np.arange(4)[:, None]
    _, v, _ = _resample_block(att, valid, imp, idx, np.full((4, 1), 0.6), idx, np.full((4, 1), 0.6))
    assert not v.any()  # 0.36 < 1/2: no output is valid, as the sums say


@pytest.mark.parametrize("factor", [1.0, 1.2, 1.5, 2.0, 2.5, 3.7])
def test_area_weights_drop_only_slots_no_output_uses(rng, factor):
    """Trailing all-zero weight slots are dropped, and the sums equal the untrimmed weights'."""
    n_in = 97
    n_out = int(n_in // factor)
    idx, wts = area_weights(factor, 0, n_out, n_in)
    assert wts.shape == idx.shape and wts[:, -1].any()
    # the untrimmed layout: ceil(factor) + 1 slots, the extra ones of weight 0
    k_full = int(np.ceil(factor)) + 1
    assert wts.shape[1] <= k_full
    pad = k_full - wts.shape[1]
    idx_full = np.concatenate([idx, np.minimum(idx[:, -1:] + 1 + np.arange(pad), n_in - 1)], axis=1)
    wts_full = np.concatenate([wts, np.zeros((n_out, pad))], axis=1)
    np.testing.assert_allclose(wts_full.sum(axis=1)[:-1], 1.0, rtol=1e-12)
    x = rng.normal(1.0, 0.5, size=(2, n_in, 5)).astype(np.float32)
    np.testing.assert_array_equal(_resample_axis(x, 1, idx, wts), naive_weighted_gather(x, 1, idx_full, wts_full))
    if factor == 1.2:
        assert wts.shape[1] == 2  # [1.2 j, 1.2 j + 1.2) never reaches a third input pixel
