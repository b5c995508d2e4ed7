"""Per-scan outputs of ``nii scan``: JSON report, annotated PNG, results HDF5, DICOS DX + TDR.

=======  ==================================================================================
format   files (``<stem>`` is the scan id made file-safe and unique within the run)
=======  ==================================================================================
json     ``<stem>.json`` — report, schema ``nii-scan-report/1`` (:mod:`nii.schemas`)
png      ``<stem>.png`` — operator pseudo-colour image, boxes, labels, header strip
h5       ``<stem>.h5`` — results HDF5 (schema ``nii-scan/1``: raw + calibrated maps) plus
         ``/detections`` (schema ``nii-detections/1``)
tdr      ``<stem>.dx.dcm`` (DICOS DX image) and ``<stem>.tdr.dcm`` (DICOS Threat Detection
         Report referencing it, :mod:`nii.tdr`)
=======  ==================================================================================

Every file is written atomically (temporary name, then rename), so an interrupted run never
leaves a half-written output and never destroys an earlier complete one. The JSON report is
written last and names the other files (relative to its folder), so a reader that finds a
report finds complete outputs beside it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .alarms import count_alarms
from ._atomic import atomic_path, atomic_write_text
from ._version import __version__
from .errors import InvalidParameterError

__all__ = [
    "FORMATS",
    "DETECTIONS_SCHEMA",
    "write_outputs",
    "build_report",
    "annotated_image",
    "output_stem",
    "class_color",
    "ANOMALY_RGB",
]

logger = logging.getLogger(__name__)

#: Output formats of ``nii scan --formats`` (the single list; the CLI reads it).
FORMATS = ("json", "png", "h5", "tdr")
#: Schema of the ``/detections`` group added to a results HDF5.
DETECTIONS_SCHEMA = "nii-detections/1"

#: Box colour per known class (RGB). Unknown classes get a stable colour from their name.
CLASS_RGB: Mapping[str, tuple[int, int, int]] = {
    "ivory": (255, 215, 0),
    "ivory_worked": (255, 140, 0),
    "pangolin_scales": (220, 20, 60),
    "rhino_horn": (180, 0, 180),
}
#: Material anomalies (physics cue, not a model detection) are drawn dashed in this colour.
ANOMALY_RGB = (0, 230, 230)


def class_color(name: str) -> tuple[int, int, int]:
    """Display colour (RGB) of a class: fixed for the known classes, else derived from the name."""
    if name in CLASS_RGB:
        return CLASS_RGB[name]
    h = hashlib.sha256(name.encode("utf-8")).digest()
    # saturated, mid-bright colour so that black label text stays legible
    import colorsys  # noqa: PLC0415

    r, g, b = colorsys.hsv_to_rgb(h[0] / 255.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def output_stem(result: Any, used: set[str] | None = None) -> str:
    """File stem for a result: its scan id (or source stem), made file-safe and unique within ``used``."""
    base = result.scan_id or (Path(result.source).stem if result.source else "scan")
    base = "".join(c if c.isalnum() or c in "-_" else "_" for c in base).strip("_") or "scan"
    stem = base
    if used is not None:
        i = 2
        while stem in used:
            stem = f"{base}-{i}"
            i += 1
        used.add(stem)
    return stem


def _display_rgb(scan) -> np.ndarray:
    """The operator picture of ``scan`` as a new, writable RGB uint8 array."""
    if scan.color is not None:
        if scan.material is not None and not scan.rendered:
            from .materials import despeckle_display  # noqa: PLC0415

            return despeckle_display(np.asarray(scan.color, dtype=np.uint8), scan.material)
        return np.array(scan.color, dtype=np.uint8, copy=True)
    # no colour map (e.g. normaliser unavailable): grey from the highest energy, display law of nii.materials
    from .materials import DISPLAY_GAMMA  # noqa: PLC0415

    l_high = np.asarray(scan.attenuation[-1], dtype=np.float32)
    g = np.clip(np.exp(-DISPLAY_GAMMA * np.maximum(l_high, 0)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=2)


def _dets(result: Any) -> list[dict[str, Any]]:
    out = []
    for i, det in enumerate(result.detections):
        d = dict(det.to_dict())
        d["index"] = i
        out.append(d)
    return out


def _alarm_summary(dets: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    classes: list[str] = []
    for d in dets:
        if d["class"] not in classes:
            classes.append(d["class"])
    return {
        "n_detections": len(dets),
        "n_yolo": sum(d.get("origin") == "yolo" for d in dets),
        "n_material_anomaly": sum(d.get("origin") == "material_anomaly" for d in dets),
        "classes": classes,
        "max_confidence": max((float(d["confidence"]) for d in dets), default=None),
    }


def _summary_text(result: Any, dets: Sequence[Mapping[str, Any]]) -> str:
    if not dets:
        return "CLEAR: no flags"
    head = "ALARM" if count_alarms(dets) else "CLEAR (material cues only)"
    counts: dict[str, int] = {}
    for d in dets:
        key = d["class"] + (" (anomaly)" if d.get("origin") == "material_anomaly" else "")
        counts[key] = counts.get(key, 0) + 1
    return f"{head}: {len(dets)} flag(s) - " + ", ".join(f"{n}x {k}" for k, n in counts.items())


def _model_text(result: Any) -> str:
    """``model NAME at FAR 1 %`` from the last ``detect`` provenance step ("" when none)."""
    prov = getattr(getattr(result, "scan", None), "provenance", None)
    steps = [s for s in getattr(prov, "steps", ()) if s.name == "detect"]
    if not steps:
        return ""
    p = steps[-1].params
    far = p.get("far")
    at = f" at FAR {float(far) * 100:.3g} %" if isinstance(far, (int, float)) else ""
    return f"model {p.get('model', '?')}{at}"


def annotated_image(result: Any, *, min_width: int = 800, processed_at: str | None = None) -> np.ndarray:
    """Operator image (RGB uint8): header strip, pseudo-colour scan, one labelled box per detection.

    The header names the scan, its time, the nii version, the verdict and, when the result was
    produced by a detector, the model and its operating point (``model NAME at FAR 1 %``).

    Model detections are solid boxes in a colour per class; material anomalies are dashed boxes in
    :data:`ANOMALY_RGB` with an ``anomaly:`` prefix. The scan is enlarged by an integer factor
    (nearest neighbour) to at least ``min_width`` pixels so labels stay legible at 100 % zoom; it
    is never shrunk.
    """
    import cv2  # noqa: PLC0415

    if min_width < 1:
        raise InvalidParameterError(f"min_width must be >= 1, got {min_width}")
    scan = result.scan
    img = _display_rgb(scan)  # a new array: never draw on the frozen scan
    h0, w0 = img.shape[:2]
    scale = max(1, int(np.ceil(min_width / w0)))
    if scale > 1:
        img = cv2.resize(img, (w0 * scale, h0 * scale), interpolation=cv2.INTER_NEAREST)
    font, fs, th = cv2.FONT_HERSHEY_SIMPLEX, 0.55, 1
    dets = _dets(result)
    boxes = []
    for d in dets:
        x0, y0, x1, y1 = (int(round(float(v) * scale)) for v in d["box_px"])
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        anomaly = d.get("origin") == "material_anomaly"
        color = ANOMALY_RGB if anomaly else class_color(d["class"])
        _outline(img, (x0, y0), (x1, y1), color, dashed=anomaly)
        boxes.append((x0, y0, x1, y1, anomaly, color, d))
    # labels after every outline, model detections first: each takes the first free place of
    # above the box / inside its top edge / below it / inside its bottom edge, so that no label
    # hides another (falls back to the first place when all are taken)
    placed: list[tuple[int, int, int, int]] = []
    H, W = img.shape[:2]
    for x0, y0, x1, y1, anomaly, color, d in sorted(boxes, key=lambda b: b[4]):
        label = f"{'anomaly: ' if anomaly else ''}{d['class']} {float(d['confidence']):.2f}"
        (tw, tht), base = cv2.getTextSize(label, font, fs, th)
        bh, bw = tht + base + 4, tw + 6
        lx0, ly0 = _label_spot((x0, y0, x1, y1), (bw, bh), placed, (H, W))
        placed.append((lx0, ly0, lx0 + bw, ly0 + bh))
        cv2.rectangle(img, (lx0, ly0), (lx0 + bw, ly0 + bh), color, -1)
        cv2.putText(img, label, (lx0 + 3, ly0 + tht + 2), font, fs, (0, 0, 0), th, cv2.LINE_AA)
    when = scan.acquired_at or processed_at or _now()
    line1 = f"scan {result.scan_id}   {when}   nii {__version__}"
    # the model and operating point: right-aligned on the first line when they fit, else a third line
    model = _model_text(result)
    w1 = cv2.getTextSize(line1, font, 0.55, 1)[0][0]
    wm = cv2.getTextSize(model, font, 0.5, 1)[0][0] if model else 0
    beside = bool(model) and 8 + w1 + 24 + wm + 8 <= img.shape[1]
    header = np.full((48 if beside or not model else 66, img.shape[1], 3), 28, np.uint8)
    cv2.putText(header, line1, (8, 19), font, 0.55, (235, 235, 235), 1, cv2.LINE_AA)
    cv2.putText(header, _summary_text(result, dets), (8, 40), font, 0.6, (255, 70, 70) if count_alarms(dets) else (90, 220, 90), 2 if count_alarms(dets) else 1, cv2.LINE_AA)
    if model:
        cv2.putText(header, model, (img.shape[1] - 8 - wm, 19) if beside else (8, 59), font, 0.5, (180, 180, 180), 1, cv2.LINE_AA)
    return np.vstack([header, img])


def _label_spot(box: tuple[int, int, int, int], size: tuple[int, int], placed: Sequence[tuple[int, int, int, int]], hw: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of a ``size = (w, h)`` label for ``box`` (x0, y0, x1, y1): the first of above
    the box / inside its top edge / below it / inside its bottom edge that lies in the image and
    overlaps no rectangle of ``placed``; the first in the image when every one is taken."""
    x0, y0, x1, y1 = box
    bw, bh = size
    H, W = hw
    lx0 = min(max(x0, 0), max(W - bw, 0))
    spots = [y for y in (y0 - bh, y0 + 2, y1 + 2, y1 - bh - 2) if 0 <= y <= H - bh] or [min(max(y0, 0), max(H - bh, 0))]
    free = [y for y in spots if not any(lx0 < px1 and px0 < lx0 + bw and y < py1 and py0 < y + bh for px0, py0, px1, py1 in placed)]
    return lx0, (free or spots)[0]


