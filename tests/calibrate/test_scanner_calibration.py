"""nii.calibrate.scanner: master frames, bad channels, CalibrationSet identity and checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nii import (
    CalibrationError,
    CalibrationMismatchError,
    EnergyChannel,
    InvalidDataError,
    InvalidParameterError,
)
from nii.bench.preprocess import make_scan
from nii.calibrate import (
    CalibrationSet,
    channel_gain,
    combine_lines,
    detect_bad_channels,
)

ENERGIES = (EnergyChannel("low", 80.0), EnergyChannel("high", 140.0))


def test_combine_lines_rejects_outliers(rng):
    x = rng.normal(1000.0, 5.0, (2, 30, 64))
    x[0, 3, 10] = 1e6  # glitch
    x[1, 7, :5] = -500  # a few bad lines
    m, s = combine_lines(x, return_std=True)
    clean = rng.normal(1000.0, 5.0, (2, 30, 64))
    assert np.all(np.abs(m - 1000.0) < 3.0)
    assert abs(m[0, 3] - 1000) < 3 and abs(m[1, 7] - 1000) < 3
    assert np.all((s > 3) & (s < 8))
    assert abs(combine_lines(clean, method="mean").mean() - 1000) < 1
    assert abs(combine_lines(x, method="median")[0, 3] - 1000) < 3


def test_combine_lines_memory_bounded_equals_one_slab(rng):
    x = rng.normal(500.0, 3.0, (2, 50, 40))
    x[rng.random(x.shape) < 0.01] = 5000
    a = combine_lines(x, mem_limit=1 << 30)
    b = combine_lines(x, mem_limit=1)  # one channel per slab
    np.testing.assert_array_equal(a, b)


def test_combine_lines_validates():
    with pytest.raises(InvalidParameterError):
        combine_lines(np.zeros((1, 2, 3)), method="mode")
    with pytest.raises(InvalidDataError):
        combine_lines(np.full((1, 2, 3), np.nan))
    np.testing.assert_array_equal(combine_lines(np.ones((1, 4))), np.ones((1, 4), np.float32))


def test_detect_bad_channels(rng):
    dark = rng.normal(200, 2, (2, 100))
    air = dark + rng.normal(20000, 300, (2, 100))
    std = rng.uniform(2, 3, (2, 100))
    air[0, 5] = dark[0, 5] + 50  # dead
    air[1, 60] = dark[1, 60] + 90000  # hot (gain)
    dark[0, 30] += 400  # hot (offset)
    std[1, 77] = 60  # noisy
    f = detect_bad_channels(dark, air, dark_std=std)
    assert f["dead"][0, 5] and f["hot"][1, 60] and f["hot"][0, 30] and f["noisy"][1, 77]
    assert f["bad"].sum() == 4
    g = channel_gain(dark, air)
    assert abs(np.median(g[1]) - 1) < 1e-6


def _cal(**kw):
    base = {"profile": "p", "energies": ENERGIES, "dark": np.full((2, 8), 100.0), "air": np.full((2, 8), 9000.0),
            "bad": np.zeros((2, 8), bool)}
    base.update(kw)
    return CalibrationSet(**base)


def test_calibration_set_is_frozen_and_hashed(tmp_path):
    a, b = _cal(), _cal()
    assert a.hash == b.hash and len(a.hash) == 64
    assert _cal(dark=np.full((2, 8), 101.0)).hash != a.hash
    assert _cal(profile="q").hash != a.hash
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.profile = "x"  # type: ignore[misc]
    with pytest.raises(ValueError):
        a.dark[0, 0] = 1
    p = a.save(tmp_path / "cal.npz")
    c = CalibrationSet.load(p)
    assert c.hash == a.hash and c.n_channels == 8
    np.testing.assert_array_equal(c.gain, a.gain)


def test_calibration_set_validates():
    with pytest.raises(CalibrationError):
        _cal(dark=np.zeros((2, 7)))
    with pytest.raises(CalibrationError):
        _cal(air=None)
    with pytest.raises(CalibrationError):
        _cal(dark=np.full((2, 8), np.nan))


def test_calibration_set_refuses_mismatching_scans():
    raw = make_scan(16, 20).replace(profile="p")
    cal = CalibrationSet.from_raw(raw)
    cal.check(raw)
    with pytest.raises(CalibrationMismatchError, match="profile"):
        cal.check(raw.replace(profile="other"))
    with pytest.raises(CalibrationMismatchError, match="channels"):
        CalibrationSet.from_raw(make_scan(8, 20).replace(profile="p")).check(raw)
    with pytest.raises(CalibrationMismatchError, match="energies"):
        cal.check(raw.replace(energies=(EnergyChannel("low", 60.0), EnergyChannel("high", 140.0))))


def test_from_raw_combines_lines_and_flags_dead():
    raw = make_scan(32, 20, seed=2)
    cal = CalibrationSet.from_raw(raw)
    assert cal.bad[raw.dead_mask].all()
    assert cal.metadata["dark_lines"] == 16 and cal.dark_std is not None
    np.testing.assert_allclose(cal.dark, raw.dark.mean(axis=2), atol=3)
