"""``nii scan INPUT... -o OUT``: read, normalise and flag scans; write results; print a summary.

Inputs may be files, folders (walked recursively) or glob patterns. A bad input never stops the
batch: it is reported as ``status: "error"`` (with ``--json``) and listed at the end, and the
exit code is 1 when any input failed, 0 otherwise. ``--dask ADDRESS`` (or ``--dask local:N``)
runs the same job on a Dask cluster with identical outputs (:mod:`nii.distributed`).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan", help="process scans: normalise, detect, write results and a summary")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="scan files, folders or glob patterns")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="output folder")
    p.add_argument("--json", action="store_true", help="one JSON object per input on stdout (no table)")
    p.add_argument(
        "--formats",
        default=None,
        help="comma-separated outputs per scan: json, png, h5, tdr (default: all)",
    )
    p.add_argument("--model", default=None, help="detector model folder (default: the shipped model)")
    p.add_argument("--no-detect", action="store_true", help="normalise only, do not run the detector")
    p.add_argument("--far", default=None, help="operating point as image-level false-alarm rate, e.g. 1%% or 0.005")
    p.add_argument("--profile", default=None, help="scanner profile of the scans (those without one get it)")
    p.add_argument("--calibration", default=None, help="calibration set file (default: shipped per profile)")
    p.add_argument("--threads", type=int, default=1, help="scans processed at once in this process (default 1)")
    p.add_argument(
        "--dask",
        default=None,
        metavar="ADDRESS",
        help="run on a Dask cluster: scheduler address (tcp://host:8786), 'local' or 'local:N' workers (needs the dask extra)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from rich.table import Table

    from ..errors import InvalidParameterError, NiiError
    from ..outputs import FORMATS, output_stem, write_outputs
    from ..pipeline import Result, result_record
    from ._common import (
        emit_json,
        expand_inputs,
        progress,
        stderr_console,
        stdout_console,
    )

    formats = FORMATS if args.formats is None else tuple(f.strip() for f in args.formats.split(",") if f.strip())
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise InvalidParameterError(f"--formats: unknown {bad}; choose from {', '.join(FORMATS)}")
    if args.threads < 1:
        raise InvalidParameterError(f"--threads must be >= 1, got {args.threads}")
    out = Path(args.out)
    files, problems = expand_inputs(args.inputs)
    if not files and not problems:
        raise InvalidParameterError("no input files")
    settings = {
        "profile": args.profile,
        "calibration": args.calibration,
        "model": False if args.no_detect else args.model,
        "far": args.far,
    }
    records: list[dict] = []
    notes: list[str] = []
    info: dict = {}

    def emit(rec: dict) -> None:
        if args.json:
            emit_json(rec["json"])

    with progress(disable=args.json) as bar:
        task = bar.add_task("scanning" if args.dask is None else f"scanning on dask {args.dask}", total=len(files))
        if args.dask is not None:
            try:
                from ..distributed import scan_files
            except ImportError as exc:
                raise InvalidParameterError(f"--dask needs the 'dask' extra (pip install 'nii[dask]'): {exc}") from exc

            def on_record(rec: dict) -> None:
                emit(rec)
                bar.advance(task)

            records, info = scan_files(files, out, address=args.dask, formats=formats, pipeline_settings=settings, on_record=on_record)
        else:
            from ..pipeline import Pipeline

            pipeline = Pipeline(**settings)
            notes = list(pipeline.notes)
            used: set[str] = set()
            for res in pipeline.process_many(files, workers=args.threads):
                outputs: dict[str, str] = {}
                if res.ok:
                    try:
                        outputs = write_outputs(res, out, formats=formats, stem=output_stem(res, used))
                    except NiiError as exc:
                        res = Result(source=res.source, scan_id=res.scan_id, status="error", error=str(exc))
                    except OSError as exc:
                        res = Result(source=res.source, scan_id=res.scan_id, status="error", error=f"{out}: cannot write outputs: {exc}")
                rec = result_record(res, outputs)
                records.append(rec)
                emit(rec)
                bar.advance(task)
    if records and not notes:
        notes = [n for n in records[0]["json"].get("notes", []) if not n.startswith("wrote ")]
    for src, reason in problems:
        rec = result_record(Result(source=src, scan_id="", status="error", error=f"{src}: {reason}"))
        records.append(rec)
        emit(rec)
    failed = [r for r in records if not r["ok"]]
    if not args.json:
        table = Table(title=f"nii scan → {out}")
        for col in ("scan", "status", "shape", "flags", "material cues", "classes", "ms"):
            table.add_column(col)
        for r in records:
            if not r["ok"]:
                continue
            table.add_row(
                r["scan_id"],
                "[red]ALARM[/]" if r["alarm"] else "[green]clear[/]",
                "×".join(map(str, r["shape"])),
                str(r["n_alarm_flags"]),
                str(r["n_detections"] - r["n_alarm_flags"]),
                ", ".join(r["classes"]) or "-",
                f"{r['total_ms']:.0f}",
            )
        con = stdout_console()
        con.print(table)
        ok = len(records) - len(failed)
        alarms = sum(r["alarm"] for r in records if r["ok"])
        where = f" on {info.get('workers', '?')} dask worker(s)" if args.dask is not None else ""
        con.print(f"{ok} scan(s) processed{where}, {alarms} with alarms, {len(failed)} failed; results in {os.fspath(out)}", highlight=False)
        for n in notes:
            con.print(f"[yellow]note:[/] {n}", highlight=False)
        if failed:
            err = stderr_console()
            err.print(f"[bold red]{len(failed)} input(s) failed:[/]")
            for r in failed:
                err.print(f"  {r['error']}", highlight=False, markup=False)
    return 1 if failed else 0
