"""Build a two-stage model folder: a detector plus a second-stage crop network (``nii rescorer train``).

1. :func:`extract_candidates` runs the source detector (YOLO only) over folders of labelled scans
   and keeps, for every candidate down to ``min_conf``, its native-resolution crop, its scalar
   inputs and a label: the class of the truth object it overlaps with IoU >= ``IOU_PD`` (its own
   class when it overlaps one of those, else the other object's), or 0 (background).
2. The crop network is trained on them (torch, :mod:`nii.detect._rescorer_torch`) and exported
   to ONNX; the export is checked against torch on a sample of the training crops.
3. :func:`build_two_stage` writes a new model folder: the source's network files, ``rescorer.onnx``,
   ``config.json`` with a ``rescorer`` section, thresholds calibrated on the *final* scores of
   other labelled scans (the source's thresholds are for YOLO scores alone and are not kept),
   ``rescorer_info.json`` (data, seeds, losses, the command), a model card and ``SHA256SUMS``;
   with ``test``, metrics. The folder is assembled aside and renamed into place.

The scans used for training the second stage must be disjoint from those of the calibration and
test folders, and should be scenes the detector was not trained on (its scores on its own
training scenes are optimistic): the shipped recipe uses validation-like scenes from other seeds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidDataError, InvalidParameterError, ModelError
from .rescore import (
    N_SCALARS,
    RESCORER_FILE,
    RescorerConfig,
    candidate_scalars,
    crop_candidates,
    input_kind_index,
)

__all__ = ["CandidateSet", "build_two_stage", "extract_candidates"]

logger = logging.getLogger(__name__)

_SOURCE_ONLY = ("metrics.json", "pr_curve.png", "confusion_matrix.png", "SHA256SUMS", "MODEL_CARD.md", "thresholds.json",
                "recalibrate_info.json", "run.sh")


@dataclasses.dataclass(frozen=True)
class CandidateSet:
    """Second-stage training data: ``crops (N, S, S, 3) uint8``, ``scalars (N, N_SCALARS)``,
    ``labels (N,)`` (0 = background, ``c + 1`` = class ``c``), and per-folder counts."""

    crops: np.ndarray
    scalars: np.ndarray
    labels: np.ndarray
    n_scans: int
    counts: dict[str, Any]


def _labels(boxes: np.ndarray, cls: np.ndarray, gb: np.ndarray, gc: np.ndarray) -> np.ndarray:
    from .evaluate import IOU_PD, box_iou

    lab = np.zeros(boxes.shape[0], np.int64)
    if gb.shape[0] == 0 or boxes.shape[0] == 0:
        return lab
    ious = box_iou(boxes, gb)
    same = np.where(gc[None, :] == cls[:, None], ious, 0.0)
    hit_same = same.max(axis=1) >= IOU_PD
    hit_any = ious.max(axis=1) >= IOU_PD
    lab[hit_same] = cls[hit_same] + 1
    other = hit_any & ~hit_same
    lab[other] = gc[np.argmax(ious[other], axis=1)] + 1
    return lab


def _one_scan(detector: Any, f: Path, config: RescorerConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops, scalars and labels of the candidates of one labelled scan file."""
    from ..containers import RawScan
    from ..io import read
    from ..normalization import normalize

    classes = list(detector.config.classes)
    scan = read(f)
    if isinstance(scan, RawScan):
        scan = normalize(scan)
    truth = scan.truth  # a scan without truth is cleared cargo (a negative), as in evaluation
    names = () if truth is None else tuple(truth.classes)
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise InvalidDataError(f"truth classes {unknown} are not the model's {classes}", path=f)
    gb = np.zeros((0, 4), np.float32) if truth is None else np.asarray(truth.boxes, np.float32).reshape(-1, 4)
    gc = np.array([classes.index(c) for c in names], np.int64)
    boxes, _, cls = detector.candidates(scan)  # the second stage does not see the score
    crops, side = crop_candidates(scan, boxes, config=config)
    sc = candidate_scalars(cls, boxes, pitch_yx=scan.pixel_pitch_mm, side_mm=side, kind=input_kind_index(scan), nc=len(classes))
    return crops, sc, _labels(boxes, cls, gb, gc)


_WORKER: dict[str, Any] = {}


def _worker_init(model: str, config: RescorerConfig) -> None:
    import cv2
    import numba

    from .detector import Detector

    numba.set_num_threads(1)
    cv2.setNumThreads(1)
    _WORKER["det"] = Detector.load(model, backend="onnx", threads=1)
    _WORKER["config"] = config


