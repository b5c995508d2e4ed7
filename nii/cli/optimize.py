"""``nii optimize``: rewrite a model folder's ONNX network into the faster equivalent graph.

Example::

    nii optimize detectors/nii-yolo11n-v13-int8-2s-ens
"""

from __future__ import annotations

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "optimize",
        help="rewrite a detector's model.onnx to take uint8 tiles and compute faster, same outputs bit for bit (needs the 'train' extra)",
        description="Rewrite MODEL's model.onnx in place: uint8 NHWC tiles as input (no float32 batch; an int8 network "
        "takes the tile bytes as its quantised input) and every Softmax on its input's last axis. The rewritten graph "
        "must give bit-identical outputs on a check batch holding every byte value, else nothing is written. "
        "config.json records the rewrite; SHA256SUMS is rewritten. A rewritten float32 model can no longer be the "
        "source of `nii quantize`: quantise first, then optimise (`nii quantize` optimises its output itself).",
    )
    p.add_argument("model", metavar="MODEL", help="model folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the random tiles in the check batch")
    p.add_argument("--json", action="store_true", help="print what was rewritten as JSON")
    p.set_defaults(handler=_handle)


def _handle(args) -> int:
    from ..detect.graph import optimize_model_folder
    from ._common import emit_json, stderr_console

    info = optimize_model_folder(args.model, seed=args.seed)
    if args.json:
        emit_json({"model": str(args.model), **info})
    else:
        stderr_console().print(f"{args.model}: input {info['input']}; Softmax nodes moved to the last axis: "
                               f"{info['softmax_moved_to_last_axis']}; outputs bit-identical on {info['checked_tiles']} check tiles")
    return 0
