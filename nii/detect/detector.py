"""Tiled object detection on normalised scans: :class:`Detector`.

A model folder (``detectors/<name>/``) holds:

``model.onnx``
    The network (Ultralytics YOLO export; output ``(N, 4 + nc, anchors)``: centre x, centre y,
    width, height in input pixels, then per-class sigmoid scores).
``model.pt`` (optional)
    The same network for the Ultralytics backend.
``config.json``
    Classes, input encoding (``nii-det/1``), detector pitch in mm, tile size, tile overlap,
    input channels, NMS IoU.
``thresholds.json``
    Per-class confidence thresholds calibrated to image-level false-alarm rates
    (:mod:`nii.detect.thresholds`).
``rescorer.onnx`` (optional)
    A second stage named by the ``rescorer`` section of ``config.json``: it re-scores every
    candidate on a crop at the scan's own pitch (:mod:`nii.detect.rescore`); thresholds then
    apply to the combined score. A ``fusion`` section of ``config.json`` (optional) replaces that
    combination with a per-class logistic model of both stages' scores and the box's material
    evidence (:mod:`nii.detect.fusion`).
``SHA256SUMS``
    ``<sha256>  <file>`` per file; every listed file is verified when the folder is loaded.

Inference resamples the scan to the detector pitch and encodes it (``nii.normalization.detector_input``),
cuts it into overlapping square tiles (zero padding = air), runs the tiles in batches, decodes all
outputs at once (vectorised), applies class-aware NMS (``cv2.dnn.NMSBoxesBatched``) over all tiles
together, merges the fragments of objects cut by a tile seam, and maps the boxes back to the scan's
own pixel frame.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..containers import Scan
from ..encoding import ENCODING
from ..errors import (
    FileAccessError,
    InvalidDataError,
    InvalidParameterError,
    ModelError,
)
from .types import ORIGIN_YOLO, Detection

__all__ = [
    "Detector",
    "ModelConfig",
    "RawDetections",
    "decode_outputs",
    "live_tiles",
    "merge_tile_fragments",
    "suppress_nested",
    "nms_class_aware",
    "resolve_model_dir",
    "tile_origins",
    "verify_model_folder",
]

logger = logging.getLogger(__name__)

_BACKENDS = ("auto", "onnx", "ultralytics")


# ----------------------------------------------------------------------------------------------
# configuration and model folder
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelConfig:
    """Content of a model folder's ``config.json``.

    Parameters
    ----------
    classes : tuple of str
        Class names in model output order.
    encoding : str
        Detector input encoding the model was trained on (``"nii-det/1"``).
    pitch_mm : float
        Pixel pitch (mm, both axes) at which scans are resampled before detection.
    tile_size : int
        Square tile side in pixels (= the network input size).
    overlap : int
        Overlap of neighbouring tiles in pixels.
    input_channels : int
        Channels of the network input (3 for ``nii-det/1``).
    nms_iou : float
        IoU above which NMS suppresses a box of the same class.
    min_conf : float
        Lowest score kept by the decoder (candidates for threshold calibration and evaluation).
    name : str
        Model name.
    """

    classes: tuple[str, ...]
    encoding: str = ENCODING
    pitch_mm: float = 3.0
    tile_size: int = 320
    overlap: int = 64
    input_channels: int = 3
    nms_iou: float = 0.5
    min_conf: float = 0.01
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        classes = tuple(str(c) for c in self.classes)
        if not classes or len(set(classes)) != len(classes):
            raise ModelError(f"config.json: classes must be a non-empty list of unique names, got {self.classes!r}")
        object.__setattr__(self, "classes", classes)
        if self.encoding != ENCODING:
            raise ModelError(f"config.json: encoding {self.encoding!r} is not supported (this nii reads {ENCODING!r})")
        if not (float(self.pitch_mm) > 0 and math.isfinite(float(self.pitch_mm))):
            raise ModelError(f"config.json: pitch_mm must be positive, got {self.pitch_mm!r}")
        ts, ov = int(self.tile_size), int(self.overlap)
        if ts < 32 or ts % 32:
            raise ModelError(f"config.json: tile_size must be a multiple of 32 (>= 32), got {self.tile_size!r}")
        if not (0 <= ov < ts // 2 + 1):
            raise ModelError(f"config.json: overlap must be in [0, tile_size/2], got {self.overlap!r}")
        if int(self.input_channels) not in (1, 3):
            raise ModelError(f"config.json: input_channels must be 1 or 3, got {self.input_channels!r}")
        if not (0.0 < float(self.nms_iou) < 1.0):
            raise ModelError(f"config.json: nms_iou must be in (0, 1), got {self.nms_iou!r}")
        object.__setattr__(self, "pitch_mm", float(self.pitch_mm))
        object.__setattr__(self, "tile_size", ts)
        object.__setattr__(self, "overlap", ov)
        object.__setattr__(self, "input_channels", int(self.input_channels))
        object.__setattr__(self, "nms_iou", float(self.nms_iou))
        object.__setattr__(self, "min_conf", float(self.min_conf))

    @property
    def nc(self) -> int:
        return len(self.classes)

    _KEYS = ("classes", "encoding", "pitch_mm", "tile_size", "overlap", "input_channels", "nms_iou", "min_conf", "name")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        if not isinstance(d, dict) or "classes" not in d:
            raise ModelError("config.json: expected an object with at least 'classes'")
        known = {k: d[k] for k in cls._KEYS if k in d}
        extra = {k: v for k, v in d.items() if k not in cls._KEYS}
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self._KEYS}
        d["classes"] = list(self.classes)
        d.update(self.extra)
        return d


def resolve_model_dir(path: str | os.PathLike | None) -> Path:
    """Return the model folder: ``path``, or the default named in ``detectors/DEFAULT``.

    Raises
    ------
    ModelError
        If ``path`` is not a folder, or no default model is installed.
    """
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file() and p.name in ("model.onnx", "model.pt", "config.json"):
            p = p.parent
        if not p.is_dir():
            # a bare name: look it up among the shipped detectors
            try:
                from .._assets import asset_dir

                cand = asset_dir("detectors") / str(path)
            except FileAccessError:
                cand = None
            if cand is None or not cand.is_dir():
                raise ModelError("model folder not found", path=p)
            p = cand
        return p
    from .._assets import asset_dir

    try:
        root = asset_dir("detectors")
    except FileAccessError as exc:
        raise ModelError(f"no detectors folder: {exc.reason}") from exc
    default = root / "DEFAULT"
    if not default.is_file():
        raise ModelError(
            "no default detector model is installed (detectors/DEFAULT is missing); train one with "
            "`nii train` (see detectors/README.md) or pass a model folder explicitly",
            path=root,
        )
    name = default.read_text(encoding="utf-8").strip()
    p = root / name
    if not name or not p.is_dir():
        raise ModelError(f"detectors/DEFAULT names {name!r}, which is not a model folder", path=default)
    return p


def verify_model_folder(folder: str | os.PathLike) -> dict[str, str]:
    """Check every file listed in ``SHA256SUMS``; return ``{file: sha256}``.

    Raises
    ------
    ModelError
        If ``SHA256SUMS`` is missing or malformed, a listed file is missing, a hash differs, or
        ``model.onnx``/``config.json``/``thresholds.json`` are not listed.
    """
    from .._assets import sha256_file

    folder = Path(folder)
    sums = folder / "SHA256SUMS"
    if not sums.is_file():
        raise ModelError("SHA256SUMS is missing: the model folder cannot be verified", path=folder)
    listed: dict[str, str] = {}
    for n, line in enumerate(sums.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 64:
            raise ModelError(f"line {n} is not '<sha256>  <file>'", path=sums)
        listed[parts[1].lstrip("*")] = parts[0].lower()
    for required in ("model.onnx", "config.json", "thresholds.json"):
        if required not in listed:
            raise ModelError(f"{required} is not listed in SHA256SUMS", path=sums)
    for name, digest in listed.items():
        f = folder / name
        if not f.is_file():
            raise ModelError(f"{name} is listed in SHA256SUMS but missing", path=folder)
        actual = sha256_file(f)
        if actual != digest:
            raise ModelError(f"SHA-256 mismatch: expected {digest}, got {actual}", path=f)
    return listed


def write_sha256sums(folder: str | os.PathLike, names: Iterable[str] | None = None) -> Path:
    """(Re)write ``SHA256SUMS`` for ``names`` (default: every regular file except itself)."""
    from .._assets import sha256_file
    from .._atomic import atomic_write_text

    folder = Path(folder)
    if names is None:
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != "SHA256SUMS" and not p.name.startswith("."))
    lines = [f"{sha256_file(folder / n)}  {n}" for n in names]
    return atomic_write_text(folder / "SHA256SUMS", "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------
# array functions: tiling, decode, NMS, seam merge
# ----------------------------------------------------------------------------------------------


def tile_origins(length: int, *, tile: int, overlap: int) -> np.ndarray:
    """Start offsets of tiles covering ``[0, length)`` with at least ``overlap`` pixels of overlap.

    Tiles are spread evenly; the first starts at 0 and the last ends at ``length`` (a single tile
    at 0 if ``length <= tile``; the caller pads).

    Examples
    --------
    >>> tile_origins(100, tile=320, overlap=64).tolist()
    [0]
    >>> tile_origins(600, tile=320, overlap=64).tolist()
    [0, 280]
    """
    if tile <= 0 or not (0 <= overlap < tile):
        raise InvalidParameterError(f"need tile > 0 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
    if length <= tile:
        return np.zeros(1, dtype=np.int64)
    n = int(math.ceil((length - overlap) / (tile - overlap)))
    return np.round(np.linspace(0, length - tile, n)).astype(np.int64)


@dataclass(frozen=True, eq=False)
class RawDetections:
    """Decoded candidates in the frame of the encoded image (detector pitch).

    ``boxes`` (K, 4) float32 xyxy, ``scores`` (K,), ``class_ids`` (K,) int, ``truncated`` (K,) bool
    (box touches a seam of its tile), ``tile`` (K,) int (tile index).
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    truncated: np.ndarray
    tile: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> RawDetections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0, np.int64))

    def take(self, idx: np.ndarray) -> RawDetections:
        return RawDetections(self.boxes[idx], self.scores[idx], self.class_ids[idx], self.truncated[idx], self.tile[idx])


