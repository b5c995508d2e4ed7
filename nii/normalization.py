"""Normalisation: raw line-scanner counts -> calibrated attenuation, Zeff, material class, colour.

:func:`normalize` turns a :class:`~nii.containers.RawScan` into a :class:`~nii.containers.Scan`:

1. **dark subtraction** — master dark per channel: the scan's own dark lines (sigma-clipped mean),
   else the calibration set's master dark;
2. **air normalisation with drift correction** — open beam above dark per channel from the air
   lines recorded at scan start; when the scan also carries air lines recorded at its end
   (``air_end``), the open beam of line ``t`` of ``N`` is interpolated linearly,
   ``I0(t) = I0_start + (I0_end - I0_start) * t / (N - 1)``; without ``air_end`` there is no drift
   correction and provenance says so;
3. **dead / hot channel repair** — channels flagged by the calibration set, by the scan's
   ``dead_mask`` or found in the scan's own references (:func:`nii.calibrate.detect_bad_channels`)
   get the attenuation interpolated linearly between the nearest good channels of the same energy;
4. **log attenuation** ``L = ln(I0(t) / (I - dark))``. Where ``I - dark`` is below the starvation
   threshold ``max(starve_counts, starve_sigma * dark noise)`` the pixel is *photon-starved*: its
   attenuation is set to the largest measurable value ``ln(I0 / threshold)``, it is marked False in
   ``valid`` and, when the high (or only) energy is starved, its class is IMPENETRABLE. Nothing is
   clipped silently: the count of starved pixels is in provenance;
5. optional **stripe suppression** (``stripes=True``, whole scans only): per channel, the median
   attenuation over the lines where both neighbouring channels see air is subtracted (removes residual gain errors that show as streaks
   along the belt);
6. **Zeff and material class** — ``R = L_low / L_high`` and a bilinear lookup in the calibrated
   ``(L_high, R)`` table (:class:`nii.calibrate.MaterialTable`); pixels with ``L_high`` below
   :data:`nii.materials.AIR_ATTENUATION_MAX` are AIR with Zeff NaN; classes by the thresholds of
   :mod:`nii.materials`;
7. **operator colour** — exactly :func:`nii.materials.render_pseudocolor`;
8. optional **resampling** to a target pitch (``pitch_mm``), see :func:`resample_area`;
9. the **detector input** (:func:`detector_input`) — exactly :func:`nii.encoding.encode_detector_input`.

Steps 1-7 (and 9) run in one fused, parallel Numba pass (:mod:`nii._kernels.preprocess`).

Single-energy scans have no Zeff (``zeff`` is None); their object pixels get the class MIXED (the
neutral middle class: green in the colour law, "unknown material" rather than a claim of organic or
metal) and provenance says so. Rendered scans (recovered from 8-bit pseudo-colour screenshots)
keep the class read from the hue; only colour, resampling and encoding apply.

:func:`normalize_stream` does the same strip by strip as a line scanner delivers them, with memory
independent of the scan length and results identical to :func:`normalize` on the whole scan.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .containers import Provenance, RawScan, Scan, Step, Truth
from .errors import CalibrationError, InvalidDataError, InvalidParameterError
from .materials import (
    AIR_ATTENUATION_MAX,
    ZEFF_MIXED_MAX,
    ZEFF_ORGANIC_MAX,
    MaterialClass,
)

__all__ = [
    "area_weights",
    "detector_input",
    "normalize",
    "normalize_and_encode",
    "normalize_stream",
    "resample_area",
    "resolve_calibration",
]

logger = logging.getLogger(__name__)

_DUMMY_TABLE = np.zeros((2, 2), dtype=np.float32)
_DUMMY_TPAR = np.array([0.0, 1.0, 0.0, 1.0], dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# calibration
# ----------------------------------------------------------------------------------------------


def resolve_calibration(calibration: Any, *, profile: str | None, energies: Any) -> Any:
    """Turn ``calibration`` (None, path, MaterialTable or CalibrationSet) into a CalibrationSet."""
    from .calibrate import (
        CalibrationSet,
        MaterialTable,
        default_calibration,
        load_calibration,
    )

    if calibration is None:
        return default_calibration(profile, energies)
    if isinstance(calibration, CalibrationSet):
        return calibration
    if isinstance(calibration, MaterialTable):
        return CalibrationSet(profile=calibration.profile, energies=calibration.energies, material=calibration)
    if isinstance(calibration, (str, os.PathLike)):
        return load_calibration(calibration)
    raise InvalidParameterError(
        f"calibration must be None, a path, a MaterialTable or a CalibrationSet, got {type(calibration).__name__}"
    )


# ----------------------------------------------------------------------------------------------
# preparation of the per-channel arrays
# ----------------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    dark: np.ndarray
    air0: np.ndarray
    slope: np.ndarray
    starve: np.ndarray
    rep_lo: np.ndarray
    rep_hi: np.ndarray
    rep_w: np.ndarray
    mode: int
    table: np.ndarray
    tpar: np.ndarray
    steps: list[tuple[str, dict[str, Any]]]
    cal_hash: str | None


def _repair_plan(bad: np.ndarray, energies: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    e, h = bad.shape
    lo = np.full((e, h), -1, dtype=np.int32)
    hi = np.full((e, h), -1, dtype=np.int32)
    wt = np.zeros((e, h), dtype=np.float32)
    for k in range(e):
        good = np.nonzero(~bad[k])[0]
        if good.size == 0:
            raise InvalidDataError(f"every detector channel of energy {energies[k].describe()} is dead or hot")
        for c in np.nonzero(bad[k])[0]:
            p = np.searchsorted(good, c)
            below = good[p - 1] if p > 0 else -2
            above = good[p] if p < good.size else -2
            lo[k, c] = below
            hi[k, c] = above
            if below >= 0 and above >= 0:
                wt[k, c] = (c - below) / (above - below)
    return lo, hi, wt


def _prepare(
    raw: RawScan,
    cal: Any,
    *,
    total_lines: int | None,
    starve_counts: float,
    starve_sigma: float,
    materials: bool,
) -> _Prepared:
    from .calibrate import combine_lines, detect_bad_channels

    e, h, _ = raw.counts.shape
    steps: list[tuple[str, dict[str, Any]]] = []
    # dark
    dark_std = None
    if raw.dark is not None:
        if raw.dark.ndim == 3:
            dark, dark_std = combine_lines(raw.dark, return_std=True)
            if raw.dark.shape[2] < 3:
                dark_std = None
            dsrc = f"scan dark lines (n={raw.dark.shape[2]}, sigma-clipped mean)"
        else:
            dark = np.asarray(raw.dark, dtype=np.float32)
            dsrc = "scan dark reference"
    elif cal.dark is not None:
        dark = np.asarray(cal.dark, dtype=np.float32)
        dsrc = "calibration master dark"
    else:
        dark = np.zeros((e, h), dtype=np.float32)
        dsrc = "none: dark offset assumed 0"
        logger.warning("scan %r has no dark reference and the calibration none: offset assumed 0", raw.scan_id)
    if dark_std is None and cal.dark_std is not None:
        dark_std = np.asarray(cal.dark_std, dtype=np.float32)
    steps.append(("dark_subtract", {"source": dsrc}))
    # air (start) and drift
    if raw.air is not None:
        air = combine_lines(raw.air) if raw.air.ndim == 3 else np.asarray(raw.air, dtype=np.float32)
        asrc = "scan air lines (start)"
    elif cal.air is not None:
        air = np.asarray(cal.air, dtype=np.float32)
        asrc = "calibration master air"
    else:
        raise InvalidDataError(
            f"scan {raw.scan_id!r} has no air (open-beam) reference and the calibration has no master air"
        )
    air0 = (air - dark).astype(np.float32)
    slope = np.zeros((e, h), dtype=np.float32)
    if raw.air_end is not None:
        if total_lines is None:
            raise InvalidParameterError(
                "the scan carries air_end lines: drift correction needs total_lines (the scan length in lines)"
            )
        air_end = combine_lines(raw.air_end) if raw.air_end.ndim == 3 else np.asarray(raw.air_end, np.float32)
        # reference lines are recorded right before / after the object lines: their mean times are
        # line -(n_a + 1) / 2 and line N - 1 + (n_b + 1) / 2 (one line each for a 2-D master)
        n_a = raw.air.shape[2] if (raw.air is not None and raw.air.ndim == 3) else 1
        n_b = raw.air_end.shape[2] if raw.air_end.ndim == 3 else 1
        c_start = -(n_a + 1) / 2.0
        c_end = total_lines - 1 + (n_b + 1) / 2.0
        slope64 = ((air_end.astype(np.float64) - dark) - air0) / (c_end - c_start)
        air0 = (air0 - slope64 * c_start).astype(np.float32)
        slope = slope64.astype(np.float32)
        drift = {"drift_correction": True, "lines": int(total_lines),
                 "model": "open beam linear in line index between the mean times of start and end air lines",
                 "reference_line_positions": [c_start, c_end]}
    else:
        drift = {"drift_correction": False, "reason": "no air_end lines in the scan"}
    steps.append(("air_normalize", {"source": asrc, **drift}))
    # starvation threshold
    starve = np.full((e, h), np.float32(starve_counts), dtype=np.float32)
    if dark_std is not None:
        starve = np.maximum(starve, np.float32(starve_sigma) * dark_std).astype(np.float32)
    # bad channels
    bad = np.zeros((e, h), dtype=bool)
    why = []
    if cal.bad is not None:
        bad |= cal.bad
        why.append("calibration")
    if raw.dead_mask is not None:
        bad |= raw.dead_mask
        why.append("scan dead_mask")
    if raw.dark is not None and raw.air is not None:
        bad |= detect_bad_channels(dark, air, dark_std=dark_std if raw.dark.ndim == 3 else None)["bad"]
        why.append("scan references")
    bad |= ~(air0 > 2.0 * starve)
    rep_lo, rep_hi, rep_w = _repair_plan(bad, raw.energies)
    steps.append((
        "repair_channels",
        {
            "method": "linear interpolation of attenuation between nearest good channels",
            "flagged_by": why,
            "bad_channels": {raw.energies[k].label: np.nonzero(bad[k])[0].tolist() for k in range(e)},
        },
    ))
    # material table
    mode = 0
    table, tpar = _DUMMY_TABLE, _DUMMY_TPAR
    if e >= 2 and materials:
        if cal.material is None:
            raise CalibrationError(
                f"no material table in the calibration for profile {cal.profile!r}: Zeff needs one "
                "(or pass materials=False)"
            )
        mode = 1
        table = np.ascontiguousarray(cal.material.values, dtype=np.float32)
        tpar = cal.material.grid_params
    return _Prepared(dark.astype(np.float32), air0, slope, starve, rep_lo, rep_hi, rep_w, mode, table, tpar,
                     steps, cal.hash if cal is not None else None)


# ----------------------------------------------------------------------------------------------
# kernels behind validation
# ----------------------------------------------------------------------------------------------


def _hue() -> np.ndarray:
    from .materials import CLASS_HUE_RGB

    return np.ascontiguousarray(CLASS_HUE_RGB, dtype=np.float32)


def _empty3() -> np.ndarray:
    return np.zeros((0, 0, 3), dtype=np.uint8)


def _fused_outputs(e: int, h: int, w: int, *, want_color: bool, want_enc: bool) -> dict[str, np.ndarray]:
    """Fresh output maps of :func:`_run_fused`."""
    return {
        "attenuation": np.empty((e, h, w), dtype=np.float32),
        "valid": np.empty((h, w), dtype=np.bool_),
        "zeff": np.empty((h, w), dtype=np.float32),
        "material": np.empty((h, w), dtype=np.uint8),
        "color": np.empty((h, w, 3), dtype=np.uint8) if want_color else _empty3(),
        "enc": np.empty((h, w, 3), dtype=np.uint8) if want_enc else _empty3(),
    }


def _run_fused(
    raw: RawScan, prep: _Prepared, t0: int, *, want_color: bool, want_enc: bool,
    out: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Run the fused kernel; ``out`` (from :func:`_fused_outputs`, same shape) is reused when given."""
    from ._kernels.preprocess import STEP_CELL, fused_normalize, step_tables

    counts = raw.counts
    if not counts.flags.c_contiguous:
        counts = np.ascontiguousarray(counts)
    e, h, w = counts.shape
    if out is None:
        out = _fused_outputs(e, h, w, want_color=want_color, want_enc=want_enc)
    att, valid, zeff, mat, color, enc = (out[k] for k in ("attenuation", "valid", "zeff", "material", "color", "enc"))
    if att.shape != (e, h, w) or zeff.shape != (h, w) or (want_color and color.shape != (h, w, 3)) or (want_enc and enc.shape != (h, w, 3)):
        raise InvalidParameterError(f"output buffers do not match the scan shape {(e, h, w)}")
    thr, lvl, start = step_tables()
    fused_normalize(
        counts, prep.dark, prep.air0, prep.slope, np.int64(t0), prep.starve, prep.rep_lo, prep.rep_hi, prep.rep_w,
        np.int64(prep.mode), prep.table, prep.tpar, np.float32(AIR_ATTENUATION_MAX), np.float32(ZEFF_ORGANIC_MAX),
        np.float32(ZEFF_MIXED_MAX), thr, lvl, start, np.float32(1.0 / STEP_CELL), _hue(),
        att, valid, zeff, mat, color, enc,
    )
    return out


