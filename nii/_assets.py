"""Locate nii's asset folders (``calibration/``, ``detectors/``, ``sample_scans/``).

Assets live at the top of the source tree, beside the ``nii`` package. Each folder can be
overridden by an environment variable, read when the resolver is called (never at import):

``NII_CALIBRATION_DIR``, ``NII_DETECTORS_DIR``, ``NII_SAMPLE_SCANS_DIR``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import FileAccessError, InvalidParameterError

__all__ = ["asset_dir", "asset_path", "sha256_file"]

_ENV = {
    "calibration": "NII_CALIBRATION_DIR",
    "detectors": "NII_DETECTORS_DIR",
    "sample_scans": "NII_SAMPLE_SCANS_DIR",
}


def asset_dir(kind: str) -> Path:
    """Return the folder holding assets of ``kind`` (``calibration``, ``detectors``, ``sample_scans``)."""
    if kind not in _ENV:
        raise InvalidParameterError(f"asset kind must be one of {sorted(_ENV)}, got {kind!r}")
    override = os.environ.get(_ENV[kind])
    if override:
        path = Path(override).expanduser()
    else:
        path = Path(__file__).resolve().parent.parent / kind
    if not path.is_dir():
        raise FileAccessError(
            f"asset folder for {kind!r} not found (set {_ENV[kind]} to override)", path=path
        )
    return path


def asset_path(kind: str, *parts: str) -> Path:
    """Return ``asset_dir(kind) / parts``, raising :class:`FileAccessError` if it does not exist."""
    path = asset_dir(kind).joinpath(*parts)
    if not path.exists():
        raise FileAccessError(f"asset not found in {kind}/", path=path)
    return path


def sha256_file(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    except OSError as exc:
        raise FileAccessError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    return h.hexdigest()