def decode_outputs(
    out: np.ndarray,
    *,
    offsets: np.ndarray,
    tile: int,
    image_hw: tuple[int, int],
    conf: float,
    seam_px: float = 2.0,
) -> RawDetections:
    """Decode a batch of YOLO outputs ``(N, 4 + nc, A)`` into image-frame candidates, vectorised.

    Parameters
    ----------
    out : ndarray (N, 4 + nc, A)
        Raw network output per tile (cx, cy, w, h in tile pixels, then class scores).
    offsets : ndarray (N, 2) int
        ``(y0, x0)`` of each tile in the (padded) image.
    tile : int
        Tile side.
    image_hw : (int, int)
        Size of the unpadded image; boxes are clipped to it.
    conf : float
        Keep candidates whose best class score is at least this.
    seam_px : float
        A box edge closer than this to a tile border that lies inside the image marks the box
        as truncated (cut by a seam).
    """
    out = np.asarray(out, dtype=np.float32)
    if out.ndim != 3 or out.shape[1] < 5:
        raise ModelError(f"model output must be (N, 4 + nc, anchors), got {out.shape}")
    n = out.shape[0]
    offsets = np.asarray(offsets, dtype=np.float32).reshape(n, 2)
    pred = out.transpose(0, 2, 1)  # (N, A, 4 + nc)
    cls_scores = pred[..., 4:]
    cls_id = cls_scores.argmax(axis=-1)
    score = np.take_along_axis(cls_scores, cls_id[..., None], axis=-1)[..., 0]
    ti, ai = np.nonzero(score >= conf)
    if ti.size == 0:
        return RawDetections.empty()
    p = pred[ti, ai, :4]
    half = p[:, 2:4] * 0.5
    xyxy = np.concatenate([p[:, 0:2] - half, p[:, 0:2] + half], axis=1)
    np.clip(xyxy, 0.0, float(tile), out=xyxy)
    oy, ox = offsets[ti, 0], offsets[ti, 1]
    h, w = image_hw
    # interior tile borders: a border is a seam unless it coincides with the image border
    left_seam = ox > 0
    top_seam = oy > 0
    right_seam = ox + tile < w
    bottom_seam = oy + tile < h
    truncated = (
        (left_seam & (xyxy[:, 0] <= seam_px))
        | (top_seam & (xyxy[:, 1] <= seam_px))
        | (right_seam & (xyxy[:, 2] >= tile - seam_px))
        | (bottom_seam & (xyxy[:, 3] >= tile - seam_px))
    )
    xyxy[:, [0, 2]] += ox[:, None]
    xyxy[:, [1, 3]] += oy[:, None]
    xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0.0, float(w))
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0.0, float(h))
    keep = (xyxy[:, 2] - xyxy[:, 0] > 0.5) & (xyxy[:, 3] - xyxy[:, 1] > 0.5)
    return RawDetections(
        xyxy[keep].astype(np.float32),
        score[ti, ai][keep].astype(np.float32),
        cls_id[ti, ai][keep].astype(np.int64),
        truncated[keep],
        ti[keep].astype(np.int64),
    )


