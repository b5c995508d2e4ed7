"""Export of review decisions as YOLO / COCO training labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nii.errors import FileAccessError, InvalidParameterError
from nii.review.feedback import DEFAULT_CLASSES, export_feedback
from nii.review.store import DecisionStore


def _log(results_dir):
    db = results_dir / "nii-review.sqlite"
    s = DecisionStore(db)
    s.set_meta("results_dir", str(results_dir))  # as the review server does
    common = dict(scan_key="tusk-0001", scan_id="tusk-0001", operator="ana", n_detections=3)
    s.add(kind="detection", action="confirm", detection_index=0, **common)  # ivory, confirmed
    s.add(kind="detection", action="relabel", detection_index=1, label="ivory_worked", **common)  # anomaly -> class
    s.add(kind="detection", action="reject", detection_index=2, **common)  # false alarm
    s.add(kind="missed", action="add", box=[300, 100, 340, 130], label="rhino_horn", **common)
    s.add(kind="verdict", action="seize", **common)
    return db


def test_export_yolo_and_coco(results_dir, tmp_path):
    from nii.dataset.yolo import read_labels, read_tile

    db = _log(results_dir)
    out = tmp_path / "fb"
    m = export_feedback(db, out)  # results folder recorded in the database
    assert m["counts"] == {"images": 1, "positives": 3, "hard_negatives": 1, "skipped": 0}
    img = read_tile(out / "images" / "tusk-0001.png")
    assert img.shape == (160, 400, 3) and img.dtype == np.uint8
    boxes, ids = read_labels(out / "labels" / "tusk-0001.txt", (160, 400))
    assert sorted(ids.tolist()) == sorted([DEFAULT_CLASSES.index(c) for c in ("ivory", "ivory_worked", "rhino_horn")])
    rhino = boxes[list(ids).index(DEFAULT_CLASSES.index("rhino_horn"))]
    np.testing.assert_allclose(rhino, [300, 100, 340, 130], atol=0.05)
    coco = json.loads((out / "coco.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(DEFAULT_CLASSES)
    assert len(coco["annotations"]) == 3 and coco["images"][0]["width"] == 400
    neg = coco["images"][0]["nii_hard_negatives"]
    assert len(neg) == 1 and neg[0]["rejected_class"] == "pangolin_scales"
    assert "train: images" in (out / "data.yaml").read_text()
    man = json.loads((out / "feedback.json").read_text())
    assert man["schema"] == "nii-feedback/1" and man["images"][0]["verdict"] == "seize"
    assert {p["source"] for p in man["images"][0]["positives"]} == {"confirm", "relabel", "missed"}


def test_export_skips_incomplete_reviews(results_dir, tmp_path):
    db = results_dir / "nii-review.sqlite"
    s = DecisionStore(db)
    common = dict(scan_key="tusk-0001", scan_id="tusk-0001", operator="ana", n_detections=3)
    s.add(kind="detection", action="confirm", detection_index=0, **common)
    s.add(kind="verdict", action="clear", scan_key="clear-0002", scan_id="clear-0002", operator="ana")
    m = export_feedback(db, tmp_path / "fb", results_dir=results_dir)
    assert m["counts"]["images"] == 1  # the clear scan, as a negative image
    assert (tmp_path / "fb" / "labels" / "clear-0002.txt").read_text() == ""
    assert m["skipped"] == [{"key": "tusk-0001", "scan_id": "tusk-0001", "reason": "detection 1 (bone_like) is undecided"}]
    # a confirmed material anomaly has no contraband class
    s.add(kind="detection", action="confirm", detection_index=1, **common)
    s.add(kind="detection", action="confirm", detection_index=2, **common)
    m = export_feedback(db, tmp_path / "fb2", results_dir=results_dir)
    assert "relabel it" in m["skipped"][0]["reason"]


def test_export_guards(results_dir, tmp_path):
    with pytest.raises(FileAccessError):
        export_feedback(tmp_path / "none.sqlite", tmp_path / "fb", results_dir=results_dir)
    db = _log(results_dir)
    with pytest.raises(InvalidParameterError, match="read-only"):
        export_feedback(db, results_dir / "fb", results_dir=results_dir)


def test_feedback_merges_into_training_split(results_dir, tmp_path):
    """What add-feedback exports, `nii dataset build --feedback` tiles at the detector pitch."""
    from nii.dataset.builder import TRUTH_INDEX, merge_feedback
    from nii.dataset.yolo import read_labels, read_tile

    out = tmp_path / "fb"
    export_feedback(_log(results_dir), out)
    man = json.loads((out / "feedback.json").read_text())
    pitch = man["images"][0]["pixel_pitch_mm"]
    ds = tmp_path / "ds"
    target = 2.0 * float(pitch[0])  # coarser detector pitch: the image halves
    recs = merge_feedback(out, ds, pitch_mm=target, tile=128, overlap=32, min_visible=0.6)
    assert recs and all((ds / "train" / "images" / f"{r['id']}.png").is_file() for r in recs)
    labelled = {}
    for r in recs:
        img = read_tile(ds / "train" / "images" / f"{r['id']}.png")
        assert img.shape == (128, 128, 3)
        boxes, ids = read_labels(ds / "train" / "labels" / f"{r['id']}.txt", (128, 128))
        y, x = r["tile"]
        for b, c in zip(boxes, ids):
            labelled.setdefault(int(c), []).append(b + np.array([x, y, x, y]))
    # the drawn rhino-horn box [300, 100, 340, 130] at half scale, found whole in some tile
    rh = labelled[TRUTH_INDEX["rhino_horn"]]
    fy, fx = float(pitch[0]) / target, float(pitch[1]) / target
    want = np.array([300 * fx, 100 * fy, 340 * fx, 130 * fy])
    assert min(np.abs(b - want).max() for b in rh) < 1.0
    assert set(labelled) == {TRUTH_INDEX[c] for c in ("ivory", "ivory_worked", "rhino_horn")}
    index = (ds / "train" / "index.jsonl").read_text().splitlines()
    assert len(index) == len(recs)


def test_feedback_merge_refuses_other_folders(tmp_path):
    from nii.dataset.builder import merge_feedback

    with pytest.raises(InvalidParameterError, match="feedback.json"):
        merge_feedback(tmp_path, tmp_path / "ds", pitch_mm=3.0)
