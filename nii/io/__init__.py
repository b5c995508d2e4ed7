"""Reading and writing scans.

:func:`read` is the single entry point: it sniffs the file's *content* (never its extension),
hands it to the one reader that recognises it, and returns a :class:`~nii.containers.RawScan`
(detector counts) or a :class:`~nii.containers.Scan` (already-normalised input such as an
8-bit rendering). Every failure is a :class:`~nii.errors.NiiError` naming the file.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from .._assets import sha256_file
from ..containers import RawScan, Scan, SourceInfo
from ..errors import (
    CorruptFileError,
    FileAccessError,
    InvalidParameterError,
    NiiError,
    UnsupportedFormatError,
)
from ._registry import HEAD_BYTES, READERS, default_max_pixels, reader_module

__all__ = ["read", "sniff", "write_hdf5", "read_hdf5", "formats"]

logger = logging.getLogger(__name__)


def formats() -> list[str]:
    """Names of the registered formats, in sniffing order."""
    return list(READERS)


def _open_head(path: Path) -> bytes:
    if not path.exists():
        raise FileAccessError("no such file", path=path)
    if not path.is_file():
        raise FileAccessError("not a regular file", path=path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError as exc:
        raise FileAccessError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    if not head:
        raise CorruptFileError("file is empty", path=path)
    return head


def sniff(path: str | os.PathLike) -> str:
    """Return the name of the format whose reader recognises the file's content.

    Raises
    ------
    FileAccessError
        The path does not exist or cannot be read.
    UnsupportedFormatError
        No reader recognises the content.
    """
    path = Path(path)
    head = _open_head(path)
    for name in READERS:
        mod = reader_module(name)
        try:
            if mod.sniff(head, path):
                return name
        except Exception:  # a sniffer must never raise; treat as "not mine"
            logger.debug("sniffer %s raised on %s", name, path, exc_info=True)
    raise UnsupportedFormatError(
        f"content is not a format nii reads (tried {', '.join(READERS)}); first bytes {head[:8]!r}",
        path=path,
    )


def read(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    max_pixels: int | None = None,
) -> RawScan | Scan:
    """Read a scan file of any supported format.

    Parameters
    ----------
    path : path
        The scan file (for raw binary, the data file or its JSON sidecar).
    format : str, optional
        Force a reader by name instead of sniffing (see :func:`formats`).
    max_pixels : int, optional
        Refuse files whose declared size (samples over all energy planes) exceeds this, before
        allocating. Default: ``NII_MAX_PIXELS`` or 2**29.

    Returns
    -------
    RawScan or Scan
        With ``source`` set to the path, SHA-256 and format name.
    """
    path = Path(path)
    limit = default_max_pixels() if max_pixels is None else int(max_pixels)
    if limit <= 0:
        raise InvalidParameterError(f"max_pixels must be positive, got {max_pixels!r}")
    if format is None:
        format = sniff(path)
    elif format not in READERS:
        raise InvalidParameterError(f"unknown format {format!r}; known: {', '.join(READERS)}")
    else:
        _open_head(path)
    mod = reader_module(format)
    try:
        scan = mod.read(path, max_pixels=limit)
    except NiiError:
        raise
    except MemoryError as exc:
        raise CorruptFileError(f"{format}: not enough memory to read ({exc})", path=path) from exc
    except Exception as exc:  # any library error on bad bytes becomes a named NiiError
        raise CorruptFileError(f"{format}: cannot decode ({type(exc).__name__}: {exc})", path=path) from exc
    if scan.source is None:
        scan = dataclasses.replace(scan, source=SourceInfo(str(path), sha256_file(path), format))
    logger.debug("read %s as %s: shape %s", path, format, scan.shape)
    return scan


def write_hdf5(scan: RawScan | Scan, path: str | os.PathLike, **kwargs) -> Path:
    """Write a scan to nii HDF5 (schema ``nii-scan/1``) atomically; see :mod:`nii.io.hdf5`."""
    from . import hdf5

    return hdf5.write(scan, path, **kwargs)


def read_hdf5(path: str | os.PathLike, *, prefer: str = "raw", max_pixels: int | None = None) -> RawScan | Scan:
    """Read nii HDF5, choosing the raw or the calibrated group; see :func:`nii.io.hdf5.read`."""
    from . import hdf5

    limit = default_max_pixels() if max_pixels is None else int(max_pixels)
    return hdf5.read(Path(path), max_pixels=limit, prefer=prefer)