def _worker_job(f: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _one_scan(_WORKER["det"], Path(f), _WORKER["config"])


def extract_candidates(
    detector: Any,
    folders: Sequence[str | os.PathLike],
    *,
    config: RescorerConfig,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> CandidateSet:
    """Candidates of ``detector`` (which must have no second stage) on labelled scans, with crops
    (a scan without truth counts as a negative). With ``workers > 1`` the scans are shared out
    over that many processes (each loads the detector's folder again); the result is the same,
    in the same order."""
    from .evaluate import _scan_files

    if getattr(detector, "rescorer", None) is not None:
        raise InvalidParameterError("the source model already has a second stage; start from a one-stage model")
    if int(workers) < 1:
        raise InvalidParameterError(f"workers must be >= 1, got {workers}")
    files: list[Path] = []
    for d in folders:
        d = Path(d)
        if not d.is_dir():
            raise InvalidParameterError(f"{d}: training data must be a folder of labelled scans")
        fs = _scan_files(d)
        if not fs:
            raise InvalidDataError(f"no scans (*.h5) found in {d}")
        files += fs
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    if int(workers) > 1 and len(files) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")  # see nii.dataset.builder: no forked Numba pools
        with ProcessPoolExecutor(max_workers=int(workers), mp_context=ctx, initializer=_worker_init,
                                 initargs=(str(detector.folder), config)) as ex:
            for i, r in enumerate(ex.map(_worker_job, [str(f) for f in files], chunksize=8)):
                parts.append(r)
                if progress:
                    progress(i + 1, len(files))
    else:
        for i, f in enumerate(files):
            parts.append(_one_scan(detector, f, config))
            if progress:
                progress(i + 1, len(files))
    s = config.crop
    crops = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, s, s, 3), np.uint8)
    scal = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, N_SCALARS), np.float32)
    labs = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int64)
    names = ["background", *detector.config.classes]
    counts = {"scans": len(files), "candidates": int(labs.size),
              "by_label": {n: int(np.count_nonzero(labs == k)) for k, n in enumerate(names)}}
    return CandidateSet(crops, scal, labs, len(files), counts)


