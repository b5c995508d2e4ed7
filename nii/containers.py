"""Frozen scan containers: :class:`RawScan` (detector counts) and :class:`Scan` (normalised).

Layout conventions (``shared/CONVENTIONS.md``):

* energy axis first: arrays are ``(E, H, W)`` where ``E`` is the number of energy channels
  (1 for single energy, 2 for dual energy, low first), ``H`` the detector channels (across the
  belt) and ``W`` the scan lines (along the belt, i.e. time);
* reference lines (dark, air) are per channel: ``(E, H)`` or ``(E, H, n)`` for ``n`` recorded lines;
* after ingest every map is float32; nothing is ever rescaled silently;
* containers are immutable: arrays are stored as read-only views and every pipeline step returns a
  new container through :meth:`Scan.with_step`, appending to its provenance.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._version import __version__
from .errors import InvalidDataError, InvalidParameterError

__all__ = [
    "EnergyChannel",
    "SourceInfo",
    "Truth",
    "Step",
    "Provenance",
    "RawScan",
    "Scan",
    "freeze_array",
]


def freeze_array(arr: np.ndarray | None) -> np.ndarray | None:
    """Return a read-only view of ``arr`` (the caller's array keeps its own flags)."""
    if arr is None:
        return None
    view = np.asarray(arr).view()
    view.flags.writeable = False
    return view


def _freeze_mapping(m: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(m or {}))


@dataclass(frozen=True)
class EnergyChannel:
    """One energy channel of a scanner.

    Parameters
    ----------
    label : str
        ``"low"``, ``"high"`` or ``"single"`` (free text is allowed, e.g. ``"4MeV"``).
    kvp : float or None
        Peak accelerating voltage in kV (a 6 MeV linac is ``6000``); None when unknown
        (e.g. a rendered screenshot).
    """

    label: str
    kvp: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label:
            raise InvalidParameterError(f"EnergyChannel.label must be a non-empty string, got {self.label!r}")
        if self.kvp is not None:
            kvp = float(self.kvp)
            if not np.isfinite(kvp) or kvp <= 0:
                raise InvalidParameterError(f"EnergyChannel.kvp must be positive, got {self.kvp!r}")
            object.__setattr__(self, "kvp", kvp)

    @property
    def mev(self) -> float | None:
        """Peak energy in MeV (``kvp / 1000``)."""
        return None if self.kvp is None else self.kvp / 1000.0

    def describe(self) -> str:
        """Human-readable form, e.g. ``"low (80 kVp)"`` or ``"high (6 MeV)"``."""
        if self.kvp is None:
            return self.label
        if self.kvp >= 1000:
            return f"{self.label} ({self.kvp / 1000:g} MeV)"
        return f"{self.label} ({self.kvp:g} kVp)"


@dataclass(frozen=True)
class SourceInfo:
    """Where a scan came from: file path, SHA-256 of its bytes and the format that read it."""

    path: str
    sha256: str
    format: str


@dataclass(frozen=True, eq=False)
class Truth:
    """Ground-truth objects of a simulated or annotated scan.

    Parameters
    ----------
    boxes : ndarray, shape (N, 4), float32
        ``x0, y0, x1, y1`` in pixels of the scan image (x along W, y along H).
    classes : tuple of str
        One class name per box.
    """

    boxes: np.ndarray
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4) if np.size(self.boxes) else np.zeros((0, 4), np.float32)
        classes = tuple(str(c) for c in self.classes)
        if boxes.shape[0] != len(classes):
            raise InvalidDataError(f"truth has {boxes.shape[0]} boxes but {len(classes)} classes")
        if not np.all(np.isfinite(boxes)):
            raise InvalidDataError("truth boxes contain NaN or Inf")
        if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
            raise InvalidDataError("truth boxes must be x0 <= x1 and y0 <= y1 (xyxy)")
        object.__setattr__(self, "boxes", freeze_array(boxes))
        object.__setattr__(self, "classes", classes)

    def __len__(self) -> int:
        return len(self.classes)

    @classmethod
    def empty(cls) -> "Truth":
        return cls(np.zeros((0, 4), np.float32), ())


