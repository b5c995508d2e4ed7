"""Plain NumPy reference implementations (oracles) of nii's Numba kernels."""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------------------------
# nii._kernels.preprocess (normaliser): slow, obviously correct versions
# ---------------------------------------------------------------------------------------------


def naive_attenuation(counts, dark, air0, slope, t0, starve, bad):
    """Counts (E, H, W) -> (attenuation float32 (E, H, W), starved bool (E, H, W)).

    ``I0(t) = air0 + slope * t`` (t the global line index), ``L = ln(I0 / max(I - dark, thr))``,
    starved where ``I - dark < thr``; bad channels interpolated linearly in channel index between
    the nearest good channels (nearest one at the ends); a repaired pixel is starved if a
    neighbour it uses is.
    """
    counts = np.asarray(counts)
    e, h, w = counts.shape
    t = (t0 + np.arange(w)).astype(np.float32)
    i0 = np.maximum(air0[..., None] + slope[..., None] * t[None, None, :], starve[..., None])
    net = counts.astype(np.float32) - dark[..., None]
    starved = net < starve[..., None]
    net = np.where(starved, starve[..., None], net)
    att = np.log(i0 / net).astype(np.float32)
    for k in range(e):
        good = np.nonzero(~bad[k])[0]
        for c in np.nonzero(bad[k])[0]:
            below = good[good < c]
            above = good[good > c]
            lo = below[-1] if below.size else above[0]
            hi = above[0] if above.size else below[-1]
            wt = 0.0 if lo == hi else (c - lo) / (hi - lo)
            att[k, c] = att[k, lo] + np.float32(wt) * (att[k, hi] - att[k, lo])
            starved[k, c] = starved[k, lo] | starved[k, hi]
    return att, starved


def naive_zeff_lookup(l_high, r, table, l0, dl, r0, dr):
    """Bilinear interpolation of ``table`` on the grid ``(l0 + i dl, r0 + j dr)``, clamped (float64)."""
    from scipy.interpolate import RegularGridInterpolator

    nl, nr = table.shape
    la = l0 + dl * np.arange(nl)
    ra = r0 + dr * np.arange(nr)
    f = RegularGridInterpolator((la, ra), np.asarray(table, np.float64), method="linear")
    pts = np.stack([np.clip(np.ravel(l_high), la[0], la[-1]), np.clip(np.ravel(r), ra[0], ra[-1])], axis=-1)
    return f(pts).reshape(np.shape(l_high))


def naive_maps(att, impenetrable, zeff_lookup=None):
    """Zeff, class, colour and detector encoding from attenuation by the NumPy specifications.

    ``zeff_lookup(l_high, r)`` gives Zeff (dual energy); None means single energy (no Zeff,
    object pixels MIXED).
    """
    from nii.encoding import encode_detector_input
    from nii.materials import (
        AIR_ATTENUATION_MAX,
        MaterialClass,
        render_pseudocolor,
        zeff_to_class,
    )

    att = np.asarray(att, np.float32)
    l_lo, l_hi = att[0], att[-1]
    air = l_hi < np.float32(AIR_ATTENUATION_MAX)
    if zeff_lookup is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.asarray(zeff_lookup(l_hi, l_lo / l_hi), np.float32)
        z = np.where(air | impenetrable, np.float32(np.nan), z).astype(np.float32)
        mat = zeff_to_class(z)
    else:
        z = np.full(l_hi.shape, np.nan, np.float32)
        mat = np.full(l_hi.shape, MaterialClass.MIXED, np.uint8)
    mat[air] = MaterialClass.AIR
    mat[impenetrable] = MaterialClass.IMPENETRABLE
    color = render_pseudocolor(l_hi, mat)
    enc = encode_detector_input(l_lo if att.shape[0] > 1 else None, l_hi, z if zeff_lookup is not None else None, mat)
    return z, mat, color, enc


def naive_weighted_gather(x, axis, idx, wts):
    """Reference of ``nii._kernels.resample``: weighted gather along ``axis``, terms summed in k order."""
    out = None
    for k in range(idx.shape[1]):
        term = np.take(x, idx[:, k], axis=axis).astype(np.float64)
        shape = [1] * x.ndim
        shape[axis] = idx.shape[0]
        term *= wts[:, k].reshape(shape)
        out = term if out is None else out + term
    return out


