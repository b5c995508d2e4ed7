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


#: parallel chunks of output rows in :func:`area_resample_2d`; each reuses one float64 scratch buffer
_CHUNKS = 64


@nb.njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def area_resample_2d(att, valid, imp, ih, wh, iw, ww, row_all_valid, row_any_imp, valid_shortcut):  # pragma: no cover - compiled
    """``(E, H, W)`` float32 + ``(H, W)`` masks -> ``(E, H', W')`` float32, valid, impenetrable.

    ``row_all_valid`` / ``row_any_imp`` (``(H,)`` bool: the input row is all valid / has an
    impenetrable pixel) let an output row skip a mask whose sums are known: no impenetrable
    source row gives sums of exact zeros (False), and all-valid source rows give the sum of the
    weights, True when ``valid_shortcut`` (the caller checked every output's weights sum to more
    than 1/2). The results are the same bits as computing the sums; a typical scan skips both masks.

    The output rows are split into contiguous chunks, one parallel task each with its own scratch
    rows; every row and mask sum is a separate branch-free loop over the columns (vectorised).
    """
    ne, _, w = att.shape
    nj, nk = ih.shape
    ni, nl = iw.shape
    out = np.empty((ne, nj, ni), np.float32)
    valid_o = np.empty((nj, ni), np.bool_)
    imp_o = np.empty((nj, ni), np.bool_)
    nchunk = min(nj, _CHUNKS)
    for ch in prange(nchunk):
        tmp = np.empty((ne + 2, w), np.float64)
        for j in range(ch * nj // nchunk, (ch + 1) * nj // nchunk):
            all_valid = valid_shortcut
            any_imp = False
            for k in range(nk):
                if not row_all_valid[ih[j, k]]:
                    all_valid = False
                if row_any_imp[ih[j, k]]:
                    any_imp = True
            # rows: tmp[c] = sum_k x[src_k] * w_k, terms in k order
            for c in range(ne):
                t = tmp[c]
                a = att[c, ih[j, 0]]
                w0 = wh[j, 0]
                for col in range(w):
                    t[col] = np.float64(a[col]) * w0
                for k in range(1, nk):
                    a = att[c, ih[j, k]]
                    wk = wh[j, k]
                    for col in range(w):
                        t[col] = t[col] + np.float64(a[col]) * wk
            if not all_valid:
                _mask_row(valid, ih, wh, j, tmp[ne])
            if any_imp:
                _mask_row(imp, ih, wh, j, tmp[ne + 1])
            # columns
            for c in range(ne):
                t = tmp[c]
                o = out[c, j]
                for i in range(ni):
                    o[i] = np.float32(_col_sum(t, iw, ww, i))
            vo = valid_o[j]
            if all_valid:
                vo[:] = True
            else:
                for i in range(ni):
                    vo[i] = _col_sum(tmp[ne], iw, ww, i) >= _HALF_AREA
            io = imp_o[j]
            if not any_imp:
                io[:] = False
            else:
                for i in range(ni):
                    io[i] = _col_sum(tmp[ne + 1], iw, ww, i) >= _HALF_AREA
                    if io[i]:
                        vo[i] = False
    return out, valid_o, imp_o


@nb.njit(cache=True, nogil=True, fastmath=FASTMATH, inline="always")
def _col_sum(t, iw, ww, i):  # pragma: no cover - compiled
    """``sum_k t[iw[i, k]] * ww[i, k]``, terms in k order."""
    s = t[iw[i, 0]] * ww[i, 0]
    for k in range(1, iw.shape[1]):
        s = s + t[iw[i, k]] * ww[i, k]
    return s


@nb.njit(cache=True, nogil=True, fastmath=FASTMATH)
def _mask_row(mask, ih, wh, j, t):  # pragma: no cover - compiled
    """``t = sum_k float(mask[src_k]) * w_k`` over the columns, terms in k order."""
    m = mask[ih[j, 0]]
    w0 = wh[j, 0]
    for col in range(t.shape[0]):
        t[col] = (1.0 if m[col] else 0.0) * w0
    for k in range(1, ih.shape[1]):
        m = mask[ih[j, k]]
        wk = wh[j, k]
        for col in range(t.shape[0]):
            t[col] = t[col] + (1.0 if m[col] else 0.0) * wk