def build_two_stage(
    model: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    data: Sequence[str | os.PathLike],
    calibrate: Sequence[str | os.PathLike],
    test: str | os.PathLike | None = None,
    epochs: int = 12,
    seed: int = 2026,
    config: RescorerConfig | None = None,
    threads: int | None = None,
    workers: int = 1,
    command: str = "",
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Train a second stage for ``model`` on ``data`` and write the two-stage folder ``out``.

    Parameters
    ----------
    model : path or None
        One-stage source model folder (None: the default model).
    out : path
        New model folder (must not exist).
    data : sequence of paths
        Folders of labelled scans to train the second stage on.
    calibrate : sequence of paths
        Folders of labelled scans (with negatives) to calibrate the thresholds on; disjoint from ``data``.
    test : path, optional
        Folder of labelled scans to evaluate the new folder on (``metrics.json``, plots).
    epochs, seed : int
        Training schedule and seed.
    config : RescorerConfig, optional
        Crop geometry and score combination (default: :class:`RescorerConfig` defaults).
    threads : int, optional
        torch threads.
    workers : int
        Processes that extract the candidates (see :func:`extract_candidates`).
    """
    from .._atomic import atomic_dir, atomic_write_text
    from .detector import Detector, resolve_model_dir, write_sha256sums
    from .recalibrate import recalibrated_thresholds
    from .rescore import Rescorer
    from .training import evaluate_folder

    say = progress or (lambda s: logger.info(s))
    cfg_r = config or RescorerConfig()
    src = resolve_model_dir(model)
    out = Path(out)
    if out.exists():
        raise InvalidParameterError(f"{out}: already exists; choose a new folder for the two-stage model")
    if epochs < 1:
        raise InvalidParameterError(f"epochs must be >= 1, got {epochs}")
    if not calibrate:
        raise InvalidParameterError("give at least one folder of calibration scans (--calibrate)")
    for d in [*calibrate, *([test] if test is not None else [])]:
        if not Path(d).is_dir():
            raise InvalidParameterError(f"{d}: must be a folder of labelled scans")
    overlap = {str(Path(a).resolve()) for a in data} & {str(Path(b).resolve()) for b in [*calibrate, *([test] if test else [])]}
    if overlap:
        raise InvalidParameterError(f"training folders must differ from calibration/test folders: {sorted(overlap)}")
    det = Detector.load(src, backend="onnx")
    if det.rescorer is not None:
        raise InvalidParameterError(f"{src.name} already has a second stage; start from a one-stage model")
    from . import _rescorer_torch as rt  # torch: the train extra

    t0 = time.perf_counter()
    say(f"extracting candidates from {', '.join(map(str, data))}")
    cs = extract_candidates(det, data, config=cfg_r, workers=workers,
                            progress=lambda i, n: say(f"  {i}/{n} scans") if i % 500 == 0 or i == n else None)
    t_extract = time.perf_counter() - t0
    say(f"{cs.counts['candidates']} candidates from {cs.n_scans} scans: {cs.counts['by_label']}")
    net, log = rt.train_cropnet(cs.crops, cs.scalars, cs.labels, n_out=det.config.nc + 1, epochs=epochs, seed=seed,
                                threads=threads, progress=say)
    with atomic_dir(out) as work:
        for f in sorted(src.iterdir()):
            if f.is_file() and f.name not in _SOURCE_ONLY and not f.name.startswith("."):
                shutil.copy2(f, work / f.name)
        rt.export_onnx(net, work / cfg_r.file, crop=cfg_r.crop)
        # the export must compute what torch computes
        k = np.random.default_rng(seed).choice(cs.labels.size, size=min(256, cs.labels.size), replace=False)
        p_t = rt.predict(net, cs.crops[k], cs.scalars[k])
        second = Rescorer(work / cfg_r.file, cfg_r, threads=threads, nc=det.config.nc)
        p_o = second.probabilities(cs.crops[k], cs.scalars[k])
        dev = float(np.abs(p_t - p_o).max()) if k.size else 0.0
        if dev > 1e-3:
            raise ModelError(f"the ONNX export of the second stage differs from torch by {dev:.2g}", path=work / cfg_r.file)
        extra = {k2: v for k2, v in det.config.extra.items() if k2 not in ("recalibrated_from",)}
        extra["rescorer"] = cfg_r.to_dict()
        extra["second_stage_of"] = src.name
        cfg = dataclasses.replace(det.config, name=out.name, extra=extra)
        atomic_write_text(work / "config.json", json.dumps(cfg.to_dict(), indent=1) + "\n")
        two = Detector(work, cfg, det.thresholds, det.backend, det.model_hash, batch_size=det.batch_size, rescorer=second)
        say(f"calibrating on the final scores of {', '.join(map(str, calibrate))}")
        th = recalibrated_thresholds(two, calibrate)
        th.save(work / "thresholds.json")
        metrics = None
        if test is not None:
            say(f"evaluating on {test}")
            metrics = evaluate_folder(work, cfg, th, Path(test))
        info = {
            "source": src.name,
            "command": command,
            "data": [str(d) for d in data],
            "calibration_data": [str(d) for d in calibrate],
            "test_data": None if test is None else str(test),
            "candidates": cs.counts,
            "epochs": epochs,
            "seed": seed,
            "rescorer": cfg_r.to_dict(),
            "onnx_vs_torch_max_abs": dev,
            "extract_seconds": round(t_extract, 1),
            "train_log": log,
            "thresholds": th.info,
        }
        atomic_write_text(work / "rescorer_info.json", json.dumps(info, indent=1, default=str) + "\n")
        src_card = (src / "MODEL_CARD.md").read_text(encoding="utf-8") if (src / "MODEL_CARD.md").is_file() else ""
        _write_card(work, name=out.name, src=src.name, th=th, info=info, metrics=metrics, src_card=src_card)
        write_sha256sums(work)
    return out


def _write_card(folder: Path, *, name: str, src: str, th: Any, info: dict[str, Any], metrics: dict[str, Any] | None, src_card: str) -> None:
    from .._atomic import atomic_write_text
    from .recalibrate import card_operating_points, card_source, card_test_metrics

    c = info["candidates"]
    L = [f"# Model card: {name}", "",
         (f"`{src}` followed by a second stage (`{RESCORER_FILE}`): every candidate box of the detector is looked at again "
          "on a crop at the scan's own pitch by a small CNN, and the flag's confidence is the geometric mean of the "
          "detector's score and the CNN's probability for the class. The thresholds were calibrated on these final scores."), "",
         f"Made by: `{info.get('command') or 'nii rescorer train'}`.", "",
         "## Second stage", "",
         (f"Trained on {c['candidates']} candidates from {c['scans']} labelled scans ({', '.join(f'`{d}`' for d in info['data'])}): "
          + ", ".join(f"{k} {v}" for k, v in c["by_label"].items()) + f". {info['epochs']} epoch(s), seed {info['seed']}; "
          f"final loss {info['train_log'][-1]['loss']:.4f}. ONNX export checked against torch (max |dp| {info['onnx_vs_torch_max_abs']:.1e})."), "",
         "## Operating point", "",
         (f"Calibrated on {th.n_negative} negative images of {', '.join(f'`{d}`' for d in info['calibration_data'])}; "
          f"rule `{th.method}`, default FAR {th.default_far:.2%}."), ""]
    L += card_operating_points(th)
    if metrics:
        L += card_test_metrics(metrics)
    L += card_source(src, src_card, note="The first stage's own card follows; its operating point and metrics are for the first stage alone.")
    atomic_write_text(folder / "MODEL_CARD.md", "\n".join(L))
