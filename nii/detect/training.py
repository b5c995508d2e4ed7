"""Training recipe and model-folder packaging (``nii train``).

:func:`train_model` runs the whole chain on a dataset built by ``nii dataset build``:

1. train YOLO11 from scratch through the Ultralytics adapter (offline, CPU by default);
2. export ``model.onnx`` (dynamic batch) and a stripped ``model.pt``;
3. write ``config.json`` (classes, ``nii-det/1``, pitch, tile, overlap);
4. calibrate ``thresholds.json`` on the validation split (image-level FAR, onnxruntime backend);
5. evaluate on the test split (``metrics.json``, PR and confusion-matrix PNGs);
6. write ``recipe.toml``, ``MODEL_CARD.md`` and ``SHA256SUMS``.

Only step 1-2 need torch/ultralytics (through :mod:`nii.detect._ultralytics`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_text
from ..encoding import ENCODING
from ..errors import FileAccessError, InvalidParameterError, ModelError

__all__ = ["Recipe", "calibrate_folder", "evaluate_folder", "package_model", "train_model"]

logger = logging.getLogger(__name__)

#: Measured cost of YOLO11n training here: seconds per 320-px image per epoch on 2 CPU cores
#: (v2 and v3 runs: 275 s per epoch of 5,289 tiles; the older 0.17 s figure was on a loaded machine).
SEC_PER_IMAGE_EPOCH_320 = 0.052

#: Optimizers Ultralytics' trainer accepts.
OPTIMIZERS = ("auto", "SGD", "Adam", "AdamW", "NAdam", "RAdam", "RMSProp", "Adamax")
#: Image caches of the Ultralytics data loader (None: decode the PNG tiles every epoch).
CACHES = (None, "ram", "disk")


@dataclass(frozen=True)
class Recipe:
    """Training recipe (written to ``recipe.toml`` in the model folder).

    Parameters
    ----------
    model : str
        Architecture scale (``yolo11n``; see ``nii.detect._ultralytics.SCALES``).
    imgsz : int
        Network input = tile size in pixels.
    epochs : int
        Epochs (upper bound when ``time_hours`` is set).
    batch : int
    seed : int
    time_hours : float or None
        Wall-clock cap of the training loop; Ultralytics fits its LR schedule to it.
    workers : int
        Data-loader workers.
    device : str
        ``cpu`` (default; a GPU is never required).
    default_far : float
        Default operating point of ``thresholds.json``.
    close_mosaic : int
        Final epochs without mosaic augmentation.
    optimizer : str
        Ultralytics optimizer (``auto``, ``AdamW``, ``SGD``...). ``auto`` picks AdamW at
        ``0.002 * 5 / (4 + nc)`` when the run is short. On the 1.45 h CPU budget, AdamW at
        ``lr0 = 0.003`` did worse than ``auto`` in every class (``detectors/README.md``); the
        options are for longer (GPU) schedules.
    lr0 : float or None
        Initial learning rate (None: Ultralytics' choice for ``optimizer``; ignored by ``auto``).
    warmup_epochs : float
        Epochs of learning-rate warm-up.
    mosaic : float
        Probability of Ultralytics' 4-image mosaic per training sample (0.5 in every recipe so far).
    init_weights : str or None
        Start from these weights (a model trained earlier by ``nii train``) instead of from
        scratch: a continuation of an earlier run, e.g. at a lower learning rate.
    cache : {"ram", "disk"} or None
        Ultralytics' image cache: decoded tiles kept in memory (``ram``: ~0.3 MB per 320-px tile)
        or as ``.npy`` beside the PNGs (``disk``), so the data loader skips PNG decoding each
        epoch. On the lent GPU the loader, not the GPU, limited training (~720-900 tiles/s).
    """

    model: str = "yolo11n"
    imgsz: int = 320
    epochs: int = 20
    batch: int = 16
    seed: int = 0
    time_hours: float | None = 1.4
    workers: int = 2
    device: str = "cpu"
    default_far: float = 0.01
    close_mosaic: int = 3
    optimizer: str = "auto"
    lr0: float | None = None
    warmup_epochs: float = 3.0
    mosaic: float = 0.5
    init_weights: str | None = None
    cache: str | None = None

    def __post_init__(self) -> None:
        if self.cache not in CACHES:
            raise InvalidParameterError(f"cache must be one of ram, disk or None, got {self.cache!r}")
        if self.optimizer not in OPTIMIZERS:
            raise InvalidParameterError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.optimizer.lower() == "auto" and self.lr0 is not None:
            raise InvalidParameterError("lr0 needs an explicit optimizer (Ultralytics ignores it with optimizer 'auto')")
        if self.lr0 is not None and not (0.0 < self.lr0 < 1.0):
            raise InvalidParameterError(f"lr0 must be in (0, 1), got {self.lr0!r}")
        if not (0.0 <= self.warmup_epochs <= 10.0):
            raise InvalidParameterError(f"warmup_epochs must be in [0, 10], got {self.warmup_epochs!r}")
        if not (0.0 <= self.mosaic <= 1.0):
            raise InvalidParameterError(f"mosaic must be in [0, 1], got {self.mosaic!r}")

    def ultralytics_extra(self) -> dict[str, Any]:
        """Optimizer arguments passed to Ultralytics."""
        extra: dict[str, Any] = {"optimizer": self.optimizer, "warmup_epochs": float(self.warmup_epochs)}
        if self.mosaic != 0.5:
            extra["mosaic"] = float(self.mosaic)
        if self.lr0 is not None:
            extra["lr0"] = float(self.lr0)
        if self.cache:
            extra["cache"] = self.cache
        return extra

    def estimate_hours(self, n_images: int) -> float:
        """Expected training time on 2 CPU cores from the measured per-image cost."""
        per = SEC_PER_IMAGE_EPOCH_320 * (self.imgsz / 320.0) ** 2
        est = n_images * self.epochs * per / 3600.0
        return min(est, self.time_hours) if self.time_hours else est

    def to_toml(self) -> str:
        lines = ["[recipe]"]
        for k, v in dataclasses.asdict(self).items():
            if v is None:
                continue
            lines.append(f"{k} = {json.dumps(v)}")
        return "\n".join(lines) + "\n"


def _read_manifest(data: Path) -> dict[str, Any]:
    p = data / "dataset.json"
    if not p.is_file():
        raise FileAccessError("dataset.json missing: build the dataset with `nii dataset build`", path=data)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"dataset.json is not valid JSON: {exc}", path=p) from exc


def _split_dir(data: Path, split: str) -> Path | None:
    d = data / split
    if (d / "scans").is_dir() and any((d / "scans").glob("*.h5")):
        return d / "scans"
    if (d / "images").is_dir():
        return d
    return None


def _onnx_detector(folder: Path, config: Any) -> Any:
    from .detector import Detector, _OnnxBackend
    from .rescore import load_rescorer

    be = _OnnxBackend(folder / "model.onnx", threads=None)
    return Detector(folder, config, None, be, "", rescorer=load_rescorer(folder, config.extra, nc=config.nc, classes=config.classes))


def calibrate_folder(folder: Path, config: Any, val_dir: Path, *, default_far: float, progress: Callable[[int, int], None] | None = None) -> Any:
    """Calibrate ``thresholds.json`` of a model folder on a validation folder; return Thresholds."""
    from .recalibrate import calibration_scores
    from .thresholds import calibrate

    det = _onnx_detector(folder, config)
    neg, pos_c, pos_s, n_images = calibration_scores(det, [val_dir], progress=progress)
    if neg.shape[0] == 0:
        raise ModelError(f"the validation data ({val_dir}) hold no negative images: cannot calibrate an image-level FAR")
    th = calibrate(
        config.classes,
        neg,
        pos_classes=pos_c,
        pos_scores=pos_s,
        default_far=default_far,
        floor=config.min_conf,
        info={"calibration_data": str(val_dir), "n_images": n_images},
    )
    th.save(folder / "thresholds.json")
    return th


def evaluate_folder(folder: Path, config: Any, thresholds: Any, test_dir: Path, *, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Evaluate a packaged model on ``test_dir``; write ``metrics.json`` and the plots."""
    from .evaluate import collect, evaluate_records, write_plots

    det = _onnx_detector(folder, config)
    records = collect(det, test_dir, progress=progress)
    thr = thresholds.for_far()
    metrics = evaluate_records(records, config.classes, thresholds=thr)
    metrics["data"] = str(test_dir)
    metrics["operating_far"] = thresholds.default_far
    atomic_write_text(folder / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    write_plots(records, config.classes, folder, thresholds=thr)
    return metrics


def package_model(
    folder: str | os.PathLike,
    *,
    onnx: str | os.PathLike,
    pt: str | os.PathLike | None,
    classes: tuple[str, ...],
    pitch_mm: float,
    tile_size: int,
    overlap: int,
    name: str,
    extra_config: dict[str, Any] | None = None,
) -> Any:
    """Create a model folder with the network files and ``config.json``; return its ModelConfig."""
    from .detector import ModelConfig

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if Path(onnx).resolve() != (folder / "model.onnx").resolve():
        shutil.copyfile(onnx, folder / "model.onnx")
    if pt is not None and Path(pt).resolve() != (folder / "model.pt").resolve():
        shutil.copyfile(pt, folder / "model.pt")
    config = ModelConfig(
        classes=tuple(classes),
        encoding=ENCODING,
        pitch_mm=pitch_mm,
        tile_size=tile_size,
        overlap=overlap,
        input_channels=3,
        name=name,
        extra=dict(extra_config or {}),
    )
    atomic_write_text(folder / "config.json", json.dumps(config.to_dict(), indent=1) + "\n")
    return config


def _device_name(device: Any) -> str:
    d = str(device)
    return f"CUDA GPU {d}" if d.replace(",", "").isdigit() else d


def _fmt(v: Any, ci: Any = None) -> str:
    """A metric as a percentage, with its 95 % interval when given (``43.0 % (36.7–49.6)``)."""
    if v is None:
        return "–"
    if not isinstance(v, float):
        return str(v)
    return f"{100 * v:.1f} %" + (f" ({100 * ci[0]:.1f}–{100 * ci[1]:.1f})" if ci else "")


def write_model_card(folder: Path, *, config: Any, recipe: Recipe, manifest: dict[str, Any], thresholds: Any, metrics: dict[str, Any] | None, train_info: dict[str, Any]) -> Path:
    """Write ``MODEL_CARD.md`` from the recipe, dataset manifest, thresholds and test metrics."""
    L = [f"# Model card: {config.name}", ""]
    if manifest.get("kind") == "synthetic":
        what = (f"A tiny YOLO11 ({recipe.model}) trained from scratch on *synthetic shapes drawn directly in the "
                f"`{config.encoding}` encoding* (no X-ray physics): a demo and test model only, NOT for scans.")
    else:
        what = (f"YOLO11 ({recipe.model}) trained from scratch on simulated dual-energy X-ray scans encoded as "
                f"`{config.encoding}` at {config.pitch_mm:g} mm/px.")
    L += ["## What it is", "", what + f" Tiles of {config.tile_size} px (overlap {config.overlap} px). "
          f"Classes: {', '.join(config.classes)}.", ""]
    L += ["## Data", "", f"Built by: `{manifest.get('command', '?')}`", ""]
    for k in ("seeds", "counts", "held_out_families", "train_families", "input_kinds", "profiles"):
        if k in manifest:
            L.append(f"- {k}: `{json.dumps(manifest[k])}`")
    L += ["", "## Recipe", "", "```toml", recipe.to_toml().rstrip(), "```", ""]
    n_img, n_ep = train_info.get("n_train_images"), train_info.get("epochs_run")
    cpu_h = ""
    if isinstance(n_img, int) and isinstance(n_ep, int):
        hours = n_img * n_ep * SEC_PER_IMAGE_EPOCH_320 * (recipe.imgsz / 320) ** 2 / 3600
        cpu_h = f"; {n_img * n_ep:,} image-epochs, ~{hours:.1f} h of training on 2 CPU cores"
    L += [f"Training ran {train_info.get('epochs_run', '?')} epochs in {train_info.get('train_seconds', 0) / 60:.1f} min "
          f"on {_device_name(train_info.get('device', 'cpu'))} ({train_info.get('n_train_images', '?')} training tiles{cpu_h})."]
    init = train_info.get("init")
    while init:
        L.append(f"It continued from `{Path(init.get('weights', '?')).name}` (sha256 {str(init.get('sha256', '?'))[:12]}…), which had run "
                 f"{init.get('epochs_run', '?')} epochs in {init.get('train_seconds', 0) / 60:.1f} min on {_device_name(init.get('device', '?'))} "
                 f"({init.get('n_train_images', '?')} training tiles; recipe `{json.dumps(init.get('recipe', {}))}`).")
        init = init.get("init")
    wa = train_info.get("weight_average")
    if wa:
        w0, w1 = wa.get("with", {}), wa.get("of", {})
        L.append(f"The packaged weights are not those weights alone but the average {1 - float(wa.get('mix', 0.5)):g} x "
                 f"`{w0.get('weights', '?')}` (sha256 {str(w0.get('sha256', '?'))[:12]}…) + {float(wa.get('mix', 0.5)):g} x "
                 f"`{w1.get('weights', '?')}` (sha256 {str(w1.get('sha256', '?'))[:12]}…, the run above), parameter by parameter "
                 f"with BatchNorm statistics alike (`nii train --from-weights ... --average-with ... --mix ...`).")
    L.append("")
    L += ["## Operating point", "", f"Thresholds calibrated on the validation split ({thresholds.n_negative} negative images, "
          f"FAR resolution {1 / thresholds.n_negative:.2%}), rule `{thresholds.method}`, default FAR {thresholds.default_far:.2%}.", ""]
    for op in thresholds.operating_points():
        L.append(f"- FAR {op['far_target']:.1%}: " + ", ".join(f"{c} {t:.3f}" for c, t in op["thresholds"].items()))
    L.append("")
    if metrics:
        L += ["## Test metrics (held-out seeds" + (" and scenario families)" if manifest.get("held_out_families") else ")"), "",
              (f"{metrics['n_images']} scans, {metrics['n_negative_images']} negative; far_images at the operating point: "
               f"{_fmt(metrics.get('far_images'), metrics.get('far_images_ci95'))}. In brackets: 95 % Wilson intervals."), "",
              "| class | objects | Pd @ op. point | Pd @ 1 % FAR | Pd @ 5 % FAR | AP50 | AP50-95 |", "|---|---|---|---|---|---|---|"]
        for c, d in metrics["classes"].items():
            L.append(f"| {c} | {d['n_objects']} | {_fmt(d.get('pd_at_operating_point'), d.get('pd_at_operating_point_ci95'))} "
                     f"| {_fmt(d.get('pd_at_far_1pct'), d.get('pd_at_far_1pct_ci95'))} | {_fmt(d.get('pd_at_far_5pct'))} "
                     f"| {_fmt(d.get('ap50'))} | {_fmt(d.get('ap50_95'))} |")
        for key in ("by_input_kind", "by_scenario_family"):
            if key in metrics:
                L += ["", f"### {key.replace('_', ' ')}", "", "| group | images | far_images | " + " | ".join(f"Pd {c}" for c in config.classes) + " |",
                      "|---|---|---|" + "---|" * config.nc]
                for g, m in metrics[key].items():
                    L.append(f"| {g or '–'} | {m['n_images']} | {_fmt(m.get('far_images'))} | " + " | ".join(_fmt(m['classes'][c].get('pd_at_operating_point')) for c in config.classes) + " |")
        from .recalibrate import card_object_breakdowns

        parts = card_object_breakdowns(metrics)
        L += ["", *parts[:-1]] if parts else []
        L += ["", "Pd counts a truth object as found when a same-class detection at or above the class threshold overlaps it with IoU >= 0.3; "
              "image-level FAR is the fraction of negative scans with any alarm. See `metrics.json`, `pr_curve.png`, `confusion_matrix.png`.", ""]
    L += ["## Limits", "",
          "- Trained and tested on simulated scans only; real scanners differ (scatter, detector response, clutter statistics). "
          "Re-calibrate `thresholds.json` on local negative traffic before operational use.",
          "- Pseudo-colour screenshots carry only 3 material classes and an assumed pitch; greyscale carries no material information.",
          "- Ivory and bone/PVC/aluminium have the same Zeff: shape is the only cue; pangolin scales and rhino horn are organic like food.",
          "- The material-anomaly cue is reported separately (`origin = material_anomaly`) and is not part of these metrics.",
          "- Evidence is measured on the projection: in clutter every ray also crosses what lies above and below the object. "
          "A tusk packed among clothes reads a box median Zeff of ~7 and a 90th percentile of ~11 (sample scan 01_luggage_tusk), "
          "so the box statistics cannot confirm or veto a flag on their own.",
          "- Latency depends on the machine: measure it with `nii bench detect --model <this folder>`; the figures "
          "measured on 2 CPU cores are in detectors/README.md.", ""]
    return atomic_write_text(folder / "MODEL_CARD.md", "\n".join(L))


#: Dataset settings that must agree between the training build and the calibration/test build
#: when a model is packaged from weights trained elsewhere (same seed => same val/test scenes).
_SAME_SPLITS_KEYS = ("seed", "pitch_mm", "tile_size", "overlap", "held_out_family", "kind_weights", "profiles", "randomize")


def _check_same_splits(train_manifest: dict[str, Any], manifest: dict[str, Any], where: Path) -> None:
    a, b = train_manifest.get("config") or {}, manifest.get("config") or {}
    diff = [k for k in _SAME_SPLITS_KEYS if k in a and k in b and a[k] != b[k]]
    if diff:
        raise InvalidParameterError(
            "the weights were trained on a dataset built with other settings than this one ("
            + ", ".join(f"{k}: {a[k]!r} vs {b[k]!r}" for k in diff)
            + "): its validation/test scenes would not be held out from training", path=where)


def _read_train_info(weights: Path) -> dict[str, Any]:
    p = weights.parent / "train_info.json"
    if not p.is_file():
        raise FileAccessError("train_info.json missing beside the weights (write them with `nii train --weights-only`)", path=weights)
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"train_info.json is not valid JSON: {exc}", path=p) from exc
    if not isinstance(info.get("recipe"), dict) or not isinstance(info.get("dataset_manifest"), dict):
        raise ModelError("train_info.json lacks 'recipe' or 'dataset_manifest' (not written by `nii train --weights-only`)", path=p)
    return info


def _init_record(weights: Path) -> dict[str, Any]:
    """What a continued run started from: the earlier run's own record, where it is beside the weights."""
    if not weights.is_file():
        raise FileAccessError("initial weights not found", path=weights)
    rec: dict[str, Any] = {"weights": str(weights), "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
    p = weights.parent / "train_info.json"
    if p.is_file():
        try:
            prior = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            prior = {}
        rec.update({k: prior[k] for k in ("epochs_run", "train_seconds", "device", "n_train_images", "recipe", "init") if k in prior})
    return rec


def train_model(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    recipe: Recipe,
    name: str | None = None,
    work_dir: str | os.PathLike | None = None,
    command: str = "",
    progress: Callable[[str], None] | None = None,
    weights_only: bool = False,
    from_weights: str | os.PathLike | None = None,
    average_with: str | os.PathLike | None = None,
    mix: float = 0.5,
) -> Path:
    """Train, export, calibrate, evaluate and package a model folder at ``out``; return it.

    The chain can be split across machines (train on a lent GPU, package on the CPU box):

    * ``weights_only=True`` stops after training: ``out`` gets the stripped ``model.pt`` and a
      ``train_info.json`` holding the recipe, the training dataset's manifest and the training
      log; no ONNX export, validation scans or test split are needed.
    * ``from_weights=PT`` skips training: ``PT`` (with its ``train_info.json`` beside it) is
      exported, calibrated on ``data``'s validation scans and evaluated on its test scans. The
      recipe recorded at training time is used (``recipe`` is ignored) and ``data`` must have been
      built with the same seed and settings, so that its val/test scenes are disjoint from training.
    * ``average_with=PT0`` (with ``from_weights``) packages ``(1 - mix) * PT0 + mix * PT``,
      averaged parameter by parameter (BatchNorm statistics alike), e.g. a network and its
      continuation on new data (how nii-yolo11n-v13 was made from v6 and its continuation). The recipe and
      training record are ``PT``'s; the average is recorded in ``train_info.json`` and the card.
    """
    from . import _ultralytics as ul
    from .detector import write_sha256sums

    if weights_only and from_weights is not None:
        raise InvalidParameterError("weights_only and from_weights exclude each other")
    if average_with is not None:
        if from_weights is None:
            raise InvalidParameterError("average_with needs from_weights (the network to average it with)")
        if not 0.0 <= float(mix) <= 1.0:
            raise InvalidParameterError(f"mix must lie in [0, 1], got {mix}")
        if not Path(average_with).is_file():
            raise FileAccessError("weights to average with not found", path=average_with)
    data = Path(data).resolve()
    out = Path(out)
    manifest = _read_manifest(data)
    classes = tuple(manifest["classes"])
    name = name or out.name
    say = progress or (lambda s: logger.info(s))
    if from_weights is not None:
        weights = Path(from_weights)
        if not weights.is_file():
            raise FileAccessError("weights file not found", path=weights)
        prior = _read_train_info(weights)
        recipe = Recipe(**prior["recipe"])
        train_manifest = prior["dataset_manifest"]
        _check_same_splits(train_manifest, manifest, data)
        if tuple(train_manifest.get("classes", classes)) != classes:
            raise InvalidParameterError(f"classes differ: weights {train_manifest.get('classes')} vs dataset {list(classes)}", path=data)
        info = {k: prior[k] for k in ("epochs_run", "train_seconds", "device", "n_train_images", "init") if k in prior}
        ul_args = prior.get("ultralytics_args", {})
        train_command = prior.get("command", "")
        out.mkdir(parents=True, exist_ok=True)
        if average_with is not None:
            info["weight_average"] = {"mix": float(mix), "of": _init_record(weights), "with": _init_record(Path(average_with))}
            ul.average_pt(average_with, weights, out / "model.pt", weight=float(mix))
            say(f"averaged {1 - float(mix):g} x {average_with} + {float(mix):g} x {weights}")
        elif weights.resolve() != (out / "model.pt").resolve():
            shutil.copyfile(weights, out / "model.pt")
        say(f"packaging weights trained on {_device_name(info.get('device', '?'))} ({info.get('epochs_run', '?')} epochs); exporting")
    if int(manifest.get("tile_size", recipe.imgsz)) != recipe.imgsz:
        raise InvalidParameterError(f"recipe imgsz {recipe.imgsz} differs from the dataset tile size {manifest.get('tile_size')}")
    if from_weights is None:
        train_manifest = manifest
        train_command = command
        work = Path(work_dir) if work_dir else out.parent / f".{out.name}-work"
        n_train = len(list((data / "train" / "images").glob("*.png")))
        say(f"training {recipe.model} on {n_train} tiles (estimated {recipe.estimate_hours(n_train):.2f} h on 2 cores)")
        t0 = time.perf_counter()
        res = ul.train(
            data / "data.yaml",
            out_dir=work,
            model=recipe.model,
            nc=len(classes),
            imgsz=recipe.imgsz,
            epochs=recipe.epochs,
            batch=recipe.batch,
            seed=recipe.seed,
            time_hours=recipe.time_hours,
            workers=recipe.workers,
            device=recipe.device,
            close_mosaic=recipe.close_mosaic,
            extra=recipe.ultralytics_extra(),
            init_weights=recipe.init_weights,
        )
        train_s = time.perf_counter() - t0
        say(f"trained {res['epochs_run']} epochs in {train_s / 60:.1f} min")
        info = {"epochs_run": res["epochs_run"], "train_seconds": train_s, "device": recipe.device, "n_train_images": n_train}
        if recipe.init_weights:
            info["init"] = _init_record(Path(recipe.init_weights))
        ul_args = res["args"]
        out.mkdir(parents=True, exist_ok=True)
        ul.strip_pt(res["pt"], out / "model.pt")
        log = Path(res["run_dir"]) / "results.csv"
        if log.is_file():
            shutil.copyfile(log, out / "train_log.csv")
        if weights_only:
            atomic_write_text(out / "train_info.json", json.dumps(
                {**info, "recipe": dataclasses.asdict(recipe), "command": command, "dataset_manifest": manifest,
                 "ultralytics_args": ul_args}, indent=1, default=str) + "\n")
            say(f"weights written to {out / 'model.pt'} (package them with `nii train --from-weights`)")
            return out
    ul.export_onnx(out / "model.pt", out / "model.onnx", imgsz=recipe.imgsz)
    config = package_model(
        out,
        onnx=out / "model.onnx",
        pt=out / "model.pt",
        classes=classes,
        pitch_mm=float(manifest["pitch_mm"]),
        tile_size=int(manifest["tile_size"]),
        overlap=int(manifest.get("overlap", 64)),
        name=name,
        extra_config={"model_arch": recipe.model, "dataset": train_manifest.get("name", data.name)},
    )
    commands = {"dataset": train_manifest.get("command", ""), "train": train_command}
    if from_weights is not None:
        commands["eval_dataset"] = manifest.get("command", "")
        commands["package"] = command
    atomic_write_text(out / "recipe.toml", recipe.to_toml() + "\n[commands]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in commands.items()))
    val_dir = _split_dir(data, "val")
    if val_dir is None:
        raise ModelError("the dataset has no validation split (val/scans or val/images)", path=data)
    say(f"calibrating thresholds on {val_dir}")
    th = calibrate_folder(out, config, val_dir, default_far=recipe.default_far)
    metrics = None
    test_dir = _split_dir(data, "test")
    if test_dir is not None:
        say(f"evaluating on {test_dir}")
        metrics = evaluate_folder(out, config, th, test_dir)
    atomic_write_text(out / "train_info.json", json.dumps(
        {**info, "recipe": dataclasses.asdict(recipe), "command": train_command, "dataset_manifest": train_manifest,
         "ultralytics_args": ul_args}, indent=1, default=str) + "\n")
    card_manifest = manifest
    if from_weights is not None:
        card_manifest = {**manifest, "command": train_manifest.get("command", ""),
                         "counts": {**manifest.get("counts", {}), "train": (train_manifest.get("counts") or {}).get("train")}}
    write_model_card(out, config=config, recipe=recipe, manifest=card_manifest, thresholds=th, metrics=metrics, train_info=info)
    write_sha256sums(out)
    return out
