"""Re-calibrating a detector's operating point on other scans (``nii calibrate thresholds``)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from nii.cli import main

N_NEG, N_POS = 10, 6


def _write_scans(folder, make_scan, *, n_neg: int, n_pos: int, seed: int):
    """``n_neg`` scans without truth (cleared cargo) and ``n_pos`` with one labelled object each."""
    from nii.containers import Truth
    from nii.dataset.synthetic import synthetic_image
    from nii.io import write_hdf5

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n_neg + n_pos):
        img, boxes, names = synthetic_image(128, rng=rng, n_objects=0 if i < n_neg else 1, n_clutter=4)
        scan = make_scan(img)
        if i >= n_neg:
            scan = dataclasses.replace(scan, truth=Truth(boxes, tuple(names)))
        write_hdf5(scan, folder / f"scan_{i:03d}.h5")
    return folder


@pytest.fixture(scope="module")
def site_scans(tmp_path_factory, make_scan):
    return _write_scans(tmp_path_factory.mktemp("site") / "scans", make_scan, n_neg=N_NEG, n_pos=N_POS, seed=4)


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_new_folder_with_added_negatives(demo_dir, demo_detector, site_scans, tmp_path):
    from nii.detect import Detector
    from nii.detect.recalibrate import recalibrate_model

    before = _files(demo_dir)
    out = recalibrate_model(demo_dir, tmp_path / "site-a", data=[site_scans], add=True, test=site_scans)
    assert _files(demo_dir) == before  # the source is not touched
    assert sorted(p.name for p in out.parent.iterdir()) == ["site-a"]  # no work folder left
    det = Detector.load(out)  # SHA256SUMS written for the copy
    n_src = demo_detector.thresholds.n_negative
    assert det.thresholds.n_negative == n_src + N_NEG
    # the source's negatives come first, unchanged; the new ones are the scans' best class scores
    np.testing.assert_array_equal(det.thresholds.neg_scores[:n_src], demo_detector.thresholds.neg_scores)
    assert det.thresholds.info["n_negative_new"] == N_NEG and det.thresholds.info["n_negative_from_source"] == n_src
    assert (out / "model.onnx").read_bytes() == (demo_dir / "model.onnx").read_bytes()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["name"] == "site-a" and cfg["recalibrated_from"] == demo_dir.name
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_images"] == N_NEG + N_POS and m["n_negative_images"] == N_NEG
    card = (out / "MODEL_CARD.md").read_text()
    assert card.startswith("# Model card: site-a") and f"the source's {n_src} and {N_NEG} new ones" in card
    assert "## Source model card (demo-tiny)" in card


def test_replacing_the_negatives_and_scores_they_hold(demo_dir, demo_detector, site_scans, tmp_path):
    from nii.detect import Detector
    from nii.detect.evaluate import collect, image_class_max
    from nii.detect.recalibrate import recalibrate_model
    from nii.detect.thresholds import Thresholds

    out = recalibrate_model(demo_dir, tmp_path / "site-b", data=[site_scans], method="global", default_far=0.1, overlap=8)
    th = Thresholds.load(out / "thresholds.json")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["overlap"] == 8 and th.info["overlap"] == {"source": demo_detector.config.overlap, "new": 8}
    assert "Tile overlap changed" in (out / "MODEL_CARD.md").read_text()
    retiled = Detector(demo_detector.folder, dataclasses.replace(demo_detector.config, overlap=8), demo_detector.thresholds,
                       demo_detector.backend, demo_detector.model_hash)
    recs = [r for r in collect(retiled, site_scans) if r.negative]
    expected = np.array([image_class_max(r, demo_detector.config.nc) for r in recs], np.float32)
    np.testing.assert_allclose(th.neg_scores, expected, atol=1e-5)
    assert th.method == "global" and th.default_far == 0.1
    # the global rule at 10 % of 10 negatives: exactly one negative image alarms, or none when scores tie
    from nii.detect.thresholds import image_far

    assert image_far(th.neg_scores, th.for_far()) <= 0.1
    assert not (out / "metrics.json").exists()  # the source's metrics describe other thresholds
    assert "No test metrics" in (out / "MODEL_CARD.md").read_text()


def test_refusals_leave_nothing_behind(demo_dir, site_scans, tmp_path, make_scan):
    from nii.detect.recalibrate import recalibrate_model
    from nii.errors import InvalidParameterError, ModelError

    (tmp_path / "exists").mkdir()
    with pytest.raises(InvalidParameterError, match="already exists"):
        recalibrate_model(demo_dir, tmp_path / "exists", data=[site_scans])
    only_pos = _write_scans(tmp_path / "pos", make_scan, n_neg=0, n_pos=2, seed=9)
    with pytest.raises(ModelError, match="no negative images"):
        recalibrate_model(demo_dir, tmp_path / "new", data=[only_pos])
    with pytest.raises(InvalidParameterError, match="must be a folder"):
        recalibrate_model(demo_dir, tmp_path / "new", data=[tmp_path / "missing"])
    with pytest.raises(InvalidParameterError, match="method"):
        recalibrate_model(demo_dir, tmp_path / "new", data=[site_scans], method="median")
    with pytest.raises(InvalidParameterError, match="overlap 100"):
        recalibrate_model(demo_dir, tmp_path / "new", data=[site_scans], overlap=100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists", "pos"]


def test_cli_in_place_and_new_folder(demo_dir, site_scans, tmp_path, capsys):
    import shutil

    from nii.detect import Detector

    model = tmp_path / "model"
    shutil.copytree(demo_dir, model)
    n_src = Detector.load(model).thresholds.n_negative
    assert main(["calibrate", "thresholds", str(model), "--data", str(site_scans), "--add", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_negative_images"] == n_src + N_NEG and out["metrics"] is None
    assert Detector.load(model).thresholds.n_negative == n_src + N_NEG  # rewritten in place, still verifies
    # the shipped default is never changed in place unnamed
    assert main(["calibrate", "thresholds", "--data", str(site_scans)]) == 1
    assert "in place" in capsys.readouterr().err
    # --test needs a new folder
    assert main(["calibrate", "thresholds", str(model), "--data", str(site_scans), "--test", str(site_scans)]) == 1
    assert "--out" in capsys.readouterr().err
    assert main(["calibrate", "thresholds", str(model), "--data", str(site_scans), "--overlap", "8"]) == 1
    assert "--out" in capsys.readouterr().err
    rc = main(["calibrate", "thresholds", str(model), "--data", str(site_scans), "--data", str(site_scans),
               "--out", str(tmp_path / "new"), "--test", str(site_scans), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_negative_images"] == 2 * N_NEG and out["metrics"]["n_images"] == N_NEG + N_POS
    assert Detector.load(tmp_path / "new").config.name == "new"


def test_collect_reads_a_split_as_scans(demo_detector, site_scans, tmp_path, make_scan):
    """A `nii dataset build` split holds tiles (images/) and whole scans (scans/): image-level FAR is per scan."""
    import cv2

    from nii.detect.evaluate import collect

    split = tmp_path / "val"
    _write_scans(split / "scans", make_scan, n_neg=2, n_pos=1, seed=5)
    (split / "images").mkdir()
    (split / "labels").mkdir()
    for i in range(5):
        cv2.imwrite(str(split / "images" / f"t{i}.png"), np.zeros((128, 128, 3), np.uint8))
        (split / "labels" / f"t{i}.txt").write_text("")
    recs = collect(demo_detector, split)
    assert [r.image_id for r in recs] == ["scan_000", "scan_001", "scan_002"]
    import shutil

    shutil.rmtree(split / "scans")
    assert len(collect(demo_detector, split)) == 5  # tiles only: read as tiles
