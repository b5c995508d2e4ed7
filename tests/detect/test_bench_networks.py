"""``nii bench networks``: the model's own network at other tile sizes and untrained YOLO11 scales."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from nii.bench import networks
from nii.errors import InvalidParameterError

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "detectors" / "demo-tiny")


def _args(*argv):
    p = argparse.ArgumentParser()
    networks.add_arguments(p)
    return p.parse_args(["--model", DEMO, *argv])


def test_the_models_network_at_its_own_and_other_tile_sizes():
    res = networks.run(_args("--tiles", "64,128,192", "--scales", "", "--repeat", "3"))
    json.dumps(res)
    rows = res["rows"]
    assert [r["tile"] for r in rows] == [64, 128, 192]
    assert res["model_tile"] == 128 and rows[1]["ratio_to_model"] == 1.0
    for r in rows:
        assert 0 < r["p50_ms"] <= r["p95_ms"] and r["copy_bound_ms"] > 0


@pytest.mark.slow
def test_untrained_scales_are_exported_and_timed():
    pytest.importorskip("ultralytics")
    res = networks.run(_args("--tiles", "96", "--scales", "yolo11-pico", "--repeat", "2"))
    names = [r["network"] for r in res["rows"]]
    assert "yolo11-pico float32, untrained" in names
    assert all(r["p50_ms"] > 0 for r in res["rows"])


def test_bad_arguments_are_refused():
    with pytest.raises(SystemExit):
        _args("--tiles", "100")  # not a multiple of 32
    with pytest.raises(InvalidParameterError, match="unknown"):
        networks.run(_args("--tiles", "64", "--scales", "yolo99", "--repeat", "1"))
    with pytest.raises(ValueError):
        networks.time_network(ROOT / "detectors" / "demo-tiny" / "model.onnx", 64, threads=1, batch=1, repeat=0)
