"""Numba kernels of the preprocessing hot path (counts -> attenuation, Zeff, class, colour, encoding).

Public wrappers: :mod:`nii.normalization` (``normalize``, ``normalize_stream``, ``detector_input``).
NumPy references: ``tests/naive.py`` (``naive_attenuation``, ``naive_zeff_lookup``, ...).

Two kernels share one per-pixel routine (:func:`_pixel_maps`):

* :func:`fused_normalize` — one pass over the counts, tile by tile of scan lines: dark
  subtraction, drift-corrected air division, log, photon-starvation check, dead/hot channel
  repair (interpolation between the nearest good channels, inside the tile while it is in cache),
  ``R = L_low / L_high``, bilinear Zeff lookup, material class, operator colour and detector
  encoding;
* :func:`maps_from_attenuation` — the same per-pixel maps from attenuation already computed
  (resampled scans, scans given as attenuation).

Exact colours: the operator colour law and the detector encoding are defined by NumPy float32
code (:func:`nii.materials.render_pseudocolor`, :func:`nii.encoding.encode_detector_input`).
``exp`` of LLVM and of NumPy's SIMD loops may differ in the last bit, which would change a
rounded colour now and then. The kernels therefore never evaluate those laws: each law is a
monotone step function of ``L`` with at most 256 steps, whose exact float32 step positions are
found once from the NumPy law itself (:func:`step_tables`, bisection on float32 bit patterns).
The kernel looks the step up in O(1) (a cell index plus at most a few comparisons), which is
both exact by construction and faster than ``exp``.

Arithmetic is float32 throughout; ``fastmath`` is set in one place (:data:`nii._kernels.FASTMATH`).
"""

from __future__ import annotations

import functools

import numba as nb
import numpy as np
from numba import prange

from ._config import FASTMATH

__all__ = [
    "MODE_DUAL",
    "MODE_SINGLE",
    "STEP_CELL",
    "TILE_LINES",
    "fused_normalize",
    "maps_from_attenuation",
    "step_tables",
]

#: Scan lines per tile of the fused kernel (long rows vectorise; a tile of all channels stays in cache).
TILE_LINES = 256
MODE_SINGLE = 0
MODE_DUAL = 1
#: Cell width (in L) of the step-table index; smaller than the narrowest step of every law.
STEP_CELL = 0.004
_STEP_RANGE = 24.0  # beyond this L every law is saturated (checked when the tables are built)

# float32 constants (numba keeps np.float32 globals as float32)
_F0 = np.float32(0.0)
_F1 = np.float32(1.0)

# material codes (nii.materials.MaterialClass) as plain ints for the kernels
_AIR = 0
_ORGANIC = 1
_MIXED = 2
_METAL = 3
_IMPENETRABLE = 4


# ----------------------------------------------------------------------------------------------
# exact step tables of the colour and encoding laws
# ----------------------------------------------------------------------------------------------


def _f32_next(x: np.ndarray) -> np.ndarray:
    return np.nextafter(x.astype(np.float32), np.float32(np.inf))


def _law_color(hue: int):
    from ..materials import DISPLAY_GAMMA

    def f(l: np.ndarray) -> np.ndarray:
        # exactly the float32 expression of nii.materials.render_pseudocolor for one channel
        l = np.asarray(l, dtype=np.float32)
        b = np.exp(-np.float32(DISPLAY_GAMMA) * np.maximum(l, np.float32(0.0))).astype(np.float32)
        return np.floor(np.float32(hue) * b + np.float32(0.5)).astype(np.uint8)

    return f


def _law_encoding(l: np.ndarray) -> np.ndarray:
    from ..encoding import ATT_SCALE

    # exactly the float32 expression of nii.encoding.encode_detector_input, channels 0 and 2
    l = np.asarray(l, dtype=np.float32)
    scale = np.float32(ATT_SCALE)
    return np.floor(255.0 * (1.0 - np.exp(-np.maximum(l, 0) / scale)) + 0.5).astype(np.uint8)


