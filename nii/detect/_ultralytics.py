"""The Ultralytics / torch adapter: the only module of nii that imports them (inside functions).

Ultralytics changes process state when it is imported or run (OpenCV thread count, NumPy and
torch print options, environment variables, a settings file, network look-ups, font and weight
downloads, pip installs). Every public function here runs inside :func:`_contained`, which

* sets ``YOLO_OFFLINE=1`` (no DNS look-ups, no analytics), ``YOLO_AUTOINSTALL=false`` (no pip),
  ``YOLO_CONFIG_DIR`` to a folder nii owns (``$NII_ULTRALYTICS_DIR`` or
  ``~/.cache/nii/ultralytics``), with matplotlib's DejaVuSans copied there as ``Arial.ttf`` so
  that plots never fetch a font;
* silences deprecation warnings raised inside torch/Ultralytics while they run;
* restores the environment, OpenCV's thread count and NumPy's print options afterwards.

Models are built from a YAML (never ``yolo11n.pt``, which would download weights) and trained
from scratch. Results are converted to NumPy / nii types at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FileAccessError, InvalidParameterError, ModelError

__all__ = ["TorchBackend", "available", "average_pt", "export_architecture_onnx", "export_onnx", "model_yaml", "predict_ultralytics", "settings_dir", "train"]

logger = logging.getLogger(__name__)

#: Model scales offered by ``nii train --model``: name -> (base yaml, depth, width, max_channels).
SCALES: Mapping[str, tuple[str, float, float, int]] = {
    "yolo11n": ("yolo11.yaml", 0.50, 0.25, 1024),
    "yolo11s": ("yolo11.yaml", 0.50, 0.50, 1024),
    # a very small YOLO11 for tests and demos (~0.1 M parameters)
    "yolo11-pico": ("yolo11.yaml", 0.33, 0.0625, 256),
    "yolo11-nano-half": ("yolo11.yaml", 0.33, 0.125, 512),
}


def available() -> bool:
    """True when torch and ultralytics can be imported (the ``train`` extra is installed)."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None and importlib.util.find_spec("ultralytics") is not None


def settings_dir() -> Path:
    """Folder given to Ultralytics as ``YOLO_CONFIG_DIR`` (settings file and font)."""
    d = os.environ.get("NII_ULTRALYTICS_DIR")
    if d:
        return Path(d).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nii" / "ultralytics"


def _install_font(cfg_dir: Path) -> None:
    """Copy matplotlib's DejaVuSans to where Ultralytics looks for its fonts (no download)."""
    target_dir = cfg_dir / "Ultralytics"
    target_dir.mkdir(parents=True, exist_ok=True)
    names = ("Arial.ttf", "Arial.Unicode.ttf")
    if all((target_dir / n).is_file() for n in names):
        return
    try:
        import matplotlib

        src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    except ImportError:
        src = None
    if src is None or not src.is_file():
        logger.warning("matplotlib's DejaVuSans.ttf not found: Ultralytics plots are disabled")
        return
    for n in names:
        if not (target_dir / n).is_file():
            shutil.copyfile(src, target_dir / n)


@contextlib.contextmanager
def _contained() -> Iterator[None]:
    """Run Ultralytics offline and undo the process-wide changes it makes."""
    import cv2

    if not available():
        raise ModelError(
            "torch and ultralytics are not installed: install the 'train' extra "
            "(pip install 'nii[train]') to train or to use the Ultralytics backend"
        )
    env_before = dict(os.environ)
    cv2_threads = cv2.getNumThreads()
    np_print = np.get_printoptions()
    cfg = settings_dir()
    cfg.mkdir(parents=True, exist_ok=True)
    _install_font(cfg)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    os.environ.setdefault("YOLO_VERBOSE", "false")
    try:
        with warnings.catch_warnings():
            # deprecation notices raised inside torch / ultralytics internals are theirs to fix,
            # not a reason to fail (test suites turn warnings into errors)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for k in set(os.environ) - set(env_before):
            del os.environ[k]
        for k, v in env_before.items():
            if os.environ.get(k) != v:
                os.environ[k] = v
        cv2.setNumThreads(cv2_threads)
        np.set_printoptions(**np_print)


