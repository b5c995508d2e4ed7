"""The detection result type of nii: plain, frozen and JSON-serialisable.

Every backend (onnxruntime, Ultralytics) and the physics-cue detector convert their output into
:class:`Detection` at once, so nothing downstream depends on a third-party result type.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidParameterError

__all__ = ["ORIGINS", "ORIGIN_ANOMALY", "ORIGIN_YOLO", "Detection"]

ORIGIN_YOLO = "yolo"
ORIGIN_ANOMALY = "material_anomaly"
#: Where a detection comes from: the learned detector or the physics-cue material-anomaly detector.
ORIGINS = (ORIGIN_YOLO, ORIGIN_ANOMALY)


def _plain(value: Any) -> Any:
    """Convert numpy scalars / arrays / mappings into plain JSON types (NaN becomes None)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class Detection:
    """One detected object in a scan.

    Parameters
    ----------
    class_name : str
        Class of the object (``"ivory"``, ...) or, for ``origin="material_anomaly"``, the cue
        (``"bone_like"`` or ``"dense_organic"``).
    class_id : int
        Index of ``class_name`` in the model's class list; -1 for material anomalies.
    confidence : float
        Model score in [0, 1] (for anomalies: the fraction of the box's object pixels that show the cue).
    box_px : (x0, y0, x1, y1)
        Box in the pixel frame of the scan given to the detector (x along the belt / scan lines,
        y across, i.e. along the detector channels), any resampling to the detector pitch undone.
    box_mm : (x0, y0, x1, y1)
        The same box in mm from the scan's first pixel corner.
    origin : str
        ``"yolo"`` (learned detector) or ``"material_anomaly"`` (physics cue).
    evidence : mapping
        Material statistics inside the box (see :func:`nii.detect.evidence.box_evidence`).
    """

    class_name: str
    class_id: int
    confidence: float
    box_px: tuple[float, float, float, float]
    box_mm: tuple[float, float, float, float] = (math.nan,) * 4
    origin: str = ORIGIN_YOLO
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.origin not in ORIGINS:
            raise InvalidParameterError(f"Detection.origin must be one of {ORIGINS}, got {self.origin!r}")
        box = tuple(float(v) for v in self.box_px)
        if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] < box[0] or box[3] < box[1]:
            raise InvalidParameterError(f"Detection.box_px must be finite xyxy with x0<=x1, y0<=y1, got {self.box_px!r}")
        conf = float(self.confidence)
        if not (0.0 <= conf <= 1.0):
            raise InvalidParameterError(f"Detection.confidence must be in [0, 1], got {self.confidence!r}")
        object.__setattr__(self, "box_px", box)
        object.__setattr__(self, "box_mm", tuple(float(v) for v in self.box_mm))
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "class_id", int(self.class_id))
        object.__setattr__(self, "class_name", str(self.class_name))
        object.__setattr__(self, "evidence", types.MappingProxyType(dict(self.evidence)))

    @property
    def is_anomaly(self) -> bool:
        """True for physics-cue material anomalies (not a model detection)."""
        return self.origin == ORIGIN_ANOMALY

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary: ``{"class", "class_id", "confidence", "box_px", "box_mm", "origin", "evidence"}``."""
        return {
            "class": self.class_name,
            "class_id": self.class_id,
            "confidence": round(self.confidence, 5),
            "box_px": [round(v, 2) for v in self.box_px],
            "box_mm": _plain([round(v, 1) for v in self.box_mm]),
            "origin": self.origin,
            "evidence": _plain(dict(self.evidence)),
        }
