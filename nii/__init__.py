"""nii — wildlife-contraband detection for customs X-ray (non-intrusive inspection) scanners.

Importing :mod:`nii` is cheap and has no side effects; heavy modules (readers, Numba kernels,
the detector) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from ._version import __version__
from .containers import EnergyChannel, Provenance, RawScan, Scan, SourceInfo, Step, Truth
from .errors import (
    CalibrationError,
    CalibrationMismatchError,
    CorruptFileError,
    FileAccessError,
    InvalidDataError,
    InvalidParameterError,
    ModelError,
    NiiError,
    SidecarError,
    SizeLimitError,
    UnsupportedFormatError,
)
from .materials import MaterialClass

__all__ = [
    "__version__",
    "read",
    "write_hdf5",
    "normalize",
    "normalize_stream",
    "Pipeline",
    "Result",
    "Detector",
    "Pipeline",
    "Result",
    "RawScan",
    "Scan",
    "EnergyChannel",
    "SourceInfo",
    "Truth",
    "Step",
    "Provenance",
    "MaterialClass",
    "NiiError",
    "FileAccessError",
    "UnsupportedFormatError",
    "CorruptFileError",
    "SidecarError",
    "InvalidDataError",
    "SizeLimitError",
    "InvalidParameterError",
    "CalibrationError",
    "CalibrationMismatchError",
    "ModelError",
    "tune_allocator",
]

# name -> (module, attribute), imported on first access
_LAZY = {
    "read": ("nii.io", "read"),
    "write_hdf5": ("nii.io", "write_hdf5"),
    "normalize": ("nii.normalization", "normalize"),
    "normalize_stream": ("nii.normalization", "normalize_stream"),
    "Detector": ("nii.detect", "Detector"),
    "Pipeline": ("nii.pipeline", "Pipeline"),
    "Result": ("nii.pipeline", "Result"),
    "tune_allocator": ("nii._malloc", "tune_allocator"),
}

if TYPE_CHECKING:  # pragma: no cover
    from .detect import Detector
    from .io import read, write_hdf5
    from ._malloc import tune_allocator
    from .pipeline import Pipeline, Result


__getattr__, __dir__ = lazy_exports("nii", globals(), _LAZY)
