"""nii HDF5, schema ``nii-scan/1`` — the native interchange format (spec: ``docs/hdf5-schema.md``).

Layout::

    /                      attrs: schema="nii-scan/1", scan_id, profile, energies (labels),
                                  kvp (float, NaN = unknown), pixel_pitch_mm (detector, line),
                                  acquired_at, rendered, nii_version, metadata (JSON)
    /raw/counts            (E, H, W) uint16|uint32   chunked, compressed
    /raw/dark              (E, H[, n])               optional
    /raw/air               (E, H[, n])               optional
    /raw/air_end           (E, H[, n])               optional
    /raw/dead_mask         (E, H) bool               optional
    /truth/boxes           (N, 4) float32 xyxy px    optional
    /truth/classes         (N,) str                  optional
    /calibrated/attenuation (E, H, W) float32        optional; attrs provenance (JSON),
                                                      calibration_hash, pixel_pitch_mm
    /calibrated/valid      (H, W) bool               optional
    /calibrated/zeff       (H, W) float32            optional
    /calibrated/material   (H, W) uint8              optional
    /calibrated/color      (H, W, 3) uint8           optional

A file holds ``/raw``, ``/calibrated`` or both. :func:`read` returns a :class:`RawScan` when
``/raw`` exists (unless ``prefer="scan"``), else a :class:`Scan`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path
from .._version import __version__
from ..containers import EnergyChannel, Provenance, RawScan, Scan, Truth
from ..errors import CorruptFileError, InvalidParameterError, NiiError, SizeLimitError
from ._common import check_finite, check_references

__all__ = ["FORMAT", "SCHEMA", "sniff", "read", "write"]

FORMAT = "nii-hdf5"
SCHEMA = "nii-scan/1"
_MAGIC = b"\x89HDF\r\n\x1a\n"
_CAL_MAPS = ("valid", "zeff", "material", "color")


def sniff(head: bytes, path: Path) -> bool:
    """HDF5 signature at offset 0, 512, 1024 or 2048 (user block)."""
    return any(head[o : o + 8] == _MAGIC for o in (0, 512, 1024, 2048))


def _h5():
    import h5py

    return h5py


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    if len(shape) < 2 or int(np.prod(shape)) < 4096:
        return None
    # one energy plane, ~256 KiB-ish tiles along the scan direction
    if len(shape) == 3 and shape[2] != 3:
        return (1, min(shape[1], 256), min(shape[2], 256))
    if len(shape) == 3:
        return (min(shape[0], 256), min(shape[1], 256), 3)
    return (min(shape[0], 256), min(shape[1], 256))


def _put(group, name: str, data: np.ndarray, compression: str | None) -> None:
    data = np.ascontiguousarray(data)
    chunks = _chunks(data.shape)
    kw: dict[str, Any] = {}
    if chunks is not None:
        kw = {"chunks": chunks, "compression": compression, "shuffle": compression is not None}
        if compression == "gzip":
            kw["compression_opts"] = 4
    group.create_dataset(name, data=data, **kw)


def _put_common_attrs(f, scan: RawScan | Scan) -> None:
    f.attrs["schema"] = SCHEMA
    f.attrs["scan_id"] = scan.scan_id
    f.attrs["profile"] = scan.profile or ""
    f.attrs["energies"] = np.array([e.label for e in scan.energies], dtype=object)
    f.attrs["kvp"] = np.array([math.nan if e.kvp is None else e.kvp for e in scan.energies], dtype=np.float64)
    f.attrs["pixel_pitch_mm"] = np.array(scan.pixel_pitch_mm, dtype=np.float64)
    f.attrs["acquired_at"] = scan.acquired_at or ""
    f.attrs["rendered"] = bool(scan.rendered)
    f.attrs["nii_version"] = __version__
    f.attrs["metadata"] = json.dumps(dict(scan.metadata), sort_keys=True, default=str)
    if scan.source is not None:
        f.attrs["source_path"] = scan.source.path
        f.attrs["source_sha256"] = scan.source.sha256
        f.attrs["source_format"] = scan.source.format


def write(
    scan: RawScan | Scan,
    path: str | os.PathLike,
    *,
    raw: RawScan | None = None,
    compression: str | None = "gzip",
    extra: "Callable[[Any], None] | None" = None,
) -> Path:
    """Write ``scan`` to ``path`` in schema ``nii-scan/1``, atomically.

    Parameters
    ----------
    scan : RawScan or Scan
        What to write. A :class:`Scan` goes to ``/calibrated``.
    raw : RawScan, optional
        With a :class:`Scan`, also store its raw counts under ``/raw``.
    compression : {"gzip", "lzf", None}
        Dataset compression filter.
    extra : callable, optional
        Called with the open ``h5py.File`` before it is closed, to add further groups (e.g. the
        detections of a results file) inside the same atomic write.
    """
    if compression not in ("gzip", "lzf", None):
        raise InvalidParameterError(f"compression must be 'gzip', 'lzf' or None, got {compression!r}")
    if isinstance(scan, RawScan):
        if raw is not None:
            raise InvalidParameterError("raw= is only for writing a Scan together with its RawScan")
        raw = scan
        cal: Scan | None = None
    elif isinstance(scan, Scan):
        cal = scan
    else:
        raise InvalidParameterError(f"scan must be a RawScan or Scan, got {type(scan).__name__}")
    h5py = _h5()
    target = Path(path)
    with atomic_path(target) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            _put_common_attrs(f, scan)
            if raw is not None:
                g = f.create_group("raw")
                _put(g, "counts", raw.counts, compression)
                for name in ("dark", "air", "air_end", "dead_mask"):
                    val = getattr(raw, name)
                    if val is not None:
                        _put(g, name, val, compression)
                if raw.source is not None and isinstance(scan, Scan):
                    g.attrs["source_sha256"] = raw.source.sha256
            truth = scan.truth if scan.truth is not None else (raw.truth if raw is not None else None)
            if truth is not None:
                g = f.create_group("truth")
                g.create_dataset("boxes", data=np.asarray(truth.boxes, np.float32).reshape(-1, 4))
                g.create_dataset("classes", data=np.array(truth.classes, dtype=object), dtype=h5py.string_dtype())
            if cal is not None:
                g = f.create_group("calibrated")
                _put(g, "attenuation", cal.attenuation, compression)
                for name in _CAL_MAPS:
                    val = getattr(cal, name)
                    if val is not None:
                        _put(g, name, val, compression)
                g.attrs["provenance"] = cal.provenance.to_json()
                g.attrs["calibration_hash"] = cal.provenance.calibration_hash or ""
                g.attrs["pixel_pitch_mm"] = np.array(cal.pixel_pitch_mm, dtype=np.float64)
            if extra is not None:
                extra(f)
    return target


def _attr_str(attrs: Mapping[str, Any], key: str, default: str = "") -> str:
    val = attrs.get(key, default)
    if isinstance(val, bytes):
        return val.decode("utf-8", "replace")
    if isinstance(val, np.ndarray) and val.shape == ():
        val = val.item()
    return str(val)


def _energies(attrs: Mapping[str, Any], n: int, path: Path) -> tuple[EnergyChannel, ...]:
    labels = attrs.get("energies")
    if labels is None:
        raise CorruptFileError("nii-hdf5: missing root attribute 'energies'", path=path)
    labels = [x.decode() if isinstance(x, bytes) else str(x) for x in np.atleast_1d(labels)]
    kvp = np.atleast_1d(attrs.get("kvp", np.full(len(labels), np.nan))).astype(float)
    if len(labels) != n or len(kvp) != n:
        raise CorruptFileError(
            f"nii-hdf5: {len(labels)} energy labels and {len(kvp)} kVp values for {n} energy planes", path=path
        )
    return tuple(EnergyChannel(lab, None if not np.isfinite(k) else float(k)) for lab, k in zip(labels, kvp))


def _check_size(shape: tuple[int, ...], max_pixels: int, path: Path, what: str) -> None:
    total = int(np.prod(shape, dtype=np.int64))
    if total > max_pixels:
        raise SizeLimitError(f"{what} has {total} samples {tuple(shape)}, above the limit of {max_pixels}", path=path)


def _load(g, name: str, max_pixels: int, path: Path) -> np.ndarray | None:
    if name not in g:
        return None
    _check_size(g[name].shape, max_pixels, path, f"{g.name}/{name}")
    return g[name][()]


def read(path: Path, *, max_pixels: int, prefer: str = "raw") -> RawScan | Scan:
    """Read a nii HDF5 file (see module docstring)."""
    if prefer not in ("raw", "scan"):
        raise InvalidParameterError(f"prefer must be 'raw' or 'scan', got {prefer!r}")
    h5py = _h5()
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CorruptFileError(f"nii-hdf5: not a readable HDF5 file ({exc})", path=path) from exc
    try:
        with f:
            schema = _attr_str(f.attrs, "schema")
            if schema != SCHEMA:
                raise CorruptFileError(
                    f"nii-hdf5: schema attribute is {schema!r}, expected {SCHEMA!r} (an HDF5 file, but not a nii scan)",
                    path=path,
                )
            has_raw = "raw" in f and "counts" in f["raw"]
            has_cal = "calibrated" in f and "attenuation" in f["calibrated"]
            if not (has_raw or has_cal):
                raise CorruptFileError("nii-hdf5: neither /raw/counts nor /calibrated/attenuation present", path=path)
            try:
                pitch = tuple(float(x) for x in np.atleast_1d(f.attrs["pixel_pitch_mm"]))
            except KeyError as exc:
                raise CorruptFileError("nii-hdf5: missing root attribute 'pixel_pitch_mm'", path=path) from exc
            common = dict(
                profile=_attr_str(f.attrs, "profile") or None,
                scan_id=_attr_str(f.attrs, "scan_id") or path.stem,
                acquired_at=_attr_str(f.attrs, "acquired_at") or None,
                rendered=bool(f.attrs.get("rendered", False)),
                metadata=json.loads(_attr_str(f.attrs, "metadata", "{}") or "{}"),
            )
            truth = None
            if "truth" in f and "boxes" in f["truth"]:
                boxes = np.asarray(f["truth"]["boxes"][()], dtype=np.float32).reshape(-1, 4)
                classes = f["truth"]["classes"].asstr()[()] if "classes" in f["truth"] else ()
                truth = Truth(boxes, tuple(np.atleast_1d(classes).tolist()))
            if has_raw and prefer == "raw" or not has_cal:
                g = f["raw"]
                ds = g["counts"]
                if ds.ndim != 3:
                    raise CorruptFileError(f"nii-hdf5: /raw/counts must be (E, H, W), got {ds.shape}", path=path)
                _check_size(ds.shape, max_pixels, path, "/raw/counts")
                counts = ds[()]
                refs = {name: _load(g, name, max_pixels, path) for name in ("dark", "air", "air_end")}
                check_references(refs["dark"], refs["air"], path)
                if refs["air_end"] is not None:
                    check_references(refs["dark"], refs["air_end"], path, air_name="air_end")
                return RawScan(
                    counts=counts,
                    energies=_energies(f.attrs, counts.shape[0], path),
                    pixel_pitch_mm=pitch,
                    **refs,
                    dead_mask=_load(g, "dead_mask", max_pixels, path),
                    truth=truth,
                    **common,
                )
            g = f["calibrated"]
            ds = g["attenuation"]
            if ds.ndim != 3:
                raise CorruptFileError(f"nii-hdf5: /calibrated/attenuation must be (E, H, W), got {ds.shape}", path=path)
            _check_size(ds.shape, max_pixels, path, "/calibrated/attenuation")
            att = ds[()]
            check_finite(att, path, "/calibrated/attenuation")
            maps = {name: _load(g, name, max_pixels, path) for name in _CAL_MAPS}
            prov = Provenance.from_dict(json.loads(_attr_str(g.attrs, "provenance", "{}") or "{}"))
            cal_pitch = g.attrs.get("pixel_pitch_mm")
            return Scan(
                attenuation=att,
                energies=_energies(f.attrs, att.shape[0], path),
                pixel_pitch_mm=tuple(float(x) for x in cal_pitch) if cal_pitch is not None else pitch,
                provenance=prov,
                truth=truth,
                **maps,
                **common,
            )
    except NiiError as exc:
        if exc.path is None:
            raise type(exc)(exc.reason, path=path) from exc
        raise
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise CorruptFileError(f"nii-hdf5: inconsistent or damaged content ({type(exc).__name__}: {exc})", path=path) from exc
