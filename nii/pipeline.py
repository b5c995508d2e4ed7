"""The scan pipeline: read → normalise → detect → results, as one reusable object.

:class:`Pipeline` loads the calibration and the detector model once, compiles the Numba kernels
at construction (a warm-up on a tiny synthetic scan), and then processes any number of scans,
from any number of threads. :meth:`Pipeline.process` raises :class:`~nii.errors.NiiError` on bad
input, while :meth:`Pipeline.process_many` never raises for a single bad scan and returns an
error result for it instead, so that a batch goes on.

Examples
--------
>>> from nii import Pipeline                                  # doctest: +SKIP
>>> pipe = Pipeline(model="detectors/demo-tiny")              # doctest: +SKIP
>>> res = pipe.process("sample_scans/01_luggage_tusk.h5")     # doctest: +SKIP
>>> res.alarm, [d.class_name for d in res.detections]         # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures as _cf
import dataclasses
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .alarms import count_alarms
from ._version import __version__
from .containers import EnergyChannel, RawScan, Scan
from .errors import (
    CalibrationMismatchError,
    InvalidParameterError,
    ModelError,
    NiiError,
)

__all__ = ["Pipeline", "Result", "result_record", "warmup_scan"]

logger = logging.getLogger(__name__)

#: Profile used for the warm-up scan when the pipeline is not tied to one.
_WARMUP_PROFILE = "dual_kvp_80_140"


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
        """True when the detector flagged an object (material anomalies alone do not alarm; see :mod:`nii.alarms`)."""
        from .alarms import is_alarm

        return any(is_alarm(d.to_dict()) for d in self.detections)

    @property
    def classes(self) -> list[str]:
        """Distinct classes flagged, in order of first detection."""
        out: list[str] = []
        for d in self.detections:
            name = d.to_dict()["class"]
            if name not in out:
                out.append(name)
        return out

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
    """Read, normalise and run the detector on scans; build once, call many times.

    Construction loads the detector model, resolves the calibration and runs the whole chain once
    on a tiny synthetic scan so that the Numba kernels are compiled (or loaded from their cache)
    before the first real scan arrives. One instance may be shared by many threads:
    :meth:`process` keeps no per-call state on the object, onnxruntime sessions and Numba
    kernels are safe to call concurrently, and the lazily built calibration cache is guarded by
    a lock.

    Parameters
    ----------
    profile : str, optional
        Scanner-profile id this pipeline serves (``nii simulate --list``). Scans that carry no
        profile get this one; a scan of another profile is refused
        (:class:`~nii.errors.CalibrationMismatchError`). None: each scan's own profile.
    calibration : CalibrationSet, MaterialTable or path, optional
        Scanner/material calibration; default: the shipped calibration of each scan's profile.
    model : path, str, False or None
        Detector model folder (or the name of a folder under ``detectors/``). None: the default
        model when one is installed (else no detection, noted in each result). False: do not
        detect.
    far : float or str, optional
        Operating point as image-level false-alarm rate (``0.01`` or ``"1%"``); default: the
        model's own default.
    warmup : bool
        Compile kernels and run the model once at construction (default True).

    Examples
    --------
    >>> pipe = Pipeline(model="detectors/demo-tiny")  # doctest: +SKIP
    >>> for res in pipe.process_many(["a.h5", "b.h5"], workers=2):  # doctest: +SKIP
    ...     print(res.scan_id, res.status, res.alarm)
    """

    def __init__(
        self,
        profile: str | None = None,
        calibration: Any = None,
        model: Any = None,
        *,
        far: float | str | None = None,
        warmup: bool = True,
    ) -> None:
        self.profile = None
        if profile is not None:
            from .profiles import load_profile

            self.profile = load_profile(profile).id
        self.calibration = calibration
        self.far = far
        self.notes: list[str] = []
        self.detector = None
        self._lock = threading.Lock()
        self._cal_cache: dict[tuple[Any, ...], Any] = {}
        if isinstance(calibration, (str, os.PathLike)):
            from .normalization import resolve_calibration

            self.calibration = resolve_calibration(calibration, profile=self.profile, energies=None)
        if model is not False:
            from .detect import Detector

            try:
                self.detector = Detector.load(model)
            except ModelError as exc:
                if model is not None:
                    raise
                self.notes.append(f"no default detector model: {exc.reason}; detections are empty")
        # the provenance step of every detection: also validates the operating point now, not per scan
        self._detect_step = self.detector.describe(far) if self.detector is not None else None
        for n in self.notes:
            logger.info(n)
        self.warmup_ms: float | None = None
        if warmup:
            t0 = time.perf_counter()
            self._warmup()
            self.warmup_ms = (time.perf_counter() - t0) * 1e3
            logger.info("pipeline warm-up took %.0f ms", self.warmup_ms)

    def __repr__(self) -> str:
        return f"Pipeline(profile={self.profile!r}, detector={self.detector!r})"

    @property
    def model_hash(self) -> str | None:
        """SHA-256 of the detector network, or None without a detector."""
        return self.detector.model_hash if self.detector is not None else None

    # -- internals ------------------------------------------------------------------------

    def _warmup(self) -> None:
        raw = warmup_scan(self.profile or _WARMUP_PROFILE)
        try:
            self.process(raw)
        except NiiError as exc:
            if self.profile is not None or self.calibration is not None:
                raise
            # No shipped calibration for the warm-up profile: kernels compile on the first scan.
            logger.warning("pipeline warm-up skipped: %s", exc)

    def _check_profile(self, scan: RawScan | Scan) -> RawScan | Scan:
        if self.profile is None:
            return scan
        if scan.profile is None:
            return dataclasses.replace(scan, profile=self.profile)
        if scan.profile != self.profile:
            where = scan.source.path if scan.source else scan.scan_id
            raise CalibrationMismatchError(f"{where}: scan is from profile {scan.profile!r}, this pipeline serves {self.profile!r}")
        return scan

    def _normalise(self, scan: RawScan | Scan) -> Scan:
        from .normalization import normalize

        cal = self.calibration
        if cal is None and isinstance(scan, RawScan) and scan.profile is not None:
            # resolve (and cache) the shipped calibration once per profile and energy set
            key = (scan.profile, scan.energies)
            with self._lock:
                cal = self._cal_cache.get(key)
                if cal is None:
                    from .normalization import resolve_calibration

                    try:
                        cal = resolve_calibration(None, profile=scan.profile, energies=scan.energies)
                    except NiiError:
                        cal = None  # let normalize() raise its own, file-naming error
                    else:
                        self._cal_cache[key] = cal
        return normalize(scan, calibration=cal)

    # -- public ---------------------------------------------------------------------------

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
            from .io import read

            scan_in = read(source)
            src = os.fspath(source)
        else:
            raise InvalidParameterError(f"source must be a path, bytes, RawScan or Scan, got {type(source).__name__}")
        scan_in = self._check_profile(scan_in)
        t["read"] = (time.perf_counter() - t0) * 1e3
        t1 = time.perf_counter()
        scan = self._normalise(scan_in)
        t["normalize"] = (time.perf_counter() - t1) * 1e3
        detections: tuple[Any, ...] = ()
        if self.detector is not None:
            t2 = time.perf_counter()
            detections = tuple(self.detector.detect(scan, far=self.far))
            t["detect"] = (time.perf_counter() - t2) * 1e3
            scan = scan.with_step("detect", self._detect_step, model_hash=self.detector.model_hash)
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

    def process_safe(self, source: str | os.PathLike | bytes | RawScan | Scan) -> Result:
        """:meth:`process`, but a NiiError becomes an error :class:`Result` (naming the input)."""
        try:
            return self.process(source)
        except NiiError as exc:
            name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
            msg = str(exc) if exc.path is not None or name is None else f"{name}: {exc}"
            return Result(source=name, scan_id=Path(name).stem if name else "", status="error", error=msg)

    def process_many(
        self,
        sources: Iterable[str | os.PathLike | bytes | RawScan | Scan],
        *,
        workers: int = 1,
    ) -> Iterator[Result]:
        """Process scans, yielding one result per source in input order.

        A bad scan yields an error result, never an exception. With ``workers > 1`` scans are
        processed by that many threads sharing this pipeline; at most ``2 * workers`` scans are
        in flight, so memory stays bounded however long ``sources`` is.
        """
        workers = int(workers)
        if workers < 1:
            raise InvalidParameterError(f"workers must be >= 1, got {workers}")
        if workers == 1:
            for src in sources:
                yield self.process_safe(src)
            return
        with _cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nii-pipeline") as pool:
            pending: deque[_cf.Future[Result]] = deque()
            for src in sources:
                pending.append(pool.submit(self.process_safe, src))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


def warmup_scan(profile: str, *, height: int = 64, width: int = 96) -> RawScan:
    """A tiny, deterministic raw scan of ``profile`` (air, a steel-like block, an organic block).

    Used to compile kernels and load the model before the first real scan; it carries no
    randomness so that warm-up is reproducible.
    """
    from .profiles import load_profile

    p = load_profile(profile)
    e = p.n_energies
    dark = np.asarray(p.dark_level, np.float32)[:, None] * np.ones((e, height), np.float32)
    # air_level is the open-beam signal as a fraction of the ADC full scale
    air = (np.asarray(p.air_level, np.float32) * (p.full_scale - np.asarray(p.dark_level, np.float32)))[:, None] * np.ones((e, height), np.float32)
    trans = np.ones((e, height, width), np.float32)
    trans[:, height // 4 : height // 2, width // 6 : width // 2] = np.linspace(0.15, 0.3, e, dtype=np.float32)[:, None, None]
    trans[:, height // 2 : 3 * height // 4, width // 2 : 5 * width // 6] = np.linspace(0.45, 0.6, e, dtype=np.float32)[:, None, None]
    counts = dark[..., None] + air[..., None] * trans
    dtype = np.uint16 if p.full_scale <= np.iinfo(np.uint16).max else np.uint32
    counts = np.clip(np.rint(counts), 0, p.full_scale).astype(dtype)
    return RawScan(
        counts=counts,
        energies=tuple(EnergyChannel(c.label, c.kvp) for c in p.energies),
        pixel_pitch_mm=p.pixel_pitch_mm,
        dark=dark,
        air=air,
        profile=p.id,
        scan_id="nii-warmup",
    )


def _read_bytes(data: bytes) -> RawScan | Scan:
    """Read a scan from the bytes of a single-file format (through a private temporary file)."""
    import hashlib
    import tempfile

    from .containers import SourceInfo
    from .errors import InvalidDataError
    from .io import read

    if not data:
        raise InvalidDataError("<bytes>: empty input, expected the bytes of a scan file")
    with tempfile.TemporaryDirectory(prefix="nii-") as d:
        p = Path(d) / "upload"
        p.write_bytes(data)
        try:
            scan = read(p)
        except NiiError as exc:
            # name the upload, not the private temporary file
            reason = exc.reason.replace(str(p), "<bytes>")
            raise type(exc)(reason, path="<bytes>") from exc
    fmt = scan.source.format if scan.source else "?"
    return dataclasses.replace(scan, source=SourceInfo("<bytes>", hashlib.sha256(data).hexdigest(), fmt))


def result_record(result: Result, outputs: dict[str, str] | None = None) -> dict[str, Any]:
    """A small, picklable summary of a result: the ``nii scan --json`` line plus table fields.

    ``record["json"]`` is :meth:`Result.to_dict` without provenance; ``outputs`` lists the files
    written. Used by ``nii scan`` both locally and on Dask workers, so the two report alike.
    """
    d = result.to_dict()
    d.pop("provenance", None)
    notes = list(d.get("notes", []))
    if outputs:
        notes += [f"wrote {p}" for p in outputs.values()]
    d["notes"] = notes
    return {
        "json": d,
        "source": result.source,
        "scan_id": result.scan_id,
        "ok": result.ok,
        "error": result.error,
        "alarm": result.alarm if result.ok else False,
        "shape": list(result.scan.shape) if result.scan is not None else None,
        "classes": sorted(set(result.classes)),
        "n_detections": len(result.detections),
        "n_alarm_flags": count_alarms(d.to_dict() for d in result.detections),
        "total_ms": float(result.timings_ms.get("total", 0.0)),
        "outputs": dict(outputs or {}),
    }
