"""Numba kernel of area-weighted resampling along one axis (wrapper: ``nii.normalization``).

``weighted_gather(x, axis, idx, wts)`` computes, for a 3-D array ``x``,
``out[..., j, ...] = sum_k float64(x[..., idx[j, k], ...]) * wts[j, k]`` along ``axis`` (1 or 2),
summing the terms in ``k`` order exactly like the NumPy reference (``tests/naive.py``:
``naive_weighted_gather``), so results are bit-identical to it and independent of how a scan is
split into strips.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

from ._config import FASTMATH

__all__ = ["gather_rows", "gather_cols"]


@nb.njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def gather_rows(x, idx, wts):  # pragma: no cover - compiled
    """Along axis 1: ``(C, H, W) -> (C, J, W)`` float64."""
    c, _, w = x.shape
    nj, nk = idx.shape
    out = np.empty((c, nj, w), np.float64)
    for t in prange(c * nj):
        ci = t // nj
        j = t % nj
        src0 = idx[j, 0]
        w0 = wts[j, 0]
        for col in range(w):
            out[ci, j, col] = np.float64(x[ci, src0, col]) * w0
        for k in range(1, nk):
            src = idx[j, k]
            wk = wts[j, k]
            for col in range(w):
                out[ci, j, col] = out[ci, j, col] + np.float64(x[ci, src, col]) * wk
    return out


@nb.njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def gather_cols(x, idx, wts):  # pragma: no cover - compiled
    """Along axis 2: ``(C, H, W) -> (C, H, J)`` float64."""
    c, h, _ = x.shape
    nj, nk = idx.shape
    out = np.empty((c, h, nj), np.float64)
    for t in prange(c * h):
        ci = t // h
        row = t % h
        for j in range(nj):
            s = np.float64(x[ci, row, idx[j, 0]]) * wts[j, 0]
            for k in range(1, nk):
                s = s + np.float64(x[ci, row, idx[j, k]]) * wts[j, k]
            out[ci, row, j] = s
    return out
