"""``nii train``: train a detector from scratch on a ``nii dataset build`` folder and package it.

Example (the full recipe, ~1.5 h on 2 CPU cores; see ``detectors/README.md``)::

    nii train --data datasets/det-v2 --out detectors/nii-yolo11n-v2 --seed 2026 --set-default

Two machines (train on a lent GPU, package on the CPU box; see detectors/nii-yolo11n-v6/run.sh)::

    nii train --data D --out W --weights-only --device 0 ...        # model.pt + train_info.json
    nii train --data datasets/det-v2d --out detectors/M --from-weights W/model.pt
    nii train ... --from-weights W/model.pt --average-with detectors/nii-yolo11n-v6/model.pt --mix 0.5

A continuation on new scenes (how v6 was made from v4)::

    nii dataset build --out D2 --train-first-index 6000 --n-train 7000 ...   # scenes v4 never saw
    nii train --data D2 --out W2 --weights-only --device 0 --optimizer AdamW --lr0 0.0005
              --warmup-epochs 0 --init-weights detectors/nii-yolo11n-v4/model.pt ...
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _far(text: str) -> float:
    from ..detect.thresholds import parse_far
    from ..errors import InvalidParameterError

    try:
        return parse_far(text)
    except InvalidParameterError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train, export, calibrate and package a detector (needs the 'train' extra)",
        description="Train YOLO11 from scratch (offline, CPU by default) on a dataset built by `nii dataset build`, "
        "export ONNX, calibrate thresholds on the validation scans, evaluate on the test scans and write a model folder.",
    )
    p.add_argument("--data", required=True, help="dataset folder (nii dataset build)")
    p.add_argument("--out", required=True, help="model folder to write, e.g. detectors/nii-yolo11n-v2")
    p.add_argument("--model", default="yolo11n", help="architecture scale (yolo11n, yolo11s, yolo11-nano-half, yolo11-pico)")
    p.add_argument("--imgsz", type=int, default=320, help="input size = tile size (default 320)")
    p.add_argument("--epochs", type=int, default=18, help="epochs (upper bound under --time-hours; default 18)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-hours", type=float, default=1.35, help="wall-clock cap of the training loop (default 1.35; 0 = none)")
    p.add_argument("--workers", type=int, default=2, help="data-loader workers")
    p.add_argument("--device", default="cpu", help="torch device (default cpu; a GPU is optional)")
    p.add_argument("--optimizer", default="auto", help="Ultralytics optimizer: auto (default), AdamW, SGD, ...")
    p.add_argument("--lr0", type=float, default=None, help="initial learning rate (needs --optimizer other than auto)")
    p.add_argument("--warmup-epochs", type=float, default=3.0, help="learning-rate warm-up epochs (default 3)")
    p.add_argument("--mosaic", type=float, default=0.5, help="probability of a 4-tile mosaic per training sample (default 0.5)")
    p.add_argument("--init-weights", default=None, metavar="PT",
                   help="continue from the weights of an earlier `nii train` run (same classes) instead of from scratch")
    p.add_argument("--close-mosaic", type=int, default=3, help="final epochs without mosaic augmentation (default 3)")
    p.add_argument("--cache", choices=("ram", "disk"), default=None,
                   help="keep decoded tiles in memory or as .npy files so the data loader skips PNG decoding (GPU runs)")
    p.add_argument("--far", type=_far, default=0.01, help="default operating point (default 1%%)")
    p.add_argument("--work-dir", default=None, help="Ultralytics working folder (default: beside --out)")
    p.add_argument("--weights-only", action="store_true",
                   help="stop after training: write model.pt and train_info.json only (e.g. on a lent GPU machine "
                   "without onnx or the validation scans); package them later with --from-weights")
    p.add_argument("--from-weights", default=None, metavar="PT",
                   help="skip training: export, calibrate and evaluate weights written by --weights-only (train_info.json "
                   "beside them); --data must be built with the same seed and settings")
    p.add_argument("--average-with", default=None, metavar="PT",
                   help="with --from-weights: package (1 - MIX) x PT + MIX x the --from-weights network, averaged parameter by "
                   "parameter (e.g. a network and its continuation on new data)")
    p.add_argument("--mix", type=float, default=0.5, help="weight of the --from-weights network in --average-with (default 0.5)")
    p.add_argument("--set-default", action="store_true", help="write detectors/DEFAULT naming the new model")
    p.add_argument("--json", action="store_true", help="print the test metrics as JSON")
    p.set_defaults(handler=_handle)


def _handle(args) -> int:
    import json
    import shlex
    import sys
    from pathlib import Path

    from .._atomic import atomic_write_text
    from ..detect.training import Recipe, train_model
    from ._common import emit_json, stderr_console

    recipe = Recipe(
        model=args.model,
        imgsz=args.imgsz,
        epochs=args.epochs,
        batch=args.batch,
        seed=args.seed,
        time_hours=args.time_hours or None,
        workers=args.workers,
        device=args.device,
        default_far=args.far,
        optimizer=args.optimizer,
        lr0=args.lr0,
        warmup_epochs=args.warmup_epochs,
        close_mosaic=args.close_mosaic,
        mosaic=args.mosaic,
        init_weights=args.init_weights,
        cache=args.cache,
    )
    if args.weights_only and (args.from_weights or args.set_default):
        from ..errors import InvalidParameterError

        raise InvalidParameterError("--weights-only writes no model folder to package: it excludes --from-weights and --set-default")
    con = stderr_console()
    command = "nii " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = train_model(args.data, args.out, recipe=recipe, work_dir=args.work_dir, command=command, progress=lambda s: con.print(s),
                      weights_only=args.weights_only, from_weights=args.from_weights, average_with=args.average_with, mix=args.mix)
    if args.weights_only:
        if args.json:
            emit_json({"model": str(out), "weights": str(Path(out) / "model.pt")})
        return 0
    if args.set_default:
        atomic_write_text(Path(out).parent / "DEFAULT", Path(out).name + "\n")
    metrics_path = Path(out) / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    if args.json:
        emit_json({"model": str(out), "metrics": metrics})
    else:
        con.print(f"model folder: {out}")
        for c, d in metrics.get("classes", {}).items():
            con.print(f"  {c}: Pd@op {d.get('pd_at_operating_point')}  Pd@1%FAR {d.get('pd_at_far_1pct')}  AP50 {d.get('ap50')}")
        if metrics:
            con.print(f"  far_images {metrics.get('far_images')}")
    return 0
