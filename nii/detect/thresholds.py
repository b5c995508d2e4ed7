"""Operating point: per-class confidence thresholds calibrated to an image-level false-alarm rate.

Image-level false-alarm rate (FAR) is the fraction of *negative* images (no contraband) on which
the detector raises any alarm: some detection of some class with a score at or above that class's
threshold. Calibration uses, for each negative validation image, the highest score of each class
(``neg_scores``, shape ``(N, nc)``, 0 where a class has no candidate). ``thresholds.json`` stores
that matrix, so an operating point for *any* FAR can be derived at run time (``--far 0.5%``);
the FAR targets listed in the file are precomputed for reading.

Two rules are implemented:

``global``
    one threshold shared by all classes: the smallest value ``t`` such that at most
    ``floor(far * N)`` negative images have a best score ``>= t``.
``per_class``
    the FAR budget split evenly (``far / nc`` per class, a union bound), one threshold per class.

:func:`calibrate` picks the rule with the higher mean detection probability on the validation
positives when they are given (else ``global``). With ``N`` negative images the smallest FAR that
can be resolved is ``1 / N``; a lower target sets the threshold just above every negative score.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidParameterError, ModelError

__all__ = [
    "FAR_TARGETS",
    "Thresholds",
    "calibrate",
    "image_far",
    "parse_far",
    "threshold_for_far",
    "thresholds_for_far",
]

#: FAR targets precomputed in ``thresholds.json``.
FAR_TARGETS = (0.001, 0.005, 0.01, 0.02, 0.05)
SCHEMA = "nii-thresholds/1"
METHODS = ("global", "per_class")


def parse_far(value: float | str) -> float:
    """Parse a false-alarm rate: ``0.01``, ``"0.01"``, ``"1%"``, ``"0.5 %"`` -> fraction in (0, 1).

    Examples
    --------
    >>> parse_far("0.5%"), parse_far(0.01), parse_far("2%")
    (0.005, 0.01, 0.02)
    """
    raw = value
    try:
        if isinstance(value, str):
            s = value.strip()
            if s.endswith("%"):
                f = float(s[:-1]) / 100.0
            else:
                f = float(s)
        else:
            f = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"far must be a fraction (0.01) or a percentage ('1%'), got {raw!r}") from exc
    if not (math.isfinite(f) and 0.0 < f < 1.0):
        raise InvalidParameterError(f"far must be in (0, 1) (or '0%'-'100%' exclusive), got {raw!r}")
    return round(f, 12)


def threshold_for_far(scores: np.ndarray, far: float, *, floor: float = 0.0) -> float:
    """Smallest threshold ``t >= floor`` with ``mean(scores >= t) <= far`` (scores: one per negative image).

    When the allowed number of alarms is below one image and the loudest negative scored 1.0,
    the threshold is the next float above 1: nothing alarms.
    """
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())[::-1]
    n = s.size
    if n == 0:
        raise InvalidParameterError("cannot calibrate a threshold without negative images")
    k = int(math.floor(far * n + 1e-9))
    if k >= n:
        return float(floor)
    t = float(np.nextafter(np.float32(s[k]), np.float32(np.inf)))
    return float(max(t, floor))  # may exceed 1: then nothing alarms


def thresholds_for_far(neg_scores: np.ndarray, far: float, *, method: str = "global", floor: float = 0.0) -> np.ndarray:
    """Per-class thresholds ``(nc,)`` for a target image-level FAR (see module docstring)."""
    neg = np.asarray(neg_scores, dtype=np.float32)
    if neg.ndim != 2:
        raise InvalidParameterError(f"neg_scores must be (N images, nc classes), got {neg.shape}")
    if method == "global":
        t = threshold_for_far(neg.max(axis=1) if neg.shape[1] else np.zeros(neg.shape[0]), far, floor=floor)
        return np.full(neg.shape[1], t, np.float32)
    if method == "per_class":
        nc = neg.shape[1]
        return np.array([threshold_for_far(neg[:, c], far / nc, floor=floor) for c in range(nc)], np.float32)
    raise InvalidParameterError(f"method must be one of {METHODS}, got {method!r}")


def image_far(neg_scores: np.ndarray, thresholds: np.ndarray) -> float:
    """Fraction of negative images with any class score at or above its threshold."""
    neg = np.asarray(neg_scores, dtype=np.float32)
    if neg.shape[0] == 0:
        return float("nan")
    return float(np.mean(np.any(neg >= np.asarray(thresholds, np.float32)[None, :], axis=1)))


def _pd(pos_classes: np.ndarray, pos_scores: np.ndarray, thr: np.ndarray, nc: int) -> np.ndarray:
    pd = np.full(nc, np.nan)
    for c in range(nc):
        m = pos_classes == c
        if m.any():
            pd[c] = float(np.mean(pos_scores[m] >= thr[c]))
    return pd


@dataclass(frozen=True, eq=False)
class Thresholds:
    """Calibrated operating points of a model (content of ``thresholds.json``).

    Parameters
    ----------
    classes : tuple of str
    neg_scores : ndarray (N, nc) float32
        Best score of each class on each negative calibration image.
    method : {"global", "per_class"}
    default_far : float
        FAR used when none is asked for.
    floor : float
        No threshold goes below this (the decoder's ``min_conf``).
    info : dict
        Provenance of the calibration (data set, image count, Pd on validation, ...).
    """

    classes: tuple[str, ...]
    neg_scores: np.ndarray
    method: str = "global"
    default_far: float = 0.01
    floor: float = 0.01
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        neg = np.asarray(self.neg_scores, dtype=np.float32).reshape(-1, len(self.classes))
        if neg.shape[0] == 0:
            raise ModelError("thresholds: no negative calibration images")
        if self.method not in METHODS:
            raise ModelError(f"thresholds: method must be one of {METHODS}, got {self.method!r}")
        neg.flags.writeable = False
        object.__setattr__(self, "neg_scores", neg)
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "default_far", parse_far(self.default_far))

    @property
    def n_negative(self) -> int:
        return int(self.neg_scores.shape[0])

    def for_far(self, far: float | str | None = None) -> np.ndarray:
        """Per-class thresholds ``(nc,)`` for ``far`` (default: ``default_far``)."""
        f = self.default_far if far is None else parse_far(far)
        return thresholds_for_far(self.neg_scores, f, method=self.method, floor=self.floor)

    def operating_points(self, targets: Sequence[float] = FAR_TARGETS) -> list[dict[str, Any]]:
        pts = []
        for f in targets:
            thr = self.for_far(f)
            pts.append(
                {
                    "far_target": f,
                    "far_on_calibration": round(image_far(self.neg_scores, thr), 6),
                    "thresholds": {c: round(float(t), 6) for c, t in zip(self.classes, thr)},
                }
            )
        return pts

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "classes": list(self.classes),
            "method": self.method,
            "default_far": self.default_far,
            "floor": self.floor,
            "n_negative_images": self.n_negative,
            "far_resolution": round(1.0 / self.n_negative, 6),
            "operating_points": self.operating_points(),
            "info": self.info,
            "neg_scores": np.round(self.neg_scores.astype(np.float64), 5).tolist(),
        }

    def save(self, path: str | os.PathLike) -> Path:
        from .._atomic import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike, *, classes: Sequence[str] | None = None) -> Thresholds:
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"thresholds.json unreadable: {exc}", path=path) from exc
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise ModelError(f"not a {SCHEMA} file", path=path)
        if classes is not None and list(d.get("classes", [])) != list(classes):
            raise ModelError(f"classes {d.get('classes')} differ from config.json {list(classes)}", path=path)
        try:
            return cls(
                classes=tuple(d["classes"]),
                neg_scores=np.asarray(d["neg_scores"], dtype=np.float32),
                method=d.get("method", "global"),
                default_far=d.get("default_far", 0.01),
                floor=float(d.get("floor", 0.01)),
                info=dict(d.get("info", {})),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelError(f"malformed thresholds: {exc}", path=path) from exc


def calibrate(
    classes: Sequence[str],
    neg_scores: np.ndarray,
    *,
    pos_classes: np.ndarray | None = None,
    pos_scores: np.ndarray | None = None,
    default_far: float | str = 0.01,
    floor: float = 0.01,
    method: str | None = None,
    info: dict[str, Any] | None = None,
) -> Thresholds:
    """Calibrate thresholds on validation data.

    Parameters
    ----------
    classes : sequence of str
    neg_scores : ndarray (N, nc)
        Best score per class on each negative validation image (0 where none).
    pos_classes, pos_scores : ndarray (M,), optional
        Class of each validation truth object and the best score of a same-class detection matched
        to it (0 if none); used to choose the rule and to report Pd at each target.
    default_far : float or str
    floor : float
    method : {"global", "per_class"}, optional
        Force a rule; default: the better on the positives (``global`` without positives).
    """
    nc = len(classes)
    neg = np.asarray(neg_scores, dtype=np.float32).reshape(-1, nc)
    far0 = parse_far(default_far)
    info = dict(info or {})
    have_pos = pos_classes is not None and pos_scores is not None and len(pos_classes) > 0
    if method is None:
        method = "global"
        if have_pos:
            pc, ps = np.asarray(pos_classes), np.asarray(pos_scores, np.float32)
            best = -1.0
            for m in METHODS:
                score = float(np.nanmean(_pd(pc, ps, thresholds_for_far(neg, far0, method=m, floor=floor), nc)))
                if score > best + 1e-9:
                    best, method = score, m
    th = Thresholds(tuple(classes), neg, method=method, default_far=far0, floor=floor, info=info)
    if have_pos:
        pc, ps = np.asarray(pos_classes), np.asarray(pos_scores, np.float32)
        info["pd_on_calibration"] = {
            f"{f:g}": {c: (None if math.isnan(v) else round(float(v), 4)) for c, v in zip(classes, _pd(pc, ps, th.for_far(f), nc))}
            for f in FAR_TARGETS
        }
        info["n_positive_objects"] = len(pc)
    return th