def nms_class_aware(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, *, iou: float, conf: float = 0.0) -> np.ndarray:
    """Indices kept by class-aware NMS (``cv2.dnn.NMSBoxesBatched``), by decreasing score."""
    import cv2

    if len(scores) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.asarray(boxes, dtype=np.float32).copy()
    xywh[:, 2:] -= xywh[:, :2]
    keep = cv2.dnn.NMSBoxesBatched(xywh, np.asarray(scores, np.float32), np.asarray(class_ids, np.int32), float(conf), float(iou))
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    return keep[np.argsort(-np.asarray(scores)[keep], kind="stable")]


def _pairwise_inter(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ix = np.clip(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
    return ix, iy, ix * iy


def _iou_1d(a0: np.ndarray, a1: np.ndarray) -> np.ndarray:
    lo = np.maximum(a0[:, None], a0[None, :])
    hi = np.minimum(a1[:, None], a1[None, :])
    inter = np.clip(hi - lo, 0, None)
    union = np.maximum(a1[:, None], a1[None, :]) - np.minimum(a0[:, None], a0[None, :])
    return inter / np.maximum(union, 1e-6)


#: A same-class box at least this much inside a higher-scoring one is a duplicate (see :func:`suppress_nested`).
NESTED_CONTAIN = 0.85

#: A tile whose every value is at most this (nii-det/1: attenuation ``L <= 0.016`` in both energies,
#: i.e. air) holds nothing to detect and is not sent to the model (see :func:`live_tiles`).
AIR_LEVEL = 2


def live_tiles(tiles: np.ndarray, *, air_level: int = AIR_LEVEL) -> np.ndarray:
    """Mask ``(N,)`` of the tiles ``(N, T, T, C) uint8`` with any value above ``air_level``.

    In ``nii-det/1`` air encodes as 0 in every channel, so an all-air tile (the empty part of a
    partly loaded container, the margins of a scan) cannot hold an object; skipping it changes no
    detection and saves its inference time.
    """
    t = np.asarray(tiles)
    if t.ndim != 4:
        raise InvalidDataError(f"tiles must be (N, T, T, C), got shape {t.shape}")
    if t.shape[0] == 0:
        return np.zeros(0, bool)
    return t.reshape(t.shape[0], -1).max(axis=1) > air_level


def suppress_nested(raw: RawDetections, *, contain: float = NESTED_CONTAIN) -> RawDetections:
    """Drop a box that lies mostly inside a higher-scoring box of the same class.

    IoU-based NMS keeps a small box nested in a large one when their IoU is below the NMS
    threshold (a pile of scales reported as the pile and as its densest part): two flags for one
    object. A box whose intersection with a higher-scoring same-class box covers at least
    ``contain`` of its own area is removed. Vectorised; the kept boxes keep their order.
    """
    k = len(raw)
    if k < 2:
        return raw
    if not 0.0 < contain <= 1.0:
        raise InvalidParameterError(f"contain must be in (0, 1], got {contain}")
    b = raw.boxes.astype(np.float64)
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-6)
    _, _, inter = _pairwise_inter(b)
    # j outranks i: higher score, ties broken by index
    outranks = (raw.scores[None, :] > raw.scores[:, None]) | ((raw.scores[None, :] == raw.scores[:, None]) & (np.arange(k)[None, :] < np.arange(k)[:, None]))
    inside = (inter / area[:, None] >= contain) & (raw.class_ids[:, None] == raw.class_ids[None, :]) & outranks
    drop = inside.any(axis=1)
    return raw.take(np.flatnonzero(~drop)) if drop.any() else raw


def merge_tile_fragments(raw: RawDetections, *, contain: float = 0.7, extent_iou: float = 0.5) -> RawDetections:
    """Merge boxes of one object that different tiles reported separately.

    Two boxes of the same class from different tiles are joined (union box, highest score) when at
    least one is truncated by a seam and either (a) the truncated one lies mostly inside the
    other (intersection / its area >= ``contain``) or (b) they overlap and their extents across
    the seam agree (1-D IoU >= ``extent_iou`` along x or y). Groups are the connected components
    of that relation, so an object spanning many tiles becomes one box.
    """
    k = len(raw)
    if k < 2 or not raw.truncated.any():
        return raw
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    b = raw.boxes.astype(np.float64)
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-6)
    _, _, inter = _pairwise_inter(b)
    same = (raw.class_ids[:, None] == raw.class_ids[None, :]) & (raw.tile[:, None] != raw.tile[None, :])
    trunc_any = raw.truncated[:, None] | raw.truncated[None, :]
    contained = (inter / area[:, None] >= contain) & raw.truncated[:, None]
    contained = contained | contained.T
    extent = np.maximum(_iou_1d(b[:, 0], b[:, 2]), _iou_1d(b[:, 1], b[:, 3])) >= extent_iou
    link = same & trunc_any & (inter > 0) & (contained | extent)
    np.fill_diagonal(link, False)
    if not link.any():
        return raw
    n_comp, labels = connected_components(csr_matrix(link), directed=False)
    boxes = np.empty((n_comp, 4), np.float32)
    scores = np.full(n_comp, -1.0, np.float32)
    order = np.argsort(labels, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(labels[order])) + 1]
    lab_sorted = labels[order]
    boxes[lab_sorted[starts], 0] = np.minimum.reduceat(b[order, 0], starts)
    boxes[lab_sorted[starts], 1] = np.minimum.reduceat(b[order, 1], starts)
    boxes[lab_sorted[starts], 2] = np.maximum.reduceat(b[order, 2], starts)
    boxes[lab_sorted[starts], 3] = np.maximum.reduceat(b[order, 3], starts)
    scores[lab_sorted[starts]] = np.maximum.reduceat(raw.scores[order], starts)
    # representative member: the highest-scoring box of each group
    best = np.zeros(n_comp, np.int64)
    rank = np.lexsort((-raw.scores, labels))
    first = np.r_[0, np.flatnonzero(np.diff(labels[rank])) + 1]
    best[labels[rank[first]]] = rank[first]
    size = np.bincount(labels, minlength=n_comp)
    truncated = raw.truncated[best] & (size == 1)
    return RawDetections(boxes, scores, raw.class_ids[best], truncated, raw.tile[best])


