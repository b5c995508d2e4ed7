"""DICOS Threat Detection Report (TDR) writer and reader.

A TDR (SOP class ``1.2.840.10008.5.1.4.1.1.501.3``, NEMA DICOS) carries the automatic threat
detection of one scan and references the image it was computed on — here the DICOS Digital
X-Ray (DX) image of the scan written by :func:`nii.io.dicos.write`. nii writes a *machine* TDR:

* ``TDRType = MACHINE``, ``AlarmDecision`` ``ALARM`` / ``CLEAR`` with its time, ``AbortFlag
  SUCCESS``, ``NumberOfTotalObjects`` / ``NumberOfAlarmObjects``;
* ``ThreatDetectionAlgorithmAndVersion`` = ``["nii", <version>, <model hash>]``;
* ``TotalProcessingTime`` in milliseconds (read + normalise + detect);
* one ``ThreatSequence`` item (a *potential threat object*, PTO) per detection, with
  ``PotentialThreatObjectID``; a ``PTORepresentationSequence`` item that references the DX
  image (``ReferencedInstanceSequence``) and holds the box as ``ThreatROIBase`` (x0, y0, 0)
  and ``ThreatROIExtents`` (width, height, 1) in pixel columns/rows of that image; an
  ``ATDAssessmentSequence`` item with ``ThreatCategory = CONTRABAND``, the class as
  ``ThreatCategoryDescription``, ``ATDAssessmentFlag = THREAT``, the confidence as
  ``ATDAssessmentProbability``, and the Zeff evidence as ``ZEffective`` when known.

Material anomalies are reported like model detections but their description is prefixed with
``material_anomaly:`` so that a reader can tell the two origins apart.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .alarms import count_alarms
from ._atomic import atomic_path
from ._version import __version__
from .errors import CorruptFileError, InvalidParameterError, NiiError

__all__ = ["TDR_SOP_CLASS", "DX_SOP_CLASSES", "ThreatItem", "TDRReport", "write_tdr", "read_tdr", "write_dx_and_tdr"]

#: SOP class UID of DICOS Threat Detection Report Storage.
TDR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.501.3"
#: SOP class UIDs of DICOS Digital X-Ray image storage (for presentation, for processing).
DX_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.501.2.1", "1.2.840.10008.5.1.4.1.1.501.2.2")
_ANOMALY_PREFIX = "material_anomaly:"


@dataclass(frozen=True)
class ThreatItem:
    """One potential threat object read back from a TDR."""

    pto_id: int
    category: str
    description: str
    probability: float
    base: tuple[float, float, float]
    extents: tuple[float, float, float]
    referenced_sop_instance_uid: str
    referenced_sop_class_uid: str
    zeff: float | None = None

    @property
    def class_name(self) -> str:
        d = self.description
        return d[len(_ANOMALY_PREFIX) :] if d.startswith(_ANOMALY_PREFIX) else d

    @property
    def origin(self) -> str:
        return "material_anomaly" if self.description.startswith(_ANOMALY_PREFIX) else "yolo"

    @property
    def box_px(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` in pixels of the referenced image."""
        x, y, _ = self.base
        w, h, _ = self.extents
        return (x, y, x + w, y + h)


