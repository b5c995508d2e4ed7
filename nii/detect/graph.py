"""Faster, equivalent onnxruntime graphs for packaged detectors (``nii optimize``).

Two rewrites of a detector's ``model.onnx`` that change how onnxruntime computes, never what:

* **uint8 NHWC input.** The network takes the tiles as nii cuts them, ``(N, T, T, C) uint8``,
  instead of ``(N, C, T, T) float32`` in ``[0, 1]`` (:func:`nii.detect.detector.tiles_to_batch`).
  A ``Transpose`` in the graph makes the NCHW layout. An int8 (QDQ) network whose input goes
  only to ``QuantizeLinear`` nodes with scale ``float32(1/255)`` and zero point 0 receives the
  tile bytes as its quantised input directly (the quantisation of ``u / 255`` by ``1 / 255``
  gives back ``u`` for every byte ``u``); any other network gets ``Cast`` and ``Mul`` by
  ``float32(1/255)``, the same two float32 operations ``tiles_to_batch`` does. Either way the
  float32 batch (4x the tile bytes) is never made in Python, and the int8 network skips its
  first quantisation pass.
* **Softmax on the last axis.** onnxruntime computes a ``Softmax`` whose axis is not the last one
  more slowly than the same ``Softmax`` between two ``Transpose`` nodes that move that axis last
  and back (yolo11n's box distribution head, ``/model.23/dfl/Softmax``, axis 1 of
  ``(N, 16, 4, A)``: 9.4 ms of a 69 ms call on 8 tiles against 2.7 ms + two transposes, one
  thread, measured 2026-11-27).

:func:`optimize_onnx` refuses to write a graph whose outputs differ from the source's: it runs
both on a batch that holds every byte value in every channel plus random tiles and requires
the outputs to be equal bit for bit. Needs the ``onnx`` package (the ``train`` extra); the
rewritten model runs on plain onnxruntime, and :class:`nii.detect.Detector` feeds either input
kind (it reads the input's type from the session).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidParameterError, ModelError

__all__ = ["optimize_model_folder", "optimize_onnx", "takes_uint8_tiles"]

logger = logging.getLogger(__name__)

_INV255 = np.float32(1.0 / 255.0)


def takes_uint8_tiles(input_type: str, shape: list[Any] | tuple[Any, ...]) -> bool:
    """Whether an onnxruntime input (``type`` string and ``shape``) is the uint8 NHWC tile input
    that :func:`optimize_onnx` makes."""
    return input_type == "tensor(uint8)" and len(shape) == 4


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _opset(model: Any) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 1


def _uint8_input(model: Any) -> str | None:
    """Rewrite the graph input to uint8 NHWC; the kind of rewrite, or None if it is one already."""
    from onnx import TensorProto, helper, numpy_helper

    g = model.graph
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelError(f"expected one graph input, found {len(inputs)}")
    inp = inputs[0]
    tt = inp.type.tensor_type
    if tt.elem_type == TensorProto.UINT8:
        return None
    if tt.elem_type != TensorProto.FLOAT or len(tt.shape.dim) != 4:
        raise ModelError(f"graph input {inp.name!r} is not a float32 NCHW image batch")
    dims = list(tt.shape.dim)
    name = inp.name
    consumers = [n for n in g.node if name in n.input]
    by_init = {i.name: i for i in g.initializer}

    def _is_tile_quantizer(n: Any) -> bool:
        if n.op_type != "QuantizeLinear" or n.input[0] != name or len(n.input) < 3:
            return False
        s, z = by_init.get(n.input[1]), by_init.get(n.input[2])
        if s is None or z is None:
            return False
        s, z = numpy_helper.to_array(s), numpy_helper.to_array(z)
        return s.size == 1 and z.size == 1 and z.dtype == np.uint8 and np.float32(s.reshape(())) == _INV255 and int(z.reshape(())) == 0

    nchw = name + "_nchw_u8"
    new_nodes = [helper.make_node("Transpose", [name], [nchw], perm=[0, 3, 1, 2], name="nii/input/Transpose")]
    if consumers and all(_is_tile_quantizer(n) for n in consumers):
        kind = "quantised"
        for q in consumers:
            out = q.output[0]
            g.node.remove(q)
            for n in g.node:
                for k, x in enumerate(n.input):
                    if x == out:
                        n.input[k] = nchw
            for o in g.output:
                if o.name == out:
                    raise ModelError("the input's QuantizeLinear output is a graph output; not rewritten")
    else:
        kind = "cast"
        scaled = name + "_nchw_f32"
        g.initializer.append(numpy_helper.from_array(np.array(_INV255, np.float32), "nii_inv255"))
        new_nodes += [
            helper.make_node("Cast", [nchw], [name + "_nchw_cast"], to=TensorProto.FLOAT, name="nii/input/Cast"),
            helper.make_node("Mul", [name + "_nchw_cast", "nii_inv255"], [scaled], name="nii/input/Mul"),
        ]
        for n in g.node:
            for k, x in enumerate(n.input):
                if x == name:
                    n.input[k] = scaled
    for k, n in enumerate(new_nodes):
        g.node.insert(k, n)
    new = helper.make_tensor_value_info(name, TensorProto.UINT8, None)
    for d in (dims[0], dims[2], dims[3], dims[1]):
        nd = new.type.tensor_type.shape.dim.add()
        nd.CopyFrom(d)
    pos = list(g.input).index(inp)
    g.input.remove(inp)
    g.input.insert(pos, new)
    return kind


def _softmax_last_axis(model: Any) -> int:
    """Move the axis of every Softmax that is not on its input's last axis; the number moved."""
    import onnx
    from onnx import helper

    g = model.graph
    default_axis = -1 if _opset(model) >= 13 else 1
    rank: dict[str, int] = {}
    inferred = onnx.shape_inference.infer_shapes(model)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        if vi.type.tensor_type.HasField("shape"):
            rank[vi.name] = len(vi.type.tensor_type.shape.dim)
    moved = 0
    for node in list(g.node):
        if node.op_type != "Softmax" or node.domain not in ("", "ai.onnx"):
            continue
        r = rank.get(node.input[0])
        if r is None or r < 2:
            continue
        axis = int(_attr(node, "axis", default_axis))
        axis = axis + r if axis < 0 else axis
        if axis == r - 1 or _opset(model) < 13:
            continue  # before opset 13 Softmax flattens from `axis` on: not the same operation
        perm = [d for d in range(r) if d != axis] + [axis]
        inv = [perm.index(d) for d in range(r)]
        base = node.name or node.output[0]
        t_in, s_out = base + "/nii_last_in", base + "/nii_last_out"
        idx = list(g.node).index(node)
        new = [
            helper.make_node("Transpose", [node.input[0]], [t_in], perm=perm, name=base + "/nii_Transpose_in"),
            helper.make_node("Softmax", [t_in], [s_out], axis=-1, name=base + "/nii_last"),
            helper.make_node("Transpose", [s_out], [node.output[0]], perm=inv, name=base + "/nii_Transpose_out"),
        ]
        g.node.remove(node)
        for k, n in enumerate(new):
            g.node.insert(idx + k, n)
        moved += 1
    return moved