@dataclass(frozen=True)
class Step:
    """One processing step in a scan's provenance."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    nii_version: str = __version__
    time: str = ""

    def __post_init__(self) -> None:
        # JSON round trip: params must be serialisable and are stored as a read-only mapping.
        try:
            params = json.loads(json.dumps(dict(self.params), default=_json_default))
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(f"provenance params of step {self.name!r} are not JSON-serialisable: {exc}") from exc
        object.__setattr__(self, "params", _freeze_mapping(params))
        if not self.time:
            object.__setattr__(self, "time", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params), "nii_version": self.nii_version, "time": self.time}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


@dataclass(frozen=True)
class Provenance:
    """Chain of custody of a result: nii version, calibration and model hashes, steps applied."""

    steps: tuple[Step, ...] = ()
    calibration_hash: str | None = None
    model_hash: str | None = None
    nii_version: str = __version__

    def append(self, step: Step, *, calibration_hash: str | None = None, model_hash: str | None = None) -> "Provenance":
        return Provenance(
            steps=self.steps + (step,),
            calibration_hash=calibration_hash or self.calibration_hash,
            model_hash=model_hash or self.model_hash,
            nii_version=self.nii_version,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "nii_version": self.nii_version,
            "calibration_hash": self.calibration_hash,
            "model_hash": self.model_hash,
            "steps": [s.to_dict() for s in self.steps],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Provenance":
        steps = tuple(
            Step(name=s["name"], params=s.get("params", {}), nii_version=s.get("nii_version", "?"), time=s.get("time", "?"))
            for s in d.get("steps", [])
        )
        return cls(
            steps=steps,
            calibration_hash=d.get("calibration_hash"),
            model_hash=d.get("model_hash"),
            nii_version=d.get("nii_version", __version__),
        )


def _check_pitch(pitch: Sequence[float]) -> tuple[float, float]:
    try:
        det, line = (float(p) for p in pitch)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"pixel_pitch_mm must be (detector_mm, line_mm), got {pitch!r}") from exc
    if not (np.isfinite(det) and np.isfinite(line) and det > 0 and line > 0):
        raise InvalidParameterError(f"pixel_pitch_mm must be two positive numbers, got {pitch!r}")
    return det, line


def _check_energies(energies: Sequence[EnergyChannel], n: int, what: str) -> tuple[EnergyChannel, ...]:
    energies = tuple(e if isinstance(e, EnergyChannel) else EnergyChannel(*e) if isinstance(e, (tuple, list)) else EnergyChannel(str(e)) for e in energies)
    if len(energies) != n:
        raise InvalidDataError(f"{what} has {n} energy planes but {len(energies)} energy channels are declared")
    return energies


def _check_ref(name: str, ref: np.ndarray | None, e: int, h: int) -> np.ndarray | None:
    if ref is None:
        return None
    ref = np.asarray(ref)
    if ref.ndim not in (2, 3) or ref.shape[:2] != (e, h):
        raise InvalidDataError(f"{name} reference must be (E, H) or (E, H, n) = ({e}, {h}[, n]), got {ref.shape}")
    if ref.ndim == 3 and ref.shape[2] == 0:
        raise InvalidDataError(f"{name} reference has zero lines")
    if not np.issubdtype(ref.dtype, np.number) or np.issubdtype(ref.dtype, np.complexfloating):
        raise InvalidDataError(f"{name} reference must be real numbers, got dtype {ref.dtype}")
    if np.issubdtype(ref.dtype, np.floating) and not np.all(np.isfinite(ref)):
        raise InvalidDataError(f"{name} reference contains NaN or Inf")
    return freeze_array(ref)


@dataclass(frozen=True, eq=False)
class RawScan:
    """Raw detector counts of one scan, as a scanner delivers them.

    Parameters
    ----------
    counts : ndarray, shape (E, H, W), uint16 or uint32
        Detector counts, energy axis first (low energy first for dual energy).
    energies : tuple of EnergyChannel
        One per energy plane.
    pixel_pitch_mm : (float, float)
        Detector-channel pitch and line (belt) pitch in mm.
    dark : ndarray (E, H) or (E, H, n), optional
        Dark (offset) reference per channel, or ``n`` recorded dark lines.
    air : ndarray (E, H) or (E, H, n), optional
        Air (open beam, gain) reference recorded before the object.
    air_end : ndarray (E, H) or (E, H, n), optional
        Air reference recorded after the object; with ``air`` it allows linear drift correction.
    dead_mask : ndarray (E, H) bool, optional
        True where a detector channel is known dead or hot.
    profile : str, optional
        Scanner-profile id (``calibration/profiles/<id>.toml``).
    scan_id : str
        Identifier of the scan; unique within a site.
    acquired_at : str, optional
        ISO-8601 acquisition time.
    source : SourceInfo, optional
        File the scan was read from, with SHA-256.
    truth : Truth, optional
        Ground-truth boxes (simulated or annotated scans).
    rendered : bool
        True when the data were recovered from a lossy 8-bit rendering; such data are not counts.
    metadata : mapping
        Any further key/value pairs (JSON-serialisable).
    """

    counts: np.ndarray
    energies: tuple[EnergyChannel, ...]
    pixel_pitch_mm: tuple[float, float]
    dark: np.ndarray | None = None
    air: np.ndarray | None = None
    air_end: np.ndarray | None = None
    dead_mask: np.ndarray | None = None
    profile: str | None = None
    scan_id: str = ""
    acquired_at: str | None = None
    source: SourceInfo | None = None
    truth: Truth | None = None
    rendered: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        counts = np.asarray(self.counts)
        if counts.ndim == 2:
            counts = counts[np.newaxis]
        if counts.ndim != 3:
            raise InvalidDataError(f"counts must be (E, H, W), got shape {counts.shape}")
        if counts.dtype not in (np.uint16, np.uint32):
            raise InvalidDataError(f"counts must be uint16 or uint32, got {counts.dtype}")
        e, h, w = counts.shape
        if min(e, h, w) == 0:
            raise InvalidDataError(f"counts has an empty dimension: {counts.shape}")
        object.__setattr__(self, "counts", freeze_array(counts))
        object.__setattr__(self, "energies", _check_energies(self.energies, e, "counts"))
        object.__setattr__(self, "pixel_pitch_mm", _check_pitch(self.pixel_pitch_mm))
        for name in ("dark", "air", "air_end"):
            object.__setattr__(self, name, _check_ref(name, getattr(self, name), e, h))
        if self.dead_mask is not None:
            dm = np.asarray(self.dead_mask, dtype=bool)
            if dm.shape != (e, h):
                raise InvalidDataError(f"dead_mask must be (E, H) = ({e}, {h}), got {dm.shape}")
            object.__setattr__(self, "dead_mask", freeze_array(dm))
        object.__setattr__(self, "metadata", _freeze_mapping(self.metadata))
        object.__setattr__(self, "scan_id", str(self.scan_id))

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(E, H, W)``."""
        return tuple(self.counts.shape)  # type: ignore[return-value]

    @property
    def n_energies(self) -> int:
        return self.counts.shape[0]

    def replace(self, **changes: Any) -> "RawScan":
        """Return a copy with some fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, eq=False)
class Scan:
    """A normalised scan: log attenuation per energy plus derived material maps.

    Parameters
    ----------
    attenuation : ndarray (E, H, W) float32
        ``L = -ln(I / I0)`` per energy channel (low first). Impenetrable pixels hold the largest
        measurable value and are flagged in ``material``; invalid pixels are False in ``valid``.
    energies : tuple of EnergyChannel
    pixel_pitch_mm : (float, float)
        mm per pixel (detector, line) of these maps.
    valid : ndarray (H, W) bool, optional
        False where a pixel could not be measured (dead channel without repair, starved, padding).
    zeff : ndarray (H, W) float32, optional
        Effective atomic number (NaN where undefined, e.g. air).
    material : ndarray (H, W) uint8, optional
        :class:`nii.materials.MaterialClass` codes.
    color : ndarray (H, W, 3) uint8, optional
        Operator pseudo-colour rendering (RGB).
    rendered : bool
        True when the scan was recovered from a lossy 8-bit rendering.
    provenance : Provenance
        Steps applied, nii version, calibration hash.
    """

    attenuation: np.ndarray
    energies: tuple[EnergyChannel, ...]
    pixel_pitch_mm: tuple[float, float]
    valid: np.ndarray | None = None
    zeff: np.ndarray | None = None
    material: np.ndarray | None = None
    color: np.ndarray | None = None
    profile: str | None = None
    scan_id: str = ""
    acquired_at: str | None = None
    source: SourceInfo | None = None
    truth: Truth | None = None
    rendered: bool = False
    provenance: Provenance = field(default_factory=Provenance)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        att = np.asarray(self.attenuation)
        if att.ndim == 2:
            att = att[np.newaxis]
        if att.ndim != 3:
            raise InvalidDataError(f"attenuation must be (E, H, W), got shape {att.shape}")
        if att.dtype != np.float32:
            raise InvalidDataError(f"attenuation must be float32 (convert explicitly), got {att.dtype}")
        e, h, w = att.shape
        if min(e, h, w) == 0:
            raise InvalidDataError(f"attenuation has an empty dimension: {att.shape}")
        object.__setattr__(self, "attenuation", freeze_array(att))
        object.__setattr__(self, "energies", _check_energies(self.energies, e, "attenuation"))
        object.__setattr__(self, "pixel_pitch_mm", _check_pitch(self.pixel_pitch_mm))
        for name, dtype, shape in (
            ("valid", np.bool_, (h, w)),
            ("zeff", np.float32, (h, w)),
            ("material", np.uint8, (h, w)),
            ("color", np.uint8, (h, w, 3)),
        ):
            val = getattr(self, name)
            if val is None:
                continue
            val = np.asarray(val)
            if val.shape != shape:
                raise InvalidDataError(f"{name} must have shape {shape}, got {val.shape}")
            if val.dtype != dtype:
                raise InvalidDataError(f"{name} must be {np.dtype(dtype)}, got {val.dtype}")
            object.__setattr__(self, name, freeze_array(val))
        object.__setattr__(self, "metadata", _freeze_mapping(self.metadata))
        object.__setattr__(self, "scan_id", str(self.scan_id))

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(E, H, W)``."""
        return tuple(self.attenuation.shape)  # type: ignore[return-value]

    @property
    def n_energies(self) -> int:
        return self.attenuation.shape[0]

    @property
    def mm_per_px(self) -> tuple[float, float]:
        """Alias of ``pixel_pitch_mm``."""
        return self.pixel_pitch_mm

    def replace(self, **changes: Any) -> "Scan":
        """Return a copy with some fields replaced (validated again); provenance unchanged."""
        return dataclasses.replace(self, **changes)

    def with_step(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        *,
        calibration_hash: str | None = None,
        model_hash: str | None = None,
        **changes: Any,
    ) -> "Scan":
        """Return a new scan with ``changes`` applied and the step appended to provenance."""
        prov = self.provenance.append(
            Step(name, params or {}), calibration_hash=calibration_hash, model_hash=model_hash
        )
        return dataclasses.replace(self, provenance=prov, **changes)