@dataclass(frozen=True)
class TDRReport:
    """Content of a DICOS TDR, as read by :func:`read_tdr`."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    tdr_type: str
    alarm: bool
    alarm_decision_time: str
    algorithm: tuple[str, ...]
    total_processing_time_ms: float | None
    n_total: int
    n_alarm: int
    threats: tuple[ThreatItem, ...]


def _dt_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _dicom_dt(t: _dt.datetime) -> str:
    return t.strftime("%Y%m%d%H%M%S.%f") + t.strftime("%z")


def _load_dx(dx: Any):
    import pydicom  # noqa: PLC0415

    if isinstance(dx, pydicom.Dataset):
        ds, where = dx, "DX dataset"
    else:
        where = os.fspath(dx)
        try:
            ds = pydicom.dcmread(where, stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError) as exc:
            raise CorruptFileError(f"cannot read the DICOS DX image the TDR must reference ({exc})", path=where) from exc
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class not in DX_SOP_CLASSES:
        raise InvalidParameterError(f"{where}: SOP class {sop_class!r} is not DICOS DX {DX_SOP_CLASSES}")
    for kw in ("SOPInstanceUID", "StudyInstanceUID", "Rows", "Columns"):
        if kw not in ds:
            raise InvalidParameterError(f"{where}: DICOS DX image lacks {kw}")
    return ds


def build_tdr_dataset(result: Any, dx: Any, *, now: _dt.datetime | None = None):
    """Build the TDR :class:`pydicom.FileDataset` of ``result`` referencing the DX image ``dx``.

    Parameters
    ----------
    result : nii.pipeline.Result
        A successful result; its detections' ``box_px`` must lie in the DX image's pixel frame
        (columns = x = scan lines, rows = y = detector channels).
    dx : path or pydicom.Dataset
        The DICOS DX image of the scan.
    """
    from pydicom.dataset import Dataset, FileMetaDataset  # noqa: PLC0415
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid  # noqa: PLC0415

    from pydicom.dataset import FileDataset  # noqa: PLC0415

    if not getattr(result, "ok", False):
        raise InvalidParameterError("write_tdr needs a successful result")
    dxds = _load_dx(dx)
    now = now or _dt_now()
    rows, cols = int(dxds.Rows), int(dxds.Columns)
    dets = [d.to_dict() for d in result.detections]

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = TDR_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)

    # SOP common, object of inspection (patient module in DICOS), study, series, equipment
    ds.SOPClassUID = TDR_SOP_CLASS
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    for kw in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "FrameOfReferenceUID", "AccessionNumber"):
        if kw in dxds:
            setattr(ds, kw, dxds.data_element(kw).value)
    if "PatientID" not in ds:
        ds.PatientID = str(result.scan_id)[:64]
    ds.Modality = "TDR"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S.%f")
    ds.Manufacturer = "nii"
    ds.SoftwareVersions = __version__

    # Threat detection report module
    model_hash = result.scan.provenance.model_hash if result.scan is not None else None
    ds.TDRType = "MACHINE"
    ds.ThreatDetectionAlgorithmAndVersion = ["nii", __version__] + ([str(model_hash)[:64]] if model_hash else [])
    ds.AlarmDecision = "ALARM" if count_alarms(dets) else "CLEAR"
    ds.AlarmDecisionTime = _dicom_dt(now)
    ds.AbortFlag = "SUCCESS"
    ds.NumberOfTotalObjects = len(dets)
    ds.NumberOfAlarmObjects = count_alarms(dets)
    total = result.timings_ms.get("total")
    if total is None:
        total = sum(v for k, v in result.timings_ms.items() if k in ("read", "normalize", "detect"))
    ds.TotalProcessingTime = float(total)

    ref = Dataset()
    ref.ReferencedSOPClassUID = dxds.SOPClassUID
    ref.ReferencedSOPInstanceUID = dxds.SOPInstanceUID
    threats = []
    for i, d in enumerate(dets):
        x0, y0, x1, y1 = (float(v) for v in d["box_px"])
        x0, y0 = max(0.0, min(x0, cols)), max(0.0, min(y0, rows))
        x1, y1 = max(x0, min(x1, cols)), max(y0, min(y1, rows))
        roi = Dataset()
        roi.ThreatROIBase = [x0, y0, 0.0]
        roi.ThreatROIExtents = [x1 - x0, y1 - y0, 1.0]
        rep = Dataset()
        rep.ReferencedInstanceSequence = [_copy(ref)]
        rep.ThreatROIVoxelSequence = [roi]
        ev = d.get("evidence") or {}
        zeff = _first_number(ev, ("zeff_median", "zeff", "zeff_mean"))
        if zeff is not None:
            rep.ZEffective = zeff
        assess = Dataset()
        assess.ThreatCategory = "CONTRABAND"
        prefix = _ANOMALY_PREFIX if d.get("origin") == "material_anomaly" else ""
        assess.ThreatCategoryDescription = prefix + str(d["class"])
        assess.ATDAbilityAssessment = "NO_INTERFERENCE"
        assess.ATDAssessmentFlag = "THREAT"
        assess.ATDAssessmentProbability = float(d["confidence"])
        item = Dataset()
        item.PotentialThreatObjectID = i
        item.PTORepresentationSequence = [rep]
        item.ATDAssessmentSequence = [assess]
        threats.append(item)
    ds.ThreatSequence = threats
    return ds


def _copy(ds):
    from pydicom.dataset import Dataset  # noqa: PLC0415

    out = Dataset()
    for elem in ds:
        out.add(elem)
    return out


def _first_number(ev: Mapping[str, Any], keys: Sequence[str]) -> float | None:
    for k in keys:
        v = ev.get(k)
        if isinstance(v, (int, float)) and math.isfinite(float(v)):
            return float(v)
    return None


def write_tdr(result: Any, path: str | os.PathLike, *, dx: Any) -> Path:
    """Write the DICOS TDR of ``result`` (referencing the DX image ``dx``) to ``path`` atomically."""
    ds = build_tdr_dataset(result, dx)
    target = Path(path)
    with atomic_path(target) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return target


def write_dx_and_tdr(result: Any, dx_path: str | os.PathLike, tdr_path: str | os.PathLike) -> tuple[Path, Path]:
    """Write the DICOS DX image of the scan (:func:`nii.io.dicos.write`) and the TDR referencing it."""
    try:
        from .io import dicos  # noqa: PLC0415
    except ImportError as exc:
        raise NiiError("the tdr output needs nii.io.dicos (DICOS DX writer), which is not available") from exc
    dx_path = Path(dx_path)
    dicos.write(result.scan, dx_path)
    return dx_path, write_tdr(result, tdr_path, dx=dx_path)


def read_tdr(path: str | os.PathLike) -> TDRReport:
    """Read a DICOS TDR written by nii (or any TDR with 2-D ROI boxes) back into a :class:`TDRReport`."""
    import pydicom  # noqa: PLC0415

    where = os.fspath(path)
    try:
        ds = pydicom.dcmread(where)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise CorruptFileError(f"not a readable DICOM file ({exc})", path=where) from exc
    if str(ds.get("SOPClassUID", "")) != TDR_SOP_CLASS:
        raise CorruptFileError(f"SOP class {ds.get('SOPClassUID')!r} is not DICOS TDR ({TDR_SOP_CLASS})", path=where)
    try:
        threats = []
        for item in ds.get("ThreatSequence", []):
            rep = item.PTORepresentationSequence[0]
            roi = rep.ThreatROIVoxelSequence[0]
            refi = rep.ReferencedInstanceSequence[0]
            a = item.ATDAssessmentSequence[0]
            threats.append(
                ThreatItem(
                    pto_id=int(item.PotentialThreatObjectID),
                    category=str(a.ThreatCategory),
                    description=str(a.get("ThreatCategoryDescription", "")),
                    probability=float(a.get("ATDAssessmentProbability", math.nan)),
                    base=tuple(float(v) for v in roi.ThreatROIBase),
                    extents=tuple(float(v) for v in roi.ThreatROIExtents),
                    referenced_sop_instance_uid=str(refi.ReferencedSOPInstanceUID),
                    referenced_sop_class_uid=str(refi.ReferencedSOPClassUID),
                    zeff=float(rep.ZEffective) if "ZEffective" in rep else None,
                )
            )
        alg = ds.get("ThreatDetectionAlgorithmAndVersion", [])
        alg = (str(alg),) if isinstance(alg, str) else tuple(str(v) for v in alg)
        tpt = ds.get("TotalProcessingTime")
        return TDRReport(
            sop_class_uid=str(ds.SOPClassUID),
            sop_instance_uid=str(ds.SOPInstanceUID),
            study_instance_uid=str(ds.get("StudyInstanceUID", "")),
            tdr_type=str(ds.get("TDRType", "")),
            alarm=str(ds.get("AlarmDecision", "")) == "ALARM",
            alarm_decision_time=str(ds.get("AlarmDecisionTime", "")),
            algorithm=alg,
            total_processing_time_ms=float(tpt) if tpt is not None else None,
            n_total=int(ds.get("NumberOfTotalObjects", len(threats))),
            n_alarm=int(ds.get("NumberOfAlarmObjects", len(threats))),
            threats=tuple(threats),
        )
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise CorruptFileError(f"DICOS TDR is missing or has malformed threat attributes ({exc})", path=where) from exc
