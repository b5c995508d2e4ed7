"""DICOS Digital X-Ray (DX) images (NEMA IIC 1) through pydicom (spec in ``docs/formats.md``).

SOP classes read and written:

* ``1.2.840.10008.5.1.4.1.1.501.2.2`` DX **for processing** -> :class:`RawScan` (detector counts,
  uint16 or uint32);
* ``1.2.840.10008.5.1.4.1.1.501.2.1`` DX **for presentation** -> :class:`Scan` with
  ``rendered=True``: presentation values are display transmission (MONOCHROME2: bright = air;
  MONOCHROME1 inverted), ``L = -ln(max(v, 0.5) / (2**BitsStored - 1))`` per energy plane.

PALETTE COLOR images: for processing the stored values are read as counts; for presentation the
palette is applied and the colour image read like an 8-bit rendering (:mod:`nii.io.rendered`).

Any other DICOM (a CT, an MR, a DICOS Threat Detection Report...) is refused with
:class:`UnsupportedFormatError` naming its SOP class.

Layout: rows are detector channels (H), columns are scan lines (W). Energies are frames of one
multi-frame instance, low energy first (``NumberOfFrames = E``; single energy is single-frame).
Frame labels are in the standard Frame Label Vector (0018,2002); single-energy kVp in KVP
(0018,0060); pitch in Imager Pixel Spacing (0018,1164) = (row spacing = detector pitch, column
spacing = line pitch). nii also writes a private block (group 0x0071, creator
``"NII scan 1"``) holding a JSON description (energies with kVp, scan id, profile, metadata) and the
dark / air / air_end / dead-channel references as raw little-endian arrays. Files from other
toolkits lack it: then ``dark``/``air`` are None, ``metadata["references"] = "absent"``, and
energies/pitch come from the standard attributes or defaults (flagged ``energies_assumed`` /
``pitch_assumed``).

Transfer syntaxes: anything pydicom can decode (explicit/implicit VR little endian, RLE, JPEG
Lossless process 14 and SV1 via pylibjpeg-libjpeg, ...). The writer produces explicit VR little
endian, RLE Lossless, JPEG Lossless SV1 (``1.2.840.10008.1.2.4.70``) or process 14 with any
predictor (``1.2.840.10008.1.2.4.57``), the last two with nii's own encoder :mod:`nii.io._ljpeg`.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path
from .._version import __version__
from ..containers import EnergyChannel, RawScan, Scan
from ..errors import CorruptFileError, InvalidParameterError, NiiError, UnsupportedFormatError
from ._common import DICM_OFFSET, check_finite, check_pixel_limit, check_references

__all__ = [
    "FORMAT",
    "DX_FOR_PRESENTATION",
    "DX_FOR_PROCESSING",
    "TRANSFER_SYNTAXES",
    "PRIVATE_CREATOR",
    "sniff",
    "read",
    "write",
]

logger = logging.getLogger(__name__)

FORMAT = "dicos"
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.501.2.1"
DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.501.2.2"
_TDR = "1.2.840.10008.5.1.4.1.1.501.3"
#: Writer transfer syntaxes by short name.
TRANSFER_SYNTAXES = {
    "explicit-le": "1.2.840.10008.1.2.1",
    "rle": "1.2.840.10008.1.2.5",
    "jpeg-lossless": "1.2.840.10008.1.2.4.70",
    "jpeg-lossless-p14": "1.2.840.10008.1.2.4.57",
}
PRIVATE_CREATOR = "NII scan 1"
_PRIVATE_GROUP = 0x0071
_EL_JSON = 0x01
_EL_REFS = {"dark": 0x10, "air": 0x11, "air_end": 0x12, "dead_mask": 0x13}
_DESC_FORMAT = "nii-dicos/1"
_DEFAULT_PITCH_MM = (1.0, 1.0)


def sniff(head: bytes, path: Path) -> bool:
    """Any DICOM Part-10 file (``DICM`` at byte 128); :func:`read` refuses non-DICOS-DX classes."""
    return head[DICM_OFFSET : DICM_OFFSET + 4] == b"DICM"


# --------------------------------------------------------------------------------------------
# reader


def _dcmread(path: Path):
    import pydicom

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path)
        except NiiError:
            raise
        except Exception as exc:  # InvalidDicomError, EOFError, struct.error, ... on damaged bytes
            raise CorruptFileError(f"DICOM: cannot parse ({type(exc).__name__}: {exc})", path=path) from exc
    for w in caught:
        logger.warning("%s: pydicom: %s", path, w.message)
    return ds


def _uid_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return f"{name} ({uid})" if name != uid else uid


def _int_attr(ds, keyword: str, path: Path, default: int | None = None) -> int:
    val = ds.get(keyword, default)
    if val is None or val == "":
        if default is not None:
            return default
        raise CorruptFileError(f"DICOS: required attribute {keyword} is missing", path=path)
    try:
        return int(val)
    except (TypeError, ValueError) as exc:
        raise CorruptFileError(f"DICOS: attribute {keyword} = {val!r} is not an integer", path=path) from exc


def _private(ds) -> tuple[dict[str, Any] | None, Any]:
    try:
        block = ds.private_block(_PRIVATE_GROUP, PRIVATE_CREATOR)
    except KeyError:
        return None, None
    if _EL_JSON not in block:
        return None, block
    try:
        desc = json.loads(block[_EL_JSON].value)
    except (TypeError, ValueError):
        return None, block
    if not isinstance(desc, dict) or desc.get("format") != _DESC_FORMAT:
        return None, block
    return desc, block


def _pitch(ds, desc: dict[str, Any] | None) -> tuple[tuple[float, float], bool]:
    if desc is not None and "pixel_pitch_mm" in desc:
        try:
            det, line = (float(p) for p in desc["pixel_pitch_mm"])
            if det > 0 and line > 0:
                return (det, line), False
        except (TypeError, ValueError):
            pass
    for kw in ("ImagerPixelSpacing", "PixelSpacing"):
        val = ds.get(kw)
        if val is not None:
            try:
                det, line = (float(p) for p in val)
            except (TypeError, ValueError):
                continue
            if det > 0 and line > 0 and np.isfinite(det) and np.isfinite(line):
                return (det, line), False
    return _DEFAULT_PITCH_MM, True


def _energies(ds, desc: dict[str, Any] | None, n: int, path: Path) -> tuple[tuple[EnergyChannel, ...], bool]:
    if desc is not None and isinstance(desc.get("energies"), list):
        try:
            chans = tuple(EnergyChannel(str(e["label"]), e.get("kvp")) for e in desc["energies"])
        except (KeyError, TypeError, ValueError, NiiError) as exc:
            raise CorruptFileError(f"DICOS: nii private description has invalid energies ({exc})", path=path) from exc
        if len(chans) != n:
            raise CorruptFileError(f"DICOS: {len(chans)} energies described for {n} frames", path=path)
        return chans, False
    from pydicom.multival import MultiValue

    labels = ds.get("FrameLabelVector")
    if labels is not None:
        labels = [str(x) for x in labels] if isinstance(labels, MultiValue) else [str(labels)]
    kvp = ds.get("KVP")
    try:
        kvp = float(kvp) if kvp not in (None, "") and n == 1 else None
    except (TypeError, ValueError):
        kvp = None
    if labels is not None and len(labels) == n and all(labels):
        return tuple(EnergyChannel(lab, kvp) for lab in labels), False
    if n == 1:
        return (EnergyChannel("single", kvp),), kvp is None
    if n == 2:
        return (EnergyChannel("low"), EnergyChannel("high")), True
    return tuple(EnergyChannel(f"e{i}") for i in range(n)), True


def _ref_arrays(block, desc: dict[str, Any] | None, e: int, h: int, path: Path) -> dict[str, np.ndarray | None]:
    out: dict[str, np.ndarray | None] = {k: None for k in _EL_REFS}
    specs = (desc or {}).get("references", {})
    if block is None or not isinstance(specs, dict):
        return out
    for name, el in _EL_REFS.items():
        spec = specs.get(name)
        if spec is None:
            continue
        if el not in block:
            raise CorruptFileError(f"DICOS: nii private {name} reference is described but absent", path=path)
        try:
            shape = tuple(int(s) for s in spec["shape"])
            dtype = np.dtype(spec["dtype"]).newbyteorder("<")
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(f"DICOS: invalid description of the {name} reference ({exc})", path=path) from exc
        if len(shape) not in (2, 3) or shape[:2] != (e, h):
            raise CorruptFileError(f"DICOS: {name} reference shape {shape} does not match (E, H) = ({e}, {h})", path=path)
        raw = bytes(block[el].value)
        need = int(np.prod(shape)) * dtype.itemsize
        if len(raw) < need:
            raise CorruptFileError(f"DICOS: {name} reference holds {len(raw)} bytes, {need} expected", path=path)
        arr = np.frombuffer(raw[:need], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
        check_finite(arr, path, f"{name} reference")
        out[name] = arr
    return out


def _pixels(ds, path: Path) -> np.ndarray:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            arr = ds.pixel_array
        except NiiError:
            raise
        except NotImplementedError as exc:
            raise UnsupportedFormatError(
                f"DICOS: cannot decode transfer syntax {_uid_name(str(ds.file_meta.get('TransferSyntaxUID', '?')))} ({exc})",
                path=path,
            ) from exc
        except Exception as exc:
            raise CorruptFileError(f"DICOS: pixel data cannot be decoded ({type(exc).__name__}: {exc})", path=path) from exc
    for w in caught:
        logger.warning("%s: pydicom: %s", path, w.message)
    return np.asarray(arr)


def read(path: Path, *, max_pixels: int) -> RawScan | Scan:
    """Read a DICOS DX image (see module docstring)."""
    path = Path(path)
    ds = _dcmread(path)
    sop = str(ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID") or "")
    if sop == _TDR:
        raise UnsupportedFormatError(
            "DICOS Threat Detection Report: it holds no image; read the DX image it references", path=path
        )
    if sop not in (DX_FOR_PRESENTATION, DX_FOR_PROCESSING):
        raise UnsupportedFormatError(
            f"DICOM of SOP class {_uid_name(sop) if sop else '(none)'} is not a DICOS DX image; nii reads "
            f"DICOS DX for presentation ({DX_FOR_PRESENTATION}) and for processing ({DX_FOR_PROCESSING})",
            path=path,
        )
    if "PixelData" not in ds:
        raise CorruptFileError("DICOS: no Pixel Data element", path=path)
    rows = _int_attr(ds, "Rows", path)
    cols = _int_attr(ds, "Columns", path)
    frames = _int_attr(ds, "NumberOfFrames", path, default=1)
    spp = _int_attr(ds, "SamplesPerPixel", path, default=1)
    if min(rows, cols, frames) <= 0:
        raise CorruptFileError(f"DICOS: empty image (Rows {rows}, Columns {cols}, frames {frames})", path=path)
    check_pixel_limit((frames, rows, cols, spp), max_pixels, path, "DICOS DX image")
    if spp != 1:
        raise UnsupportedFormatError(f"DICOS: {spp} samples per pixel; nii reads greyscale DX", path=path)
    if _int_attr(ds, "PixelRepresentation", path, default=0) != 0:
        raise UnsupportedFormatError("DICOS: signed pixel data; detector counts are unsigned", path=path)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"):
        raise UnsupportedFormatError(f"DICOS: photometric interpretation {photometric!r} in a DX image", path=path)
    desc, block = _private(ds)
    arr = _pixels(ds, path)
    if arr.size != frames * rows * cols:
        raise CorruptFileError(f"DICOS: decoded {arr.shape} pixels, declared {frames} frame(s) of {rows} x {cols}", path=path)
    arr = arr.reshape(frames, rows, cols)
    energies, e_assumed = _energies(ds, desc, frames, path)
    pitch, p_assumed = _pitch(ds, desc)
    meta: dict[str, Any] = dict((desc or {}).get("metadata", {}) or {})
    meta.update(
        {
            "dicos_sop_class": sop,
            "dicos_transfer_syntax": str(ds.file_meta.get("TransferSyntaxUID", "")),
            "dicos_sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
            "dicos_series_instance_uid": str(ds.get("SeriesInstanceUID", "")),
            "dicos_study_instance_uid": str(ds.get("StudyInstanceUID", "")),
        }
    )
    if e_assumed:
        meta["energies_assumed"] = True
    if p_assumed:
        meta["pitch_assumed"] = True
    common = dict(
        energies=energies,
        pixel_pitch_mm=pitch,
        profile=(desc or {}).get("profile") or None,
        scan_id=(desc or {}).get("scan_id") or str(ds.get("PatientID", "") or "") or path.stem,
        acquired_at=(desc or {}).get("acquired_at") or _acquired_at(ds),
    )
    meta["dicos_photometric"] = photometric
    if sop == DX_FOR_PROCESSING:
        if photometric == "PALETTE COLOR":
            # the stored values are what the detector measured; the palette is only for display
            logger.info("%s: PALETTE COLOR DX for processing: reading the stored values as counts", path)
        if arr.dtype not in (np.uint16, np.uint32):
            bits = _int_attr(ds, "BitsAllocated", path, default=0)
            if arr.dtype == np.uint8 and bits == 8:
                arr = arr.astype(np.uint16)
            else:
                raise UnsupportedFormatError(f"DICOS: for-processing pixels of type {arr.dtype}", path=path)
        refs = _ref_arrays(block, desc, frames, rows, path)
        if desc is None or not any(refs[k] is not None for k in ("dark", "air")):
            meta["references"] = "absent"
        check_references(refs["dark"], refs["air"], path)
        if refs["air_end"] is not None:
            check_references(refs["dark"], refs["air_end"], path, air_name="air_end")
        dead = refs["dead_mask"]
        return RawScan(
            counts=np.ascontiguousarray(arr),
            dark=refs["dark"],
            air=refs["air"],
            air_end=refs["air_end"],
            dead_mask=None if dead is None else dead.astype(bool),
            metadata=meta,
            **common,
        )
    # for presentation
    meta["presentation"] = True
    if photometric == "PALETTE COLOR":
        return _palette_presentation(ds, arr, path, meta, common)
    # display transmission values
    bits = _int_attr(ds, "BitsStored", path, default=arr.dtype.itemsize * 8)
    vmax = float((1 << min(bits, 32)) - 1)
    v = arr.astype(np.float64)
    if photometric == "MONOCHROME1":
        v = vmax - v
    att = (-np.log(np.clip(v, 0.5, vmax) / vmax)).astype(np.float32)
    return Scan(
        attenuation=att,
        valid=np.ones((rows, cols), dtype=bool),
        rendered=True,
        metadata=meta,
        **common,
    )


def _palette_presentation(ds, arr: np.ndarray, path: Path, meta: dict[str, Any], common: dict[str, Any]) -> Scan:
    """A PALETTE COLOR presentation image: apply its colour LUT and read it as a rendering."""
    from pydicom.pixels import apply_color_lut

    from . import rendered

    if arr.shape[0] != 1:
        raise UnsupportedFormatError("DICOS: multi-frame PALETTE COLOR presentation images are not read", path=path)
    try:
        rgb = np.asarray(apply_color_lut(arr[0], ds))
    except Exception as exc:  # missing or malformed palette descriptors
        raise CorruptFileError(f"DICOS: cannot apply the palette colour LUT ({type(exc).__name__}: {exc})", path=path) from exc
    if rgb.dtype != np.uint8:
        rgb = (rgb.astype(np.uint32) >> 8).astype(np.uint8) if rgb.dtype == np.uint16 else rgb.astype(np.uint8)
    scan = rendered.scan_from_8bit(rgb, path, meta={**meta, "lossy": False})
    return scan.replace(
        pixel_pitch_mm=common["pixel_pitch_mm"],
        scan_id=common["scan_id"],
        profile=common["profile"],
        acquired_at=common["acquired_at"],
        metadata={**dict(scan.metadata), "pitch_assumed": bool(meta.get("pitch_assumed", False))},
    )


def _acquired_at(ds) -> str | None:
    dt = str(ds.get("AcquisitionDateTime", "") or "")
    if len(dt) >= 14:
        try:
            return _dt.datetime.strptime(dt[:14], "%Y%m%d%H%M%S").isoformat()
        except ValueError:
            return None
    return None


# --------------------------------------------------------------------------------------------
# writer


def _resolve_ts(transfer_syntax: str) -> str:
    if transfer_syntax in TRANSFER_SYNTAXES:
        return TRANSFER_SYNTAXES[transfer_syntax]
    if transfer_syntax in TRANSFER_SYNTAXES.values():
        return transfer_syntax
    raise InvalidParameterError(
        f"transfer_syntax must be one of {sorted(TRANSFER_SYNTAXES)} or their UIDs, got {transfer_syntax!r}"
    )


def write(
    scan: RawScan | Scan,
    path: str | os.PathLike,
    *,
    for_processing: bool | None = None,
    transfer_syntax: str = "explicit-le",
    sop_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    study_instance_uid: str | None = None,
    bits_stored: int = 16,
    jpeg_predictor: int = 1,
) -> Path:
    """Write a DICOS DX image atomically.

    Parameters
    ----------
    scan : RawScan or Scan
        A :class:`RawScan` is written for processing (counts, with dark/air/air_end/dead-channel
        references in nii's private block); a :class:`Scan` for presentation (display
        transmission ``round((2**bits_stored - 1) * exp(-L))``, MONOCHROME2).
    for_processing : bool, optional
        Must agree with the type of ``scan`` (default: inferred from it).
    transfer_syntax : {"explicit-le", "rle", "jpeg-lossless", "jpeg-lossless-p14"} or its UID
        ``jpeg-lossless`` is JPEG Lossless SV1 (``1.2.840.10008.1.2.4.70``), ``jpeg-lossless-p14``
        process 14 with any predictor (``1.2.840.10008.1.2.4.57``); compressed syntaxes take
        16-bit samples only.
    sop_instance_uid, series_instance_uid, study_instance_uid : str, optional
        UIDs to use (e.g. so that a Threat Detection Report can reference this image); default
        new UIDs.
    bits_stored : int
        Presentation precision (8..16) for a :class:`Scan`.
    jpeg_predictor : int
        Lossless-JPEG predictor 1..7 for ``jpeg-lossless-p14`` (SV1 is always predictor 1).

    Returns
    -------
    Path
        The written file. Its SOP Instance UID is in ``metadata["dicos_sop_instance_uid"]`` when
        read back, or pass ``sop_instance_uid`` to choose it.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, generate_uid

    ts = UID(_resolve_ts(transfer_syntax))
    if jpeg_predictor not in range(1, 8) or (jpeg_predictor != 1 and ts != TRANSFER_SYNTAXES["jpeg-lossless-p14"]):
        raise InvalidParameterError(
            f"jpeg_predictor must be 1..7 and may differ from 1 only with 'jpeg-lossless-p14', got {jpeg_predictor!r}"
        )
    if isinstance(scan, RawScan):
        processing = True
    elif isinstance(scan, Scan):
        processing = False
    else:
        raise InvalidParameterError(f"scan must be a RawScan or Scan, got {type(scan).__name__}")
    if for_processing is not None and bool(for_processing) != processing:
        raise InvalidParameterError(
            "for_processing=True needs a RawScan (counts); for_processing=False needs a Scan (attenuation)"
        )
    if processing:
        pixels = np.asarray(scan.counts)
        bits = pixels.dtype.itemsize * 8
        stored = bits
    else:
        if not 8 <= int(bits_stored) <= 16:
            raise InvalidParameterError(f"bits_stored must be 8..16, got {bits_stored!r}")
        stored = int(bits_stored)
        bits = 16
        att = np.asarray(scan.attenuation, dtype=np.float64)
        check_finite(att, Path(path), "attenuation")
        vmax = (1 << stored) - 1
        pixels = np.floor(vmax * np.exp(-np.maximum(att, 0.0)) + 0.5).astype(np.uint16)
    e, h, w = pixels.shape
    if ts != TRANSFER_SYNTAXES["explicit-le"] and pixels.dtype != np.uint16:
        raise InvalidParameterError(
            f"{UID(ts).name} is written for 16-bit samples only (JPEG Lossless holds at most 16 bits; pydicom's RLE "
            "encoder refuses 32); write uint32 counts with transfer_syntax='explicit-le'"
        )
    sop_class = UID(DX_FOR_PROCESSING if processing else DX_FOR_PRESENTATION)
    sop_uid = UID(sop_instance_uid or generate_uid())
    now = _dt.datetime.now(_dt.timezone.utc)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ts
    meta.ImplementationVersionName = f"NII_{__version__}"[:16]
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = UID(study_instance_uid or generate_uid())
    ds.SeriesInstanceUID = UID(series_instance_uid or generate_uid())
    ds.Modality = "DX"
    ds.PatientID = scan.scan_id[:64]  # DICOS: Object of Inspection ID
    ds.PatientName = ""
    ds.StudyDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.ContentTime = now.strftime("%H%M%S")
    if scan.acquired_at:
        try:
            acq = _dt.datetime.fromisoformat(scan.acquired_at)
            ds.AcquisitionDateTime = acq.strftime("%Y%m%d%H%M%S")
        except ValueError:
            pass
    ds.Manufacturer = "nii"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY"] if processing else ["DERIVED", "PRIMARY"]
    ds.PresentationIntentType = "FOR PROCESSING" if processing else "FOR PRESENTATION"
    ds.ImagerPixelSpacing = [f"{scan.pixel_pitch_mm[0]:.10g}", f"{scan.pixel_pitch_mm[1]:.10g}"]
    if e == 1 and scan.energies[0].kvp is not None:
        ds.KVP = f"{scan.energies[0].kvp:.10g}"[:16]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = h
    ds.Columns = w
    ds.BitsAllocated = bits
    ds.BitsStored = stored
    ds.HighBit = stored - 1
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00"
    if e > 1:
        ds.NumberOfFrames = e
        ds.FrameIncrementPointer = pydicom.tag.Tag("FrameLabelVector")
        ds.FrameLabelVector = [c.label[:16] for c in scan.energies]
    if not processing:
        ds.PresentationLUTShape = "IDENTITY"
    desc: dict[str, Any] = {
        "format": _DESC_FORMAT,
        "energies": [{"label": c.label, "kvp": c.kvp} for c in scan.energies],
        "pixel_pitch_mm": list(scan.pixel_pitch_mm),
        "scan_id": scan.scan_id,
        "profile": scan.profile,
        "acquired_at": scan.acquired_at,
        "metadata": {k: v for k, v in dict(scan.metadata).items() if not str(k).startswith("dicos_")},
        "references": {},
    }
    block = ds.private_block(_PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    if processing:
        for name, el in _EL_REFS.items():
            ref = getattr(scan, name)
            if ref is None:
                continue
            ref = np.asarray(ref)
            if ref.dtype == bool:
                ref = ref.astype(np.uint8)
            little = ref.astype(ref.dtype.newbyteorder("<"))
            desc["references"][name] = {"shape": list(ref.shape), "dtype": ref.dtype.newbyteorder("=").str.lstrip("<>=|")}
            payload = little.tobytes()
            block.add_new(el, "OB", payload + (b"\x00" if len(payload) % 2 else b""))
    block.add_new(_EL_JSON, "UT", json.dumps(desc, default=str))
    _set_pixels(ds, pixels, ts, jpeg_predictor)
    target = Path(path)
    with atomic_path(target) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return target


def _set_pixels(ds, pixels: np.ndarray, ts, predictor: int) -> None:
    from pydicom.encaps import encapsulate
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless

    e = pixels.shape[0]
    frames = pixels if e > 1 else pixels[0]
    if ts == ExplicitVRLittleEndian:
        ds.PixelData = np.ascontiguousarray(frames.astype(frames.dtype.newbyteorder("<"))).tobytes()
        ds["PixelData"].VR = "OW" if pixels.dtype.itemsize == 2 else "OB"
        return
    if ts == RLELossless:
        ds.PixelData = np.ascontiguousarray(frames.astype(frames.dtype.newbyteorder("<"))).tobytes()
        ds["PixelData"].VR = "OW" if pixels.dtype.itemsize == 2 else "OB"
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.compress(RLELossless, encoding_plugin="pydicom")
        return
    from ._ljpeg import encode_lossless

    precision = int(ds.BitsStored)
    encoded = [encode_lossless(np.ascontiguousarray(f), precision=max(precision, 2), predictor=predictor) for f in pixels]
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
