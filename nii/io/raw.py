"""Raw binary line data described by a JSON sidecar (``nii-raw/1``; spec in ``docs/formats.md``).

A scanner's raw dump is a headerless (or fixed-header) stream of detector lines. The sidecar
says how to cut it::

    {
      "format": "nii-raw/1",
      "data": "bag0042.raw",                 # optional, relative to the sidecar's folder
      "width": 1200,                         # object scan lines W (belt direction)
      "height": 768,                         # detector channels H
      "energies": [{"label": "low", "kvp": 140}, {"label": "high", "kvp": 140}],
      "dtype": "uint16",                     # uint16 | uint32 (counts); float32 | float64 (attenuation)
      "byte_order": "little",                # little | big
      "interleave": "line",                  # planar | line | pixel
      "axis_order": "lines",                 # lines (records are scan lines) | rows (records are channels)
      "header_bytes": 0,
      "quantity": "counts",                  # counts -> RawScan | attenuation -> Scan
      "pixel_pitch_mm": [1.0, 1.0],          # detector, line
      "dark": {"lines": 16},                 # inside the data file ...
      "air": {"file": "bag0042.air.raw", "lines": 32, "dtype": "float32"},   # ... or a separate file
      "air_end": null,
      "scan_id": "bag0042", "profile": "demo-140kv", "acquired_at": "2026-01-01T10:00:00Z",
      "metadata": {}
    }

Along the line axis, the data file holds, in this order: the dark lines, the air lines, the
``width`` object lines and the ``air_end`` lines, each only when declared ``inside`` (without
``"file"``). ``"per_channel": true`` on a one-line reference returns it as ``(E, H)`` instead of
``(E, H, 1)``.

The path handed to :func:`read` may be the data file (the sidecar is found beside it as
``<name>.json`` or ``<stem>.json``) or the sidecar itself (the data file is its ``"data"`` entry,
or ``<sidecar name without .json>``, or ``<stem>.raw|.bin|.dat``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path, atomic_write_text
from .._assets import sha256_file
from ..containers import EnergyChannel, RawScan, Scan, SourceInfo
from ..errors import FileAccessError, InvalidParameterError, NiiError, SidecarError
from ._common import check_finite, check_pixel_limit, check_references, file_size, known_binary_magic, read_exact

__all__ = ["FORMAT", "SIDECAR_FORMAT", "sniff", "read", "write", "find_sidecar", "read_sidecar"]

FORMAT = "raw"
SIDECAR_FORMAT = "nii-raw/1"
_COUNT_DTYPES = ("uint16", "uint32")
_ATT_DTYPES = ("float32", "float64")
_INTERLEAVES = ("planar", "line", "pixel")
_AXIS_ORDERS = ("lines", "rows")
_REF_NAMES = ("dark", "air", "air_end")
_DATA_SUFFIXES = (".raw", ".bin", ".dat")
_MAX_SIDECAR_BYTES = 1 << 20


# --------------------------------------------------------------------------------------------
# sidecar discovery and parsing


def _looks_like_sidecar(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return text.startswith(b"{") and b'"nii-raw/' in text


def _load_sidecar_json(path: Path) -> dict[str, Any]:
    size = file_size(path)
    if size > _MAX_SIDECAR_BYTES:
        raise SidecarError(f"sidecar is {size} bytes, larger than any plausible nii-raw sidecar", path=path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise FileAccessError(f"cannot read sidecar: {exc.strerror or exc}", path=path) from exc
    except UnicodeDecodeError as exc:
        raise SidecarError(f"sidecar is not UTF-8 text ({exc})", path=path) from exc
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise SidecarError(f"sidecar is not valid JSON ({exc})", path=path) from exc
    if not isinstance(obj, dict):
        raise SidecarError("sidecar must be a JSON object", path=path)
    fmt = obj.get("format")
    if fmt != SIDECAR_FORMAT:
        raise SidecarError(f"sidecar 'format' is {fmt!r}, expected {SIDECAR_FORMAT!r}", path=path)
    return obj


def _sidecar_candidates(data: Path) -> list[Path]:
    out = [data.with_name(data.name + ".json")]
    if data.suffix and data.suffix.lower() != ".json":
        out.append(data.with_suffix(".json"))
    return out


def find_sidecar(data: Path, *, explicit_only: bool = False) -> Path | None:
    """The ``nii-raw/1`` sidecar that describes ``data``, or None.

    With ``explicit_only``, only a sidecar whose ``"data"`` entry names this very file counts
    (not one found by the naming convention alone).
    """
    for cand in _sidecar_candidates(data):
        if not cand.is_file():
            continue
        try:
            obj = _load_sidecar_json(cand)
        except NiiError:
            continue
        target = obj.get("data")
        if target is None and not explicit_only or target is not None and _same_file(cand.parent / str(target), data):
            return cand
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _data_for_sidecar(sidecar: Path, obj: Mapping[str, Any]) -> Path:
    target = obj.get("data")
    if target is not None:
        if not isinstance(target, str) or not target:
            raise SidecarError(f"'data' must be a file name, got {target!r}", path=sidecar)
        path = sidecar.parent / target
        if not path.is_file():
            raise SidecarError(f"data file {target!r} named by the sidecar does not exist", path=sidecar)
        return path
    tried = []
    if sidecar.suffix.lower() == ".json":
        tried.append(sidecar.with_suffix(""))
        tried.extend(sidecar.with_suffix(s) for s in _DATA_SUFFIXES)
    for cand in tried:
        if cand != sidecar and cand.is_file():
            return cand
    raise SidecarError(
        "no data file found for this sidecar (set 'data', or name it " + ", ".join(repr(p.name) for p in tried) + ")",
        path=sidecar,
    )


def sniff(head: bytes, path: Path) -> bool:
    """A ``nii-raw/1`` sidecar, or a data file that has one beside it.

    A data file whose first bytes happen to look like another container (PNG, JPEG, TIFF, DICOM,
    HDF5) is claimed only when a sidecar names it explicitly in ``"data"``.
    """
    if _looks_like_sidecar(head):
        return True
    return find_sidecar(path, explicit_only=known_binary_magic(head) is not None) is not None


# --------------------------------------------------------------------------------------------
# layout


class _Layout:
    """Validated sidecar: everything needed to cut the byte stream."""

    def __init__(self, obj: Mapping[str, Any], sidecar: Path) -> None:
        self.sidecar = sidecar

        def bad(msg: str) -> SidecarError:
            return SidecarError(msg, path=sidecar)

        def pos_int(key: str, *, minimum: int = 1, default: int | None = None) -> int:
            val = obj.get(key, default)
            if isinstance(val, bool) or not isinstance(val, int) or val < minimum:
                raise bad(f"{key!r} must be an integer >= {minimum}, got {val!r}")
            return val

        self.width = pos_int("width")
        self.height = pos_int("height")
        self.header_bytes = pos_int("header_bytes", minimum=0, default=0)
        energies = obj.get("energies")
        if not isinstance(energies, list) or not energies:
            raise bad(f"'energies' must be a non-empty list of {{'label', 'kvp'}}, got {energies!r}")
        chans = []
        for i, e in enumerate(energies):
            if isinstance(e, str):
                e = {"label": e}
            if not isinstance(e, dict) or "label" not in e:
                raise bad(f"energies[{i}] must be an object with a 'label', got {e!r}")
            try:
                chans.append(EnergyChannel(str(e["label"]), e.get("kvp")))
            except (NiiError, TypeError, ValueError) as exc:
                raise bad(f"energies[{i}] is invalid: {exc}") from exc
        self.energies = tuple(chans)
        self.dtype_name = obj.get("dtype")
        self.quantity = obj.get("quantity", "counts")
        if self.quantity not in ("counts", "attenuation"):
            raise bad(f"'quantity' must be 'counts' or 'attenuation', got {self.quantity!r}")
        allowed = _COUNT_DTYPES if self.quantity == "counts" else _ATT_DTYPES
        if self.dtype_name not in allowed:
            raise bad(f"'dtype' for quantity {self.quantity!r} must be one of {allowed}, got {self.dtype_name!r}")
        self.byte_order = obj.get("byte_order", "little")
        if self.byte_order not in ("little", "big"):
            raise bad(f"'byte_order' must be 'little' or 'big', got {self.byte_order!r}")
        self.dtype = self._dtype(self.dtype_name)
        self.interleave = obj.get("interleave", "planar")
        if self.interleave not in _INTERLEAVES:
            raise bad(f"'interleave' must be one of {_INTERLEAVES}, got {self.interleave!r}")
        self.axis_order = obj.get("axis_order", "lines")
        if self.axis_order not in _AXIS_ORDERS:
            raise bad(f"'axis_order' must be one of {_AXIS_ORDERS}, got {self.axis_order!r}")
        pitch = obj.get("pixel_pitch_mm")
        try:
            det, line = (float(p) for p in pitch)  # type: ignore[union-attr]
            if not (det > 0 and line > 0 and np.isfinite(det) and np.isfinite(line)):
                raise ValueError
        except (TypeError, ValueError) as exc:
            raise bad(f"'pixel_pitch_mm' must be [detector_mm, line_mm] > 0, got {pitch!r}") from exc
        self.pitch = (det, line)
        self.refs: dict[str, dict[str, Any]] = {}
        for name in _REF_NAMES:
            spec = obj.get(name)
            if spec is None:
                continue
            if self.quantity != "counts":
                raise bad(f"{name!r} reference is only meaningful for quantity 'counts'")
            if not isinstance(spec, dict):
                raise bad(f"{name!r} must be null or an object {{'lines': n[, 'file': ...]}}, got {spec!r}")
            lines = spec.get("lines")
            if isinstance(lines, bool) or not isinstance(lines, int) or lines < 1:
                raise bad(f"{name}.lines must be an integer >= 1, got {lines!r}")
            ref = {"lines": lines, "per_channel": bool(spec.get("per_channel", False))}
            if ref["per_channel"] and lines != 1:
                raise bad(f"{name}.per_channel needs lines == 1, got {lines}")
            if "file" in spec:
                fname = spec["file"]
                if not isinstance(fname, str) or not fname:
                    raise bad(f"{name}.file must be a file name, got {fname!r}")
                ref["file"] = fname
                ref_dtype = spec.get("dtype", self.dtype_name)
                if ref_dtype not in _COUNT_DTYPES + _ATT_DTYPES:
                    raise bad(f"{name}.dtype must be one of {_COUNT_DTYPES + _ATT_DTYPES}, got {ref_dtype!r}")
                ref["dtype"] = self._dtype(ref_dtype)
                hb = spec.get("header_bytes", 0)
                if isinstance(hb, bool) or not isinstance(hb, int) or hb < 0:
                    raise bad(f"{name}.header_bytes must be an integer >= 0, got {hb!r}")
                ref["header_bytes"] = hb
            elif "dtype" in spec and spec["dtype"] != self.dtype_name:
                raise bad(f"{name}.dtype may differ from the data dtype only for a separate 'file'")
            self.refs[name] = ref
        md = obj.get("metadata", {})
        if not isinstance(md, dict):
            raise bad(f"'metadata' must be an object, got {type(md).__name__}")
        self.metadata = md
        self.scan_id = str(obj.get("scan_id") or "")
        self.profile = obj.get("profile") or None
        self.acquired_at = obj.get("acquired_at") or None

    def _dtype(self, name: str) -> np.dtype:
        return np.dtype(name).newbyteorder("<" if self.byte_order == "little" else ">")

    @property
    def n_energies(self) -> int:
        return len(self.energies)

    def inline_lines(self, name: str) -> int:
        ref = self.refs.get(name)
        return ref["lines"] if ref is not None and "file" not in ref else 0

    @property
    def total_lines(self) -> int:
        return self.width + sum(self.inline_lines(n) for n in _REF_NAMES)


def _file_shape(e: int, h: int, n: int, interleave: str, axis_order: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Shape of the stream as stored and the axes that bring it to (E, H, n)."""
    if axis_order == "lines":
        return {
            "planar": ((e, n, h), (0, 2, 1)),
            "line": ((n, e, h), (1, 2, 0)),
            "pixel": ((n, h, e), (2, 1, 0)),
        }[interleave]
    return {
        "planar": ((e, h, n), (0, 1, 2)),
        "line": ((h, e, n), (1, 0, 2)),
        "pixel": ((h, n, e), (2, 0, 1)),
    }[interleave]


