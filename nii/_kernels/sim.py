"""Numba kernels of image formation (polychromatic transmission through a material stack).

Public wrappers: :func:`nii.sim.imaging.polychromatic_transmission` and
:func:`nii.sim.imaging.form_image`. NumPy references:
``tests/naive.py::polychromatic_transmission_naive`` and ``signal_chain_naive``.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from ._config import FASTMATH

__all__ = ["adc_kernel", "signal_chain_kernel", "transmission_kernel"]


# exp(-x) = exp(-x/128)**128: a degree-6 Taylor polynomial of exp(-y) about y = 0.34 on
# y = x/128 in [0, 0.68) followed by 7 squarings. Pure arithmetic, so LLVM vectorises it (libm's
# expf does not); relative error <= 2e-5 over [0, 87], below which transmission is 0 anyway.
_EXP_C = np.float32(math.exp(-0.34))
_X_MAX = np.float32(87.0)


#: Pixels per work item: a tile of one detector row, processed as contiguous vectors.
_TILE = 128


@nb.njit(parallel=True, cache=True, fastmath=FASTMATH)
def transmission_kernel(thick, mu, w1, w2, out_t, out_s2):  # pragma: no cover - compiled
    """Binned polychromatic Beer-Lambert for every pixel.

    Parameters
    ----------
    thick : float32 (M, H, W)
        Path length (cm) of each material.
    mu : float32 (E, M, B)
        Bin-averaged linear attenuation (1/cm) per channel, material and energy bin.
    w1, w2 : float32 (E, B)
        Bin weights of the signal (first moment) and of its noise variance (second moment); each
        row sums to 1; unused bins have weight 0.
    out_t, out_s2 : float32 (E, H, W)
        ``sum_b w1 exp(-sum_m mu t)`` and ``sum_b w2 exp(-sum_m mu t)``.

    Work items are tiles of ``_TILE`` pixels of one row. Pixels crossing no material are set to
    exactly 1 and dropped; the others are packed into contiguous vectors, and only materials
    present in the tile are accumulated, so the inner loops run over pixels and vectorise.
    """
    n_m, n_h, n_w = thick.shape
    n_e = mu.shape[0]
    n_b = mu.shape[2]
    c0 = np.float32(1.0)
    c2 = np.float32(1.0 / 2.0)
    c3 = np.float32(1.0 / 6.0)
    c4 = np.float32(1.0 / 24.0)
    c5 = np.float32(1.0 / 120.0)
    c6 = np.float32(1.0 / 720.0)
    inv = np.float32(1.0 / 128.0)
    y0 = np.float32(0.34)
    n_tiles = (n_w + _TILE - 1) // _TILE
    for job in nb.prange(n_h * n_tiles):
        h = job // n_tiles
        wa = (job % n_tiles) * _TILE
        wb = min(wa + _TILE, n_w)
        pix = np.empty(_TILE, np.int64)
        k = 0
        for w in range(wa, wb):
            hit = False
            for m in range(n_m):
                if thick[m, h, w] > 0.0:
                    hit = True
                    break
            if hit:
                pix[k] = w
                k += 1
            else:
                for e in range(n_e):
                    out_t[e, h, w] = 1.0
                    out_s2[e, h, w] = 1.0
        if k == 0:
            continue
        tt = np.zeros((n_m, _TILE), np.float32)
        present = np.zeros(n_m, np.bool_)
        for m in range(n_m):
            for i in range(k):
                v = thick[m, h, pix[i]]
                tt[m, i] = v
                if v > 0.0:
                    present[m] = True
        acc = np.empty((n_b, _TILE), np.float32)
        s1 = np.empty(_TILE, np.float32)
        s2 = np.empty(_TILE, np.float32)
        for e in range(n_e):
            for b in range(n_b):
                for i in range(k):
                    acc[b, i] = 0.0
            for m in range(n_m):
                if not present[m]:
                    continue
                for b in range(n_b):
                    c = mu[e, m, b]
                    for i in range(k):
                        acc[b, i] += c * tt[m, i]
            for i in range(k):
                s1[i] = 0.0
                s2[i] = 0.0
            for b in range(n_b):
                a1 = w1[e, b]
                a2 = w2[e, b]
                for i in range(k):
                    y = min(acc[b, i], _X_MAX) * inv - y0
                    p = _EXP_C * (c0 - y * (c0 - y * (c2 - y * (c3 - y * (c4 - y * (c5 - y * c6))))))
                    p = p * p
                    p = p * p
                    p = p * p
                    p = p * p
                    p = p * p
                    p = p * p
                    p = p * p
                    s1[i] += a1 * p
                    s2[i] += a2 * p
            for i in range(k):
                out_t[e, h, pix[i]] = s1[i]
                out_s2[e, h, pix[i]] = s2[i]


@nb.njit(parallel=True, cache=True, fastmath=FASTMATH)
def signal_chain_kernel(t, s2, z, n_air, air_sig, gain, drift, dark, amp, n0, sd_e, quantum, low_below, out, low):  # pragma: no cover - compiled
    """Detector signal chain for the object and air lines: gain, drift, dark, Gaussian noise.

    Parameters
    ----------
    t, s2 : float32 (E, H, W)
        Signal (blurred primary + scatter, relative to open beam) and its second-moment factor.
    z : float32 (E, H, L)
        Standard normal draws, ``L = W + 2 n_air`` (air lines, object lines, air lines).
    n_air : int
    air_sig : float
        Open-beam signal of the air lines (1 + scatter fraction).
    gain : float64 (E, H); drift : float64 (L); dark : float64 (E, H)
    amp, n0, sd_e : float64 (E,)
        Open-beam counts above dark, equivalent quanta of the open beam, read noise (counts).
    quantum : bool
        Add quantum noise (Gaussian ``Var = G^2 s2 / n0`` where ``n0 t^2 / s2 >= low_below``).
    out : float32 (E, H, L)
        ``dark + G * t + sqrt(G^2 s2 / n0 + sd_e^2) * z`` with ``G = gain * amp * drift``.
    low : bool (E, H, L)
        True where the expected equivalent quanta are below ``low_below``: there ``out`` holds
        only the read noise, and the caller adds exact Poisson quantum noise.
    """
    n_e, n_h, n_w = t.shape
    n_l = out.shape[2]
    for eh in nb.prange(n_e * n_h):
        e = eh // n_h
        h = eh % n_h
        g_eh = gain[e, h] * amp[e]
        d = dark[e, h]
        se2 = sd_e[e] * sd_e[e]
        inv_n0 = 1.0 / n0[e]
        for ln in range(n_l):
            j = ln - n_air
            if 0 <= j < n_w:
                sig = np.float64(t[e, h, j])
                v2 = np.float64(s2[e, h, j])
            else:
                sig = air_sig
                v2 = air_sig
            g = g_eh * drift[ln]
            var = se2
            is_low = False
            if quantum:
                if sig * sig * n0[e] < low_below * max(v2, 1e-30):
                    is_low = True
                else:
                    var += g * g * max(v2, 0.0) * inv_n0
            low[e, h, ln] = is_low
            out[e, h, ln] = np.float32(d + g * sig + np.sqrt(var) * z[e, h, ln])


@nb.njit(parallel=True, cache=True, fastmath=FASTMATH)
def adc_kernel(counts, z, dead, hot, dark, sd_e, n_dark, full, limit, scale, out):  # pragma: no cover - compiled
    """Dead/hot channels, saturation and ADC quantisation in one pass.

    Parameters
    ----------
    counts : float32 (E, H, N)
        Analog counts: ``n_dark`` dark lines, then the air/object/air lines.
    z : float32 (E, H, N - n_dark)
        The standard normals of the air/object/air lines (read noise of dead channels).
    dead, hot : bool (E, H)
        Dead channels read ``dark + sd_e * z``; hot ones read ``full`` while the tube is on.
    dark : float64 (E, H); sd_e : float64 (E,)
    full : float
        ADC full scale. ``limit``: clip level (``full`` with saturation, else the uint32 range).
    scale : float
        Output counts per ADC count (1, or 256 for the ideal ADC).
    out : uint16 or uint32 (E, H, N)
        ``rint(clip(counts, 0, limit) * scale)``.
    """
    n_e, n_h, n_l = counts.shape
    for eh in nb.prange(n_e * n_h):
        e = eh // n_h
        h = eh % n_h
        is_dead = dead[e, h]
        is_hot = hot[e, h]
        for ln in range(n_l):
            v = np.float64(counts[e, h, ln])
            if ln >= n_dark:
                if is_hot:
                    v = full
                elif is_dead:
                    v = dark[e, h] + sd_e[e] * z[e, h, ln - n_dark]
            if v < 0.0:
                v = 0.0
            elif v > limit:
                v = limit
            out[e, h, ln] = np.rint(v * scale)
