"""``nii review RESULTS_DIR``: serve the operator review web app for a results folder.

Binds to 127.0.0.1 by default. Listening on any other address needs a token (``--token`` or
the ``NII_REVIEW_TOKEN`` environment variable); without one the command refuses to start.
Decisions go to an append-only SQLite log (``--db``, default ``RESULTS_DIR/nii-review.sqlite``);
scan files are only read.
"""

from __future__ import annotations

import argparse

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("review", help="review web app: scan queue, viewer, operator decisions")
    p.add_argument("results", metavar="RESULTS_DIR", help="folder written by `nii scan -o`")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; others need --token)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 picks a free one)")
    p.add_argument("--token", default=None, help="access token required by the API (default: $NII_REVIEW_TOKEN)")
    p.add_argument("--db", default=None, help="decision database (default RESULTS_DIR/nii-review.sqlite)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from ..errors import InvalidParameterError, NiiError

    token = args.token or os.environ.get("NII_REVIEW_TOKEN") or None
    host = args.host.strip()
    loopback = host in _LOOPBACK or host.startswith("127.")
    if not loopback and not token:
        raise InvalidParameterError(
            f"--host {host}: refusing to listen on a non-loopback address without an access token; "
            "pass --token (or set NII_REVIEW_TOKEN) or use --host 127.0.0.1"
        )
    if not 0 <= args.port <= 65535:
        raise InvalidParameterError(f"--port must be 0..65535, got {args.port}")
    try:
        import uvicorn
    except ImportError as exc:
        raise NiiError("nii review needs the [serve] extra: pip install 'nii[serve]'") from exc
    from ..review.app import create_app
    from ._common import stderr_console

    results = Path(args.results)
    db = Path(args.db) if args.db else None
    if db is None and not os.access(results, os.W_OK):
        raise InvalidParameterError(f"{results}: results folder is read-only; pass --db PATH for the decision database")
    app = create_app(results, db_path=db, token=token, allowed_hosts=("127.0.0.1", "localhost", "::1") if loopback else None)
    n = len(app.state.index.scans())
    stderr_console().print(
        f"nii review: {n} scan(s) from {results} on http://{host if ':' not in host else '[' + host + ']'}:{args.port}/"
        + ("  (token required)" if token else ""),
        highlight=False,
    )
    uvicorn.run(app, host=host, port=args.port, log_level="warning", access_log=False, server_header=False)
    return 0
