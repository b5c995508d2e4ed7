"""Evaluation metrics on hand-made records, and plots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nii.detect.evaluate import (
    MASS_BANDS,
    ImageRecord,
    _target_values,
    best_match_scores,
    box_iou,
    evaluate_anomalies,
    evaluate_records,
    mass_band,
    wilson_interval,
    write_plots,
)
from nii.errors import InvalidParameterError
from tests.detect.records import rec

CLASSES = ("ivory", "pangolin_scales")


_rec = rec


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


def test_pd_by_object_kind_uses_the_class_thresholds():
    recs = []
    # ivory: two tusks found (0.9), two chopsticks missed (one weak candidate 0.2, one nothing)
    for i, (s, kind) in enumerate([(0.9, "tusk"), (0.9, "tusk"), (0.2, "chopsticks"), (None, "chopsticks")]):
        boxes, scores, cls = ([[10, 10, 50, 50]], [s], [0]) if s is not None else ((), (), ())
        recs.append(ImageRecord(str(i), np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                                np.asarray(cls, np.int64), np.array([[10, 10, 50, 50]], np.float32), np.array([0]), gt_kinds=(kind,)))
    # pangolin: a pile found at 0.6, which the operating point (0.7) misses
    recs.append(ImageRecord("p", np.array([[0, 0, 40, 40]], np.float32), np.array([0.6], np.float32), np.array([1]),
                            np.array([[0, 0, 40, 40]], np.float32), np.array([1]), gt_kinds=("scale_pile",)))
    recs += [_rec(100 + i, [[0, 0, 5, 5]], [0.1], [0]) for i in range(100)]  # negatives carry no kinds: fine
    m = evaluate_records(recs, CLASSES, thresholds=np.array([0.5, 0.7]))
    json.dumps(m)
    k = m["by_object_kind"]
    assert set(k) == {"tusk", "chopsticks", "scale_pile"}
    assert {key: k["tusk"][key] for key in ("class", "n_objects", "pd_at_operating_point", "pd_at_far_1pct", "candidate_rate")} == {
        "class": "ivory", "n_objects": 2, "pd_at_operating_point": 1.0, "pd_at_far_1pct": 1.0, "candidate_rate": 1.0}
    assert k["chopsticks"]["pd_at_operating_point"] == 0.0 and k["chopsticks"]["candidate_rate"] == 0.5
    assert k["scale_pile"]["class"] == "pangolin_scales"
    assert k["scale_pile"]["pd_at_operating_point"] == 0.0 and k["scale_pile"]["pd_at_far_1pct"] == 1.0
    # the kinds of a class add up to the class
    ivory = m["classes"]["ivory"]
    assert ivory["pd_at_operating_point"] == pytest.approx((2 * 1.0 + 2 * 0.0) / 4)
    # records without kinds (real scans): no breakdown rather than a wrong one
    plain = [ImageRecord(r.image_id, r.boxes, r.scores, r.class_ids, r.gt_boxes, r.gt_class_ids) for r in recs]
    assert "by_object_kind" not in evaluate_records(plain, CLASSES, thresholds=np.array([0.5, 0.7]))


def test_target_values_follow_the_kept_truth_and_refuse_a_mismatch():
    from nii.containers import Truth

    t = Truth(np.zeros((3, 4), np.float32), ("ivory", "glass", "pangolin_scales"))
    kinds = ["tusk", "vase", "scale_pile"]
    assert _target_values({"target_kinds": kinds}, "target_kinds", t, [0, 2], str) == ("tusk", "scale_pile")
    assert _target_values({"simulation": {"target_kinds": kinds}}, "target_kinds", t, [0], str) == ("tusk",)
    assert _target_values({"target_kinds": ["tusk"]}, "target_kinds", t, [0, 2], str) == ()
    assert _target_values({}, "target_kinds", t, [0], str) == ()
    assert _target_values({"target_kinds": kinds}, "target_kinds", None, [], str) == ()
    assert _target_values({"target_mass_g": [1500, 80.5, "3.2"]}, "target_mass_g", t, [0, 2], float) == (1500.0, 3.2)
    # a value that is not a number: no masses rather than a misaligned list
    assert _target_values({"target_mass_g": [1500, 80.5, "heavy"]}, "target_mass_g", t, [0, 2], float) == ()


def test_mass_bands_are_ascending_and_cover_every_mass():
    assert [lo for _, lo in MASS_BANDS] == sorted(lo for _, lo in MASS_BANDS) and MASS_BANDS[0][1] == 0.0
    assert [mass_band(m) for m in (0.0, 3.0, 10.0, 99.9, 100.0, 999.0, 1000.0, 9999.0, 10000.0, 1e6)] == [
        "<10 g", "<10 g", "10-100 g", "10-100 g", "0.1-1 kg", "0.1-1 kg", "1-10 kg", "1-10 kg", ">=10 kg", ">=10 kg"]


def test_pd_by_object_mass_per_class_and_band():
    recs = []
    # ivory: a 5 kg tusk found (0.9), a 20 g seal missed with a weak candidate (0.2), a 30 g seal not seen
    for i, (s, mass) in enumerate([(0.9, 5000.0), (0.2, 20.0), (None, 30.0)]):
        boxes, scores, cls = ([[10, 10, 50, 50]], [s], [0]) if s is not None else ((), (), ())
        recs.append(ImageRecord(str(i), np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                                np.asarray(cls, np.int64), np.array([[10, 10, 50, 50]], np.float32), np.array([0]), gt_mass_g=(mass,)))
    # pangolin: one scan with a 3 g loose scale (missed) and a 25 kg sack (found)
    recs.append(ImageRecord("p", np.array([[100, 100, 200, 200]], np.float32), np.array([0.8], np.float32), np.array([1]),
                            np.array([[0, 0, 8, 8], [100, 100, 200, 200]], np.float32), np.array([1, 1]), gt_mass_g=(3.0, 25000.0)))
    recs += [_rec(100 + i, [[0, 0, 5, 5]], [0.1], [0]) for i in range(100)]
    m = evaluate_records(recs, CLASSES, thresholds=np.array([0.5, 0.7]))
    json.dumps(m)
    b = m["by_object_mass"]
    # ordered by class, then band
    assert list(b) == ["ivory 10-100 g", "ivory 1-10 kg", "pangolin_scales <10 g", "pangolin_scales >=10 kg"]
    assert b["ivory 10-100 g"]["class"] == "ivory" and b["ivory 10-100 g"]["mass_band"] == "10-100 g"
    assert b["ivory 10-100 g"]["n_objects"] == 2 and b["ivory 10-100 g"]["pd_at_operating_point"] == 0.0
    assert b["ivory 10-100 g"]["candidate_rate"] == 0.5
    assert b["ivory 1-10 kg"]["pd_at_operating_point"] == 1.0
    assert b["pangolin_scales <10 g"]["candidate_rate"] == 0.0 and b["pangolin_scales >=10 kg"]["pd_at_far_1pct"] == 1.0
    # one object without a mass (a real scan in the folder): no breakdown rather than a partial one
    recs[0] = ImageRecord("0", recs[0].boxes, recs[0].scores, recs[0].class_ids, recs[0].gt_boxes, recs[0].gt_class_ids)
    assert "by_object_mass" not in evaluate_records(recs, CLASSES, thresholds=np.array([0.5, 0.7]))


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


def test_model_card_lists_pd_by_object_kind_and_mass():
    from nii.detect.recalibrate import card_object_breakdowns, card_test_metrics

    d = {"class": "ivory", "n_objects": 4, "pd_at_operating_point": 0.25, "pd_at_operating_point_ci95": [0.05, 0.7],
         "pd_at_far_1pct": 0.5, "pd_at_far_5pct": 0.75, "candidate_rate": 1.0}
    m = {"classes": {"ivory": {"pd_at_far_1pct": 0.5}}, "far_images": 0.01, "by_object_kind": {"tusk": d},
         "by_object_mass": {"ivory 1-10 kg": {**d, "mass_band": "1-10 kg"}}}
    lines = card_object_breakdowns(m)
    row = next(ln for ln in lines if ln.startswith("| tusk "))
    assert "| ivory | 4 |" in row and "25" in row and "100" in row
    assert lines[lines.index("### Pd by object mass") + 6].startswith("| ivory | 1-10 kg | 4 |")
    assert row in card_test_metrics(m)
    assert card_object_breakdowns({"classes": {}}) == []
    assert "### Pd by object mass" not in card_object_breakdowns({"by_object_kind": {"tusk": d}})