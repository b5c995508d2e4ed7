"""Second stage: re-score the detector's candidates on native-resolution crops.

The YOLO stage sees scans at the detector pitch (3 mm): enough to *find* tusks, bangles and
scale piles, not to tell a tusk from a femur or a heap of scales from a heap of shells in clutter.
The second stage looks again at each candidate box at the scan's own pitch (0.8-2.5 mm on the
shipped profiles), where the fibre tubules of rhino horn, the plate edges of pangolin scales
and the cortical walls of bone are resolved, and returns a probability per class.

A model folder with a second stage holds ``rescorer.onnx`` (inputs ``crops`` ``(N, 3, S, S)``
float in [0, 1], ``scalars`` ``(N, N_SCALARS)``; output ``(N, 1 + nc)`` class probabilities,
index 0 = background) and a ``rescorer`` section in ``config.json`` (:class:`RescorerConfig`).
The final score of a candidate of class ``c`` with YOLO score ``y`` is ``sqrt(y * p_c)``
(``combine="geo"``), so both stages must agree for a flag; thresholds (``thresholds.json``) are
calibrated on this final score.

Crop geometry (:func:`crop_window`): a square centred on the box with side
``max(w, h) * context + pad_px`` scan pixels, at least ``min_crop_mm``, zero-padded (air) where it
leaves the scan, resized to ``S x S`` (area average when shrinking, bilinear when enlarging).
Only the crop region is encoded (``nii-det/1`` at the scan's pitch), so a container costs no
more than a bag per candidate.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..containers import Scan
from ..errors import InvalidParameterError, ModelError

__all__ = [
    "KINDS",
    "N_SCALARS",
    "RESCORER_FILE",
    "Rescorer",
    "RescorerConfig",
    "candidate_scalars",
    "combine_scores",
    "crop_candidates",
    "crop_window",
    "input_kind_index",
    "load_rescorer",
]

RESCORER_FILE = "rescorer.onnx"
#: Input kinds the second stage knows (one-hot scalar inputs).
KINDS = ("dual_energy", "pseudocolor", "greyscale")
#: Scalar inputs per candidate: class one-hot (4), log crop side, log aspect, kind one-hot (3),
#: log scan pitch, log box area (see :func:`candidate_scalars`).
N_SCALARS = 11
_COMBINE = ("geo", "rescorer")


@dataclass(frozen=True)
class RescorerConfig:
    """The ``rescorer`` section of ``config.json``.

    Parameters
    ----------
    crop : int
        Crop side in pixels (network input).
    context : float
        Crop side as a multiple of the box's longer side.
    pad_px : float
        Scan pixels added to the crop side.
    min_crop_mm : float
        Smallest crop side in mm.
    combine : {"geo", "rescorer"}
        Final score: ``sqrt(yolo * p_class)`` or ``p_class`` alone.
    file : str
        The network file in the model folder.
    """

    crop: int = 96
    context: float = 1.4
    pad_px: float = 8.0
    min_crop_mm: float = 24.0
    combine: str = "geo"
    file: str = RESCORER_FILE

    def __post_init__(self) -> None:
        if int(self.crop) < 16:
            raise ModelError(f"config.json rescorer: crop must be >= 16 px, got {self.crop!r}")
        if not (float(self.context) >= 1.0 and math.isfinite(float(self.context))):
            raise ModelError(f"config.json rescorer: context must be >= 1, got {self.context!r}")
        if not (float(self.pad_px) >= 0 and float(self.min_crop_mm) >= 0):
            raise ModelError("config.json rescorer: pad_px and min_crop_mm must be >= 0")
        if self.combine not in _COMBINE:
            raise ModelError(f"config.json rescorer: combine must be one of {_COMBINE}, got {self.combine!r}")
        if not self.file or os.path.basename(self.file) != self.file:
            raise ModelError(f"config.json rescorer: file must be a plain file name, got {self.file!r}")
        object.__setattr__(self, "crop", int(self.crop))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RescorerConfig:
        if not isinstance(d, Mapping):
            raise ModelError("config.json: 'rescorer' must be an object")
        unknown = set(d) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ModelError(f"config.json rescorer: unknown keys {sorted(unknown)}")
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def input_kind_index(scan: Scan) -> int:
    """Index into :data:`KINDS` of a scan (metadata ``input_kind``/``rendering``; a plain
    single-energy scan counts as greyscale)."""
    meta = dict(scan.metadata or {})
    kind = meta.get("input_kind")
    if kind is None and scan.rendered:
        kind = meta.get("rendering")
    if kind in KINDS:
        return KINDS.index(kind)
    return 0 if scan.n_energies >= 2 and not scan.rendered else 2


def crop_window(box: np.ndarray, pitch_yx: tuple[float, float], *, config: RescorerConfig) -> tuple[int, int, int, int, float]:
    """Integer crop window ``(x0, y0, x1, y1)`` (may leave the scan) and its side in mm for one
    box ``(x0, y0, x1, y1)`` in scan pixels."""
    dy, dx = float(pitch_yx[0]), float(pitch_yx[1])
    x0, y0, x1, y1 = (float(v) for v in box)
    # in rows (y pixels); for square pixels exactly max(w, h) * context + pad_px
    sy = max((x1 - x0) * (dx / dy), y1 - y0) * config.context + config.pad_px
    sy = max(sy, config.min_crop_mm / dy)
    sx = sy * (dy / dx)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return round(cx - sx / 2), round(cy - sy / 2), round(cx + sx / 2), round(cy + sy / 2), sy * dy


def _encode_region(scan: Scan, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """``nii-det/1`` encoding of the scan pixels in ``[y0, y1) x [x0, x1)`` (clipped to the scan)."""
    from ..encoding import CLASS_ZEFF, encode_detector_input

    att = scan.attenuation[:, y0:y1, x0:x1]
    mat = None if scan.material is None else scan.material[y0:y1, x0:x1]
    if scan.rendered and mat is not None:
        zeff = CLASS_ZEFF[np.minimum(mat, len(CLASS_ZEFF) - 1)]
    else:
        zeff = None if scan.zeff is None else scan.zeff[y0:y1, x0:x1]
    return encode_detector_input(att[0] if att.shape[0] >= 2 else None, att[-1], zeff, mat)


def crop_candidates(scan: Scan, boxes_px: np.ndarray, *, config: RescorerConfig) -> tuple[np.ndarray, np.ndarray]:
    """Native-resolution crops around candidate boxes.

    Parameters
    ----------
    scan : Scan
        The normalised scan at its own pitch (the frame of ``boxes_px``).
    boxes_px : ndarray (N, 4)
        Boxes ``(x0, y0, x1, y1)`` in scan pixels.
    config : RescorerConfig

    Returns
    -------
    crops : ndarray uint8 (N, S, S, 3)
        ``nii-det/1`` crops (zero = air outside the scan).
    side_mm : ndarray float64 (N,)
        The side of each crop in mm.
    """
    import cv2

    if not isinstance(scan, Scan):
        raise InvalidParameterError(f"crop_candidates needs a normalised nii.Scan, got {type(scan).__name__}")
    boxes = np.asarray(boxes_px, np.float64).reshape(-1, 4)
    s = config.crop
    out = np.zeros((boxes.shape[0], s, s, 3), np.uint8)
    sides = np.zeros(boxes.shape[0], np.float64)
    _, h, w = scan.shape
    for i, b in enumerate(boxes):
        x0, y0, x1, y1, sides[i] = crop_window(b, scan.pixel_pitch_mm, config=config)
        if x1 <= x0 or y1 <= y0:
            continue
        pad = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
        cx0, cx1, cy0, cy1 = max(x0, 0), min(x1, w), max(y0, 0), min(y1, h)
        if cx1 > cx0 and cy1 > cy0:
            pad[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = _encode_region(scan, cx0, cy0, cx1, cy1)
        interp = cv2.INTER_AREA if pad.shape[0] > s else cv2.INTER_LINEAR
        out[i] = cv2.resize(pad, (s, s), interpolation=interp)
    return out, sides


def candidate_scalars(
    class_ids: np.ndarray,
    boxes_px: np.ndarray,
    *,
    pitch_yx: tuple[float, float],
    side_mm: np.ndarray,
    kind: int,
    nc: int = 4,
) -> np.ndarray:
    """The second stage's scalar inputs ``(N, N_SCALARS)`` float32 (see :data:`N_SCALARS`).

    The detector's score is deliberately not among them: the second stage is a second opinion on
    the crop, and the two are combined afterwards (:func:`combine_scores`).
    """
    if nc != 4:
        raise InvalidParameterError(f"the second stage is defined for 4 classes, got {nc}")
    c = np.asarray(class_ids, np.int64)
    b = np.asarray(boxes_px, np.float64).reshape(-1, 4)
    dy, dx = float(pitch_yx[0]), float(pitch_yx[1])
    bw = np.maximum((b[:, 2] - b[:, 0]) * dx, 1.0)
    bh = np.maximum((b[:, 3] - b[:, 1]) * dy, 1.0)
    n = c.shape[0]
    out = np.empty((n, N_SCALARS), np.float32)
    out[:, 0:4] = np.eye(4)[c]
    out[:, 4] = np.log(np.asarray(side_mm, np.float64)) - 5.5
    out[:, 5] = np.log(bw / bh)
    out[:, 6:9] = np.eye(3)[np.full(n, int(kind))]
    out[:, 9] = np.log(dy)
    out[:, 10] = (np.log(np.maximum(bw * bh, 1.0)) - 8) / 2
    return out


def combine_scores(yolo: np.ndarray, probs: np.ndarray, class_ids: np.ndarray, *, how: str = "geo") -> np.ndarray:
    """Final candidate scores from YOLO scores ``(N,)`` and second-stage probabilities ``(N, 1 + nc)``."""
    if how not in _COMBINE:
        raise InvalidParameterError(f"how must be one of {_COMBINE}, got {how!r}")
    y = np.asarray(yolo, np.float32)
    p = np.asarray(probs, np.float32)[np.arange(y.shape[0]), np.asarray(class_ids, np.int64) + 1]
    return (np.sqrt(y * p) if how == "geo" else p).astype(np.float32)


class Rescorer:
    """The second-stage network (onnxruntime) with its configuration."""

    def __init__(self, path: str | os.PathLike, config: RescorerConfig, *, threads: int | None = None, nc: int = 4) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - core dependency
            raise ModelError("onnxruntime is not installed") from exc
        from ._ort import session_options

        self.path = Path(path)
        self.config = config
        self.sha256: str | None = None
        self.nc = int(nc)
        #: An evidence fusion (:class:`nii.detect.fusion.Fusion`) applied to the final scores, or None.
        self.fusion: Any = None
        opts = session_options(int(threads) if threads else max(1, min(2, os.cpu_count() or 1)))
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"onnxruntime cannot load the second stage: {exc}", path=self.path) from exc
        inputs = self.session.get_inputs()
        names = [i.name for i in inputs]
        if names != ["crops", "scalars"]:
            raise ModelError(f"second stage inputs must be ['crops', 'scalars'], got {names}", path=self.path)
        crop_shape, sc_shape = list(inputs[0].shape), list(inputs[1].shape)
        if crop_shape[1:] != [3, config.crop, config.crop]:
            raise ModelError(f"second stage takes crops {crop_shape[1:]}, config.json says {[3, config.crop, config.crop]}", path=self.path)
        if sc_shape[1:] != [N_SCALARS]:
            raise ModelError(f"second stage takes {sc_shape[1:]} scalars, this nii computes {N_SCALARS}", path=self.path)

    def probabilities(self, crops: np.ndarray, scalars: np.ndarray, *, batch: int = 64) -> np.ndarray:
        """Class probabilities ``(N, 1 + nc)`` of uint8 crops ``(N, S, S, 3)``."""
        n = crops.shape[0]
        out = np.zeros((n, 1 + self.nc), np.float32)
        for i in range(0, n, batch):
            x = crops[i : i + batch].transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1.0 / 255.0)
            p = np.asarray(self.session.run(None, {"crops": x, "scalars": np.ascontiguousarray(scalars[i : i + batch], np.float32)})[0])
            if p.shape != (x.shape[0], 1 + self.nc):
                raise ModelError(f"second stage output has shape {p.shape}, expected {(x.shape[0], 1 + self.nc)}", path=self.path)
            out[i : i + batch] = p
        return out

    def two_stage(self, scan: Scan, boxes_px: np.ndarray, scores: np.ndarray, class_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network's class probabilities ``(N, 1 + nc)`` of candidates ``boxes_px`` and their
        two-stage scores (``combine`` of the YOLO ``scores`` and those probabilities; no fusion)."""
        crops, side = crop_candidates(scan, boxes_px, config=self.config)
        sc = candidate_scalars(class_ids, boxes_px, pitch_yx=scan.pixel_pitch_mm, side_mm=side, kind=input_kind_index(scan), nc=self.nc)
        probs = self.probabilities(crops, sc)
        return probs, combine_scores(scores, probs, class_ids, how=self.config.combine)

    def rescore(self, scan: Scan, boxes_px: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, *,
                thresholds: np.ndarray | None = None) -> np.ndarray:
        """Final scores of candidates ``boxes_px`` (scan pixels) with YOLO ``scores``. ``thresholds``
        (per class) lets an evidence fusion skip the evidence of candidates that cannot reach
        them (their score is then 0; see :meth:`nii.detect.fusion.Fusion.fuse`)."""
        if len(scores) == 0:
            return np.zeros(0, np.float32)
        probs, final = self.two_stage(scan, boxes_px, scores, class_ids)
        if self.fusion is not None:
            final = self.fusion.fuse(scan, boxes_px, scores, probs, class_ids, final, thresholds=thresholds)
        return final


