"""``nii watch IN_DIR -o OUT_DIR``: the scanner-station hot folder.

Takes each complete scan dropped into ``IN_DIR`` (atomic rename, or size stable for ``--settle``
seconds), processes it exactly once (SQLite journal, idempotent outputs), writes results to
``OUT_DIR`` and moves the input to ``done/`` or ``quarantine/`` (with ``<name>.reason.json``).
Survives ``kill -9``: a restart finishes what was in hand. SIGTERM or Ctrl-C finishes the scan in
hand and exits 0.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("watch", help="hot folder: process each scan dropped into a folder exactly once")
    p.add_argument("in_dir", metavar="IN_DIR", help="folder the scanner drops scans into")
    p.add_argument("-o", "--out", required=True, metavar="OUT_DIR", help="results folder")
    p.add_argument("--formats", default=None, help="comma-separated outputs per scan: json, png, h5, tdr (default: all; json always)")
    p.add_argument("--model", default=None, help="detector model folder (default: the shipped model)")
    p.add_argument("--no-detect", action="store_true", help="normalise only, do not run the detector")
    p.add_argument("--far", default=None, help="operating point as image-level false-alarm rate, e.g. 1%% or 0.005")
    p.add_argument("--profile", default=None, help="scanner profile this station serves (scans without one get it)")
    p.add_argument("--calibration", default=None, help="calibration set file (default: shipped per profile)")
    p.add_argument("--done", default=None, metavar="DIR", help="where finished inputs go (default IN_DIR/done)")
    p.add_argument("--quarantine", default=None, metavar="DIR", help="where refused inputs go (default IN_DIR/quarantine)")
    p.add_argument("--journal", default=None, metavar="FILE", help="SQLite journal (default IN_DIR/.nii-journal.sqlite)")
    p.add_argument("--settle", type=float, default=2.0, metavar="S", help="seconds a file must stay unchanged before it is taken (default 2)")
    p.add_argument("--poll", type=float, default=0.5, metavar="S", help="seconds between folder listings (default 0.5)")
    p.add_argument("--max-attempts", type=int, default=3, help="attempts (crashes included) before a scan is quarantined (default 3)")
    p.add_argument("--once", action="store_true", help="process what is in the folder, then exit")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import signal
    import threading

    from ..pipeline import Pipeline
    from ..station import Watcher
    from ._common import stderr_console

    err = stderr_console()
    stop = threading.Event()

    def _stop(signum, frame):
        if not stop.is_set():
            err.print(f"[yellow]{signal.Signals(signum).name}: finishing the scan in hand, then exiting[/]")
        stop.set()

    old = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        pipeline = Pipeline(profile=args.profile, calibration=args.calibration, model=False if args.no_detect else args.model, far=args.far)
        formats = None if args.formats is None else [f.strip() for f in args.formats.split(",") if f.strip()]
        watcher = Watcher(
            args.in_dir, args.out, pipeline=pipeline, formats=formats, done_dir=args.done, quarantine_dir=args.quarantine,
            journal=args.journal, settle_s=args.settle, poll_s=args.poll, max_attempts=args.max_attempts,
        )
        err.print(f"watching {args.in_dir} → {args.out} (journal {watcher.journal.path})", highlight=False)
        try:
            stats = watcher.run(stop=stop, once=args.once)
        finally:
            watcher.close()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    err.print(
        f"{stats.done} done, {stats.quarantined} quarantined, {stats.alarms} with alarms, {stats.recovered} resumed after a restart",
        highlight=False,
    )
    return 0
