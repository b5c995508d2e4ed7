"""Physical evidence: material statistics inside a box, and the physics-cue anomaly detector.

Everything here works on the normaliser's maps of a :class:`~nii.containers.Scan` at the scan's
own pitch: ``zeff`` (effective atomic number), ``material`` (class codes), ``attenuation``.

*Areal density* is reported as a water-equivalent estimate, ``rho*t = L_high / (mu/rho)_eff``,
with an effective mass attenuation coefficient of water for the scanner's high-energy channel
(:func:`effective_mu_mass`). It is an order-of-magnitude physical cue (dense-organic masses such
as sacks of pangolin scales or a rhino horn reach tens of g/cm²), not a measurement.

The anomaly detector flags connected regions that are

* **bone-like**: Zeff in [12, 16] (ivory, bone, shell; also PVC, aluminium, salt), or
* **dense organic**: Zeff < 10 with a water-equivalent areal density above a threshold
  (keratin: pangolin scales, rhino horn; also food, liquids, books),

of plausible size. They appear with ``origin="material_anomaly"`` so that an operator sees what
the learned detector may miss; they are physics cues, never identifications.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..containers import Scan
from ..materials import (
    AIR_ATTENUATION_MAX,
    ZEFF_MIXED_MAX,
    ZEFF_ORGANIC_MAX,
    MaterialClass,
)
from .types import ORIGIN_ANOMALY, Detection

__all__ = ["AnomalyConfig", "areal_density", "box_evidence", "effective_mu_mass", "material_anomalies"]

#: Water mass attenuation coefficient (cm²/g) at the effective energy of a high-energy channel:
#: ~75 keV for 140-160 kVp baggage scanners (NIST XCOM water: 0.19 at 70 keV, 0.184 at 80 keV),
#: ~2.5 MeV for 4-9 MeV cargo linacs (0.049 at 2 MeV, 0.040 at 3 MeV).
_MU_MASS_KV = 0.19
_MU_MASS_MEV = 0.045


def effective_mu_mass(scan: Scan) -> float:
    """Effective water mass attenuation coefficient (cm²/g) of the scan's high-energy channel."""
    kvp = scan.energies[-1].kvp
    return _MU_MASS_MEV if (kvp is not None and kvp >= 1000.0) else _MU_MASS_KV


def areal_density(l_high: np.ndarray, mu_mass: float) -> np.ndarray:
    """Water-equivalent areal density (g/cm²) from high-energy log attenuation."""
    return np.maximum(np.asarray(l_high, np.float32), 0.0) / np.float32(mu_mass)


@dataclass(frozen=True)
class AnomalyConfig:
    """Parameters of the physics-cue anomaly detector.

    Parameters
    ----------
    bone_zeff : (float, float)
        Zeff range of bone-like material.
    bone_min_g_cm2 : float
        Minimum water-equivalent areal density of a bone-like pixel (thin sheets are ignored).
    organic_zeff_max : float
        Upper Zeff of organic material.
    dense_organic_g_cm2 : float
        Minimum water-equivalent areal density of a dense-organic pixel.
    min_area_cm2, max_area_cm2 : float
        Plausible region size (projected area).
    grid_mm : float
        The maps are averaged onto a grid of this pitch before labelling (speed, noise).
    min_fraction : float
        A grid cell is flagged when at least this fraction of it shows the cue.
    """

    bone_zeff: tuple[float, float] = (12.0, 16.0)
    bone_min_g_cm2: float = 2.0
    organic_zeff_max: float = ZEFF_ORGANIC_MAX
    dense_organic_g_cm2: float = 12.0
    min_area_cm2: float = 20.0
    max_area_cm2: float = 6000.0
    grid_mm: float = 6.0
    min_fraction: float = 0.5


def _object_mask(scan: Scan, sl: tuple[slice, slice]) -> np.ndarray:
    if scan.material is not None:
        obj = scan.material[sl] != MaterialClass.AIR
    else:
        obj = scan.attenuation[-1][sl] >= AIR_ATTENUATION_MAX
    if scan.valid is not None:
        obj &= scan.valid[sl]
    return obj