def model_yaml(scale: str, *, nc: int, channels: int = 3, out_dir: str | os.PathLike) -> Path:
    """Write the architecture YAML of ``scale`` (see :data:`SCALES`) for ``nc`` classes; return its path."""
    if scale not in SCALES:
        raise InvalidParameterError(f"model must be one of {sorted(SCALES)}, got {scale!r}")
    with _contained():
        import yaml
        from ultralytics.utils import ROOT

        base, depth, width, maxc = SCALES[scale]
        src = ROOT / "cfg" / "models" / "11" / base
        d = yaml.safe_load(src.read_text(encoding="utf-8"))
    d["nc"] = int(nc)
    d["channels"] = int(channels)
    d["scales"] = {"z": [depth, width, maxc]}
    d["scale"] = "z"
    # Ultralytics guesses a scale letter from file names like "yolo11n": avoid that pattern so
    # that the explicit "scale" key above is used
    out = Path(out_dir) / f"nii-arch-{scale.replace('yolo', 'y')}-nc{nc}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(d, sort_keys=False), encoding="utf-8")
    return out


#: Augmentation that keeps the meaning of the nii-det/1 channels: no HSV changes (channel 1 is
#: Zeff, channels 0/2 are attenuations; intensity variation comes from the dataset builder's
#: domain randomisation), flips in both axes, mild scale (the pitch is fixed), no rotation.
AUGMENT = {
    "hsv_h": 0.0,
    "hsv_s": 0.0,
    "hsv_v": 0.0,
    "degrees": 0.0,
    "shear": 0.0,
    "perspective": 0.0,
    "translate": 0.1,
    "scale": 0.25,
    "fliplr": 0.5,
    "flipud": 0.5,
    "mosaic": 0.5,
    "mixup": 0.0,
    "copy_paste": 0.0,
}


def _has_polars() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("polars") is not None
    except (ImportError, ValueError):
        return False


