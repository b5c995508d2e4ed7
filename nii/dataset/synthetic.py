"""Synthetic detector inputs drawn directly in the ``nii-det/1`` encoding (no X-ray physics).

For tests and the tiny demo model only: each class is a simple shape with a material signature
(attenuation and Zeff) on a cluttered background, so that a very small network learns it in
seconds. Real training data come from the simulator (:mod:`nii.dataset.builder`).

==================  ===============================================  ===========
class               shape                                            Zeff
==================  ===============================================  ===========
ivory               long tapering curved band (tusk)                 13.8
ivory_worked        ring (bangle)                                    13.8
pangolin_scales     cluster of small overlapping ellipses (sack)     7.4
rhino_horn          solid cone (triangle)                            8.3
==================  ===============================================  ===========

Clutter: rectangles and ellipses of organic (Zeff 6-8), light inorganic (Zeff 12-15, the ivory
confusers) and metal (Zeff 26) material.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..encoding import ATT_SCALE, ZEFF_HI, ZEFF_LO
from ..errors import InvalidParameterError

__all__ = ["SYNTHETIC_CLASSES", "build_synthetic_dataset", "synthetic_image"]

SYNTHETIC_CLASSES = ("ivory", "ivory_worked", "pangolin_scales", "rhino_horn")
_ZEFF = {"ivory": 13.8, "ivory_worked": 13.8, "pangolin_scales": 7.4, "rhino_horn": 8.3}
_MU = {"ivory": 0.5, "ivory_worked": 0.5, "pangolin_scales": 0.22, "rhino_horn": 0.25}  # L per cm (toy)


def _shape_mask(cls: str, size: int, rng: np.random.Generator) -> np.ndarray:
    import cv2

    m = np.zeros((size, size), np.uint8)
    c = size // 2
    if cls == "ivory":
        # curved tapering band along a parabola
        n = 24
        t = np.linspace(-1, 1, n)
        bend = rng.uniform(0.1, 0.3) * size
        xs = c + t * size * 0.45
        ys = c + bend * (t**2 - 0.5)
        width = np.linspace(size * 0.12, size * 0.03, n)
        for i in range(n - 1):
            cv2.line(m, (int(xs[i]), int(ys[i])), (int(xs[i + 1]), int(ys[i + 1])), 1, max(1, int(width[i])))
    elif cls == "ivory_worked":
        r = int(size * 0.35)
        cv2.circle(m, (c, c), r, 1, max(2, int(size * 0.1)))
    elif cls == "pangolin_scales":
        for _ in range(40):
            x, y = rng.integers(int(size * 0.15), int(size * 0.85), 2)
            ax = int(rng.integers(max(2, size // 14), max(3, size // 8)))
            cv2.ellipse(m, (int(x), int(y)), (ax, max(1, ax * 2 // 3)), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif cls == "rhino_horn":
        pts = np.array([[c - size * 0.3, c + size * 0.35], [c + size * 0.3, c + size * 0.35], [c + rng.uniform(-0.2, 0.2) * size, c - size * 0.4]])
        cv2.fillPoly(m, [pts.astype(np.int32)], 1)
    else:
        raise InvalidParameterError(f"unknown synthetic class {cls!r}")
    angle = float(rng.uniform(0, 360))
    rot = cv2.getRotationMatrix2D((c, c), angle, 1.0)
    m = cv2.warpAffine(m, rot, (size, size), flags=cv2.INTER_NEAREST)
    return m.astype(bool)


def synthetic_image(
    size: int,
    *,
    rng: np.random.Generator,
    n_objects: int = 1,
    n_clutter: int = 3,
    classes: tuple[str, ...] = SYNTHETIC_CLASSES,
    object_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One synthetic ``nii-det/1`` image with its truth boxes.

    Parameters
    ----------
    size : int
        Image side in pixels.
    rng : numpy.random.Generator
    n_objects : int
        Contraband objects (0 for a negative image).
    n_clutter : int
        Clutter items.
    classes : tuple of str
        Classes to draw objects from.
    object_size : (int, int), optional
        Range of object sizes in pixels (default: 25-60 % of ``size``).

    Returns
    -------
    image : ndarray (size, size, 3) uint8
    boxes : ndarray (n, 4) float32, xyxy
    names : list of str
    """
    import cv2

    if size < 32:
        raise InvalidParameterError(f"size must be >= 32, got {size}")
    lo, hi = object_size or (int(size * 0.25), int(size * 0.6))
    att = np.zeros((size, size), np.float32)  # L_high
    zsum = np.zeros((size, size), np.float32)  # attenuation-weighted Zeff
    # clutter first
    for _ in range(n_clutter):
        kind = rng.choice(["organic", "inorganic", "metal"], p=[0.6, 0.3, 0.1])
        z = {"organic": rng.uniform(6, 8), "inorganic": rng.uniform(12, 15), "metal": 26.0}[kind]
        l = {"organic": rng.uniform(0.1, 0.8), "inorganic": rng.uniform(0.2, 1.0), "metal": rng.uniform(0.8, 2.5)}[kind]
        m = np.zeros((size, size), np.uint8)
        x0, y0 = rng.integers(0, size - 8, 2)
        w, h = rng.integers(8, max(9, size // 2), 2)
        if rng.random() < 0.5:
            cv2.rectangle(m, (int(x0), int(y0)), (int(x0 + w), int(y0 + h)), 1, -1)
        else:
            cv2.ellipse(m, (int(x0 + w // 2), int(y0 + h // 2)), (int(w // 2), int(h // 2)), 0, 0, 360, 1, -1)
        mb = m.astype(bool)
        att[mb] += l
        zsum[mb] += l * z
    boxes, names = [], []
    for _ in range(n_objects):
        cls = str(rng.choice(classes))
        s = int(rng.integers(lo, hi + 1))
        mask = _shape_mask(cls, s, rng)
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            continue
        ox, oy = (int(v) for v in rng.integers(0, size - s + 1, 2))
        l = _MU[cls] * rng.uniform(2.0, 5.0)
        sub = (slice(oy, oy + s), slice(ox, ox + s))
        att[sub][mask] += l
        zsum[sub][mask] += l * _ZEFF[cls]
        boxes.append([ox + xs.min(), oy + ys.min(), ox + xs.max() + 1, oy + ys.max() + 1])
        names.append(cls)
    att += rng.normal(0, 0.01, att.shape).astype(np.float32) * (att > 0)
    att = np.maximum(att, 0)
    zeff = np.where(att > 0.02, zsum / np.maximum(att, 1e-6), np.nan)
    l_low = att * np.where(np.isfinite(zeff), 1.0 + 0.04 * (np.nan_to_num(zeff) - 7.0), 1.0)
    img = np.zeros((size, size, 3), np.uint8)
    img[..., 0] = np.floor(255 * (1 - np.exp(-att / ATT_SCALE)) + 0.5)
    img[..., 2] = np.floor(255 * (1 - np.exp(-np.maximum(l_low, 0) / ATT_SCALE)) + 0.5)
    zn = np.clip((np.nan_to_num(zeff) - ZEFF_LO) / (ZEFF_HI - ZEFF_LO), 0, 1)
    img[..., 1] = np.where(np.isfinite(zeff), np.floor(255 * zn + 0.5), 0)
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return img, b, names



def build_synthetic_dataset(
    root: str | os.PathLike,
    *,
    size: int = 128,
    n_train: int = 96,
    n_val: int = 40,
    n_test: int = 40,
    negative_fraction: float = 0.4,
    seed: int = 0,
) -> Path:
    """Write a YOLO-format synthetic dataset (same layout as ``nii dataset build``) under ``root``.

    Splits come from disjoint seeds (``seed``, ``seed + 1``, ``seed + 2``); val and test hold
    ``negative_fraction`` negative images (needed to calibrate and measure an image-level FAR).
    """
    import json

    from .._atomic import atomic_write_text
    from .yolo import write_data_yaml, write_tile

    root = Path(root)
    counts = {}
    for k, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        rng = np.random.default_rng([seed, k])
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        n_neg = 0
        for i in range(n):
            neg = rng.random() < (negative_fraction if split != "train" else 0.15)
            n_neg += int(neg)
            img, boxes, names = synthetic_image(size, rng=rng, n_objects=0 if neg else int(rng.integers(1, 3)), n_clutter=int(rng.integers(1, 5)))
            ids = [SYNTHETIC_CLASSES.index(c) for c in names]
            write_tile(root / split / "images" / f"{split}_{i:05d}.png", root / split / "labels" / f"{split}_{i:05d}.txt", img, boxes, ids)
        counts[split] = {"images": n, "negative": n_neg}
    write_data_yaml(root, SYNTHETIC_CLASSES, splits={"train": "train/images", "val": "val/images", "test": "test/images"})
    manifest = {
        "schema": "nii-dataset/1",
        "name": "synthetic-shapes",
        "kind": "synthetic",
        "classes": list(SYNTHETIC_CLASSES),
        "pitch_mm": 3.0,
        "tile_size": size,
        "overlap": size // 5 // 2 * 2,
        "seeds": {"train": [seed, 0], "val": [seed, 1], "test": [seed, 2]},
        "counts": counts,
        "command": f"nii.dataset.synthetic.build_synthetic_dataset(root, size={size}, n_train={n_train}, n_val={n_val}, n_test={n_test}, seed={seed})",
    }
    atomic_write_text(root / "dataset.json", json.dumps(manifest, indent=1) + "\n")
    return root
