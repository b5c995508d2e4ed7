"""Hand-built scans and results for the output and review tests (no normaliser, no model needed).

:func:`tusk_scan` draws a suitcase of organic clutter holding a curved elephant tusk (ivory,
Zeff ~13.5, the mixed class) and a metal bar; :func:`tusk_result` wraps it in a
:class:`nii.pipeline.Result` with two detections: a model ("yolo") box on the tusk and a
material-anomaly box on its tip.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nii import EnergyChannel, Scan
from nii.containers import Provenance, SourceInfo, Step
from nii.materials import AIR_ATTENUATION_MAX, MaterialClass, render_pseudocolor, zeff_to_class
from nii.pipeline import Result


class FakeDetection:
    """Test double of a detector result: only ``to_dict()`` is used downstream."""

    def __init__(self, cls: str, confidence: float, box_px, *, origin: str = "yolo", pitch=(1.0, 1.0), evidence=None) -> None:
        self._d = {
            "class": cls,
            "class_id": 0 if origin == "yolo" else -1,
            "confidence": float(confidence),
            "box_px": [float(v) for v in box_px],
            "box_mm": [box_px[0] * pitch[1], box_px[1] * pitch[0], box_px[2] * pitch[1], box_px[3] * pitch[0]],
            "origin": origin,
            "evidence": dict(evidence or {"zeff_median": 13.4, "areal_density_median_g_cm2": 5.2, "frac_bone_like": 0.71, "material_hint": "bone-like (Zeff 12-16): consistent with ivory/bone, also PVC/aluminium/shell"}),
        }

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v) for k, v in self._d.items()}


def tusk_scan(h: int = 160, w: int = 400, *, scan_id: str = "tusk-0001", seed: int = 7) -> Scan:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    l_high = np.zeros((h, w), np.float32)
    zeff = np.full((h, w), np.nan, np.float32)
    bag = (yy > h * 0.1) & (yy < h * 0.9) & (xx > w * 0.05) & (xx < w * 0.95)
    l_high[bag] = 0.25 + 0.1 * rng.random(int(bag.sum()), dtype=np.float32)
    zeff[bag] = 7.2
    for _ in range(6):  # clothes and books
        cy, cx, ry, rx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.1, 0.9) * w, rng.uniform(8, 25), rng.uniform(15, 50)
        m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        l_high[m] += 0.4
        zeff[m] = 7.0
    # curved tusk: a band along a parabola, thick at the base, tapering to the tip
    x0, x1 = w * 0.25, w * 0.75
    t = (xx - x0) / (x1 - x0)
    centre = h * 0.62 - (h * 0.3) * (1 - (2 * t - 1) ** 2)
    half = 2 + 9 * (1 - t)
    tusk = (t >= 0) & (t <= 1) & (np.abs(yy - centre) < half)
    l_high[tusk] += 1.6 * (0.6 + 0.4 * (1 - t[tusk]))
    zeff[tusk] = 13.6
    bar = (yy > h * 0.72) & (yy < h * 0.78) & (xx > w * 0.8) & (xx < w * 0.9)
    l_high[bar] += 2.5
    zeff[bar] = 26.0
    ratio = np.where(np.nan_to_num(zeff) >= 18, 2.2, np.where(np.nan_to_num(zeff) >= 10, 1.6, 1.2)).astype(np.float32)
    l_low = (l_high * ratio).astype(np.float32)
    material = zeff_to_class(zeff)
    material[l_high < AIR_ATTENUATION_MAX] = MaterialClass.AIR
    zeff[material == MaterialClass.AIR] = np.nan
    color = render_pseudocolor(l_high, material)
    detect = Step("detect", {"model": "fake-model", "model_sha256": "m" * 64, "backend": "onnxruntime", "far": 0.01,
                             "thresholds": {"ivory": 0.5, "ivory_worked": 0.68, "pangolin_scales": 0.5, "rhino_horn": 0.47}})
    prov = Provenance(steps=(Step("normalize", {"test": True}), detect), calibration_hash="c" * 64, model_hash="m" * 64)
    return Scan(
        attenuation=np.stack([l_low, l_high]),
        energies=(EnergyChannel("low", 80.0), EnergyChannel("high", 160.0)),
        pixel_pitch_mm=(1.5, 2.0),
        valid=np.ones((h, w), bool),
        zeff=zeff,
        material=material,
        color=color,
        profile="test-dual",
        scan_id=scan_id,
        acquired_at="2026-11-25T09:30:00+00:00",
        source=SourceInfo(f"/data/{scan_id}.dcm", "a" * 64, "dicos-dx"),
        provenance=prov,
    )


def tusk_box(h: int = 160, w: int = 400) -> list[float]:
    return [w * 0.25 - 2, h * 0.32 - 12, w * 0.75 + 2, h * 0.62 + 12]


def tusk_result(h: int = 160, w: int = 400, *, scan_id: str = "tusk-0001", n_det: int = 2) -> Result:
    scan = tusk_scan(h, w, scan_id=scan_id)
    dets = [
        FakeDetection("ivory", 0.87, tusk_box(h, w), pitch=scan.pixel_pitch_mm),
        FakeDetection("bone_like", 0.64, [w * 0.62, h * 0.3, w * 0.77, h * 0.55], origin="material_anomaly", pitch=scan.pixel_pitch_mm),
        FakeDetection("pangolin_scales", 0.41, [w * 0.78, h * 0.68, w * 0.92, h * 0.82], pitch=scan.pixel_pitch_mm),
    ][:n_det]
    return Result(
        source=f"/data/{scan_id}.dcm",
        scan_id=scan_id,
        status="ok",
        scan=scan,
        detections=tuple(dets),
        timings_ms={"read": 12.5, "normalize": 40.0, "detect": 80.25, "total": 133.0},
    )


def clear_result(scan_id: str = "clear-0002") -> Result:
    scan = tusk_scan(120, 300, scan_id=scan_id, seed=3)
    return Result(source=None, scan_id=scan_id, status="ok", scan=scan, detections=(), timings_ms={"read": 1.0, "normalize": 2.0, "total": 3.0})