def _outline(img: np.ndarray, p0, p1, color, *, dashed: bool, width: int = 2) -> None:
    import cv2  # noqa: PLC0415

    # dark halo first, so that the box stays visible on any background colour
    if not dashed:
        cv2.rectangle(img, p0, p1, (0, 0, 0), width + 2, cv2.LINE_8)
        cv2.rectangle(img, p0, p1, color, width, cv2.LINE_8)
        return
    (x0, y0), (x1, y1) = p0, p1
    dash = 8
    for a, b, fixed, horiz in ((x0, x1, y0, True), (x0, x1, y1, True), (y0, y1, x0, False), (y0, y1, x1, False)):
        for s in range(a, b, 2 * dash):
            e = min(s + dash, b)
            pa, pb = ((s, fixed), (e, fixed)) if horiz else ((fixed, s), (fixed, e))
            cv2.line(img, pa, pb, (0, 0, 0), width + 2, cv2.LINE_8)
            cv2.line(img, pa, pb, color, width, cv2.LINE_8)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def build_report(
    result: Any,
    *,
    outputs: Mapping[str, str] | None = None,
    timings_ms: Mapping[str, float] | None = None,
    processed_at: str | None = None,
) -> dict[str, Any]:
    """The JSON report (schema ``nii-scan-report/1``) of one successful result.

    Parameters
    ----------
    result : nii.pipeline.Result
        A result with ``status == "ok"``.
    outputs : mapping, optional
        ``{format: file name}`` of the other outputs, relative to the report's folder.
    timings_ms : mapping, optional
        Stage timings; default ``result.timings_ms``.
    processed_at : str, optional
        ISO-8601 time of processing; default now (UTC).
    """
    if not getattr(result, "ok", False) or result.scan is None:
        raise InvalidParameterError(f"result of {result.source or result.scan_id!r} is not a successful scan result")
    from .schemas import SCAN_REPORT  # noqa: PLC0415

    scan = result.scan
    dets = _dets(result)
    prov = scan.provenance.to_dict()
    src = scan.source
    return {
        "schema": SCAN_REPORT,
        "scan_id": result.scan_id or scan.scan_id or "scan",
        "status": "ok",
        "alarm": count_alarms(dets) > 0,
        "alarm_summary": _alarm_summary(dets),
        "source": {
            "path": result.source if result.source is not None else (src.path if src else None),
            "sha256": src.sha256 if src else None,
            "format": src.format if src else None,
        },
        "scanner": {
            "profile": scan.profile,
            "energies": [{"label": e.label, "kvp": e.kvp} for e in scan.energies],
            "pixel_pitch_mm": [float(v) for v in scan.pixel_pitch_mm],
            "shape": [int(v) for v in scan.shape],
            "rendered": bool(scan.rendered),
        },
        "acquired_at": scan.acquired_at,
        "processed_at": processed_at or _now(),
        "nii_version": __version__,
        "provenance": prov,
        "timings_ms": {k: round(float(v), 3) for k, v in (timings_ms if timings_ms is not None else result.timings_ms).items()},
        "detections": dets,
        "outputs": dict(outputs or {}),
        "notes": [str(n) for n in result.notes],
    }


