"""Operating-point calibration to an image-level false-alarm rate."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nii.detect.thresholds import (
    Thresholds,
    calibrate,
    image_far,
    parse_far,
    threshold_for_far,
    thresholds_for_far,
)
from nii.errors import InvalidParameterError, ModelError


def test_parse_far():
    assert parse_far("1%") == 0.01
    assert parse_far("0.5%") == 0.005
    assert parse_far(0.02) == 0.02
    assert parse_far(" 5 %") == 0.05
    for bad in ("abc", "0%", "100%", 1.5, -0.1, "nan"):
        with pytest.raises(InvalidParameterError):
            parse_far(bad)


@settings(max_examples=150, deadline=None)
@given(
    scores=st.lists(st.floats(0, 1, allow_nan=False, width=32), min_size=1, max_size=300),
    far=st.floats(0.001, 0.5),
)
def test_threshold_meets_the_target(scores, far):
    s = np.asarray(scores, np.float32)
    t = threshold_for_far(s, far)
    assert np.mean(s >= t) <= far + 1e-12
    # and it is the lowest such threshold among the observed scores: one step lower breaks it
    below = s[s < t]
    if below.size and np.mean(s >= below.max()) <= far:
        pytest.fail("a lower observed threshold also meets the target")


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), far=st.floats(0.005, 0.2), method=st.sampled_from(["global", "per_class"]))
def test_union_far_is_bounded(seed, far, method):
    neg = np.random.default_rng(seed).random((200, 4)).astype(np.float32) ** 3
    thr = thresholds_for_far(neg, far, method=method)
    assert image_far(neg, thr) <= far + 1e-9


def test_thresholds_are_monotone_in_far():
    neg = np.random.default_rng(1).random((500, 3)).astype(np.float32)
    th = Thresholds(("a", "b", "c"), neg)
    prev = None
    for f in (0.002, 0.01, 0.05, 0.2):
        cur = th.for_far(f)
        if prev is not None:
            assert np.all(cur <= prev)
        prev = cur


def test_calibrate_chooses_rule_and_reports_pd(tmp_path):
    rng = np.random.default_rng(2)
    # class 0 has loud negatives, class 1 quiet ones: the per-class split then helps class 1
    neg = np.stack([rng.random(400) ** 0.3, rng.random(400) ** 8], axis=1).astype(np.float32)
    pos_c = np.repeat([0, 1], 100)
    pos_s = np.concatenate([rng.uniform(0.9, 1.0, 100), rng.uniform(0.2, 0.6, 100)]).astype(np.float32)
    th = calibrate(("x", "y"), neg, pos_classes=pos_c, pos_scores=pos_s, default_far="1%")
    assert th.method in ("global", "per_class")
    assert image_far(neg, th.for_far()) <= 0.01
    assert "pd_on_calibration" in th.info
    th.save(tmp_path / "thresholds.json")
    back = Thresholds.load(tmp_path / "thresholds.json", classes=("x", "y"))
    np.testing.assert_allclose(back.for_far("2%"), th.for_far("2%"), atol=1e-4)
    with pytest.raises(ModelError, match="differ"):
        Thresholds.load(tmp_path / "thresholds.json", classes=("y", "x"))


def test_floor_and_resolution():
    neg = np.zeros((50, 2), np.float32)  # no candidate on any negative image
    th = Thresholds(("a", "b"), neg, floor=0.05)
    assert np.all(th.for_far("1%") == pytest.approx(0.05))
    with pytest.raises(ModelError):
        Thresholds(("a",), np.zeros((0, 1), np.float32))