def _steps_of(law) -> tuple[np.ndarray, np.ndarray]:
    """Exact float32 positions where a monotone law of L >= 0 changes value, and its levels."""
    grid = np.linspace(0.0, _STEP_RANGE, 400_001, dtype=np.float32)
    vals = law(grid).astype(np.int32)
    if vals[-1] != law(np.array([np.float32(1e30)]))[0]:
        raise RuntimeError("step law not saturated within the table range")  # pragma: no cover
    change = np.nonzero(vals[1:] != vals[:-1])[0]
    lo = grid[change].view(np.int32).astype(np.int64)  # value vals[change]
    hi = grid[change + 1].view(np.int32).astype(np.int64)  # value differs
    v_lo = vals[change]
    # bisection on bit patterns (non-negative float32 order == int order)
    while np.any(hi - lo > 1):
        mid = (lo + hi) // 2
        vm = law(mid.astype(np.int32).view(np.float32)).astype(np.int32)
        same = vm == v_lo
        lo = np.where(same, mid, lo)
        hi = np.where(same, hi, mid)
    thr = hi.astype(np.int32).view(np.float32)
    levels = np.concatenate([vals[:1], law(thr).astype(np.int32)])
    # each grid interval holds at most one step (grid step << narrowest step): verify
    if np.any(np.diff(thr) <= 0) or np.any(levels[1:] == levels[:-1]):
        raise RuntimeError("step law is not a clean monotone step function")  # pragma: no cover
    return thr, levels.astype(np.uint8)


