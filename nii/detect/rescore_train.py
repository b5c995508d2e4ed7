"""Build a two-stage model folder: a detector plus a second-stage crop network (``nii rescorer train``).

1. :func:`extract_candidates` runs the source detector (YOLO only) over folders of labelled scans
   and keeps, for every candidate down to ``min_conf``, its native-resolution crop, its scalar
   inputs and a label: the class of the truth object it overlaps with IoU >= ``IOU_PD`` (its own
   class when it overlaps one of those, else the other object's), or 0 (background).
   They can be saved to an HDF5 file (:func:`save_candidates`, ``nii rescorer extract``) and
   trained on later (:func:`load_candidates`, ``nii rescorer train --candidates``): a few GB of
   crops instead of tens of GB of scans, and no second extraction for another training run.
2. The crop network is trained on them (torch, :mod:`nii.detect._rescorer_torch`) and exported
   to ONNX; the export is checked against torch on a sample of the training crops.
3. :func:`build_two_stage` writes a new model folder: the source's network files, ``rescorer.onnx``,
   ``config.json`` with a ``rescorer`` section, thresholds calibrated on the *final* scores of
   other labelled scans (the source's thresholds are for YOLO scores alone and are not kept),
   ``rescorer_info.json`` (data, seeds, losses, the command), a model card and ``SHA256SUMS``;
   with ``test``, metrics. The folder is assembled aside and renamed into place.
4. :func:`build_ensemble` (``nii rescorer ensemble``) joins the second stages of two-stage folders
   that share one first stage into one ``rescorer.onnx`` whose probabilities are the mean of
   theirs (:func:`ensemble_onnx`), and writes a folder like 3. with thresholds calibrated anew.

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

__all__ = ["CandidateSet", "build_ensemble", "build_two_stage", "ensemble_onnx", "extract_candidates", "load_candidates", "save_candidates"]

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


def read_labelled_scan(f: Path, classes: Sequence[str]) -> tuple[Any, np.ndarray, np.ndarray]:
    """A labelled scan file, normalised, with its truth boxes ``(M, 4)`` and class ids ``(M,)``
    (a scan without truth is cleared cargo, a negative, as in evaluation)."""
    from ..containers import RawScan
    from ..io import read
    from ..normalization import normalize

    classes = list(classes)
    scan = read(f)
    if isinstance(scan, RawScan):
        scan = normalize(scan)
    truth = scan.truth
    names = () if truth is None else tuple(truth.classes)
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise InvalidDataError(f"truth classes {unknown} are not the model's {classes}", path=f)
    gb = np.zeros((0, 4), np.float32) if truth is None else np.asarray(truth.boxes, np.float32).reshape(-1, 4)
    gc = np.array([classes.index(c) for c in names], np.int64)
    return scan, gb, gc


def _one_scan(detector: Any, f: Path, config: RescorerConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops, scalars and labels of the candidates of one labelled scan file."""
    classes = list(detector.config.classes)
    scan, gb, gc = read_labelled_scan(f, classes)
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


def labelled_scan_files(folders: Sequence[str | os.PathLike]) -> list[Path]:
    """The scan files of folders of labelled scans, in order; a missing or empty folder is refused."""
    from .evaluate import _scan_files

    files: list[Path] = []
    for d in folders:
        d = Path(d)
        if not d.is_dir():
            raise InvalidParameterError(f"{d}: training data must be a folder of labelled scans")
        fs = _scan_files(d)
        if not fs:
            raise InvalidDataError(f"no scans (*.h5) found in {d}")
        files += fs
    return files


