"""nii quantize: int8 model folder from the demo model, thresholds re-calibrated, scores close to float32."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnx")
pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from nii.dataset.synthetic import build_synthetic_dataset

    return build_synthetic_dataset(tmp_path_factory.mktemp("qdata") / "data", size=128, n_train=4, n_val=24, n_test=12, seed=3)


def test_quantize_model_folder(demo_dir, demo_detector, tiny_data, tmp_path, make_object):
    from nii.detect import Detector
    from nii.detect.quantize import quantize_model

    out = quantize_model(demo_dir, tmp_path / "demo-int8", data=tiny_data, n_calibration=16, seed=0)
    for f in ("model.onnx", "config.json", "thresholds.json", "metrics.json", "MODEL_CARD.md", "SHA256SUMS", "quantize_info.json"):
        assert (out / f).is_file(), f
    assert not (out / "model.pt").exists()
    assert "95 % Wilson intervals" in (out / "MODEL_CARD.md").read_text()
    assert json.loads((out / "metrics.json").read_text())["far_images_ci95"] is not None
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["precision"] == "int8" and cfg["quantized_from"] == "demo-tiny" and cfg["name"] == "demo-int8"
    # no work folder left beside it
    assert sorted(p.name for p in out.parent.iterdir()) == ["demo-int8"]
    q = Detector.load(out)
    import onnx

    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    # the int8 network scores the same objects as the float32 one
    img, boxes, _ = make_object(128, "pangolin_scales", seed=5, at=(30, 40), obj_px=60)
    # nii quantize rewrites its output graph to take the uint8 tiles (nii.detect.graph)
    assert q.backend.uint8_tiles and cfg["graph"]["rewritten_by"] == "nii quantize"
    a = demo_detector.backend(demo_detector.backend.prepare(img[None]))
    b = q.backend(q.backend.prepare(img[None]))
    sa, sb = a[0, 4:].max(axis=0), b[0, 4:].max(axis=0)
    assert np.corrcoef(sa, sb)[0, 1] > 0.95
    assert abs(float(sa.max()) - float(sb.max())) < 0.1


def test_quantize_refuses_existing_or_bad_folders(demo_dir, tiny_data, tmp_path):
    from nii.detect.quantize import quantize_model
    from nii.errors import InvalidParameterError, ModelError

    (tmp_path / "exists").mkdir()
    with pytest.raises(InvalidParameterError, match="already exists"):
        quantize_model(demo_dir, tmp_path / "exists", data=tiny_data)
    with pytest.raises(ModelError, match="not a model folder"):
        quantize_model(tmp_path / "exists", tmp_path / "new", data=tiny_data)
    assert not (tmp_path / "new").exists()


def test_quantize_refuses_a_rewritten_source(demo_dir, tiny_data, tmp_path):
    import shutil

    from nii.detect.graph import optimize_model_folder
    from nii.detect.quantize import quantize_model
    from nii.errors import ModelError

    src = tmp_path / "demo-u8"
    shutil.copytree(demo_dir, src)
    optimize_model_folder(src)
    with pytest.raises(ModelError, match="uint8.*original export"):
        quantize_model(src, tmp_path / "q", data=tiny_data, n_calibration=4)
    assert not (tmp_path / "q").exists()
