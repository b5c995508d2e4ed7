"""Contraband detection: the YOLO detector (tiled ONNX inference), an optional second stage
that re-scores candidates on native-resolution crops (:mod:`nii.detect.rescore`), physical
evidence, the material-anomaly cue, operating-point calibration and evaluation.

Runtime inference needs only NumPy, OpenCV and onnxruntime; training and the Ultralytics backend
go through :mod:`nii.detect._ultralytics` and :mod:`nii.detect._rescorer_torch` (the ``train``
extra). Submodules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

__all__ = ["AnomalyConfig", "Detection", "Detector", "ModelConfig", "Thresholds"]

_LAZY = {
    "Detector": ("nii.detect.detector", "Detector"),
    "ModelConfig": ("nii.detect.detector", "ModelConfig"),
    "Detection": ("nii.detect.types", "Detection"),
    "Thresholds": ("nii.detect.thresholds", "Thresholds"),
    "AnomalyConfig": ("nii.detect.evidence", "AnomalyConfig"),
}

if TYPE_CHECKING:  # pragma: no cover
    from .detector import Detector, ModelConfig
    from .evidence import AnomalyConfig
    from .thresholds import Thresholds
    from .types import Detection


__getattr__, __dir__ = lazy_exports("nii.detect", globals(), _LAZY)