def map_scans(files: Sequence[Path], one: Callable[[Path], Any], *, workers: int, init: Callable[..., None], initargs: tuple[Any, ...],
              job: Callable[[str], Any], progress: Callable[[int, int], None] | None = None) -> list[Any]:
    """``one(f)`` for every scan file, in order; with ``workers > 1`` on that many spawned processes
    (``init(*initargs)`` once per process, then ``job(str(f))``), with the same results."""
    if int(workers) < 1:
        raise InvalidParameterError(f"workers must be >= 1, got {workers}")
    parts: list[Any] = []
    if int(workers) > 1 and len(files) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")  # see nii.dataset.builder: no forked Numba pools
        with ProcessPoolExecutor(max_workers=int(workers), mp_context=ctx, initializer=init, initargs=initargs) as ex:
            for i, r in enumerate(ex.map(job, [str(f) for f in files], chunksize=8)):
                parts.append(r)
                if progress:
                    progress(i + 1, len(files))
    else:
        for i, f in enumerate(files):
            parts.append(one(f))
            if progress:
                progress(i + 1, len(files))
    return parts


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
    if getattr(detector, "rescorer", None) is not None:
        raise InvalidParameterError("the source model already has a second stage; start from a one-stage model")
    files = labelled_scan_files(folders)
    parts = map_scans(files, lambda f: _one_scan(detector, f, config), workers=workers, init=_worker_init,
                      initargs=(str(detector.folder), config), job=_worker_job, progress=progress)
    s = config.crop
    crops = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, s, s, 3), np.uint8)
    scal = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, N_SCALARS), np.float32)
    labs = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int64)
    return CandidateSet(crops, scal, labs, len(files), _counts(labs, len(files), detector.config.classes))


def _counts(labels: np.ndarray, n_scans: int, classes: Sequence[str]) -> dict[str, Any]:
    names = ["background", *classes]
    return {"scans": int(n_scans), "candidates": int(labels.size),
            "by_label": {n: int(np.count_nonzero(labels == k)) for k, n in enumerate(names)}}


CANDIDATES_FORMAT = "nii-rescorer-candidates"
CANDIDATES_VERSION = 1


def _source_key(detector: Any) -> dict[str, str]:
    """What fixes a detector's candidates: its network file and its config (tiling, NMS, min_conf)."""
    import hashlib

    cfg = json.dumps(detector.config.to_dict(), sort_keys=True, default=str)
    return {"model": str(detector.config.name), "model_sha256": str(detector.model_hash),
            "config_sha256": hashlib.sha256(cfg.encode("utf-8")).hexdigest()}


def save_candidates(
    cs: CandidateSet,
    path: str | os.PathLike,
    *,
    detector: Any,
    config: RescorerConfig,
    folders: Sequence[str | os.PathLike],
) -> Path:
    """Write ``cs`` (extracted by ``detector`` with ``config`` from ``folders``) to the HDF5 file
    ``path``, atomically, with what :func:`load_candidates` checks before using it."""
    import h5py

    from .._atomic import atomic_path

    path = Path(path)
    meta = {"format": CANDIDATES_FORMAT, "version": CANDIDATES_VERSION, **_source_key(detector),
            "rescorer": config.to_dict(), "classes": list(detector.config.classes),
            "folders": [str(Path(d).resolve()) for d in folders], "n_scans": int(cs.n_scans), "counts": cs.counts}
    n = int(cs.labels.shape[0])
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h:
        h.attrs["nii"] = json.dumps(meta)
        h.create_dataset("crops", data=cs.crops, chunks=(max(1, min(n, 256)), *cs.crops.shape[1:]) if n else None,
                         compression="lzf" if n else None)
        h.create_dataset("scalars", data=np.asarray(cs.scalars, np.float32))
        h.create_dataset("labels", data=np.asarray(cs.labels, np.int64))
    return path


