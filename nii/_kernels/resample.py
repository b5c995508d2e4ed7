"""Numba kernel of area-weighted resampling along one axis (wrapper: ``nii.normalization``).

``weighted_gather(x, axis, idx, wts)`` computes, for a 3-D array ``x``,
``out[..., j, ...] = sum_k float64(x[..., idx[j, k], ...]) * wts[j, k]`` along ``axis`` (1 or 2),
summing the terms in ``k`` order exactly like the NumPy reference (``tests/naive.py``:
``naive_weighted_gather``), so results are bit-identical to it and independent of how a scan is
split into strips.

``area_resample_2d(att, valid, imp, ih, wh, iw, ww, row_all_valid, row_any_imp, valid_shortcut)`` is the whole 2-D resampling of
:func:`nii.normalization.resample_area` in one pass: for each output row it gathers the input
rows into a float64 scratch row (the ``gather_rows`` sum) and then the columns (the
``gather_cols`` sum), in the same term order, so it is bit-identical to the two 1-D passes
(reference: ``naive_weighted_gather`` along axis 1, then 2) while never materialising the
float64 intermediate of the whole scan; it writes float32 attenuation and the thresholded
valid/impenetrable masks directly.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

from ._config import FASTMATH

__all__ = ["area_resample_2d", "gather_cols", "gather_rows"]


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


_HALF_AREA = 0.5 - 1e-9  # an output pixel is impenetrable / valid when at least half its area is


@nb.njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def area_resample_2d(att, valid, imp, ih, wh, iw, ww, row_all_valid, row_any_imp, valid_shortcut):  # pragma: no cover - compiled
    """``(E, H, W)`` float32 + ``(H, W)`` masks -> ``(E, H', W')`` float32, valid, impenetrable.

    ``row_all_valid`` / ``row_any_imp`` (``(H,)`` bool: the input row is all valid / has an
    impenetrable pixel) let an output row skip a mask whose sums are known: no impenetrable
    source row gives sums of exact zeros (False), and all-valid source rows give the sum of the
    weights, True when ``valid_shortcut`` (the caller checked every output's weights sum to more
    than 1/2). The results are the same bits as computing the sums; a typical scan skips both masks.
    """
    ne, _, w = att.shape
    nj, nk = ih.shape
    ni, nl = iw.shape
    out = np.empty((ne, nj, ni), np.float32)
    valid_o = np.empty((nj, ni), np.bool_)
    imp_o = np.empty((nj, ni), np.bool_)
    for j in prange(nj):
        all_valid = valid_shortcut
        any_imp = False
        for k in range(nk):
            if not row_all_valid[ih[j, k]]:
                all_valid = False
            if row_any_imp[ih[j, k]]:
                any_imp = True
        tmp = np.empty((ne + 2, w), np.float64)
        for c in range(ne + 2):
            if (c == ne and all_valid) or (c == ne + 1 and not any_imp):
                continue
            src0 = ih[j, 0]
            w0 = wh[j, 0]
            for col in range(w):
                if c < ne:
                    v = np.float64(att[c, src0, col])
                elif c == ne:
                    v = 1.0 if valid[src0, col] else 0.0
                else:
                    v = 1.0 if imp[src0, col] else 0.0
                tmp[c, col] = v * w0
            for k in range(1, nk):
                src = ih[j, k]
                wk = wh[j, k]
                for col in range(w):
                    if c < ne:
                        v = np.float64(att[c, src, col])
                    elif c == ne:
                        v = 1.0 if valid[src, col] else 0.0
                    else:
                        v = 1.0 if imp[src, col] else 0.0
                    tmp[c, col] = tmp[c, col] + v * wk
        for i in range(ni):
            for c in range(ne):
                s = tmp[c, iw[i, 0]] * ww[i, 0]
                for k in range(1, nl):
                    s = s + tmp[c, iw[i, k]] * ww[i, k]
                out[c, j, i] = np.float32(s)
            if all_valid:
                valid_o[j, i] = True
            else:
                s = tmp[ne, iw[i, 0]] * ww[i, 0]
                for k in range(1, nl):
                    s = s + tmp[ne, iw[i, k]] * ww[i, k]
                valid_o[j, i] = s >= _HALF_AREA
            if not any_imp:
                imp_o[j, i] = False
            else:
                s = tmp[ne + 1, iw[i, 0]] * ww[i, 0]
                for k in range(1, nl):
                    s = s + tmp[ne + 1, iw[i, k]] * ww[i, k]
                imp_o[j, i] = s >= _HALF_AREA
                if imp_o[j, i]:
                    valid_o[j, i] = False
    return out, valid_o, imp_o
