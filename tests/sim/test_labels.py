"""COCO and YOLO writers agree with the truth they were given."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nii.containers import Truth
from nii.errors import InvalidDataError
from nii.sim.labels import LabelRecord, coco_dataset, parse_yolo, write_class_files, write_coco, write_yolo, yolo_lines
from nii.sim.phantoms import TRUTH_CLASSES


def _truth():
    return Truth(np.array([[10, 20, 110, 70], [0, 0, 5, 5]], np.float32), ("ivory", "rhino_horn"))


def test_yolo_lines_normalised_centre_size():
    lines = yolo_lines(_truth(), 100, 200)
    assert lines[0] == "0 0.300000 0.450000 0.500000 0.500000"
    assert lines[1].startswith("3 ")
    assert yolo_lines(Truth.empty(), 100, 200) == []


@settings(max_examples=50, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.floats(0, 199), st.floats(0, 99), st.floats(0.5, 50), st.floats(0.5, 50), st.integers(0, 3)), max_size=6))
def test_yolo_round_trip(items):
    boxes = np.array([[x, y, min(x + w, 200), min(y + h, 100)] for x, y, w, h, _ in items], np.float32).reshape(-1, 4)
    truth = Truth(boxes, tuple(TRUTH_CLASSES[k] for *_, k in items))
    back = parse_yolo("\n".join(yolo_lines(truth, 100, 200)), 100, 200)
    assert back.classes == truth.classes
    np.testing.assert_allclose(back.boxes, truth.boxes, atol=2e-4 * 200)


def test_coco_dataset_structure(tmp_path):
    recs = [LabelRecord("a.h5", 100, 200, _truth(), (1234.0, 20.0)), LabelRecord("b.h5", 100, 200, Truth.empty())]
    d = coco_dataset(recs)
    assert [c["name"] for c in d["categories"]] == list(TRUTH_CLASSES)
    assert [i["file_name"] for i in d["images"]] == ["a.h5", "b.h5"]
    assert d["images"][0]["width"] == 200 and d["images"][0]["height"] == 100
    a0, a1 = d["annotations"]
    assert a0["bbox"] == [10.0, 20.0, 100.0, 50.0] and a0["category_id"] == 1 and a0["area"] == 1234.0
    assert a1["category_id"] == 4 and a1["image_id"] == 1
    assert len({a["id"] for a in d["annotations"]}) == 2
    p = write_coco(tmp_path / "ann.json", recs)
    assert json.loads(p.read_text()) == json.loads(json.dumps(d))
    y = write_yolo(tmp_path / "labels", recs[1])
    assert y.name == "b.txt" and y.read_text() == ""
    files = write_class_files(tmp_path)
    assert (tmp_path / "classes.txt").read_text().split() == list(TRUTH_CLASSES)
    assert "pangolin_scales" in files[1].read_text()


def test_unknown_class_rejected():
    with pytest.raises(InvalidDataError, match="elephant"):
        yolo_lines(Truth(np.zeros((1, 4)), ("elephant",)), 10, 10)
    with pytest.raises(InvalidDataError):
        parse_yolo("7 0.5 0.5 0.1 0.1", 10, 10)
