"""YOLO-format files: tile images (PNG), label text files, the dataset YAML.

Channel order: Ultralytics reads images with OpenCV (BGR) and reverses them to RGB before the
network. nii writes the ``nii-det/1`` channels so that, after that reversal, the network sees
them in encoding order (channel 0 first) — the same order :class:`nii.detect.Detector` feeds
to onnxruntime. :func:`read_tile` undoes it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, atomic_write_text
from ..errors import CorruptFileError, FileAccessError, InvalidDataError

__all__ = ["labels_text", "read_labels", "read_tile", "write_data_yaml", "write_tile"]


def labels_text(boxes: np.ndarray, class_ids: Sequence[int], hw: tuple[int, int]) -> str:
    """YOLO label lines ``cls cx cy w h`` (normalised to the image size) for xyxy pixel boxes."""
    h, w = hw
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if b.shape[0] != len(class_ids):
        raise InvalidDataError(f"{b.shape[0]} boxes but {len(class_ids)} class ids")
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, h)
    lines = []
    for (x0, y0, x1, y1), c in zip(b, class_ids):
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        lines.append(f"{int(c)} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def write_tile(image_path: str | os.PathLike, label_path: str | os.PathLike, image: np.ndarray, boxes: np.ndarray, class_ids: Sequence[int]) -> None:
    """Write one encoded tile (``uint8 (H, W, 3)``, encoding channel order) and its labels."""
    import cv2

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InvalidDataError(f"tile must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:  # pragma: no cover - OpenCV failure
        raise FileAccessError("PNG encoding failed", path=image_path)
    with atomic_path(image_path) as tmp:
        tmp.write_bytes(buf.tobytes())
    atomic_write_text(label_path, labels_text(boxes, class_ids, image.shape[:2]))


def read_tile(image_path: str | os.PathLike) -> np.ndarray:
    """Read a tile written by :func:`write_tile` back in encoding channel order."""
    import cv2

    img = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise CorruptFileError("cannot decode image", path=image_path)
    if img.ndim == 2:
        return img[..., None]
    return np.ascontiguousarray(img[..., ::-1])


def read_labels(label_path: str | os.PathLike, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """YOLO labels -> ``(boxes xyxy px float32 (N, 4), class_ids int64 (N,))``; missing file = no objects."""
    p = Path(label_path)
    if not p.is_file():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    rows = [ln.split() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    try:
        arr = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    except ValueError as exc:
        raise CorruptFileError(f"YOLO label lines must be 'cls cx cy w h': {exc}", path=p) from exc
    h, w = hw
    cx, cy, bw, bh = arr[:, 1] * w, arr[:, 2] * h, arr[:, 3] * w, arr[:, 4] * h
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1).astype(np.float32)
    return boxes, arr[:, 0].astype(np.int64)


def write_data_yaml(root: str | os.PathLike, classes: Sequence[str], *, splits: dict[str, str], channels: int = 3) -> Path:
    """Write the Ultralytics dataset YAML ``root/data.yaml`` (absolute ``path``)."""
    root = Path(root).resolve()
    lines = [f"path: {root.as_posix()}"]
    for k, v in splits.items():
        lines.append(f"{k}: {v}")
    lines.append(f"channels: {int(channels)}")
    lines.append("names:")
    for i, c in enumerate(classes):
        lines.append(f"  {i}: {c}")
    return atomic_write_text(root / "data.yaml", "\n".join(lines) + "\n")
