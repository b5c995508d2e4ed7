"""nii optimize / nii.detect.graph: uint8 NHWC input and last-axis Softmax, outputs bit-identical."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")


def _toy_qdq(path, *, scale: float, tile: int = 32):
    """float32 NCHW input -> QuantizeLinear(scale, 0) -> DequantizeLinear -> 1x1 Conv -> Softmax(axis=1)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.array(scale, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.uint8), "z"),
        numpy_helper.from_array(rng.normal(size=(4, 3, 1, 1)).astype(np.float32), "w"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["images", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
        helper.make_node("Conv", ["dq", "w"], ["c"]),
        helper.make_node("Softmax", ["c"], ["out"], axis=1),
    ]
    g = helper.make_graph(
        nodes, "toy",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 3, tile, tile])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 4, tile, tile])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    onnx.save(m, str(path))
    return path


def _softmax_axes(model) -> list[int]:
    return [next((a.i for a in n.attribute if a.name == "axis"), -1) for n in model.graph.node if n.op_type == "Softmax"]


def test_optimized_float_model_gives_the_same_bytes(demo_dir, demo_detector, tmp_path):
    from nii.detect import Detector
    from nii.detect.detector import verify_model_folder
    from nii.detect.graph import optimize_model_folder

    folder = tmp_path / "demo-u8"
    shutil.copytree(demo_dir, folder)
    info = optimize_model_folder(folder)
    assert info["input"].startswith("uint8 NHWC (Cast and Mul") and info["softmax_moved_to_last_axis"] == 1
    verify_model_folder(folder)  # SHA256SUMS rewritten
    assert json.loads((folder / "config.json").read_text())["graph"]["rewritten_by"] == "nii optimize"
    m = onnx.load(str(folder / "model.onnx"))
    inp = m.graph.input[0].type.tensor_type
    t = demo_detector.config.tile_size
    assert inp.elem_type == onnx.TensorProto.UINT8 and [d.dim_value or d.dim_param for d in inp.shape.dim] == ["batch", "height", "width", 3]
    assert all(ax == -1 for ax in _softmax_axes(m))
    opt = Detector.load(folder)
    assert opt.backend.uint8_tiles and not demo_detector.backend.uint8_tiles
    tiles = np.random.default_rng(1).integers(0, 256, (5, t, t, 3), dtype=np.uint8)
    tiles[2] = 0
    assert np.array_equal(opt.run_tiles(tiles), demo_detector.run_tiles(tiles))  # the lanes
    one = Detector.load(folder, threads=1)
    assert np.array_equal(one.run_tiles(tiles[:1]), demo_detector.run_tiles(tiles[:1]))
    # a second rewrite changes nothing
    again = optimize_model_folder(folder)
    assert again["input"] == "uint8 NHWC" and again["softmax_moved_to_last_axis"] == 0


def test_quantised_input_takes_the_tile_bytes(tmp_path):
    from nii.detect.graph import optimize_onnx

    src = _toy_qdq(tmp_path / "toy.onnx", scale=1.0 / 255.0)
    info = optimize_onnx(src, tmp_path / "toy-u8.onnx", tile=32, channels=3)
    assert info["input"] == "uint8 NHWC (tile bytes are the quantised input)" and info["softmax_moved_to_last_axis"] == 1
    ops = [n.op_type for n in onnx.load(str(tmp_path / "toy-u8.onnx")).graph.node]
    assert "QuantizeLinear" not in ops and "Cast" not in ops and ops[0] == "Transpose"
    # another input scale: the bytes are not the quantised values, so the graph keeps its QuantizeLinear
    src2 = _toy_qdq(tmp_path / "toy2.onnx", scale=1.0 / 200.0)
    info2 = optimize_onnx(src2, tmp_path / "toy2-u8.onnx", tile=32, channels=3)
    assert info2["input"] == "uint8 NHWC (Cast and Mul by 1/255 in the graph)"
    assert "QuantizeLinear" in [n.op_type for n in onnx.load(str(tmp_path / "toy2-u8.onnx")).graph.node]


def test_a_rewrite_that_changes_outputs_is_not_written(tmp_path, monkeypatch):
    from nii.detect import graph
    from nii.errors import ModelError

    src = _toy_qdq(tmp_path / "toy.onnx", scale=1.0 / 255.0)
    dst = tmp_path / "out.onnx"
    dst.write_bytes(b"kept")
    monkeypatch.setattr(graph, "_INV255", np.float32(1.0 / 254.0))  # a wrong input scaling
    with pytest.raises(ModelError, match=r"toy\.onnx.*differs from the source"):
        graph.optimize_onnx(src, dst, tile=32, channels=3)
    assert dst.read_bytes() == b"kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx", "toy.onnx"]


def test_bad_inputs_are_named(tmp_path):
    from nii.detect.graph import optimize_model_folder, optimize_onnx
    from nii.errors import InvalidParameterError, ModelError

    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a network")
    with pytest.raises(ModelError, match=r"model\.onnx.*not a readable ONNX model"):
        optimize_onnx(bad, tmp_path / "o.onnx", tile=32, channels=3)
    with pytest.raises(InvalidParameterError, match="tile >= 32"):
        optimize_onnx(bad, tmp_path / "o.onnx", tile=8, channels=3)
    with pytest.raises(ModelError, match="not a model folder"):
        optimize_model_folder(tmp_path / "nothing")
    assert not (tmp_path / "o.onnx").exists()


def test_cli_optimize(demo_dir, tmp_path, capsys):
    from nii.cli import main

    folder = tmp_path / "m"
    shutil.copytree(demo_dir, folder)
    assert main(["optimize", str(folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["softmax_moved_to_last_axis"] == 1 and out["checked_tiles"] == 4
    # a folder whose files were altered is refused before anything is rewritten
    (folder / "thresholds.json").write_text("{}")
    before = (folder / "model.onnx").read_bytes()
    assert main(["optimize", str(folder)]) != 0
    assert (folder / "model.onnx").read_bytes() == before