def _to_stream(block: np.ndarray, interleave: str, axis_order: str) -> np.ndarray:
    """Inverse of the reader's reshape: (E, H, n) -> stored order, C-contiguous."""
    e, h, n = block.shape
    _, axes = _file_shape(e, h, n, interleave, axis_order)
    inverse = tuple(int(i) for i in np.argsort(axes))
    return np.ascontiguousarray(block.transpose(inverse))


def _read_block(path: Path, offset: int, e: int, h: int, n: int, dtype: np.dtype, interleave: str, axis_order: str) -> np.ndarray:
    shape, axes = _file_shape(e, h, n, interleave, axis_order)
    flat = read_exact(path, offset, e * h * n, dtype)
    block = flat.reshape(shape).transpose(axes)
    return np.ascontiguousarray(block, dtype=dtype.newbyteorder("="))


def _check_file_size(path: Path, expected: int, sidecar: Path, what: str) -> None:
    actual = file_size(path)
    if actual != expected:
        raise SidecarError(
            f"{what} is {actual} bytes but sidecar {sidecar.name!r} declares {expected} bytes "
            f"({'truncated file or wrong dimensions' if actual < expected else 'dimensions too small or extra trailing data'})",
            path=path,
        )


# --------------------------------------------------------------------------------------------
# reader