@functools.lru_cache(maxsize=1)
def step_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step tables of the 10 laws: colour (class 1..3) x (R, G, B), then the attenuation encoding.

    Returns
    -------
    thr : float32 (10, K + 1)
        Step positions, ascending, padded with +inf.
    lvl : uint8 (10, K + 1)
        ``lvl[f, k]`` is the law's value when exactly ``k`` steps lie at or below ``L``.
    start : int16 (10, n_cells)
        Number of steps strictly below the cell before ``j`` (``L`` in ``[j, j+1) * STEP_CELL``),
        a safe starting index for the linear scan.
    """
    from ..encoding import ATT_SCALE
    from ..materials import CLASS_HUE_RGB, DISPLAY_GAMMA

    if np.float32(DISPLAY_GAMMA) != _GAMMA or np.float32(ATT_SCALE) != _ENC_SCALE:
        raise RuntimeError("kernel constants differ from nii.materials / nii.encoding")  # pragma: no cover
    laws = [_law_color(int(CLASS_HUE_RGB[c, k])) for c in (1, 2, 3) for k in range(3)] + [_law_encoding]
    steps = [_steps_of(law) for law in laws]
    kmax = max(len(t) for t, _ in steps) + 1
    n_cells = int(np.ceil(_STEP_RANGE / STEP_CELL)) + 2
    thr = np.full((len(laws), kmax), np.inf, dtype=np.float32)
    lvl = np.zeros((len(laws), kmax), dtype=np.uint8)
    start = np.zeros((len(laws), n_cells), dtype=np.int16)
    cell_lo = (np.arange(n_cells, dtype=np.float64) - 1.0) * STEP_CELL
    for f, (t, v) in enumerate(steps):
        thr[f, : len(t)] = t
        lvl[f, : len(v)] = v
        lvl[f, len(v) :] = v[-1]
        start[f] = np.searchsorted(t.astype(np.float64), cell_lo, side="left")
    for a in (thr, lvl, start):
        a.flags.writeable = False
    return thr, lvl, start


@nb.njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH)
def _step(f, x, thr, lvl, start, inv_cell):  # pragma: no cover - compiled
    if not x > _F0:
        x = _F0
    j = int(x * inv_cell)
    if j >= start.shape[1]:
        j = start.shape[1] - 1
    k = start[f, j]
    while thr[f, k] <= x:
        k += 1
    return lvl[f, k]


_GUARD = np.float32(2e-3)  # distance from a rounding boundary below which the step table decides
_GAMMA = np.float32(0.6)  # nii.materials.DISPLAY_GAMMA (checked against it when the tables are built)
_HALF = np.float32(0.5)
_ENC_SCALE = np.float32(2.0)  # nii.encoding.ATT_SCALE (checked likewise)


@nb.njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH)
def _rounded(v, f, x, thr, lvl, start, inv_cell):  # pragma: no cover - compiled
    """``floor(v)`` where ``v`` = law value + 0.5 computed with LLVM's exp; near a rounding
    boundary (where a last-bit difference from NumPy's exp could matter) the exact step table
    decides instead."""
    fl = np.floor(v)
    frac = v - fl
    if frac < _GUARD or frac > _F1 - _GUARD:
        return _step(f, x, thr, lvl, start, inv_cell)
    return np.uint8(fl)


# ----------------------------------------------------------------------------------------------
# vectorisable float32 log and exp (Cephes logf / expf) on contiguous scratch rows
# ----------------------------------------------------------------------------------------------
# LLVM calls libm for np.log / np.exp one element at a time (no vector math library here); these
# branch-free polynomial versions vectorise. Accuracy ~1-2 ulp (tests: <= 1e-5 relative to NumPy).

_SQRT2 = np.float32(1.41421356237)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_LOG2E = np.float32(1.44269504088896341)
_EXP_MIN = np.float32(-87.0)


@nb.njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH)
def _vlog(x, bits, ex, n):  # pragma: no cover - compiled
    """``x[:n] = ln(x[:n])`` for positive normal float32; ``bits`` is ``x.view(int32)``, ``ex`` int32 scratch."""
    for k in range(n):
        b = bits[k]
        ex[k] = (b >> 23) - 127
        bits[k] = (b & 0x007FFFFF) | 0x3F800000
    for k in range(n):
        m = x[k]
        e = np.float32(ex[k])
        big = m > _SQRT2
        m = np.float32(0.5) * m if big else m
        e = e + _F1 if big else e
        f = m - _F1
        z = f * f
        y = np.float32(7.0376836292e-2)
        y = y * f + np.float32(-1.1514610310e-1)
        y = y * f + np.float32(1.1676998740e-1)
        y = y * f + np.float32(-1.2420140846e-1)
        y = y * f + np.float32(1.4249322787e-1)
        y = y * f + np.float32(-1.6668057665e-1)
        y = y * f + np.float32(2.0000714765e-1)
        y = y * f + np.float32(-2.4999993993e-1)
        y = y * f + np.float32(3.3333331174e-1)
        y = y * f * z
        y = y + _LN2_LO * e
        y = y - np.float32(0.5) * z
        x[k] = f + y + _LN2_HI * e


@nb.njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH)
def _vexp(x, pw, pbits, n):  # pragma: no cover - compiled
    """``x[:n] = exp(x[:n])`` for ``x <= 0``; ``pw`` float32 scratch, ``pbits = pw.view(int32)``."""
    for k in range(n):
        v = x[k]
        v = max(_EXP_MIN, v)
        fn = np.floor(v * _LOG2E + np.float32(0.5))
        r = v - fn * _LN2_HI
        r = r - fn * _LN2_LO
        z = r * r
        y = np.float32(1.9875691500e-4)
        y = y * r + np.float32(1.3981999507e-3)
        y = y * r + np.float32(8.3334519073e-3)
        y = y * r + np.float32(4.1665795894e-2)
        y = y * r + np.float32(1.6666665459e-1)
        y = y * r + np.float32(5.0000001201e-1)
        x[k] = y * z + r + _F1
        pbits[k] = (np.int32(fn) + 127) << 23
    for k in range(n):
        x[k] = x[k] * pw[k]


# ----------------------------------------------------------------------------------------------
# per-pixel maps
# ----------------------------------------------------------------------------------------------


@nb.njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH)
def _zeff_lookup(l_hi, r, table, l0, inv_dl, r0, inv_dr):  # pragma: no cover - compiled
    """Bilinear lookup of ``table[i, j]`` at ``L = l0 + i / inv_dl``, ``R = r0 + j / inv_dr``; clamped."""
    nl = table.shape[0]
    nr = table.shape[1]
    fx = (l_hi - l0) * inv_dl
    if not fx > _F0:
        fx = _F0
    fx = min(fx, np.float32(nl - 1))
    fy = (r - r0) * inv_dr
    if not fy > _F0:
        fy = _F0
    fy = min(fy, np.float32(nr - 1))
    i = int(fx)
    i = min(i, nl - 2)
    j = int(fy)
    j = min(j, nr - 2)
    tx = fx - np.float32(i)
    ty = fy - np.float32(j)
    a = table[i, j] + ty * (table[i, j + 1] - table[i, j])
    b = table[i + 1, j] + ty * (table[i + 1, j + 1] - table[i + 1, j])
    return a + tx * (b - a)


@nb.njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH)
def _pixel_maps(
    l_lo, l_hi, impenetrable, mode, fixed_class, zpre, b, eh, el, air_max, z_org, z_mix,
    thr, lvl, start, inv_cell, hue, zeff, material, color, enc, h, w, want_color, want_enc,
):  # pragma: no cover - compiled
    """Zeff, class, colour and encoding of pixel ``(h, w)``; writes into the output maps.

    ``zpre`` is the table's Zeff at the pixel, ``b = exp(-DISPLAY_GAMMA * max(L_high, 0))``,
    ``eh``, ``el`` = ``exp(-max(L, 0) / ATT_SCALE)`` (precomputed, vectorised, by :func:`_row_prepass`).
    """
    nan = np.float32(np.nan)
    if impenetrable:
        cls = _IMPENETRABLE
        z = nan
    elif fixed_class >= 0:
        cls = fixed_class
        z = nan
    elif l_hi < air_max:
        cls = _AIR
        z = nan
    elif mode == MODE_DUAL:
        z = zpre
        if z < z_org:
            cls = _ORGANIC
        elif z < z_mix:
            cls = _MIXED
        else:
            cls = _METAL
    else:
        cls = _MIXED  # single energy: "object" pixels (documented in nii.normalization)
        z = nan
    zeff[h, w] = z
    material[h, w] = cls
    if want_color:
        if cls == _AIR:
            color[h, w, 0] = 255
            color[h, w, 1] = 255
            color[h, w, 2] = 255
        elif cls == _IMPENETRABLE:
            color[h, w, 0] = 0
            color[h, w, 1] = 0
            color[h, w, 2] = 0
        else:
            f0 = (cls - 1) * 3
            x = max(_F0, l_hi)
            color[h, w, 0] = _rounded(hue[cls, 0] * b + _HALF, f0, x, thr, lvl, start, inv_cell)
            color[h, w, 1] = _rounded(hue[cls, 1] * b + _HALF, f0 + 1, x, thr, lvl, start, inv_cell)
            color[h, w, 2] = _rounded(hue[cls, 2] * b + _HALF, f0 + 2, x, thr, lvl, start, inv_cell)
    if want_enc:
        if cls == _IMPENETRABLE:
            enc[h, w, 0] = 255
            enc[h, w, 1] = 0
            enc[h, w, 2] = 255
        else:
            xh = max(_F0, l_hi)
            xl = max(_F0, l_lo)
            vh = np.float32(255.0) * (_F1 - eh) + _HALF
            vl = np.float32(255.0) * (_F1 - el) + _HALF
            enc[h, w, 0] = _rounded(vh, 9, xh, thr, lvl, start, inv_cell)
            enc[h, w, 2] = _rounded(vl, 9, xl, thr, lvl, start, inv_cell)
            if cls == _AIR or z != z or l_hi < air_max:  # noqa: PLR0124 (z != z: NaN)
                enc[h, w, 1] = 0
            else:
                zn = (z - np.float32(5.0)) / np.float32(25.0)
                zn = max(zn, _F0)
                zn = min(zn, _F1)
                enc[h, w, 1] = np.uint8(np.floor(np.float32(255.0) * zn + np.float32(0.5)))


@nb.njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH)
def _row_prepass(lo_row, hi_row, n, mode, table, tpar, air_max, zb, bb, ehb, elb, pw, pbits):  # pragma: no cover
    """Branch-free, vectorisable part of the per-pixel maps for one row segment."""
    for k in range(n):
        lh = hi_row[k]
        ll = lo_row[k]
        xh = max(_F0, lh)
        xl = max(_F0, ll)
        bb[k] = -_GAMMA * xh
        ehb[k] = -xh / _ENC_SCALE
        elb[k] = -xl / _ENC_SCALE
    _vexp(bb, pw, pbits, n)
    _vexp(ehb, pw, pbits, n)
    _vexp(elb, pw, pbits, n)
    if mode == MODE_DUAL:
        for k in range(n):
            lh = hi_row[k]
            zb[k] = _zeff_lookup(lh, lo_row[k] / (max(air_max, lh)), table, tpar[0], tpar[1], tpar[2], tpar[3])


# ----------------------------------------------------------------------------------------------
# fused kernel: counts -> everything
# ----------------------------------------------------------------------------------------------


@nb.njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def fused_normalize(
    counts, dark, air0, slope, t0, starve, rep_lo, rep_hi, rep_w,
    mode, table, tpar, air_max, z_org, z_mix, thr, lvl, start, inv_cell, hue,
    att, valid, zeff, material, color, enc,
):  # pragma: no cover - compiled
    """Normalise counts ``(E, H, W)`` in one pass (see module docstring).

    Parameters (all validated by the wrapper in :mod:`nii.normalization`)
    ----------------------------------------------------------------
    counts : uint16/uint32 (E, H, W)
    dark, air0, slope, starve : float32 (E, H)
        Dark level; open-beam signal above dark at line ``0`` of the scan; its change per line
        (drift); the starvation threshold in counts above dark.
    t0 : int
        Index of this block's first line within the scan (streaming).
    rep_lo, rep_hi : int32 (E, H)
        ``-1`` for a good channel; for a bad one the nearest good channel below / above
        (``-2`` when there is none on that side).
    rep_w : float32 (E, H)
        Interpolation weight of ``rep_hi``.
    mode : int
        :data:`MODE_SINGLE` or :data:`MODE_DUAL` (low = plane 0, high = plane E-1).
    table, tpar : float32 (nL, nR), float32 (4,)
        Zeff table and its grid ``(l0, 1/dL, r0, 1/dR)``.
    att : float32 (E, H, W)          out
    valid : bool (H, W)              out; False where any energy starved
    zeff, material : (H, W)          out
    color, enc : uint8 (H, W, 3)     out; a (0, 0, 3) array skips that map
    """
    ne, nh, nw = counts.shape
    want_color = color.shape[0] == nh
    want_enc = enc.shape[0] == nh
    ntiles = (nw + TILE_LINES - 1) // TILE_LINES
    for ti in prange(ntiles):
        w0 = ti * TILE_LINES
        w1 = min(nw, w0 + TILE_LINES)
        n = w1 - w0
        starved = np.zeros((ne, nh, n), dtype=np.bool_)
        ratio = np.empty(TILE_LINES, dtype=np.float32)
        rbits = ratio.view(np.int32)
        ibuf = np.empty(TILE_LINES, dtype=np.int32)
        # 1. good channels: dark, drift-corrected air, log, starvation (branch-free, vectorised)
        for e in range(ne):
            for h in range(nh):
                if rep_lo[e, h] != -1:
                    continue
                d = dark[e, h]
                a = air0[e, h]
                s = slope[e, h]
                th = starve[e, h]
                for k in range(n):
                    w = w0 + k
                    i0 = max(a + s * np.float32(t0 + w), th)
                    net = np.float32(counts[e, h, w]) - d
                    starved[e, h, k] = net < th
                    ratio[k] = i0 / max(net, th)
                _vlog(ratio, rbits, ibuf, n)
                for k in range(n):
                    att[e, h, w0 + k] = ratio[k]
        # 2. bad channels: interpolate attenuation from the nearest good channels
        for e in range(ne):
            for h in range(nh):
                lo = rep_lo[e, h]
                if lo == -1:
                    continue
                hi = rep_hi[e, h]
                if lo == -2:
                    lo = hi
                if hi == -2:
                    hi = lo
                wt = rep_w[e, h]
                for k in range(n):
                    w = w0 + k
                    att[e, h, w] = att[e, lo, w] + wt * (att[e, hi, w] - att[e, lo, w])
                    starved[e, h, k] = starved[e, lo, k] or starved[e, hi, k]
        # 3. per-pixel maps: vectorised pre-pass per row, then the class-dependent writes
        zb = np.empty(TILE_LINES, dtype=np.float32)
        bb = np.empty(TILE_LINES, dtype=np.float32)
        ehb = np.empty(TILE_LINES, dtype=np.float32)
        elb = np.empty(TILE_LINES, dtype=np.float32)
        pw = np.empty(TILE_LINES, dtype=np.float32)
        pbits = pw.view(np.int32)
        for h in range(nh):
            _row_prepass(att[0, h, w0:w1], att[ne - 1, h, w0:w1], n, mode, table, tpar, air_max,
                         zb, bb, ehb, elb, pw, pbits)
            for k in range(n):
                w = w0 + k
                any_starved = False
                for e in range(ne):
                    any_starved = any_starved or starved[e, h, k]
                valid[h, w] = not any_starved
                _pixel_maps(
                    att[0, h, w], att[ne - 1, h, w], starved[ne - 1, h, k], mode, -1, zb[k], bb[k], ehb[k],
                    elb[k], air_max, z_org, z_mix, thr, lvl, start, inv_cell, hue, zeff, material, color, enc,
                    h, w, want_color, want_enc,
                )


@nb.njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def maps_from_attenuation(
    att, impenetrable, fixed, mode, table, tpar, air_max, z_org, z_mix, thr, lvl, start, inv_cell, hue,
    zeff, material, color, enc,
):  # pragma: no cover - compiled
    """Zeff, class, colour and encoding from attenuation ``(E, H, W)``.

    ``impenetrable`` (H, W) bool forces the IMPENETRABLE class; ``fixed`` (H, W) uint8 (or a
    (0, 0) array) gives a class to keep where it is not 255 (rendered scans whose class came from
    the hue). Outputs as in :func:`fused_normalize`.
    """
    ne, nh, nw = att.shape
    want_color = color.shape[0] == nh
    want_enc = enc.shape[0] == nh
    has_fixed = fixed.shape[0] == nh
    for h in prange(nh):
        zb = np.empty(nw, dtype=np.float32)
        bb = np.empty(nw, dtype=np.float32)
        ehb = np.empty(nw, dtype=np.float32)
        elb = np.empty(nw, dtype=np.float32)
        pw = np.empty(nw, dtype=np.float32)
        pbits = pw.view(np.int32)
        _row_prepass(att[0, h], att[ne - 1, h], nw, mode, table, tpar, air_max, zb, bb, ehb, elb, pw, pbits)
        for w in range(nw):
            fc = -1
            if has_fixed and fixed[h, w] != 255:
                fc = np.int64(fixed[h, w])
            imp = impenetrable[h, w] or fc == _IMPENETRABLE
            _pixel_maps(
                att[0, h, w], att[ne - 1, h, w], imp, mode, fc, zb[w], bb[w], ehb[w], elb[w], air_max, z_org,
                z_mix, thr, lvl, start, inv_cell, hue, zeff, material, color, enc, h, w, want_color, want_enc,
            )