def _run_maps(
    att: np.ndarray, impenetrable: np.ndarray, *, mode: int, table: np.ndarray, tpar: np.ndarray,
    fixed: np.ndarray | None = None, want_color: bool = True, want_enc: bool = False,
) -> dict[str, np.ndarray]:
    from ._kernels.preprocess import STEP_CELL, maps_from_attenuation, step_tables

    att = np.ascontiguousarray(att, dtype=np.float32)
    _, h, w = att.shape
    zeff = np.empty((h, w), dtype=np.float32)
    mat = np.empty((h, w), dtype=np.uint8)
    color = np.empty((h, w, 3), dtype=np.uint8) if want_color else _empty3()
    enc = np.empty((h, w, 3), dtype=np.uint8) if want_enc else _empty3()
    fx = np.zeros((0, 0), dtype=np.uint8) if fixed is None else np.ascontiguousarray(fixed, dtype=np.uint8)
    thr, lvl, start = step_tables()
    maps_from_attenuation(
        att, np.ascontiguousarray(impenetrable, dtype=np.bool_), fx, np.int64(mode), table, tpar,
        np.float32(AIR_ATTENUATION_MAX), np.float32(ZEFF_ORGANIC_MAX), np.float32(ZEFF_MIXED_MAX),
        thr, lvl, start, np.float32(1.0 / STEP_CELL), _hue(), zeff, mat, color, enc,
    )
    return {"zeff": zeff, "material": mat, "color": color, "enc": enc}


