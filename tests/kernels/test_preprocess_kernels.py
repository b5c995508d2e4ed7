"""Equivalence of the preprocessing kernels with their NumPy references (tests/naive.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nii._kernels.preprocess import MIN_TILE_LINES, STEP_CELL, TILE_LINES, step_tables
from nii.containers import EnergyChannel
from nii.encoding import encode_detector_input
from nii.materials import (
    CLASS_HUE_RGB,
    MaterialClass,
    render_pseudocolor,
    zeff_to_class,
)
from nii.normalization import _Prepared, _run_fused, _run_maps
from tests.naive import naive_attenuation, naive_maps, naive_zeff_lookup
from tests.synth import synthetic_material_table

ENERGIES = (EnergyChannel("low", 80.0), EnergyChannel("high", 140.0))


@pytest.fixture(scope="module")
def table():
    # a monotone synthetic R(Z, L) with beam hardening (R falls with L)
    return synthetic_material_table(hardening=0.04, n_l=64, n_r=96)


def _prep(rng, e, h, *, table=None, bad_frac=0.1, drift=True):
    dark = rng.normal(200, 3, (e, h)).astype(np.float32)
    air0 = rng.normal(20000, 500, (e, h)).astype(np.float32)
    slope = (rng.normal(0, 2, (e, h)) if drift else np.zeros((e, h))).astype(np.float32)
    starve = rng.uniform(3, 20, (e, h)).astype(np.float32)
    bad = rng.random((e, h)) < bad_frac
    bad[:, 0] = True  # an edge channel (one-sided repair)
    bad[:, 1] = False
    from nii.normalization import _repair_plan

    lo, hi, wt = _repair_plan(bad, ENERGIES if e == 2 else (EnergyChannel("single"),))
    if table is None:
        mode, tab, tpar = 0, np.zeros((2, 2), np.float32), np.array([0, 1, 0, 1], np.float32)
    else:
        mode, tab, tpar = 1, np.ascontiguousarray(table.values), table.grid_params
    prep = _Prepared(dark, air0, slope, starve, lo, hi, wt, mode, tab, tpar, [], None)
    return prep, bad


def _raw(rng, e, h, w, prep):
    from nii import RawScan

    trans = np.exp(-rng.uniform(0, 9, (1, h, w))) * np.array([0.7, 1.0][:e])[:, None, None] ** 3
    trans[:, :, : w // 5] = 1.0  # air lines
    counts = prep.dark[..., None] + prep.air0[..., None] * trans
    counts = rng.poisson(counts).clip(0, 65535).astype(np.uint16)
    counts[:, 3, 5] = 0  # a hard starved pixel
    en = ENERGIES if e == 2 else (EnergyChannel("single"),)
    return RawScan(counts=counts, energies=en, pixel_pitch_mm=(1.0, 1.0))


@pytest.mark.parametrize("t0", [0, 1000])
def test_fused_matches_naive_dual(rng, table, t0):
    e, h, w = 2, 37, 101
    prep, bad = _prep(rng, e, h, table=table)
    raw = _raw(rng, e, h, w, prep)
    out = _run_fused(raw, prep, t0, want_color=True, want_enc=True)
    att_ref, starved = naive_attenuation(raw.counts, prep.dark, prep.air0, prep.slope, t0, prep.starve, bad)
    np.testing.assert_allclose(out["attenuation"], att_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["valid"], ~starved.any(axis=0))
    assert starved.any() and (~starved).any()
    imp = starved[-1]
    # Zeff against an independent bilinear interpolator, on the kernel's attenuation
    att = out["attenuation"]
    obj = ~imp & (att[1] >= 0.02)
    zref = naive_zeff_lookup(att[1], att[0] / att[1], table.values, table.l0, table.dl, table.r0, table.dr)
    np.testing.assert_allclose(out["zeff"][obj], zref[obj], rtol=1e-5)
    assert np.all(np.isnan(out["zeff"][~obj]))
    # class, colour and encoding exactly by the NumPy specifications
    _, mat, color, enc = naive_maps(att, imp, lambda l, r: out["zeff"])
    np.testing.assert_array_equal(out["material"], mat)
    np.testing.assert_array_equal(out["color"], color)
    np.testing.assert_array_equal(out["enc"], enc)
    assert set(np.unique(mat)) >= {MaterialClass.AIR, MaterialClass.IMPENETRABLE}
    # and the classes from the fully independent chain agree away from class boundaries
    z2, mat2, _, _ = naive_maps(att_ref, imp, lambda l, r: naive_zeff_lookup(l, r, table.values, table.l0, table.dl, table.r0, table.dr))
    far = ~(np.abs(np.nan_to_num(z2) - 10.0) < 1e-3) & ~(np.abs(np.nan_to_num(z2) - 18.0) < 1e-3)
    far &= np.abs(att_ref[1] - 0.02) > 1e-5
    np.testing.assert_array_equal(out["material"][far], mat2[far])


@pytest.mark.parametrize("w", [MIN_TILE_LINES - 3, 2 * MIN_TILE_LINES + 5, 2 * TILE_LINES + 37])
def test_fused_tiles_match_naive(rng, table, w):
    """Blocks of one tile, two uneven tiles and several full tiles plus a remainder."""
    e, h = 2, 6
    prep, bad = _prep(rng, e, h, table=table)
    raw = _raw(rng, e, h, w, prep)
    out = _run_fused(raw, prep, 7, want_color=True, want_enc=True)
    att_ref, starved = naive_attenuation(raw.counts, prep.dark, prep.air0, prep.slope, 7, prep.starve, bad)
    np.testing.assert_allclose(out["attenuation"], att_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["valid"], ~starved.any(axis=0))
    _, mat, color, enc = naive_maps(out["attenuation"], starved[-1], lambda l, r: out["zeff"])
    np.testing.assert_array_equal(out["material"], mat)
    np.testing.assert_array_equal(out["color"], color)
    np.testing.assert_array_equal(out["enc"], enc)


def test_fused_matches_naive_single(rng):
    e, h, w = 1, 20, 70
    prep, bad = _prep(rng, e, h)
    raw = _raw(rng, e, h, w, prep)
    out = _run_fused(raw, prep, 0, want_color=True, want_enc=True)
    att_ref, starved = naive_attenuation(raw.counts, prep.dark, prep.air0, prep.slope, 0, prep.starve, bad)
    np.testing.assert_allclose(out["attenuation"], att_ref, rtol=1e-5, atol=1e-6)
    _, mat, color, enc = naive_maps(out["attenuation"], starved[0], None)
    np.testing.assert_array_equal(out["material"], mat)
    np.testing.assert_array_equal(out["color"], color)
    np.testing.assert_array_equal(out["enc"], enc)
    assert set(np.unique(mat)) <= {MaterialClass.AIR, MaterialClass.MIXED, MaterialClass.IMPENETRABLE}


def test_uint32_counts(rng, table):
    prep, _ = _prep(rng, 2, 16, table=table, drift=False)
    raw = _raw(rng, 2, 16, 33, prep)
    raw32 = raw.replace(counts=raw.counts.astype(np.uint32))
    a = _run_fused(raw, prep, 0, want_color=True, want_enc=False)
    b = _run_fused(raw32, prep, 0, want_color=True, want_enc=False)
    for k in ("attenuation", "zeff", "material", "color", "valid"):
        np.testing.assert_array_equal(a[k], b[k])
    assert b["enc"].shape == (0, 0, 3)


def test_step_tables_exact_at_every_step():
    """The colour/encoding step lookup equals the NumPy law at each step and one float below it."""
    thr, lvl, _ = step_tables()
    pts = [np.float32(0.0), np.float32(-1.0), np.float32(1e6)]
    for f in range(thr.shape[0]):
        t = thr[f][np.isfinite(thr[f])]
        pts.extend(t)
        pts.extend(np.nextafter(t, np.float32(-np.inf)))
    l = np.array(pts, dtype=np.float32)
    for cls in (MaterialClass.ORGANIC, MaterialClass.MIXED, MaterialClass.METAL):
        mat = np.full((1, l.size), cls, np.uint8)
        att = np.stack([l, l])[:, None, :]
        maps = _run_maps(att, np.zeros((1, l.size), bool), mode=0, table=np.zeros((2, 2), np.float32),
                         tpar=np.array([0, 1, 0, 1], np.float32), fixed=mat, want_enc=True)
        np.testing.assert_array_equal(maps["color"], render_pseudocolor(l[None], mat))
        ref = encode_detector_input(l[None], l[None], None, mat)
        np.testing.assert_array_equal(maps["enc"][..., [0, 2]], ref[..., [0, 2]])
    assert thr.shape[0] == 10 and STEP_CELL > 0
    assert int(lvl[0, 0]) == int(CLASS_HUE_RGB[1, 0])


@settings(max_examples=40, deadline=None)
@given(
    l=st.lists(st.floats(-1.0, 30.0, width=32, allow_nan=False), min_size=1, max_size=50),
    z=st.floats(1.0, 80.0, width=32),
)
def test_maps_match_spec_property(l, z):
    l = np.asarray(l, np.float32)
    n = l.size
    att = np.stack([l * np.float32(1.3), l])[:, None, :]
    table = np.full((2, 2), z, np.float32)
    tpar = np.array([0, 1, 0, 1], np.float32)
    imp = np.zeros((1, n), bool)
    imp[0, ::7] = True
    maps = _run_maps(att, imp, mode=1, table=table, tpar=tpar, want_enc=True)
    zr, mat, color, enc = naive_maps(att, imp, lambda a, b: np.full(a.shape, z, np.float32))
    np.testing.assert_array_equal(maps["material"], mat)
    np.testing.assert_array_equal(maps["color"], color)
    np.testing.assert_array_equal(maps["enc"], enc)
    np.testing.assert_array_equal(np.isnan(maps["zeff"]), np.isnan(zr))


def test_zeff_classes_follow_thresholds():
    z = np.array([9.999, 10.0, 17.99, 18.0], np.float32)
    np.testing.assert_array_equal(zeff_to_class(z), [1, 2, 2, 3])