def load_candidates(
    path: str | os.PathLike, *, detector: Any, config: RescorerConfig
) -> tuple[CandidateSet, dict[str, Any]]:
    """Read a file of :func:`save_candidates`; refuse one of another detector, another crop
    geometry or another class list (:class:`InvalidDataError` naming the file). Returns the set and
    its description (``folders``, ``n_scans``...)."""
    import h5py

    path = Path(path)
    try:
        h = h5py.File(path, "r")
    except FileNotFoundError:
        raise InvalidDataError("no such candidates file", path=path) from None
    except OSError as exc:
        raise InvalidDataError(f"not an HDF5 file of candidates ({exc})", path=path) from None
    with h:
        try:
            meta = json.loads(h.attrs["nii"])
        except (KeyError, TypeError, ValueError):
            raise InvalidDataError("not a candidates file of `nii rescorer extract` (no nii description)", path=path) from None
        if not isinstance(meta, dict) or meta.get("format") != CANDIDATES_FORMAT:
            raise InvalidDataError("not a candidates file of `nii rescorer extract`", path=path)
        if meta.get("version") != CANDIDATES_VERSION:
            raise InvalidDataError(f"candidates file version {meta.get('version')!r}; this nii reads {CANDIDATES_VERSION}", path=path)
        key = _source_key(detector)
        if meta.get("model_sha256") != key["model_sha256"] or meta.get("config_sha256") != key["config_sha256"]:
            raise InvalidDataError(f"extracted with model {meta.get('model')!r} (network or config differ from "
                                   f"{key['model']!r}): extract again with this model", path=path)
        if meta.get("rescorer") != config.to_dict():
            raise InvalidDataError(f"extracted with crop settings {meta.get('rescorer')}, not {config.to_dict()}", path=path)
        if meta.get("classes") != list(detector.config.classes):
            raise InvalidDataError(f"classes {meta.get('classes')} are not the model's {list(detector.config.classes)}", path=path)
        ds = {k: h.get(k) for k in ("crops", "scalars", "labels")}
        missing = [k for k, d in ds.items() if not isinstance(d, h5py.Dataset)]
        if missing:
            raise InvalidDataError(f"candidates file lacks {missing}", path=path)
        # shapes and types from the headers, before the crops (GB) are read
        c, sc, lb = ds["crops"], ds["scalars"], ds["labels"]
        n, side = (lb.shape[0] if lb.ndim == 1 else -1), config.crop
        if (lb.ndim != 1 or c.dtype != np.uint8 or c.shape != (n, side, side, 3) or sc.shape != (n, N_SCALARS)
                or not np.issubdtype(lb.dtype, np.integer)):
            raise InvalidDataError(f"inconsistent candidates: crops {c.shape} {c.dtype}, scalars {sc.shape}, labels {lb.shape}",
                                   path=path)
        labs = lb[...]
        if n and (labs.min() < 0 or labs.max() > len(detector.config.classes)):
            raise InvalidDataError(f"candidate labels outside 0..{len(detector.config.classes)}", path=path)
        crops = c[...]
        scal = sc[...]
    cs = CandidateSet(crops, scal.astype(np.float32, copy=False), labs.astype(np.int64, copy=False), int(meta.get("n_scans", 0)),
                      dict(meta.get("counts", {})))
    return cs, meta


def _concat(sets: Sequence[CandidateSet], classes: Sequence[str]) -> CandidateSet:
    labs = np.concatenate([c.labels for c in sets])
    n_scans = sum(c.n_scans for c in sets)
    return CandidateSet(np.concatenate([c.crops for c in sets]), np.concatenate([c.scalars for c in sets]), labs, n_scans,
                        _counts(labs, n_scans, classes))


def _check_widths(widths: Sequence[int]) -> tuple[int, ...]:
    """The crop network's stage widths as a tuple, refused unless 3-6 integers in 4-1024."""
    try:
        w = tuple(int(x) for x in widths)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"widths must be integers, got {widths!r}") from exc
    if not 3 <= len(w) <= 6 or any(not 4 <= x <= 1024 for x in w) or any(float(x) != float(y) for x, y in zip(w, widths, strict=True)):
        raise InvalidParameterError(f"widths must be 3 to 6 integers in 4-1024 (one per stride-2 stage), got {list(widths)!r}")
    return w