# ----------------------------------------------------------------------------------------------
# resampling
# ----------------------------------------------------------------------------------------------


def area_weights(factor: float, j0: int, j1: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Area-overlap weights of output pixels ``j0..j1-1`` when ``factor`` input pixels make one output.

    Output pixel ``j`` covers input coordinates ``[j * factor, (j + 1) * factor)``; the weight of
    input pixel ``i`` is its overlap with that interval divided by ``factor``. Returns ``idx`` and
    ``wts``, both ``(j1 - j0, K)``; unused slots have weight 0 (and a valid index). Trailing slots
    that are unused by every output are dropped (at factor 1.2 no output touches a third pixel, so
    ``K`` is 2, not ``ceil(factor) + 1``): a term of weight 0 adds an exact zero to a finite sum,
    so the sums are the same and the kernels do a third less work.
    """
    f = float(factor)
    k = int(np.ceil(f)) + 1
    j = np.arange(j0, j1, dtype=np.float64)[:, None]
    a = j * f
    b = (j + 1) * f
    first = np.floor(a + 1e-9).astype(np.int64)
    idx = first + np.arange(k)[None, :]
    ov = np.minimum(idx + 1, b) - np.maximum(idx, a)
    wts = np.clip(ov, 0.0, None) / f
    wts[idx >= n_in] = 0.0
    idx = np.minimum(idx, n_in - 1)
    used = np.flatnonzero((wts != 0.0).any(axis=0))
    k_used = int(used[-1]) + 1 if used.size else 1
    return np.ascontiguousarray(idx[:, :k_used]), np.ascontiguousarray(wts[:, :k_used])


def _n_out(n_in: int, factor: float) -> int:
    return int(np.floor(n_in / factor + 1e-9))


def _resample_axis(x: np.ndarray, axis: int, idx: np.ndarray, wts: np.ndarray) -> np.ndarray:
    """Weighted gather along ``axis`` (1 or 2) of a 3-D array, float64 out.

    Runs the Numba kernels of :mod:`nii._kernels.resample`; the terms are summed in a fixed order,
    so the result does not depend on how a scan is split into strips.
    """
    from ._kernels.resample import gather_cols, gather_rows

    if x.ndim != 3 or axis not in (1, 2):
        raise InvalidParameterError(f"resampling needs a 3-D array and axis 1 or 2, got {x.shape} and {axis}")
    x = np.ascontiguousarray(x)
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    wts = np.ascontiguousarray(wts, dtype=np.float64)
    return gather_rows(x, idx, wts) if axis == 1 else gather_cols(x, idx, wts)


def resample_area(
    attenuation: np.ndarray,
    valid: np.ndarray,
    impenetrable: np.ndarray,
    *,
    factor: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-average resampling of attenuation maps by ``factor = (f_h, f_w)`` input pixels per output.

    Attenuation (not intensity) is averaged: it is linear in path length, so an output pixel holds
    the mean path-weighted attenuation of what it covers and ``R``/Zeff of mixed pixels stay a
    weighted mix of their parts; averaging intensities would bias edges towards the less
    attenuating side. An output pixel is impenetrable when at least half its area is, and valid
    when at least half its area is valid and it is not impenetrable. A trailing partial output
    pixel is dropped (``floor(n / f)`` pixels per axis).

    Returns
    -------
    attenuation (E, H', W') float32, valid (H', W') bool, impenetrable (H', W') bool
    """
    att = np.asarray(attenuation, dtype=np.float32)
    if att.ndim != 3:
        raise InvalidDataError(f"attenuation must be (E, H, W), got {att.shape}")
    fh, fw = (float(f) for f in factor)
    if not (fh > 0 and fw > 0):
        raise InvalidParameterError(f"resampling factors must be positive, got {factor}")
    _, h, w = att.shape
    nh, nw = _n_out(h, fh), _n_out(w, fw)
    if nh < 1 or nw < 1:
        raise InvalidParameterError(f"target pitch too coarse: {h}x{w} pixels give no output pixel at factor {factor}")
    ih, whh = area_weights(fh, 0, nh, h)
    iw, www = area_weights(fw, 0, nw, w)
    return _resample_block(att, valid, impenetrable, ih, whh, iw, www)


def _resample_block(att, valid, imp, ih, wh, iw, ww):
    """Both axes in one Numba pass (:func:`nii._kernels.resample.area_resample_2d`), bit-identical
    to gathering rows then columns with :func:`_resample_axis` (what streaming does per strip)."""
    from ._kernels.resample import area_resample_2d

    valid = np.ascontiguousarray(valid, dtype=np.bool_)
    imp = np.ascontiguousarray(imp, dtype=np.bool_)
    wh = np.ascontiguousarray(wh, dtype=np.float64)
    ww = np.ascontiguousarray(ww, dtype=np.float64)
    # rows whose masks need no sums (see the kernel): every output's weights sum to ~1 > 1/2
    shortcut = bool(wh.size and ww.size and wh.min() >= 0 and ww.min() >= 0 and wh.sum(axis=1).min() * ww.sum(axis=1).min() > 0.5 + 1e-6)
    return area_resample_2d(
        np.ascontiguousarray(att, dtype=np.float32), valid, imp, np.ascontiguousarray(ih, dtype=np.int64), wh,
        np.ascontiguousarray(iw, dtype=np.int64), ww, valid.all(axis=1), imp.any(axis=1), shortcut,
    )


def _pitch_factor(native: tuple[float, float], pitch_mm: Any) -> tuple[float, float] | None:
    if pitch_mm is None:
        return None
    try:
        p = (float(pitch_mm), float(pitch_mm)) if np.isscalar(pitch_mm) else tuple(float(x) for x in pitch_mm)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"pitch_mm must be a number or (detector_mm, line_mm), got {pitch_mm!r}") from exc
    if len(p) != 2 or not all(np.isfinite(x) and x > 0 for x in p):
        raise InvalidParameterError(f"pitch_mm must be positive, got {pitch_mm!r}")
    f = (p[0] / native[0], p[1] / native[1])
    if abs(f[0] - 1) < 1e-9 and abs(f[1] - 1) < 1e-9:
        return None
    return f


