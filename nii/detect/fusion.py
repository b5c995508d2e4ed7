"""Evidence fusion: the final confidence of a two-stage model from both stages *and* the physics.

A two-stage folder's final score is ``sqrt(y * p_c)``: the YOLO score ``y`` and the crop
network's class probability ``p_c`` weigh the same, and the material evidence that the pipeline
computes for every flag (:func:`nii.detect.evidence.box_evidence`) plays no part. An evidence
fusion replaces that fixed rule with a small logistic model per class, fitted on labelled scans::

    final = sigmoid(w_c . x + b_c)

with ``x`` the candidate's :data:`FEATURES`. In mode ``"cap"`` (the default of :func:`build_fused`)
the final score is ``min(sqrt(y * p_c), sigmoid(...))``: the evidence can lower a flag's confidence,
never raise it above what both learned stages agree on; in mode ``"replace"`` it is the fused score
alone. The cap exists because of a measurement (``detectors/README.md``, session 23): uncapped, the
fusion raised weak detector scores on scans of a concealment family held out of its fitting and
calibration (greyscale timber, where the crop network was confidently wrong and the fusion weighs it
above the detector) to 0.75-0.96, and the test false-alarm rate to 3.4 %.

The features:

* ``logit_yolo``, ``logit_class_prob``, ``logit_background_prob``: logits of ``y``, ``p_c``
  and the crop network's background probability ``p_0`` (clipped to [1e-4, 1 - 1e-4]);
* ``kind_pseudocolor``, ``kind_greyscale``: the input kind (dual-energy is the reference);
* dual-energy input only (0 for renderings and greyscale, whose Zeff is coarse or absent):
  ``frac_bone_like``, ``frac_dense_organic``, ``frac_metal`` (fractions of the box's object
  pixels) and ``zeff_median``, ``zeff_p10``, ``zeff_p90`` as ``(Zeff - 10) / 5``;
* every input: ``log_areal_density`` (``log1p`` of the box's median water-equivalent g/cm²) and
  ``object_fraction``.

Each feature is clipped to a fixed range (:data:`RANGES`), so the weights read directly as
evidence: a positive ``frac_bone_like`` weight for ivory means bone-like material in the box
raises the flag's confidence. Candidates whose two-stage score is below ``floor`` are dropped
(final score 0) before the evidence is computed.

The model lives in the ``fusion`` section of ``config.json`` (format :data:`FUSION_FORMAT`) and
is applied by the second stage (:meth:`nii.detect.rescore.Rescorer.rescore`), so thresholds,
evaluation and detection all see the fused score. :func:`build_fused` (``nii rescorer fuse``)
fits it and writes a new model folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..containers import Scan
from ..errors import InvalidDataError, InvalidParameterError, ModelError

logger = logging.getLogger(__name__)

__all__ = ["FEATURES", "FUSION_FORMAT", "MODES", "RANGES", "Fusion", "build_fused", "fit_logistic", "fusion_features"]

FUSION_FORMAT = "nii-fusion/1"
#: ``cap``: final = min(two-stage score, fused); ``replace``: final = fused.
MODES = ("cap", "replace")
FEATURES = (
    "logit_yolo",
    "logit_class_prob",
    "logit_background_prob",
    "kind_pseudocolor",
    "kind_greyscale",
    "frac_bone_like",
    "frac_dense_organic",
    "frac_metal",
    "zeff_median",
    "zeff_p10",
    "zeff_p90",
    "log_areal_density",
    "object_fraction",
)
_P_CLIP = 1e-4
_LOGIT_MAX = math.log((1 - _P_CLIP) / _P_CLIP)
#: Range each feature is clipped to (also the range the reach bound assumes).
RANGES = {
    "logit_yolo": (-_LOGIT_MAX, _LOGIT_MAX),
    "logit_class_prob": (-_LOGIT_MAX, _LOGIT_MAX),
    "logit_background_prob": (-_LOGIT_MAX, _LOGIT_MAX),
    "kind_pseudocolor": (0.0, 1.0),
    "kind_greyscale": (0.0, 1.0),
    "frac_bone_like": (0.0, 1.0),
    "frac_dense_organic": (0.0, 1.0),
    "frac_metal": (0.0, 1.0),
    "zeff_median": (-2.0, 4.0),
    "zeff_p10": (-2.0, 4.0),
    "zeff_p90": (-2.0, 4.0),
    "log_areal_density": (0.0, 6.0),
    "object_fraction": (0.0, 1.0),
}
_LO = np.array([RANGES[f][0] for f in FEATURES])
_HI = np.array([RANGES[f][1] for f in FEATURES])
_DUAL_ONLY = tuple(FEATURES.index(f) for f in ("frac_bone_like", "frac_dense_organic", "frac_metal", "zeff_median", "zeff_p10", "zeff_p90"))
_I_YOLO, _I_PROB, _I_BG = 0, 1, 2
_I_KIND = (3, 4)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), _P_CLIP, 1.0 - _P_CLIP)
    return np.log(p / (1.0 - p))


def _score_features(yolo: np.ndarray, probs: np.ndarray, cls: np.ndarray, kind: int) -> np.ndarray:
    """The features known once both stages have run (scores and input kind); evidence columns 0."""
    n = yolo.size
    x = np.zeros((n, len(FEATURES)))
    x[:, _I_YOLO] = _logit(yolo)
    x[:, _I_PROB] = _logit(probs[np.arange(n), cls + 1])
    x[:, _I_BG] = _logit(probs[:, 0])
    if kind in (1, 2):
        x[:, _I_KIND[kind - 1]] = 1.0
    return x


def _add_evidence(x: np.ndarray, scan: Scan, boxes: np.ndarray, kind: int) -> None:
    """Fill the evidence columns of ``x`` (in place) from :func:`box_evidence` of each box."""
    from .evidence import box_evidence

    keys = [FEATURES[i] for i in _DUAL_ONLY]
    i_rho, i_obj = FEATURES.index("log_areal_density"), FEATURES.index("object_fraction")
    for i, b in enumerate(boxes):
        e = box_evidence(scan, b)
        if kind == 0:
            for j, k in zip(_DUAL_ONLY, keys, strict=True):
                v = e.get(k)
                if v is not None and math.isfinite(v):
                    x[i, j] = (v - 10.0) / 5.0 if k.startswith("zeff") else v
        rho = e.get("areal_density_median_g_cm2")
        x[i, i_rho] = math.log1p(max(float(rho), 0.0)) if rho is not None else 0.0
        x[i, i_obj] = float(e.get("object_fraction") or 0.0)


def fusion_features(scan: Scan, boxes_px: np.ndarray, yolo: np.ndarray, probs: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
    """The :data:`FEATURES` ``(N, F)`` of candidates ``boxes_px`` (scan pixels) with YOLO scores
    ``yolo``, second-stage probabilities ``probs`` ``(N, 1 + nc)`` and classes ``class_ids``."""
    from .rescore import input_kind_index

    boxes = np.asarray(boxes_px, np.float64).reshape(-1, 4)
    yolo = np.asarray(yolo, np.float64).ravel()
    probs = np.asarray(probs, np.float64)
    cls = np.asarray(class_ids, np.int64).ravel()
    n = boxes.shape[0]
    if not (yolo.size == cls.size == n and probs.ndim == 2 and probs.shape[0] == n):
        raise InvalidParameterError(f"fusion_features: {n} boxes, {yolo.size} scores, {cls.size} classes, probabilities {probs.shape}")
    if n == 0:
        return np.zeros((0, len(FEATURES)))
    kind = input_kind_index(scan)
    x = _score_features(yolo, probs, cls, kind)
    _add_evidence(x, scan, boxes, kind)
    return np.clip(x, _LO, _HI)


@dataclass(frozen=True)
class Fusion:
    """A fitted evidence fusion (the ``fusion`` section of ``config.json``).

    Parameters
    ----------
    weights : ndarray (nc, F)
        Per-class weights of :data:`FEATURES` (raw feature units).
    bias : ndarray (nc,)
    floor : float
        Candidates whose two-stage score is below this are dropped before fusion.
    mode : {"cap", "replace"}
        ``cap``: the final score is the lower of the two-stage and the fused score; ``replace``:
        the fused score.
    info : dict
        What it was fitted on (kept in the config for provenance).
    """

    weights: np.ndarray
    bias: np.ndarray
    floor: float = 0.05
    mode: str = "cap"
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, np.float64)
        b = np.asarray(self.bias, np.float64).ravel()
        if w.ndim != 2 or w.shape[1] != len(FEATURES) or b.shape != (w.shape[0],):
            raise ModelError(f"config.json fusion: weights must be (classes, {len(FEATURES)}) with one bias per class, got {w.shape} and {b.shape}")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise ModelError("config.json fusion: weights and bias must be finite")
        if not (0.0 < float(self.floor) < 1.0):
            raise ModelError(f"config.json fusion: floor must be in (0, 1), got {self.floor!r}")
        if self.mode not in MODES:
            raise ModelError(f"config.json fusion: mode must be one of {MODES}, got {self.mode!r}")
        w.flags.writeable = False
        b.flags.writeable = False
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "bias", b)
        object.__setattr__(self, "floor", float(self.floor))

    @property
    def nc(self) -> int:
        return int(self.weights.shape[0])

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], classes: Sequence[str]) -> Fusion:
        """Read and check a ``fusion`` section against the model's ``classes``."""
        if not isinstance(d, Mapping):
            raise ModelError("config.json: 'fusion' must be an object")
        if d.get("format") != FUSION_FORMAT:
            raise ModelError(f"config.json fusion: format {d.get('format')!r} is not supported (this nii reads {FUSION_FORMAT!r})")
        if list(d.get("features") or []) != list(FEATURES):
            raise ModelError(f"config.json fusion: features must be {list(FEATURES)}, got {d.get('features')!r}")
        per = d.get("classes")
        if not isinstance(per, Mapping) or list(per) != list(classes):
            raise ModelError(f"config.json fusion: 'classes' must map each of the model's classes {list(classes)} (in order) to its weights")
        try:
            w = [[float(v) for v in per[c]["weights"]] for c in classes]
            b = [float(per[c]["bias"]) for c in classes]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"config.json fusion: each class needs numeric 'weights' and 'bias' ({exc})") from exc
        if any(len(r) != len(FEATURES) for r in w):
            raise ModelError(f"config.json fusion: each class needs {len(FEATURES)} weights")
        if "mode" not in d:
            raise ModelError(f"config.json fusion: 'mode' is missing (one of {MODES})")
        return cls(np.array(w), np.array(b), floor=d.get("floor", 0.05), mode=d["mode"], info=dict(d.get("fitted_on") or {}))

    def describe(self) -> dict[str, Any]:
        """For provenance (``Detector.describe()["second_stage"]["fusion"]``)."""
        return {"format": FUSION_FORMAT, "floor": self.floor, "mode": self.mode}

    def to_dict(self, classes: Sequence[str]) -> dict[str, Any]:
        if len(classes) != self.nc:
            raise InvalidParameterError(f"{len(classes)} class names for a fusion of {self.nc} classes")
        return {
            "format": FUSION_FORMAT,
            "floor": self.floor,
            "mode": self.mode,
            "features": list(FEATURES),
            "classes": {c: {"weights": [round(float(v), 6) for v in self.weights[i]], "bias": round(float(self.bias[i]), 6)}
                        for i, c in enumerate(classes)},
            "fitted_on": dict(self.info),
        }

    def predict(self, x: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
        """Fused scores (float32) of feature rows ``x`` of candidates of ``class_ids``."""
        cls = np.asarray(class_ids, np.int64).ravel()
        z = np.einsum("nf,nf->n", np.asarray(x, np.float64), self.weights[cls]) + self.bias[cls]
        return (1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))).astype(np.float32)

    def fuse(self, scan: Scan, boxes_px: np.ndarray, yolo: np.ndarray, probs: np.ndarray, class_ids: np.ndarray,
             two_stage: np.ndarray, *, thresholds: np.ndarray | None = None) -> np.ndarray:
        """Final scores where the two-stage score ``two_stage`` reaches :attr:`floor` (the fused score,
        capped by ``two_stage`` in mode ``cap``), else 0.

        With per-class ``thresholds`` (what :meth:`Detector.detect` keeps), the box evidence is
        computed only for candidates that can still reach their threshold once the scores are
        known (evidence features at their most favourable values); the others score 0. Every
        candidate at or above its threshold scores the same either way."""
        from .rescore import input_kind_index

        out = np.zeros(len(two_stage), np.float32)
        m = np.flatnonzero(np.asarray(two_stage) >= self.floor)
        if not m.size:
            return out
        kind = input_kind_index(scan)
        cls = np.asarray(class_ids, np.int64)[m]
        x = _score_features(np.asarray(yolo, np.float64)[m], np.asarray(probs, np.float64)[m], cls, kind)
        if thresholds is not None:
            w = self.weights[cls]
            lo = np.broadcast_to(_LO, w.shape).copy()
            hi = np.broadcast_to(_HI, w.shape).copy()
            known = [_I_YOLO, _I_PROB, _I_BG, *_I_KIND] + ([] if kind == 0 else list(_DUAL_ONLY))
            xk = np.clip(x, _LO, _HI)
            lo[:, known] = hi[:, known] = xk[:, known]
            z = np.maximum(w * lo, w * hi).sum(axis=1) + self.bias[cls]
            best = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
            if self.mode == "cap":
                best = np.minimum(best, np.asarray(two_stage, np.float64)[m])
            can = best >= np.asarray(thresholds, np.float64)[cls] * (1.0 - 1e-5)
            m, cls, x = m[can], cls[can], x[can]
            if not m.size:
                return out
        _add_evidence(x, scan, np.asarray(boxes_px, np.float64).reshape(-1, 4)[m], kind)
        fused = self.predict(np.clip(x, _LO, _HI), cls)
        out[m] = np.minimum(fused, np.asarray(two_stage, np.float32)[m]) if self.mode == "cap" else fused
        return out

    def reach(self, yolo: np.ndarray, class_ids: np.ndarray, thresholds: np.ndarray, *, kind: int, combine: str = "geo") -> np.ndarray:
        """Mask of YOLO candidates whose fused score *can* reach their class's threshold.

        The YOLO score and the input kind are known before the second stage runs; every other
        feature is bounded by its :data:`RANGES`, the class probability also from below by the
        floor (``sqrt(y p) >= floor`` needs ``p >= floor**2 / y``). A candidate is dropped only
        when even the most favourable of those values leaves it below its threshold."""
        y = np.asarray(yolo, np.float64).ravel()
        cls = np.asarray(class_ids, np.int64).ravel()
        if y.size == 0:
            return np.zeros(0, bool)
        w = self.weights[cls]
        lo = np.broadcast_to(_LO, w.shape).copy()
        hi = np.broadcast_to(_HI, w.shape).copy()
        ly = _logit(y)
        lo[:, _I_YOLO] = hi[:, _I_YOLO] = ly
        p_min = self.floor**2 / np.maximum(y, 1e-12) if combine == "geo" else np.full(y.size, self.floor)
        lo[:, _I_PROB] = np.clip(_logit(np.minimum(p_min, 1.0)), *RANGES["logit_class_prob"])
        for k, i in enumerate(_I_KIND):
            lo[:, i] = hi[:, i] = float(kind == k + 1)
        if kind != 0:
            lo[:, list(_DUAL_ONLY)] = hi[:, list(_DUAL_ONLY)] = 0.0
        z = np.maximum(w * lo, w * hi).sum(axis=1) + self.bias[cls]
        best = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
        if self.mode == "cap" and combine == "geo":
            best = np.minimum(best, np.sqrt(y))  # sqrt(y p) <= sqrt(y)
        ok = best >= np.asarray(thresholds, np.float64)[cls] * (1.0 - 1e-5)
        # sqrt(y p) >= floor needs y >= floor**2 (float32 rounding margin)
        reachable_floor = y >= self.floor**2 * (1.0 - 1e-5) if combine == "geo" else np.ones(y.size, bool)
        return ok & reachable_floor


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 10.0, max_iter: int = 100) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method on standardised features.

    Returns ``(weights, bias)`` in the raw feature units. The penalty ``l2`` applies to the
    standardised weights (not the bias); constant features get weight 0."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64).ravel()
    n, d = x.shape
    if n != y.size or n == 0:
        raise InvalidParameterError(f"fit_logistic: {n} rows and {y.size} labels")
    if not (l2 > 0 and math.isfinite(l2)):
        raise InvalidParameterError(f"l2 must be positive, got {l2}")
    mu = x.mean(axis=0)
    sd = x.std(axis=0)
    live = sd > 1e-9
    z = np.zeros_like(x)
    z[:, live] = (x[:, live] - mu[live]) / sd[live]
    z = np.hstack([z, np.ones((n, 1))])
    beta = np.zeros(d + 1)
    reg = np.full(d + 1, float(l2))
    reg[-1] = 0.0
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -50, 50)))
        g = z.T @ (p - y) + reg * beta
        h = (z * (p * (1 - p))[:, None]).T @ z + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(h, g)
        beta -= step
        if np.abs(step).max() < 1e-9:
            break
    w = np.zeros(d)
    w[live] = beta[:d][live] / sd[live]
    b = float(beta[d] - np.sum(w * mu))
    return w, b


