"""``nii simulate``: generate a labelled dataset of simulated scans.

Examples::

    nii simulate --list
    nii simulate --profile baggage_sandwich_140 --scenario mixed --count 1000 --seed 1 --out data/sim
    nii simulate --preset samples --seed 2026 --out sample_scans
"""

from __future__ import annotations

import argparse

from ._common import nonneg_int as _nonneg_int
from ._common import pos_int as _pos_int

__all__ = ["register"]


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return v


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="generate simulated, labelled scans (nii HDF5 + COCO + YOLO)",
        description="Generate simulated dual-energy scans of a scenario for a scanner profile: one nii HDF5 per "
        "scan with /truth, YOLO labels, COCO JSON and a manifest. Deterministic for a seed whatever --workers.",
    )
    p.add_argument("--list", action="store_true", help="list scanner profiles, scenarios and families, then exit")
    p.add_argument("--profile", help="scanner profile id (see --list)")
    p.add_argument("--scenario", default="mixed", help="scenario name (default: mixed)")
    p.add_argument("--count", type=_pos_int, help="number of scans")
    p.add_argument("--seed", type=_nonneg_int, default=0, help="run seed (default 0)")
    p.add_argument("--start", type=_nonneg_int, default=0, help="index of the first scan (to extend a run)")
    p.add_argument("--out", help="output folder")
    p.add_argument("--workers", type=_pos_int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--compression", choices=("lzf", "gzip", "none"), default=None,
                   help="HDF5 compression (default lzf; gzip for --preset samples)")
    p.add_argument("--target-fraction", type=_fraction, default=None, help="probability that a scan holds a target")
    p.add_argument("--clutter-density", type=float, default=None, help="clutter items per 1000 cm² of container")
    p.add_argument("--overlap", type=_fraction, default=None, help="probability that clutter lands on a target")
    p.add_argument("--channels", type=_pos_int, default=None, help="detector channels (default: the profile's)")
    p.add_argument("--length-cm", type=float, default=None, help="belt length imaged per scan in cm")
    p.add_argument("--preset", choices=("samples",), default=None, help="generate a fixed set (samples: sample_scans/)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.set_defaults(handler=_handle)


def _print_list() -> int:
    from rich.table import Table

    from ..profiles import list_profiles, load_profile
    from ..sim.scenes import FAMILIES, SCENARIOS, profile_domain
    from ._common import stdout_console

    con = stdout_console()
    t = Table(title="scanner profiles")
    for col in ("profile", "domain", "channels", "pitch mm", "energies"):
        t.add_column(col)
    for name in list_profiles():
        pr = load_profile(name)
        t.add_row(name, profile_domain(pr), str(pr.channels), f"{pr.detector_pitch_mm:g} x {pr.line_pitch_mm:g}",
                  ", ".join(e.describe() for e in pr.energies))
    con.print(t)
    t = Table(title="scenarios")
    for col in ("scenario", "family", "domains", "targets", "clutter", "overlap"):
        t.add_column(col, no_wrap=True)
    t.add_column("description")
    for s in SCENARIOS.values():
        t.add_row(s.name, s.family, "/".join(s.domains), f"{s.target_fraction:g}", f"{s.clutter_density:g}", f"{s.overlap:g}", s.description)
    con.print(t)
    con.print("families: " + "; ".join(f"{f}: {', '.join(n)}" for f, n in FAMILIES.items()))
    return 0


def _handle(args: argparse.Namespace) -> int:
    import json
    import shlex
    import sys
    import time
    from pathlib import Path

    from ..errors import InvalidParameterError
    from ._common import stderr_console, stdout_console

    if args.list:
        return _print_list()
    if not args.out:
        raise InvalidParameterError("--out is required (output folder)")
    command = "nii simulate " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 1 else "nii simulate"
    compression = None if args.compression == "none" else args.compression
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ..sim import run

    if args.preset:
        total = len(run.SAMPLE_PRESET)
    else:
        if not args.profile:
            raise InvalidParameterError("--profile is required (see nii simulate --list)")
        if not args.count:
            raise InvalidParameterError("--count is required (number of scans)")
        if args.length_cm is not None and not 10 <= args.length_cm <= 2000:
            raise InvalidParameterError(f"--length-cm must lie in [10, 2000], got {args.length_cm}")
        total = args.count
    t0 = time.perf_counter()
    progress = Progress(TextColumn("[bold]simulate"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=stderr_console(), transient=False, disable=args.json)
    with progress:
        task = progress.add_task("scans", total=total)

        def done(_rec) -> None:
            progress.advance(task)

        if args.preset:
            records = run.generate_preset(args.preset, out_dir=args.out, seed=args.seed, workers=args.workers,
                                          compression=compression or "gzip", command=command, on_done=done)
        else:
            records = run.generate(profile=args.profile, scenario=args.scenario, count=args.count, seed=args.seed, out_dir=args.out,
                                   workers=args.workers, compression=compression or "lzf", target_fraction=args.target_fraction,
                                   clutter_density=args.clutter_density, overlap=args.overlap, channels=args.channels,
                                   length_cm=args.length_cm, start=args.start, command=command, on_done=done)
    elapsed = time.perf_counter() - t0
    per_class: dict[str, int] = {}
    per_scenario: dict[str, int] = {}
    negatives = 0
    for r in records:
        per_scenario[r.scenario] = per_scenario.get(r.scenario, 0) + 1
        for c in r.classes:
            per_class[c] = per_class.get(c, 0) + 1
        negatives += not r.classes
    summary = {
        "out": str(Path(args.out)),
        "scans": len(records),
        "seconds": round(elapsed, 3),
        "scans_per_s": round(len(records) / elapsed, 3) if elapsed > 0 else None,
        "negatives": negatives,
        "boxes_per_class": per_class,
        "scans_per_scenario": per_scenario,
        "confusers": sum(len(r.confusers) for r in records),
        "mean_ms": {k: round(sum(r.timings_ms[k] for r in records) / len(records), 1) for k in ("scene", "imaging", "write", "total")},
    }
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    from rich.table import Table

    t = Table(title=f"simulated {len(records)} scans in {elapsed:.1f} s ({summary['scans_per_s']} scans/s)")
    t.add_column("what")
    t.add_column("count", justify="right")
    for k, v in sorted(per_scenario.items()):
        t.add_row(f"scenario {k}", str(v))
    for k, v in sorted(per_class.items()):
        t.add_row(f"boxes {k}", str(v))
    t.add_row("negative scans", str(negatives))
    t.add_row("confuser objects", str(summary["confusers"]))
    t.add_row("mean ms scene / imaging / write", " / ".join(f"{summary['mean_ms'][k]:.0f}" for k in ("scene", "imaging", "write")))
    stdout_console().print(t)
    stdout_console().print(f"wrote {args.out}/ (nii HDF5, labels/, annotations.coco.json, manifest.json)")
    return 0
