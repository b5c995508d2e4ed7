"""Tiling, vectorised decode, class-aware NMS and seam merging (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nii.detect.detector import (
    RawDetections,
    decode_outputs,
    merge_tile_fragments,
    nms_class_aware,
    tile_origins,
)
from nii.errors import InvalidParameterError


@settings(max_examples=200, deadline=None)
@given(length=st.integers(1, 5000), tile=st.integers(32, 640), frac=st.floats(0.0, 0.45))
def test_tiles_cover_with_overlap(length, tile, frac):
    overlap = int(tile * frac)
    o = tile_origins(length, tile=tile, overlap=overlap)
    assert o[0] == 0
    if length <= tile:
        assert o.tolist() == [0]
        return
    assert o[-1] + tile == length  # last tile ends at the border
    assert np.all(np.diff(o) > 0)
    assert np.all(tile - np.diff(o) >= overlap)  # neighbours overlap by at least `overlap`


def test_tile_origins_rejects_bad_overlap():
    with pytest.raises(InvalidParameterError):
        tile_origins(100, tile=32, overlap=32)


def _out(rows, nc=2, anchors=8):
    """Raw output (N, 4 + nc, A) with the given (tile, anchor, cx, cy, w, h, cls, score) rows."""
    n = max(r[0] for r in rows) + 1
    out = np.zeros((n, 4 + nc, anchors), np.float32)
    for t, a, cx, cy, w, h, c, s in rows:
        out[t, :4, a] = (cx, cy, w, h)
        out[t, 4 + c, a] = s
    return out


def test_decode_offsets_conf_and_truncation():
    out = _out([(0, 0, 50, 50, 20, 20, 1, 0.9), (0, 1, 95, 50, 10, 10, 0, 0.8), (1, 0, 10, 10, 10, 10, 0, 0.05), (1, 1, 3, 50, 6, 10, 0, 0.7)])
    raw = decode_outputs(out, offsets=np.array([[0, 0], [0, 80]]), tile=100, image_hw=(100, 180), conf=0.1)
    assert len(raw) == 3  # the 0.05 candidate is dropped
    order = np.argsort(-raw.scores)
    np.testing.assert_allclose(raw.boxes[order[0]], [40, 40, 60, 60])
    assert raw.class_ids[order[0]] == 1 and not raw.truncated[order[0]]
    # touches the right border of tile 0, which is a seam (the image goes on to 180)
    np.testing.assert_allclose(raw.boxes[order[1]], [90, 45, 100, 55])
    assert raw.truncated[order[1]]
    # in tile 1 (x offset 80), touches its left border -> seam
    np.testing.assert_allclose(raw.boxes[order[2]], [80, 45, 86, 55])
    assert raw.truncated[order[2]] and raw.tile[order[2]] == 1


def test_decode_image_border_is_not_a_seam():
    out = _out([(0, 0, 3, 50, 6, 10, 0, 0.9)])
    raw = decode_outputs(out, offsets=np.array([[0, 0]]), tile=100, image_hw=(100, 100), conf=0.1)
    assert not raw.truncated[0]


def test_decode_clips_to_unpadded_image():
    out = _out([(0, 0, 90, 90, 40, 40, 0, 0.9)])
    raw = decode_outputs(out, offsets=np.array([[0, 0]]), tile=128, image_hw=(100, 100), conf=0.1)
    np.testing.assert_allclose(raw.boxes[0], [70, 70, 100, 100])


def test_nms_is_class_aware():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    keep = nms_class_aware(boxes, scores, np.array([0, 0, 1]), iou=0.5)
    assert sorted(keep.tolist()) == [0, 2]  # same class suppressed, other class kept
    assert keep.tolist() == [0, 2]  # by decreasing score


def _raw(boxes, scores, cls, trunc, tile):
    return RawDetections(np.asarray(boxes, np.float32), np.asarray(scores, np.float32), np.asarray(cls), np.asarray(trunc, bool), np.asarray(tile))


def test_merge_joins_fragments_across_a_seam():
    # an object from x=60 to x=260 seen as two fragments by tiles [0,160) and [100,260)
    raw = _raw([[60, 40, 160, 80], [100, 42, 260, 79]], [0.8, 0.6], [0, 0], [True, True], [0, 1])
    m = merge_tile_fragments(raw)
    assert len(m) == 1
    np.testing.assert_allclose(m.boxes[0], [60, 40, 260, 80])
    assert m.scores[0] == pytest.approx(0.8)


def test_merge_absorbs_a_fragment_inside_a_full_box():
    raw = _raw([[90, 40, 150, 80], [130, 40, 150, 80]], [0.9, 0.5], [1, 1], [False, True], [1, 0])
    m = merge_tile_fragments(raw)
    assert len(m) == 1
    np.testing.assert_allclose(m.boxes[0], [90, 40, 150, 80])


def test_merge_keeps_distinct_objects():
    # different classes, or untruncated neighbours, or same tile: never merged
    raw = _raw([[60, 40, 160, 80], [100, 42, 260, 79], [300, 0, 320, 20], [310, 0, 330, 20]], [0.8, 0.6, 0.5, 0.4], [0, 1, 0, 0], [True, True, False, False], [0, 1, 2, 3])
    assert len(merge_tile_fragments(raw)) == 4


def test_suppress_nested_drops_a_same_class_box_inside_a_stronger_one():
    from nii.detect.detector import suppress_nested

    raw = RawDetections(
        np.array([[0, 0, 100, 100], [10, 10, 60, 60], [20, 20, 70, 70], [80, 80, 140, 140], [5, 5, 50, 50]], np.float32),
        np.array([0.9, 0.8, 0.95, 0.7, 0.6], np.float32),
        np.array([0, 0, 1, 0, 0]),
        np.zeros(5, bool),
        np.zeros(5, int),
    )
    out = suppress_nested(raw)
    # box 1 (inside box 0, same class, weaker) and box 4 (inside box 0) go; box 2 is another
    # class; box 3 overlaps box 0 by 1/9 of its area only
    np.testing.assert_array_equal(out.boxes, raw.boxes[[0, 2, 3]])
    np.testing.assert_array_equal(out.scores, raw.scores[[0, 2, 3]])
    # a stronger box inside a weaker one stays: only the weaker of the two can be the duplicate
    flip = RawDetections(raw.boxes[:2], np.array([0.5, 0.9], np.float32), raw.class_ids[:2], raw.truncated[:2], raw.tile[:2])
    assert len(suppress_nested(flip)) == 2
    assert len(suppress_nested(raw.take(np.array([0])))) == 1
    with pytest.raises(InvalidParameterError, match="contain"):
        suppress_nested(raw, contain=0.0)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000))
def test_suppress_nested_matches_a_greedy_python_loop(seed):
    """Reference: walk boxes by decreasing score, drop one that is >= contain inside any
    higher-ranked same-class box (kept or not: containment by a dropped box implies a duplicate)."""
    from nii.detect.detector import suppress_nested

    rng = np.random.default_rng(seed)
    k = int(rng.integers(0, 12))
    xy = rng.uniform(0, 100, (k, 2))
    wh = rng.uniform(2, 60, (k, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = np.round(rng.uniform(0, 1, k), 2).astype(np.float32)  # ties happen
    cls = rng.integers(0, 2, k)
    raw = RawDetections(boxes, scores, cls, np.zeros(k, bool), np.zeros(k, int))
    keep = []
    for i in range(k):
        ai = (boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
        dup = False
        for j in range(k):
            if j == i or cls[j] != cls[i] or not (scores[j] > scores[i] or (scores[j] == scores[i] and j < i)):
                continue
            iw = max(0.0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]))
            ih = max(0.0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]))
            dup |= iw * ih / max(ai, 1e-6) >= 0.85
        if not dup:
            keep.append(i)
    np.testing.assert_array_equal(suppress_nested(raw).boxes, boxes[keep])