def _scale_truth(truth: Truth | None, f: tuple[float, float] | None) -> Truth | None:
    if truth is None or f is None or len(truth) == 0:
        return truth
    b = np.array(truth.boxes, dtype=np.float64)
    b[:, [0, 2]] /= f[1]
    b[:, [1, 3]] /= f[0]
    return Truth(b.astype(np.float32), truth.classes)


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------


def _class_step(mode: int, rendered: bool = False) -> dict[str, Any]:
    if rendered:
        return {"source": "hue of the rendering (nii.io.rendered)"}
    if mode == 1:
        return {"organic_below": ZEFF_ORGANIC_MAX, "metal_from": ZEFF_MIXED_MAX, "air_below_l_high": AIR_ATTENUATION_MAX}
    return {"single_energy": True, "object_class": "MIXED", "air_below_l": AIR_ATTENUATION_MAX,
            "note": "no Zeff from one energy: classes are air / object (MIXED) / impenetrable"}


def _build_scan(raw: RawScan, out: dict[str, np.ndarray], prep: _Prepared, *, factor, stripes_info,
                truth: Truth | None, pitch: tuple[float, float], extra_steps=(), metadata=None) -> Scan:
    prov = Provenance()
    cal_hash = prep.cal_hash
    for name, params in prep.steps:
        prov = prov.append(Step(name, params), calibration_hash=cal_hash)
    starved = int(out["n_starved"])
    prov = prov.append(Step("log_attenuation", {
        "law": "L = ln(I0(t) / (I - dark))",
        "starved_pixels": starved,
        "starved_value": "ln(I0 / threshold) (largest measurable), valid=False, IMPENETRABLE when the high energy starves",
        "threshold": "max(starve_counts, starve_sigma * dark noise)",
    }))
    if stripes_info is not None:
        prov = prov.append(Step("stripe_suppression", stripes_info))
    if factor is not None:
        prov = prov.append(Step("resample", {
            "from_pitch_mm": list(raw.pixel_pitch_mm), "to_pitch_mm": list(pitch), "factor": list(factor),
            "method": "area average of attenuation; impenetrable / valid by >= half area",
        }))
    if prep.mode == 1:
        prov = prov.append(Step("zeff_lookup", {"table": "bilinear (L_high, R = L_low / L_high)"}))
    else:
        prov = prov.append(Step("zeff_lookup", {"skipped": "single-energy scan: no Zeff"}))
    prov = prov.append(Step("classify", _class_step(prep.mode)))
    prov = prov.append(Step("pseudocolor", {"law": "nii.materials.render_pseudocolor"}))
    for name, params in extra_steps:
        prov = prov.append(Step(name, params))
    return Scan(
        attenuation=out["attenuation"],
        energies=raw.energies,
        pixel_pitch_mm=pitch,
        valid=out["valid"],
        zeff=out["zeff"] if prep.mode == 1 else None,
        material=out["material"],
        color=out["color"],
        profile=raw.profile,
        scan_id=raw.scan_id,
        acquired_at=raw.acquired_at,
        source=raw.source,
        truth=truth,
        rendered=False,
        provenance=prov,
        metadata=dict(raw.metadata) if metadata is None else metadata,
    )


