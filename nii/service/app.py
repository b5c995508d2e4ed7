"""The HTTP service behind ``nii serve`` (FastAPI).

Endpoints
---------
``POST /v1/scans``             upload one scan file (raw body, ``application/octet-stream``);
                               answers the result (``?wait=false``: 202 and poll)
``GET  /v1/scans/{id}``        the result (report) of an upload
``GET  /v1/scans/{id}/image``  its annotated operator image (PNG)
``GET  /healthz``              liveness/readiness
``GET  /metrics``              Prometheus text format

Scans are processed by a fixed pool of worker threads sharing one warmed-up
:class:`~nii.pipeline.Pipeline`. At most ``workers + queue_size`` scans are accepted at a time;
beyond that an upload is answered ``503`` with ``Retry-After`` at once, before its body is read.
Uploads larger than ``max_upload_bytes`` get ``413``. When a token is configured every ``/v1``
route and ``/metrics`` need ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures as _cf
import contextlib
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from .._version import __version__
from ..errors import (
    CalibrationError,
    InvalidParameterError,
    NiiError,
    UnsupportedFormatError,
)
from .metrics import CONTENT_TYPE, Counter, Gauge, Histogram, Registry

__all__ = ["Engine", "ServiceConfig", "check_bind", "create_app", "openapi_spec"]

logger = logging.getLogger(__name__)

_ID_RE = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class ServiceConfig:
    """Settings of the HTTP service.

    Parameters
    ----------
    model, profile, calibration, far
        As for :class:`nii.Pipeline` (``model=False``: no detection).
    workers : int
        Scans processed at the same time (threads sharing one pipeline).
    queue_size : int
        Scans accepted and waiting beyond those in progress; more are refused with 503.
    max_upload_bytes : int
        Largest accepted upload; larger ones get 413.
    data_dir : path, optional
        Where results are kept (``<id>/scan.json``, ``<id>/scan.png``); default: a temporary
        folder removed at shutdown.
    token : str, optional
        Bearer token required on ``/v1`` routes and ``/metrics``.
    formats : tuple of str
        Outputs written per scan (``json`` always).
    max_results : int
        Results remembered (oldest are forgotten and deleted beyond this).
    """

    model: Any = None
    profile: str | None = None
    calibration: Any = None
    far: float | str | None = None
    workers: int = 1
    queue_size: int = 8
    max_upload_bytes: int = 256 * 1024 * 1024
    data_dir: str | None = None
    token: str | None = None
    formats: tuple[str, ...] = ("json", "png")
    max_results: int = 10000

    def __post_init__(self) -> None:
        if int(self.workers) < 1:
            raise InvalidParameterError(f"workers must be >= 1, got {self.workers}")
        if int(self.queue_size) < 0:
            raise InvalidParameterError(f"queue_size must be >= 0, got {self.queue_size}")
        if int(self.max_upload_bytes) < 1:
            raise InvalidParameterError(f"max_upload_bytes must be >= 1, got {self.max_upload_bytes}")
        if self.token is not None and len(self.token) < 16:
            raise InvalidParameterError("token must be at least 16 characters")
        if int(self.max_results) < 1:
            raise InvalidParameterError(f"max_results must be >= 1, got {self.max_results}")
        from ..outputs import _check_formats

        fm = _check_formats(self.formats)
        object.__setattr__(self, "formats", fm if "json" in fm else (*fm, "json"))


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond the loopback interface without a token (InvalidParameterError)."""
    if token:
        return
    if host == "localhost":
        return
    try:
        loop = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loop = False
    if not loop:
        raise InvalidParameterError(
            f"--host {host}: serving beyond localhost needs a token (--token or NII_TOKEN), none was given"
        )


class _Job:
    __slots__ = ("alarm", "created", "error", "filename", "future", "http_status", "id", "report", "status")

    def __init__(self, job_id: str, filename: str | None) -> None:
        self.id = job_id
        self.status = "queued"
        self.error: str | None = None
        self.http_status = 202
        self.report: dict[str, Any] | None = None
        self.created = time.monotonic()
        self.filename = filename
        self.future: Any = None
        self.alarm: bool | None = None


def _status_for(exc: NiiError) -> int:
    if isinstance(exc, UnsupportedFormatError):
        return 415
    if isinstance(exc, CalibrationError):
        return 422
    return 422


