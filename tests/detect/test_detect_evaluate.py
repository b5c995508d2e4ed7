"""Evaluation metrics on hand-made records, and plots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nii.detect.evaluate import (
    ImageRecord,
    best_match_scores,
    box_iou,
    evaluate_anomalies,
    evaluate_records,
    wilson_interval,
    write_plots,
)
from nii.errors import InvalidParameterError

CLASSES = ("ivory", "pangolin_scales")


def _rec(i, boxes=(), scores=(), cls=(), gt=(), gtc=(), kind="dual_energy", family="luggage"):
    return ImageRecord(
        str(i),
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(scores, np.float32),
        np.asarray(cls, np.int64),
        np.asarray(gt, np.float32).reshape(-1, 4),
        np.asarray(gtc, np.int64),
        kind=kind,
        family=family,
    )


def _dataset():
    recs = []
    for i in range(10):  # positives, perfectly detected
        recs.append(_rec(i, [[10, 10, 50, 50]], [0.9], [i % 2], [[10, 10, 50, 50]], [i % 2]))
    for i in range(10, 110):  # negatives: one has a loud false alarm, the others quiet ones
        s = 0.95 if i == 10 else 0.1
        recs.append(_rec(i, [[0, 0, 5, 5]], [s], [0], kind="pseudocolor" if i % 2 else "dual_energy", family="negative"))
    return recs


def test_box_iou():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(box_iou(a, b)[0], [1.0, 1 / 3, 0.0])


def test_best_match_scores_needs_class_and_iou():
    r = _rec(0, [[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], [0.3, 0.8, 0.9], [0, 1, 0], [[0, 0, 10, 10]], [0])
    assert best_match_scores(r).tolist() == pytest.approx([0.3])


def test_metrics_of_a_known_case():
    m = evaluate_records(_dataset(), CLASSES, thresholds=np.array([0.5, 0.5]))
    json.dumps(m)
    c = m["classes"]["ivory"]
    assert c["n_objects"] == 5
    # 1 % of 100 negatives = 1 allowed alarm: the 0.95 one is tolerated, Pd stays 1
    assert c["pd_at_far_1pct"] == 1.0 and c["pd_at_far_5pct"] == 1.0
    assert c["pd_at_operating_point"] == 1.0
    assert m["far_images"] == pytest.approx(0.01)
    assert m["n_negative_images"] == 100
    if m["ap_backend"] == "pycocotools":
        # the 0.95 false alarm outranks the ivory hits; pangolin has no false alarm
        assert 0.5 < c["ap50"] < 1.0
        assert m["classes"]["pangolin_scales"]["ap50"] == pytest.approx(1.0, abs=1e-6)
        assert m["classes"]["pangolin_scales"]["ap50_95"] == pytest.approx(1.0, abs=1e-6)
    assert set(m["by_input_kind"]) == {"dual_energy", "pseudocolor"}
    assert m["by_scenario_family"]["negative"]["n_images"] == 100
    assert c["froc"] and all(0 <= p["pd"] <= 1 for p in c["froc"])


def test_wilson_interval_against_known_values():
    # textbook values (Newcombe 1998, method 3): 81/263 -> 0.2553-0.3662; 0/10 -> 0-0.2775; 10/10 -> 0.7225-1
    np.testing.assert_allclose(wilson_interval(81, 263), (0.2553, 0.3662), atol=1e-4)
    np.testing.assert_allclose(wilson_interval(0, 10), (0.0, 0.2775), atol=1e-4)
    np.testing.assert_allclose(wilson_interval(10, 10), (0.7225, 1.0), atol=1e-4)
    assert wilson_interval(0, 0) is None
    lo, hi = wilson_interval(43, 100)
    assert lo < 0.43 < hi and hi - lo == pytest.approx(0.19, abs=0.005)
    with pytest.raises(InvalidParameterError):
        wilson_interval(5, 4)


def test_metrics_carry_wilson_intervals():
    m = evaluate_records(_dataset(), CLASSES, thresholds=np.array([0.5, 0.5]))
    c = m["classes"]["ivory"]
    # 5 of 5 objects found; 1 of 100 negatives alarmed
    np.testing.assert_allclose(c["pd_at_operating_point_ci95"], wilson_interval(5, 5), atol=1e-4)
    np.testing.assert_allclose(c["pd_at_far_1pct_ci95"], wilson_interval(5, 5), atol=1e-4)
    np.testing.assert_allclose(m["far_images_ci95"], wilson_interval(1, 100), atol=1e-4)
    assert m["far_images_ci95"][0] < m["far_images"] < m["far_images_ci95"][1]
    # a class without objects has no Pd and no interval
    m = evaluate_records([r for r in _dataset() if not (r.gt_class_ids == 1).any()], CLASSES, thresholds=np.array([0.5, 0.5]))
    assert m["classes"]["pangolin_scales"]["pd_at_far_1pct"] is None
    assert m["classes"]["pangolin_scales"]["pd_at_far_1pct_ci95"] is None


def _with_anomalies(rec, boxes):
    rec.meta["anomaly_boxes"] = np.asarray(boxes, np.float32).reshape(-1, 4)
    return rec


def test_anomaly_cue_metrics_of_a_known_case():
    recs = [
        # ivory object the model misses (score 0.2 < 0.5) but an anomaly covers half of it
        _with_anomalies(_rec(0, [[10, 10, 50, 50]], [0.2], [0], [[10, 10, 50, 50]], [0]), [[30, 0, 80, 60]]),
        # ivory object the model finds; the only anomaly covers a tenth of it (below ANOMALY_COVER)
        _with_anomalies(_rec(1, [[10, 10, 50, 50]], [0.9], [0], [[10, 10, 50, 50]], [0]), [[46, 10, 80, 50]]),
        # pangolin object nobody finds
        _with_anomalies(_rec(2, [], [], [], [[0, 0, 20, 20]], [1]), []),
        # negatives: 3 anomaly regions on one, none on three
        _with_anomalies(_rec(3), [[0, 0, 5, 5], [10, 10, 15, 15], [20, 20, 25, 25]]),
        *[_with_anomalies(_rec(4 + i), []) for i in range(3)],
    ]
    a = evaluate_anomalies(recs, CLASSES, thresholds=np.array([0.5, 0.5]))
    json.dumps(a)
    iv = a["classes"]["ivory"]
    assert iv["n_objects"] == 2 and iv["recall"] == 0.5 and iv["found_by_model_or_cue"] == 1.0
    np.testing.assert_allclose(iv["recall_ci95"], wilson_interval(1, 2), atol=1e-4)
    pg = a["classes"]["pangolin_scales"]
    assert pg["recall"] == 0.0 and pg["found_by_model_or_cue"] == 0.0
    assert a["anomalies_per_negative_scan"] == 0.75 and a["negative_scans_with_anomaly"] == 0.25
    # without thresholds only the cue's own recall is reported
    assert "found_by_model_or_cue" not in evaluate_anomalies(recs, CLASSES)["classes"]["ivory"]
    with pytest.raises(InvalidParameterError, match="anomalies=True"):
        evaluate_anomalies(_dataset(), CLASSES)


def test_pd_drops_when_far_budget_is_spent():
    recs = _dataset()
    # two more loud negatives for class 0 at 0.95: the 1 % point must now sit above 0.95 -> misses the 0.9 objects
    recs += [_rec(200 + i, [[0, 0, 5, 5]], [0.95], [0]) for i in range(2)]
    m = evaluate_records(recs, CLASSES)
    assert m["classes"]["ivory"]["pd_at_far_1pct"] == 0.0
    assert m["classes"]["ivory"]["pd_at_far_5pct"] == 1.0
    assert m["classes"]["pangolin_scales"]["pd_at_far_1pct"] == 1.0


def test_plots(tmp_path):
    pytest.importorskip("matplotlib")
    paths = write_plots(_dataset(), CLASSES, tmp_path, thresholds=np.array([0.5, 0.5]))
    assert [p.name for p in paths] == ["pr_curve.png", "confusion_matrix.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