def _stripe_suppress(out: dict[str, np.ndarray], prep: _Prepared, *, min_fraction: float = 0.05) -> dict[str, Any]:
    att = out["attenuation"]
    e, h, w = att.shape
    # air lines of a channel are those where both neighbouring channels see air: a channel whose
    # own offset lifts it above the air threshold is still measured there
    is_air = out["material"] == MaterialClass.AIR
    pad = np.concatenate([is_air[:1], is_air, is_air[-1:]], axis=0)
    air = pad[:-2] & pad[2:] & out["valid"]
    n_air = air.sum(axis=1)
    use = n_air >= max(16, int(min_fraction * w))
    masked = np.where(air[None], att, np.nan)
    offs = np.zeros((e, h), dtype=np.float32)
    rows = np.nonzero(use)[0]
    if rows.size:
        offs[:, rows] = np.nanmedian(masked[:, rows, :], axis=2).astype(np.float32)
    imp = out["material"] == MaterialClass.IMPENETRABLE
    att -= np.where(imp[None], np.float32(0), offs[:, :, None])
    maps = _run_maps(att, imp, mode=prep.mode, table=prep.table, tpar=prep.tpar,
                     want_color=True, want_enc=out["enc"].shape[0] > 0)
    out.update(maps)
    return {"method": "subtract per channel the median attenuation of lines where its neighbours see air", "channels_corrected": int(rows.size),
            "max_offset": float(np.abs(offs).max()) if offs.size else 0.0}


def _normalize_arrays(raw: RawScan, prep: _Prepared, *, t0: int, factor, want_enc: bool, stripes: bool):
    out = _run_fused(raw, prep, t0, want_color=True, want_enc=want_enc and factor is None)
    stripes_info = _stripe_suppress(out, prep) if stripes else None
    if factor is not None:
        imp = out["material"] == MaterialClass.IMPENETRABLE
        att, valid, imp = resample_area(out["attenuation"], out["valid"], imp, factor=factor)
        out = {"attenuation": att, "valid": valid}
        out.update(_run_maps(att, imp, mode=prep.mode, table=prep.table, tpar=prep.tpar, want_enc=want_enc))
    out["n_starved"] = int(out["valid"].size - np.count_nonzero(out["valid"]))
    return out, stripes_info


