"""``nii dataset``: build the detector's training data from the simulator.

Examples::

    nii dataset build --out data/det-v1 --seed 1 --workers 2
    nii dataset build --out /tmp/tiny --n-train 20 --n-val 10 --n-test 10
    nii dataset synthetic --out /tmp/shapes        # toy shapes, for tests and demos
"""

from __future__ import annotations

import argparse

from ._common import nonneg_int as _nonneg_int

__all__ = ["register"]


def _weights(text: str) -> tuple[float, ...]:
    try:
        v = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if any(x < 0 for x in v) or sum(v) <= 0:
        raise argparse.ArgumentTypeError(f"expected non-negative weights with a positive sum, got {text!r}")
    return v


def _range(text: str) -> tuple[int, int] | None:
    if text.strip().lower() == "scenario":
        return None
    try:
        lo, hi = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI (two integers) or 'scenario', got {text!r}") from None
    if not 1 <= lo <= hi <= 12:
        raise argparse.ArgumentTypeError(f"expected 1 <= LO <= HI <= 12, got {text!r}")
    return lo, hi


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "dataset",
        help="build detector training data (simulator -> normalised scans -> YOLO tiles)",
        description="Build the detector's dataset: simulated scenes, normalised and encoded (nii-det/1) at the "
        "detector pitch, cut into YOLO tiles; validation and test scans kept whole for calibration and evaluation.",
    )
    sub = p.add_subparsers(dest="dataset_command", metavar="ACTION")
    b = sub.add_parser("build", help="build a simulated dataset", description="Build a simulated dataset (see nii.dataset.builder).")
    b.add_argument("--out", required=True, help="output folder")
    b.add_argument("--n-train", type=_nonneg_int, default=1200, help="training scenes (default 1200)")
    b.add_argument("--train-first-index", type=_nonneg_int, default=0,
                   help="index of the first training scene (default 0): a build starting where an earlier one ended "
                   "holds new training scenes; validation and test scenes do not change")
    b.add_argument("--n-val", type=_nonneg_int, default=400, help="validation scenes (default 400)")
    b.add_argument("--n-test", type=_nonneg_int, default=400, help="test scenes (default 400)")
    b.add_argument("--seed", type=_nonneg_int, default=0, help="base seed (splits get disjoint scene seeds)")
    b.add_argument("--pitch-mm", type=float, default=3.0, help="detector pitch in mm (default 3.0)")
    b.add_argument("--tile", type=int, default=320, help="tile size in px (default 320)")
    b.add_argument("--overlap", type=int, default=64, help="tile overlap in px (default 64)")
    b.add_argument("--profiles", default=None, help="comma-separated scanner profiles (default: all three shipped)")
    b.add_argument("--profile-weights", type=_weights, default=None, help="relative weights of --profiles")
    b.add_argument("--held-out", default="timber", help="scenario family kept out of train/val ('none' to disable)")
    b.add_argument("--kinds", type=_weights, default=(0.7, 0.15, 0.15), help="weights of dual_energy,pseudocolor,greyscale (default 0.7,0.15,0.15)")
    b.add_argument("--no-randomize", action="store_true", help="turn domain randomisation off")
    b.add_argument("--train-targets", type=_range, default=(1, 3), metavar="LO,HI",
                   help="targets per training scene that holds any (default 1,3; 'scenario' keeps each scenario's own)")
    b.add_argument("--target-crops", type=_nonneg_int, default=1, help="extra training tiles per target, target wholly inside (default 1)")
    b.add_argument("--train-overburden", type=float, default=0.0, metavar="P",
                   help="probability that a training target gets a thick organic slab over it (wood, paper, food, water, "
                   "plastics or textiles: 2-10 g/cm² on baggage, 3-25 g/cm² on cargo profiles; domain randomisation; "
                   "default 0: none; val/test never)")
    b.add_argument("--overburden-style", choices=("box", "textured"), default="box",
                   help="slabs of --train-overburden: 'box' (default: uniform boxes over targets) or 'textured' (boards "
                   "with gaps and knots, voided boxes, round masses, bundles of rolls; over confusers as often as over targets)")
    b.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    b.add_argument("--feedback", action="append", default=[], metavar="DIR",
                   help="merge an operator-feedback export (`nii dataset add-feedback`) into the training split; repeatable")
    b.add_argument("--json", action="store_true", help="print the manifest as JSON")
    b.set_defaults(handler=_build)
    s = sub.add_parser("synthetic", help="toy shapes drawn in the detector encoding (tests, demos)")
    s.add_argument("--out", required=True)
    s.add_argument("--size", type=int, default=128)
    s.add_argument("--n-train", type=_nonneg_int, default=320)
    s.add_argument("--n-val", type=_nonneg_int, default=80)
    s.add_argument("--n-test", type=_nonneg_int, default=80)
    s.add_argument("--seed", type=_nonneg_int, default=7)
    s.set_defaults(handler=_synthetic)
    f = sub.add_parser(
        "add-feedback",
        help="export operator decisions of `nii review` as YOLO/COCO labels",
        description="Export confirmed and corrected boxes and rejected false alarms (hard negatives) from a "
        "`nii review` decision database as detector tiles with YOLO and COCO labels.",
    )
    f.add_argument("db", metavar="DB", help="decision database written by `nii review` (SQLite)")
    f.add_argument("-o", "--out", required=True, help="output folder")
    f.add_argument("--results", default=None, help="results folder the decisions refer to (default: the one the database records)")
    f.add_argument("--json", action="store_true", help="print the export manifest as JSON")
    f.set_defaults(handler=_add_feedback)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _add_feedback(args) -> int:
    from ..review.feedback import export_feedback
    from ._common import emit_json, stdout_console

    manifest = export_feedback(args.db, args.out, results_dir=args.results)
    if args.json:
        emit_json(manifest)
    else:
        counts = {k: v for k, v in manifest.items() if isinstance(v, (int, float))}
        stdout_console().print(f"wrote feedback dataset to {args.out}: {counts}", highlight=False)
    return 0