# -- fitting a fusion: labelled candidates of a two-stage model -------------------------------------------------


def _rows(detector: Any, f: Path, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, classes and labels (1 = on a same-class truth object) of the candidates of one
    labelled scan whose two-stage score reaches ``floor``."""
    from .rescore_train import _labels, read_labelled_scan

    scan, gb, gc = read_labelled_scan(f, detector.config.classes)
    enc = detector.encode(scan)
    raw = detector.infer_image(enc, conf=detector.config.min_conf)
    boxes = detector._to_scan_frame(raw.boxes, scan, enc.shape[:2])
    if len(raw.scores) == 0:
        return np.zeros((0, len(FEATURES))), np.zeros(0, np.int64), np.zeros(0)
    p, two = detector.rescorer.two_stage(scan, boxes, raw.scores, raw.class_ids)
    m = two >= floor
    cls = raw.class_ids[m]
    x = fusion_features(scan, boxes[m], raw.scores[m], p[m], cls)
    lab = _labels(boxes[m], cls, gb, gc)
    return x, cls.astype(np.int64), (lab == cls + 1).astype(np.float64)


_WORKER: dict[str, Any] = {}


def _worker_init(model: str, floor: float) -> None:
    import cv2
    import numba

    from .detector import Detector

    numba.set_num_threads(1)
    cv2.setNumThreads(1)
    det = Detector.load(model, backend="onnx", threads=1)
    det.rescorer.fusion = None  # the source's two-stage scores (a source never has a fusion)
    _WORKER.update(det=det, floor=floor)


def _worker_job(f: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _rows(_WORKER["det"], Path(f), _WORKER["floor"])


def fusion_rows(detector: Any, folders: Sequence[str | os.PathLike], *, floor: float = 0.05, workers: int = 1,
                progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Features, classes and labels of the candidates of a two-stage ``detector`` (without a
    fusion) on the labelled scans of ``folders``; with the number of scans. With ``workers > 1``
    the scans are shared out over that many processes; the result is the same, in the same order."""
    from .rescore_train import labelled_scan_files, map_scans

    if getattr(detector, "rescorer", None) is None:
        raise InvalidParameterError("an evidence fusion needs a two-stage model (train a second stage first: nii rescorer train)")
    if getattr(detector.rescorer, "fusion", None) is not None:
        raise InvalidParameterError(f"{detector.folder.name} already has an evidence fusion; start from the two-stage model it was fitted on")
    files = labelled_scan_files(folders)
    parts = map_scans(files, lambda f: _rows(detector, f, floor), workers=workers, init=_worker_init,
                      initargs=(str(detector.folder), float(floor)), job=_worker_job, progress=progress)
    x = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, len(FEATURES)))
    c = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    y = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0)
    return x, c, y, len(files)


