"""Export operator decisions as training labels (``nii dataset add-feedback DB``).

For every reviewed scan whose detections are *all* decided, the export writes, under ``out``::

    images/<key>.png     full scan, detector encoding nii-det/1 (nii.encoding), native pitch,
                         channel order of nii.dataset.yolo.write_tile
    labels/<key>.txt     YOLO lines "class cx cy w h" (normalised) of the positives
    data.yaml            Ultralytics dataset file (train: images), classes.txt
    coco.json            the same as COCO (xywh pixels); rejected false alarms are listed per
                         image under "nii_hard_negatives" (COCO has no negative annotations)
    feedback.json        manifest (schema nii-feedback/1): classes, per image the scan id, report
                         SHA-256, pixel pitch, positives and hard negatives with operator and time,
                         verdict; skipped scans with the reason

Positives are confirmed detections (their class), relabelled detections (the new class) and
boxes the operator drew for missed objects. Rejected detections are hard negatives: their image
is written with no label there, which teaches the detector that region is background.

A scan is skipped (and listed with the reason) when a detection is still undecided, when a
material anomaly was confirmed without a class (relabel it to a contraband class), or when a
positive's class is not among ``classes``. Files are written atomically; the results folder and
the decision database are only read.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write_text
from ..errors import FileAccessError, InvalidParameterError

__all__ = ["FEEDBACK_SCHEMA", "DEFAULT_CLASSES", "collect_feedback", "export_feedback"]

FEEDBACK_SCHEMA = "nii-feedback/1"
#: Contraband classes of the shipped detector (order = YOLO class ids).
DEFAULT_CLASSES = ("ivory", "ivory_worked", "pangolin_scales", "rhino_horn")


def _open(db_path: str | os.PathLike, results_dir: str | os.PathLike | None):
    from .results import ResultsIndex  # noqa: PLC0415
    from .store import DecisionStore  # noqa: PLC0415

    if not Path(db_path).is_file():
        raise FileAccessError("decision database not found", path=db_path)
    store = DecisionStore(db_path)
    if results_dir is None:
        results_dir = store.get_meta("results_dir")
        if results_dir is None:
            raise InvalidParameterError(f"{db_path}: the database does not record its results folder; pass results_dir")
    return store, ResultsIndex(results_dir)


def collect_feedback(db_path: str | os.PathLike, *, results_dir: str | os.PathLike | None = None, classes: Sequence[str] = DEFAULT_CLASSES) -> dict[str, Any]:
    """Gather positives and hard negatives per scan from the decision log (no files written).

    ``results_dir`` defaults to the folder the review server recorded in the database.
    Returns ``{"images": [...], "skipped": [{"key", "scan_id", "reason"}]}``.
    """
    from .store import derive_state  # noqa: PLC0415

    store, index = _open(db_path, results_dir)
    by: dict[str, list[dict[str, Any]]] = {}
    for d in store.history():
        by.setdefault(d["scan_key"], []).append(d)
    images, skipped = [], []
    for key in sorted(by):
        hist = by[key]
        try:
            entry = index.get(key)
        except FileAccessError:
            skipped.append({"key": key, "scan_id": hist[0]["scan_id"], "reason": "scan no longer in the results folder"})
            continue
        report = entry.report
        st = derive_state(hist)
        dets = report.get("detections", [])
        pos, neg, reason = [], [], None
        for i, det in enumerate(dets):
            dec = st["detections"].get(i)
            if dec is None:
                reason = f"detection {i} ({det['class']}) is undecided"
                break
            item = {"box_px": [float(v) for v in det["box_px"]], "detection_index": i, "operator": dec["operator"], "decided_at": dec["created_at"]}
            if dec["action"] == "reject":
                neg.append({**item, "class": det["class"], "origin": det.get("origin"), "confidence": det["confidence"]})
                continue
            cls = dec["label"] if dec["action"] == "relabel" else det["class"]
            if dec["action"] == "confirm" and det.get("origin") == "material_anomaly" and cls not in classes:
                reason = f"material anomaly {i} ({cls}) confirmed without a contraband class: relabel it"
                break
            pos.append({**item, "class": cls, "source": dec["action"]})
        if reason is None:
            for m in st["missed"]:
                pos.append({"box_px": m["box"], "class": m["label"], "source": "missed", "operator": m["operator"], "decided_at": m["created_at"]})
            bad = sorted({p["class"] for p in pos if p["class"] not in classes})
            if bad:
                reason = f"class(es) {bad} not in {list(classes)}"
        if reason is not None:
            skipped.append({"key": key, "scan_id": report.get("scan_id"), "reason": reason})
            continue
        if not pos and not neg and st["verdict"] is None:
            skipped.append({"key": key, "scan_id": report.get("scan_id"), "reason": "no box decision and no verdict"})
            continue
        images.append(
            {
                "key": key,
                "scan_id": report.get("scan_id"),
                "report_sha256": entry.report_sha256,
                "source_sha256": (report.get("source") or {}).get("sha256"),
                "pixel_pitch_mm": (report.get("scanner") or {}).get("pixel_pitch_mm"),
                "verdict": st["verdict"]["action"] if st["verdict"] else None,
                "positives": pos,
                "hard_negatives": neg,
                "_entry": entry,
            }
        )
    return {"images": images, "skipped": skipped, "_index": index}


def export_feedback(
    db_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    results_dir: str | os.PathLike | None = None,
    classes: Sequence[str] = DEFAULT_CLASSES,
) -> dict[str, Any]:
    """Write the feedback dataset (see module docstring) under ``out``; return the manifest.

    Parameters
    ----------
    db_path : path
        Decision database of ``nii review``.
    out : path
        Output folder (outside the results folder).
    results_dir : path, optional
        Results folder; default the one the review server recorded in the database.
    classes : sequence of str
        Contraband classes, in YOLO class-id order.
    """
    from ..dataset.yolo import write_data_yaml, write_tile  # noqa: PLC0415
    from ..encoding import ENCODING, encode_detector_input  # noqa: PLC0415
    from .results import read_maps  # noqa: PLC0415

    classes = tuple(str(c) for c in classes)
    if not classes or len(set(classes)) != len(classes):
        raise InvalidParameterError(f"classes must be distinct and non-empty, got {classes}")
    out = Path(out).resolve()
    got = collect_feedback(db_path, results_dir=results_dir, classes=classes)
    index = got["_index"]
    res_root = index.root
    if out == res_root or res_root in out.parents:
        raise InvalidParameterError(f"out {out} lies inside the results folder, which stays read-only")
    coco: dict[str, Any] = {
        "info": {"description": "nii operator feedback", "version": FEEDBACK_SCHEMA, "date_created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")},
        "images": [],
        "annotations": [],
        "categories": [{"id": i, "name": c, "supercategory": "contraband"} for i, c in enumerate(classes)],
    }
    manifest_images = []
    ann_id = 1
    for img_id, im in enumerate(got["images"], start=1):
        entry = im.pop("_entry")
        try:
            maps = read_maps(index.file(entry, "h5"))
        except FileAccessError as exc:
            got["skipped"].append({"key": im["key"], "scan_id": im["scan_id"], "reason": f"no results HDF5: {exc.reason}"})
            continue
        att = maps["attenuation"]
        enc = encode_detector_input(att[0] if att.shape[0] > 1 else None, att[-1], maps.get("zeff"), maps.get("material"))
        h, w = enc.shape[:2]
        name = im["key"].replace("~", "__")
        boxes = np.array([p["box_px"] for p in im["positives"]], np.float32).reshape(-1, 4)
        ids = [classes.index(p["class"]) for p in im["positives"]]
        write_tile(out / "images" / f"{name}.png", out / "labels" / f"{name}.txt", enc, boxes, ids)
        coco["images"].append(
            {"id": img_id, "file_name": f"images/{name}.png", "width": w, "height": h, "nii_scan_id": im["scan_id"],
             "nii_hard_negatives": [{"bbox": _xywh(n["box_px"]), "rejected_class": n["class"]} for n in im["hard_negatives"]]}
        )
        for p, c in zip(im["positives"], ids):
            bb = _xywh(p["box_px"])
            coco["annotations"].append({"id": ann_id, "image_id": img_id, "category_id": c, "bbox": bb, "area": bb[2] * bb[3], "iscrowd": 0, "nii_source": p["source"]})
            ann_id += 1
        manifest_images.append({**im, "image": f"images/{name}.png", "label": f"labels/{name}.txt", "size": [h, w]})
    atomic_write_text(out / "coco.json", json.dumps(coco, indent=1) + "\n")
    manifest = {
        "schema": FEEDBACK_SCHEMA,
        "encoding": ENCODING,
        "classes": list(classes),
        "results_dir": str(res_root),
        "decisions_db": str(Path(db_path).resolve()),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "images": manifest_images,
        "skipped": got["skipped"],
        "counts": {
            "images": len(manifest_images),
            "positives": sum(len(i["positives"]) for i in manifest_images),
            "hard_negatives": sum(len(i["hard_negatives"]) for i in manifest_images),
            "skipped": len(got["skipped"]),
        },
    }
    atomic_write_text(out / "feedback.json", json.dumps(manifest, indent=1) + "\n")
    atomic_write_text(out / "classes.txt", "\n".join(classes) + "\n")
    (out / "images").mkdir(parents=True, exist_ok=True)
    write_data_yaml(out, classes, splits={"train": "images"})
    return manifest


def _xywh(b: Sequence[float]) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in b)
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]