def normalize(
    raw: RawScan | Scan,
    calibration: Any = None,
    *,
    pitch_mm: float | tuple[float, float] | None = None,
    stripes: bool = False,
    starve_counts: float = 4.0,
    starve_sigma: float = 5.0,
    materials: bool = True,
) -> Scan:
    """Normalise a raw scan into calibrated attenuation, Zeff, material and colour maps.

    Parameters
    ----------
    raw : RawScan or Scan
        Raw counts; a :class:`Scan` (already normalised, or recovered from a rendering) only gets
        the steps that apply (maps from attenuation, resampling).
    calibration : CalibrationSet, MaterialTable, path or None
        None: the shipped calibration of ``raw.profile`` (its material table); the scan's own
        dark and air references are used. A :class:`~nii.calibrate.CalibrationSet` with master
        frames supplies dark / air when the scan has none, and its bad-channel mask.
    pitch_mm : float or (float, float), optional
        Target pitch (detector, line) in mm; None keeps the native pitch. See :func:`resample_area`.
    stripes : bool
        Per-channel stripe suppression from air pixels (whole scans only).
    starve_counts, starve_sigma : float
        Starvation threshold ``max(starve_counts, starve_sigma * dark noise)`` in counts above dark.
    materials : bool
        False skips Zeff (no material table needed; dual-energy classes then air / object / impenetrable
        as for single energy).

    Returns
    -------
    Scan
        With provenance of every step and the calibration hash.

    Raises
    ------
    CalibrationMismatchError
        The calibration is for another profile, other energies or another channel count.
    CalibrationError
        No calibration is given and none is shipped for the scan's profile.
    """
    if isinstance(raw, Scan):
        return _normalize_scan(raw, calibration, pitch_mm=pitch_mm)
    scan, _ = _normalize_raw(raw, calibration, pitch_mm=pitch_mm, stripes=stripes, starve_counts=starve_counts,
                             starve_sigma=starve_sigma, materials=materials, want_enc=False)
    return scan


def normalize_and_encode(
    raw: RawScan,
    calibration: Any = None,
    *,
    pitch_mm: float | tuple[float, float] | None = None,
    stripes: bool = False,
    starve_counts: float = 4.0,
    starve_sigma: float = 5.0,
) -> tuple[Scan, np.ndarray]:
    """:func:`normalize` and :func:`detector_input` of a raw scan in the same fused pass.

    Returns the :class:`Scan` and its detector input ``uint8 (H, W, 3)`` (``nii-det/1``).
    """
    if not isinstance(raw, RawScan):
        raise InvalidParameterError(f"raw must be a RawScan, got {type(raw).__name__}")
    return _normalize_raw(raw, calibration, pitch_mm=pitch_mm, stripes=stripes, starve_counts=starve_counts,
                          starve_sigma=starve_sigma, materials=True, want_enc=True)


def _normalize_raw(raw, calibration, *, pitch_mm, stripes, starve_counts, starve_sigma, materials, want_enc):
    if not isinstance(raw, RawScan):
        raise InvalidParameterError(f"raw must be a RawScan or Scan, got {type(raw).__name__}")
    _check_options(starve_counts, starve_sigma)
    if raw.rendered:
        raise InvalidDataError(f"scan {raw.scan_id!r} holds rendered 8-bit data, not counts: read it as a Scan")
    cal = _calibration_for(raw, calibration, materials)
    cal.check(raw)
    prep = _prepare(raw, cal, total_lines=raw.counts.shape[2], starve_counts=starve_counts,
                    starve_sigma=starve_sigma, materials=materials)
    _fix_table_step(prep, cal)
    factor = _pitch_factor(raw.pixel_pitch_mm, pitch_mm)
    out, stripes_info = _normalize_arrays(raw, prep, t0=0, factor=factor, want_enc=want_enc, stripes=stripes)
    pitch = raw.pixel_pitch_mm if factor is None else (raw.pixel_pitch_mm[0] * factor[0], raw.pixel_pitch_mm[1] * factor[1])
    scan = _build_scan(raw, out, prep, factor=factor, stripes_info=stripes_info,
                       truth=_scale_truth(raw.truth, factor), pitch=pitch)
    return scan, (out["enc"] if want_enc else None)


def _calibration_for(raw: RawScan, calibration: Any, materials: bool) -> Any:
    if calibration is None and not materials:
        from .calibrate import CalibrationSet

        return CalibrationSet(profile=raw.profile, energies=raw.energies)
    return resolve_calibration(calibration, profile=raw.profile, energies=raw.energies)


def _fix_table_step(prep: _Prepared, cal: Any) -> None:
    prep.steps.append(("calibration", {
        "calibration_hash": cal.hash,
        "profile": cal.profile,
        "material_table_hash": None if cal.material is None else cal.material.hash,
        "material_table_source": None if cal.material is None else cal.material.source,
    }))


def _check_options(starve_counts: float, starve_sigma: float) -> None:
    if not (np.isfinite(starve_counts) and starve_counts > 0):
        raise InvalidParameterError(f"starve_counts must be positive, got {starve_counts!r}")
    if not (np.isfinite(starve_sigma) and starve_sigma >= 0):
        raise InvalidParameterError(f"starve_sigma must be >= 0, got {starve_sigma!r}")


