"""The review web app (FastAPI): scan queue, viewer layers, decisions.

Security model
--------------
* With a token configured, every ``/api`` route except ``/api/config`` and ``/api/login``
  needs it: ``Authorization: Bearer <token>`` or the HttpOnly cookie set by ``/api/login``;
  otherwise 401. Tokens are compared in constant time.
* Without a token (only allowed on a loopback address, see :mod:`nii.cli.review`), reads are
  open to the local machine and a decision without an operator name is refused with 401.
* Requests must name an allowed ``Host`` (``127.0.0.1``/``localhost`` when bound to loopback,
  against DNS rebinding); a cross-origin ``Origin`` is refused (403) and decisions must be
  ``application/json`` (415), so another web page cannot post decisions.
* Scans are addressed by key, never by path; files come only from the names a report lists,
  resolved inside the results folder (:func:`nii.review.results.safe_join`), opened read-only.
"""


import hmac
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import FileAccessError, InvalidParameterError, NiiError
from .results import LAYERS, ResultsIndex, layer_png, thumbnail_png
from .store import DecisionStore

__all__ = ["create_app", "COOKIE"]

logger = logging.getLogger(__name__)

COOKIE = "nii_review_token"
_STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8", "index.html": "text/html; charset=utf-8"}
_OPEN_API = ("/api/config", "/api/login", "/api/logout")
_CSP = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"


def _static(name: str) -> bytes:
    return resources.files("nii.review").joinpath("static", name).read_bytes()


