"""``nii info FILE [--json]``: format, shape, energies, pitch and metadata of scan files."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe scan files (format, shape, energies, pitch, metadata)")
    p.add_argument("files", nargs="+", metavar="FILE", help="scan files, folders or globs")
    p.add_argument("--json", action="store_true", help="one JSON object per file on stdout")
    p.set_defaults(handler=run)


def describe(scan) -> dict:
    """JSON-serialisable description of a RawScan or Scan."""
    from ..containers import RawScan

    d = {
        "source": scan.source.path if scan.source else None,
        "format": scan.source.format if scan.source else None,
        "sha256": scan.source.sha256 if scan.source else None,
        "kind": "raw" if isinstance(scan, RawScan) else "normalised",
        "scan_id": scan.scan_id,
        "shape": list(scan.shape),
        "dtype": str(scan.counts.dtype if isinstance(scan, RawScan) else scan.attenuation.dtype),
        "energies": [{"label": e.label, "kvp": e.kvp} for e in scan.energies],
        "pixel_pitch_mm": list(scan.pixel_pitch_mm),
        "profile": scan.profile,
        "acquired_at": scan.acquired_at,
        "rendered": scan.rendered,
        "truth": None if scan.truth is None else {"count": len(scan.truth), "classes": sorted(set(scan.truth.classes))},
        "metadata": dict(scan.metadata),
    }
    if isinstance(scan, RawScan):
        d["references"] = {
            name: (list(getattr(scan, name).shape) if getattr(scan, name) is not None else None)
            for name in ("dark", "air", "air_end", "dead_mask")
        }
    else:
        d["maps"] = [name for name in ("valid", "zeff", "material", "color") if getattr(scan, name) is not None]
    return d


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..errors import NiiError
    from ..io import read
    from ._common import emit_json, expand_inputs, stderr_console, stdout_console

    files, problems = expand_inputs(args.files)
    failures = [(src, reason) for src, reason in problems]
    rows = []
    for path in files:
        try:
            info = describe(read(path))
            info["status"] = "ok"
            info["error"] = None
        except NiiError as exc:
            failures.append((str(path), str(exc)))
            info = {"source": str(path), "status": "error", "error": str(exc), "format": None, "shape": None, "energies": None}
        if args.json:
            emit_json(info)
        rows.append(info)
    for src, reason in problems:
        if args.json:
            emit_json({"source": src, "status": "error", "error": reason, "format": None, "shape": None, "energies": None})
    if not args.json:
        table = Table(title="nii info", show_lines=False)
        for col in ("file", "format", "kind", "shape (E,H,W)", "energies", "pitch mm", "profile", "truth"):
            table.add_column(col)
        for r in rows:
            if r["status"] != "ok":
                continue
            table.add_row(
                r["source"],
                r["format"],
                r["kind"],
                "×".join(map(str, r["shape"])),
                ", ".join(f"{e['label']}" + (f" {e['kvp']:g} kV" if e["kvp"] else "") for e in r["energies"]),
                "×".join(f"{p:g}" for p in r["pixel_pitch_mm"]),
                r["profile"] or "-",
                "-" if r["truth"] is None else f"{r['truth']['count']} ({', '.join(r['truth']['classes'])})",
            )
        stdout_console().print(table)
        if failures:
            err = stderr_console()
            err.print(f"[bold red]{len(failures)} file(s) failed:[/]")
            for src, reason in failures:
                err.print(f"  {reason}" if src in reason else f"  {src}: {reason}", highlight=False)
    return 1 if failures else 0