def naive_area_resample(x, fh, fw):
    """Block mean of a 2-D or (E, H, W) array for integer factors (reference of area resampling)."""
    x = np.asarray(x, np.float64)
    lead = x.shape[:-2]
    h, w = x.shape[-2:]
    nh, nw = h // fh, w // fw
    x = x[..., : nh * fh, : nw * fw].reshape(*lead, nh, fh, nw, fw)
    return x.mean(axis=(-3, -1))


# ---------------------------------------------------------------------------------------------
# nii._kernels.scene (simulator splatting): per-pixel loops over each solid
# ---------------------------------------------------------------------------------------------


def naive_splat_ellipsoids(shape, origin, py, px, centers, rots, semi, inner):
    """Chord of each (hollow) ellipsoid by solving the ray/quadric intersection per pixel."""
    out = np.zeros(shape, np.float64)
    for c, r, s, f in zip(centers, rots, semi, inner):
        for i in range(shape[0]):
            for j in range(shape[1]):
                p = np.array([(j + origin[1] + 0.5) * px - c[0], (i + origin[0] + 0.5) * py - c[1], 0.0])
                total = 0.0
                for scale, sign in ((1.0, 1.0), (f, -1.0)):
                    if scale <= 0:
                        continue
                    q = r.T @ p / (s * scale)
                    d = r.T @ np.array([0.0, 0.0, 1.0]) / (s * scale)
                    a, b, cc = d @ d, q @ d, q @ q - 1.0
                    disc = b * b - a * cc
                    if disc > 0:
                        total += sign * 2.0 * np.sqrt(disc) / a
                out[i, j] += total
    return out


def naive_splat_plates(shape, origin, py, px, plates, min_cos):
    """Thin ridged shield plates: intersect each pixel's ray with the plate mid-plane."""
    out = np.zeros(shape, np.float64)
    for pl in plates:
        c, u, v, n = pl[0:3], pl[3:6], pl[6:9], pl[9:12]
        width, length, thick, period, depth = pl[12:17]
        nz = n[2] if abs(n[2]) >= min_cos else np.copysign(min_cos, n[2]) if n[2] != 0 else min_cos
        for i in range(shape[0]):
            for j in range(shape[1]):
                dx = (j + origin[1] + 0.5) * px - c[0]
                dy = (i + origin[0] + 0.5) * py - c[1]
                dz = -(n[0] * dx + n[1] * dy) / nz
                dvec = np.array([dx, dy, dz])
                a, b = u @ dvec, v @ dvec
                bn = b / (length / 2)
                if not -1 < bn < 1:
                    continue
                if abs(a) >= width / 2 * np.sqrt(1 - bn * bn) * (1 - 0.3 * bn):
                    continue
                t = thick * (1 + depth * np.cos(2 * np.pi * a / period)) * (1.15 - 0.3 * (bn + 1) / 2)
                out[i, j] += t / max(abs(n[2]), min_cos)
    return out


# ---------------------------------------------------------------------------------------------
# nii._kernels.sim (image formation): binned polychromatic transmission
# ---------------------------------------------------------------------------------------------


def polychromatic_transmission_naive(thick, mu, w1, w2):
    """``t[e, h, w] = sum_b w1[e, b] exp(-sum_m mu[e, m, b] thick[m, h, w])`` (and ``s2`` with w2), float64.

    ``thick`` (M, H, W), ``mu`` (E, M, B), ``w1``/``w2`` (E, B); returns two (E, H, W) arrays.
    """
    att = np.einsum("emb,mhw->ehwb", np.asarray(mu, np.float64), np.asarray(thick, np.float64))
    x = np.exp(-att)
    t = np.einsum("ehwb,eb->ehw", x, np.asarray(w1, np.float64))
    s2 = np.einsum("ehwb,eb->ehw", x, np.asarray(w2, np.float64))
    return t, s2