def create_app(
    results_dir: str | os.PathLike,
    *,
    db_path: str | os.PathLike | None = None,
    token: str | None = None,
    allowed_hosts: tuple[str, ...] | None = ("127.0.0.1", "localhost", "::1"),
):
    """Build the FastAPI app serving ``results_dir``.

    Parameters
    ----------
    results_dir : path
        Folder written by ``nii scan`` (read-only for the app).
    db_path : path, optional
        SQLite decision log; default ``<results_dir>/nii-review.sqlite``.
    token : str, optional
        Shared secret required by every API route (see module docstring).
    allowed_hosts : tuple of str or None
        Host names accepted in the ``Host`` header; None accepts any (only with a token).
    """
    from fastapi import FastAPI, HTTPException, Request  # noqa: PLC0415
    from fastapi.responses import JSONResponse, Response  # noqa: PLC0415
    from pydantic import BaseModel, Field  # noqa: PLC0415

    if token is not None and len(token) < 8:
        raise InvalidParameterError("token: use at least 8 characters")
    if allowed_hosts is None and not token:
        raise InvalidParameterError("allowed_hosts=None (any host) needs a token")
    index = ResultsIndex(results_dir)
    db = Path(db_path) if db_path is not None else index.root / "nii-review.sqlite"
    store = DecisionStore(db)
    store.set_meta("results_dir", str(index.root))
    app = FastAPI(title="nii review", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.index = index
    app.state.store = store

    class DecisionIn(BaseModel):
        kind: str = Field(max_length=20)
        action: str = Field(max_length=20)
        operator: str | None = Field(default=None, max_length=200)
        detection_index: int | None = None
        label: str | None = Field(default=None, max_length=200)
        box: list[float] | None = Field(default=None, max_length=4)
        note: str | None = Field(default=None, max_length=5000)
        ref_id: int | None = None

    class LoginIn(BaseModel):
        token: str = Field(max_length=500)

    def authenticated(request: Request) -> bool:
        if not token:
            return True
        given = ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        elif COOKIE in request.cookies:
            given = request.cookies[COOKIE]
        return hmac.compare_digest(given.encode(), token.encode())

    @app.middleware("http")
    async def guard(request: Request, call_next):
        host = (request.headers.get("host") or "").strip()
        hostname = host.rsplit(":", 1)[0].strip("[]") if not host.startswith("[") else host[1:].split("]")[0]
        if allowed_hosts is not None and hostname not in allowed_hosts:
            return JSONResponse({"detail": f"host {host!r} not allowed"}, status_code=400)
        origin = request.headers.get("origin")
        if origin is not None and request.method not in ("GET", "HEAD"):
            if origin.split("://", 1)[-1] != host:
                return JSONResponse({"detail": "cross-origin request refused"}, status_code=403)
        path = request.url.path
        if path.startswith("/api/") and path not in _OPEN_API and not authenticated(request):
            return JSONResponse({"detail": "authentication required"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        if request.method == "POST" and request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"detail": "send application/json"}, status_code=415)
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["Referrer-Policy"] = "no-referrer"
        if path.startswith("/api/") and "cache-control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
        return response

    def entry_or_404(key: str):
        try:
            return index.get(key)
        except FileAccessError:
            index.refresh()
            try:
                return index.get(key)
            except FileAccessError:
                raise HTTPException(404, f"no scan {key!r}") from None

    def file_or_404(entry, kind: str) -> Path:
        try:
            return index.file(entry, kind)
        except FileAccessError as exc:
            raise HTTPException(404, exc.reason) from None

    # -- pages -------------------------------------------------------------------------------
    @app.get("/")
    def page() -> Response:
        return Response(_static("index.html"), media_type=_STATIC["index.html"], headers={"Cache-Control": "no-store"})

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in _STATIC or name == "index.html":
            raise HTTPException(404, "no such file")
        return Response(_static(name), media_type=_STATIC[name], headers={"Cache-Control": "no-cache"})

    # -- session -----------------------------------------------------------------------------
    @app.get("/api/config")
    def config(request: Request) -> dict[str, Any]:
        return {"version": __version__, "auth_required": bool(token), "authenticated": authenticated(request), "layers": list(LAYERS)}

    @app.post("/api/login")
    def login(body: LoginIn) -> Response:
        if not token:
            return JSONResponse({"ok": True, "auth_required": False})
        if not hmac.compare_digest(body.token.encode(), token.encode()):
            return JSONResponse({"detail": "wrong token"}, status_code=401)
        resp = JSONResponse({"ok": True})
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return resp

    @app.post("/api/logout")
    def logout() -> Response:
        resp = JSONResponse({"ok": True})
        resp.delete_cookie(COOKIE, path="/")
        return resp

    # -- scans -------------------------------------------------------------------------------
    @app.get("/api/scans")
    def scans(alarm: str | None = None, reviewed: str | None = None, cls: str | None = None, q: str | None = None) -> dict[str, Any]:
        index.refresh()
        states = store.states()
        out = []
        for e in index.scans():
            s = e.summary()
            st = states.get(e.key)
            s["verdict"] = st["verdict"]["action"] if st and st["verdict"] else None
            s["n_decided"] = len(st["detections"]) if st else 0
            if alarm in ("1", "true") and not s["alarm"] or alarm in ("0", "false") and s["alarm"]:
                continue
            if reviewed in ("1", "true") and s["verdict"] is None or reviewed in ("0", "false") and s["verdict"] is not None:
                continue
            if cls and cls not in s["classes"]:
                continue
            if q and q.lower() not in (s["scan_id"] or "").lower():
                continue
            out.append(s)
        # alarms first, then highest confidence, then newest
        out.sort(key=lambda s: (not s["alarm"], -(s["max_confidence"] or 0.0), str(s["acquired_at"] or s["processed_at"] or "")), reverse=False)
        classes = sorted({c for e in index.scans() for c in e.summary()["classes"]})
        return {"scans": out, "classes": classes, "total": len(index.scans())}

    @app.get("/api/scans/{key}")
    def scan(key: str) -> dict[str, Any]:
        e = entry_or_404(key)
        hist = store.history(e.key)
        st = store.state(e.key, hist)
        return {
            "key": e.key,
            "report": e.report,
            "report_sha256": e.report_sha256,
            "state": {
                "detections": {str(k): v for k, v in st["detections"].items()},
                "missed": st["missed"],
                "verdict": st["verdict"],
                "notes": st["notes"],
            },
            "history": hist,
        }

    @app.get("/api/scans/{key}/layers/{layer}.png")
    def layer(key: str, layer: str) -> Response:
        if layer not in LAYERS:
            raise HTTPException(404, f"no layer {layer!r}; layers: {', '.join(LAYERS)}")
        e = entry_or_404(key)
        try:
            if "h5" in (e.report.get("outputs") or {}):
                data = layer_png(file_or_404(e, "h5"), layer)
            elif layer == "color":
                data = file_or_404(e, "png").read_bytes()
            else:
                raise HTTPException(404, "this scan has no results HDF5; only the annotated image is available")
        except InvalidParameterError as exc:
            raise HTTPException(404, exc.reason) from None
        except NiiError as exc:
            raise HTTPException(500, str(exc)) from None
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})

    @app.get("/api/scans/{key}/thumb.png")
    def thumb(key: str) -> Response:
        e = entry_or_404(key)
        outs = e.report.get("outputs") or {}
        kind = "h5" if "h5" in outs else "png"
        try:
            data = thumbnail_png(file_or_404(e, kind))
        except NiiError as exc:
            raise HTTPException(500, str(exc)) from None
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})

    @app.get("/api/scans/{key}/annotated.png")
    def annotated(key: str) -> Response:
        e = entry_or_404(key)
        return Response(file_or_404(e, "png").read_bytes(), media_type="image/png")

    @app.post("/api/scans/{key}/decisions", status_code=201)
    def decide(key: str, body: DecisionIn) -> dict[str, Any]:
        e = entry_or_404(key)
        if not (body.operator or "").strip():
            raise HTTPException(401, "operator name required for decisions", headers={"WWW-Authenticate": "Operator"})
        try:
            return store.add(
                scan_key=e.key,
                scan_id=str(e.report.get("scan_id", e.key)),
                kind=body.kind,
                action=body.action,
                operator=body.operator or "",
                detection_index=body.detection_index,
                n_detections=len(e.report.get("detections", [])),
                label=body.label,
                box=body.box,
                note=body.note,
                ref_id=body.ref_id,
                report_sha256=e.report_sha256,
            )
        except InvalidParameterError as exc:
            raise HTTPException(422, exc.reason) from None

    @app.get("/api/scans/{key}/history")
    def history(key: str) -> list[dict[str, Any]]:
        e = entry_or_404(key)
        return store.history(e.key)

    return app
