"""The scan pipeline: read → normalise → detect → results, as one reusable object.

:class:`Pipeline` loads the calibration and model once and processes any number of scans;
:func:`Pipeline.process` raises :class:`~nii.errors.NiiError` on bad input, while
:func:`Pipeline.process_many` never raises for a single bad scan and returns an error result
for it instead, so that a batch goes on.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._version import __version__
from .containers import RawScan, Scan
from .errors import InvalidParameterError, ModelError, NiiError

__all__ = ["Pipeline", "Result"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Result:
    """Outcome of processing one scan.

    ``status`` is ``"ok"`` or ``"error"``; on error ``error`` holds the message (naming the file)
    and ``scan`` is None. ``detections`` holds the detector's objects (each with ``to_dict()``).
    """

    source: str | None
    scan_id: str
    status: str
    error: str | None = None
    scan: Scan | None = None
    raw: RawScan | None = None
    detections: tuple[Any, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def alarm(self) -> bool:
        """True when any detection (model or material anomaly) was raised."""
        return bool(self.detections)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (the ``nii scan --json`` line)."""
        scan = self.scan
        return {
            "source": self.source,
            "scan_id": self.scan_id,
            "status": self.status,
            "error": self.error,
            "detections": [d.to_dict() for d in self.detections],
            "alarm": self.alarm,
            "shape": list(scan.shape) if scan is not None else None,
            "profile": scan.profile if scan is not None else None,
            "source_sha256": scan.source.sha256 if scan is not None and scan.source else None,
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "provenance": scan.provenance.to_dict() if scan is not None else None,
            "nii_version": __version__,
            "notes": list(self.notes),
        }


class Pipeline:
    """Read, normalise and run the detector on scans.

    Parameters
    ----------
    calibration : CalibrationSet or path, optional
        Scanner/material calibration; default: the shipped calibration of each scan's profile.
    model : path, str, False or None
        Detector model folder. None: the default model when one is installed (else no detection,
        noted in each result). False: do not detect.
    """

    def __init__(self, *, calibration: Any = None, model: Any = None) -> None:
        self.calibration = calibration
        self.notes: list[str] = []
        self.detector = None
        if model is not False:
            try:
                from .detect import Detector  # noqa: PLC0415
            except ImportError:
                Detector = None  # type: ignore[assignment]
            if Detector is None:
                if model is not None:
                    raise ModelError("the detector module is not available in this installation")
                self.notes.append("no detector in this installation: detections are empty")
            else:
                try:
                    self.detector = Detector.load(model)
                except ModelError as exc:
                    if model is not None:
                        raise
                    self.notes.append(f"no default detector model: {exc.reason}; detections are empty")
        for n in self.notes:
            logger.info(n)

    def _normalise(self, scan: RawScan | Scan) -> Scan:
        try:
            from .normalize import normalize  # noqa: PLC0415
        except ImportError:
            normalize = None  # type: ignore[assignment]
        if normalize is None:
            if isinstance(scan, Scan):
                return scan
            raise NiiError("normalisation is not available in this installation")
        return normalize(scan, calibration=self.calibration)

    def process(self, source: str | os.PathLike | bytes | RawScan | Scan) -> Result:
        """Process one scan (a path, the file's bytes, or a container); raise NiiError on bad input."""
        t: dict[str, float] = {}
        t0 = time.perf_counter()
        if isinstance(source, (RawScan, Scan)):
            scan_in = source
            src = source.source.path if source.source else None
        elif isinstance(source, (bytes, bytearray, memoryview)):
            scan_in = _read_bytes(bytes(source))
            src = None
        elif isinstance(source, (str, os.PathLike)):
            from .io import read  # noqa: PLC0415

            scan_in = read(source)
            src = os.fspath(source)
        else:
            raise InvalidParameterError(f"source must be a path, bytes, RawScan or Scan, got {type(source).__name__}")
        t["read"] = (time.perf_counter() - t0) * 1e3
        t1 = time.perf_counter()
        scan = self._normalise(scan_in)
        t["normalize"] = (time.perf_counter() - t1) * 1e3
        detections: tuple[Any, ...] = ()
        if self.detector is not None:
            t2 = time.perf_counter()
            detections = tuple(self.detector.detect(scan))
            t["detect"] = (time.perf_counter() - t2) * 1e3
        t["total"] = (time.perf_counter() - t0) * 1e3
        return Result(
            source=src,
            scan_id=scan.scan_id,
            status="ok",
            scan=scan,
            raw=scan_in if isinstance(scan_in, RawScan) else None,
            detections=detections,
            timings_ms=t,
            notes=tuple(self.notes),
        )

    def process_many(self, sources: Iterable[str | os.PathLike | bytes | RawScan | Scan]) -> Iterator[Result]:
        """Process scans one after another; a bad scan yields an error result, never an exception."""
        for src in sources:
            try:
                yield self.process(src)
            except NiiError as exc:
                name = os.fspath(src) if isinstance(src, (str, os.PathLike)) else None
                msg = str(exc) if exc.path is not None or name is None else f"{name}: {exc}"
                yield Result(source=name, scan_id=Path(name).stem if name else "", status="error", error=msg)


def _read_bytes(data: bytes) -> RawScan | Scan:
    import tempfile

    from .io import read  # noqa: PLC0415

    import dataclasses
    import hashlib

    from .containers import SourceInfo  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="nii-") as d:
        p = Path(d) / "upload"
        p.write_bytes(data)
        scan = read(p)
    fmt = scan.source.format if scan.source else "?"
    return dataclasses.replace(scan, source=SourceInfo("<bytes>", hashlib.sha256(data).hexdigest(), fmt))