def read_sidecar(path: Path) -> tuple[Path, Path, dict[str, Any]]:
    """Return ``(data_path, sidecar_path, sidecar_dict)`` for a data file or a sidecar path."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise FileAccessError(f"cannot read: {exc.strerror or exc}", path=path) from exc
    if _looks_like_sidecar(head):
        obj = _load_sidecar_json(path)
        return _data_for_sidecar(path, obj), path, obj
    sidecar = find_sidecar(path)
    if sidecar is None:
        raise SidecarError(
            "raw data needs a nii-raw/1 JSON sidecar beside it (tried "
            + ", ".join(repr(p.name) for p in _sidecar_candidates(path))
            + ")",
            path=path,
        )
    return path, sidecar, _load_sidecar_json(sidecar)


def read(path: Path, *, max_pixels: int) -> RawScan | Scan:
    """Read raw binary data described by a ``nii-raw/1`` sidecar (see module docstring)."""
    path = Path(path)
    data_path, sidecar, obj = read_sidecar(path)
    lay = _Layout(obj, sidecar)
    e, h = lay.n_energies, lay.height
    total = lay.total_lines
    check_pixel_limit((e, h, total), max_pixels, data_path, f"raw data (sidecar {sidecar.name!r})")
    expected = lay.header_bytes + e * h * total * lay.dtype.itemsize
    _check_file_size(data_path, expected, sidecar, "data file")
    stream = _read_block(data_path, lay.header_bytes, e, h, total, lay.dtype, lay.interleave, lay.axis_order)
    # cut along the line axis: dark, air, object, air_end
    pieces: dict[str, np.ndarray] = {}
    pos = 0
    for name in ("dark", "air", "object", "air_end"):
        n = lay.width if name == "object" else lay.inline_lines(name)
        if n:
            pieces[name] = stream[:, :, pos : pos + n]
            pos += n
    for name, ref in lay.refs.items():
        if "file" in ref:
            rpath = sidecar.parent / ref["file"]
            if not rpath.is_file():
                raise SidecarError(f"{name} reference file {ref['file']!r} does not exist", path=sidecar)
            n = ref["lines"]
            check_pixel_limit((e, h, n), max_pixels, rpath, f"{name} reference")
            _check_file_size(rpath, ref["header_bytes"] + e * h * n * ref["dtype"].itemsize, sidecar, f"{name} reference file")
            pieces[name] = _read_block(rpath, ref["header_bytes"], e, h, n, ref["dtype"], lay.interleave, lay.axis_order)
    refs: dict[str, np.ndarray | None] = {}
    for name in _REF_NAMES:
        arr = pieces.get(name)
        if arr is not None and lay.refs[name]["per_channel"]:
            arr = arr[:, :, 0]
        refs[name] = np.ascontiguousarray(arr) if arr is not None else None
    obj_lines = np.ascontiguousarray(pieces["object"])
    # chain of custody: the source is the data file (whichever path was given), the sidecar's
    # name and hash go to the metadata
    common = dict(
        energies=lay.energies,
        pixel_pitch_mm=lay.pitch,
        profile=lay.profile,
        scan_id=lay.scan_id or data_path.stem,
        acquired_at=lay.acquired_at,
        source=SourceInfo(str(data_path), sha256_file(data_path), FORMAT),
        metadata={**lay.metadata, "raw_sidecar": str(sidecar), "raw_sidecar_sha256": sha256_file(sidecar)},
    )
    if lay.quantity == "attenuation":
        check_finite(obj_lines, data_path, "attenuation data")
        return Scan(attenuation=obj_lines.astype(np.float32), **common)  # type: ignore[arg-type]
    check_references(refs["dark"], refs["air"], data_path)
    if refs["air_end"] is not None:
        check_references(refs["dark"], refs["air_end"], data_path, air_name="air_end")
    return RawScan(counts=obj_lines, dark=refs["dark"], air=refs["air"], air_end=refs["air_end"], **common)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# writer


def write(
    scan: RawScan | Scan,
    path: str | os.PathLike,
    *,
    sidecar: str | os.PathLike | None = None,
    dtype: str | None = None,
    byte_order: str = "little",
    interleave: str = "planar",
    axis_order: str = "lines",
    header: bytes = b"",
    references: str = "inline",
) -> tuple[Path, Path]:
    """Write ``scan`` as raw binary plus a ``nii-raw/1`` sidecar, both atomically.

    Parameters
    ----------
    scan : RawScan or Scan
        Counts (RawScan, with its dark/air/air_end references) or attenuation (Scan, float).
    path : path
        The data file.
    sidecar : path, optional
        Default ``<path>.json`` (i.e. ``bag.raw.json``).
    dtype : str, optional
        Stored dtype; default the counts' dtype (RawScan) or ``float32`` (Scan).
    byte_order : {"little", "big"}
    interleave : {"planar", "line", "pixel"}
    axis_order : {"lines", "rows"}
    header : bytes
        Opaque bytes written before the data (``header_bytes`` in the sidecar).
    references : {"inline", "files"}
        Where dark/air/air_end go: lines inside the data file (when their dtype matches the data),
        or separate files ``<stem>.<name>.raw``. References of another dtype always go to files.

    Returns
    -------
    (data_path, sidecar_path)
    """
    if byte_order not in ("little", "big"):
        raise InvalidParameterError(f"byte_order must be 'little' or 'big', got {byte_order!r}")
    if interleave not in _INTERLEAVES:
        raise InvalidParameterError(f"interleave must be one of {_INTERLEAVES}, got {interleave!r}")
    if axis_order not in _AXIS_ORDERS:
        raise InvalidParameterError(f"axis_order must be one of {_AXIS_ORDERS}, got {axis_order!r}")
    if references not in ("inline", "files"):
        raise InvalidParameterError(f"references must be 'inline' or 'files', got {references!r}")
    if not isinstance(header, (bytes, bytearray)):
        raise InvalidParameterError("header must be bytes")
    bo = "<" if byte_order == "little" else ">"
    path = Path(path)
    side_path = Path(sidecar) if sidecar is not None else path.with_name(path.name + ".json")
    if isinstance(scan, RawScan):
        quantity, data = "counts", scan.counts
        dtype = dtype or str(scan.counts.dtype)
        if dtype not in _COUNT_DTYPES:
            raise InvalidParameterError(f"dtype for counts must be one of {_COUNT_DTYPES}, got {dtype!r}")
        if np.dtype(dtype).itemsize < scan.counts.dtype.itemsize and scan.counts.max() > np.iinfo(dtype).max:
            raise InvalidParameterError(f"counts exceed the range of {dtype}")
    elif isinstance(scan, Scan):
        quantity, data = "attenuation", scan.attenuation
        dtype = dtype or "float32"
        if dtype not in _ATT_DTYPES:
            raise InvalidParameterError(f"dtype for attenuation must be one of {_ATT_DTYPES}, got {dtype!r}")
    else:
        raise InvalidParameterError(f"scan must be a RawScan or Scan, got {type(scan).__name__}")
    stored = np.dtype(dtype).newbyteorder(bo)
    e, h, w = data.shape
    side: dict[str, Any] = {
        "format": SIDECAR_FORMAT,
        "data": os.path.relpath(path, side_path.parent) if side_path.parent != path.parent else path.name,
        "width": w,
        "height": h,
        "energies": [{"label": c.label, "kvp": c.kvp} for c in scan.energies],
        "dtype": dtype,
        "byte_order": byte_order,
        "interleave": interleave,
        "axis_order": axis_order,
        "header_bytes": len(header),
        "quantity": quantity,
        "pixel_pitch_mm": list(scan.pixel_pitch_mm),
        "scan_id": scan.scan_id,
        "profile": scan.profile,
        "acquired_at": scan.acquired_at,
        "metadata": json.loads(json.dumps(dict(scan.metadata), default=str)),
    }
    inline: dict[str, np.ndarray] = {}
    separate: dict[str, tuple[Path, np.ndarray, np.dtype]] = {}
    if isinstance(scan, RawScan):
        for name in _REF_NAMES:
            ref = getattr(scan, name)
            if ref is None:
                continue
            per_channel = ref.ndim == 2
            block = ref[:, :, None] if per_channel else ref
            spec: dict[str, Any] = {"lines": int(block.shape[2])}
            if per_channel:
                spec["per_channel"] = True
            ref_dtype = str(block.dtype)
            if references == "inline" and ref_dtype == dtype:
                inline[name] = block
            else:
                if ref_dtype not in _COUNT_DTYPES + _ATT_DTYPES:
                    ref_dtype = "float64" if np.issubdtype(block.dtype, np.floating) else "uint32"
                rpath = path.with_name(f"{path.stem}.{name}.raw")
                spec["file"] = rpath.name
                spec["dtype"] = ref_dtype
                separate[name] = (rpath, block, np.dtype(ref_dtype).newbyteorder(bo))
            side[name] = spec
    for rpath, block, rdt in separate.values():
        with atomic_path(rpath) as tmp:
            _to_stream(block, interleave, axis_order).astype(rdt).tofile(tmp)
    parts = [inline[n] for n in ("dark", "air") if n in inline] + [data] + ([inline["air_end"]] if "air_end" in inline else [])
    stream = (np.concatenate([np.asarray(p).astype(data.dtype) for p in parts], axis=2) if len(parts) > 1 else data).astype(
        stored
    )
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(bytes(header))
            _to_stream(stream, interleave, axis_order).astype(stored, copy=False).tofile(fh)
    atomic_write_text(side_path, json.dumps(side, indent=2))
    return path, side_path