def _normalize_scan(scan: Scan, calibration: Any, *, pitch_mm: Any) -> Scan:
    """Subset of the steps for a Scan: maps from attenuation, optional resampling."""
    e = scan.n_energies
    factor = _pitch_factor(scan.pixel_pitch_mm, pitch_mm)
    att = np.asarray(scan.attenuation, dtype=np.float32)
    valid = np.ones(att.shape[1:], bool) if scan.valid is None else np.asarray(scan.valid)
    imp = np.zeros(att.shape[1:], bool) if scan.material is None else np.asarray(scan.material) == MaterialClass.IMPENETRABLE
    fixed = np.asarray(scan.material) if (scan.rendered and scan.material is not None) else None
    steps: list[tuple[str, dict[str, Any]]] = []
    cal_hash = None
    mode, table, tpar = 0, _DUMMY_TABLE, _DUMMY_TPAR
    if e >= 2 and not scan.rendered:
        cal = resolve_calibration(calibration, profile=scan.profile, energies=scan.energies)
        if cal.profile is not None and scan.profile is not None and cal.profile != scan.profile:
            from .errors import CalibrationMismatchError

            raise CalibrationMismatchError(f"scan is from profile {scan.profile!r}, calibration for {cal.profile!r}")
        if cal.material is None:
            raise CalibrationError(f"no material table for profile {cal.profile!r}")
        mode, table, tpar = 1, np.ascontiguousarray(cal.material.values), cal.material.grid_params
        cal_hash = cal.hash
    if factor is not None:
        if fixed is not None:
            raise InvalidParameterError("rendered scans cannot be resampled here (their classes are not averageable)")
        att, valid, imp = resample_area(att, valid, imp, factor=factor)
        steps.append(("resample", {"from_pitch_mm": list(scan.pixel_pitch_mm), "factor": list(factor),
                                   "method": "area average of attenuation; impenetrable / valid by >= half area"}))
    maps = _run_maps(att, imp, mode=mode, table=table, tpar=tpar, fixed=fixed)
    if scan.rendered:
        steps.append(("classify", _class_step(mode, rendered=True)))
    else:
        steps.append(("zeff_lookup", {"table": "bilinear (L_high, R)"} if mode == 1 else {"skipped": "single energy"}))
        steps.append(("classify", _class_step(mode)))
    steps.append(("pseudocolor", {"law": "nii.materials.render_pseudocolor"}))
    pitch = scan.pixel_pitch_mm if factor is None else (scan.pixel_pitch_mm[0] * factor[0], scan.pixel_pitch_mm[1] * factor[1])
    out = scan.replace(
        attenuation=att, valid=valid, pixel_pitch_mm=pitch,
        zeff=maps["zeff"] if mode == 1 else (None if scan.rendered else scan.zeff if factor is None else None),
        material=maps["material"], color=maps["color"], truth=_scale_truth(scan.truth, factor),
    )
    for i, (name, params) in enumerate(steps):
        out = out.with_step(name, params, calibration_hash=cal_hash if i == 0 else None)
    return out


def normalize_stream(
    strips: Iterable[RawScan],
    calibration: Any = None,
    *,
    total_lines: int | None = None,
    pitch_mm: float | tuple[float, float] | None = None,
    starve_counts: float = 4.0,
    starve_sigma: float = 5.0,
    materials: bool = True,
) -> Iterator[Scan]:
    """Normalise a scan strip by strip, as a line scanner delivers it.

    Parameters
    ----------
    strips : iterable of RawScan
        Consecutive blocks of lines of one scan (same energies, channels, pitch, profile). The
        references (dark, air, air_end, dead_mask) of the *first* strip apply to all.
    calibration
        As for :func:`normalize`.
    total_lines : int, optional
        Length of the whole scan in lines; required when the first strip carries ``air_end``
        (drift correction interpolates over the whole scan).
    pitch_mm
        Target pitch; lines are buffered until an output line is complete.

    Yields
    ------
    Scan
        One per strip (with resampling: one per strip that completes at least one output line).
        ``metadata["first_line"]`` is the strip's first line in the output scan. Concatenated along
        W they equal :func:`normalize` of the whole scan (stripe suppression, which needs the
        whole scan, is not available here).
    """
    _check_options(starve_counts, starve_sigma)
    it = iter(strips)
    try:
        first = next(it)
    except StopIteration:
        return
    if not isinstance(first, RawScan):
        raise InvalidParameterError(f"strips must be RawScan objects, got {type(first).__name__}")
    cal = _calibration_for(first, calibration, materials)
    cal.check(first)
    prep = _prepare(first, cal, total_lines=total_lines, starve_counts=starve_counts, starve_sigma=starve_sigma,
                    materials=materials)
    _fix_table_step(prep, cal)
    factor = _pitch_factor(first.pixel_pitch_mm, pitch_mm)
    e, h, _ = first.counts.shape
    pitch = first.pixel_pitch_mm if factor is None else (first.pixel_pitch_mm[0] * factor[0], first.pixel_pitch_mm[1] * factor[1])
    if factor is not None:
        nh = _n_out(h, factor[0])
        if nh < 1:
            raise InvalidParameterError(f"target pitch too coarse for {h} channels")
        ih, wh = area_weights(factor[0], 0, nh, h)
    buf_att = None
    buf_start = 0  # global input line of buf[0]
    next_out = 0  # next output line to emit
    t0 = 0
    index = 0
    strip: RawScan | None = first
    while strip is not None:
        if strip.counts.shape[:2] != (e, h) or [x.label for x in strip.energies] != [x.label for x in first.energies]:
            raise InvalidDataError(f"strip {index} has shape {strip.counts.shape[:2]}, expected {(e, h)} like the first")
        if strip.pixel_pitch_mm != first.pixel_pitch_mm:
            raise InvalidDataError(f"strip {index} pitch {strip.pixel_pitch_mm} differs from the first strip's")
        n = strip.counts.shape[2]
        if total_lines is not None and t0 + n > total_lines:
            raise InvalidDataError(f"strips exceed total_lines={total_lines}")
        out = _run_fused(strip, prep, t0, want_color=True, want_enc=False)
        meta = {**dict(strip.metadata), "strip_index": index}
        if factor is None:
            out["n_starved"] = int(out["valid"].size - np.count_nonzero(out["valid"]))
            meta["first_line"] = t0
            yield _build_scan(first, out, prep, factor=None, stripes_info=None, truth=strip.truth, pitch=pitch,
                              extra_steps=[("stream", {"strip_index": index, "first_line": t0, "lines": n})],
                              metadata=meta)
        else:
            imp = out["material"] == MaterialClass.IMPENETRABLE
            # resample across channels now (each strip has all channels)
            stack = np.concatenate([out["attenuation"], out["valid"][None].astype(np.float32), imp[None].astype(np.float32)])
            stack = _resample_axis(stack, 1, ih, wh)
            buf = stack if buf_att is None else np.concatenate([buf_att, stack], axis=2)
            received = t0 + n
            n_done = _n_out(received, factor[1])
            if n_done > next_out:
                iw, ww = area_weights(factor[1], next_out, n_done, received)
                r = _resample_axis(buf, 2, iw - buf_start, ww)
                imp_o = r[e + 1] >= 0.5 - 1e-9
                valid_o = (r[e] >= 0.5 - 1e-9) & ~imp_o
                att_o = r[:e].astype(np.float32)
                res = {"attenuation": att_o, "valid": valid_o}
                res.update(_run_maps(att_o, imp_o, mode=prep.mode, table=prep.table, tpar=prep.tpar))
                res["n_starved"] = int(valid_o.size - np.count_nonzero(valid_o))
                meta["first_line"] = next_out
                yield _build_scan(first, res, prep, factor=factor, stripes_info=None, truth=None, pitch=pitch,
                                  extra_steps=[("stream", {"strip_index": index, "first_line": next_out,
                                                           "lines": n_done - next_out})], metadata=meta)
                next_out = n_done
                keep_from = int(np.floor(n_done * factor[1] + 1e-9))
                buf = buf[:, :, keep_from - buf_start:]
                buf_start = keep_from
            buf_att = buf
        t0 += n
        index += 1
        strip = next(it, None)


