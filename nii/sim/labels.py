"""Dataset-level labels of simulated scans: COCO JSON and YOLO text files.

* COCO: one ``annotations.coco.json`` with ``images`` (file name, width = W, height = H),
  ``annotations`` (``bbox = [x, y, w, h]`` in pixels, ``area`` = mask area when known) and
  ``categories`` (id = index in :data:`~nii.sim.phantoms.TRUTH_CLASSES` + 1).
* YOLO: ``labels/<stem>.txt``, one line ``class cx cy w h`` per box, normalised to [0, 1] by the
  image width (W, scan lines) and height (H, detector channels); an empty file for a negative scan.
  ``classes.txt`` and ``dataset.yaml`` name the classes.

Boxes are the truth of :class:`~nii.containers.Truth` (``x0, y0, x1, y1``, x along W).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write_text
from ..containers import Truth
from ..errors import InvalidDataError, InvalidParameterError
from .phantoms.base import TRUTH_CLASSES

__all__ = ["LabelRecord", "yolo_lines", "parse_yolo", "coco_dataset", "write_yolo", "write_coco", "write_class_files"]


@dataclass(frozen=True)
class LabelRecord:
    """Labels of one scan: file name (relative to the dataset folder), image size, truth."""

    file_name: str
    height: int
    width: int
    truth: Truth
    areas: tuple[float, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def _class_index(name: str, classes: Sequence[str]) -> int:
    try:
        return list(classes).index(name)
    except ValueError:
        raise InvalidDataError(f"truth class {name!r} is not one of {tuple(classes)}") from None


def yolo_lines(truth: Truth, height: int, width: int, *, classes: Sequence[str] = TRUTH_CLASSES) -> list[str]:
    """YOLO lines ``"k cx cy w h"`` (normalised) for ``truth`` on an ``height x width`` image."""
    if height < 1 or width < 1:
        raise InvalidParameterError(f"image size must be positive, got {height} x {width}")
    out = []
    for (x0, y0, x1, y1), name in zip(np.asarray(truth.boxes, np.float64), truth.classes):
        x0, x1 = np.clip([x0, x1], 0, width)
        y0, y1 = np.clip([y0, y1], 0, height)
        cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
        w, h = (x1 - x0) / width, (y1 - y0) / height
        out.append(f"{_class_index(name, classes)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return out


def parse_yolo(text: str, height: int, width: int, *, classes: Sequence[str] = TRUTH_CLASSES) -> Truth:
    """Inverse of :func:`yolo_lines` (to 1e-6 of the image size)."""
    boxes, names = [], []
    for k, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 5:
            raise InvalidDataError(f"YOLO line {k + 1} must have 5 fields, got {line!r}")
        c = int(parts[0])
        if not 0 <= c < len(classes):
            raise InvalidDataError(f"YOLO line {k + 1}: class {c} out of range")
        cx, cy, w, h = (float(v) for v in parts[1:])
        boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
        names.append(classes[c])
    return Truth(np.array(boxes, np.float32).reshape(-1, 4), tuple(names))


def coco_dataset(records: Iterable[LabelRecord], *, classes: Sequence[str] = TRUTH_CLASSES, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """A COCO detection dataset (dict) for ``records``, images and annotations in record order."""
    images, anns = [], []
    ann_id = 1
    for img_id, rec in enumerate(records, start=1):
        images.append({"id": img_id, "file_name": rec.file_name, "height": int(rec.height), "width": int(rec.width), **rec.extra})
        for k, ((x0, y0, x1, y1), name) in enumerate(zip(np.asarray(rec.truth.boxes, np.float64), rec.truth.classes)):
            w, h = float(x1 - x0), float(y1 - y0)
            area = float(rec.areas[k]) if k < len(rec.areas) else w * h
            anns.append({"id": ann_id, "image_id": img_id, "category_id": _class_index(name, classes) + 1,
                         "bbox": [float(x0), float(y0), w, h], "area": area, "iscrowd": 0})
            ann_id += 1
    cats = [{"id": k + 1, "name": c, "supercategory": "wildlife"} for k, c in enumerate(classes)]
    return {"info": dict(info or {}), "images": images, "annotations": anns, "categories": cats}


def write_coco(path: str | os.PathLike, records: Iterable[LabelRecord], *, classes: Sequence[str] = TRUTH_CLASSES,
               info: dict[str, Any] | None = None) -> Path:
    """Write :func:`coco_dataset` to ``path`` (atomically)."""
    data = coco_dataset(records, classes=classes, info=info)
    return atomic_write_text(path, json.dumps(data, indent=1, sort_keys=False) + "\n")


def write_yolo(folder: str | os.PathLike, record: LabelRecord, *, classes: Sequence[str] = TRUTH_CLASSES) -> Path:
    """Write ``<folder>/<stem of file_name>.txt`` for one scan (empty for a negative)."""
    lines = yolo_lines(record.truth, record.height, record.width, classes=classes)
    target = Path(folder) / (Path(record.file_name).stem + ".txt")
    return atomic_write_text(target, "".join(line + "\n" for line in lines))


def write_class_files(folder: str | os.PathLike, *, classes: Sequence[str] = TRUTH_CLASSES) -> list[Path]:
    """Write ``classes.txt`` and a YOLO-style ``dataset.yaml`` naming the classes.

    The scans are nii HDF5 (raw counts), not images: ``labels/<scan>.txt`` hold YOLO boxes on the
    full scan (width = scan lines W, height = detector channels H). ``nii dataset`` turns scans
    into the normalised image tiles a YOLO trainer reads.
    """
    folder = Path(folder)
    names = "\n".join(f"  {k}: {c}" for k, c in enumerate(classes))
    yaml = (
        "# nii simulated scans. Scans are nii HDF5 (raw counts), not images; labels/<scan>.txt are YOLO\n"
        "# boxes (class cx cy w h, normalised by W = scan lines and H = detector channels) on the full scan.\n"
        "# `nii dataset` builds the image tiles a YOLO trainer reads.\n"
        f"path: .\nscans: '*.h5'\nlabels: labels\nnc: {len(classes)}\nnames:\n{names}\n"
    )
    return [atomic_write_text(folder / "classes.txt", "".join(c + "\n" for c in classes)),
            atomic_write_text(folder / "dataset.yaml", yaml)]
