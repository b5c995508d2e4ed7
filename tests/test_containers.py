import dataclasses
import json

import numpy as np
import pytest

import nii
from nii import EnergyChannel, InvalidDataError, InvalidParameterError, RawScan, Scan, Truth
from nii.containers import Provenance, Step


def test_rawscan_is_frozen_and_readonly(raw_scan):
    with pytest.raises(dataclasses.FrozenInstanceError):
        raw_scan.scan_id = "other"
    with pytest.raises(ValueError):
        raw_scan.counts[0, 0, 0] = 1
    assert raw_scan.shape == (2, 24, 40)
    assert raw_scan.n_energies == 2


def test_rawscan_does_not_freeze_callers_array(rng):
    counts = np.ones((1, 4, 5), np.uint16)
    RawScan(counts=counts, energies=[EnergyChannel("single", 160)], pixel_pitch_mm=(1, 1))
    counts[0, 0, 0] = 7  # still writable for the caller
    assert counts[0, 0, 0] == 7


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(counts=np.ones((2, 4, 5), np.float32)), "uint16 or uint32"),
        (dict(counts=np.ones((2, 4), np.uint16)[None, None]), r"\(E, H, W\)"),
        (dict(energies=[EnergyChannel("low")]), "energy"),
        (dict(pixel_pitch_mm=(0, 1)), "positive"),
        (dict(dark=np.zeros((2, 3))), "dark reference"),
        (dict(air=np.full((2, 4), np.nan)), "NaN"),
        (dict(dead_mask=np.zeros((4,), bool)), "dead_mask"),
    ],
)
def test_rawscan_validation(kwargs, match):
    base = dict(counts=np.ones((2, 4, 5), np.uint16), energies=[EnergyChannel("low", 80), EnergyChannel("high", 140)], pixel_pitch_mm=(1, 1))
    base.update(kwargs)
    with pytest.raises(nii.NiiError, match=match):
        RawScan(**base)


def test_energy_channel():
    assert EnergyChannel("high", 6000).describe() == "high (6 MeV)"
    assert EnergyChannel("low", 80).describe() == "low (80 kVp)"
    assert EnergyChannel("x").mev is None
    with pytest.raises(InvalidParameterError):
        EnergyChannel("low", -1)


def test_scan_with_step_appends_provenance():
    att = np.zeros((2, 3, 4), np.float32)
    s = Scan(attenuation=att, energies=[EnergyChannel("low", 80), EnergyChannel("high", 140)], pixel_pitch_mm=(1, 1))
    s2 = s.with_step("normalize", {"drift": True, "pitch": np.float32(2.0)}, calibration_hash="abc", zeff=np.full((3, 4), 7.0, np.float32))
    assert s.provenance.steps == ()
    assert [st.name for st in s2.provenance.steps] == ["normalize"]
    assert s2.provenance.calibration_hash == "abc"
    assert s2.provenance.steps[0].params["pitch"] == 2.0
    d = json.loads(s2.provenance.to_json())
    assert Provenance.from_dict(d).steps[0].name == "normalize"
    assert s2.zeff is not None and not s2.zeff.flags.writeable


def test_scan_rejects_float64_and_bad_maps():
    with pytest.raises(InvalidDataError, match="float32"):
        Scan(attenuation=np.zeros((1, 2, 2)), energies=[EnergyChannel("single")], pixel_pitch_mm=(1, 1))
    with pytest.raises(InvalidDataError, match="material"):
        Scan(attenuation=np.zeros((1, 2, 2), np.float32), energies=[EnergyChannel("single")], pixel_pitch_mm=(1, 1), material=np.zeros((2, 2), np.int32))


def test_truth_validation():
    t = Truth(np.array([[0, 0, 5, 5]], np.float32), ("ivory",))
    assert len(t) == 1 and len(Truth.empty()) == 0
    with pytest.raises(InvalidDataError):
        Truth(np.array([[5, 0, 0, 5]], np.float32), ("ivory",))
    with pytest.raises(InvalidDataError):
        Truth(np.array([[0, 0, 5, 5]], np.float32), ("ivory", "rhino_horn"))


def test_step_params_must_be_json():
    s = Step("x", {"a": {1, 2}})  # sets become sorted lists
    assert s.params["a"] == [1, 2]


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, nii; heavy = [m for m in ('numba', 'cv2', 'h5py', 'torch', 'ultralytics', 'onnxruntime', 'pydicom') if m in sys.modules]; print(','.join(heavy))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