def build_two_stage(
    model: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    data: Sequence[str | os.PathLike] = (),
    calibrate: Sequence[str | os.PathLike],
    test: str | os.PathLike | None = None,
    candidates: Sequence[str | os.PathLike] = (),
    epochs: int = 12,
    seed: int = 2026,
    config: RescorerConfig | None = None,
    widths: Sequence[int] | None = None,
    device: str | None = None,
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
        Folders of labelled scans to train the second stage on (their candidates are extracted now).
    calibrate : sequence of paths
        Folders of labelled scans (with negatives) to calibrate the thresholds on; disjoint from ``data``.
    test : path, optional
        Folder of labelled scans to evaluate the new folder on (``metrics.json``, plots).
    candidates : sequence of paths
        Files of :func:`save_candidates` (``nii rescorer extract``) of this same source model, trained
        on together with those of ``data``; their scan folders count as training data in the checks.
    epochs, seed : int
        Training schedule and seed.
    config : RescorerConfig, optional
        Crop geometry and score combination (default: :class:`RescorerConfig` defaults).
    widths : sequence of int, optional
        Channels of the crop network's stride-2 stages (3 to 6 of them, each 4-1024; default
        ``CropNet``'s 24, 48, 96, 128, 160, the committed second stages').
    device : str, optional
        torch device to train on (``"cpu"``, the default, or ``"cuda"``); the export and the
        folder are the same either way.
    threads : int, optional
        torch threads.
    workers : int
        Processes that extract the candidates (see :func:`extract_candidates`).
    """
    from .._atomic import atomic_dir, atomic_write_text
    from .detector import Detector, resolve_model_dir, write_sha256sums
    from .rescore import Rescorer

    say = progress or (lambda s: logger.info(s))
    cfg_r = config or RescorerConfig()
    src = resolve_model_dir(model)
    out = Path(out)
    if out.exists():
        raise InvalidParameterError(f"{out}: already exists; choose a new folder for the two-stage model")
    if epochs < 1:
        raise InvalidParameterError(f"epochs must be >= 1, got {epochs}")
    widths = None if widths is None else _check_widths(widths)
    if not calibrate:
        raise InvalidParameterError("give at least one folder of calibration scans (--calibrate)")
    for d in [*calibrate, *([test] if test is not None else [])]:
        if not Path(d).is_dir():
            raise InvalidParameterError(f"{d}: must be a folder of labelled scans")
    if not data and not candidates:
        raise InvalidParameterError("give training scans (--data) or extracted candidates (--candidates)")
    det = Detector.load(src, backend="onnx")
    if det.rescorer is not None:
        raise InvalidParameterError(f"{src.name} already has a second stage; start from a one-stage model")
    loaded = [load_candidates(f, detector=det, config=cfg_r) for f in candidates]
    metas = [m for _, m in loaded]
    sets = [c for c, _ in loaded]
    del loaded
    train_dirs = [str(Path(a).resolve()) for a in data] + [d for m in metas for d in m.get("folders", [])]
    overlap = set(train_dirs) & {str(Path(b).resolve()) for b in [*calibrate, *([test] if test else [])]}
    if overlap:
        raise InvalidParameterError(f"training folders must differ from calibration/test folders: {sorted(overlap)}")
    twice = sorted({d for d in train_dirs if train_dirs.count(d) > 1})
    if twice:
        raise InvalidParameterError(f"the same training scans would be used twice: {twice}")
    from . import _rescorer_torch as rt  # torch: the train extra
    rt.resolve_device(device)  # a device torch cannot use is refused before the extraction

    t0 = time.perf_counter()
    if data:
        say(f"extracting candidates from {', '.join(map(str, data))}")
        sets.append(extract_candidates(det, data, config=cfg_r, workers=workers,
                                       progress=lambda i, n: say(f"  {i}/{n} scans") if i % 500 == 0 or i == n else None))
    cs = sets[0] if len(sets) == 1 else _concat(sets, det.config.classes)
    del sets  # the pieces of a concatenation are not kept beside it
    t_extract = time.perf_counter() - t0
    say(f"{cs.counts['candidates']} candidates from {cs.n_scans} scans: {cs.counts['by_label']}")
    net, log = rt.train_cropnet(cs.crops, cs.scalars, cs.labels, n_out=det.config.nc + 1, epochs=epochs, seed=seed,
                                widths=widths, device=device, threads=threads, progress=say)
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
        _, th, metrics = _configure_calibrate_test(work, det, extra, second, name=out.name, calibrate=calibrate, test=test, say=say)
        info = {
            "source": src.name,
            "command": command,
            "data": [str(d) for d in data],
            "candidates_files": [{"file": str(f), "folders": m.get("folders"), "scans": m.get("n_scans"),
                                  "candidates": m.get("counts", {}).get("candidates")} for f, m in zip(candidates, metas, strict=True)],
            "calibration_data": [str(d) for d in calibrate],
            "test_data": None if test is None else str(test),
            "candidates": cs.counts,
            "epochs": epochs,
            "seed": seed,
            "widths": list(rt.DEFAULT_WIDTHS if widths is None else widths),
            "device": device or "cpu",
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


def ensemble_onnx(paths: Sequence[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Write one second-stage ONNX network whose ``probs`` are the mean of those of ``paths``.

    Every network must take ``crops`` and ``scalars`` and return ``probs`` (the export of
    :func:`nii.detect._rescorer_torch.export_onnx`); their nodes and weights are kept side by
    side under the prefixes ``m0/``, ``m1/``... and fed the same inputs. Needs the ``onnx``
    package (the ``train`` extra); the result runs on plain onnxruntime.
    """
    try:
        import onnx
        from onnx import compose, helper, numpy_helper
    except ImportError as exc:  # pragma: no cover - the train extra
        raise ModelError("joining second stages needs the onnx package: install nii[train]") from exc
    if len(paths) < 2:
        raise InvalidParameterError(f"an ensemble needs at least two networks, got {len(paths)}")
    models = []
    for p in paths:
        try:
            m = onnx.load(str(p))
        except Exception as exc:  # onnx raises its own types (DecodeError...)
            raise ModelError(f"not an ONNX network: {exc}", path=p) from exc
        ins, outs = [i.name for i in m.graph.input], [o.name for o in m.graph.output]
        if ins != ["crops", "scalars"] or outs != ["probs"]:
            raise ModelError(f"a second stage takes ['crops', 'scalars'] and returns ['probs'], this one {ins} -> {outs}", path=p)
        models.append(m)
    opsets = {tuple(sorted((o.domain, o.version) for o in m.opset_import)) for m in models}
    if len(opsets) != 1:
        raise ModelError(f"the networks use different ONNX opsets {sorted(opsets)}; export them with one nii version", path=paths[1])
    nodes: list[Any] = []
    inits: list[Any] = []
    infos: list[Any] = []
    probs: list[str] = []
    for i, m in enumerate(models):
        pre = f"m{i}/"
        pm = compose.add_prefix(m, prefix=pre)
        shared = {pre + "crops": "crops", pre + "scalars": "scalars"}
        for n in pm.graph.node:
            for j, x in enumerate(n.input):
                if x in shared:
                    n.input[j] = shared[x]
        nodes += list(pm.graph.node)
        inits += list(pm.graph.initializer)
        infos += list(pm.graph.value_info)
        probs.append(pm.graph.output[0].name)
    inits.append(numpy_helper.from_array(np.array(1.0 / len(models), np.float32), "ensemble/weight"))
    nodes.append(helper.make_node("Sum", probs, ["ensemble/sum"], name="ensemble/sum"))
    nodes.append(helper.make_node("Mul", ["ensemble/sum", "ensemble/weight"], ["probs"], name="ensemble/mean"))
    graph = helper.make_graph(nodes, "nii-second-stage-ensemble", list(models[0].graph.input), list(models[0].graph.output),
                              initializer=inits, value_info=infos)
    joined = helper.make_model(graph, opset_imports=list(models[0].opset_import), ir_version=models[0].ir_version,
                               producer_name="nii rescorer ensemble")
    onnx.checker.check_model(joined)
    from .._atomic import atomic_write_bytes

    return atomic_write_bytes(out, joined.SerializeToString())