def _check_batch(channels: int, tile: int, seed: int) -> np.ndarray:
    """Tiles ``(4, T, T, C) uint8``: every byte value in every channel, then random content."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (4, tile, tile, channels), dtype=np.uint8)
    ramp = np.arange(tile * tile, dtype=np.int64).reshape(tile, tile) % 256
    for c in range(channels):
        x[0, :, :, c] = ((ramp + 37 * c) % 256).astype(np.uint8)
    x[1, : tile // 2] = 0  # air, as in the empty part of a scan
    return x


def optimize_onnx(src: str | os.PathLike, dst: str | os.PathLike, *, tile: int, channels: int, seed: int = 0) -> dict[str, Any]:
    """Write ``src``'s network with uint8 NHWC input and last-axis Softmax to ``dst``.

    Parameters
    ----------
    src, dst : path
        Source ONNX detector (float32 NCHW input, or already uint8 NHWC) and the output file
        (written atomically; may be ``src``).
    tile, channels : int
        Tile side and channels of the check batch (the model's ``tile_size`` / ``input_channels``).

    Returns
    -------
    dict
        ``{"input": "uint8 NHWC (...)", "softmax_moved_to_last_axis": k, "checked_tiles": 4}``.

    Raises
    ------
    ModelError
        If the graph cannot be read or rewritten, or the rewritten outputs are not bit-identical
        to the source's on the check batch (nothing is written then).
    """
    try:
        import onnx
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelError(f"rewriting a model graph needs the 'onnx' package (install nii[train]): {exc}") from exc
    from .._atomic import atomic_path
    from ._ort import session_options
    from .detector import tiles_to_batch

    src, dst = Path(src), Path(dst)
    if tile < 32 or channels < 1:
        raise InvalidParameterError(f"need tile >= 32 and channels >= 1, got {tile} and {channels}")
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # onnx raises its own types (DecodeError, ...)
        raise ModelError(f"not a readable ONNX model: {exc}", path=src) from exc
    try:
        kind = _uint8_input(model)
        moved = _softmax_last_axis(model)
        onnx.checker.check_model(model)
    except ModelError as exc:
        raise ModelError(str(exc), path=src) from exc
    except Exception as exc:  # onnx checker / shape inference errors
        raise ModelError(f"cannot rewrite the graph: {exc}", path=src) from exc
    blob = model.SerializeToString()
    x = _check_batch(channels, tile, seed)
    opts = session_options(1)
    try:
        a = ort.InferenceSession(str(src), sess_options=opts, providers=["CPUExecutionProvider"])
        b = ort.InferenceSession(blob, sess_options=opts, providers=["CPUExecutionProvider"])
        a_in = a.get_inputs()[0]
        ref = a.run(None, {a_in.name: x if takes_uint8_tiles(a_in.type, a_in.shape) else tiles_to_batch(x)})
        got = b.run(None, {b.get_inputs()[0].name: x})
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"onnxruntime cannot run the rewritten graph: {exc}", path=src) from exc
    for k, (r, o) in enumerate(zip(ref, got)):
        if r.shape != o.shape or not np.array_equal(r, o):
            diff = float(np.max(np.abs(r.astype(np.float64) - o.astype(np.float64)))) if r.shape == o.shape else float("nan")
            raise ModelError(f"the rewritten graph's output {k} differs from the source's (max |diff| {diff}); not written", path=src)
    with atomic_path(dst) as tmp:
        tmp.write_bytes(blob)
    info = {
        "input": "uint8 NHWC" + ("" if kind is None else f" ({'tile bytes are the quantised input' if kind == 'quantised' else 'Cast and Mul by 1/255 in the graph'})"),
        "softmax_moved_to_last_axis": moved,
        "checked_tiles": int(x.shape[0]),
    }
    logger.info("%s -> %s: %s", src, dst, info)
    return info


def optimize_model_folder(folder: str | os.PathLike, *, seed: int = 0) -> dict[str, Any]:
    """Rewrite a model folder's ``model.onnx`` in place (:func:`optimize_onnx`), record the rewrite
    in ``config.json`` (``"graph"``) and rewrite ``SHA256SUMS``. The folder is verified first."""
    from .._atomic import atomic_write_text
    from .detector import ModelConfig, verify_model_folder, write_sha256sums

    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file() or not (folder / "model.onnx").is_file():
        raise ModelError("not a model folder (config.json and model.onnx expected)", path=folder)
    listed = verify_model_folder(folder)
    try:
        cfg_d = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"config.json is not valid JSON: {exc}", path=cfg_path) from exc
    cfg = ModelConfig.from_dict(cfg_d)
    info = optimize_onnx(folder / "model.onnx", folder / "model.onnx", tile=cfg.tile_size, channels=cfg.input_channels, seed=seed)
    cfg_d["graph"] = {"rewritten_by": "nii optimize", **info}
    atomic_write_text(cfg_path, json.dumps(cfg_d, indent=1) + "\n")
    write_sha256sums(folder, sorted(listed))
    return info