def _check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise InvalidParameterError(f"formats: unknown output format(s) {bad}; choose from {', '.join(FORMATS)}")
    if not formats:
        raise InvalidParameterError(f"formats: choose at least one of {', '.join(FORMATS)}")
    return formats


def write_outputs(result: Any, out_dir: str | os.PathLike, *, formats: Iterable[str] = FORMATS, stem: str | None = None) -> dict[str, str]:
    """Write the selected outputs of one successful result; return ``{format: path}``.

    ``tdr`` writes two files, reported as ``"dx"`` and ``"tdr"``. The JSON report is written last
    and records the stage timings, including the time spent writing each other output.
    """
    formats = _check_formats(formats)
    if not getattr(result, "ok", False) or result.scan is None:
        raise InvalidParameterError(f"cannot write outputs for a failed result ({result.error})")
    out_dir = Path(out_dir)
    stem = stem or output_stem(result)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", stem):
        raise InvalidParameterError(f"stem {stem!r} must be a plain file-name stem (letters, digits, '-', '_')")
    processed_at = _now()
    timings = dict(result.timings_ms)
    written: dict[str, str] = {}
    if "h5" in formats:
        from .io.hdf5 import write  # noqa: PLC0415

        t0 = time.perf_counter()
        path = out_dir / f"{stem}.h5"
        write(result.scan, path, raw=result.raw, compression="lzf", extra=lambda f: _write_detections(f, result))
        written["h5"] = str(path)
        timings["write_h5"] = (time.perf_counter() - t0) * 1e3
    if "png" in formats:
        import cv2  # noqa: PLC0415

        t0 = time.perf_counter()
        path = out_dir / f"{stem}.png"
        rgb = annotated_image(result, processed_at=processed_at)
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
        if not ok:  # pragma: no cover - OpenCV failure
            raise InvalidParameterError(f"PNG encoding failed for {stem}")
        with atomic_path(path) as tmp:
            tmp.write_bytes(buf.tobytes())
        written["png"] = str(path)
        timings["write_png"] = (time.perf_counter() - t0) * 1e3
    if "tdr" in formats:
        from .tdr import write_dx_and_tdr  # noqa: PLC0415

        t0 = time.perf_counter()
        dx_path, tdr_path = write_dx_and_tdr(result, out_dir / f"{stem}.dx.dcm", out_dir / f"{stem}.tdr.dcm")
        written["dx"] = str(dx_path)
        written["tdr"] = str(tdr_path)
        timings["write_tdr"] = (time.perf_counter() - t0) * 1e3
    if "json" in formats:
        path = out_dir / f"{stem}.json"
        doc = build_report(
            result,
            outputs={k: Path(v).name for k, v in written.items()},
            timings_ms=timings,
            processed_at=processed_at,
        )
        atomic_write_text(path, json.dumps(doc, indent=2, allow_nan=False))
        written["json"] = str(path)
    return written


