"""``nii serve``: the HTTP scan service (``POST /v1/scans``, ``/healthz``, ``/metrics``).

Binds to 127.0.0.1 by default; binding beyond localhost needs a token (``--token`` or the
``NII_TOKEN`` environment variable), then sent by clients as ``Authorization: Bearer <token>``.
Needs the ``serve`` extra (fastapi, uvicorn).
"""

from __future__ import annotations

import argparse


def _size(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    num, unit = (t[:-1], t[-1]) if t and t[-1] in "KMG" else (t, "")
    try:
        value = float(num) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512M, 2G, 1048576)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return int(value)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="HTTP service: upload scans, get results; metrics for Prometheus")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; others need a token)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--token", default=None, help="bearer token required from clients (default: $NII_TOKEN)")
    p.add_argument("--workers", type=int, default=1, help="scans processed at the same time (default 1)")
    p.add_argument("--queue", type=int, default=8, help="scans waiting beyond those in progress before 503 (default 8)")
    p.add_argument("--max-upload", type=_size, default=256 << 20, metavar="SIZE", help="largest upload (default 256M)")
    p.add_argument("--data", default=None, metavar="DIR", help="keep results here (default: a temporary folder)")
    p.add_argument("--formats", default="json,png", help="outputs kept per scan (default json,png)")
    p.add_argument("--model", default=None, help="detector model folder (default: the shipped model)")
    p.add_argument("--no-detect", action="store_true", help="normalise only, do not run the detector")
    p.add_argument("--far", default=None, help="operating point as image-level false-alarm rate, e.g. 1%%")
    p.add_argument("--profile", default=None, help="scanner profile this service serves")
    p.add_argument("--calibration", default=None, help="calibration set file (default: shipped per profile)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import os

    from ..errors import InvalidParameterError

    try:
        import uvicorn

        from ..service.app import ServiceConfig, check_bind, create_app
    except ImportError as exc:
        raise InvalidParameterError(f"nii serve needs the 'serve' extra (pip install 'nii[serve]'): {exc}") from exc
    token = args.token or os.environ.get("NII_TOKEN") or None
    check_bind(args.host, token)
    config = ServiceConfig(
        model=False if args.no_detect else args.model,
        profile=args.profile,
        calibration=args.calibration,
        far=args.far,
        workers=args.workers,
        queue_size=args.queue,
        max_upload_bytes=args.max_upload,
        data_dir=args.data,
        token=token,
        formats=tuple(f.strip() for f in args.formats.split(",") if f.strip()),
    )
    app = create_app(config)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False, timeout_graceful_shutdown=60)
    return 0