class Engine:
    """The processing side of the service: pipeline, worker pool, admission control, metrics, results."""

    def __init__(self, config: ServiceConfig, pipeline: Any = None) -> None:
        self.config = config
        self.pipeline = pipeline
        self._own_dir = config.data_dir is None
        self.data_dir = Path(config.data_dir) if config.data_dir is not None else Path(tempfile.gettempdir())
        self._pool: _cf.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._accepted = 0  # queued + running
        self._running = 0
        self._jobs: collections.OrderedDict[str, _Job] = collections.OrderedDict()
        self._recent_s: collections.deque[float] = collections.deque(maxlen=50)
        self.capacity = int(config.workers) + int(config.queue_size)
        reg = self.registry = Registry()
        self.m_scans = reg.add(Counter("nii_scans_total", "Scans processed, by outcome.", ("status",), initial=[("ok",), ("error",)]))
        self.m_alarms = reg.add(Counter("nii_alarms_total", "Scans with at least one detection (alarm)."))
        self.m_detections = reg.add(Counter("nii_detections_total", "Detections raised, by class.", ("class",)))
        self.m_rejected = reg.add(Counter(
            "nii_requests_rejected_total", "Uploads refused before processing, by reason.", ("reason",),
            initial=[("queue_full",), ("too_large",), ("unauthorized",), ("bad_request",)],
        ))
        self.m_bytes = reg.add(Counter("nii_upload_bytes_total", "Bytes of accepted uploads."))
        self.m_latency = reg.add(Histogram("nii_scan_latency_seconds", "Time from upload received to result (queue wait included)."))
        self.m_queue_wait = reg.add(Histogram("nii_queue_wait_seconds", "Time an accepted scan waited for a worker."))
        self.m_stage = reg.add(Histogram(
            "nii_stage_latency_seconds", "Time per pipeline stage.", ("stage",),
            initial=[("read",), ("normalize",), ("detect",), ("write",)],
        ))
        reg.add(Gauge("nii_queue_depth", "Accepted scans waiting for a worker.", lambda: self.queue_depth))
        reg.add(Gauge("nii_scans_in_progress", "Scans being processed now.", lambda: self._running))
        reg.add(Gauge("nii_queue_capacity", "Scans accepted at most at a time (workers + queue).", lambda: self.capacity))
        reg.add(Gauge("nii_workers", "Worker threads.", lambda: int(config.workers)))
        self._build_info = reg.add(Gauge("nii_build_info", "nii version and model of this service.", lambda: 1,
                                         labels={"version": __version__, "model_sha256": ""}))

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Create the results folder and the workers; build the pipeline unless one was given."""
        if self._own_dir:
            self.data_dir = Path(tempfile.mkdtemp(prefix="nii-serve-"))
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        self._pool = _cf.ThreadPoolExecutor(max_workers=int(self.config.workers), thread_name_prefix="nii-serve")
        if self.pipeline is None:
            from ..pipeline import Pipeline

            c = self.config
            self.pipeline = Pipeline(profile=c.profile, calibration=c.calibration, model=c.model, far=c.far)
        self._build_info._label_values = (__version__, getattr(self.pipeline, "model_hash", None) or "")

    def stop(self) -> None:
        """Finish the scans accepted, then release the workers (and the temporary results folder)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- admission -------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        with self._lock:
            return max(0, self._accepted - self._running)

    def try_admit(self) -> bool:
        with self._lock:
            if self._accepted >= self.capacity:
                return False
            self._accepted += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._accepted -= 1

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the queue ahead divided among the workers."""
        with self._lock:
            mean = sum(self._recent_s) / len(self._recent_s) if self._recent_s else 1.0
            ahead = self._accepted
        return int(min(120, max(1, math.ceil(ahead * mean / max(1, int(self.config.workers))))))

    # -- jobs ------------------------------------------------------------------------------

    def new_job(self, filename: str | None) -> _Job:
        job = _Job(uuid.uuid4().hex, filename)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self.config.max_results:
                old_id, _ = self._jobs.popitem(last=False)
                shutil.rmtree(self.data_dir / old_id, ignore_errors=True)
        return job

    def get(self, job_id: str) -> _Job | None:
        if not _ID_RE.fullmatch(job_id):
            return None
        with self._lock:
            return self._jobs.get(job_id)

    def submit(self, job: _Job, data: bytes, received: float) -> _cf.Future[None]:
        if self._pool is None:
            raise RuntimeError("the service engine is not started")
        self.m_bytes.inc(len(data))
        fut = self._pool.submit(self._work, job, data, received)
        job.future = fut
        return fut

    def _work(self, job: _Job, data: bytes, received: float) -> None:
        from ..outputs import write_outputs

        with self._lock:
            self._running += 1
        self.m_queue_wait.observe(time.monotonic() - received)
        job.status = "processing"
        try:
            try:
                res = self.pipeline.process(data)
                t0 = time.perf_counter()
                paths = write_outputs(res, self.data_dir / job.id, formats=self.config.formats, stem="scan")
                t_write = time.perf_counter() - t0
                report = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))
                if job.filename:
                    report["source"]["path"] = job.filename
            except NiiError as exc:
                job.error = str(exc)
                job.http_status = _status_for(exc)
                job.status = "error"
                self.m_scans.inc(status="error")
                return
            except Exception as exc:  # a bug or resource failure must not kill the worker
                logger.exception("scan %s failed", job.id)
                job.error = f"internal error: {type(exc).__name__}: {exc}"
                job.http_status = 500
                job.status = "error"
                self.m_scans.inc(status="error")
                return
            for stage in ("read", "normalize", "detect"):
                if stage in res.timings_ms:
                    self.m_stage.observe(res.timings_ms[stage] / 1e3, stage=stage)
            self.m_stage.observe(t_write, stage="write")
            for d in report["detections"]:
                self.m_detections.inc(**{"class": d["class"]})
            job.alarm = bool(report["alarm"])
            if job.alarm:
                self.m_alarms.inc()
            job.report = report
            job.http_status = 200
            job.status = "ok"
            self.m_scans.inc(status="ok")
        finally:
            elapsed = time.monotonic() - received
            self.m_latency.observe(elapsed)
            with self._lock:
                self._running -= 1
                self._accepted -= 1
                self._recent_s.append(elapsed)

    def view(self, job: _Job) -> dict[str, Any]:
        links = {"self": f"/v1/scans/{job.id}"}
        if job.status == "ok" and "png" in self.config.formats:
            links["image"] = f"/v1/scans/{job.id}/image"
        return {"id": job.id, "status": job.status, "alarm": job.alarm, "error": job.error, "report": job.report, "links": links}


# --------------------------------------------------------------------------------------------
# the FastAPI application
# --------------------------------------------------------------------------------------------


class ScanResult(BaseModel):
    """The state and result of one uploaded scan (``report``: schema ``nii-scan-report/1``)."""

    id: str
    status: str
    alarm: bool | None = None
    error: str | None = None
    report: dict[str, Any] | None = None
    links: dict[str, str]


class Problem(BaseModel):
    """An error answer."""

    detail: str


class Health(BaseModel):
    """The ``/healthz`` answer."""

    status: str
    version: str
    model_sha256: str | None = None
    workers: int
    queue_depth: int
    queue_capacity: int



def create_app(config: ServiceConfig | None = None, *, pipeline: Any = None):
    """Build the FastAPI application (the pipeline is built at startup unless given)."""
    config = config or ServiceConfig()
    engine = Engine(config, pipeline)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await asyncio.to_thread(engine.start)
        try:
            yield
        finally:
            await asyncio.to_thread(engine.stop)

    app = FastAPI(
        title="nii scan service",
        version=__version__,
        description="Wildlife-contraband detection for customs X-ray scans: upload a scan, get flagged results.",
        lifespan=lifespan,
    )
    app.state.engine = engine

    def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)

    class _Unauthorized(Exception):
        pass

    @app.exception_handler(_Unauthorized)
    async def _unauth(request: Request, exc: _Unauthorized):
        engine.m_rejected.inc(reason="unauthorized")
        return problem(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    bearer = HTTPBearer(auto_error=False, description="Needed when the service has a token (always beyond localhost).")

    async def require_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if config.token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), config.token.encode()):
            raise _Unauthorized()

    err = {"model": Problem}

    @app.post(
        "/v1/scans",
        response_model=ScanResult,
        status_code=200,
        dependencies=[Depends(require_token)],
        summary="Upload one scan file and get its result",
        responses={
            202: {"model": ScanResult, "description": "Accepted (wait=false); poll the self link"},
            400: err, 401: err, 411: err, 413: err, 415: err, 422: err, 500: err,
            503: {"model": Problem, "description": "Queue full; retry after the Retry-After header's seconds"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": "The bytes of one scan file in a single-file format nii reads (nii HDF5, DICOS, TIFF, ...).",
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def upload_scan(
        request: Request,
        wait: bool = Query(True, description="Answer with the result (true) or at once with 202 (false)"),
        filename: str | None = Query(None, max_length=255, description="Original file name, recorded in the report"),
    ):
        received = time.monotonic()
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                engine.m_rejected.inc(reason="bad_request")
                return problem(400, f"Content-Length {declared!r} is not an integer")
            if n > config.max_upload_bytes:
                engine.m_rejected.inc(reason="too_large")
                return problem(413, f"upload of {n} bytes exceeds the limit of {config.max_upload_bytes} bytes")
        ctype = request.headers.get("content-type", "application/octet-stream").split(";")[0].strip().lower()
        if ctype.startswith("multipart/") or ctype in ("application/x-www-form-urlencoded", "application/json", "text/plain"):
            engine.m_rejected.inc(reason="bad_request")
            return problem(415, f"send the scan file itself as the body with Content-Type application/octet-stream, not {ctype}")
        if not engine.try_admit():
            engine.m_rejected.inc(reason="queue_full")
            return problem(503, f"queue full ({engine.capacity} scans accepted); retry later",
                           {"Retry-After": str(engine.retry_after())})
        submitted = False
        try:
            chunks: list[bytes] = []
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > config.max_upload_bytes:
                    engine.m_rejected.inc(reason="too_large")
                    return problem(413, f"upload exceeds the limit of {config.max_upload_bytes} bytes")
                chunks.append(chunk)
            if size == 0:
                engine.m_rejected.inc(reason="bad_request")
                return problem(400, "empty body: send the bytes of one scan file")
            job = engine.new_job(filename)
            fut = engine.submit(job, b"".join(chunks), received)
            submitted = True
        finally:
            if not submitted:
                engine.release()
        if not wait:
            return JSONResponse(engine.view(job), status_code=202, headers={"Location": f"/v1/scans/{job.id}"})
        await asyncio.wrap_future(fut)
        if job.status == "ok":
            return JSONResponse(engine.view(job), status_code=200, headers={"Location": f"/v1/scans/{job.id}"})
        return problem(job.http_status, job.error or "failed")

    @app.get("/v1/scans/{scan_id}", response_model=ScanResult, dependencies=[Depends(require_token)],
             summary="The state and result of an uploaded scan",
             responses={202: {"model": ScanResult, "description": "Still queued or processing"}, 401: err, 404: err})
    async def get_scan(scan_id: str):
        job = engine.get(scan_id)
        if job is None:
            return problem(404, f"no scan {scan_id!r}")
        code = 202 if job.status in ("queued", "processing") else 200
        return JSONResponse(engine.view(job), status_code=code)

    @app.get("/v1/scans/{scan_id}/image", dependencies=[Depends(require_token)], summary="The annotated operator image (PNG)",
             response_class=FileResponse,
             responses={200: {"content": {"image/png": {}}, "description": "PNG image"}, 401: err, 404: err, 409: err})
    async def get_image(scan_id: str):
        job = engine.get(scan_id)
        if job is None:
            return problem(404, f"no scan {scan_id!r}")
        if job.status != "ok":
            return problem(409, f"scan {scan_id} is {job.status}: no image")
        path = engine.data_dir / job.id / "scan.png"
        if not path.is_file():
            return problem(404, f"scan {scan_id} has no image (formats {','.join(config.formats)})")
        return FileResponse(path, media_type="image/png")

    @app.get("/healthz", response_model=Health, summary="Liveness and readiness")
    async def healthz():
        ready = engine.pipeline is not None
        return JSONResponse(
            {"status": "ok" if ready else "starting", "version": __version__,
             "model_sha256": getattr(engine.pipeline, "model_hash", None), "workers": int(config.workers),
             "queue_depth": engine.queue_depth, "queue_capacity": engine.capacity},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", dependencies=[Depends(require_token)], response_class=PlainTextResponse,
             summary="Prometheus metrics", responses={200: {"content": {"text/plain": {}}}, 401: err})
    async def metrics():
        return PlainTextResponse(engine.registry.render(), media_type=CONTENT_TYPE)

    return app


def openapi_spec() -> dict[str, Any]:
    """The OpenAPI document of the service (what ``docs/openapi.json`` holds)."""
    return create_app(ServiceConfig(model=False)).openapi()


def write_openapi(path: str | os.PathLike) -> Path:
    """Write :func:`openapi_spec` as indented JSON (``python -m nii.service.app docs/openapi.json``)."""
    from .._atomic import atomic_write_text

    return atomic_write_text(path, json.dumps(openapi_spec(), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":  # pragma: no cover
    import sys

    write_openapi(sys.argv[1] if len(sys.argv) > 1 else "docs/openapi.json")
