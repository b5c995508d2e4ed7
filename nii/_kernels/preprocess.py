"""Numba kernels of the preprocessing hot path (counts -> attenuation, Zeff, class, colour, encoding).

Public wrappers: :mod:`nii.normalization` (``normalize``, ``normalize_stream``, ``detector_input``).
NumPy references: ``tests/naive.py`` (``naive_attenuation``, ``naive_zeff_lookup``, ...).

Two kernels share one row routine (:func:`_row_maps`):

* :func:`fused_normalize` — one pass over the counts, tile by tile of scan lines (up to
  :data:`TILE_LINES`; at least two tiles per block so that two threads share it): dark
  subtraction, drift-corrected air division, log and photon-starvation check for every good
  channel of the tile, then dead/hot channel repair (interpolation between the nearest good
  channels), then the per-pixel maps channel row by channel row: valid mask, ``R = L_low /
  L_high``, bilinear Zeff lookup, material class, operator colour and detector encoding;
* :func:`maps_from_attenuation` — the same per-pixel maps from attenuation already computed
  (resampled scans, scans given as attenuation).

Everything runs as passes over contiguous rows (the output rows, or small scratch rows) that
LLVM vectorises: no per-pixel branches, no strided stores (the ``(H, W, 3)`` colour and
encoding rows are filled from three channel rows in a final interleaving pass), ``log`` and
``exp`` as branch-free polynomials (:func:`_vlog`, :func:`_vexp`). The four table reads of the
Zeff lookup stay a scalar loop (LLVM does not emit gathers here), after a vectorised pass that
computes the cell indices and weights.

Exact colours: the operator colour law and the detector encoding are defined by NumPy float32
code (:func:`nii.materials.render_pseudocolor`, :func:`nii.encoding.encode_detector_input`).
``exp`` of LLVM and of NumPy's SIMD loops may differ in the last bits, which would change a
rounded colour now and then. Each law is a monotone step function of ``L`` with unit steps,
whose exact float32 step positions are found once from the NumPy law itself
(:func:`step_tables`, bisection on float32 bit patterns). The kernels round ``law + 1/2``
computed with :func:`_vexp`; where that value lies within :data:`_GUARD` of an integer (a few
tenths of a percent of the pixels; the two exps differ by far less) the pixel is flagged, and
a scalar pass over the flagged pixels only decides between the two candidate values with one
comparison against the exact step position (:func:`_exact_dec`, :func:`_exact_inc`). The result
is exact by construction.

Arithmetic is float32 throughout; ``fastmath`` is set in one place (:data:`nii._kernels.FASTMATH`).
"""

from __future__ import annotations

import functools

import numba as nb
import numpy as np
from numba import prange

from ._config import FASTMATH

__all__ = [
    "MIN_TILE_LINES",
    "MODE_DUAL",
    "MODE_SINGLE",
    "STEP_CELL",
    "TILE_LINES",
    "fused_normalize",
    "maps_from_attenuation",
    "step_tables",
]