def _build(args) -> int:
    import json
    import shlex
    import sys

    from ..dataset.builder import DEFAULT_PROFILES, BuildConfig, build_dataset
    from ..errors import InvalidParameterError
    from ._common import emit_json, progress

    profiles = tuple(x.strip() for x in args.profiles.split(",")) if args.profiles else DEFAULT_PROFILES
    weights = args.profile_weights
    if weights is not None and len(weights) != len(profiles):
        raise InvalidParameterError(f"--profile-weights has {len(weights)} numbers for {len(profiles)} profiles")
    if len(args.kinds) != 3:
        raise InvalidParameterError("--kinds needs 3 weights: dual_energy,pseudocolor,greyscale")
    cfg = BuildConfig(
        n_train=args.n_train,
        train_first_index=args.train_first_index,
        n_val=args.n_val,
        n_test=args.n_test,
        seed=args.seed,
        pitch_mm=args.pitch_mm,
        tile_size=args.tile,
        overlap=args.overlap,
        profiles=profiles,
        profile_weights=weights if weights is not None else (BuildConfig.profile_weights if profiles == DEFAULT_PROFILES else None),
        held_out_family=None if args.held_out.lower() == "none" else args.held_out,
        kind_weights=tuple(args.kinds),
        randomize=not args.no_randomize,
        train_targets=args.train_targets,
        target_crops=args.target_crops,
        train_overburden=args.train_overburden,
        train_overburden_style=args.overburden_style,
        workers=args.workers,
    )
    command = "nii " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with progress(disable=args.json) as bar:
        tasks: dict[str, int] = {}

        def cb(split: str, done: int, total: int) -> None:
            if split not in tasks:
                tasks[split] = bar.add_task(split, total=total)
            bar.update(tasks[split], completed=done)

        root = build_dataset(args.out, cfg, command=command, progress=cb)
    manifest = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    if args.feedback:
        from .._atomic import atomic_write_text
        from ..dataset.builder import merge_feedback

        merged = {}
        for fb in args.feedback:
            recs = merge_feedback(fb, root, pitch_mm=cfg.pitch_mm, tile=cfg.tile_size, overlap=cfg.overlap,
                                  min_visible=cfg.min_visible, seed=cfg.seed)
            merged[fb] = {"tiles": len(recs), "tiles_with_objects": sum(1 for r in recs if r["n_boxes"])}
        manifest["feedback"] = merged
        atomic_write_text(root / "dataset.json", json.dumps(manifest, indent=1) + "\n")
    if args.json:
        emit_json(manifest)
    else:
        from ._common import stdout_console

        con = stdout_console()
        for split, c in manifest["counts"].items():
            con.print(f"{split}: {c['scenes']} scenes, {c['tiles']} tiles ({c['tiles_with_objects']} with objects), "
                      f"{c['scans_written']} scans, {c['negative_scenes']} negative; objects {c['objects_per_class']}")
        if manifest["n_errors"]:
            con.print(f"[yellow]{manifest['n_errors']} scenes failed (see dataset.json)[/]")
        con.print(f"written to {root}")
    return 0


def _synthetic(args) -> int:
    from ..dataset.synthetic import build_synthetic_dataset

    root = build_synthetic_dataset(args.out, size=args.size, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, seed=args.seed)
    print(root)
    return 0