def _training_folders(folder: Path) -> list[str]:
    """The resolved scan folders a two-stage folder's second stage was trained on (``rescorer_info.json``)."""
    f = folder / "rescorer_info.json"
    try:
        info = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the second stage's description ({exc}): it names the scans it was trained on", path=f) from exc
    if "training_folders" in info:  # an ensemble
        return [str(d) for d in info["training_folders"]]
    return [str(Path(d).resolve()) for d in info.get("data", [])] + [
        str(d) for e in info.get("candidates_files", []) for d in (e.get("folders") or [])]


def build_ensemble(
    members: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    calibrate: Sequence[str | os.PathLike],
    test: str | os.PathLike | None = None,
    threads: int | None = None,
    command: str = "",
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Join the second stages of two-stage folders ``members`` into the new folder ``out``.

    The members must share one first stage (the same ``model.onnx``, classes, pitch and tiling)
    and the same crop geometry and score combination, and hold different second stages. The
    new folder is the first member's with a ``rescorer.onnx`` that averages all the members'
    probabilities (:func:`ensemble_onnx`, checked against the members on crops of the
    calibration scans), thresholds calibrated on the final scores of ``calibrate`` (disjoint
    from every member's training scans), ``rescorer_info.json`` naming the members, a model card
    and ``SHA256SUMS``; with ``test``, metrics.
    """
    from .._atomic import atomic_dir, atomic_write_text
    from .detector import Detector, resolve_model_dir, write_sha256sums
    from .rescore import Rescorer

    say = progress or (lambda s: logger.info(s))
    out = Path(out)
    if out.exists():
        raise InvalidParameterError(f"{out}: already exists; choose a new folder for the ensemble")
    if len(members) < 2:
        raise InvalidParameterError(f"an ensemble needs at least two two-stage model folders, got {len(members)}")
    if not calibrate:
        raise InvalidParameterError("give at least one folder of calibration scans (--calibrate)")
    for d in [*calibrate, *([test] if test is not None else [])]:
        if not Path(d).is_dir():
            raise InvalidParameterError(f"{d}: must be a folder of labelled scans")
    folders = [resolve_model_dir(m) for m in members]
    dets = [Detector.load(f, backend="onnx") for f in folders]
    first = dets[0]
    key = ("classes", "encoding", "pitch_mm", "tile_size", "overlap", "input_channels", "nms_iou", "min_conf")
    for f, d in zip(folders, dets, strict=True):
        if d.rescorer is None:
            raise InvalidParameterError(f"{f.name} has no second stage: an ensemble joins two-stage folders")
        if d.rescorer.fusion is not None:
            raise InvalidParameterError(f"{f.name} has an evidence fusion: join the two-stage folders it was fitted on, "
                                        "then fit a fusion for the ensemble (nii rescorer fuse)")
        if d.model_hash != first.model_hash:
            raise InvalidParameterError(f"{f.name} has another first stage than {folders[0].name} (model.onnx differs)")
        cfg_a, cfg_b = first.config.to_dict(), d.config.to_dict()
        diff = [k for k in key if cfg_a.get(k) != cfg_b.get(k)]
        if diff:
            raise InvalidParameterError(f"{f.name} differs from {folders[0].name} in {diff}")
        ra, rb = first.rescorer.config.to_dict(), d.rescorer.config.to_dict()
        if {k: v for k, v in ra.items() if k != "file"} != {k: v for k, v in rb.items() if k != "file"}:
            raise InvalidParameterError(f"{f.name}'s second stage has another crop geometry or combination than {folders[0].name}'s: {rb} vs {ra}")
    shas = [d.rescorer.sha256 for d in dets]
    if len(set(shas)) != len(shas):
        raise InvalidParameterError("the same second-stage network is given twice: an ensemble needs different networks")
    trained = sorted({d for f in folders for d in _training_folders(f)})
    overlap = set(trained) & {str(Path(b).resolve()) for b in [*calibrate, *([test] if test else [])]}
    if overlap:
        raise InvalidParameterError(f"a member was trained on calibration/test scans: {sorted(overlap)}")
    cfg_r = first.rescorer.config
    with atomic_dir(out) as work:
        for f in sorted(folders[0].iterdir()):
            if f.is_file() and f.name not in _SOURCE_ONLY and f.name != cfg_r.file and not f.name.startswith("."):
                shutil.copy2(f, work / f.name)
        ensemble_onnx([d.rescorer.path for d in dets], work / cfg_r.file)
        joined = Rescorer(work / cfg_r.file, cfg_r, threads=threads, nc=first.config.nc)
        # the joined network must compute the mean of its members, on the crops of real candidates
        from .evaluate import _scan_files

        one = Detector(folders[0], first.config, first.thresholds, first.backend, first.model_hash, batch_size=first.batch_size)
        got = [_one_scan(one, f, cfg_r) for f in _scan_files(Path(calibrate[0]))[:8]]
        rng = np.random.default_rng(0)  # and on noise crops, in case those scans have no candidate
        crops = [g[0] for g in got] + [rng.integers(0, 256, (8, cfg_r.crop, cfg_r.crop, 3), dtype=np.uint8)]
        scalars = [g[1] for g in got] + [candidate_scalars(
            rng.integers(0, first.config.nc, 8), np.array([[0, 0, 40, 20]] * 8, np.float32), pitch_yx=(1.0, 1.0),
            side_mm=np.full(8, 60.0), kind=0, nc=first.config.nc)]
        cr, sc = np.concatenate(crops), np.concatenate(scalars)
        want = np.mean([d.rescorer.probabilities(cr, sc) for d in dets], axis=0)
        dev = float(np.abs(joined.probabilities(cr, sc) - want).max())
        if dev > 1e-4:
            raise ModelError(f"the joined second stage differs from the mean of its members by {dev:.2g}", path=work / cfg_r.file)
        extra = {k: v for k, v in first.config.extra.items() if k not in ("recalibrated_from",)}
        extra["ensemble_of"] = [f.name for f in folders]
        _, th, metrics = _configure_calibrate_test(work, first, extra, joined, name=out.name, calibrate=calibrate, test=test, say=say)
        info = {
            "source": extra.get("second_stage_of"),
            "command": command,
            "members": [{"folder": f.name, "rescorer_sha256": s} for f, s in zip(folders, shas, strict=True)],
            "training_folders": trained,
            "calibration_data": [str(d) for d in calibrate],
            "test_data": None if test is None else str(test),
            "joined_vs_members_max_abs": dev,
            "thresholds": th.info,
        }
        atomic_write_text(work / "rescorer_info.json", json.dumps(info, indent=1, default=str) + "\n")
        L = [f"# Model card: {out.name}", "",
             (f"`{extra.get('second_stage_of')}` followed by a second stage that is the mean of {len(folders)} crop CNNs, those of "
              + ", ".join(f"`{f.name}`" for f in folders) + ": every candidate box of the detector is looked at again on a crop at "
              "the scan's own pitch by each network, their class probabilities are averaged, and the flag's confidence is the "
              "geometric mean of the detector's score and that probability. The thresholds were calibrated on these final scores."), "",
             f"Made by: `{command or 'nii rescorer ensemble'}`. Joined network checked against the mean of the members "
             f"(max |dp| {dev:.1e}).", ""]
        from .recalibrate import card_source

        L += _card_calibration(th, calibrate, metrics)
        for f in folders:
            card = (f / "MODEL_CARD.md").read_text(encoding="utf-8") if (f / "MODEL_CARD.md").is_file() else ""
            L += card_source(f.name, card, note="A member's own card; its operating point and metrics are for that member alone.")
        atomic_write_text(work / "MODEL_CARD.md", "\n".join(L))
        write_sha256sums(work)
    return out


def _configure_calibrate_test(work: Path, det: Any, extra: dict[str, Any], rescorer: Any, *, name: str, calibrate: Sequence[str | os.PathLike],
                              test: str | os.PathLike | None, say: Callable[[str], None]) -> tuple[Any, Any, dict[str, Any] | None]:
    """Write ``work/config.json`` (``det``'s config renamed ``name``, with ``extra``),
    calibrate thresholds on the final scores of ``calibrate`` (``thresholds.json``) and, with
    ``test``, evaluate there (``metrics.json``, plots). Returns ``(config, thresholds, metrics)``."""
    from .._atomic import atomic_write_text
    from .detector import Detector
    from .recalibrate import recalibrated_thresholds
    from .training import evaluate_folder

    cfg = dataclasses.replace(det.config, name=name, extra=extra)
    atomic_write_text(work / "config.json", json.dumps(cfg.to_dict(), indent=1) + "\n")
    two = Detector(work, cfg, det.thresholds, det.backend, det.model_hash, batch_size=det.batch_size, rescorer=rescorer)
    say(f"calibrating on the final scores of {', '.join(map(str, calibrate))}")
    th = recalibrated_thresholds(two, calibrate)
    th.save(work / "thresholds.json")
    metrics = None
    if test is not None:
        say(f"evaluating on {test}")
        metrics = evaluate_folder(work, cfg, th, Path(test))
    return cfg, th, metrics


def _card_calibration(th: Any, data: Sequence[Any], metrics: dict[str, Any] | None) -> list[str]:
    """Model-card lines: where the thresholds were calibrated, the operating points, test metrics."""
    from .recalibrate import card_operating_points, card_test_metrics

    L = ["## Operating point", "",
         (f"Calibrated on {th.n_negative} negative images of {', '.join(f'`{d}`' for d in data)}; "
          f"rule `{th.method}`, default FAR {th.default_far:.2%}."), ""]
    L += card_operating_points(th)
    if metrics:
        L += card_test_metrics(metrics)
    return L


def _write_card(folder: Path, *, name: str, src: str, th: Any, info: dict[str, Any], metrics: dict[str, Any] | None, src_card: str) -> None:
    from .._atomic import atomic_write_text
    from .recalibrate import card_source

    c = info["candidates"]
    where = [f"`{d}`" for d in info["data"]]
    where += [f"`{d}` (via `{e['file']}`)" for e in info.get("candidates_files", []) for d in (e.get("folders") or [])]
    L = [f"# Model card: {name}", "",
         (f"`{src}` followed by a second stage (`{RESCORER_FILE}`): every candidate box of the detector is looked at again "
          "on a crop at the scan's own pitch by a small CNN, and the flag's confidence is the geometric mean of the "
          "detector's score and the CNN's probability for the class. The thresholds were calibrated on these final scores."), "",
         f"Made by: `{info.get('command') or 'nii rescorer train'}`.", "",
         "## Second stage", "",
         (f"Trained on {c['candidates']} candidates from {c['scans']} labelled scans ({', '.join(where)}): "
          + ", ".join(f"{k} {v}" for k, v in c["by_label"].items()) + f". {info['epochs']} epoch(s), seed {info['seed']}; "
          f"final loss {info['train_log'][-1]['loss']:.4f}. ONNX export checked against torch (max |dp| {info['onnx_vs_torch_max_abs']:.1e})."), ""]
    L += _card_calibration(th, info["calibration_data"], metrics)
    L += card_source(src, src_card, note="The first stage's own card follows; its operating point and metrics are for the first stage alone.")
    atomic_write_text(folder / "MODEL_CARD.md", "\n".join(L))
