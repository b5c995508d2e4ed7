"""Benchmark of the detector: latency per baggage scan (~1 Mpx) and per container scan (~2000 x 8000 px).

In one run, on simulated, normalised scans (the simulator and the normaliser of this nii):

* :meth:`nii.detect.Detector.detect` end to end (p50 / p95 over ``--repeat`` runs), split into
  encoding at the detector pitch (``nii.normalization.detector_input``: resampling, Zeff, encoding),
  network inference over the batched tiles, decode + class-aware NMS + seam merge, and evidence
  + material-anomaly cue;
* for a scan of several tiles on the onnxruntime backend, the same batches run one after the
  other on one ``--threads``-thread session (``stage_inference_one_session_in_turn``, how nii ran
  them before 2026-11-27) against ``--threads`` single-threaded lanes side by side (``stage_inference``);
* the onnxruntime backend against the Ultralytics (torch) backend when the ``train`` extra is
  installed (same tiles, same decoder);
* a plain-NumPy baseline of the post-processing: a Python loop over tiles and candidates with a
  greedy per-class NMS, on the same network outputs;
* the memory-copy bound: copying the encoded image and the tile batch once.

Timings depend on the model (``--model``; default: the installed default model, else the demo
model) and on the machine; the number of tiles is reported with them.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_arguments", "python_postprocess", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model folder (default: the default model, else detectors/demo-tiny)")
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per scan kind (default 15)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime / torch threads (default 2)")
    parser.add_argument("--batch", type=int, default=8, help="tiles per network call (default 8)")
    parser.add_argument("--container", default="2000x8000", help="container scan H x W in px (default 2000x8000)")
    parser.add_argument("--no-container", action="store_true", help="skip the container scan")
    parser.add_argument("--no-ultralytics", action="store_true", help="skip the torch backend")
    parser.add_argument("--seed", type=int, default=0)


def _scan(profile: str, seed: int, *, channels: int | None = None, length_cm: float | None = None):
    from ..normalization import normalize
    from ..profiles import load_profile
    from ..sim.imaging import form_image
    from ..sim.scenes import compose_scene, scene_grid

    p = load_profile(profile)
    grid = scene_grid(p, channels=channels, length_cm=length_cm)
    scene = compose_scene("mixed", p, seed, grid=grid, force_target=True)
    raw = form_image(scene.stack, p, seed=seed, truth=scene.truth)
    return normalize(raw)


def python_postprocess(out: np.ndarray, offsets: np.ndarray, *, conf: float, iou: float) -> list[tuple[float, float, float, float, float, int]]:
    """Plain-Python reference of decode + per-class greedy NMS (the baseline, not used by nii)."""
    cands = []
    for t in range(out.shape[0]):
        oy, ox = offsets[t]
        for a in range(out.shape[2]):
            scores = out[t, 4:, a]
            c = int(np.argmax(scores))
            s = float(scores[c])
            if s < conf:
                continue
            cx, cy, w, h = (float(v) for v in out[t, :4, a])
            cands.append((cx - w / 2 + ox, cy - h / 2 + oy, cx + w / 2 + ox, cy + h / 2 + oy, s, c))
    cands.sort(key=lambda r: -r[4])
    kept: list[tuple[float, float, float, float, float, int]] = []
    for b in cands:
        ok = True
        for k in kept:
            if k[5] != b[5]:
                continue
            ix = max(0.0, min(b[2], k[2]) - max(b[0], k[0]))
            iy = max(0.0, min(b[3], k[3]) - max(b[1], k[1]))
            inter = ix * iy
            union = (b[2] - b[0]) * (b[3] - b[1]) + (k[2] - k[0]) * (k[3] - k[1]) - inter
            if union > 0 and inter / union > iou:
                ok = False
                break
        if ok:
            kept.append(b)
    return kept


def _pct(x: list[float]) -> dict[str, float]:
    a = np.asarray(x, np.float64) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2), "min_ms": round(float(a.min()), 2)}


def _time_scan(det: Any, scan: Any, repeat: int) -> dict[str, Any]:
    from ..detect.detector import (
        decode_outputs,
        live_tiles,
        merge_tile_fragments,
        nms_class_aware,
    )
    from ..detect.evidence import box_evidence, material_anomalies
    from ..detect.rescore import input_kind_index

    cfg = det.config
    det.detect(scan)  # warm-up (session, caches)
    t_total, t_enc, t_inf, t_post, t_ev, t_py, t_copy, t_2nd, t_seq = [], [], [], [], [], [], [], [], []
    n_tiles = n_live = n_cand = n_reach = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        dets = det.detect(scan)
        t_total.append(time.perf_counter() - t0)
        # stages, measured apart
        t0 = time.perf_counter()
        enc = det.encode(scan)
        t_enc.append(time.perf_counter() - t0)
        tiles, offsets = det._tiles(enc)
        n_tiles = tiles.shape[0]
        live = live_tiles(tiles)  # as Detector.infer_image: all-air tiles are not run
        tiles, offsets = tiles[live], offsets[live]
        n_live = tiles.shape[0]
        t0 = time.perf_counter()
        out = det.run_tiles(tiles)  # as Detector.infer_image (onnxruntime: side-by-side lanes)
        t_inf.append(time.perf_counter() - t0)
        if getattr(det.backend, "lanes", 1) > 1 and n_live > 1:
            # the same batches one after the other on the multi-threaded session (before 2026-11-27)
            t0 = time.perf_counter()
            for i in range(0, n_live, det.batch_size):
                det.backend(det.backend.prepare(tiles[i : i + det.batch_size]))
            t_seq.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        raw = decode_outputs(out, offsets=offsets, tile=cfg.tile_size, image_hw=enc.shape[:2], conf=cfg.min_conf)
        raw = raw.take(nms_class_aware(raw.boxes, raw.scores, raw.class_ids, iou=cfg.nms_iou))
        raw = merge_tile_fragments(raw)
        t_post.append(time.perf_counter() - t0)
        if det.rescorer is not None:
            # the second stage as detect() runs it at the default operating point: on the
            # candidates whose YOLO score can reach their class's threshold
            reach = det._second_stage_reach(raw.scores, raw.class_ids, det.thresholds.for_far(None), kind=input_kind_index(scan))
            t0 = time.perf_counter()
            det.rescorer.rescore(scan, det._to_scan_frame(raw.boxes[reach], scan, enc.shape[:2]), raw.scores[reach], raw.class_ids[reach],
                                 thresholds=det.thresholds.for_far(None))
            t_2nd.append(time.perf_counter() - t0)
            n_cand, n_reach = len(raw.scores), int(reach.sum())
        t0 = time.perf_counter()
        boxes = det._to_scan_frame(raw.boxes[: 10], scan, enc.shape[:2])
        for bx in boxes:
            box_evidence(scan, bx)
        material_anomalies(scan, model_boxes=boxes)
        t_ev.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        python_postprocess(out, offsets, conf=cfg.min_conf, iou=cfg.nms_iou)
        t_py.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        enc.copy()
        tiles.copy()
        t_copy.append(time.perf_counter() - t0)
    seq = {} if not t_seq else {"stage_inference_one_session_in_turn": _pct(t_seq), "inference_lanes": int(det.backend.lanes)}
    second = {} if not t_2nd else {
        "stage_second_stage": _pct(t_2nd),
        "candidates": int(n_cand),
        "second_stage_candidates": n_reach,
    }
    return {
        "scan_shape": list(scan.shape),
        "scan_pitch_mm": list(scan.pixel_pitch_mm),
        "megapixels": round(scan.shape[1] * scan.shape[2] / 1e6, 2),
        "encoded_shape": list(enc.shape[:2]),
        "tiles": int(n_tiles),
        "tiles_run": int(n_live),
        "detections": len(dets),
        "detect_total": _pct(t_total),
        "stage_encode": _pct(t_enc),
        "stage_inference": _pct(t_inf),
        **seq,
        "stage_decode_nms_merge": _pct(t_post),
        "stage_evidence_anomalies": _pct(t_ev),
        **second,
        "baseline_python_postprocess": _pct(t_py),
        "memory_copy_bound": _pct(t_copy),
        "inference_per_tile_ms": round(float(np.median(t_inf)) * 1e3 / max(n_live, 1), 2),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..detect import Detector
    from ..detect._ultralytics import available
    from ..errors import ModelError

    try:
        model = args.model if args.model is not None else str(Detector.load(None).folder)
    except ModelError:
        from .._assets import asset_dir

        model = str(asset_dir("detectors") / "demo-tiny")
    det = Detector.load(model, threads=args.threads, batch_size=args.batch)
    scans = {"baggage": _scan("baggage_sandwich_140", args.seed)}
    if not args.no_container:
        h, w = (int(v) for v in args.container.lower().split("x"))
        from ..profiles import load_profile

        line = load_profile("cargo_300").line_pitch_mm
        scans["container"] = _scan("cargo_300", args.seed, channels=h, length_cm=w * line / 10.0)
    res: dict[str, Any] = {
        "benchmark": "detect",
        "model": Path(det.folder).name,
        "model_arch": det.config.extra.get("model_arch"),
        "tile_size": det.config.tile_size,
        "pitch_mm": det.config.pitch_mm,
        "threads": args.threads,
        "batch": args.batch,
        "cpu_count": os.cpu_count(),
        "backends": {},
    }
    backends = [("onnx", det)]
    if not args.no_ultralytics and available() and (Path(det.folder) / "model.pt").is_file():
        pt = Detector.load(model, backend="ultralytics", threads=args.threads, batch_size=args.batch)
        backends.append(("ultralytics", pt))
    for name, d in backends:
        res["backends"][name] = {kind: _time_scan(d, scan, args.repeat if kind == "baggage" else max(3, args.repeat // 5)) for kind, scan in scans.items()}
    return res
