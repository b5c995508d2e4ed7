"""Helpers shared by the scan readers: size limits, reference sanity checks, small parsers.

Every helper raises a :class:`~nii.errors.NiiError` subclass naming the file, so a reader can call
them without wrapping.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CorruptFileError, FileAccessError, InvalidDataError, SizeLimitError

__all__ = [
    "check_pixel_limit",
    "check_finite",
    "check_references",
    "file_size",
    "read_exact",
    "PNG_MAGIC",
    "JPEG_MAGIC",
    "TIFF_MAGICS",
    "DICM_OFFSET",
    "known_binary_magic",
    "load_json_description",
]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
DICM_OFFSET = 128


def known_binary_magic(head: bytes) -> str | None:
    """Name of the image container whose signature starts ``head`` (png, jpeg, tiff, dicom, hdf5)."""
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head[:4] in TIFF_MAGICS:
        return "tiff"
    if head[DICM_OFFSET : DICM_OFFSET + 4] == b"DICM":
        return "dicom"
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    return None


def check_pixel_limit(shape: Sequence[int], max_pixels: int, path: Path, what: str) -> int:
    """Raise :class:`SizeLimitError` when ``prod(shape)`` exceeds ``max_pixels``; return the product.

    Called with the *declared* dimensions, before anything of that size is allocated. Negative or
    absurd dimensions are a :class:`CorruptFileError`.
    """
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        raise CorruptFileError(f"{what} declares negative dimensions {tuple(dims)}", path=path)
    total = math.prod(dims)  # Python int: no overflow
    if total > max_pixels:
        raise SizeLimitError(
            f"{what} declares {total} samples {tuple(dims)}, above the limit of {max_pixels} "
            "(raise max_pixels or NII_MAX_PIXELS to read it)",
            path=path,
        )
    return total


def check_finite(arr: np.ndarray, path: Path, what: str) -> None:
    """Raise :class:`InvalidDataError` if a float array holds NaN or Inf."""
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        n = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise InvalidDataError(f"{what} contains {n} NaN/Inf value(s)", path=path)


def check_references(
    dark: np.ndarray | None,
    air: np.ndarray | None,
    path: Path,
    *,
    air_name: str = "air",
) -> None:
    """Sanity of dark/air references: finite, air not all zero, air above dark on average.

    Individual dead channels (air <= dark) are legitimate and are left to the dead-pixel
    repair; a reference that is zero everywhere, or whose mean air does not exceed the mean dark
    in some energy plane, is unusable and raises :class:`InvalidDataError`.
    """
    for name, ref in (("dark", dark), (air_name, air)):
        if ref is not None:
            check_finite(np.asarray(ref), path, f"{name} reference")
    if air is None:
        return
    a = np.asarray(air, dtype=np.float64)
    if not np.any(a):
        raise InvalidDataError(f"{air_name} reference is zero everywhere (no open-beam signal)", path=path)
    a_mean = a.reshape(a.shape[0], -1).mean(axis=1)
    if dark is not None:
        d = np.asarray(dark, dtype=np.float64)
        d_mean = d.reshape(d.shape[0], -1).mean(axis=1)
    else:
        d_mean = np.zeros_like(a_mean)
    bad = np.flatnonzero(a_mean <= d_mean)
    if bad.size:
        e = int(bad[0])
        raise InvalidDataError(
            f"{air_name} reference of energy plane {e} (mean {a_mean[e]:.6g}) does not exceed the dark "
            f"reference (mean {d_mean[e]:.6g})",
            path=path,
        )


def file_size(path: Path) -> int:
    """Size of ``path`` in bytes, as a :class:`FileAccessError` when it cannot be stat'ed."""
    try:
        return os.stat(path).st_size
    except OSError as exc:
        raise FileAccessError(f"cannot stat: {exc.strerror or exc}", path=path) from exc


def read_exact(path: Path, offset: int, count: int, dtype: np.dtype) -> np.ndarray:
    """Read ``count`` items of ``dtype`` at byte ``offset``; a short file is a :class:`CorruptFileError`."""
    dtype = np.dtype(dtype)
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            arr = np.fromfile(fh, dtype=dtype, count=count)
    except OSError as exc:
        raise FileAccessError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    if arr.size != count:
        raise CorruptFileError(
            f"truncated: expected {count * dtype.itemsize} bytes at offset {offset}, found {arr.size * dtype.itemsize}",
            path=path,
        )
    return arr


def load_json_description(text: str | bytes | None, prefix: str) -> dict[str, Any] | None:
    """Parse a JSON object whose ``"format"`` starts with ``prefix``; None when it is not one."""
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip().rstrip("\x00")
    if not text.startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not str(obj.get("format", "")).startswith(prefix):
        return None
    return obj
