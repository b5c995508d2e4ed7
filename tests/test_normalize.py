"""nii.normalize (nii.normalization): whole-scan and streaming normalisation, drift, starvation, repair, resampling."""

from __future__ import annotations

import numpy as np
import pytest

import nii
from nii import CalibrationMismatchError, EnergyChannel, RawScan, Scan, Truth
from nii.bench.preprocess import make_scan
from nii.calibrate import CalibrationSet
from nii.encoding import encode_detector_input
from nii.materials import MaterialClass, render_pseudocolor
from nii.normalization import (
    detector_input,
    normalize,
    normalize_and_encode,
    normalize_stream,
    resample_area,
)
from tests.naive import naive_area_resample
from tests.synth import synthetic_material_table

ENERGIES = (EnergyChannel("low", 80.0), EnergyChannel("high", 140.0))


@pytest.fixture(scope="module")
def table():
    return synthetic_material_table(n_l=48, n_r=64)


def _concat(scans):
    return {
        "attenuation": np.concatenate([s.attenuation for s in scans], axis=2),
        "valid": np.concatenate([s.valid for s in scans], axis=1),
        "zeff": np.concatenate([s.zeff for s in scans], axis=1),
        "material": np.concatenate([s.material for s in scans], axis=1),
        "color": np.concatenate([s.color for s in scans], axis=1),
    }


def _strips(raw, sizes):
    out, a = [], 0
    for n in sizes:
        out.append(raw.replace(counts=raw.counts[:, :, a : a + n]))
        a += n
    assert a == raw.counts.shape[2]
    return out


@pytest.mark.parametrize("pitch", [None, (2.0, 3.0), (1.5, 2.5)])
def test_stream_equals_whole(table, pitch):
    raw = make_scan(40, 150, seed=3)
    whole = normalize(raw, table, pitch_mm=pitch)
    parts = list(normalize_stream(_strips(raw, [7, 50, 1, 33, 59]), table, total_lines=150, pitch_mm=pitch))
    got = _concat(parts)
    for k, v in got.items():
        np.testing.assert_array_equal(v, getattr(whole, k), err_msg=k)
    assert [p.metadata["first_line"] for p in parts] == sorted(p.metadata["first_line"] for p in parts)
    assert parts[0].provenance.calibration_hash == whole.provenance.calibration_hash


def test_stream_needs_total_lines_for_drift(table):
    raw = make_scan(16, 64, seed=1)
    with pytest.raises(nii.InvalidParameterError, match="total_lines"):
        list(normalize_stream([raw], table))


def _uniform_raw(*, drift: float, air_end: bool, w: int = 200, h: int = 16, n_ref: int = 8, l_true=(1.2, 0.8)):
    """Noise-free uniform object with a gain drifting linearly over references and object lines."""
    n_lines = 2 * n_ref + w
    tau = np.arange(n_lines) / (n_lines - 1)
    g = 20000.0 * (1 + drift * tau)
    dark = 100.0
    trans = np.exp(-np.array(l_true))[:, None, None]
    counts = dark + g[None, None, n_ref : n_ref + w] * trans * np.ones((2, h, 1))
    air = dark + np.broadcast_to(g[None, None, :n_ref], (2, h, n_ref))
    air_e = dark + np.broadcast_to(g[None, None, n_ref + w :], (2, h, n_ref))
    return RawScan(
        counts=np.rint(counts * 3).astype(np.uint32),  # x3: finer than integer counts
        energies=ENERGIES,
        pixel_pitch_mm=(1.0, 1.0),
        dark=np.full((2, h, 4), dark * 3),
        air=np.rint(air * 3),
        air_end=np.rint(air_e * 3) if air_end else None,
    )


def test_drift_correction(table):
    raw = _uniform_raw(drift=0.05, air_end=True)
    s = normalize(raw, table)
    np.testing.assert_allclose(s.attenuation[:, 0, :], np.array([[1.2], [0.8]]) * np.ones((1, 200)), atol=2e-4)
    steps = {st.name: dict(st.params) for st in s.provenance.steps}
    assert steps["air_normalize"]["drift_correction"] is True
    # without air_end: no correction, the drift shows as a trend, and provenance says why
    s2 = normalize(_uniform_raw(drift=0.05, air_end=False), table)
    trend = s2.attenuation[1, 0, -1] - s2.attenuation[1, 0, 0]
    assert trend < -0.03
    steps2 = {st.name: dict(st.params) for st in s2.provenance.steps}
    assert steps2["air_normalize"]["drift_correction"] is False and "air_end" in steps2["air_normalize"]["reason"]


def test_starved_pixels_are_impenetrable_not_clipped(table, rng):
    raw = make_scan(24, 48, seed=2)
    counts = np.array(raw.counts)
    counts[1, 5:8, 10:20] = 0  # high energy starved
    counts[0, 12, 30] = 0  # low energy only
    s = normalize(raw.replace(counts=counts), table)
    assert np.all(s.material[5:8, 10:20] == MaterialClass.IMPENETRABLE)
    assert not s.valid[5:8, 10:20].any() and not s.valid[12, 30]
    assert s.material[12, 30] != MaterialClass.IMPENETRABLE
    assert np.all(np.isnan(s.zeff[5:8, 10:20]))
    assert np.all(s.color[5:8, 10:20] == 0)
    # attenuation = the largest measurable value ln(I0 / threshold), finite and above its neighbours
    assert np.all(np.isfinite(s.attenuation)) and s.attenuation[1, 6, 15] > 5
    st = {x.name: dict(x.params) for x in s.provenance.steps}
    assert st["log_attenuation"]["starved_pixels"] >= 31