def signal_chain_naive(t, s2, z, n_air, air_sig, gain, drift, dark, amp, n0, sd_e, quantum, low_below):
    """Reference of ``signal_chain_kernel``: returns ``(out float64 (E, H, L), low bool (E, H, L))``.

    Lines ``[0, n_air)`` and ``[n_air + W, L)`` are air (signal ``air_sig``), the rest the object.
    ``out = dark + G t + sqrt(G^2 s2 / n0 [not low] + sd_e^2) z``, ``G = gain * amp * drift``,
    ``low`` where ``n0 t^2 / s2 < low_below`` (quantum noise on).
    """
    e, h, w = t.shape
    L = z.shape[2]
    sig = np.full((e, h, L), air_sig, np.float64)
    v2 = np.full((e, h, L), air_sig, np.float64)
    sig[:, :, n_air : n_air + w] = t
    v2[:, :, n_air : n_air + w] = s2
    g = gain[:, :, None] * amp[:, None, None] * drift[None, None, :]
    n0b = np.asarray(n0, np.float64)[:, None, None]
    low = (sig * sig * n0b < low_below * np.maximum(v2, 1e-30)) if quantum else np.zeros(sig.shape, bool)
    var = np.asarray(sd_e, np.float64)[:, None, None] ** 2 + np.where(quantum & ~low, g * g * np.maximum(v2, 0) / n0b, 0.0)
    out = dark[:, :, None] + g * sig + np.sqrt(var) * z
    return out, low


def adc_naive(counts, z, dead, hot, dark, sd_e, n_dark, full, limit, scale):
    """Reference of ``adc_kernel``: dead/hot channels, clip to [0, limit], scale, round (float64)."""
    v = np.asarray(counts, np.float64).copy()
    tube_on = v[:, :, n_dark:]
    dead_vals = dark[:, :, None] + np.asarray(sd_e)[:, None, None] * z
    tube_on[dead] = dead_vals[dead]
    tube_on[hot] = full
    return np.rint(np.clip(v, 0.0, limit) * scale)


def naive_part_chords(kind, params, rot, center, shape, py, px, *, n_steps=4000, half_length=None):
    """Chord of one posed convex part by ray marching its inside test (independent of the kernel).

    ``kind`` ellipsoid / box / frustum as in :class:`nii.sim.phantoms.primitives.Part`; ``rot``
    columns are the part's canonical axes in the scene and ``center`` its canonical origin (cm).
    Each pixel's ray ``(x, y, t)`` is sampled at ``n_steps`` midpoints over ``|t - c_z| <= half_length``.
    """
    p = np.asarray(params, float)
    rot = np.asarray(rot, float)
    center = np.asarray(center, float)
    if half_length is None:
        half_length = 2.0 * float(np.abs(p[:3]).sum() + (p[0] if kind == "frustum" else 0.0))
    dt = 2.0 * half_length / n_steps
    t = -half_length + (np.arange(n_steps) + 0.5) * dt
    out = np.zeros(shape)
    for i in range(shape[0]):
        for j in range(shape[1]):
            pts = np.stack([np.full(n_steps, (j + 0.5) * px - center[0]), np.full(n_steps, (i + 0.5) * py - center[1]), t], axis=1)
            q = pts @ rot  # canonical coordinates: rot^T (p - c)
            if kind == "ellipsoid":
                inside = ((q / p[:3]) ** 2).sum(axis=1) <= 1.0
            elif kind == "box":
                inside = np.all(np.abs(q) <= p[:3], axis=1)
            else:
                length, r0, r1 = p[:3]
                rz = r0 + (r1 - r0) / length * q[:, 2]
                inside = ((q @ p[3:6]) >= 0) & (((q - [0, 0, length]) @ p[6:9]) >= 0) & (rz >= 0) & (q[:, 0] ** 2 + q[:, 1] ** 2 <= rz**2)
            out[i, j] = inside.sum() * dt
    return out


