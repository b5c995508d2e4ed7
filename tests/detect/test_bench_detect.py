"""``nii bench detect``: stage timings per scan kind, the in-turn inference reference, baselines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nii.bench import detect

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "detectors" / "demo-tiny")


def _args(*argv):
    p = argparse.ArgumentParser()
    detect.add_arguments(p)
    return p.parse_args(["--model", DEMO, "--no-ultralytics", *argv])


def test_stages_and_references_of_a_baggage_and_a_small_container_scan():
    res = detect.run(_args("--repeat", "2", "--container", "300x900", "--threads", "2"))
    json.dumps(res)
    assert res["model"] == "demo-tiny" and res["threads"] == 2
    onnx = res["backends"]["onnx"]
    assert set(onnx) == {"baggage", "container"}
    for kind, r in onnx.items():
        for key in ("detect_total", "stage_encode", "stage_inference", "stage_decode_nms_merge",
                    "stage_evidence_anomalies", "baseline_python_postprocess", "memory_copy_bound"):
            assert 0 < r[key]["min_ms"] <= r[key]["p50_ms"] <= r[key]["p95_ms"], (kind, key)
        assert r["tiles"] >= r["tiles_run"] >= 1
    box = onnx["container"]
    assert box["scan_shape"][1:] == [300, 900] and box["tiles_run"] > 1
    # several tiles on two lanes: the in-turn run on one two-thread session is timed beside them
    assert box["inference_lanes"] == 2 and box["stage_inference_one_session_in_turn"]["p50_ms"] > 0


def test_one_thread_has_no_lanes_to_compare():
    res = detect.run(_args("--repeat", "1", "--container", "300x900", "--threads", "1"))
    box = res["backends"]["onnx"]["container"]
    assert box["tiles_run"] > 1
    assert "inference_lanes" not in box and "stage_inference_one_session_in_turn" not in box
