"""``nii calibrate`` and ``nii bench preprocess`` command lines."""

from __future__ import annotations

import json

import numpy as np

from nii.calibrate import CalibrationSet, MaterialTable
from nii.cli import main


def test_calibrate_wedge_simulate(tmp_path, capsys):
    out = tmp_path / "t.npz"
    rc = main(["calibrate", "wedge", "--profile", "dual_kvp_80_140", "--simulate", "--steps", "12",
               "--materials", "polyethylene,water,aluminium,iron,copper", "--out", str(out), "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    t = MaterialTable.load(out, sha256=summary["sha256"])
    assert t.hash == summary["table_hash"] and len(t.references) == 5
    # steps where the low energy starves (thick iron at 80 kVp) cannot be measured and are dropped
    assert all(r.l_high.size >= 10 for r in t.references)


def test_calibrate_wedge_needs_a_source(capsys):
    assert main(["calibrate", "wedge", "--profile", "dual_kvp_80_140"]) == 1
    assert "--simulate" in capsys.readouterr().err


def test_calibrate_scanner(tmp_path, capsys):
    from nii.bench.preprocess import make_scan
    from nii.io import write_hdf5

    raw = make_scan(24, 32, seed=1)
    src = tmp_path / "s.h5"
    write_hdf5(raw, src)
    out = tmp_path / "cal.npz"
    assert main(["calibrate", "scanner", str(src), "--out", str(out), "--no-table", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    cal = CalibrationSet.load(out)
    assert cal.hash == summary["hash"] and cal.n_channels == 24
    assert cal.bad[raw.dead_mask].all()
    np.testing.assert_allclose(cal.dark, raw.dark.mean(axis=2), atol=3)


def test_bench_preprocess_json(capsys):
    assert main(["bench", "preprocess", "--channels", "32", "--lines", "64", "--repeat", "1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    for k in ("mpx_per_s", "numpy_mpx_per_s", "speedup_vs_numpy", "fraction_of_copy_bound", "jit_first_call_seconds"):
        assert r[k] > 0
    assert len(r["sizes"]) == 4
    assert r["fraction_of_copy_bound_preallocated"] > 0
    assert set(r["breakdown_seconds"]) == {"prepare", "kernel_fresh_outputs", "kernel_preallocated_outputs", "allocate_and_touch_outputs"}
    assert r["agreement_with_numpy"]["material_equal_fraction"] > 0.999
