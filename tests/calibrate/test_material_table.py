"""nii.calibrate.material / wedge: (L_high, R) -> Zeff tables, shipped defaults, accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nii import CalibrationError, EnergyChannel, InvalidDataError, InvalidParameterError
from nii._assets import asset_dir, sha256_file
from nii.calibrate import (
    MaterialTable,
    WedgeMaterial,
    build_material_table,
    load_default_table,
)

ENERGIES = (EnergyChannel("low", 80.0), EnergyChannel("high", 140.0))


def _model_r(z, l):
    """A monotone synthetic R(Z, L_high) with beam hardening (R falls towards 1 with L)."""
    return 1.0 + 0.06 * (z - 4.0) ** 1.3 / (1.0 + 0.15 * l)


def _wedges(zs):
    steps = np.geomspace(0.05, 7.0, 12)
    return [WedgeMaterial(f"m{z}", z, steps * _model_r(z, steps), steps, steps) for z in zs]


def test_table_recovers_intermediate_materials():
    table = build_material_table(_wedges([5.4, 6.5, 7.4, 13.0, 26.0, 29.0]), profile=None, energies=ENERGIES)
    for z in (6.0, 10.0, 12.0, 15.0, 20.0):
        for l in (0.3, 1.0, 3.0, 6.0):
            got = float(table.lookup(np.float32(l), np.float32(_model_r(z, l))))
            # log-Z interpolation between references 13 and 26 of this steep model: within 10 %
            assert abs(got - z) / z < 0.10, (z, l, got)
    # references themselves are reproduced closely
    for z in (7.4, 13.0, 26.0):
        got = float(table.lookup(np.float32(2.0), np.float32(_model_r(z, 2.0))))
        assert abs(got - z) / z < 0.01
    # Zeff increases with R on every row
    assert np.all(np.diff(table.values, axis=1) >= 0)


def test_table_roundtrip_and_hash(tmp_path):
    t = build_material_table(_wedges([6.0, 13.0, 26.0]), profile="p", energies=ENERGIES, n_l=16, n_r=20)
    p = t.save(tmp_path / "t.npz")
    u = MaterialTable.load(p, sha256=sha256_file(p))
    assert u.hash == t.hash and u.profile == "p" and len(u.references) == 3
    np.testing.assert_array_equal(u.values, t.values)
    with pytest.raises(CalibrationError, match="SHA-256"):
        MaterialTable.load(p, sha256="0" * 64)
    assert t.replace(source="other").hash != t.hash


def test_builder_validates():
    with pytest.raises(InvalidParameterError):
        build_material_table(_wedges([6.0]), profile=None, energies=ENERGIES)
    with pytest.raises(InvalidParameterError):
        build_material_table(_wedges([6.0, 13.0]), profile=None, energies=ENERGIES[:1])
    flat = [WedgeMaterial("a", 6, [0.01, 0.015], [0.01, 0.015]), WedgeMaterial("b", 13, [1, 2, 3], [1, 2, 3])]
    with pytest.raises(InvalidDataError):
        build_material_table(flat, profile=None, energies=ENERGIES)
    with pytest.raises(InvalidDataError):
        WedgeMaterial("a", 6, [1, 2], [1])


@pytest.mark.parametrize("profile", ["baggage_sandwich_140", "dual_kvp_80_140", "cargo_300"])
def test_shipped_default_tables(profile):
    index = json.loads((asset_dir("calibration") / "materials" / "index.json").read_text())
    entry = index["tables"][profile]
    t = load_default_table(profile)
    assert t.hash == entry["table_hash"] and t.profile == profile
    assert len(t.references) >= 5 and all(r.l_high.size >= 10 for r in t.references)
    from nii.calibrate.wedge import TEST_PIECES

    assert not {r.name for r in t.references} & set(TEST_PIECES)


def test_missing_default_table():
    with pytest.raises(CalibrationError, match="no default material calibration"):
        load_default_table("no_such_profile")


def test_default_table_read_once_while_its_file_is_unchanged(tmp_path, monkeypatch):
    """The shipped table is read and hash-checked once, then handed out again; a changed file
    or a changed recorded SHA-256 is read and verified anew (a bad file is still refused)."""
    import os
    import shutil

    import nii._assets as assets

    cal = tmp_path / "calibration"
    shutil.copytree(asset_dir("calibration") / "materials", cal / "materials")
    monkeypatch.setenv("NII_CALIBRATION_DIR", str(cal))
    hashed = []
    real = assets.sha256_file
    monkeypatch.setattr(assets, "sha256_file", lambda path, **kw: hashed.append(path) or real(path, **kw))
    a = load_default_table("cargo_300")
    b = load_default_table("cargo_300")
    assert b is a and len(hashed) == 1
    assert not a.values.flags.writeable  # shared, so immutable
    # the same bytes under a new modification time: read and verified again, same table
    npz = cal / "materials" / "cargo_300.npz"
    st = npz.stat()
    good = npz.read_bytes()
    os.utime(npz, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    c = load_default_table("cargo_300")
    assert c is not a and c.hash == a.hash and len(hashed) == 2
    # a damaged file is refused, not served from memory
    data = bytearray(npz.read_bytes())
    data[-10] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(CalibrationError, match="SHA-256 mismatch"):
        load_default_table("cargo_300")
    # the good bytes written back: verified and served again
    npz.write_bytes(good)
    os.utime(npz, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    assert load_default_table("cargo_300").hash == a.hash
    # the index recording another SHA-256 is another entry: verified against the new record
    index = cal / "materials" / "index.json"
    doc = json.loads(index.read_text())
    doc["tables"]["cargo_300"]["sha256"] = "0" * 64
    index.write_text(json.dumps(doc))
    with pytest.raises(CalibrationError, match="SHA-256 mismatch"):
        load_default_table("cargo_300")


def test_zeff_accuracy_bare_piece():
    """A test piece not used to build the table comes out within 5 % (simulated, all effects)."""
    from nii.calibrate.wedge import zeff_accuracy

    t = load_default_table("baggage_sandwich_140")
    rows = zeff_accuracy(t, "baggage_sandwich_140", pieces=("ivory", "nylon"), thicknesses_cm=(2.0, 5.0), steel_mm=(0.0,))
    assert len(rows) == 4
    for r in rows:
        assert r["error_rel"] < 0.05, r
    with pytest.raises(InvalidParameterError):
        zeff_accuracy(t, "baggage_sandwich_140", pieces=("water",), steel_mm=(0.0,))


def test_wedges_from_real_scans_metadata():
    """Measured wedges: a scan whose metadata describes its steps gives one point per step."""
    from nii.calibrate.wedge import simulate_wedge_scan, wedges_from_scans

    steps_cm = np.array([0.5, 1.0, 2.0, 4.0])
    raws = []
    for m, z in (("water", 7.42), ("aluminium", 13.0)):
        raw = simulate_wedge_scan({m: steps_cm}, "dual_kvp_80_140", seed=5, channels=16)
        spec = {"material": m, "zeff": z, "steps": [[48 * k, 48 * (k + 1), float(t)] for k, t in enumerate(steps_cm)]}
        raws.append(raw.replace(metadata={**dict(raw.metadata), "wedge": spec}))
    wedges = wedges_from_scans(raws)
    assert [w.name for w in wedges] == ["water", "aluminium"]
    for w in wedges:
        assert w.l_high.size == 4 and np.all(np.diff(w.l_high) > 0)
    assert np.all(wedges[1].l_low / wedges[1].l_high > wedges[0].l_low / wedges[0].l_high)
    with pytest.raises(InvalidDataError, match="wedge"):
        wedges_from_scans([raws[0].replace(metadata={})])
