"""Reader registry: readers are registered by name and imported lazily.

A reader is a module exposing

``FORMAT``
    its format name (e.g. ``"nii-hdf5"``);
``sniff(head: bytes, path: pathlib.Path) -> bool``
    True when the content (the first :data:`HEAD_BYTES` bytes, and for sidecar formats the file
    beside it) is this reader's format. Sniffing never looks at the extension and never raises;
``read(path: pathlib.Path, *, max_pixels: int) -> RawScan | Scan``
    reads the file, raising only :class:`~nii.errors.NiiError` subclasses. It must check declared
    dimensions against ``max_pixels`` before allocating.

Order matters only where two formats could both claim a file; the most specific comes first.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["HEAD_BYTES", "READERS", "reader_module", "default_max_pixels"]

#: Bytes handed to ``sniff`` (DICOM needs 132, the HDF5 superblock may sit at 512/1024/2048).
HEAD_BYTES = 4096

#: name -> module, most specific first.
READERS: dict[str, str] = {
    "nii-hdf5": "nii.io.hdf5",
    "dicos": "nii.io.dicos",
    "raw": "nii.io.raw",
    "tiff": "nii.io.tiff",
    "rendered": "nii.io.rendered",
}

_DEFAULT_MAX_PIXELS = 1 << 29  # 537 M samples over all energy planes (~1 GiB as uint16)


def reader_module(name: str) -> ModuleType:
    """Import and return the reader module registered under ``name``."""
    return importlib.import_module(READERS[name])


def default_max_pixels() -> int:
    """Pixel limit (samples over all energy planes) from ``NII_MAX_PIXELS`` or the default."""
    env = os.environ.get("NII_MAX_PIXELS")
    if env:
        try:
            value = int(float(env))
        except ValueError:
            value = 0
        if value > 0:
            return value
    return _DEFAULT_MAX_PIXELS
