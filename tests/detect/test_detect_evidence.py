"""Material statistics per box and the physics-cue anomaly detector."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nii.containers import EnergyChannel, Scan
from nii.detect.evidence import (
    AnomalyConfig,
    areal_density,
    box_evidence,
    effective_mu_mass,
    material_anomalies,
)
from nii.detect.types import Detection
from nii.errors import InvalidParameterError


def _scan(h=200, w=300, pitch=2.0, kvp=140.0, blocks=()):
    """Dual-energy scan with rectangular blocks ``(y0, y1, x0, x1, zeff, areal_density_g_cm2)``."""
    l_high = np.zeros((h, w), np.float32)
    z = np.full((h, w), np.nan, np.float32)
    mu = 0.045 if kvp >= 1000 else 0.19
    for y0, y1, x0, x1, zz, rho_t in blocks:
        l_high[y0:y1, x0:x1] = rho_t * mu
        z[y0:y1, x0:x1] = zz
    mat = np.zeros((h, w), np.uint8)
    mat[np.isfinite(z)] = np.where(z[np.isfinite(z)] < 10, 1, np.where(z[np.isfinite(z)] < 18, 2, 3))
    return Scan(
        attenuation=np.stack([l_high * 1.3, l_high]),
        energies=(EnergyChannel("low", kvp * 0.6), EnergyChannel("high", kvp)),
        pixel_pitch_mm=(pitch, pitch),
        zeff=z,
        material=mat,
    )


def test_effective_mu_mass_by_energy():
    assert effective_mu_mass(_scan()) == pytest.approx(0.19)
    assert effective_mu_mass(_scan(kvp=6000.0)) == pytest.approx(0.045)
    np.testing.assert_allclose(areal_density(np.array([0.19, -1.0]), 0.19), [1.0, 0.0])


def test_box_evidence_of_a_bone_like_block():
    s = _scan(blocks=[(50, 100, 50, 150, 13.8, 8.0)])
    ev = box_evidence(s, (40, 40, 160, 110))
    json.dumps(ev)
    assert ev["zeff_median"] == pytest.approx(13.8, abs=0.01)
    assert ev["areal_density_median_g_cm2"] == pytest.approx(8.0, rel=1e-3)
    assert ev["frac_bone_like"] == pytest.approx(1.0)
    assert ev["frac_dense_organic"] == 0.0
    assert ev["object_fraction"] == pytest.approx(50 * 100 / (70 * 120), abs=0.01)
    assert "bone-like" in ev["material_hint"]


def test_box_evidence_dense_organic_and_single_energy():
    s = _scan(blocks=[(50, 100, 50, 150, 7.4, 20.0)])
    ev = box_evidence(s, (50, 50, 150, 100))
    assert ev["frac_dense_organic"] == pytest.approx(1.0) and ev["frac_bone_like"] == 0.0
    single = Scan(attenuation=s.attenuation[-1:], energies=(EnergyChannel("single"),), pixel_pitch_mm=(2.0, 2.0))
    ev1 = box_evidence(single, (50, 50, 150, 100))
    assert ev1["zeff_median"] is None and ev1["frac_bone_like"] is None
    assert ev1["areal_density_median_g_cm2"] == pytest.approx(20.0, rel=1e-3)
    assert material_anomalies(single) == []


def test_box_evidence_of_air():
    ev = box_evidence(_scan(), (0, 0, 10, 10))
    assert ev["n_object_px"] == 0 and ev["zeff_median"] is None


def test_anomalies_flag_plausible_masses_only():
    s = _scan(
        blocks=[
            (20, 80, 20, 120, 13.5, 6.0),  # bone-like, 12 x 20 cm: flagged
            (120, 170, 150, 280, 7.5, 25.0),  # dense organic sack 10 x 26 cm: flagged
            (150, 155, 20, 25, 13.5, 6.0),  # bone-like but 1 cm²: too small
            (120, 170, 20, 100, 7.5, 2.0),  # organic but thin (clothes): not dense
            (100, 110, 200, 290, 26.0, 40.0),  # metal: no cue
        ]
    )
    an = material_anomalies(s, model_boxes=np.array([[10, 10, 60, 60]]))
    assert sorted(a.class_name for a in an) == ["bone_like", "dense_organic"]
    for a in an:
        assert a.origin == "material_anomaly" and a.class_id == -1 and 0 < a.confidence <= 1
        json.dumps(a.to_dict())
    bone = next(a for a in an if a.class_name == "bone_like")
    # the cue works on a 6 mm grid (3 px here): the box is exact to one cell
    np.testing.assert_allclose(bone.box_px, (20, 20, 120, 80), atol=3)
    assert bone.evidence["overlaps_model_detection"] is True
    dense = next(a for a in an if a.class_name == "dense_organic")
    assert dense.evidence["overlaps_model_detection"] is False
    assert dense.evidence["area_cm2"] == pytest.approx(10 * 26, rel=0.15)


def test_anomaly_size_limits_are_configurable():
    s = _scan(blocks=[(20, 80, 20, 120, 13.5, 6.0)])
    assert material_anomalies(s, config=AnomalyConfig(min_area_cm2=500.0)) == []


def test_detection_validation_and_json():
    d = Detection("ivory", 0, 0.5, (1, 2, 3, 4), (2, 4, 6, 8), "yolo", {"zeff_median": float("nan")})
    out = d.to_dict()
    assert out["class"] == "ivory" and out["box_px"] == [1, 2, 3, 4]
    assert out["evidence"]["zeff_median"] is None  # NaN becomes null in JSON
    json.dumps(out, allow_nan=False)
    assert not d.is_anomaly
    for bad in (dict(box_px=(3, 0, 1, 1)), dict(confidence=1.5), dict(origin="magic"), dict(box_px=(0, 0, math.inf, 1))):
        kw = dict(class_name="ivory", class_id=0, confidence=0.5, box_px=(0, 0, 1, 1))
        kw.update(bad)
        with pytest.raises(InvalidParameterError):
            Detection(**kw)


def _reference_anomaly_cells(scan, cfg):
    """Plain NumPy reference of the cue grid: per-pixel masks, cells of the real (partial) size,
    the fraction per cell, the flag and each component's mean fraction."""
    import cv2

    from nii.detect.evidence import _cue_masks

    _, h, w = scan.shape
    dy, dx = scan.pixel_pitch_mm
    fy, fx = max(1, round(cfg.grid_mm / dy)), max(1, round(cfg.grid_mm / dx))
    _, bone, dense = _cue_masks(scan, (slice(None), slice(None)), cfg)
    gh, gw = -(-h // fy), -(-w // fx)
    out = {}
    for name, mask in (("bone_like", bone), ("dense_organic", dense)):
        pad = np.zeros((gh * fy, gw * fx), np.float64)
        cnt = np.zeros_like(pad)
        pad[:h, :w] = mask
        cnt[:h, :w] = 1
        count = pad.reshape(gh, fy, gw, fx).sum(axis=(1, 3))
        cells = cnt.reshape(gh, fy, gw, fx).sum(axis=(1, 3))
        frac = count / cells
        n, labels, stats, _ = cv2.connectedComponentsWithStats((frac >= cfg.min_fraction).astype(np.uint8), connectivity=8)
        out[name] = {tuple(stats[k, :4]): np.bincount(labels.ravel(), weights=frac.ravel())[k] / stats[k, 4] for k in range(1, n)}
    return out, fy, fx


@pytest.mark.parametrize("shape", [(200, 300), (203, 301), (199, 298)])
def test_anomaly_grid_matches_a_plain_reference_with_partial_cells(shape):
    """Scans whose size is no multiple of the cell: the partial last row / column count by their real area."""
    h, w = shape
    s = _scan(h=h, w=w, blocks=[(20, 80, 20, 120, 13.5, 6.0), (h - 60, h, w - 110, w, 7.5, 25.0), (120, 150, 10, 60, 13.4, 9.0)])
    cfg = AnomalyConfig()
    ref, fy, fx = _reference_anomaly_cells(s, cfg)
    an = material_anomalies(s, config=cfg)
    assert an, "the blocks must be flagged"
    for a in an:
        x0, y0, x1, y1 = a.box_px
        key = (int(x0) // fx, int(y0) // fy, -(-int(x1) // fx) - int(x0) // fx, -(-int(y1) // fy) - int(y0) // fy)
        assert key in ref[a.class_name], (a.class_name, key, list(ref[a.class_name]))
        assert a.confidence == pytest.approx(min(1.0, ref[a.class_name][key]), abs=1e-9)
