"""Numba kernel of the physics-cue anomaly detector (wrapper: :func:`nii.detect.evidence.material_anomalies`).

``cue_counts(l_high, zeff, material, valid, fy, fx, ...)`` counts, in one pass over the scan,
the *bone-like* and *dense-organic* pixels of every ``fy x fx`` grid cell (the last partial
row/column of cells counts what it has). A pixel is an object pixel when its class is neither
air nor impenetrable (or, without classes, ``L_high >= air_max``), it is valid and its Zeff is
finite; it is bone-like when ``bone_lo <= Zeff <= bone_hi`` and its water-equivalent areal
density ``max(L_high, 0) / mu_mass`` (float32) is at least ``bone_min``, dense-organic when
``Zeff < organic_max`` and the areal density is at least ``dense_min``. NumPy reference:
``tests/naive.py: naive_cue_counts`` (the masks of ``_cue_masks`` summed per cell). It replaces
about a dozen full-scan NumPy passes (temporaries of the whole scan) by one.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

from ._config import FASTMATH

__all__ = ["cue_counts"]

_AIR = 0
_IMPENETRABLE = 4


@nb.njit(cache=True, nogil=True, parallel=True, fastmath=FASTMATH)
def cue_counts(l_high, zeff, material, valid, fy, fx, air_max, bone_lo, bone_hi, bone_min, organic_max,
               dense_min, mu_mass):  # pragma: no cover - compiled
    """``(H, W)`` maps -> bone-like and dense-organic pixel counts per cell, int32 ``(gh, gw)`` each.

    ``material`` / ``valid`` may be ``(0, 0)`` arrays (absent). Thresholds are float32.
    """
    h, w = l_high.shape
    gh = (h + fy - 1) // fy
    gw = (w + fx - 1) // fx
    has_mat = material.shape[0] == h
    has_valid = valid.shape[0] == h
    bone = np.zeros((gh, gw), np.int32)
    dense = np.zeros((gh, gw), np.int32)
    zero = np.float32(0.0)
    for gy in prange(gh):
        for y in range(gy * fy, min(h, (gy + 1) * fy)):
            for x in range(w):
                z = zeff[y, x]
                if not np.isfinite(z):
                    continue
                lh = l_high[y, x]
                if has_mat:
                    m = material[y, x]
                    if m == _AIR or m == _IMPENETRABLE:
                        continue
                elif not lh >= air_max:
                    continue
                if has_valid and not valid[y, x]:
                    continue
                rho = max(lh, zero) / mu_mass
                if z >= bone_lo and z <= bone_hi and rho >= bone_min:
                    bone[gy, x // fx] += 1
                if z < organic_max and rho >= dense_min:
                    dense[gy, x // fx] += 1
    return bone, dense