def test_dead_channel_repaired(table):
    raw = make_scan(32, 64, seed=4)
    dm = np.zeros((2, 32), bool)
    dm[:, 10] = True
    counts = np.array(raw.counts)
    counts[:, 10] = 0  # dead channel reads nothing
    s = normalize(raw.replace(counts=counts, dead_mask=dm), table)
    expect = 0.5 * (s.attenuation[:, 9] + s.attenuation[:, 11])
    np.testing.assert_allclose(s.attenuation[:, 10], expect, rtol=1e-5, atol=1e-6)
    assert s.valid[10].all()
    st = {x.name: dict(x.params) for x in s.provenance.steps}
    assert 10 in st["repair_channels"]["bad_channels"]["low"]


def test_bad_channels_found_from_references(table):
    raw = make_scan(32, 64, seed=5)
    air = np.array(raw.air)
    air[0, 20] = raw.dark.mean(axis=2)[0, 20] + 10  # no gain
    s = normalize(raw.replace(air=air, dead_mask=None), table)
    st = {x.name: dict(x.params) for x in s.provenance.steps}
    assert 20 in st["repair_channels"]["bad_channels"]["low"]


def test_single_energy(rng):
    from tests.synth import make_raw

    raw = make_raw(rng, e=1, h=24, w=40)
    s = normalize(raw)
    assert s.zeff is None
    assert set(np.unique(s.material)) <= {MaterialClass.AIR, MaterialClass.MIXED, MaterialClass.IMPENETRABLE}
    assert (s.material == MaterialClass.MIXED).any() and (s.material == MaterialClass.AIR).any()
    np.testing.assert_array_equal(s.color, render_pseudocolor(s.attenuation[0], s.material))
    st = {x.name: dict(x.params) for x in s.provenance.steps}
    assert "single-energy" in st["zeff_lookup"]["skipped"] and st["classify"]["object_class"] == "MIXED"


def test_dual_energy_without_table_is_an_error(rng):
    from tests.synth import make_raw

    with pytest.raises(nii.CalibrationError):
        normalize(make_raw(rng).replace(profile=None))
    s = normalize(make_raw(rng).replace(profile=None), materials=False)
    assert s.zeff is None


def test_calibration_mismatch(table, rng):
    raw = make_scan(16, 32).replace(profile="baggage_sandwich_140")
    other = CalibrationSet(profile="cargo_300", energies=ENERGIES, material=None)
    with pytest.raises(CalibrationMismatchError, match="profile"):
        normalize(raw, other, materials=False)
    wrong_e = CalibrationSet(profile=None, energies=(EnergyChannel("low", 60.0), EnergyChannel("high", 140.0)))
    with pytest.raises(CalibrationMismatchError, match="energies"):
        normalize(make_scan(16, 32), wrong_e, materials=False)
    wrong_h = CalibrationSet(profile=None, energies=ENERGIES, dark=np.zeros((2, 8)), air=np.ones((2, 8)))
    with pytest.raises(CalibrationMismatchError, match="channels"):
        normalize(make_scan(16, 32), wrong_h, materials=False)


def test_calibration_set_supplies_references(table):
    raw = make_scan(16, 40, seed=6)
    cal = CalibrationSet.from_raw(raw, material=table)
    bare = raw.replace(dark=None, air=None, air_end=None)
    a = normalize(bare, cal)
    b = normalize(raw.replace(air_end=None), table)
    np.testing.assert_allclose(a.attenuation, b.attenuation, rtol=1e-4, atol=1e-4)
    assert a.provenance.calibration_hash == cal.hash


def test_resample_area_matches_block_mean(rng):
    att = rng.random((2, 12, 18)).astype(np.float32)
    valid = rng.random((12, 18)) > 0.2
    imp = rng.random((12, 18)) > 0.8
    a, v, i = resample_area(att, valid, imp, factor=(3, 2))
    np.testing.assert_allclose(a, naive_area_resample(att, 3, 2), rtol=1e-6)
    np.testing.assert_array_equal(i, naive_area_resample(imp, 3, 2) >= 0.5)
    np.testing.assert_array_equal(v, (naive_area_resample(valid, 3, 2) >= 0.5) & ~i)
    # non-integer factor conserves the mean of a constant image
    a2, _, _ = resample_area(np.full((1, 10, 10), 2.0, np.float32), np.ones((10, 10), bool), np.zeros((10, 10), bool), factor=(1.5, 2.5))
    assert a2.shape == (1, 6, 4)
    np.testing.assert_allclose(a2, 2.0, rtol=1e-6)
    with pytest.raises(nii.InvalidParameterError):
        resample_area(att, valid, imp, factor=(100, 1))


