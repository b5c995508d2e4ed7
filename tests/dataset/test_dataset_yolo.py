"""YOLO tile files and the synthetic shapes set."""

from __future__ import annotations

import numpy as np
import pytest

from nii.dataset.synthetic import (
    SYNTHETIC_CLASSES,
    build_synthetic_dataset,
    synthetic_image,
)
from nii.dataset.yolo import (
    labels_text,
    read_labels,
    read_tile,
    write_data_yaml,
    write_tile,
)
from nii.errors import InvalidDataError


def test_tile_and_labels_round_trip(tmp_path, rng):
    img = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    boxes = np.array([[10, 5, 30, 25], [0, 0, 96, 64]], np.float32)
    write_tile(tmp_path / "a.png", tmp_path / "a.txt", img, boxes, [2, 0])
    np.testing.assert_array_equal(read_tile(tmp_path / "a.png"), img)  # channel order preserved
    b, c = read_labels(tmp_path / "a.txt", (64, 96))
    np.testing.assert_allclose(b, boxes, atol=1e-3)
    assert c.tolist() == [2, 0]


def test_channel_order_seen_by_ultralytics(tmp_path):
    """Ultralytics reads BGR with OpenCV and reverses to RGB: the network must see encoding order."""
    import cv2

    img = np.zeros((8, 8, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30
    write_tile(tmp_path / "t.png", tmp_path / "t.txt", img, np.zeros((0, 4)), [])
    seen = cv2.imread(str(tmp_path / "t.png"))[..., ::-1]
    assert seen[0, 0].tolist() == [10, 20, 30]


def test_labels_clip_and_drop_degenerate():
    txt = labels_text(np.array([[-10, -10, 20, 20], [50, 50, 50.5, 60]]), [1, 2], (40, 40))
    lines = txt.splitlines()
    assert len(lines) == 1 and lines[0].startswith("1 0.250000 0.250000 0.500000 0.500000")
    with pytest.raises(InvalidDataError):
        labels_text(np.zeros((2, 4)), [1], (10, 10))


def test_missing_label_file_means_negative(tmp_path):
    b, c = read_labels(tmp_path / "none.txt", (10, 10))
    assert b.shape == (0, 4) and c.size == 0


def test_data_yaml(tmp_path):
    p = write_data_yaml(tmp_path, ("a", "b"), splits={"train": "train/images", "val": "val/images"})
    text = p.read_text()
    assert "channels: 3" in text and "  1: b" in text and f"path: {tmp_path.resolve().as_posix()}" in text


def test_synthetic_image_is_deterministic_and_labelled():
    a = synthetic_image(96, rng=np.random.default_rng(3), n_objects=2)
    b = synthetic_image(96, rng=np.random.default_rng(3), n_objects=2)
    np.testing.assert_array_equal(a[0], b[0])
    img, boxes, names = a
    assert img.dtype == np.uint8 and img.shape == (96, 96, 3)
    assert len(names) == boxes.shape[0] == 2 and set(names) <= set(SYNTHETIC_CLASSES)
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] <= 96)
    for x0, y0, x1, y1 in boxes.astype(int):
        assert img[y0:y1, x0:x1, 0].max() > 0  # something is drawn inside each box
    _neg, nb, nn = synthetic_image(96, rng=np.random.default_rng(4), n_objects=0)
    assert nb.shape == (0, 4) and nn == []


def test_synthetic_dataset_layout(tmp_path):
    import json

    root = build_synthetic_dataset(tmp_path, size=64, n_train=5, n_val=4, n_test=3, seed=1)
    man = json.loads((root / "dataset.json").read_text())
    assert man["classes"] == list(SYNTHETIC_CLASSES) and man["tile_size"] == 64
    for split, n in (("train", 5), ("val", 4), ("test", 3)):
        assert len(list((root / split / "images").glob("*.png"))) == n
        assert len(list((root / split / "labels").glob("*.txt"))) == n
    assert (root / "data.yaml").is_file()