def _read_results_csv(path: Path) -> dict[str, list[Any]]:
    """``results.csv`` as ``{column: [values]}`` (what Ultralytics stores in its checkpoints)."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except OSError:
        return {}
    if not rows:
        return {}
    cols: dict[str, list[Any]] = {h.strip(): [] for h in rows[0]}
    for row in rows[1:]:
        for h, v in zip(cols, row):
            try:
                cols[h].append(float(v))
            except ValueError:
                cols[h].append(v)
    return cols


def _csv_results_without_polars(trainer: Any) -> None:
    """Ultralytics reads ``results.csv`` with polars only to copy it into each checkpoint; where
    polars is absent (a lent GPU image, say) read it with the csv module instead."""
    trainer.read_results_csv = lambda: _read_results_csv(Path(trainer.csv))


def train(
    data_yaml: str | os.PathLike,
    *,
    out_dir: str | os.PathLike,
    model: str = "yolo11n",
    nc: int,
    imgsz: int = 320,
    epochs: int = 20,
    batch: int = 16,
    seed: int = 0,
    time_hours: float | None = None,
    workers: int = 2,
    device: str = "cpu",
    val: bool = False,
    close_mosaic: int = 3,
    augment: Mapping[str, float] | None = None,
    extra: Mapping[str, Any] | None = None,
    init_weights: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train a YOLO11 detector from scratch (or on from ``init_weights``) on a YOLO-format dataset.

    Parameters
    ----------
    data_yaml : path
        Ultralytics dataset YAML (written by ``nii dataset build``).
    out_dir : path
        Working folder (Ultralytics ``project``); the run goes to ``out_dir/run``.
    model : str
        Scale name (:data:`SCALES`).
    nc : int
        Number of classes.
    imgsz, epochs, batch, seed, workers, device, val, close_mosaic
        Ultralytics training arguments.
    time_hours : float, optional
        Wall-clock cap; Ultralytics then fits its schedule to the time (overrides ``epochs``).
    augment, extra : mapping, optional
        Overrides of :data:`AUGMENT` and further Ultralytics arguments.
    init_weights : path, optional
        Weights of an earlier run (same classes) to continue from, instead of from scratch.

    Returns
    -------
    dict
        ``{"pt": path of the final weights, "run_dir": ..., "epochs_run": ..., "args": {...}}``.
    """
    out_dir = Path(out_dir).resolve()
    yaml_path = model_yaml(model, nc=nc, out_dir=out_dir)
    args: dict[str, Any] = {
        "data": str(Path(data_yaml).resolve()),
        "imgsz": int(imgsz),
        "epochs": int(epochs),
        "batch": int(batch),
        "seed": int(seed),
        "deterministic": True,
        "workers": int(workers),
        "device": device,
        "project": str(out_dir),
        "name": "run",
        "exist_ok": True,
        "pretrained": False,
        "val": bool(val),
        "plots": False,
        "amp": False,
        "close_mosaic": int(close_mosaic),
        "verbose": False,
        "patience": 1000,
    }
    if time_hours:
        args["time"] = float(time_hours)
    args.update(AUGMENT)
    args.update(dict(augment or {}))
    args.update(dict(extra or {}))
    with _contained():
        from ultralytics import YOLO

        if init_weights is not None:
            if not Path(init_weights).is_file():
                raise FileAccessError("initial weights not found", path=init_weights)
            yolo = YOLO(str(init_weights), task="detect")
            if int(yolo.model.nc) != int(nc):
                raise ModelError(f"initial weights have {yolo.model.nc} classes, the dataset {nc}", path=init_weights)
            # Ultralytics' trainer rebuilds the network from the checkpoint's yaml and drops its
            # weights when `pretrained` is False: name the weights explicitly instead
            args["pretrained"] = str(Path(init_weights).resolve())
        else:
            yolo = YOLO(str(yaml_path), task="detect")
        if not _has_polars():
            yolo.add_callback("on_pretrain_routine_start", _csv_results_without_polars)
        yolo.train(**args)
        trainer = yolo.trainer
        run_dir = Path(trainer.save_dir)
        last = Path(trainer.last)
        best = Path(trainer.best)
        pt = best if best.is_file() else last
        epochs_run = int(getattr(trainer, "epoch", -1)) + 1
    if not pt.is_file():
        raise ModelError("training finished without writing weights", path=run_dir)
    return {"pt": pt, "run_dir": run_dir, "epochs_run": epochs_run, "args": args, "model_yaml": str(yaml_path)}


def export_onnx(pt: str | os.PathLike, out: str | os.PathLike, *, imgsz: int, opset: int | None = None) -> Path:
    """Export ``pt`` to ONNX (dynamic batch and size, simplified) at ``out``."""
    pt = Path(pt)
    kwargs: dict[str, Any] = {"format": "onnx", "imgsz": int(imgsz), "dynamic": True, "simplify": True, "device": "cpu"}
    if opset:
        kwargs["opset"] = int(opset)
    with _contained():
        from ultralytics import YOLO

        produced = Path(YOLO(str(pt), task="detect").export(**kwargs))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(produced), str(out))
    return out


def export_architecture_onnx(scale: str, out: str | os.PathLike, *, nc: int, imgsz: int) -> Path:
    """Export an *untrained* network of ``scale`` (random weights, seed 0) to ONNX at ``out``.

    For cost measurements (``nii bench networks``): inference time does not depend on the weights.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nii-arch-") as tmp:
        yaml_path = model_yaml(scale, nc=nc, out_dir=tmp)
        with _contained():
            import torch
            from ultralytics import YOLO

            with torch.random.fork_rng(devices=[]):  # seed the weights without touching the caller's RNG
                torch.manual_seed(0)
                produced = Path(YOLO(str(yaml_path), task="detect").export(format="onnx", imgsz=int(imgsz), dynamic=True,
                                                                            simplify=True, device="cpu"))
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(produced), str(out))
    return out


def strip_pt(pt: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Copy the weights without optimizer state (what a model folder ships)."""
    with _contained():
        from ultralytics.utils.torch_utils import strip_optimizer

        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pt, out)
        strip_optimizer(str(out))
    return out