#: Most scan lines per tile of the fused kernel (long rows vectorise with little per-row overhead;
#: a tile is cut in two when the block is shorter than two tiles, so that two threads share it).
TILE_LINES = 1024
#: Fewest scan lines per tile (unless the block is shorter).
MIN_TILE_LINES = 64
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
        a safe starting index for a linear scan from any ``L`` (the kernels, which already know
        the value up to one step, do not need it).

    Every step changes the value by one: down for the colour laws, up for the encoding (checked).
    """
    from ..encoding import ATT_SCALE
    from ..materials import CLASS_HUE_RGB, DISPLAY_GAMMA

    if np.float32(DISPLAY_GAMMA) != _GAMMA or np.float32(ATT_SCALE) != _ENC_SCALE:
        raise RuntimeError("kernel constants differ from nii.materials / nii.encoding")  # pragma: no cover
    laws = [_law_color(int(CLASS_HUE_RGB[c, k])) for c in (1, 2, 3) for k in range(3)] + [_law_encoding]
    steps = [_steps_of(law) for law in laws]
    # the kernels' exact lookup relies on unit steps, down for the colours, up for the encoding
    for f, (_, v) in enumerate(steps):
        if not np.all(np.diff(v.astype(np.int64)) == (1 if f == len(laws) - 1 else -1)):
            raise RuntimeError("step law without unit steps in the expected direction")  # pragma: no cover
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


#: Distance of ``law + 1/2`` from an integer below which the exact step table decides (the exps of
#: LLVM and NumPy differ by a few ulp: < 2e-4 on the 0..255.5 scale).
_GUARD = np.float32(2e-3)
_GAMMA = np.float32(0.6)  # nii.materials.DISPLAY_GAMMA (checked against it when the tables are built)
_HALF = np.float32(0.5)
_ENC_SCALE = np.float32(2.0)  # nii.encoding.ATT_SCALE (checked likewise)


@nb.njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH)
def _boundary(v):  # pragma: no cover - compiled
    """``(B, near)``: the integer nearest to ``v`` and whether ``v`` lies within :data:`_GUARD` of it."""
    fl = np.floor(v)
    frac = v - fl
    up = frac > _F1 - _GUARD
    return np.int64(fl) + (1 if up else 0), up | (frac < _GUARD)


@nb.njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH)
def _exact_dec(v, fast, f, x, thr, lvl):  # pragma: no cover - compiled
    """Exact value of the decreasing law ``f`` (colour) at ``L = x >= 0``.

    ``v`` is the law's value + 1/2 from LLVM's exp and ``fast = floor(v)``. Away from a rounding
    boundary ``fast`` is exact (the two exps differ by a few ulp, far below :data:`_GUARD`). Near
    the boundary ``B`` the exact value is ``B`` or ``B - 1``; the law steps from ``B`` down to
    ``B - 1`` at its step number ``lvl[f, 0] - B`` (unit steps, checked by :func:`step_tables`),
    so one comparison with that exact float32 step position decides.
    """
    bnd, near = _boundary(v)
    if not near:
        return fast
    i = min(max(np.int64(lvl[f, 0]) - bnd, 0), thr.shape[1] - 1)
    return np.uint8(bnd - 1) if thr[f, i] <= x else np.uint8(bnd)


@nb.njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH)
def _exact_inc(v, fast, f, x, thr, lvl):  # pragma: no cover - compiled
    """As :func:`_exact_dec` for an increasing law (the encoding): it reaches ``B`` at step ``B - lvl[f, 0] - 1``."""
    bnd, near = _boundary(v)
    if not near:
        return fast
    i = min(max(bnd - np.int64(lvl[f, 0]) - 1, 0), thr.shape[1] - 1)
    return np.uint8(bnd) if thr[f, i] <= x else np.uint8(bnd - 1)


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
# per-pixel maps, one row segment at a time
# ----------------------------------------------------------------------------------------------


@nb.njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH)
def _zeff_row(lo_row, hi_row, n, tflat, nl, nr, tpar, air_max, zrow, txb, tyb, pb):  # pragma: no cover
    """``zrow[:n]`` = bilinear lookup of the Zeff table at ``(L_high, R = L_low / max(air_max, L_high))``.

    ``tflat`` is the C-ordered ``(nl, nr)`` table flattened; the grid is ``L = l0 + i / inv_dl``,
    ``R = r0 + j / inv_dr`` with ``tpar = (l0, inv_dl, r0, inv_dr)``; coordinates are clamped to the
    grid. Two passes: cell index and weights (branch-free, vectorised; into the float32 scratch
    rows ``txb``, ``tyb`` and the int32 row ``pb``), then the four table reads and the
    interpolation (a scalar loop: LLVM does not emit gathers for this target).
    """
    l0 = tpar[0]
    inv_dl = tpar[1]
    r0 = tpar[2]
    inv_dr = tpar[3]
    fxmax = np.float32(nl - 1)
    fymax = np.float32(nr - 1)
    imax = np.int32(nl - 2)
    jmax = np.int32(nr - 2)
    nr32 = np.int32(nr)
    for k in range(n):
        lh = hi_row[k]
        r = lo_row[k] / (lh if lh > air_max else air_max)  # max(air_max, lh); air_max if lh is NaN
        fx = (lh - l0) * inv_dl
        fx = fx if fx > _F0 else _F0  # also maps NaN to 0
        fx = fx if fx < fxmax else fxmax
        fy = (r - r0) * inv_dr
        fy = fy if fy > _F0 else _F0
        fy = fy if fy < fymax else fymax
        i = np.int32(fx)
        i = i if i < imax else imax
        j = np.int32(fy)
        j = j if j < jmax else jmax
        txb[k] = fx - np.float32(i)
        tyb[k] = fy - np.float32(j)
        pb[k] = i * nr32 + j
    d1 = np.uint32(1)
    dr = np.uint32(nr)
    dr1 = np.uint32(nr + 1)
    for k in range(n):
        p = np.uint32(pb[k])  # unsigned: no wrap-around check
        ty = tyb[k]
        t00 = tflat[p]
        t10 = tflat[p + dr]
        a = t00 + ty * (tflat[p + d1] - t00)
        b = t10 + ty * (tflat[p + dr1] - t10)
        zrow[k] = a + txb[k] * (b - a)


@nb.njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH)
def _near(v):  # pragma: no cover - compiled
    """``(floor(v), True where v is within _GUARD of a rounding boundary)``."""
    fl = np.floor(v)
    frac = v - fl
    return fl, (frac < _GUARD) | (frac > _F1 - _GUARD)


@nb.njit(cache=True, nogil=True, inline="always", fastmath=FASTMATH)
def _row_maps(
    lo_row, hi_row, imp_row, fixed_row, n, mode, tflat, nl, nr, tpar, air_max, z_org, z_mix,
    thr, lvl, hue, zrow, mrow, crow, erow, want_color, want_enc, fscr, uscr,
):  # pragma: no cover - compiled
    """Zeff, class, colour and encoding of one row segment of ``n`` pixels.

    Inputs: ``lo_row``, ``hi_row`` (L of the low / high plane), ``imp_row`` (bool, forces
    IMPENETRABLE), ``fixed_row`` (uint8 class to keep where not 255; a length-0 array for none).
    Outputs (rows of the output maps): ``zrow``, ``mrow``, ``crow`` and ``erow`` (``(n, 3)``; only
    written when ``want_color`` / ``want_enc``). Scratch rows (length ``>= n``): ``fscr`` = float32
    ``(s0, s1, s2, pw, pw.view(int32))``; ``uscr`` = uint8 ``(u0, u1, u2)``, then uint64 ``fwords``
    (``>= ceil(n / 8)``, zero beyond ``n``) and ``fwords.view(uint8)`` (the per-pixel flags).

    Every pass is a branch-free loop over the row that LLVM vectorises. The rounded laws are
    evaluated with the vectorised exp; pixels within :data:`_GUARD` of a rounding boundary are
    flagged and re-done exactly from the step tables (:func:`_exact_dec`, :func:`_exact_inc`) in a
    final scalar pass that skips eight unflagged pixels at a time.
    """
    s0, s1, s2, pw, pbits = fscr
    u0, u1, u2, fwords, flag = uscr
    nan = np.float32(np.nan)
    has_fixed = fixed_row.shape[0] > 0
    # 1. Zeff (table value for now) and class
    if mode == MODE_DUAL:
        _zeff_row(lo_row, hi_row, n, tflat, nl, nr, tpar, air_max, zrow, s0, s1, pbits)
        for k in range(n):
            z = zrow[k]
            c = np.uint8(_METAL)
            c = np.uint8(_MIXED) if z < z_mix else c
            c = np.uint8(_ORGANIC) if z < z_org else c
            air = hi_row[k] < air_max
            c = np.uint8(_AIR) if air else c
            imp = imp_row[k]
            c = np.uint8(_IMPENETRABLE) if imp else c
            zrow[k] = nan if (air | imp) else z
            mrow[k] = c
    else:
        for k in range(n):
            c = np.uint8(_MIXED)  # single energy: "object" pixels (documented in nii.normalization)
            c = np.uint8(_AIR) if hi_row[k] < air_max else c
            c = np.uint8(_IMPENETRABLE) if imp_row[k] else c
            zrow[k] = nan
            mrow[k] = c
    if has_fixed:
        for k in range(n):
            fc = fixed_row[k]
            keep = fc != 255
            imp = imp_row[k] | (fc == _IMPENETRABLE)
            c = fc if keep else mrow[k]
            mrow[k] = np.uint8(_IMPENETRABLE) if imp else c
            zrow[k] = nan if (keep | imp) else zrow[k]
    # 2. operator colour: hue * b + 1/2 rounded, b = exp(-DISPLAY_GAMMA * max(L_high, 0))
    if want_color:
        bb = s0
        for k in range(n):
            bb[k] = -_GAMMA * max(_F0, hi_row[k])
        _vexp(bb, pw, pbits, n)
        h10 = hue[1, 0]
        h11 = hue[1, 1]
        h12 = hue[1, 2]
        h20 = hue[2, 0]
        h21 = hue[2, 1]
        h22 = hue[2, 2]
        h30 = hue[3, 0]
        h31 = hue[3, 1]
        h32 = hue[3, 2]
        for k in range(n):
            c = mrow[k]
            b = bb[k]
            is1 = c == _ORGANIC
            is2 = c == _MIXED
            const = (c == _AIR) | (c == _IMPENETRABLE)
            cv = np.float32(255.5) if c == _AIR else _HALF
            m0 = h10 if is1 else (h20 if is2 else h30)
            m1 = h11 if is1 else (h21 if is2 else h31)
            m2 = h12 if is1 else (h22 if is2 else h32)
            v0 = m0 * b + _HALF
            v1 = m1 * b + _HALF
            v2 = m2 * b + _HALF
            v0 = cv if const else v0
            v1 = cv if const else v1
            v2 = cv if const else v2
            f0, n0 = _near(v0)
            f1, n1 = _near(v1)
            f2, n2 = _near(v2)
            u0[k] = np.uint8(f0)
            u1[k] = np.uint8(f1)
            u2[k] = np.uint8(f2)
            flag[k] = np.uint8(n0 | n1 | n2)
        for k in range(n):
            crow[k, 0] = u0[k]
            crow[k, 1] = u1[k]
            crow[k, 2] = u2[k]
        for q in range((n + 7) >> 3):
            if fwords[q] == 0:  # rare: near a rounding boundary, the exact step table decides
                continue
            for k in range(q << 3, min(n, (q << 3) + 8)):
                if not flag[k]:
                    continue
                c = mrow[k]
                f0 = (np.int64(c) - 1) * 3
                x = max(_F0, hi_row[k])
                b = bb[k]
                crow[k, 0] = _exact_dec(hue[c, 0] * b + _HALF, crow[k, 0], f0, x, thr, lvl)
                crow[k, 1] = _exact_dec(hue[c, 1] * b + _HALF, crow[k, 1], f0 + 1, x, thr, lvl)
                crow[k, 2] = _exact_dec(hue[c, 2] * b + _HALF, crow[k, 2], f0 + 2, x, thr, lvl)
    # 3. detector encoding: channels 0 / 2 = 255 (1 - exp(-max(L, 0) / ATT_SCALE)) rounded, 1 = Zeff
    if want_enc:
        ehb = s1
        elb = s2
        for k in range(n):
            ehb[k] = -max(_F0, hi_row[k]) / _ENC_SCALE
            elb[k] = -max(_F0, lo_row[k]) / _ENC_SCALE
        _vexp(ehb, pw, pbits, n)
        _vexp(elb, pw, pbits, n)
        for k in range(n):
            c = mrow[k]
            imp = c == _IMPENETRABLE
            vh = np.float32(255.0) * (_F1 - ehb[k]) + _HALF
            vl = np.float32(255.0) * (_F1 - elb[k]) + _HALF
            vh = np.float32(255.5) if imp else vh
            vl = np.float32(255.5) if imp else vl
            fh, nh_ = _near(vh)
            fl, nl_ = _near(vl)
            u0[k] = np.uint8(fh)
            u2[k] = np.uint8(fl)
            flag[k] = np.uint8(nh_ | nl_)
            z = zrow[k]
            zn = (z - np.float32(5.0)) / np.float32(25.0)
            zn = max(zn, _F0)
            zn = min(zn, _F1)
            g = np.uint8(np.floor(np.float32(255.0) * zn + np.float32(0.5)))
            no_z = (c == _AIR) | imp | (z != z) | (hi_row[k] < air_max)  # noqa: PLR0124 (z != z: NaN)
            u1[k] = np.uint8(0) if no_z else g
        for k in range(n):
            erow[k, 0] = u0[k]
            erow[k, 1] = u1[k]
            erow[k, 2] = u2[k]
        for q in range((n + 7) >> 3):
            if fwords[q] == 0:
                continue
            for k in range(q << 3, min(n, (q << 3) + 8)):
                if not flag[k]:
                    continue
                xh = max(_F0, hi_row[k])
                xl = max(_F0, lo_row[k])
                vh = np.float32(255.0) * (_F1 - ehb[k]) + _HALF
                vl = np.float32(255.0) * (_F1 - elb[k]) + _HALF
                erow[k, 0] = _exact_inc(vh, erow[k, 0], 9, xh, thr, lvl)
                erow[k, 2] = _exact_inc(vl, erow[k, 2], 9, xl, thr, lvl)


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
    thr, lvl : float32, uint8 (10, K + 1)
        Exact step tables of :func:`step_tables`.
    start, inv_cell :
        The cell index of :func:`step_tables` and ``1 / STEP_CELL``; not needed by the kernel any
        more (the flagged pixels find their step from the level), kept for a stable signature.
    hue : float32 (5, 3)
        :data:`nii.materials.CLASS_HUE_RGB`.
    att : float32 (E, H, W)          out
    valid : bool (H, W)              out; False where any energy starved
    zeff, material : (H, W)          out
    color, enc : uint8 (H, W, 3)     out; a (0, 0, 3) array skips that map
    """
    ne, nh, nw = counts.shape
    want_color = color.shape[0] == nh
    want_enc = enc.shape[0] == nh
    nl, nr = table.shape
    tflat = table.reshape(nl * nr)
    no_fixed = np.zeros(0, dtype=np.uint8)
    # tiles of scan lines: long rows cost less per pixel (loop and view set-up per row), several
    # tiles keep the threads busy: half the block, within [MIN_TILE_LINES, TILE_LINES]
    tile = (nw + 1) // 2
    tile = min(TILE_LINES, max(MIN_TILE_LINES, (tile + 15) // 16 * 16))
    ntiles = (nw + tile - 1) // tile
    for ti in prange(ntiles):
        w0 = ti * tile
        w1 = min(nw, w0 + tile)
        n = w1 - w0
        starved = np.empty((ne, nh, n), dtype=np.bool_)
        ibuf = np.empty(n, dtype=np.int32)
        s0 = np.empty(n, dtype=np.float32)
        s1 = np.empty(n, dtype=np.float32)
        s2 = np.empty(n, dtype=np.float32)
        pw = np.empty(n, dtype=np.float32)
        pbits = pw.view(np.int32)
        s0bits = s0.view(np.int32)
        u0 = np.empty(n, dtype=np.uint8)
        u1 = np.empty(n, dtype=np.uint8)
        u2 = np.empty(n, dtype=np.uint8)
        fwords = np.zeros((n + 7) // 8, dtype=np.uint64)
        flag = fwords.view(np.uint8)
        anys = np.empty(n, dtype=np.bool_)
        fscr = (s0, s1, s2, pw, pbits)
        uscr = (u0, u1, u2, fwords, flag)
        # 1. good channels: dark, drift-corrected air, log, starvation (branch-free, vectorised)
        for e in range(ne):
            for g in range(nh):
                if rep_lo[e, g] != -1:
                    continue
                d = dark[e, g]
                a = air0[e, g]
                sl = slope[e, g]
                th = starve[e, g]
                st = starved[e, g]
                crow_ = counts[e, g, w0:w1]
                for k in range(n):
                    i0 = max(a + sl * np.float32(t0 + w0 + k), th)
                    net = np.float32(crow_[k]) - d
                    st[k] = net < th
                    s0[k] = i0 / max(net, th)
                _vlog(s0, s0bits, ibuf, n)
                ar = att[e, g, w0:w1]
                for k in range(n):
                    ar[k] = s0[k]
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
                ar = att[e, h, w0:w1]
                alo = att[e, lo, w0:w1]
                ahi = att[e, hi, w0:w1]
                st = starved[e, h]
                slo = starved[e, lo]
                shi = starved[e, hi]
                for k in range(n):
                    ar[k] = alo[k] + wt * (ahi[k] - alo[k])
                    st[k] = slo[k] | shi[k]
        # 3. per-pixel maps, row by row (passes over contiguous rows: see _row_maps)
        for h in range(nh):
            for k in range(n):
                anys[k] = starved[0, h, k]
            for e in range(1, ne):
                se = starved[e, h]
                for k in range(n):
                    anys[k] = anys[k] | se[k]
            vrow = valid[h, w0:w1]
            for k in range(n):
                vrow[k] = not anys[k]
            crow = color[h, w0:w1] if want_color else color[0, 0:0]
            erow = enc[h, w0:w1] if want_enc else enc[0, 0:0]
            _row_maps(
                att[0, h, w0:w1], att[ne - 1, h, w0:w1], starved[ne - 1, h], no_fixed, n, mode, tflat, nl, nr,
                tpar, air_max, z_org, z_mix, thr, lvl, hue, zeff[h, w0:w1], material[h, w0:w1], crow, erow,
                want_color, want_enc, fscr, uscr,
            )


@nb.njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def maps_from_attenuation(
    att, impenetrable, fixed, mode, table, tpar, air_max, z_org, z_mix, thr, lvl, start, inv_cell, hue,
    zeff, material, color, enc,
):  # pragma: no cover - compiled
    """Zeff, class, colour and encoding from attenuation ``(E, H, W)``.

    ``impenetrable`` (H, W) bool forces the IMPENETRABLE class; ``fixed`` (H, W) uint8 (or a
    (0, 0) array) gives a class to keep where it is not 255 (rendered scans whose class came from
    the hue). Other inputs and the outputs as in :func:`fused_normalize`.
    """
    ne, nh, nw = att.shape
    want_color = color.shape[0] == nh
    want_enc = enc.shape[0] == nh
    has_fixed = fixed.shape[0] == nh
    nl, nr = table.shape
    tflat = table.reshape(nl * nr)
    no_fixed = np.zeros(0, dtype=np.uint8)
    # rows in chunks: a prange over chunks allocates the scratch once per chunk, not per row
    chunk = 16
    for hc in prange((nh + chunk - 1) // chunk):
        s0 = np.empty(nw, dtype=np.float32)
        s1 = np.empty(nw, dtype=np.float32)
        s2 = np.empty(nw, dtype=np.float32)
        pw = np.empty(nw, dtype=np.float32)
        pbits = pw.view(np.int32)
        u0 = np.empty(nw, dtype=np.uint8)
        u1 = np.empty(nw, dtype=np.uint8)
        u2 = np.empty(nw, dtype=np.uint8)
        fwords = np.zeros((nw + 7) // 8, dtype=np.uint64)
        flag = fwords.view(np.uint8)
        fscr = (s0, s1, s2, pw, pbits)
        uscr = (u0, u1, u2, fwords, flag)
        for h in range(hc * chunk, min(nh, hc * chunk + chunk)):
            frow = fixed[h] if has_fixed else no_fixed
            crow = color[h] if want_color else color[0, 0:0]
            erow = enc[h] if want_enc else enc[0, 0:0]
            _row_maps(
                att[0, h], att[ne - 1, h], impenetrable[h], frow, nw, mode, tflat, nl, nr, tpar, air_max, z_org,
                z_mix, thr, lvl, hue, zeff[h], material[h], crow, erow, want_color, want_enc, fscr, uscr,
            )