def test_normalize_resamples_and_scales_truth(table):
    raw = make_scan(40, 60, seed=7).replace(truth=Truth(np.array([[10, 8, 30, 20]], np.float32), ("ivory",)))
    s = normalize(raw, table, pitch_mm=2.0)
    assert s.pixel_pitch_mm == (2.0, 2.0) and s.shape == (2, 20, 30)
    np.testing.assert_allclose(s.truth.boxes, [[5, 4, 15, 10]])
    st = {x.name: dict(x.params) for x in s.provenance.steps}
    assert st["resample"]["factor"] == [2.0, 2.0]
    np.testing.assert_array_equal(s.color, render_pseudocolor(s.attenuation[1], s.material))


def test_detector_input_matches_spec(table):
    raw = make_scan(24, 50, seed=8)
    scan, enc = normalize_and_encode(raw, table)
    ref = encode_detector_input(scan.attenuation[0], scan.attenuation[1], scan.zeff, scan.material)
    np.testing.assert_array_equal(enc, ref)
    np.testing.assert_array_equal(detector_input(raw, table), ref)
    np.testing.assert_array_equal(detector_input(scan, table), ref)


@pytest.mark.parametrize("pitch", [1.5, 2.0, 2.7])
def test_detector_input_resampled_scan_equals_encoding_of_normalized(table, pitch):
    """The fast resample-and-encode path gives the bytes of encoding ``normalize(scan, pitch_mm)``."""
    raw = make_scan(48, 90, seed=10)
    scan = normalize(raw, table)
    res = normalize(scan, table, pitch_mm=pitch)
    ref = encode_detector_input(res.attenuation[0], res.attenuation[1], res.zeff, res.material)
    got = detector_input(scan, table, pitch_mm=pitch)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)


def test_scan_input_and_rendered_scans(table):
    raw = make_scan(24, 50, seed=9)
    s = normalize(raw, table)
    again = normalize(Scan(attenuation=s.attenuation, energies=s.energies, pixel_pitch_mm=s.pixel_pitch_mm,
                           valid=s.valid, material=s.material), table)
    np.testing.assert_array_equal(again.material, s.material)
    np.testing.assert_array_equal(again.color, s.color)
    rendered = Scan(attenuation=s.attenuation[1:], energies=s.energies[1:], pixel_pitch_mm=s.pixel_pitch_mm,
                    material=s.material, rendered=True)
    r = normalize(rendered)
    np.testing.assert_array_equal(r.material, s.material)
    np.testing.assert_array_equal(r.color, render_pseudocolor(s.attenuation[1], s.material))
    assert r.provenance.steps[0].name == "classify"


def test_stripe_suppression(table):
    raw = make_scan(32, 200, seed=10)
    air = np.array(raw.air, np.float32)
    air[:, 7] *= 1.03  # a channel whose reference is off: a streak along the belt
    bad = raw.replace(air=air, air_end=None)
    plain = normalize(bad, table)
    fixed = normalize(bad, table, stripes=True)
    lines = (plain.material[6] == MaterialClass.AIR) & (plain.material[8] == MaterialClass.AIR)
    assert lines.sum() > 100
    before = abs(np.median(plain.attenuation[1, 7][lines]))
    after = abs(np.median(fixed.attenuation[1, 7][lines]))
    assert before > 0.02 and after < 0.2 * before
    assert any(st.name == "stripe_suppression" for st in fixed.provenance.steps)


def test_lazy_exports(table):
    raw = make_scan(16, 20, seed=11)
    import nii.normalization as mod  # importing the module must not shadow the function

    assert nii.normalize is mod.normalize
    a = nii.normalize(raw, table)
    np.testing.assert_array_equal(a.attenuation, mod.normalize(raw, table).attenuation)
    assert nii.normalize_stream is normalize_stream


def test_simulated_scan_with_shipped_table():
    """End to end: simulator counts -> normalize with the profile's shipped table -> right classes."""
    from nii.sim.imaging import form_image
    from nii.sim.types import MaterialStack

    prof = "baggage_sandwich_140"
    h, w = 32, 120
    t = np.zeros((2, h, w), np.float32)
    t[0, :, 10:50] = 4.0  # water
    t[1, :, 70:110] = 1.5  # aluminium
    raw = form_image(MaterialStack(("water", "aluminium"), t, (0.8, 0.8)), prof, seed=3)
    s = normalize(raw)
    assert s.provenance.calibration_hash
    zw = np.nanmedian(s.zeff[4:-4, 18:42])
    za = np.nanmedian(s.zeff[4:-4, 78:102])
    assert abs(zw - 7.42) / 7.42 < 0.05 and abs(za - 13.0) / 13.0 < 0.05
    assert np.mean(s.material[4:-4, 18:42] == MaterialClass.ORGANIC) > 0.95
    assert np.mean(s.material[4:-4, 78:102] == MaterialClass.MIXED) > 0.95
    # AIR_ATTENUATION_MAX (0.02) is only ~2 noise sigmas of one pixel here: a few per cent of air pixels flip
    assert np.mean(s.material[:, 55:65] == MaterialClass.AIR) > 0.9
