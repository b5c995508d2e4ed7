"""Post-training int8 quantisation of a packaged detector (``nii quantize``).

A model folder's ``model.onnx`` (float32) is quantised statically with onnxruntime's QDQ format
(int8 weights per output channel, uint8 activations), calibrated on the dataset's own tiles, and
packaged as a *new* model folder with its own ``thresholds.json`` (the score distribution moves a
little, so the operating point is calibrated again on the validation scans), its own test metrics
and model card. The source folder is not touched.

What stays float32, and why:

* the detection head's decode tail (box distribution softmax, anchor arithmetic, the concat of
  box coordinates in pixels with class probabilities in ``[0, 1]``): one uint8 scale for both
  would round every class score to 0;
* ``Softmax`` and ``MatMul`` of the attention block (C2PSA): small tensors, sensitive to
  rounding.

Everything else (the convolutions, their activations, pooling, resizes, concats) runs in int8:
about 1.7x less CPU per tile on AVX-512 VNNI / AVX-VNNI cores. The quantised graph is then rewritten
by :func:`nii.detect.graph.optimize_onnx` (uint8 tiles as its input, last-axis Softmax; outputs
bit-identical). Needs the ``onnx`` package (the ``train`` extra) to quantise; the quantised model
itself runs on plain onnxruntime.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidParameterError, ModelError

__all__ = ["calibration_tiles", "quantize_model", "quantize_onnx"]

logger = logging.getLogger(__name__)


def _excluded_nodes(model: Any) -> list[str]:
    """Nodes kept in float32: the head's decode tail and the attention Softmax/MatMul."""
    heads = [n.name for n in model.graph.node if n.op_type == "Conv"]
    # the detection head is the module of the last Conv (Ultralytics names: /model.<k>/...)
    head_prefix = None
    if heads:
        parts = heads[-1].split("/")
        if len(parts) > 2:
            head_prefix = "/" + parts[1] + "/"
    out = []
    for n in model.graph.node:
        if n.op_type in ("Softmax", "MatMul"):
            out.append(n.name)
        elif head_prefix and n.name.startswith(head_prefix) and "/cv2" not in n.name and "/cv3" not in n.name:
            out.append(n.name)
    return out


def calibration_tiles(data: str | os.PathLike, *, n: int = 200, seed: int = 0) -> list[Path]:
    """``n`` tiles drawn at random from a dataset's ``val/images`` (else ``train/images``)."""
    root = Path(data)
    for split in ("val", "train"):
        files = sorted((root / split / "images").glob("*.png"))
        if files:
            rng = np.random.default_rng(seed)
            pick = rng.choice(len(files), size=min(n, len(files)), replace=False)
            return [files[int(i)] for i in sorted(pick)]
    raise ModelError("no calibration tiles: the dataset has no val/images or train/images PNG tiles", path=root)


def quantize_onnx(src: str | os.PathLike, dst: str | os.PathLike, tiles: list[Path], *, input_channels: int = 3) -> Path:
    """Quantise ``src`` (float32 ONNX) to ``dst`` (QDQ int8), calibrated on encoded ``tiles``."""
    try:
        import onnx
        import onnxruntime as ort
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise ModelError(f"quantisation needs the 'onnx' package (install nii[train]): {exc}") from exc
    from ..dataset.yolo import read_tile

    src, dst = Path(src), Path(dst)
    if not tiles:
        raise InvalidParameterError("quantisation needs at least one calibration tile")
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # onnx raises its own types (DecodeError, ...)
        raise ModelError(f"not a readable ONNX model: {exc}", path=src) from exc
    exclude = _excluded_nodes(model)
    inp = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()[0]
    if inp.type != "tensor(float)":
        raise ModelError(f"the network takes {inp.type} input, not the float32 batch of an export (a graph rewritten "
                         "by `nii optimize`?); quantise the folder of the original export", path=src)
    input_name = inp.name

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(tiles)

        def get_next(self) -> dict[str, np.ndarray] | None:
            p = next(self._it, None)
            if p is None:
                return None
            img = read_tile(p)
            if img.ndim == 2:
                img = img[..., None]
            img = img[..., :input_channels]
            return {input_name: np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32) * np.float32(1 / 255)}

    with tempfile.TemporaryDirectory(prefix="nii-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        out = Path(tmp) / "q.onnx"
        quantize_static(
            str(pre), str(out), _Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=exclude,
        )
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, dst)
    return dst


