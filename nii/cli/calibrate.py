"""``nii calibrate``: build material tables (step wedges) and scanner calibration sets; re-calibrate detector thresholds."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("calibrate", help="build material (Zeff) tables and scanner calibration sets; re-calibrate detector thresholds",
                              description="Build material (Zeff) tables from step wedges and scanner calibration sets; "
                                          "re-calibrate a detector's operating points on local scans.")
    sub = p.add_subparsers(dest="calibrate_command", metavar="WHAT")

    w = sub.add_parser("wedge", help="(L_high, R) -> Zeff table from step-wedge scans (simulated or real)",
                       description="Build the 2-D (L_high, R) -> Zeff table of a scanner profile from step wedges. "
                                   "--simulate uses the simulator; otherwise give wedge scans whose metadata['wedge'] "
                                   "describes the steps (material, zeff, steps=[[first_line, end_line, cm], ...]).")
    w.add_argument("scans", nargs="*", help="real step-wedge scan files (any format nii reads)")
    w.add_argument("--profile", required=True, help="scanner profile id (calibration/profiles/<id>.toml)")
    w.add_argument("--simulate", action="store_true", help="simulate the wedges with the profile")
    w.add_argument("--materials", default=None,
                   help="comma-separated reference materials (default polyethylene,pom,water,aluminium,iron,copper)")
    w.add_argument("--steps", type=int, default=16, help="steps per wedge (default 16)")
    w.add_argument("--l-max", type=float, default=7.0, help="largest high-energy attenuation of a step (default 7)")
    w.add_argument("--seed", type=int, default=0)
    dest = w.add_mutually_exclusive_group()
    dest.add_argument("--out", help="output table (.npz)")
    dest.add_argument("--install", action="store_true",
                      help="write calibration/materials/<profile>.npz and record its SHA-256 in index.json")
    w.add_argument("--json", action="store_true", help="print the summary as JSON")
    w.set_defaults(handler=_wedge)

    s = sub.add_parser("scanner", help="master dark/air, bad channels and gain from reference lines of scans",
                       description="Combine the dark and air reference lines of one or more scans (sigma-clipped, "
                                   "memory-bounded) into a CalibrationSet.")
    s.add_argument("scans", nargs="+", help="scan files carrying dark and air reference lines")
    s.add_argument("--out", required=True, help="output calibration set (.npz)")
    s.add_argument("--table", default=None, help="material table to embed (.npz); default the profile's shipped one")
    s.add_argument("--no-table", action="store_true", help="embed no material table")
    s.add_argument("--sigma", type=float, default=3.0, help="sigma-clipping threshold")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=_scanner)

    a = sub.add_parser("accuracy", help="Zeff error of a table on simulated test pieces (bare and behind steel)")
    a.add_argument("--profile", required=True)
    a.add_argument("--table", default=None, help="table to test (default the shipped one)")
    a.add_argument("--steel", default="0,2,5", help="steel thicknesses in mm (default 0,2,5)")
    a.add_argument("--seed", type=int, default=1)
    a.add_argument("--json", action="store_true")
    a.set_defaults(handler=_accuracy)

    t = sub.add_parser("thresholds", help="re-calibrate a detector's operating points on local scans",
                       description="Re-calibrate MODEL's thresholds on folders of scans (e.g. a site's own cleared "
                                   "traffic, with or without known seizures; scans without truth are negative images): "
                                   "per-class thresholds at image-level FAR targets. Without --out, thresholds.json and "
                                   "SHA256SUMS of MODEL are rewritten in place and its metrics.json and model card then "
                                   "describe the previous thresholds; with --out, a new model folder is written (same "
                                   "network, new thresholds, a model card saying so, metrics with --test).")
    t.add_argument("model", metavar="MODEL", nargs="?", default=None, help="model folder (with --out, default: the default model; without, required: it is changed in place)")
    t.add_argument("--data", required=True, action="append", metavar="DIR",
                   help="folder of scans (nii HDF5, truth optional); repeat for several")
    t.add_argument("--add", action="store_true",
                   help="keep the model's current negative calibration images and add these (more negatives, a steadier threshold)")
    t.add_argument("--far", default=None, help="default operating point, e.g. 1%% or 0.5%% (default: the model's current one)")
    t.add_argument("--method", choices=("global", "per_class"), default=None,
                   help="threshold rule (default: the better on the data's truth objects, else the model's current rule)")
    t.add_argument("--out", default=None, metavar="DIR", help="write a new model folder (must not exist) instead of changing MODEL")
    t.add_argument("--test", default=None, metavar="DIR", help="with --out: labelled scans to evaluate the new folder on")
    t.add_argument("--overlap", type=int, default=None, metavar="PX",
                   help="with --out: minimum tile overlap of the new folder in pixels (calibration and test run with it)")
    t.add_argument("--set-default", action="store_true", help="with --out: write detectors/DEFAULT naming the new folder")
    t.add_argument("--json", action="store_true")
    t.set_defaults(handler=_thresholds)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _print_json(obj) -> None:
    import json

    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def _wedge(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from .._assets import asset_dir, sha256_file
    from .._atomic import atomic_write_text
    from ..calibrate import build_material_table
    from ..calibrate.wedge import (
        REFERENCE_MATERIALS,
        build_table_for_profile,
        wedges_from_scans,
    )
    from ..errors import InvalidParameterError
    from ..profiles import load_profile

    prof = load_profile(args.profile)
    if args.simulate == bool(args.scans):
        raise InvalidParameterError("give either --simulate or wedge scan files (not both, not neither)")
    materials = tuple(m.strip() for m in args.materials.split(",")) if args.materials else REFERENCE_MATERIALS
    if args.simulate:
        table = build_table_for_profile(prof.id, materials=materials, n_steps=args.steps, l_max=args.l_max, seed=args.seed)
    else:
        from ..io import read

        raws = [read(p) for p in args.scans]
        wedges = wedges_from_scans(raws)
        table = build_material_table(wedges, profile=prof.id, energies=prof.energies,
                                     source="measured step wedges: " + ", ".join(args.scans))
    if args.install:
        import json

        folder = asset_dir("calibration") / "materials"
        path = table.save(folder / f"{prof.id}.npz")
        path.chmod(0o644)
        index_path = folder / "index.json"
        index = json.loads(index_path.read_text()) if index_path.is_file() else {"version": "nii-mat/1", "tables": {}}
        index.setdefault("tables", {})[prof.id] = {
            "file": path.name, "sha256": sha256_file(path), "table_hash": table.hash, "source": table.source,
        }
        atomic_write_text(index_path, json.dumps(index, indent=2, sort_keys=True) + "\n")
        index_path.chmod(0o644)
    else:
        path = table.save(args.out or f"{prof.id}.npz")
    summary = {
        "profile": prof.id,
        "path": str(path),
        "sha256": sha256_file(path),
        "table_hash": table.hash,
        "grid": list(table.values.shape),
        "references": [{"name": r.name, "zeff": r.zeff, "steps": int(r.l_high.size),
                        "l_high_range": [float(r.l_high.min()), float(r.l_high.max())]} for r in table.references],
    }
    if args.json:
        _print_json(summary)
        return 0
    t = Table(title=f"material table {prof.id}  ({path})")
    for c in ("material", "Zeff", "steps", "L_high range", "R range"):
        t.add_column(c)
    for r in table.references:
        rr = r.l_low / r.l_high
        t.add_row(r.name, f"{r.zeff:.2f}", str(r.l_high.size), f"{r.l_high.min():.3f}-{r.l_high.max():.2f}",
                  f"{rr.min():.3f}-{rr.max():.3f}")
    con = Console()
    con.print(t)
    con.print(f"sha256 {summary['sha256']}\ntable hash {table.hash}")
    return 0


def _scanner(args: argparse.Namespace) -> int:
    import numpy as np

    from ..calibrate import CalibrationSet, MaterialTable, load_default_table
    from ..errors import InvalidDataError
    from ..io import read

    raws = [read(p) for p in args.scans]
    first = raws[0]
    for r, p in zip(raws, args.scans):
        if r.dark is None or r.air is None:
            raise InvalidDataError("scan has no dark and air reference lines", path=p)
        if r.profile != first.profile or r.counts.shape[:2] != first.counts.shape[:2]:
            raise InvalidDataError("scans differ in profile or (energies, channels) from the first", path=p)

    def lines(name):
        parts = []
        for r in raws:
            for a in (getattr(r, name),) + ((r.air_end,) if name == "air" and r.air_end is not None else ()):
                parts.append(a if a.ndim == 3 else a[..., None])
        return np.concatenate(parts, axis=2)

    table = None
    if args.table:
        table = MaterialTable.load(args.table)
    elif not args.no_table and first.n_energies >= 2 and first.profile:
        table = load_default_table(first.profile)
    dead = np.zeros(first.counts.shape[:2], bool)
    for r in raws:
        if r.dead_mask is not None:
            dead |= r.dead_mask
    cal = CalibrationSet.from_references(lines("dark"), lines("air"), energies=first.energies, profile=first.profile,
                                         material=table, sigma=args.sigma, bad_extra=dead)
    path = cal.save(args.out)
    summary = {"path": str(path), "hash": cal.hash, "profile": cal.profile, "channels": cal.n_channels,
               "bad_channels": int(cal.bad.sum()), **dict(cal.metadata)}
    if args.json:
        _print_json(summary)
    else:
        from rich.console import Console

        Console().print(summary)
    return 0


def _thresholds(args: argparse.Namespace) -> int:
    import json
    import shlex
    import sys
    from pathlib import Path

    from .._atomic import atomic_write_text
    from ..detect import Detector
    from ..detect.detector import write_sha256sums
    from ..detect.recalibrate import recalibrate_model, recalibrated_thresholds
    from ..detect.thresholds import Thresholds, parse_far
    from ..errors import FileAccessError, InvalidParameterError

    for d in args.data:
        if not Path(d).is_dir():
            raise FileAccessError("not a folder of scans", path=Path(d))
    if args.out is None and args.model is None:
        raise InvalidParameterError("name the model folder to change in place, or give --out for a new folder")
    if args.out is None and (args.test is not None or args.set_default or args.overlap is not None):
        raise InvalidParameterError("--test, --overlap and --set-default need --out (a new model folder)")
    far = parse_far(args.far) if args.far is not None else None
    if args.out is not None:
        command = "nii " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        folder = recalibrate_model(args.model, args.out, data=args.data, add=args.add, default_far=far,
                                   method=args.method, test=args.test, overlap=args.overlap, command=command)
        th = Thresholds.load(folder / "thresholds.json")
        if args.set_default:
            atomic_write_text(folder.parent / "DEFAULT", folder.name + "\n")
    else:
        det = Detector.load(args.model)  # verifies the folder before it is changed
        folder = Path(det.folder)
        th = recalibrated_thresholds(det, args.data, add=args.add, default_far=far, method=args.method)
        th.save(folder / "thresholds.json")
        write_sha256sums(folder)
    metrics = None
    if (folder / "metrics.json").is_file() and args.out is not None:
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    ops = th.operating_points()
    if args.json:
        _print_json({"model": str(folder), "data": [str(d) for d in args.data], "n_negative_images": th.n_negative,
                     "method": th.method, "default_far": th.default_far, "operating_points": ops, "metrics": metrics})
        return 0
    from rich.console import Console

    con = Console()
    con.print(f"{folder / 'thresholds.json'}: {th.n_negative} negative images (FAR resolution {1 / th.n_negative:.2%}), "
              f"rule {th.method}, default FAR {th.default_far:.2%}")
    for op in ops:
        con.print(f"  FAR {op['far_target']:.1%}: " + ", ".join(f"{c} {v:.3f}" for c, v in op["thresholds"].items()))
    if metrics:
        for c, d in metrics.get("classes", {}).items():
            con.print(f"  {c}: Pd at the operating point {d.get('pd_at_operating_point')}, Pd @ 1 % FAR {d.get('pd_at_far_1pct')}")
        con.print(f"  far_images at the operating point {metrics.get('far_images')}")
    if args.out is None:
        con.print("metrics.json and MODEL_CARD.md still describe the previous thresholds: re-run `nii evaluate`.")
    return 0


def _accuracy(args: argparse.Namespace) -> int:
    import numpy as np

    from ..calibrate import MaterialTable, load_default_table
    from ..calibrate.wedge import zeff_accuracy

    table = MaterialTable.load(args.table) if args.table else load_default_table(args.profile)
    steel = tuple(float(x) for x in args.steel.split(","))
    rows = zeff_accuracy(table, args.profile, steel_mm=steel, seed=args.seed)
    by = {}
    for r in rows:
        by.setdefault((r["material"], r["steel_mm"]), []).append(r)
    summary = []
    for (m, s), rs in by.items():
        err = np.array([r["error_rel"] for r in rs])
        summary.append({"material": m, "zeff_true": rs[0]["zeff_true"], "steel_mm": s,
                        "median_error_pct": float(np.nanmedian(err) * 100), "max_error_pct": float(np.nanmax(err) * 100),
                        "zeff_by_thickness": {str(r["thickness_cm"]): round(r["zeff"], 2) for r in rs}})
    overall = {str(s): float(np.nanmedian([r["error_rel"] for r in rows if r["steel_mm"] == s]) * 100) for s in steel}
    if args.json:
        _print_json({"profile": args.profile, "table_hash": table.hash, "rows": rows, "summary": summary,
                     "median_error_pct_by_steel": overall})
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Zeff accuracy, {args.profile}")
    for c in ("material", "Zeff true", "steel mm", "median err %", "max err %"):
        t.add_column(c)
    for r in summary:
        t.add_row(r["material"], f"{r['zeff_true']:.2f}", f"{r['steel_mm']:g}", f"{r['median_error_pct']:.1f}",
                  f"{r['max_error_pct']:.1f}")
    con = Console()
    con.print(t)
    con.print({"median_error_pct_by_steel": overall})
    return 0
