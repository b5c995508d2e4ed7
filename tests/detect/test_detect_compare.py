"""Paired bootstrap comparison of two models' records (``nii evaluate --compare``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nii.detect.compare import compare_records
from nii.detect.evaluate import ImageRecord, evaluate_records
from nii.errors import InvalidParameterError
from tests.detect.records import rec

CLASSES = ("ivory", "pangolin_scales")


_rec = rec


def _model(seed: int, n_pos: int = 30, n_neg: int = 60, skill: float = 0.5) -> list[ImageRecord]:
    """Records of a model of a given ``skill`` on fixed scenes: the truth depends only on the image index."""
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(n_pos):
        k = 1 + i % 3  # one to three objects per scan, so objects of one scan move together
        gt = [[10.0 + 60 * j, 10, 50 + 60 * j, 50] for j in range(k)]
        gtc = [(i + j) % 2 for j in range(k)]
        scores = np.clip(skill + rng.normal(0, 0.25, k), 0.01, 0.99)
        recs.append(_rec(i, gt, scores, gtc, gt, gtc))
    for i in range(n_pos, n_pos + n_neg):
        recs.append(_rec(i, [[0, 0, 5, 5], [100, 100, 120, 120]], rng.uniform(0, 0.6, 2), [0, 1]))
    return recs


def test_a_model_against_itself_differs_by_nothing():
    a = _model(1)
    cmp = compare_records(a, list(reversed(a)), CLASSES, thresholds_a=np.array([0.4, 0.4]), thresholds_b=np.array([0.4, 0.4]), n_boot=200)
    for key in ("pd_at_far_1pct", "pd_at_far_5pct", "pd_at_operating_point"):
        for e in (*cmp[key]["classes"].values(), cmp[key]["class_mean"]):
            assert e["diff"] == 0.0 and e["diff_ci95"] == [0.0, 0.0]
            assert e["share_b_higher"] == 0.0 and e["share_b_lower"] == 0.0
    assert cmp["far_images"]["diff"] == 0.0
    assert cmp["n_images"] == 90 and cmp["n_negative_images"] == 60


def test_point_estimates_are_those_of_evaluate_records():
    a, b = _model(1, skill=0.45), _model(2, skill=0.6)
    ta, tb = np.array([0.5, 0.55]), np.array([0.45, 0.5])
    cmp = compare_records(a, b, CLASSES, thresholds_a=ta, thresholds_b=tb, n_boot=100)
    ma = evaluate_records(a, CLASSES, thresholds=ta, by=False)
    mb = evaluate_records(b, CLASSES, thresholds=tb, by=False)
    for key in ("pd_at_far_1pct", "pd_at_far_5pct", "pd_at_operating_point"):
        for c in CLASSES:
            e = cmp[key]["classes"][c]
            assert e["a"] == ma["classes"][c][key] and e["b"] == mb["classes"][c][key], (key, c)
            assert e["n_objects"] == ma["classes"][c]["n_objects"]
        mean_a = np.mean([ma["classes"][c][key] for c in CLASSES])
        assert cmp[key]["class_mean"]["a"] == pytest.approx(mean_a, abs=1e-4)
    assert cmp["far_images"]["a"] == ma["far_images"] and cmp["far_images"]["b"] == mb["far_images"]


def _reference_interval(a, b, n_boot, seed, key):
    """Plain re-implementation: resample image lists with the same draws, evaluate each, take percentiles."""
    n = len(a)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        w = np.bincount(rng.integers(0, n, n), minlength=n)
        ra = [r for r, k in zip(a, w) for _ in range(k)]
        rb = [r for r, k in zip(b, w) for _ in range(k)]
        ma = evaluate_records(ra, CLASSES, by=False)["classes"]
        mb = evaluate_records(rb, CLASSES, by=False)["classes"]
        diffs.append(np.mean([mb[c][key] for c in CLASSES]) - np.mean([ma[c][key] for c in CLASSES]))
    return np.percentile(diffs, [2.5, 97.5]), np.mean(np.array(diffs) > 0)


def test_interval_matches_a_plain_resampling_of_image_lists():
    a, b = _model(3, n_pos=16, n_neg=30, skill=0.45), _model(4, n_pos=16, n_neg=30, skill=0.55)
    cmp = compare_records(a, b, CLASSES, n_boot=100, seed=7)
    (lo, hi), share = _reference_interval(a, b, 100, 7, "pd_at_far_5pct")
    e = cmp["pd_at_far_5pct"]["class_mean"]
    assert e["diff_ci95"] == pytest.approx([lo, hi], abs=2e-4)
    assert e["share_b_higher"] == pytest.approx(share, abs=1e-4)


def test_a_clearly_better_model_gets_an_interval_above_zero():
    a, b = _model(5, skill=0.2), _model(6, skill=0.9)
    cmp = compare_records(a, b, CLASSES, n_boot=300)
    e = cmp["pd_at_far_5pct"]["class_mean"]
    assert e["diff"] > 0.3 and e["diff_ci95"][0] > 0 and e["share_b_higher"] > 0.99
    swapped = compare_records(b, a, CLASSES, n_boot=300)["pd_at_far_5pct"]["class_mean"]
    assert swapped["diff"] == -e["diff"] and swapped["diff_ci95"][1] < 0


def test_seeded_and_deterministic():
    a, b = _model(1), _model(2)
    one = compare_records(a, b, CLASSES, n_boot=150, seed=3)
    assert json.dumps(one) == json.dumps(compare_records(a, b, CLASSES, n_boot=150, seed=3))
    assert one["seed"] == 3 and one["n_boot"] == 150


def test_pairing_and_parameter_errors_name_the_problem():
    a = _model(1)
    with pytest.raises(InvalidParameterError, match="same images"):
        compare_records(a, a[:-1], CLASSES)
    with pytest.raises(InvalidParameterError, match="more than once"):
        compare_records(a + [a[0]], a + [a[0]], CLASSES)
    other = [_rec(r.image_id, gt=[[0, 0, 9, 9]], gtc=[1]) if r.image_id == "0" else r for r in a]
    with pytest.raises(InvalidParameterError, match="different truth"):
        compare_records(a, other, CLASSES)
    pos = [r for r in a if not r.negative]
    with pytest.raises(InvalidParameterError, match="no negative images"):
        compare_records(pos, pos, CLASSES)
    with pytest.raises(InvalidParameterError, match="n_boot"):
        compare_records(a, a, CLASSES, n_boot=10)
    with pytest.raises(InvalidParameterError, match="both"):
        compare_records(a, a, CLASSES, thresholds_a=np.array([0.5, 0.5]))
    with pytest.raises(InvalidParameterError, match="one value per class"):
        compare_records(a, a, CLASSES, thresholds_a=np.array([0.5]), thresholds_b=np.array([0.5]))
    with pytest.raises(InvalidParameterError, match="no images"):
        compare_records([], [], CLASSES)


def test_a_class_without_objects_stays_out_of_the_class_mean():
    a = [r for r in _model(1) if r.negative or 1 not in r.gt_class_ids]
    cmp = compare_records(a, a, CLASSES, n_boot=100)
    d = cmp["pd_at_far_1pct"]
    assert d["classes"]["pangolin_scales"]["n_objects"] == 0 and d["classes"]["pangolin_scales"]["a"] is None
    assert d["classes"]["pangolin_scales"]["diff_ci95"] is None
    assert d["class_mean"]["a"] == d["classes"]["ivory"]["a"]
