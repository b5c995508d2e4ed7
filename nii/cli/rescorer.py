"""``nii rescorer``: train a second stage that re-scores a detector's candidates on native-resolution crops."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("rescorer", help="train a second-stage crop network for a detector (two-stage model folder)",
                              description="Second stage of a detector: a small CNN that looks again at every candidate box "
                                          "on a crop at the scan's own pitch (finer than the detector's).")
    sub = p.add_subparsers(dest="rescorer_command", metavar="WHAT")
    t = sub.add_parser("train", help="train the second stage and write a two-stage model folder",
                       description="Run MODEL over the labelled scans of --data, train the crop network on its candidates "
                                   "(torch: the train extra), export it to ONNX, calibrate thresholds on the final scores "
                                   "of --calibrate, and write the new model folder --out (evaluated on --test if given).")
    t.add_argument("model", metavar="MODEL", nargs="?", default=None, help="one-stage source model folder (default: the default model)")
    t.add_argument("--data", action="append", default=[], metavar="DIR", help="labelled scans to train on (repeatable)")
    t.add_argument("--candidates", action="append", default=[], metavar="FILE",
                   help="candidates of MODEL saved by `nii rescorer extract`, trained on with those of --data (repeatable)")
    t.add_argument("--calibrate", required=True, action="append", metavar="DIR",
                   help="labelled scans with negatives to calibrate the thresholds on (repeatable; disjoint from --data)")
    t.add_argument("--test", default=None, metavar="DIR", help="labelled scans to evaluate the new folder on")
    t.add_argument("--out", required=True, metavar="DIR", help="the new model folder (must not exist)")
    t.add_argument("--epochs", type=int, default=12, help="training epochs (default 12)")
    t.add_argument("--seed", type=int, default=2026)
    t.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    t.add_argument("--widths", default=None, metavar="W1,W2,...",
                   help="channels of the crop network's stride-2 stages (default 24,48,96,128,160, the committed second stages')")
    t.add_argument("--device", default=None, metavar="DEV", help="torch device to train on: cpu (default) or cuda")
    t.add_argument("--workers", type=int, default=1, help="processes extracting the candidates (default 1)")
    t.add_argument("--set-default", action="store_true", help="write detectors/DEFAULT naming the new folder")
    t.add_argument("--json", action="store_true")
    t.set_defaults(handler=_train)
    e = sub.add_parser("extract", help="save a detector's candidates on labelled scans for `train --candidates`",
                       description="Run MODEL over the labelled scans of --data and write every candidate's crop, scalar inputs "
                                   "and label to the HDF5 file --out (a few GB instead of the scans' tens of GB; no torch "
                                   "needed). `nii rescorer train MODEL --candidates FILE` trains on them without the scans.")
    e.add_argument("model", metavar="MODEL", nargs="?", default=None, help="one-stage source model folder (default: the default model)")
    e.add_argument("--data", required=True, action="append", metavar="DIR", help="labelled scans (repeatable)")
    e.add_argument("--out", required=True, metavar="FILE", help="the candidates file (.h5; must not exist)")
    e.add_argument("--workers", type=int, default=1, help="processes extracting the candidates (default 1)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(handler=_extract)
    j = sub.add_parser("ensemble", help="join the second stages of two-stage folders into one (mean of their probabilities)",
                       description="Join the second-stage networks of two-stage model folders that share one first stage into "
                                   "one rescorer.onnx whose class probabilities are the mean of theirs (needs the onnx package: "
                                   "the train extra), calibrate thresholds on the final scores of --calibrate and write the new "
                                   "model folder --out (evaluated on --test if given).")
    j.add_argument("members", metavar="MODEL", nargs="+", help="two-stage model folders (at least two)")
    j.add_argument("--calibrate", required=True, action="append", metavar="DIR",
                   help="labelled scans with negatives to calibrate the thresholds on (repeatable; no member may have trained on them)")
    j.add_argument("--test", default=None, metavar="DIR", help="labelled scans to evaluate the new folder on")
    j.add_argument("--out", required=True, metavar="DIR", help="the new model folder (must not exist)")
    j.add_argument("--set-default", action="store_true", help="write detectors/DEFAULT naming the new folder")
    j.add_argument("--json", action="store_true")
    j.set_defaults(handler=_ensemble)
    f = sub.add_parser("fuse", help="fit an evidence fusion: final confidence from both stages and the box's material evidence",
                       description="Run the two-stage MODEL over the labelled scans of --data and fit, per class, a logistic model "
                                   "of the detector's score, the second stage's probabilities, the input kind and the material "
                                   "evidence inside each candidate box (nii.detect.fusion); calibrate thresholds on the fused "
                                   "scores of --calibrate and write the new model folder --out (evaluated on --test if given). "
                                   "numpy only: no torch needed.")
    f.add_argument("model", metavar="MODEL", nargs="?", default=None, help="two-stage source model folder (default: the default model)")
    f.add_argument("--data", required=True, action="append", metavar="DIR", help="labelled scans to fit on (repeatable)")
    f.add_argument("--calibrate", required=True, action="append", metavar="DIR",
                   help="labelled scans with negatives to calibrate the thresholds on (repeatable; disjoint from --data)")
    f.add_argument("--test", default=None, metavar="DIR", help="labelled scans to evaluate the new folder on")
    f.add_argument("--out", required=True, metavar="DIR", help="the new model folder (must not exist)")
    f.add_argument("--l2", type=float, default=10.0, help="L2 penalty on the standardised weights (default 10)")
    f.add_argument("--floor", type=float, default=0.05,
                   help="candidates whose two-stage score is below this are dropped before fusion (default 0.05)")
    f.add_argument("--mode", choices=("cap", "replace"), default="cap",
                   help="cap (default): final score = min(two-stage score, fused score), the evidence only lowers a flag's "
                        "confidence; replace: the fused score alone (measured to raise false alarms on unseen scene families)")
    f.add_argument("--workers", type=int, default=1, help="processes running the model over --data (default 1)")
    f.add_argument("--set-default", action="store_true", help="write detectors/DEFAULT naming the new folder")
    f.add_argument("--json", action="store_true")
    f.set_defaults(handler=_fuse)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _train(args: argparse.Namespace) -> int:
    import logging
    import shlex
    import sys

    from ..detect.rescore_train import build_two_stage

    log = logging.getLogger("nii.rescorer")
    command = "nii " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    folder = build_two_stage(args.model, args.out, data=args.data, candidates=args.candidates, calibrate=args.calibrate, test=args.test,
                             epochs=args.epochs, seed=args.seed, threads=args.threads, workers=args.workers, command=command, progress=log.info,
                             widths=None if args.widths is None else [w.strip() for w in args.widths.split(",")], device=args.device)
    return _report(folder, args)


def _ensemble(args: argparse.Namespace) -> int:
    import logging
    import shlex
    import sys

    from ..detect.rescore_train import build_ensemble

    log = logging.getLogger("nii.rescorer")
    command = "nii " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    folder = build_ensemble(args.members, args.out, calibrate=args.calibrate, test=args.test, command=command, progress=log.info)
    return _report(folder, args)


def _fuse(args: argparse.Namespace) -> int:
    import logging
    import shlex
    import sys

    from ..detect.fusion import build_fused

    log = logging.getLogger("nii.rescorer")
    command = "nii " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    folder = build_fused(args.model, args.out, data=args.data, calibrate=args.calibrate, test=args.test, l2=args.l2, floor=args.floor,
                         mode=args.mode, workers=args.workers, command=command, progress=log.info)
    return _report(folder, args)


def _report(folder: Path, args: argparse.Namespace) -> int:
    """Set the default if asked; print the new folder and its test metrics."""
    import json

    from .._atomic import atomic_write_text

    if args.set_default:
        atomic_write_text(folder.parent / "DEFAULT", folder.name + "\n")
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8")) if (folder / "metrics.json").is_file() else None
    summary = {"model": str(folder), "metrics": metrics}
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True, default=str))
        return 0
    from rich.console import Console

    con = Console()
    con.print(f"wrote {folder}")
    if metrics:
        for c, d in metrics.get("classes", {}).items():
            con.print(f"  {c}: Pd at the operating point {d.get('pd_at_operating_point')}, Pd @ 1 % FAR {d.get('pd_at_far_1pct')}")
        con.print(f"  far_images at the operating point {metrics.get('far_images')}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    import json
    import logging
    import time
    from pathlib import Path

    from ..detect.detector import Detector, resolve_model_dir
    from ..detect.rescore import RescorerConfig
    from ..detect.rescore_train import extract_candidates, save_candidates
    from ..errors import FileAccessError, InvalidParameterError

    log = logging.getLogger("nii.rescorer")
    out = Path(args.out)
    if out.exists():
        raise FileAccessError("exists already; choose a new file for the candidates", path=out)
    det = Detector.load(resolve_model_dir(args.model), backend="onnx")
    if det.rescorer is not None:
        raise InvalidParameterError(f"{det.folder.name} already has a second stage; extract with its one-stage source model")
    cfg = RescorerConfig()
    t0 = time.perf_counter()
    cs = extract_candidates(det, args.data, config=cfg, workers=args.workers,
                            progress=lambda i, n: log.info("  %d/%d scans", i, n) if i % 500 == 0 or i == n else None)
    save_candidates(cs, out, detector=det, config=cfg, folders=args.data)
    summary = {"file": str(out), "model": det.config.name, **cs.counts, "seconds": round(time.perf_counter() - t0, 1),
               "bytes": out.stat().st_size}
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
        return 0
    from rich.console import Console

    Console().print(f"wrote {out}: {cs.counts['candidates']} candidates from {cs.counts['scans']} scans "
                    f"({summary['bytes'] / 1e6:.0f} MB; {', '.join(f'{k} {v}' for k, v in cs.counts['by_label'].items())})")
    return 0
