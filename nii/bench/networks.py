"""Cost per tile of detector networks: the model's own at other tile sizes, and other YOLO11 scales.

What the next model may cost before it is trained. In one run, with onnxruntime on this machine:

* the model folder's own network (``--model``; default: the default model) at each ``--tiles``
  size (a finer pitch over the same field of view needs a larger tile: 3 mm x 320 px = 2 mm x
  480 px);
* untrained YOLO11 networks of each ``--scales`` (the ``train`` extra exports them; random
  weights cost the same as trained ones) at the same sizes, in float32;
* the memory-copy bound: copying one tile batch once;

with p50 / p95 per tile over ``--repeat`` calls and each p50's ratio to the model's own network at
its configured tile size. Whole-scan latency adds encoding, evidence and the anomaly cue, which do
not depend on the network: see ``nii bench detect``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_arguments", "run", "time_network"]


def _ints(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or any(v < 32 or v % 32 for v in vals):
        raise argparse.ArgumentTypeError(f"tile sizes must be multiples of 32, at least 32; got {text!r}")
    return vals


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model folder (default: the default model, else detectors/demo-tiny)")
    parser.add_argument("--tiles", type=_ints, default=(320, 480), help="tile sizes in px, comma-separated (default 320,480)")
    parser.add_argument("--scales", default="yolo11n,yolo11s",
                        help="untrained YOLO11 scales to time, comma-separated, or '' for none (default yolo11n,yolo11s; needs the train extra)")
    parser.add_argument("--repeat", type=int, default=40, help="timed calls per network and size (default 40)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads (default 2)")
    parser.add_argument("--batch", type=int, default=1, help="tiles per call (default 1: one baggage scan)")
    parser.add_argument("--seed", type=int, default=0)


def time_network(path: str | os.PathLike, tile: int, *, threads: int, batch: int, repeat: int, seed: int = 0) -> dict[str, float]:
    """p50 / p95 milliseconds per tile of the ONNX network at ``path`` on ``batch`` random tiles."""
    from ..detect.detector import _OnnxBackend
    from ..errors import InvalidParameterError

    if repeat < 1 or batch < 1:
        raise InvalidParameterError(f"repeat and batch must be >= 1, got {repeat} and {batch}")
    net = _OnnxBackend(Path(path), threads=threads)
    x = net.prepare(np.random.default_rng(seed).integers(0, 256, (batch, tile, tile, 3), dtype=np.uint8))
    for _ in range(3):
        net(x)
    t = np.empty(repeat)
    for i in range(repeat):
        t0 = time.perf_counter()
        net(x)
        t[i] = time.perf_counter() - t0
    per_tile = 1000.0 * t / batch
    return {"p50_ms": float(np.median(per_tile)), "p95_ms": float(np.percentile(per_tile, 95))}


def _copy_ms(tile: int, batch: int, repeat: int) -> float:
    src = np.ones((batch, 3, tile, tile), np.float32)
    dst = np.empty_like(src)
    t = np.empty(repeat)
    for i in range(repeat):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        t[i] = time.perf_counter() - t0
    return float(1000.0 * np.median(t) / batch)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..detect import Detector
    from ..detect._ultralytics import SCALES, available
    from ..errors import InvalidParameterError, ModelError

    try:
        model = args.model if args.model is not None else str(Detector.load(None).folder)
    except ModelError:
        from .._assets import asset_dir

        model = str(asset_dir("detectors") / "demo-tiny")
    det = Detector.load(model)
    scales = tuple(s.strip() for s in str(args.scales).split(",") if s.strip())
    unknown = [s for s in scales if s not in SCALES]
    if unknown:
        raise InvalidParameterError(f"--scales: unknown {unknown}; known: {sorted(SCALES)}")
    tiles = tuple(args.tiles)
    own_tile = int(det.config.tile_size)
    kw = {"threads": args.threads, "batch": args.batch, "repeat": args.repeat, "seed": args.seed}
    rows: list[dict[str, Any]] = []
    onnx = Path(det.folder) / "model.onnx"
    for t in sorted(set(tiles) | {own_tile}):
        rows.append({"network": f"{Path(det.folder).name} (model.onnx)", "tile": t, **time_network(onnx, t, **kw)})
    res: dict[str, Any] = {
        "benchmark": "networks",
        "model": Path(det.folder).name,
        "model_arch": det.config.extra.get("model_arch"),
        "model_tile": own_tile,
        "threads": args.threads,
        "batch": args.batch,
        "cpu_count": os.cpu_count(),
    }
    if scales and not available():
        res["scales_skipped"] = "the train extra (torch, ultralytics) is not installed"
    elif scales:
        with tempfile.TemporaryDirectory(prefix="nii-bench-networks-") as tmp:
            from ..detect._ultralytics import export_architecture_onnx

            for s in scales:
                for t in tiles:
                    path = export_architecture_onnx(s, Path(tmp) / f"{s}-{t}.onnx", nc=det.config.nc, imgsz=t)
                    rows.append({"network": f"{s} float32, untrained", "tile": t, **time_network(path, t, **kw)})
    base = next(r["p50_ms"] for r in rows if r["tile"] == own_tile)
    for r in rows:
        r["ratio_to_model"] = round(r["p50_ms"] / base, 3)
        r["copy_bound_ms"] = _copy_ms(r["tile"], args.batch, max(5, args.repeat // 4))
    res["rows"] = rows
    return res


def table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title=f"nii bench networks: ms per tile, {result['threads']} threads, batch {result['batch']} "
                    f"(ratio to {result['model']} at {result['model_tile']} px)")
    for col in ("network", "tile", "p50 ms", "p95 ms", "ratio", "copy bound ms"):
        t.add_column(col)
    for r in result["rows"]:
        t.add_row(r["network"], str(r["tile"]), f"{r['p50_ms']:.2f}", f"{r['p95_ms']:.2f}", f"{r['ratio_to_model']:.2f}", f"{r['copy_bound_ms']:.3f}")
    return t