def naive_flat_field(raw) -> np.ndarray:
    """Plain dark/air normalisation with linear drift interpolation: ``I/I0`` (float64, E x H x W).

    Reference lines follow the simulator's timeline (dark, air, object, air_end): the air block's
    centre is line ``(n_air - 1) / 2``, object line ``j`` is at ``n_air + j``, the air_end block
    comes after the object.
    """
    dark = raw.dark.astype(np.float64).mean(axis=2, keepdims=True)
    a0 = raw.air.astype(np.float64).mean(axis=2, keepdims=True) - dark
    a1 = raw.air_end.astype(np.float64).mean(axis=2, keepdims=True) - dark
    n_air, w = raw.air.shape[2], raw.counts.shape[2]
    t_obj = n_air + np.arange(w)
    c0, c1 = (n_air - 1) / 2.0, n_air + w + (n_air - 1) / 2.0
    i0 = a0 + (a1 - a0) * ((t_obj - c0) / (c1 - c0))[None, None, :]
    return (raw.counts.astype(np.float64) - dark) / i0


def naive_sigma_clip(x, sigma, max_iters):
    """NumPy reference of ``nii._kernels.calib.sigma_clip_rows``: iterative sigma clipping along
    the last axis on sorted values (the kept readings are a contiguous run of them); clipped
    mean and std (ddof=1)."""
    mad_to_sigma = 1.482602218505602
    xs = np.sort(x, axis=-1)
    n = xs.shape[-1]
    idx = np.arange(n)
    lo = np.zeros(xs.shape[:-1], dtype=np.int64)
    hi = np.full(xs.shape[:-1], n, dtype=np.int64)

    def take(a, i):
        return np.take_along_axis(a, i[..., None], axis=-1)[..., 0]

    for _ in range(max_iters):
        cnt = hi - lo
        med = 0.5 * (take(xs, lo + (cnt - 1) // 2) + take(xs, lo + cnt // 2))
        dev = np.abs(xs - med[..., None])
        inside = (idx >= lo[..., None]) & (idx < hi[..., None])
        dsort = np.sort(np.where(inside, dev, np.inf), axis=-1)
        mad = mad_to_sigma * 0.5 * (take(dsort, (cnt - 1) // 2) + take(dsort, cnt // 2))
        # a floor for integer counts whose MAD is 0: one count
        keep = dev <= sigma * np.maximum(mad, 0.5)[..., None]
        any_kept = keep.any(axis=-1)
        new_lo = np.where(any_kept, np.argmax(keep, axis=-1), lo)
        new_hi = np.where(any_kept, n - np.argmax(keep[..., ::-1], axis=-1), hi)
        if np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
            break
        lo, hi = new_lo, new_hi
    inside = (idx >= lo[..., None]) & (idx < hi[..., None])
    cnt = hi - lo
    mean = (xs * inside).sum(axis=-1) / cnt
    var = (((xs - mean[..., None]) ** 2) * inside).sum(axis=-1) / np.maximum(cnt - 1, 1)
    return mean, np.sqrt(var)


def naive_cue_counts(l_high, zeff, material, valid, fy, fx, air_max, bone_lo, bone_hi, bone_min, organic_max, dense_min, mu_mass):
    """NumPy reference of ``nii._kernels.evidence.cue_counts``: cue masks summed per fy x fx cell."""
    f = np.float32
    l_high = np.asarray(l_high, f)
    z = np.asarray(zeff, f)
    obj = np.isfinite(z)
    if material is not None:
        obj &= (material != 0) & (material != 4)
    else:
        obj &= l_high >= f(air_max)
    if valid is not None:
        obj &= valid
    rho = np.maximum(l_high, f(0)) / f(mu_mass)
    with np.errstate(invalid="ignore"):
        bone = obj & (z >= f(bone_lo)) & (z <= f(bone_hi)) & (rho >= f(bone_min))
        dense = obj & (z < f(organic_max)) & (rho >= f(dense_min))
    h, w = l_high.shape
    gh, gw = -(-h // fy), -(-w // fx)
    out = []
    for m in (bone, dense):
        p = np.zeros((gh * fy, gw * fx), np.int64)
        p[:h, :w] = m
        out.append(p.reshape(gh, fy, gw, fx).sum(axis=(1, 3)))
    return out[0], out[1]
