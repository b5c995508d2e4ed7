"""``nii evaluate`` / ``nii dataset synthetic`` / ``nii train --help`` through the CLI entry point."""

from __future__ import annotations

import json

import pytest

from nii.cli import main


def test_evaluate_json_on_a_labelled_folder(tmp_path, capsys, demo_dir):
    assert main(["dataset", "synthetic", "--out", str(tmp_path / "d"), "--size", "128", "--n-train", "0", "--n-val", "0", "--n-test", "30", "--seed", "11"]) == 0
    capsys.readouterr()
    rc = main(["evaluate", "--data", str(tmp_path / "d" / "test"), "--model", str(demo_dir), "--json", "--far", "5%", "--plots", str(tmp_path / "p")])
    assert rc == 0
    m = json.loads(capsys.readouterr().out)
    assert m["n_images"] == 30 and "far_images" in m
    for c in ("ivory", "ivory_worked", "pangolin_scales", "rhino_horn"):
        assert {"pd_at_far_1pct", "pd_at_far_5pct", "ap50", "ap50_95", "pd_at_operating_point", "froc"} <= set(m["classes"][c])
    assert (tmp_path / "p" / "pr_curve.png").is_file() and (tmp_path / "p" / "confusion_matrix.png").is_file()


def test_evaluate_compare_reports_a_paired_bootstrap(tmp_path, capsys, demo_dir):
    """`--compare`: the baseline runs on the same images; a model against itself differs by nothing."""
    assert main(["dataset", "synthetic", "--out", str(tmp_path / "d"), "--size", "128", "--n-train", "0", "--n-val", "0", "--n-test", "30", "--seed", "11"]) == 0
    capsys.readouterr()
    args = ["evaluate", "--data", str(tmp_path / "d" / "test"), "--model", str(demo_dir), "--compare", str(demo_dir), "--n-boot", "200"]
    assert main([*args, "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    cmp = m["comparison"]
    assert cmp["n_images"] == 30 and cmp["n_boot"] == 200 and cmp["seed"] == 0
    for key in ("pd_at_far_1pct", "pd_at_far_5pct", "pd_at_operating_point"):
        assert set(cmp[key]["classes"]) == set(m["classes"])
        mean = cmp[key]["class_mean"]
        assert mean["diff"] == 0.0 and mean["diff_ci95"] == [0.0, 0.0], key
    for c, d in m["classes"].items():
        assert cmp["pd_at_far_1pct"]["classes"][c]["b"] == d["pd_at_far_1pct"]
    assert cmp["far_images"]["a"] == m["far_images"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "paired bootstrap over 30 images" in out and "class mean" in out
    assert main([*args[:-1], "50"]) == 1
    assert "--n-boot must be >= 100" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_measures_the_material_anomaly_cue_on_scans(tmp_path, capsys, demo_dir):
    """`--anomalies` on simulated scans: the cue's coverage per class and its burden on negatives."""
    pytest.importorskip("nii.sim.imaging")
    args = ["simulate", "--profile", "dual_kvp_80_140", "--channels", "160", "--length-cm", "50", "--count", "3"]
    assert main([*args, "--scenario", "mixed_bones", "--seed", "5", "--out", str(tmp_path / "s")]) == 0
    assert main([*args, "--scenario", "negative_confusers", "--seed", "6", "--start", "3", "--out", str(tmp_path / "s")]) == 0
    capsys.readouterr()
    rc = main(["evaluate", "--data", str(tmp_path / "s"), "--model", str(demo_dir), "--anomalies", "--json"])
    assert rc == 0
    m = json.loads(capsys.readouterr().out)
    a = m["material_anomaly"]
    assert a["n_scans"] == 6 and 0.0 <= a["negative_scans_with_anomaly"] <= 1.0
    assert a["anomalies_per_negative_scan"] >= 0.0
    for c, d in a["classes"].items():
        if d["n_objects"]:
            assert 0.0 <= d["recall"] <= d["found_by_model_or_cue"] <= 1.0, c
    assert any(d["n_objects"] for d in a["classes"].values())
    # the table form prints the cue's line too
    assert main(["evaluate", "--data", str(tmp_path / "s"), "--model", str(demo_dir), "--anomalies"]) == 0
    assert "material-anomaly cue" in capsys.readouterr().out


def test_evaluate_bad_folder(tmp_path, demo_dir, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "--data", str(tmp_path / "empty"), "--model", str(demo_dir)]) == 1
    assert "no scans" in capsys.readouterr().err


def test_calibrate_thresholds_rewrites_operating_points(tmp_path, capsys, demo_dir):
    import shutil

    from nii.detect import Detector

    model = tmp_path / "model"
    shutil.copytree(demo_dir, model)
    assert main(["dataset", "synthetic", "--out", str(tmp_path / "d"), "--size", "128", "--n-train", "0", "--n-val", "0", "--n-test", "40", "--seed", "12"]) == 0
    capsys.readouterr()
    before = json.loads((model / "thresholds.json").read_text())
    assert main(["calibrate", "thresholds", str(model), "--data", str(tmp_path / "d" / "test"), "--far", "5%", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    after = json.loads((model / "thresholds.json").read_text())
    assert out["default_far"] == 0.05 and after != before
    assert str(tmp_path / "d" / "test") in json.dumps(after)
    Detector.load(model)  # SHA256SUMS rewritten: the folder still verifies
    assert main(["calibrate", "thresholds", str(model), "--data", str(tmp_path / "missing")]) == 1
    assert "missing" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", [["train", "--help"], ["dataset", "build", "--help"], ["evaluate", "--help"], ["quantize", "--help"],
                                 ["calibrate", "thresholds", "--help"]])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main(cmd)
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out