def _cue_masks(
    scan: Scan, sl: tuple[slice, slice], cfg: AnomalyConfig, *, obj: np.ndarray | None = None, rho_t: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Object (with a finite Zeff, not impenetrable), bone-like and dense-organic masks of ``sl``.

    ``obj`` (:func:`_object_mask`) and ``rho_t`` (:func:`areal_density` of ``L_high``) of the
    same slice may be passed when the caller has them already."""
    if scan.zeff is None:
        return None
    z = scan.zeff[sl]
    if rho_t is None:
        rho_t = areal_density(scan.attenuation[-1][sl], effective_mu_mass(scan))
    obj = (_object_mask(scan, sl) if obj is None else obj) & np.isfinite(z)
    if scan.material is not None:
        obj &= scan.material[sl] != MaterialClass.IMPENETRABLE
    bone = obj & (z >= cfg.bone_zeff[0]) & (z <= cfg.bone_zeff[1]) & (rho_t >= cfg.bone_min_g_cm2)
    dense = obj & (z < cfg.organic_zeff_max) & (rho_t >= cfg.dense_organic_g_cm2)
    return obj, bone, dense


def box_evidence(scan: Scan, box_px: Any, *, config: AnomalyConfig | None = None, max_pixels: int = 60_000) -> dict[str, Any]:
    """Material statistics inside ``box_px`` (xyxy, scan pixels).

    Returns a dict with ``n_object_px``, ``object_fraction``, ``zeff_median``, ``zeff_p10``,
    ``zeff_p90``, ``areal_density_median_g_cm2`` (water-equivalent), ``frac_bone_like``,
    ``frac_dense_organic``, ``frac_metal``, ``frac_impenetrable`` (fractions of the box's object
    pixels) and ``material_hint``. Zeff-based fields are None when the scan has no Zeff map
    (single-energy input).
    """
    cfg = config or AnomalyConfig()
    _, h, w = scan.shape
    x0, y0, x1, y1 = (float(v) for v in box_px)
    c0, c1 = int(np.clip(np.floor(x0), 0, w - 1)), int(np.clip(np.ceil(x1), 1, w))
    r0, r1 = int(np.clip(np.floor(y0), 0, h - 1)), int(np.clip(np.ceil(y1), 1, h))
    c1, r1 = max(c1, c0 + 1), max(r1, r0 + 1)
    step = max(1, int(np.ceil(np.sqrt((r1 - r0) * (c1 - c0) / max_pixels))))
    sl = (slice(r0, r1, step), slice(c0, c1, step))
    obj = _object_mask(scan, sl)
    n_obj = int(obj.sum())
    rho_t = areal_density(scan.attenuation[-1][sl], effective_mu_mass(scan))
    ev: dict[str, Any] = {
        "n_object_px": n_obj * step * step,
        "object_fraction": round(float(obj.mean()), 4),
        "areal_density_median_g_cm2": round(float(np.median(rho_t[obj])), 2) if n_obj else None,
        "zeff_median": None,
        "zeff_p10": None,
        "zeff_p90": None,
        "frac_bone_like": None,
        "frac_dense_organic": None,
        "frac_metal": None,
        "frac_impenetrable": None,
        "material_hint": "no material information (single-energy or rendered input)",
    }
    if scan.material is not None and n_obj:
        ev["frac_impenetrable"] = round(float(np.mean(scan.material[sl][obj] == MaterialClass.IMPENETRABLE)), 4)
    masks = _cue_masks(scan, sl, cfg, obj=obj, rho_t=rho_t)
    if masks is None or not n_obj:
        if not n_obj:
            ev["material_hint"] = "empty box (air)"
        return ev
    zobj, bone, dense = masks
    z = scan.zeff[sl][zobj]
    if z.size:
        p10, p50, p90 = np.percentile(z, [10, 50, 90])
        ev.update(zeff_median=round(float(p50), 2), zeff_p10=round(float(p10), 2), zeff_p90=round(float(p90), 2))
        ev["frac_metal"] = round(float(np.mean(z >= ZEFF_MIXED_MAX)), 4)
    ev["frac_bone_like"] = round(float(bone.sum() / n_obj), 4)
    ev["frac_dense_organic"] = round(float(dense.sum() / n_obj), 4)
    if scan.rendered:
        hint = "material classes from a rendering (coarse)"
    elif ev["frac_bone_like"] >= 0.3:
        hint = "bone-like (Zeff 12-16): consistent with ivory/bone, also PVC/aluminium/shell"
    elif ev["frac_dense_organic"] >= 0.3:
        hint = "dense organic (Zeff < 10, high areal density): consistent with keratin (scales, horn)"
    elif z.size and p50 < cfg.organic_zeff_max:
        hint = "organic"
    elif z.size and p50 >= ZEFF_MIXED_MAX:
        hint = "metal"
    else:
        hint = "mixed / inorganic"
    ev["material_hint"] = hint
    return ev


def _cue_counts(scan: Scan, cfg: AnomalyConfig, fy: int, fx: int) -> tuple[np.ndarray, np.ndarray]:
    """Bone-like and dense-organic pixel counts per ``fy x fx`` cell (one Numba pass,
    :func:`nii._kernels.evidence.cue_counts`; same pixel rule as :func:`_cue_masks`)."""
    from .._kernels.evidence import cue_counts

    f = np.float32
    _, h, _ = scan.shape
    mat = np.zeros((0, 0), np.uint8) if scan.material is None else np.ascontiguousarray(scan.material, dtype=np.uint8)
    valid = np.zeros((0, 0), np.bool_) if scan.valid is None else np.ascontiguousarray(scan.valid, dtype=np.bool_)
    return cue_counts(
        np.ascontiguousarray(scan.attenuation[-1], dtype=f), np.ascontiguousarray(scan.zeff, dtype=f), mat, valid,
        np.int64(fy), np.int64(fx), f(AIR_ATTENUATION_MAX), f(cfg.bone_zeff[0]), f(cfg.bone_zeff[1]), f(cfg.bone_min_g_cm2),
        f(cfg.organic_zeff_max), f(cfg.dense_organic_g_cm2), f(effective_mu_mass(scan)),
    )


def material_anomalies(
    scan: Scan,
    *,
    config: AnomalyConfig | None = None,
    model_boxes: np.ndarray | None = None,
) -> list[Detection]:
    """Regions of bone-like or dense-organic material of plausible size (physics cue).

    Parameters
    ----------
    scan : Scan
        Normalised scan with a Zeff map (returns ``[]`` without one).
    config : AnomalyConfig, optional
    model_boxes : ndarray (K, 4), optional
        Boxes of the learned detector (scan pixels); each anomaly records in its evidence whether
        it overlaps one (``overlaps_model_detection``).

    Returns
    -------
    list of Detection
        ``origin="material_anomaly"``, ``class_name`` ``"bone_like"`` or ``"dense_organic"``,
        ``class_id`` -1, ``confidence`` the fraction of the region's grid cells showing the cue.
    """
    import cv2

    cfg = config or AnomalyConfig()
    if scan.zeff is None or scan.rendered:
        return []
    _, h, w = scan.shape
    dy, dx = scan.pixel_pitch_mm
    fy, fx = max(1, int(round(cfg.grid_mm / dy))), max(1, int(round(cfg.grid_mm / dx)))
    cell_cm2 = (fy * dy) * (fx * dx) / 100.0
    counts = _cue_counts(scan, cfg, fy, fx)
    # real area (pixels) of each cell: the last row / column of cells may be partial
    gh, gw = counts[0].shape
    cy = np.full(gh, float(fy))
    cy[-1] = h - (gh - 1) * fy
    cx = np.full(gw, float(fx))
    cx[-1] = w - (gw - 1) * fx
    boxes_m = np.zeros((0, 4)) if model_boxes is None else np.asarray(model_boxes, np.float64).reshape(-1, 4)
    out: list[Detection] = []
    # a cell is flagged when its cue pixels reach min_fraction of its real area. Full cells are
    # compared with one scalar; only the last row / column can be partial (no full-grid float
    # arrays: a container scan has ~4 M cells per cue)
    for name, count in zip(("bone_like", "dense_organic"), counts):
        if not count.any():
            continue
        flagged = (count >= cfg.min_fraction * (fy * fx)).astype(np.uint8)
        flagged[-1, :] = count[-1, :] >= cfg.min_fraction * (cy[-1] * cx)
        flagged[:, -1] = count[:, -1] >= cfg.min_fraction * (cy * cx[-1])
        n, labels, stats, _ = cv2.connectedComponentsWithStats(flagged, connectivity=8)
        if n <= 1:
            continue
        area_cm2 = stats[1:, cv2.CC_STAT_AREA] * cell_cm2
        ok = np.flatnonzero((area_cm2 >= cfg.min_area_cm2) & (area_cm2 <= cfg.max_area_cm2)) + 1
        if ok.size == 0:
            continue
        for lab in ok:
            x, y, bw, bh, area = stats[lab]
            # mean cue fraction over the component's cells, read inside its bounding box only
            win = (slice(y, y + bh), slice(x, x + bw))
            mine = labels[win] == lab
            cell_px = cy[win[0], None] * cx[None, win[1]]
            frac_sum = float((count[win][mine] / cell_px[mine]).sum())
            box = (
                float(x * fx),
                float(y * fy),
                float(min((x + bw) * fx, w)),
                float(min((y + bh) * fy, h)),
            )
            overlaps = bool(
                boxes_m.size
                and np.any(
                    (np.minimum(boxes_m[:, 2], box[2]) > np.maximum(boxes_m[:, 0], box[0]))
                    & (np.minimum(boxes_m[:, 3], box[3]) > np.maximum(boxes_m[:, 1], box[1]))
                )
            )
            ev = box_evidence(scan, box, config=cfg)
            ev["cue"] = name
            ev["area_cm2"] = round(float(area * cell_cm2), 1)
            ev["overlaps_model_detection"] = overlaps
            out.append(
                Detection(
                    class_name=name,
                    class_id=-1,
                    confidence=float(np.clip(frac_sum / area, 0.0, 1.0)),
                    box_px=box,
                    box_mm=(box[0] * dx, box[1] * dy, box[2] * dx, box[3] * dy),
                    origin=ORIGIN_ANOMALY,
                    evidence=ev,
                )
            )
    return out
