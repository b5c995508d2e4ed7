"""TIFF: 16-bit (or 32-bit) detector counts, one page per energy (spec in ``docs/formats.md``).

Page rows are detector channels (H), columns scan lines (W). When nii wrote the file, the first
page's ImageDescription holds a JSON object ``{"format": "nii-tiff/1", ...}`` with energies,
pixel pitch, scan id and the role of every page (``counts``, ``dark``, ``air``, ``air_end``), so
a :class:`RawScan` round-trips exactly. A foreign TIFF gets defaults: pages are energies
(1 page ``single``, 2 pages ``low``/``high``, else ``e0``, ``e1``, ...), pitch 1 mm, and
``metadata["energies_assumed"]`` / ``metadata["pitch_assumed"]`` say so.

8-bit TIFFs are renderings, not counts: they are read like an 8-bit PNG
(:mod:`nii.io.rendered`) and return a :class:`Scan` with ``rendered=True``. Floating-point TIFFs
are refused (:class:`UnsupportedFormatError`): nii does not guess what quantity they hold.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path
from ..containers import EnergyChannel, RawScan, Scan
from ..errors import CorruptFileError, InvalidDataError, InvalidParameterError, NiiError, UnsupportedFormatError
from ._common import TIFF_MAGICS, check_finite, check_pixel_limit, check_references, load_json_description

__all__ = ["FORMAT", "DESCRIPTION_FORMAT", "DEFAULT_PITCH_MM", "sniff", "read", "write"]

FORMAT = "tiff"
DESCRIPTION_FORMAT = "nii-tiff/1"
DEFAULT_PITCH_MM = (1.0, 1.0)
_REF_ROLES = ("dark", "air", "air_end")


def sniff(head: bytes, path: Path) -> bool:
    """Classic or BigTIFF signature, either byte order."""
    return head[:4] in TIFF_MAGICS


def _default_energies(n: int) -> tuple[EnergyChannel, ...]:
    if n == 1:
        return (EnergyChannel("single"),)
    if n == 2:
        return (EnergyChannel("low"), EnergyChannel("high"))
    return tuple(EnergyChannel(f"e{i}") for i in range(n))


def read(path: Path, *, max_pixels: int) -> RawScan | Scan:
    """Read a TIFF of counts (see module docstring)."""
    import tifffile

    path = Path(path)
    try:
        tif = tifffile.TiffFile(path)
    except NiiError:
        raise
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error ... on bad bytes
        raise CorruptFileError(f"TIFF: cannot parse the header ({type(exc).__name__}: {exc})", path=path) from exc
    with tif:
        try:
            pages = list(tif.pages)
        except Exception as exc:
            raise CorruptFileError(f"TIFF: damaged page directory ({type(exc).__name__}: {exc})", path=path) from exc
        if not pages:
            raise CorruptFileError("TIFF: no image pages", path=path)
        # declared sizes first, nothing decoded yet
        check_pixel_limit((sum(int(np.prod(p.shape)) for p in pages),), max_pixels, path, f"TIFF ({len(pages)} pages)")
        first = pages[0]
        desc = load_json_description(first.description, DESCRIPTION_FORMAT)
        dtype = np.dtype(first.dtype) if first.dtype is not None else None
        if desc is None and dtype == np.uint8:
            from . import rendered

            img = _asarray(first, path)
            if img.ndim == 3 and img.shape[-1] not in (3, 4):
                raise UnsupportedFormatError(f"8-bit TIFF of shape {img.shape} is not a greyscale or RGB image", path=path)
            meta = {"container": "tiff", "lossy": False, "pitch_assumed": True}
            if len(pages) > 1:
                meta["tiff_pages_ignored"] = len(pages) - 1  # a rendering is one image
            return rendered.scan_from_8bit(img, path, meta=meta)
        if desc is not None:
            return _read_nii(pages, desc, path)
        return _read_foreign(pages, path)


def _asarray(page: Any, path: Path) -> np.ndarray:
    try:
        return page.asarray()
    except NiiError:
        raise
    except Exception as exc:
        raise CorruptFileError(f"TIFF: cannot decode page {page.index} ({type(exc).__name__}: {exc})", path=path) from exc


def _count_page(page: Any, path: Path) -> np.ndarray:
    dt = np.dtype(page.dtype) if page.dtype is not None else None
    if dt is not None and np.issubdtype(dt, np.floating):
        raise UnsupportedFormatError(
            f"TIFF page {page.index} holds {dt} samples; nii reads 16/32-bit unsigned counts or 8-bit renderings",
            path=path,
        )
    if dt not in (np.dtype(np.uint16), np.dtype(np.uint32)):
        raise UnsupportedFormatError(f"TIFF page {page.index} has sample type {dt}; expected uint16 or uint32", path=path)
    if len(page.shape) != 2:
        raise UnsupportedFormatError(
            f"TIFF page {page.index} has shape {page.shape}; expected one greyscale plane per energy", path=path
        )
    return _asarray(page, path)


def _read_foreign(pages: list, path: Path) -> RawScan:
    planes = [_count_page(p, path) for p in pages]
    shapes = {a.shape for a in planes}
    dtypes = {a.dtype for a in planes}
    if len(shapes) != 1 or len(dtypes) != 1:
        raise InvalidDataError(
            f"TIFF pages differ in shape {sorted(shapes)} or type {sorted(map(str, dtypes))}; "
            "one page per energy must share both",
            path=path,
        )
    return RawScan(
        counts=np.stack(planes),
        energies=_default_energies(len(planes)),
        pixel_pitch_mm=DEFAULT_PITCH_MM,
        scan_id=path.stem,
        metadata={"energies_assumed": True, "pitch_assumed": True},
    )


def _read_nii(pages: list, desc: dict[str, Any], path: Path) -> RawScan:
    roles = desc.get("pages")
    if not isinstance(roles, list) or len(roles) != len(pages):
        raise CorruptFileError(
            f"nii-tiff: description lists {len(roles) if isinstance(roles, list) else 'no'} pages, file has {len(pages)}",
            path=path,
        )
    try:
        energies = tuple(EnergyChannel(str(e["label"]), e.get("kvp")) for e in desc["energies"])
        pitch = tuple(float(p) for p in desc["pixel_pitch_mm"])
    except (KeyError, TypeError, ValueError, NiiError) as exc:
        raise CorruptFileError(f"nii-tiff: invalid energies or pixel_pitch_mm in the description ({exc})", path=path) from exc
    n_e = len(energies)
    counts: list[np.ndarray | None] = [None] * n_e
    refs: dict[str, list[np.ndarray | None]] = {r: [None] * n_e for r in _REF_ROLES}
    per_channel: dict[str, bool] = {}
    for page, role in zip(pages, roles, strict=True):
        if not isinstance(role, dict) or role.get("role") not in ("counts",) + _REF_ROLES:
            raise CorruptFileError(f"nii-tiff: page {page.index} has an invalid role {role!r}", path=path)
        e = role.get("energy")
        if not isinstance(e, int) or not 0 <= e < n_e:
            raise CorruptFileError(f"nii-tiff: page {page.index} names energy {e!r} of {n_e}", path=path)
        if role["role"] == "counts":
            counts[e] = _count_page(page, path)
        else:
            arr = _asarray(page, path)
            check_finite(arr, path, f"{role['role']} page {page.index}")
            refs[role["role"]][e] = arr
            per_channel[role["role"]] = bool(role.get("per_channel", False))
    if any(c is None for c in counts):
        raise CorruptFileError("nii-tiff: a counts page is missing for some energy", path=path)
    try:
        stacked = np.stack(counts)  # type: ignore[arg-type]
        ref_arrays: dict[str, np.ndarray | None] = {}
        for name, planes in refs.items():
            if all(p is None for p in planes):
                ref_arrays[name] = None
                continue
            if any(p is None for p in planes):
                raise CorruptFileError(f"nii-tiff: {name} reference missing for some energy", path=path)
            arr = np.stack(planes)  # type: ignore[arg-type]
            ref_arrays[name] = arr[:, :, 0] if per_channel.get(name) else arr
    except ValueError as exc:
        raise CorruptFileError(f"nii-tiff: pages of inconsistent shapes ({exc})", path=path) from exc
    check_references(ref_arrays["dark"], ref_arrays["air"], path)
    if ref_arrays["air_end"] is not None:
        check_references(ref_arrays["dark"], ref_arrays["air_end"], path, air_name="air_end")
    md = desc.get("metadata", {})
    return RawScan(
        counts=stacked,
        energies=energies,
        pixel_pitch_mm=pitch,
        dark=ref_arrays["dark"],
        air=ref_arrays["air"],
        air_end=ref_arrays["air_end"],
        profile=desc.get("profile") or None,
        scan_id=desc.get("scan_id") or path.stem,
        acquired_at=desc.get("acquired_at") or None,
        metadata=md if isinstance(md, dict) else {},
    )


def write(scan: RawScan, path: str | os.PathLike, *, compression: str | None = None) -> Path:
    """Write a :class:`RawScan` as a multi-page TIFF (counts pages, then reference pages), atomically.

    Parameters
    ----------
    scan : RawScan
    path : path
    compression : str, optional
        A tifffile compression name (``"zlib"``, ``"lzw"``...); default uncompressed.
    """
    import tifffile

    if not isinstance(scan, RawScan):
        raise InvalidParameterError(f"TIFF writer takes a RawScan (counts), got {type(scan).__name__}")
    planes: list[tuple[np.ndarray, dict[str, Any]]] = [
        (scan.counts[e], {"role": "counts", "energy": e}) for e in range(scan.n_energies)
    ]
    for name in _REF_ROLES:
        ref = getattr(scan, name)
        if ref is None:
            continue
        per_channel = ref.ndim == 2
        block = ref[:, :, None] if per_channel else ref
        for e in range(scan.n_energies):
            role: dict[str, Any] = {"role": name, "energy": e}
            if per_channel:
                role["per_channel"] = True
            planes.append((block[e], role))
    desc = {
        "format": DESCRIPTION_FORMAT,
        "energies": [{"label": c.label, "kvp": c.kvp} for c in scan.energies],
        "pixel_pitch_mm": list(scan.pixel_pitch_mm),
        "scan_id": scan.scan_id,
        "profile": scan.profile,
        "acquired_at": scan.acquired_at,
        "metadata": json.loads(json.dumps(dict(scan.metadata), default=str)),
        "pages": [r for _, r in planes],
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        with tifffile.TiffWriter(tmp) as tw:
            for i, (arr, _) in enumerate(planes):
                tw.write(
                    np.ascontiguousarray(arr),
                    photometric="minisblack",
                    description=json.dumps(desc) if i == 0 else None,
                    metadata=None,
                    compression=compression,
                )
    return path