def _encode_resampled(scan: Scan, calibration: Any, factor: tuple[float, float]) -> np.ndarray:
    """``nii-det/1`` of a dual-energy, non-rendered Scan resampled by ``factor``: the same bytes as
    encoding ``normalize(scan, pitch_mm=...)`` (the kernel's encoding is bit-identical to
    :func:`nii.encoding.encode_detector_input`), without the colour map and the container."""
    att = np.asarray(scan.attenuation, dtype=np.float32)
    valid = np.ones(att.shape[1:], bool) if scan.valid is None else np.asarray(scan.valid)
    imp = np.zeros(att.shape[1:], bool) if scan.material is None else np.asarray(scan.material) == MaterialClass.IMPENETRABLE
    cal = resolve_calibration(calibration, profile=scan.profile, energies=scan.energies)
    if cal.profile is not None and scan.profile is not None and cal.profile != scan.profile:
        from .errors import CalibrationMismatchError

        raise CalibrationMismatchError(f"scan is from profile {scan.profile!r}, calibration for {cal.profile!r}")
    if cal.material is None:
        raise CalibrationError(f"no material table for profile {cal.profile!r}")
    att, _, imp = resample_area(att, valid, imp, factor=factor)
    maps = _run_maps(att, imp, mode=1, table=np.ascontiguousarray(cal.material.values), tpar=cal.material.grid_params,
                     want_color=False, want_enc=True)
    return maps["enc"]


def detector_input(
    source: RawScan | Scan,
    calibration: Any = None,
    *,
    pitch_mm: float | tuple[float, float] | None = None,
) -> np.ndarray:
    """The detector's input image ``nii-det/1`` (``uint8 (H, W, 3)``, see :mod:`nii.encoding`).

    A :class:`RawScan` is normalised and encoded in the same fused pass; a :class:`Scan` is
    encoded from its maps (rendered scans use the class-representative Zeff,
    :data:`nii.encoding.CLASS_ZEFF`). ``pitch_mm`` resamples first (:func:`resample_area`).
    """
    from .encoding import CLASS_ZEFF, encode_detector_input

    if isinstance(source, RawScan):
        return normalize_and_encode(source, calibration, pitch_mm=pitch_mm)[1]
    if not isinstance(source, Scan):
        raise InvalidParameterError(f"source must be a RawScan or Scan, got {type(source).__name__}")
    scan = source
    factor = _pitch_factor(scan.pixel_pitch_mm, pitch_mm)
    if factor is not None and scan.n_energies >= 2 and not scan.rendered:
        # fast path: resample, then Zeff/class/encoding in one kernel pass (no colour, no Scan)
        return _encode_resampled(scan, calibration, factor)
    if factor is not None:
        scan = normalize(scan, calibration, pitch_mm=pitch_mm)
    att = scan.attenuation
    l_low = att[0] if scan.n_energies >= 2 else None
    l_high = att[-1]
    if scan.rendered and scan.material is not None:
        zeff = CLASS_ZEFF[np.minimum(scan.material, len(CLASS_ZEFF) - 1)]
    else:
        zeff = scan.zeff
    return encode_detector_input(l_low, l_high, zeff, scan.material)
