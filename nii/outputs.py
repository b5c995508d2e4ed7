"""Per-scan outputs of ``nii scan``: JSON report, annotated PNG, results HDF5.

Every file is written atomically (temporary name, then rename), so an interrupted run never
leaves a half-written output and never destroys an earlier complete one.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path, atomic_write_text
from .errors import InvalidParameterError

__all__ = ["FORMATS", "write_outputs", "annotated_image", "output_stem"]

logger = logging.getLogger(__name__)

FORMATS = ("json", "png", "h5")

#: Box colour per class (BGR for OpenCV drawing); material anomalies are drawn dashed in magenta.
_CLASS_BGR = {
    "ivory": (0, 215, 255),
    "ivory_worked": (0, 140, 255),
    "pangolin_scales": (60, 20, 220),
    "rhino_horn": (180, 0, 180),
}
_ANOMALY_BGR = (255, 0, 255)


def output_stem(result: Any, used: set[str] | None = None) -> str:
    """File stem for a result: its scan id (or source stem), made unique within ``used``."""
    base = result.scan_id or (Path(result.source).stem if result.source else "scan")
    base = "".join(c if c.isalnum() or c in "-_." else "_" for c in base) or "scan"
    stem = base
    if used is not None:
        i = 2
        while stem in used:
            stem = f"{base}-{i}"
            i += 1
        used.add(stem)
    return stem


def _display_rgb(scan) -> np.ndarray:
    if scan.color is not None:
        return np.asarray(scan.color)
    # no colour map (e.g. normaliser unavailable): grey from the highest energy
    l_high = np.asarray(scan.attenuation[-1], dtype=np.float32)
    g = np.clip(np.exp(-l_high) * 255.0, 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def annotated_image(result: Any, *, min_width: int = 640) -> np.ndarray:
    """Operator image (BGR uint8) with a header strip and one box per detection."""
    import cv2

    scan = result.scan
    rgb = _display_rgb(scan)
    img = np.ascontiguousarray(rgb[..., ::-1])
    scale = max(1.0, min_width / img.shape[1])
    if scale > 1.0:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    for det in result.detections:
        d = det.to_dict()
        x0, y0, x1, y1 = (int(round(v * scale)) for v in d["box_px"])
        anomaly = d.get("origin") == "material_anomaly"
        color = _ANOMALY_BGR if anomaly else _CLASS_BGR.get(d["class"], (0, 255, 255))
        if anomaly:
            _dashed_rect(img, (x0, y0), (x1, y1), color)
        else:
            cv2.rectangle(img, (x0, y0), (x1, y1), color, 2, cv2.LINE_AA)
        label = f"{d['class']} {d['confidence']:.2f}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        ty = max(y0, th + 4)
        cv2.rectangle(img, (x0, ty - th - 4), (x0 + tw + 4, ty), color, -1)
        cv2.putText(img, label, (x0 + 2, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    header = np.full((28, img.shape[1], 3), 32, np.uint8)
    n = len(result.detections)
    summary = f"{result.scan_id}  |  {'ALARM: ' + str(n) + ' flag(s)' if n else 'clear'}"
    if scan.acquired_at:
        summary += f"  |  {scan.acquired_at}"
    cv2.putText(header, summary, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 255) if n else (230, 230, 230), 1, cv2.LINE_AA)
    return np.vstack([header, img])


def _dashed_rect(img, p0, p1, color, dash: int = 8) -> None:
    import cv2

    (x0, y0), (x1, y1) = p0, p1
    for a, b, fixed, horiz in ((x0, x1, y0, True), (x0, x1, y1, True), (y0, y1, x0, False), (y0, y1, x1, False)):
        for s in range(a, b, 2 * dash):
            e = min(s + dash, b)
            pa, pb = ((s, fixed), (e, fixed)) if horiz else ((fixed, s), (fixed, e))
            cv2.line(img, pa, pb, color, 2, cv2.LINE_AA)


def write_outputs(result: Any, out_dir: str | os.PathLike, *, formats=FORMATS, stem: str | None = None) -> dict[str, str]:
    """Write the selected outputs of one successful result; return ``{format: path}``."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise InvalidParameterError(f"unknown output format(s) {bad}; choose from {FORMATS}")
    out_dir = Path(out_dir)
    stem = stem or output_stem(result)
    written: dict[str, str] = {}
    if "h5" in formats:
        from .io.hdf5 import write

        path = out_dir / f"{stem}.h5"
        write(result.scan, path, raw=result.raw, compression="lzf", extra=lambda f: _write_detections(f, result))
        written["h5"] = str(path)
    if "png" in formats:
        import cv2

        path = out_dir / f"{stem}.png"
        ok, buf = cv2.imencode(".png", annotated_image(result))
        if not ok:  # pragma: no cover - OpenCV failure
            raise InvalidParameterError(f"PNG encoding failed for {stem}")
        with atomic_path(path) as tmp:
            tmp.write_bytes(buf.tobytes())
        written["png"] = str(path)
    if "json" in formats:
        path = out_dir / f"{stem}.json"
        doc = result.to_dict()
        doc["outputs"] = dict(written)
        atomic_write_text(path, json.dumps(doc, indent=2, default=str))
        written["json"] = str(path)
    return written


def _write_detections(f: Any, result: Any) -> None:
    """Add ``/detections`` (JSON + arrays) to an open results HDF5."""
    import h5py

    dets = [d.to_dict() for d in result.detections]
    g = f.create_group("detections")
    g.attrs["json"] = json.dumps(dets, default=str)
    g.create_dataset("boxes_px", data=np.array([d["box_px"] for d in dets], np.float32).reshape(-1, 4))
    g.create_dataset("confidence", data=np.array([d["confidence"] for d in dets], np.float32))
    g.create_dataset("classes", data=np.array([d["class"] for d in dets], dtype=object), dtype=h5py.string_dtype())