def fit_fusion(x: np.ndarray, class_ids: np.ndarray, labels: np.ndarray, classes: Sequence[str], *, l2: float = 10.0,
               floor: float = 0.05, mode: str = "cap", info: Mapping[str, Any] | None = None) -> Fusion:
    """One logistic model per class on the candidates of that class (:func:`fit_logistic`)."""
    cls = np.asarray(class_ids, np.int64)
    lab = np.asarray(labels, np.float64)
    w = np.zeros((len(classes), len(FEATURES)))
    b = np.zeros(len(classes))
    for c, name in enumerate(classes):
        m = cls == c
        n_pos = int(lab[m].sum())
        if n_pos < 5 or int(m.sum()) - n_pos < 5:
            raise InvalidDataError(f"too few {name} candidates to fit an evidence fusion: {n_pos} on objects, "
                                   f"{int(m.sum()) - n_pos} elsewhere (at least 5 of each); give more labelled scans")
        w[c], b[c] = fit_logistic(x[m], lab[m], l2=l2)
    return Fusion(w, b, floor=floor, mode=mode, info=dict(info or {}))


def build_fused(
    model: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    data: Sequence[str | os.PathLike],
    calibrate: Sequence[str | os.PathLike],
    test: str | os.PathLike | None = None,
    l2: float = 10.0,
    floor: float = 0.05,
    mode: str = "cap",
    workers: int = 1,
    threads: int | None = None,
    command: str = "",
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Fit an evidence fusion for the two-stage folder ``model`` on ``data`` and write ``out``.

    The new folder is ``model``'s with a ``fusion`` section in ``config.json``, thresholds
    calibrated on the fused scores of ``calibrate`` (disjoint from ``data`` and from the second
    stage's training scans), ``fusion_info.json``, a model card and ``SHA256SUMS``; with
    ``test``, metrics.
    """
    import time

    from .._atomic import atomic_dir, atomic_write_text
    from .detector import Detector, resolve_model_dir, write_sha256sums
    from .rescore_train import _SOURCE_ONLY, _card_calibration, _configure_calibrate_test, _training_folders

    say = progress or (lambda s: logger.info(s))
    src = resolve_model_dir(model)
    out = Path(out)
    if out.exists():
        raise InvalidParameterError(f"{out}: already exists; choose a new folder for the fused model")
    if not data:
        raise InvalidParameterError("give labelled scans to fit the fusion on (--data)")
    if not calibrate:
        raise InvalidParameterError("give at least one folder of calibration scans (--calibrate)")
    if not (0.0 < float(floor) < 1.0):
        raise InvalidParameterError(f"floor must be in (0, 1), got {floor}")
    if mode not in MODES:
        raise InvalidParameterError(f"mode must be one of {MODES}, got {mode!r}")
    if not (float(l2) > 0 and math.isfinite(float(l2))):
        raise InvalidParameterError(f"l2 must be positive, got {l2}")
    for d in [*data, *calibrate, *([test] if test is not None else [])]:
        if not Path(d).is_dir():
            raise InvalidParameterError(f"{d}: must be a folder of labelled scans")
    det = Detector.load(src, backend="onnx", threads=threads)
    if det.rescorer is None:
        raise InvalidParameterError(f"{src.name} has no second stage: an evidence fusion needs a two-stage model")
    if det.rescorer.fusion is not None:
        raise InvalidParameterError(f"{src.name} already has an evidence fusion; start from the two-stage model it was fitted on")
    fit_dirs = {str(Path(d).resolve()) for d in data}
    held = {str(Path(d).resolve()) for d in [*calibrate, *([test] if test is not None else [])]}
    if fit_dirs & held:
        raise InvalidParameterError(f"fitting folders must differ from calibration/test folders: {sorted(fit_dirs & held)}")
    cnn_dirs = set(_training_folders(src))
    if cnn_dirs & held:
        raise InvalidParameterError(f"the second stage was trained on calibration/test scans: {sorted(cnn_dirs & held)}")
    if cnn_dirs & fit_dirs:  # its probabilities are overconfident there: the fusion would over-trust them
        raise InvalidParameterError(f"fit the fusion on scans the second stage has not seen; it was trained on {sorted(cnn_dirs & fit_dirs)}")
    t0 = time.perf_counter()
    say(f"collecting candidates of {src.name} on {', '.join(map(str, data))}")
    x, cls, lab, n_scans = fusion_rows(det, data, floor=floor, workers=workers,
                                       progress=lambda i, n: say(f"  {i}/{n} scans") if i % 500 == 0 or i == n else None)
    t_rows = time.perf_counter() - t0
    classes = list(det.config.classes)
    counts = {c: {"on_objects": int(lab[cls == i].sum()), "elsewhere": int((cls == i).sum() - lab[cls == i].sum())}
              for i, c in enumerate(classes)}
    say(f"{len(lab)} candidates from {n_scans} scans: {counts}")
    fused = fit_fusion(x, cls, lab, classes, l2=l2, floor=floor, mode=mode,
                       info={"data": [str(d) for d in data], "scans": n_scans, "candidates": counts, "l2": float(l2)})
    with atomic_dir(out) as work:
        for f in sorted(src.iterdir()):
            if f.is_file() and f.name not in _SOURCE_ONLY and not f.name.startswith("."):
                shutil.copy2(f, work / f.name)
        extra = {k: v for k, v in det.config.extra.items() if k not in ("recalibrated_from",)}
        extra["fusion"] = fused.to_dict(classes)
        extra["fusion_of"] = src.name
        det.rescorer.fusion = fused
        try:
            _, th, metrics = _configure_calibrate_test(work, det, extra, det.rescorer, name=out.name, calibrate=calibrate, test=test, say=say)
        finally:
            det.rescorer.fusion = None
        info = {
            "source": src.name,
            "command": command,
            "data": [str(d) for d in data],
            "scans": n_scans,
            "candidates": counts,
            "floor": float(floor),
            "mode": mode,
            "l2": float(l2),
            "rows_seconds": round(t_rows, 1),
            "calibration_data": [str(d) for d in calibrate],
            "test_data": None if test is None else str(test),
            "thresholds": th.info,
        }
        atomic_write_text(work / "fusion_info.json", json.dumps(info, indent=1, default=str) + "\n")
        _write_card(work, name=out.name, src=src, fused=fused, classes=classes, info=info, th=th, metrics=metrics,
                    calibrate=calibrate, card_calibration=_card_calibration)
        write_sha256sums(work)
    return out


def _write_card(folder: Path, *, name: str, src: Path, fused: Fusion, classes: Sequence[str], info: Mapping[str, Any], th: Any,
                metrics: Mapping[str, Any] | None, calibrate: Sequence[Any], card_calibration: Callable[..., list[str]]) -> None:
    from .._atomic import atomic_write_text
    from .recalibrate import card_source

    n = info["candidates"]
    L = [f"# Model card: {name}", "",
         (f"`{src.name}` with an evidence fusion: each candidate's final confidence is a per-class logistic model of the "
          "detector's score, the second stage's class and background probabilities, the input kind and the material "
          "evidence inside the box (`nii.detect.fusion`)"
          + (", capped by the geometric mean of the two scores (the evidence can lower a flag's confidence, never raise it). "
             if fused.mode == "cap" else ", instead of the geometric mean of the two scores. ")
          + "The thresholds were calibrated on these final scores."), "",
         f"Made by: `{info.get('command') or 'nii rescorer fuse'}`.", "",
         "## Evidence fusion", "",
         (f"Fitted on {sum(v['on_objects'] + v['elsewhere'] for v in n.values())} candidates (two-stage score >= "
          f"{fused.floor}) of {info['scans']} labelled scans ({', '.join(f'`{d}`' for d in info['data'])}), L2 penalty "
          f"{info['l2']} on standardised features: " + ", ".join(f"{c} {v['on_objects']} on objects / {v['elsewhere']} elsewhere"
                                                              for c, v in n.items()) + "."), "",
         "Weights (raw feature units; see `nii.detect.fusion.FEATURES`):", "",
         "| feature | " + " | ".join(classes) + " |",
         "|---|" + "---|" * len(classes)]
    for j, f in enumerate(FEATURES):
        L.append(f"| {f} | " + " | ".join(f"{fused.weights[i, j]:+.3f}" for i in range(len(classes))) + " |")
    L.append("| (bias) | " + " | ".join(f"{fused.bias[i]:+.3f}" for i in range(len(classes))) + " |")
    L.append("")
    L += card_calibration(th, calibrate, metrics)
    card = (src / "MODEL_CARD.md").read_text(encoding="utf-8") if (src / "MODEL_CARD.md").is_file() else ""
    L += card_source(src.name, card, note="The two-stage model's own card follows; its operating point and metrics are for it alone.")
    atomic_write_text(folder / "MODEL_CARD.md", "\n".join(L))
