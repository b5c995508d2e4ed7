"""``nii quantize``: int8 post-training quantisation of a packaged detector into a new model folder.

Example::

    nii quantize detectors/nii-yolo11n-v6 --data datasets/det-v2d --out detectors/nii-yolo11n-v6-int8
"""

from __future__ import annotations

__all__ = ["register"]

from .train import _far  # one parser of FAR values for every command


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quantize",
        help="int8-quantise a detector (new model folder, thresholds re-calibrated, test metrics; needs the 'train' extra)",
        description="Quantise MODEL's ONNX network to int8 (onnxruntime static QDQ) with tiles of a `nii dataset build` "
        "folder, re-calibrate the thresholds on its validation scans, evaluate on its test scans and write a new model folder.",
    )
    p.add_argument("model", metavar="MODEL", help="source model folder")
    p.add_argument("--data", required=True, help="dataset folder (nii dataset build) the model was trained on")
    p.add_argument("--out", required=True, help="new model folder (must not exist)")
    p.add_argument("--n-calibration", type=int, default=200, help="tiles for the activation ranges (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--far", type=_far, default=None, help="default operating point (default: the source model's)")
    p.add_argument("--set-default", action="store_true", help="write detectors/DEFAULT naming the new model")
    p.add_argument("--json", action="store_true", help="print the test metrics as JSON")
    p.set_defaults(handler=_handle)


def _handle(args) -> int:
    import json
    import shlex
    import sys
    from pathlib import Path

    from .._atomic import atomic_write_text
    from ..detect.quantize import quantize_model
    from ..errors import InvalidParameterError
    from ._common import emit_json, stderr_console

    if args.n_calibration < 1:
        raise InvalidParameterError(f"--n-calibration must be >= 1, got {args.n_calibration}")
    con = stderr_console()
    command = "nii " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = quantize_model(args.model, args.out, data=args.data, n_calibration=args.n_calibration, seed=args.seed,
                         default_far=args.far, command=command, progress=lambda s: con.print(s))
    if args.set_default:
        atomic_write_text(Path(out).parent / "DEFAULT", Path(out).name + "\n")
    metrics_path = Path(out) / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    if args.json:
        emit_json({"model": str(out), "metrics": metrics})
    else:
        con.print(f"model folder: {out}")
        for c, d in metrics.get("classes", {}).items():
            con.print(f"  {c}: Pd@1%FAR {d.get('pd_at_far_1pct')}  AP50 {d.get('ap50')}")
        if metrics:
            con.print(f"  far_images {metrics.get('far_images')}")
    return 0
