"""Contraband detection: the YOLO detector (tiled ONNX inference), physical evidence, the
material-anomaly cue, operating-point calibration and evaluation.

Runtime inference needs only NumPy, OpenCV and onnxruntime; training and the Ultralytics backend
go through :mod:`nii.detect._ultralytics` (the ``train`` extra). Submodules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nii.detect' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