# ----------------------------------------------------------------------------------------------
# backends
# ----------------------------------------------------------------------------------------------


def tiles_to_batch(tiles: np.ndarray) -> np.ndarray:
    """``(N, T, T, C) uint8`` tiles -> the network's ``(N, C, T, T) float32`` batch in [0, 1]."""
    batch = np.ascontiguousarray(np.asarray(tiles).transpose(0, 3, 1, 2), dtype=np.float32)
    batch *= np.float32(1.0 / 255.0)
    return batch


class _OnnxBackend:
    """onnxruntime session; ``__call__(batch) -> (N, 4 + nc, A)`` on the network's own input:
    ``(N, C, T, T) float32`` in [0, 1] as exported, or the tiles themselves, ``(N, T, T, C)
    uint8``, for a graph rewritten by ``nii optimize`` (:mod:`nii.detect.graph`; read from the
    session's input type). :meth:`prepare` turns tiles into either.

    ``run_tiles`` runs a stack of tiles on ``lanes`` (= ``threads``) single-threaded lanes at
    once, each lane a concurrent ``run`` of one single-threaded session: for a network as small
    as yolo11n, onnxruntime's two intra-op threads speed a batch up only 1.3-1.6x on 2 cores,
    while two batches side by side run 1.9-2.0x as fast as one on one thread (measured on the
    2-core runners; ``nii bench detect`` times both). A single tile still goes to the ``threads``-thread session. The
    outputs are the same numbers either way (onnxruntime's CPU kernels do not depend on the
    thread count), in tile order.
    """

    name = "onnx"

    def __init__(self, path: Path, *, threads: int | None) -> None:
        try:
            import onnxruntime  # noqa: F401  (checked here, used in _session)
        except ImportError as exc:  # pragma: no cover - core dependency
            raise ModelError("onnxruntime is not installed") from exc
        self.path = Path(path)
        self.threads = int(threads) if threads else max(1, min(2, os.cpu_count() or 1))
        if self.threads < 1:
            raise InvalidParameterError(f"threads must be >= 1, got {threads}")
        self.session = self._session(self.threads)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        b = inp.shape[0]
        self.fixed_batch = b if isinstance(b, int) and b > 0 else None
        from .graph import takes_uint8_tiles

        self.uint8_tiles = takes_uint8_tiles(inp.type, inp.shape)
        self._lane_session: Any = None
        self._pool: Any = None
        self._pool_pid = -1
        import threading

        self._lock = threading.Lock()

    @property
    def lanes(self) -> int:
        return self.threads

    def _session(self, threads: int) -> Any:
        import onnxruntime as ort

        from ._ort import session_options

        try:
            return ort.InferenceSession(str(self.path), sess_options=session_options(threads), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"onnxruntime cannot load the model: {exc}", path=self.path) from exc

    def _run(self, session: Any, batch: np.ndarray) -> np.ndarray:
        if self.fixed_batch is None or self.fixed_batch == batch.shape[0]:
            return np.asarray(session.run(None, {self.input_name: batch})[0])
        fb = self.fixed_batch
        outs = []
        for i in range(0, batch.shape[0], fb):
            chunk = batch[i : i + fb]
            pad = fb - chunk.shape[0]
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
            outs.append(np.asarray(session.run(None, {self.input_name: chunk})[0])[: fb - pad])
        return np.concatenate(outs)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._run(self.session, batch)

    def prepare(self, tiles: np.ndarray) -> np.ndarray:
        """``(N, T, T, C) uint8`` tiles -> this network's input batch (the tiles, contiguous, for a
        uint8-input graph; :func:`tiles_to_batch` otherwise)."""
        if self.uint8_tiles:
            return np.ascontiguousarray(tiles, dtype=np.uint8)
        return tiles_to_batch(tiles)

    def _lane_pool(self) -> tuple[Any, Any]:
        # made on first use, and again in a forked child (the parent's worker threads are not there)
        with self._lock:
            if self._pool is None or self._pool_pid != os.getpid():
                from concurrent.futures import ThreadPoolExecutor

                self._lane_session = self._session(1)
                self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="nii-onnx-lane")
                self._pool_pid = os.getpid()
            return self._lane_session, self._pool

    def run_tiles(self, tiles: np.ndarray, *, batch_size: int) -> np.ndarray:
        """``(N, T, T, C) uint8`` tiles -> ``(N, 4 + nc, A)``, batches of at most ``batch_size``."""
        n = tiles.shape[0]
        if self.threads < 2 or n < 2:
            return np.concatenate([self(self.prepare(tiles[i : i + batch_size])) for i in range(0, n, batch_size)])
        session, pool = self._lane_pool()
        bs = max(1, min(batch_size, -(-n // self.threads)))
        chunks = [tiles[i : i + bs] for i in range(0, n, bs)]
        return np.concatenate(list(pool.map(lambda c: self._run(session, self.prepare(c)), chunks)))


# ----------------------------------------------------------------------------------------------
# the detector
# ----------------------------------------------------------------------------------------------


class Detector:
    """A loaded detector model folder.

    Use :meth:`load`; then :meth:`detect` on a normalised :class:`~nii.containers.Scan`.

    Parameters
    ----------
    folder : Path
        The verified model folder.
    config : ModelConfig
    thresholds : nii.detect.thresholds.Thresholds
    backend : object
        Callable mapping a ``(N, C, T, T)`` float32 batch in [0, 1] to ``(N, 4 + nc, A)``.
    model_hash : str
        SHA-256 of the network file used.
    """

    def __init__(
        self, folder: Path, config: ModelConfig, thresholds: Any, backend: Any, model_hash: str, *, batch_size: int = 8, rescorer: Any = None
    ) -> None:
        self.folder = Path(folder)
        self.config = config
        self.thresholds = thresholds
        self.backend = backend
        self.model_hash = model_hash
        self.batch_size = int(batch_size)
        self.rescorer = rescorer

    def __repr__(self) -> str:
        return f"Detector({self.config.name or self.folder.name!r}, backend={self.backend.name!r}, classes={list(self.config.classes)})"

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        *,
        backend: str = "auto",
        threads: int | None = None,
        batch_size: int = 8,
        verify: bool = True,
    ) -> Detector:
        """Load a model folder (default: the installed default model) and verify its hashes.

        Parameters
        ----------
        path : path or None
            Model folder, a file inside it, or the name of a folder under ``detectors/``;
            None for the default model (``detectors/DEFAULT``).
        backend : {"auto", "onnx", "ultralytics"}
            ``auto`` and ``onnx`` run ``model.onnx`` with onnxruntime (no torch needed);
            ``ultralytics`` runs ``model.pt`` through the Ultralytics adapter (``train`` extra).
            A path ending in ``.pt`` selects the Ultralytics backend.
        threads : int, optional
            Cores the network may use (default: min(2, CPUs)). onnxruntime: a single tile runs
            with this many intra-op threads, several tiles run on this many single-threaded
            lanes side by side (faster for a small network, same outputs). Ultralytics backend:
            torch threads (default: torch's own setting).
        batch_size : int
            Tiles per network call.
        verify : bool
            Check ``SHA256SUMS`` (always on in production; tests of the check itself turn it off).
        """
        from .thresholds import Thresholds

        if backend not in _BACKENDS:
            raise InvalidParameterError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        if path is not None and str(path).endswith(".pt"):
            backend = "ultralytics"
        folder = resolve_model_dir(path)
        sums = verify_model_folder(folder) if verify else {}
        try:
            cfg_dict = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"config.json unreadable: {exc}", path=folder / "config.json") from exc
        config = ModelConfig.from_dict(cfg_dict)
        thresholds = Thresholds.load(folder / "thresholds.json", classes=config.classes)
        if batch_size < 1:
            raise InvalidParameterError(f"batch_size must be >= 1, got {batch_size}")
        if backend == "ultralytics":
            pt = folder / "model.pt"
            if not pt.is_file():
                raise ModelError("model.pt is missing: the Ultralytics backend needs it", path=folder)
            if verify and "model.pt" not in sums:
                raise ModelError("model.pt is not listed in SHA256SUMS", path=folder)
            from ._ultralytics import TorchBackend

            be: Any = TorchBackend(pt, config=config, threads=threads)
            model_file = pt
        else:
            model_file = folder / "model.onnx"
            be = _OnnxBackend(model_file, threads=threads)
        from .._assets import sha256_file

        digest = sums.get(model_file.name) or sha256_file(model_file)
        from .rescore import load_rescorer

        rescorer = load_rescorer(folder, config.extra, sums=sums if verify else None, threads=threads, nc=config.nc,
                                 classes=config.classes)
        return cls(folder, config, thresholds, be, digest, batch_size=batch_size, rescorer=rescorer)

    def describe(self, far: float | str | None = None) -> dict[str, Any]:
        """What produced a set of detections, for provenance: model name and SHA-256, backend,
        tiling, and the operating point (``far``, default the model's) with its per-class thresholds."""
        from .thresholds import parse_far

        f = self.thresholds.default_far if far is None else parse_far(far)
        thr = self.thresholds.for_far(f)
        kind = type(self.backend).__name__
        backend = "onnxruntime" if isinstance(self.backend, _OnnxBackend) else ("ultralytics" if kind == "TorchBackend" else kind)
        return {
            "model": self.config.name or self.folder.name,
            "model_sha256": self.model_hash,
            "backend": backend,
            "pitch_mm": self.config.pitch_mm,
            "tile_size": self.config.tile_size,
            "overlap": self.config.overlap,
            "far": f,
            "thresholds": {c: round(float(t), 6) for c, t in zip(self.config.classes, thr)},
            "second_stage": None
            if self.rescorer is None
            else {"file": self.rescorer.config.file, "sha256": self.rescorer.sha256, "combine": self.rescorer.config.combine,
                  "fusion": None if self.rescorer.fusion is None else self.rescorer.fusion.describe()},
        }

    def with_far(self, far: float | str) -> Detector:
        """A detector sharing this one's network whose default operating point is ``far``
        (``0.005``, ``"0.5%"``)."""
        import dataclasses

        from .thresholds import parse_far

        th = dataclasses.replace(self.thresholds, default_far=parse_far(far))
        return Detector(self.folder, self.config, th, self.backend, self.model_hash, batch_size=self.batch_size, rescorer=self.rescorer)

    # -- encoded-image level ---------------------------------------------------------------

    def _tiles(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = self.config.tile_size
        h, w = image.shape[:2]
        ph, pw = max(h, t), max(w, t)
        if (ph, pw) != (h, w):
            padded = np.zeros((ph, pw, image.shape[2]), dtype=image.dtype)  # 0 = air in nii-det/1
            padded[:h, :w] = image
            image = padded
        ys = tile_origins(ph, tile=t, overlap=self.config.overlap)
        xs = tile_origins(pw, tile=t, overlap=self.config.overlap)
        offsets = np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2)
        # (N, T, T, C) view-free gather, then NCHW float32 in [0, 1]
        tiles = np.stack([image[y : y + t, x : x + t] for y, x in offsets])
        return tiles, offsets

    def infer_image(self, image: np.ndarray, *, conf: float | None = None, merge: bool = True, skip_air: bool = True) -> RawDetections:
        """Detect on an encoded image (``uint8 (H, W, C)`` at the detector pitch).

        Returns candidates above ``conf`` (default: the model's ``min_conf``) after class-aware NMS
        over all tiles and seam-fragment merging, in the image's pixel frame. Tiles that are all
        air (:func:`live_tiles`) are not run through the model unless ``skip_air=False``.
        """
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or image.dtype != np.uint8:
            raise InvalidDataError(f"detector input must be uint8 (H, W, C), got {image.dtype} {image.shape}")
        if image.shape[2] != self.config.input_channels:
            raise InvalidDataError(f"detector input has {image.shape[2]} channels, the model expects {self.config.input_channels}")
        conf = self.config.min_conf if conf is None else float(conf)
        h, w = image.shape[:2]
        tiles, offsets = self._tiles(image)
        if skip_air:
            live = live_tiles(tiles)
            if not live.all():
                tiles, offsets = tiles[live], offsets[live]
            if tiles.shape[0] == 0:
                return RawDetections.empty()
        out = self.run_tiles(tiles)
        if out.shape[1] != 4 + self.config.nc:
            raise ModelError(f"model output has {out.shape[1] - 4} classes, config.json lists {self.config.nc}", path=self.folder)
        raw = decode_outputs(out, offsets=offsets, tile=self.config.tile_size, image_hw=(h, w), conf=conf)
        keep = nms_class_aware(raw.boxes, raw.scores, raw.class_ids, iou=self.config.nms_iou)
        raw = raw.take(keep)
        if merge:
            raw = merge_tile_fragments(raw)
            keep = nms_class_aware(raw.boxes, raw.scores, raw.class_ids, iou=self.config.nms_iou)
            raw = suppress_nested(raw.take(keep))
        return raw

    def run_tiles(self, tiles: np.ndarray) -> np.ndarray:
        """Raw network outputs ``(N, 4 + nc, A)`` for ``(N, T, T, C) uint8`` tiles, in tile order,
        ``batch_size`` tiles per network call (the onnxruntime backend runs its calls on
        ``threads`` lanes side by side, see :class:`_OnnxBackend`)."""
        tiles = np.asarray(tiles)
        if tiles.ndim != 4 or tiles.dtype != np.uint8:
            raise InvalidDataError(f"tiles must be uint8 (N, T, T, C), got {tiles.dtype} {tiles.shape}")
        if tiles.shape[0] == 0:
            return np.zeros((0, 4 + self.config.nc, 0), np.float32)
        run = getattr(self.backend, "run_tiles", None)
        if run is not None:
            return run(tiles, batch_size=self.batch_size)
        return np.concatenate([self.backend(tiles_to_batch(tiles[i : i + self.batch_size])) for i in range(0, tiles.shape[0], self.batch_size)])

    # -- scan level ------------------------------------------------------------------------

    def encode(self, scan: Scan) -> np.ndarray:
        """The scan in the model's input encoding at the detector pitch (``nii.normalization.detector_input``).

        Rendered scans (screenshots), whose material classes cannot be averaged, are encoded at
        their own pitch and then resized: area average for the attenuation channels, nearest
        neighbour for the Zeff channel.
        """
        if not isinstance(scan, Scan):
            raise InvalidParameterError(f"detect() needs a normalised nii.Scan, got {type(scan).__name__}")
        from ..normalization import detector_input

        fy, fx = self._factors(scan)
        same = abs(fy - 1.0) < 1e-9 and abs(fx - 1.0) < 1e-9
        if scan.rendered and not same:
            import cv2

            enc = np.asarray(detector_input(scan))
            _, h, w = scan.shape
            size = (max(1, int(np.floor(w / fx + 1e-9))), max(1, int(np.floor(h / fy + 1e-9))))
            out = cv2.resize(enc, size, interpolation=cv2.INTER_AREA)
            out[..., 1] = cv2.resize(np.ascontiguousarray(enc[..., 1]), size, interpolation=cv2.INTER_NEAREST)
            enc = out
        else:
            enc = np.asarray(detector_input(scan, pitch_mm=None if same else self.config.pitch_mm))
        if self.config.input_channels == 1 and enc.ndim == 3:
            enc = enc[..., :1]
        return enc

    def _factors(self, scan: Scan) -> tuple[float, float]:
        """Scan pixels per encoded pixel ``(f_y, f_x)``: ``pitch_mm / scan pitch`` per axis."""
        dy, dx = scan.pixel_pitch_mm
        return self.config.pitch_mm / dy, self.config.pitch_mm / dx

    def candidates(self, scan: Scan, *, conf: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All candidates above ``conf`` (default ``min_conf``) as ``(boxes_px, scores, class_ids)``
        in the scan's pixel frame (used by evaluation and threshold calibration)."""
        return self._candidates(scan, conf=conf)

    def _candidates(
        self, scan: Scan, *, conf: float | None = None, thresholds: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`candidates`; with per-class ``thresholds`` (what :meth:`detect` keeps), the second
        stage skips candidates whose final score cannot reach their class's threshold: with
        ``combine="geo"`` the final score ``sqrt(y p)`` is at most ``sqrt(y)``, so a YOLO score
        ``y`` below the threshold squared is dropped unseen. Every candidate at or above its
        threshold is the same either way."""
        enc = self.encode(scan)
        if self.rescorer is None:
            raw = self.infer_image(enc, conf=conf)
            return self._to_scan_frame(raw.boxes, scan, enc.shape[:2]), raw.scores, raw.class_ids
        # two stages: every YOLO candidate down to min_conf is looked at again on a crop at the
        # scan's own pitch; ``conf`` applies to the final score
        floor = self.config.min_conf if conf is None else float(conf)
        raw = self.infer_image(enc, conf=min(floor, self.config.min_conf))
        boxes, scores, cls = self._to_scan_frame(raw.boxes, scan, enc.shape[:2]), raw.scores, raw.class_ids
        if thresholds is not None:
            from .rescore import input_kind_index

            reach = self._second_stage_reach(scores, cls, thresholds, kind=input_kind_index(scan))
            boxes, scores, cls = boxes[reach], scores[reach], cls[reach]
        final = self.rescorer.rescore(scan, boxes, scores, cls, thresholds=thresholds)
        keep = final >= floor
        order = np.argsort(-final[keep], kind="stable")
        return boxes[keep][order], final[keep][order], cls[keep][order]

    def _second_stage_reach(self, scores: np.ndarray, class_ids: np.ndarray, thresholds: np.ndarray, *, kind: int = 0) -> np.ndarray:
        """Mask of the YOLO candidates whose final score can reach their class's threshold
        (all of them unless the final score is ``sqrt(y p)``, which is at most ``sqrt(y)``; with an
        evidence fusion, :meth:`nii.detect.fusion.Fusion.reach` for input kind ``kind``)."""
        fusion = getattr(self.rescorer, "fusion", None)
        if fusion is not None:
            return fusion.reach(scores, class_ids, thresholds, kind=kind, combine=self.rescorer.config.combine)
        if self.rescorer is None or self.rescorer.config.combine != "geo":
            return np.ones(len(scores), bool)
        # float32 rounding margin: never drop a candidate that could land on the threshold
        return scores >= np.square(np.asarray(thresholds, np.float32)[class_ids]) * np.float32(1.0 - 1e-5)

    def _to_scan_frame(self, boxes: np.ndarray, scan: Scan, enc_hw: tuple[int, int]) -> np.ndarray:
        """Map encoded-image boxes to the scan's pixel frame (encoded pixel j covers scan
        ``[j f, (j + 1) f)`` with ``f = pitch_mm / scan pitch``, see ``nii.normalization.resample_area``)."""
        _, h, w = scan.shape
        fy, fx = self._factors(scan)
        out = boxes.astype(np.float64) * np.array([fx, fy, fx, fy])
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, w)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, h)
        return out.astype(np.float32)

    def detect(
        self,
        scan: Scan,
        *,
        far: float | str | None = None,
        conf: float | None = None,
        evidence: bool = True,
        anomalies: bool = True,
    ) -> list[Detection]:
        """Detect contraband in a normalised scan.

        Parameters
        ----------
        scan : Scan
            Normalised scan (any length; any pitch: it is resampled to the model's pitch).
        far : float or str, optional
            Target image-level false-alarm rate selecting the operating point (``0.01``, ``"1%"``,
            ``"0.5%"``); default: the model's default (``thresholds.json``).
        conf : float, optional
            One confidence threshold for every class, overriding ``far``.
        evidence : bool
            Attach material statistics inside each box (needs the scan's Zeff map for most fields).
        anomalies : bool
            Also run the physics-cue material-anomaly detector (``origin="material_anomaly"``).

        Returns
        -------
        list of Detection
            Model detections by decreasing confidence, then material anomalies.
        """
        from . import evidence as ev

        if conf is not None:
            conf = float(conf)
            if not (0.0 <= conf <= 1.0):
                raise InvalidParameterError(f"conf must be in [0, 1], got {conf}")
            thr = np.full(self.config.nc, conf, np.float32)
        else:
            thr = self.thresholds.for_far(far)
        boxes, scores, cls = self._candidates(scan, conf=float(min(thr.min(), 1.0)), thresholds=thr)
        keep = scores >= thr[cls]
        dy, dx = scan.pixel_pitch_mm
        out: list[Detection] = []
        for b, s, c in zip(boxes[keep], scores[keep], cls[keep]):
            e = ev.box_evidence(scan, b) if evidence else {}
            out.append(
                Detection(
                    class_name=self.config.classes[int(c)],
                    class_id=int(c),
                    confidence=float(s),
                    box_px=tuple(float(v) for v in b),
                    box_mm=(b[0] * dx, b[1] * dy, b[2] * dx, b[3] * dy),
                    origin=ORIGIN_YOLO,
                    evidence=e,
                )
            )
        if anomalies:
            out.extend(ev.material_anomalies(scan, model_boxes=boxes[keep]))
        return out

    def detect_many(self, scans: Sequence[Scan], **kwargs: Any) -> list[list[Detection]]:
        """:meth:`detect` on each scan (tiles of one scan are batched together)."""
        return [self.detect(s, **kwargs) for s in scans]
