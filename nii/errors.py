"""Exception hierarchy of nii.

Every error nii raises on bad input is a :class:`NiiError` subclass whose message names the
file or parameter concerned and what was expected, so that a batch job can report it and go on.
"""

from __future__ import annotations

import os

__all__ = [
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
]


class NiiError(Exception):
    """Base class of every error nii raises deliberately.

    Parameters
    ----------
    message : str
        What went wrong and what was expected.
    path : str or os.PathLike, optional
        The file concerned; it is prefixed to the message so that the file is always named.
    """

    def __init__(self, message: str, *, path: str | os.PathLike | None = None) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class FileAccessError(NiiError, OSError):
    """The path does not exist, is not a regular file, or cannot be read or written."""


class UnsupportedFormatError(NiiError):
    """No reader recognises the file's content."""


class CorruptFileError(NiiError):
    """The file claims a known format but is truncated or internally inconsistent."""


class SidecarError(NiiError):
    """A raw file's JSON sidecar is missing, malformed, or disagrees with the data."""


class InvalidDataError(NiiError, ValueError):
    """Array content is unusable: NaN/Inf, zero or missing air, wrong shape or dtype."""


class SizeLimitError(NiiError):
    """The declared dimensions exceed the configured pixel limit (checked before allocating)."""


class InvalidParameterError(NiiError, ValueError):
    """A function argument is out of range or of the wrong kind."""


class CalibrationError(NiiError):
    """A calibration set or table is missing, malformed, or fails its integrity check."""


class CalibrationMismatchError(CalibrationError):
    """A calibration set does not match the scan (shape, energies or scanner profile)."""


class ModelError(NiiError):
    """A detector model folder is missing, malformed, or fails its integrity check."""
