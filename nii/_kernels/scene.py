"""Numba kernels of the scene simulator: splatting many small analytic solids into path maps.

Public wrappers: :func:`nii.sim.phantoms.primitives.splat_ellipsoids`,
:func:`nii.sim.phantoms.primitives.splat_plates` and :func:`nii.sim.phantoms.base.project`
(``backend="numba"``). NumPy references: ``tests/naive.py`` and the vectorised
:func:`nii.sim.phantoms.primitives.chord` (``backend="numpy"``).

Coordinates: the map ``out`` covers pixels ``[i0, i0 + H) x [j0, j0 + W)`` of the scene; the
centre of pixel ``(i, j)`` lies at ``y = (i + 0.5) * py``, ``x = (j + 0.5) * px`` (cm). The beam
runs along ``z``.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = ["splat_ellipsoids_kernel", "splat_plates_kernel", "project_parts_kernel"]


@nb.njit(cache=True, nogil=True)
def splat_ellipsoids_kernel(out, params, i0, j0, py, px):  # pragma: no cover - compiled
    """Add the chord length of each ellipsoid to ``out``.

    ``params[k] = (cx, cy, P00, P01, P11, h, inner, rmax)``: the chord at offset ``d`` (cm) from
    the projected centre is ``h * sqrt(1 - d' P d)`` minus, for a hollow solid scaled by
    ``inner`` in (0, 1), ``inner * h * sqrt(1 - d' P d / inner**2)``. ``rmax`` bounds the
    projected half-extent (cm).
    """
    nh, nw = out.shape
    for k in range(params.shape[0]):
        cx = params[k, 0]
        cy = params[k, 1]
        p00 = params[k, 2]
        p01 = params[k, 3]
        p11 = params[k, 4]
        h = params[k, 5]
        inner = params[k, 6]
        r = params[k, 7]
        ia = max(int(math.floor((cy - r) / py - 0.5)) - i0, 0)
        ib = min(int(math.ceil((cy + r) / py - 0.5)) - i0 + 1, nh)
        ja = max(int(math.floor((cx - r) / px - 0.5)) - j0, 0)
        jb = min(int(math.ceil((cx + r) / px - 0.5)) - j0 + 1, nw)
        inner2 = inner * inner
        for i in range(ia, ib):
            dy = (i + i0 + 0.5) * py - cy
            for j in range(ja, jb):
                dx = (j + j0 + 0.5) * px - cx
                q = p00 * dx * dx + 2.0 * p01 * dx * dy + p11 * dy * dy
                if q < 1.0:
                    c = h * math.sqrt(1.0 - q)
                    if inner > 0.0 and q < inner2:
                        c -= inner * h * math.sqrt(1.0 - q / inner2)
                    out[i, j] += c


@nb.njit(cache=True, nogil=True)
def splat_plates_kernel(out, params, i0, j0, py, px, min_cos):  # pragma: no cover - compiled
    """Add the path length through thin shield-shaped plates to ``out``.

    ``params[k] = (cx, cy, cz, ux, uy, uz, vx, vy, vz, nx, ny, nz, width, length, thick,
    ridge_period, ridge_depth, rmax)``; ``u`` runs across the plate, ``v`` from base to tip and
    ``n = u x v`` is the plate normal. A ray meets the mid-plane at in-plane coordinates
    ``(a, b)``; inside the shield outline it crosses ``thick * (1 + ridge) / |n_z|`` of material,
    where ``|n_z|`` is clamped below by ``min_cos`` (a plate seen edge-on is no thicker than its
    width allows).
    """
    nh, nw = out.shape
    for k in range(params.shape[0]):
        cx = params[k, 0]
        cy = params[k, 1]
        ux = params[k, 3]
        uy = params[k, 4]
        uz = params[k, 5]
        vx = params[k, 6]
        vy = params[k, 7]
        vz = params[k, 8]
        nx = params[k, 9]
        ny = params[k, 10]
        nz = params[k, 11]
        half_w = 0.5 * params[k, 12]
        half_l = 0.5 * params[k, 13]
        thick = params[k, 14]
        period = params[k, 15]
        depth = params[k, 16]
        r = params[k, 17]
        anz = abs(nz)
        if anz < min_cos:
            anz = min_cos
        # mid-plane: n . (p - c) = 0 -> dz = -(nx dx + ny dy) / nz (nz clamped away from 0)
        nzs = nz if abs(nz) >= min_cos else (min_cos if nz >= 0 else -min_cos)
        ia = max(int(math.floor((cy - r) / py - 0.5)) - i0, 0)
        ib = min(int(math.ceil((cy + r) / py - 0.5)) - i0 + 1, nh)
        ja = max(int(math.floor((cx - r) / px - 0.5)) - j0, 0)
        jb = min(int(math.ceil((cx + r) / px - 0.5)) - j0 + 1, nw)
        for i in range(ia, ib):
            dy = (i + i0 + 0.5) * py - cy
            for j in range(ja, jb):
                dx = (j + j0 + 0.5) * px - cx
                dz = -(nx * dx + ny * dy) / nzs
                a = ux * dx + uy * dy + uz * dz
                b = vx * dx + vy * dy + vz * dz
                bn = b / half_l
                if bn <= -1.0 or bn >= 1.0:
                    continue
                w = half_w * math.sqrt(1.0 - bn * bn) * (1.0 - 0.3 * bn)
                if abs(a) >= w:
                    continue
                t = thick * (1.0 + depth * math.cos(2.0 * math.pi * a / period)) * (1.15 - 0.3 * (bn + 1.0) * 0.5)
                out[i, j] += t / anz


_INF = np.inf


@nb.njit(cache=True, inline="always")
def _clip_halfspace(on, dn, lo, hi):  # pragma: no cover - compiled
    """Intersect [lo, hi] with {t : on + t dn >= 0}."""
    if abs(dn) < 1e-12:
        if on < 0.0:
            return lo, -_INF
        return lo, hi
    t = -on / dn
    if dn > 0.0:
        return max(lo, t), hi
    return lo, min(hi, t)


@nb.njit(cache=True, nogil=True)
def project_parts_kernel(out, mat, kind, rot, cen, par, sign, rois, i0, j0, py, px):  # pragma: no cover - compiled
    """Add the chord of every posed convex part to ``out[mat[k]]``.

    ``kind`` 0 = ellipsoid (semi-axes par[0:3]), 1 = box (half-extents par[0:3]), 2 = frustum
    (par = L, r0, r1, n0(3), n1(3)); ``rot[k]`` columns are the canonical axes in the scene,
    ``cen[k]`` the canonical origin (cm); ``rois[k] = (a0, a1, c0, c1)`` scene pixel window.
    Same mathematics as :func:`nii.sim.phantoms.primitives.chord`.
    """
    for k in range(kind.shape[0]):
        m = mat[k]
        r = rot[k]
        d0 = r[2, 0]
        d1 = r[2, 1]
        d2 = r[2, 2]
        s = sign[k]
        p = par[k]
        for i in range(rois[k, 0], rois[k, 1]):
            y = (i + 0.5) * py - cen[k, 1]
            for j in range(rois[k, 2], rois[k, 3]):
                x = (j + 0.5) * px - cen[k, 0]
                o0 = r[0, 0] * x + r[1, 0] * y
                o1 = r[0, 1] * x + r[1, 1] * y
                o2 = r[0, 2] * x + r[1, 2] * y
                c = 0.0
                if kind[k] == 0:
                    q0 = o0 / p[0]
                    q1 = o1 / p[1]
                    q2 = o2 / p[2]
                    e0 = d0 / p[0]
                    e1 = d1 / p[1]
                    e2 = d2 / p[2]
                    a = e0 * e0 + e1 * e1 + e2 * e2
                    b = q0 * e0 + q1 * e1 + q2 * e2
                    cc = q0 * q0 + q1 * q1 + q2 * q2 - 1.0
                    disc = b * b - a * cc
                    if disc > 0.0:
                        c = 2.0 * math.sqrt(disc) / a
                elif kind[k] == 1:
                    lo = -_INF
                    hi = _INF
                    for ax in range(3):
                        oc = o0 if ax == 0 else (o1 if ax == 1 else o2)
                        dc = d0 if ax == 0 else (d1 if ax == 1 else d2)
                        h = p[ax]
                        if abs(dc) < 1e-12:
                            if oc < -h or oc > h:
                                hi = -_INF
                        else:
                            ta = (-h - oc) / dc
                            tb = (h - oc) / dc
                            lo = max(lo, min(ta, tb))
                            hi = min(hi, max(ta, tb))
                    if hi > lo:
                        c = hi - lo
                else:
                    length = p[0]
                    r0 = p[1]
                    r1 = p[2]
                    lo = -_INF
                    hi = _INF
                    lo, hi = _clip_halfspace(o0 * p[3] + o1 * p[4] + o2 * p[5], d0 * p[3] + d1 * p[4] + d2 * p[5], lo, hi)
                    lo, hi = _clip_halfspace(o0 * p[6] + o1 * p[7] + (o2 - length) * p[8], d0 * p[6] + d1 * p[7] + d2 * p[8], lo, hi)
                    kk = (r1 - r0) / length
                    if kk != 0.0:
                        lo, hi = _clip_halfspace(r0 + kk * o2, kk * d2, lo, hi)
                    if hi > lo:
                        rz = r0 + kk * o2
                        a = d0 * d0 + d1 * d1 - (kk * d2) ** 2
                        b = o0 * d0 + o1 * d1 - rz * kk * d2
                        cc = o0 * o0 + o1 * o1 - rz * rz
                        if abs(a) < 1e-12:
                            a = 1e-12 if a >= 0.0 else -1e-12
                        disc = b * b - a * cc
                        if disc > 0.0:
                            sq = math.sqrt(disc)
                            q = -(b + sq) if b >= 0.0 else -(b - sq)
                            t1 = q / a
                            t2 = cc / q if q != 0.0 else t1
                            if t1 > t2:
                                t1, t2 = t2, t1
                            if a > 0.0:
                                c = max(min(hi, t2) - max(lo, t1), 0.0)
                            else:
                                c = max(min(hi, t1) - lo, 0.0) + max(hi - max(lo, t2), 0.0)
                        elif a < 0.0:
                            c = hi - lo
                if c > 0.0:
                    out[m, i - i0, j - j0] += s * c