def _write_detections(f: Any, result: Any) -> None:
    """Add ``/detections`` (schema ``nii-detections/1``) to an open results HDF5.

    Layout: ``boxes_px`` (N, 4) float32 xyxy, ``boxes_mm`` (N, 4) float32 (NaN unknown),
    ``confidence`` (N,) float32, ``classes`` (N,) str, ``origin`` (N,) str, and the full
    per-detection dictionaries (evidence included) as the JSON attribute ``json``.
    """
    import h5py  # noqa: PLC0415

    dets = _dets(result)
    g = f.create_group("detections")
    g.attrs["schema"] = DETECTIONS_SCHEMA
    g.attrs["json"] = json.dumps(dets, allow_nan=False)
    g.attrs["alarm"] = count_alarms(dets) > 0

    def box(d, key):
        v = d.get(key)
        return [np.nan if x is None else float(x) for x in v] if v else [np.nan] * 4

    g.create_dataset("boxes_px", data=np.array([box(d, "box_px") for d in dets], np.float32).reshape(-1, 4))
    g.create_dataset("boxes_mm", data=np.array([box(d, "box_mm") for d in dets], np.float32).reshape(-1, 4))
    g.create_dataset("confidence", data=np.array([float(d["confidence"]) for d in dets], np.float32))
    strs = h5py.string_dtype()
    g.create_dataset("classes", data=np.array([d["class"] for d in dets], dtype=object), dtype=strs)
    g.create_dataset("origin", data=np.array([d.get("origin", "yolo") for d in dets], dtype=object), dtype=strs)


def read_detections(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read the detections of a results HDF5 written by :func:`write_outputs` (empty list if none)."""
    import h5py  # noqa: PLC0415

    from .errors import CorruptFileError  # noqa: PLC0415

    try:
        with h5py.File(path, "r") as f:
            if "detections" not in f:
                return []
            raw = f["detections"].attrs.get("json", "[]")
            return json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except (OSError, ValueError) as exc:
        raise CorruptFileError(f"results HDF5: cannot read /detections ({exc})", path=path) from exc