def load_rescorer(folder: str | os.PathLike, extra: Mapping[str, Any], *, sums: Mapping[str, str] | None = None,
                  threads: int | None = None, nc: int = 4, classes: tuple[str, ...] | None = None) -> Rescorer | None:
    """The second stage named by a model folder's ``config.json`` (its ``extra`` keys), or None;
    with its evidence fusion (the ``fusion`` section, checked against ``classes``) when there is one.

    ``sums`` (``SHA256SUMS`` as read by ``verify_model_folder``) must list the network file when given.
    """
    if "rescorer" not in extra:
        if "fusion" in extra:
            raise ModelError("config.json has an evidence fusion but no second stage ('rescorer') to fuse", path=folder)
        return None
    from .._assets import sha256_file

    folder = Path(folder)
    cfg = RescorerConfig.from_dict(extra["rescorer"])
    f = folder / cfg.file
    if not f.is_file():
        raise ModelError(f"config.json names a second stage {cfg.file!r} that is missing", path=folder)
    if sums is not None and cfg.file not in sums:
        raise ModelError(f"{cfg.file} is not listed in SHA256SUMS", path=folder)
    r = Rescorer(f, cfg, threads=threads, nc=nc)
    r.sha256 = (sums or {}).get(cfg.file) or sha256_file(f)
    if "fusion" in extra:
        from .fusion import Fusion

        if classes is None:
            raise ModelError("config.json has an evidence fusion: the model's classes are needed to read it", path=folder)
        r.fusion = Fusion.from_dict(extra["fusion"], classes)
    return r