def quantize_model(
    model: str | os.PathLike,
    out: str | os.PathLike,
    *,
    data: str | os.PathLike,
    n_calibration: int = 200,
    seed: int = 0,
    default_far: float | None = None,
    command: str = "",
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Quantise the model folder ``model`` into a new folder ``out``; calibrate and evaluate it.

    Parameters
    ----------
    model : path
        Source model folder (``config.json``, ``model.onnx``).
    out : path
        New model folder; must not exist (it is assembled aside and renamed into place).
    data : path
        Dataset folder of ``nii dataset build``: tiles for the activation ranges, ``val`` scans for
        the thresholds, ``test`` scans for the metrics.
    n_calibration : int
        Tiles used to calibrate the activation ranges.
    default_far : float, optional
        Default operating point (default: the source model's).
    """
    from .._atomic import atomic_dir, atomic_write_text
    from .detector import ModelConfig, write_sha256sums
    from .graph import optimize_onnx
    from .thresholds import Thresholds
    from .training import _read_manifest, _split_dir, calibrate_folder, evaluate_folder

    say = progress or (lambda s: logger.info(s))
    src = Path(model)
    out = Path(out)
    cfg_path = src / "config.json"
    if not cfg_path.is_file() or not (src / "model.onnx").is_file():
        raise ModelError("not a model folder (config.json and model.onnx expected)", path=src)
    if out.exists():
        raise InvalidParameterError(f"{out}: already exists; choose a new folder for the quantised model")
    try:
        cfg_d = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"config.json is not valid JSON: {exc}", path=cfg_path) from exc
    src_cfg = ModelConfig.from_dict(cfg_d)
    if "rescorer" in src_cfg.extra:
        raise InvalidParameterError(f"{src.name} is a two-stage model: quantise its one-stage source "
                                    f"({src_cfg.extra.get('second_stage_of', '?')}), then train a second stage on the result")
    data = Path(data)
    manifest = _read_manifest(data)
    if manifest.get("encoding") not in (None, src_cfg.encoding) or float(manifest.get("pitch_mm", src_cfg.pitch_mm)) != src_cfg.pitch_mm:
        raise InvalidParameterError(f"{data}: dataset encoding/pitch differ from the model's ({src_cfg.encoding}, {src_cfg.pitch_mm} mm)")
    val_dir, test_dir = _split_dir(data, "val"), _split_dir(data, "test")
    if val_dir is None:
        raise ModelError("the dataset has no validation split to calibrate thresholds on", path=data)
    if default_far is None:
        th_src = src / "thresholds.json"
        default_far = Thresholds.load(th_src).default_far if th_src.is_file() else 0.01

    with atomic_dir(out) as work:
        tiles = calibration_tiles(data, n=n_calibration, seed=seed)
        say(f"quantising {src / 'model.onnx'} on {len(tiles)} calibration tiles")
        t0 = time.perf_counter()
        quantize_onnx(src / "model.onnx", work / "model.onnx", tiles, input_channels=src_cfg.input_channels)
        q_s = time.perf_counter() - t0
        # the same network, rewritten for onnxruntime: uint8 tiles in, last-axis Softmax (bit-identical)
        graph = optimize_onnx(work / "model.onnx", work / "model.onnx", tile=src_cfg.tile_size, channels=src_cfg.input_channels)
        extra = dict(src_cfg.extra)
        extra.update({"precision": "int8", "quantized_from": src_cfg.name,
                      "quantization": {"format": "QDQ", "weights": "int8 per channel", "activations": "uint8",
                                       "calibration_tiles": len(tiles), "seed": seed},
                      "graph": {"rewritten_by": "nii quantize", **graph}})
        cfg = ModelConfig(classes=src_cfg.classes, encoding=src_cfg.encoding, pitch_mm=src_cfg.pitch_mm,
                          tile_size=src_cfg.tile_size, overlap=src_cfg.overlap, input_channels=src_cfg.input_channels,
                          nms_iou=src_cfg.nms_iou, min_conf=src_cfg.min_conf, name=out.name, extra=extra)
        atomic_write_text(work / "config.json", json.dumps(cfg.to_dict(), indent=1) + "\n")
        say(f"calibrating thresholds on {val_dir}")
        th = calibrate_folder(work, cfg, val_dir, default_far=float(default_far))
        metrics = None
        if test_dir is not None:
            say(f"evaluating on {test_dir}")
            metrics = evaluate_folder(work, cfg, th, test_dir)
        src_metrics = None
        if (src / "metrics.json").is_file():
            src_metrics = json.loads((src / "metrics.json").read_text(encoding="utf-8"))
        info = {"source": str(src), "quantize_seconds": round(q_s, 1), "command": command,
                "dataset_command": manifest.get("command", "")}
        atomic_write_text(work / "quantize_info.json", json.dumps(info, indent=1) + "\n")
        _write_card(work, cfg=cfg, src_cfg=src_cfg, thresholds=th, metrics=metrics, src_metrics=src_metrics, info=info)
        write_sha256sums(work)
    return out


def _pct(v: Any, ci: Any = None) -> str:
    if v is None:
        return "–"
    return f"{100 * float(v):.1f} %" + (f" ({100 * ci[0]:.1f}–{100 * ci[1]:.1f})" if ci else "")


def _write_card(folder: Path, *, cfg: Any, src_cfg: Any, thresholds: Any, metrics: dict[str, Any] | None,
                src_metrics: dict[str, Any] | None, info: dict[str, Any]) -> None:
    from .._atomic import atomic_write_text

    L = [f"# Model card: {cfg.name}", "",
         "## What it is", "",
         f"`{src_cfg.name}` quantised to int8 after training (onnxruntime static QDQ: int8 weights per output channel, "
         "uint8 activations; the detection head's decode tail and the attention Softmax/MatMul stay float32). "
         f"Same classes, encoding (`{cfg.encoding}`), pitch ({cfg.pitch_mm:g} mm/px) and tiling as the source; see its model card "
         "for the data and training recipe. Runs on plain onnxruntime (no `.pt`: the Ultralytics backend does not apply).", "",
         f"Made by: `{info.get('command') or 'nii quantize'}` ({info['quantize_seconds']} s).", "",
         "## Operating point", "",
         f"Thresholds re-calibrated on the validation split ({thresholds.n_negative} negative images), default FAR "
         f"{thresholds.default_far:.2%}.", ""]
    for op in thresholds.operating_points():
        L.append(f"- FAR {op['far_target']:.1%}: " + ", ".join(f"{c} {t:.3f}" for c, t in op["thresholds"].items()))
    L.append("")
    if metrics:
        L += ["## Test metrics against the float32 source (same test scans)", "",
              f"far_images at the operating point: int8 {_pct(metrics.get('far_images'), metrics.get('far_images_ci95'))}, float32 "
              f"{_pct((src_metrics or {}).get('far_images'))}. In brackets: 95 % Wilson intervals.", "",
              "| class | Pd @ 1 % FAR int8 | float32 | AP50 int8 | float32 |", "|---|---|---|---|---|"]
        for c, d in metrics["classes"].items():
            s = ((src_metrics or {}).get("classes") or {}).get(c, {})
            L.append(f"| {c} | {_pct(d.get('pd_at_far_1pct'), d.get('pd_at_far_1pct_ci95'))} | {_pct(s.get('pd_at_far_1pct'))} "
                     f"| {_pct(d.get('ap50'))} | {_pct(s.get('ap50'))} |")
        from .recalibrate import card_object_breakdowns

        L += ["", *card_object_breakdowns(metrics), "See `metrics.json`, `pr_curve.png`, `confusion_matrix.png`.", ""]
    L += ["## Limits", "",
          "- Everything in the source model's card applies.",
          "- The activation ranges come from simulated tiles; re-quantise (and re-calibrate the thresholds) on local "
          "scans before operational use.",
          "- The speed gain needs int8 dot-product instructions (AVX-512 VNNI or AVX-VNNI); on older CPUs int8 can be slower "
          "than float32 (`nii bench detect --model` both and compare).", ""]
    atomic_write_text(folder / "MODEL_CARD.md", "\n".join(L))
