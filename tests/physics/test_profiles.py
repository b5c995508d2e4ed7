"""Scanner profiles: the required scanners exist, are complete, and the detector model is physical."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from nii._assets import asset_dir
from nii.errors import CalibrationError
from nii.physics.tables import load_tables
from nii.profiles import (
    ScannerProfile,
    list_profiles,
    load_profile,
    profile_from_mapping,
)


@pytest.fixture(scope="module")
def tables():
    return load_tables()


def test_required_profiles_exist():
    ids = list_profiles()
    assert {"baggage_sandwich_140", "dual_kvp_80_140", "cargo_300"} <= set(ids)
    kinds = {load_profile(i).kind for i in ids}
    assert {"sandwich", "dual_kvp"} <= kinds


@pytest.mark.parametrize("pid", ["baggage_sandwich_140", "dual_kvp_80_140", "cargo_300"])
def test_profile_states_everything(pid, tables):
    p = load_profile(pid)
    assert isinstance(p, ScannerProfile) and p.id == pid
    assert p.n_energies == 2 and [e.label for e in p.energies] == ["low", "high"]
    assert p.detector_pitch_mm > 0 and p.line_pitch_mm > 0 and p.channels > 100
    assert 12 <= p.adc_bits <= 16
    assert all(q > 1000 for q in p.quanta_per_pixel)
    assert all(n > 0 for n in p.electronic_noise)
    assert p.blur.sigma_mm() > 0 and p.blur.focal_spot_mm > 0 and p.blur.detector_psf_fwhm_mm > 0
    assert 0 < p.scatter_fraction < 0.2
    assert all(d > 0 for d in p.dark_level)
    assert 0 < p.gain_nonuniformity and 0 < p.dead_channel_rate and 0 < p.hot_channel_rate and p.gain_drift != 0
    assert p.n_air_lines >= 8 and p.n_dark_lines >= 8
    for layer in p.layers:
        assert layer.material in tables
    assert load_profile(pid) is p  # cached
    assert p.describe()["id"] == pid


def test_kvps():
    assert [e.kvp for e in load_profile("baggage_sandwich_140").energies] == [140.0, 140.0]
    assert [e.kvp for e in load_profile("dual_kvp_80_140").energies] == [80.0, 140.0]
    assert load_profile("cargo_300").energies[1].kvp == 300.0


@pytest.mark.parametrize("pid", ["baggage_sandwich_140", "dual_kvp_80_140", "cargo_300"])
def test_effective_spectra(pid, tables):
    p = load_profile(pid)
    e = tables.energies_kev
    for moment in (0, 1, 2):
        w = p.effective_spectra(tables, moment=moment)
        assert w.shape == (2, e.size)
        assert np.all(w >= 0)
        np.testing.assert_allclose(w.sum(axis=1), 1.0)
    w = p.effective_spectra(tables)
    mean = (w * e).sum(axis=1)
    assert mean[1] > mean[0] + 15  # the high channel sees a clearly harder spectrum
    for c, ch in enumerate(p.channel_specs):
        assert np.all(w[c, e > p.tube(ch.tube).kvp + 0.5] == 0)
    frac = p.absorbed_fraction(tables)
    assert np.all(frac > 0) and np.all(frac < 1)


def test_sandwich_detector_model_by_hand(tables):
    """The front layer's weight is N (1 - exp(-mu t)) E; the rear sees what front and Cu pass."""
    p = load_profile("baggage_sandwich_140")
    e = tables.energies_kev
    n = tables.spectrum(p.tubes[0].key)
    cover, front, cu, rear = p.layers
    t_cover = np.exp(-tables.mu(cover.material) * cover.thickness_mm / 10)
    low = n * t_cover * (1 - np.exp(-tables.mu("CsI") * front.thickness_mm / 10)) * e
    high = (
        n * t_cover * np.exp(-tables.mu("CsI") * front.thickness_mm / 10) * np.exp(-tables.mu("copper") * cu.thickness_mm / 10)
        * (1 - np.exp(-tables.mu("CsI") * rear.thickness_mm / 10)) * e
    )
    w = p.effective_spectra(tables)
    np.testing.assert_allclose(w[0], low / low.sum(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(w[1], high / high.sum(), rtol=1e-12, atol=1e-15)


def _base():
    path = asset_dir("calibration") / "profiles" / "baggage_sandwich_140.toml"
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def test_round_trip_mapping():
    assert profile_from_mapping(_base()) == load_profile("baggage_sandwich_140")


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.pop("geometry"), "geometry"),
        (lambda d: d["adc"].update(bits=40), "bits"),
        (lambda d: d.update(kind="ct"), "kind"),
        (lambda d: d["layer"][1].update(channels=["medium"]), "medium"),
        (lambda d: d["channel"][0].update(tube="nope"), "nope"),
        (lambda d: d["layer"].pop(1), "no detector layer feeds channel 'low'"),
        (lambda d: d["channel"][0].update(air_level=0.999, dark_level=5000.0), "exceeds"),
        (lambda d: d["geometry"].update(channels="many"), "channels"),
    ],
)
def test_invalid_profiles_are_refused(mutate, match):
    d = _base()
    mutate(d)
    with pytest.raises(CalibrationError, match=match):
        profile_from_mapping(d, where="test.toml")


def test_unknown_profile():
    with pytest.raises(CalibrationError, match="baggage_sandwich_140"):
        load_profile("no_such_scanner")