def average_pt(a: str | os.PathLike, b: str | os.PathLike, out: str | os.PathLike, *, weight: float) -> Path:
    """Write ``(1 - weight) * a + weight * b`` parameter by parameter (BatchNorm statistics alike).

    Both must be Ultralytics checkpoints of the same architecture (same parameter names and
    shapes), e.g. a network and its continuation on new data ("weight-space ensembling": the
    average often keeps what the first knew and what the second learned). Floating tensors are
    averaged in float32 and stored in ``b``'s dtype; integer buffers (BatchNorm's batch counter)
    are ``b``'s. The rest of the checkpoint (metadata, training arguments) is ``b``'s.
    """
    if not 0.0 <= float(weight) <= 1.0:
        raise InvalidParameterError(f"average weight must lie in [0, 1], got {weight}")
    with _contained():
        import torch

        ckpts = []
        for p in (a, b):
            try:
                ck = torch.load(p, map_location="cpu", weights_only=False)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is reported with its path
                raise ModelError(f"cannot read an Ultralytics checkpoint: {exc}", path=p) from exc
            if not isinstance(ck, dict) or getattr(ck.get("model"), "state_dict", None) is None:
                raise ModelError("not an Ultralytics checkpoint (no 'model')", path=p)
            ckpts.append(ck)
        sa, sb = (ck["model"].state_dict() for ck in ckpts)
        if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
            raise ModelError(f"cannot average networks of different architectures ({a} and {b})", path=b)
        w = float(weight)
        mixed = {k: (((1 - w) * sa[k].float() + w * v.float()).to(v.dtype) if v.is_floating_point() else v) for k, v in sb.items()}
        ckpts[1]["model"].load_state_dict(mixed)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        try:
            torch.save(ckpts[1], tmp)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)  # nothing half-written stays behind
    return out


class TorchBackend:
    """Run ``model.pt`` with torch: ``__call__(batch NCHW float32) -> (N, 4 + nc, A)`` like ONNX."""

    name = "ultralytics"

    def __init__(self, pt: str | os.PathLike, *, config: Any = None, threads: int | None = None) -> None:
        with _contained():
            import torch
            from ultralytics import YOLO

            yolo = YOLO(str(pt), task="detect")
            self._net = yolo.model.float().eval()
            self._torch = torch
        self._threads = threads

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        prev = torch.get_num_threads()
        if self._threads:
            torch.set_num_threads(int(self._threads))
        try:
            with torch.inference_mode():
                y = self._net(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
        finally:
            torch.set_num_threads(prev)
        if isinstance(y, (list, tuple)):
            y = y[0]
        if isinstance(y, dict):  # end-to-end heads return a dict in some versions
            y = y.get("one2many", y.get("one2one", next(iter(y.values()))))
            if isinstance(y, (list, tuple)):
                y = y[0]
        return y.detach().cpu().numpy()


def predict_ultralytics(pt: str | os.PathLike, image: np.ndarray, *, conf: float, iou: float, imgsz: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ultralytics' own predict pipeline on one encoded image (for cross-checks).

    ``image`` is ``uint8 (H, W, 3)`` in nii-det/1 channel order; Ultralytics treats NumPy input
    as BGR and reverses the channels, so it is given reversed. Returns ``(boxes xyxy, scores,
    class_ids)`` as NumPy arrays.
    """
    with _contained():
        from ultralytics import YOLO

        res = YOLO(str(pt), task="detect").predict(
            np.ascontiguousarray(image[..., ::-1]), conf=conf, iou=iou, imgsz=imgsz, device="cpu", verbose=False
        )[0]
        b = res.boxes
        return b.xyxy.cpu().numpy(), b.conf.cpu().numpy(), b.cls.cpu().numpy().astype(np.int64)
