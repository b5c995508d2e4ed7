"""``nii scan INPUT... -o OUT``: read, normalise and flag scans; write results; print a summary.

Inputs may be files, folders (walked recursively) or glob patterns. A bad input never stops the
batch: it is reported as ``status: "error"`` (with ``--json``) and listed at the end, and the
exit code is 1 when any input failed, 0 otherwise.
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
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from rich.table import Table

    from ..errors import InvalidParameterError, NiiError
    from ..outputs import FORMATS, output_stem, write_outputs
    from ..pipeline import Pipeline, Result
    from ._common import emit_json, expand_inputs, progress, stderr_console, stdout_console

    formats = FORMATS if args.formats is None else tuple(f.strip() for f in args.formats.split(",") if f.strip())
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise InvalidParameterError(f"--formats: unknown {bad}; choose from {', '.join(FORMATS)}")
    out = Path(args.out)
    files, problems = expand_inputs(args.inputs)
    if not files and not problems:
        raise InvalidParameterError("no input files")
    model = False if args.no_detect else args.model
    pipeline = Pipeline(model=model)
    if args.far is not None and pipeline.detector is not None:
        pipeline.detector = pipeline.detector.with_far(args.far)
    results: list[Result] = []
    used: set[str] = set()
    with progress(disable=args.json) as bar:
        task = bar.add_task("scanning", total=len(files))
        for res in pipeline.process_many(files):
            if res.ok:
                try:
                    stem = output_stem(res, used)
                    outputs = write_outputs(res, out, formats=formats, stem=stem)
                    res = Result(**{**res.__dict__, "notes": res.notes + tuple(f"wrote {p}" for p in outputs.values())})
                except NiiError as exc:
                    res = Result(source=res.source, scan_id=res.scan_id, status="error", error=str(exc))
                except OSError as exc:
                    res = Result(source=res.source, scan_id=res.scan_id, status="error", error=f"{out}: cannot write outputs: {exc}")
            results.append(res)
            if args.json:
                d = res.to_dict()
                d.pop("provenance", None)
                emit_json(d)
            bar.advance(task)
    for src, reason in problems:
        res = Result(source=src, scan_id="", status="error", error=f"{src}: {reason}")
        results.append(res)
        if args.json:
            emit_json({k: v for k, v in res.to_dict().items() if k != "provenance"})
    failed = [r for r in results if not r.ok]
    if not args.json:
        table = Table(title=f"nii scan → {out}")
        for col in ("scan", "status", "shape", "flags", "classes", "ms"):
            table.add_column(col)
        for r in results:
            if not r.ok:
                continue
            classes = sorted({d.to_dict()["class"] for d in r.detections})
            table.add_row(
                r.scan_id,
                "[red]ALARM[/]" if r.alarm else "[green]clear[/]",
                "×".join(map(str, r.scan.shape)),
                str(len(r.detections)),
                ", ".join(classes) or "-",
                f"{r.timings_ms.get('total', 0):.0f}",
            )
        con = stdout_console()
        con.print(table)
        ok = len(results) - len(failed)
        alarms = sum(r.alarm for r in results if r.ok)
        con.print(f"{ok} scan(s) processed, {alarms} with alarms, {len(failed)} failed; results in {os.fspath(out)}", highlight=False)
        for n in pipeline.notes:
            con.print(f"[yellow]note:[/] {n}", highlight=False)
        if failed:
            err = stderr_console()
            err.print(f"[bold red]{len(failed)} input(s) failed:[/]")
            for r in failed:
                err.print(f"  {r.error}", highlight=False, markup=False)
    return 1 if failed else 0
