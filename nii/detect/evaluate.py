"""Evaluation of a detector on a labelled folder: Pd at image-level FAR, AP, FROC, plots.

Definitions (also in the model card):

* **negative image**: an image / scan with no truth object. **Image-level FAR** of class ``c`` at
  threshold ``t``: the fraction of negative images with a class-``c`` detection scoring ``>= t``;
  the overall ``far_images`` counts a negative image once if *any* class alarms at the operating
  point (per-class thresholds of ``thresholds.json``).
* **Pd** of class ``c`` at ``t``: the fraction of truth objects of class ``c`` overlapped by a
  class-``c`` detection scoring ``>= t`` with IoU ``>= 0.3`` (``IOU_PD``; lenient because the
  extent of elongated objects such as tusks, and of sacks, is ambiguous — AP50 and AP50-95 give
  the strict localisation measures).
* ``pd_at_far_1pct`` / ``pd_at_far_5pct``: Pd at the lowest threshold whose class FAR on *this*
  folder's negatives is at most 1 % / 5 % (the ROC-style figure); ``pd_at_operating_point``: Pd
  with the thresholds calibrated on validation (what an operator gets).
* **AP50**, **AP50-95**: COCO average precision (pycocotools, the ``train`` extra); None when
  pycocotools is not installed.
* **FROC**: Pd versus the mean number of false-positive boxes per image.
* **Material-anomaly cue** (``evaluate_anomalies``, ``nii evaluate --anomalies``): the share of
  each class's truth objects that an anomaly region covers (``ANOMALY_COVER`` of the truth box,
  any anomaly kind; the cue is an attention aid, not a classifier), the share found by the model
  at its operating point *or* the cue (what an operator is pointed at), and the anomaly burden
  on negative scans (mean regions per scan, share of scans with any).
* **By object kind / mass band** (metrics keys ``by_object_kind``, ``by_object_mass``; simulated scans only):
  Pd of the objects of one catalogue phantom (``tusk``, ``scale_pile``...) or of one class and
  mass band (``ivory 1-10 kg``; the whole object's mass from the simulator), at the class
  thresholds of the whole folder, with the share that gets any same-class candidate at all.
* ``*_ci95``: 95 % Wilson score intervals ``[lo, hi]`` of a Pd (over the class's objects) or of
  ``far_images`` (over the negative images), so that a reader sees what the split can resolve.
  They treat objects as independent and a threshold as fixed: they understate the spread where
  one scan holds several objects, and for ``pd_at_far_*`` they omit the spread of the threshold
  taken on the same negatives. To tell whether one model beats another on the same scans, use
  the paired bootstrap of :mod:`nii.detect.compare` (``nii evaluate --compare``), which
  resamples whole scans and re-takes each threshold on every resample.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidDataError, InvalidParameterError
from .thresholds import threshold_for_far

__all__ = [
    "IOU_PD",
    "MASS_BANDS",
    "ImageRecord",
    "best_match_scores",
    "box_iou",
    "collect",
    "evaluate_anomalies",
    "evaluate_records",
    "mass_band",
    "wilson_interval",
    "write_plots",
]

logger = logging.getLogger(__name__)

IOU_PD = 0.3
#: An anomaly region counts for a truth object when it covers at least this share of its box.
ANOMALY_COVER = 0.3
_FAR_POINTS = {"pd_at_far_1pct": 0.01, "pd_at_far_5pct": 0.05}
#: Mass bands of ``by_object_mass``: (label, lower bound in grams, inclusive), ascending.
MASS_BANDS = (("<10 g", 0.0), ("10-100 g", 10.0), ("0.1-1 kg", 100.0), ("1-10 kg", 1000.0), (">=10 kg", 10000.0))


def wilson_interval(k: int, n: int, *, z: float = 1.959964) -> tuple[float, float] | None:
    """Wilson score interval of a proportion ``k / n`` (95 % for the default ``z``); None if ``n == 0``."""
    k, n = int(k), int(n)
    if n < 0 or not 0 <= k <= n:
        raise InvalidParameterError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return None
    p = k / n
    den = 1.0 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def _ci(hits: np.ndarray) -> list[float] | None:
    """95 % Wilson interval of the mean of a boolean array, rounded, as a JSON-ready list."""
    iv = wilson_interval(int(np.count_nonzero(hits)), int(hits.size))
    return None if iv is None else [_r(iv[0]), _r(iv[1])]


@dataclass(frozen=True, eq=False)
class ImageRecord:
    """Predictions and truth of one image (any frame, as long as both use it)."""

    image_id: str
    boxes: np.ndarray  # (K, 4) xyxy
    scores: np.ndarray  # (K,)
    class_ids: np.ndarray  # (K,)
    gt_boxes: np.ndarray  # (G, 4)
    gt_class_ids: np.ndarray  # (G,)
    kind: str = "dual_energy"
    family: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    scenario: str = ""
    #: the simulator's catalogue phantom of each truth box (``tusk``, ``scale_pile``...), when known
    gt_kinds: tuple[str, ...] = ()
    #: the whole object's mass in grams of each truth box (simulated scans), when known
    gt_mass_g: tuple[float, ...] = ()

    @property
    def negative(self) -> bool:
        return self.gt_boxes.shape[0] == 0


def _intersection(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, inter)``: the boxes as float64 ``(N, 4)``, ``(M, 4)`` and their pairwise intersection areas."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    return a, b, ix * iy


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes ``(N, 4)`` x ``(M, 4)`` -> ``(N, M)``."""
    a, b, inter = _intersection(a, b)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def best_match_scores(rec: ImageRecord, *, iou: float = IOU_PD) -> np.ndarray:
    """For each truth object, the best score of a same-class detection with IoU >= ``iou`` (0 if none)."""
    g = rec.gt_boxes.shape[0]
    if g == 0:
        return np.zeros(0, np.float32)
    if rec.boxes.shape[0] == 0:
        return np.zeros(g, np.float32)
    ious = box_iou(rec.gt_boxes, rec.boxes)
    ok = (ious >= iou) & (rec.gt_class_ids[:, None] == rec.class_ids[None, :])
    return np.where(ok, rec.scores[None, :], 0.0).max(axis=1).astype(np.float32)


def image_class_max(rec: ImageRecord, nc: int) -> np.ndarray:
    """Highest score of each class in the image ``(nc,)`` (0 where none)."""
    out = np.zeros(nc, np.float32)
    if rec.scores.size:
        np.maximum.at(out, rec.class_ids.astype(np.int64), rec.scores.astype(np.float32))
    return out


# ----------------------------------------------------------------------------------------------
# collecting predictions on a folder
# ----------------------------------------------------------------------------------------------


def _kind_of(scan: Any) -> str:
    meta = dict(scan.metadata or {})
    if "input_kind" in meta:
        return str(meta["input_kind"])
    if scan.rendered:
        return str(meta.get("rendering", "rendered"))
    return "dual_energy" if scan.n_energies >= 2 else "single_energy"


def _scan_files(folder: Path) -> list[Path]:
    sub = folder / "scans"
    base = sub if sub.is_dir() else folder
    exts = {".h5", ".hdf5", ".nii5", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".raw", ".json"}
    files = sorted(p for p in base.iterdir() if p.is_file() and p.suffix.lower() in {".h5", ".hdf5"})
    if not files:
        files = sorted(p for p in base.iterdir() if p.is_file() and p.suffix.lower() in exts - {".json"})
    return files


def collect(
    detector: Any,
    data: str | os.PathLike,
    *,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    anomalies: Any = None,
) -> list[ImageRecord]:
    """Run ``detector`` on every labelled item of ``data`` and return one record per item.

    ``data`` is either a folder of scans (``*.h5`` with truth, directly or under ``scans/``; raw
    scans are normalised first) or a YOLO folder (``images/`` + ``labels/``) of encoded tiles at
    the detector pitch; a folder holding both (a split of ``nii dataset build``) is read as scans,
    the unit of the image-level FAR. Candidates are kept down to the model's ``min_conf``. With ``anomalies``
    (``True`` or an :class:`~nii.detect.evidence.AnomalyConfig`) the material-anomaly cue also
    runs on each scan (at the detector pitch) and its boxes go to ``meta["anomaly_boxes"]`` (scans
    only: encoded tiles carry no Zeff map).
    """
    folder = Path(data)
    if not folder.is_dir():
        raise InvalidParameterError(f"--data must be a folder, got {folder}")
    classes = list(detector.config.classes)
    records: list[ImageRecord] = []
    scans_dir = folder / "scans"
    has_scans = scans_dir.is_dir() and any(p.suffix.lower() in (".h5", ".hdf5") for p in scans_dir.iterdir())
    if (folder / "images").is_dir() and not has_scans:
        from ..dataset.yolo import read_labels, read_tile

        imgs = sorted(p for p in (folder / "images").iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if limit:
            imgs = imgs[:limit]
        kinds = _tile_kinds(folder)
        for i, p in enumerate(imgs):
            img = read_tile(p)
            raw = detector.infer_image(img)
            gb, gc = read_labels(folder / "labels" / (p.stem + ".txt"), img.shape[:2])
            info = kinds.get(p.stem, {})
            records.append(ImageRecord(p.stem, raw.boxes, raw.scores, raw.class_ids, gb, gc, kind=info.get("kind", "dual_energy"), family=info.get("family", "")))
            if progress:
                progress(i + 1, len(imgs))
        return records
    files = _scan_files(folder)
    if not files:
        raise InvalidDataError(f"no scans (*.h5) and no YOLO images/ folder found in {folder}")
    if limit:
        files = files[:limit]
    from ..containers import RawScan
    from ..io import read

    for i, f in enumerate(files):
        scan = read(f)
        if isinstance(scan, RawScan):
            from ..normalization import normalize

            # normalise straight to the detector pitch (one fused pass; truth boxes are scaled),
            # or at the scan's own pitch when a second stage looks at native-resolution crops
            two_stage = getattr(detector, "rescorer", None) is not None
            scan = normalize(scan, pitch_mm=None if two_stage else detector.config.pitch_mm)
        truth = scan.truth
        if truth is None:
            logger.warning("%s has no truth: counted as a negative image", f)
            gb, gc = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        else:
            keep = [j for j, c in enumerate(truth.classes) if c in classes]
            if len(keep) != len(truth.classes):
                logger.warning("%s: truth classes %s not in the model are ignored", f, sorted(set(truth.classes) - set(classes)))
            gb = np.asarray(truth.boxes, np.float32)[keep].reshape(-1, 4)
            gc = np.array([classes.index(truth.classes[j]) for j in keep], np.int64)
        boxes, scores, cls = detector.candidates(scan)
        meta = dict(scan.metadata or {})
        kinds = _target_values(meta, "target_kinds", truth, keep if truth is not None else [], str)
        masses = _target_values(meta, "target_mass_g", truth, keep if truth is not None else [], float)
        rec_meta: dict[str, Any] = {"path": str(f)}
        if anomalies:
            from .evidence import AnomalyConfig, material_anomalies

            cfg = anomalies if isinstance(anomalies, AnomalyConfig) else None
            found = material_anomalies(scan, config=cfg)
            rec_meta["anomaly_boxes"] = np.array([a.box_px for a in found], np.float32).reshape(-1, 4)
        records.append(
            ImageRecord(f.stem, boxes, scores, cls, gb, gc, kind=_kind_of(scan), family=str(meta.get("family", meta.get("scenario", ""))),
                        meta=rec_meta, scenario=str(meta.get("scenario", "")), gt_kinds=kinds,
                        gt_mass_g=masses)
        )
        if progress:
            progress(i + 1, len(files))
    return records


def _target_values(meta: dict[str, Any], key: str, truth: Any, keep: Sequence[int], cast: Callable[[Any], Any]) -> tuple[Any, ...]:
    """A per-truth-box list of a simulated scan's metadata (``target_kinds``, ``target_mass_g``)
    for the kept boxes, ``()`` if unknown.

    ``nii dataset build`` writes these lists at the top level, ``nii sim`` under ``simulation``;
    either is in truth order. A list of another length than the truth (a scan edited since), or
    one with a value ``cast`` refuses, is ignored rather than misaligned.
    """
    sim = meta.get("simulation")
    vals = meta.get(key, sim.get(key) if isinstance(sim, dict) else None)
    if truth is None or not isinstance(vals, (list, tuple)) or len(vals) != len(truth.classes):
        return ()
    try:
        return tuple(cast(vals[j]) for j in keep)
    except (TypeError, ValueError):
        return ()


def _tile_kinds(folder: Path) -> dict[str, dict[str, str]]:
    idx = folder / "index.jsonl"
    out: dict[str, dict[str, str]] = {}
    if idx.is_file():
        for line in idx.read_text(encoding="utf-8").splitlines():
            if line.strip():
                d = json.loads(line)
                out[str(d.get("id"))] = {"kind": str(d.get("kind", "dual_energy")), "family": str(d.get("family", ""))}
    return out


# ----------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------


def _coco_ap(records: Sequence[ImageRecord], nc: int) -> tuple[list[float | None], list[float | None]] | None:
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        return None
    images, anns, dets = [], [], []
    aid = 1
    for i, r in enumerate(records):
        images.append({"id": i + 1})
        for b, c in zip(r.gt_boxes, r.gt_class_ids):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            anns.append({"id": aid, "image_id": i + 1, "category_id": int(c) + 1, "bbox": [float(b[0]), float(b[1]), w, h], "area": w * h, "iscrowd": 0})
            aid += 1
        for b, s, c in zip(r.boxes, r.scores, r.class_ids):
            dets.append({"image_id": i + 1, "category_id": int(c) + 1, "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])], "score": float(s)})
    if not anns:
        return [None] * nc, [None] * nc
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c + 1, "name": str(c)} for c in range(nc)]}
        gt.createIndex()
        if not dets:
            return [0.0 if any(r.gt_class_ids.tolist().count(c) for r in records) else None for c in range(nc)], [None] * nc
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = [1, 10, 300]
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"]  # [T, R, K, A, M]
    ap50, ap = [], []
    for k in range(nc):
        p50 = prec[0, :, k, 0, -1]
        pall = prec[:, :, k, 0, -1]
        ap50.append(float(np.mean(p50[p50 > -1])) if np.any(p50 > -1) else None)
        ap.append(float(np.mean(pall[pall > -1])) if np.any(pall > -1) else None)
    return ap50, ap


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), nd)


def evaluate_records(
    records: Sequence[ImageRecord],
    classes: Sequence[str],
    *,
    thresholds: np.ndarray | None = None,
    iou: float = IOU_PD,
    by: bool = True,
) -> dict[str, Any]:
    """Metrics of ``records`` (see module docstring).

    Parameters
    ----------
    records : sequence of ImageRecord
    classes : sequence of str
    thresholds : ndarray (nc,), optional
        Operating-point thresholds (e.g. ``Thresholds.for_far()``); adds ``pd_at_operating_point``
        and ``far_images``.
    iou : float
        IoU for Pd and FROC matching.
    by : bool
        Also break the metrics down by input kind and by scenario family.
    """
    nc = len(classes)
    records = list(records)
    neg = [r for r in records if r.negative]
    neg_max = np.array([image_class_max(r, nc) for r in neg], np.float32).reshape(-1, nc)
    gt_scores = [best_match_scores(r, iou=iou) for r in records]
    gt_cls = [r.gt_class_ids for r in records]
    all_s = np.concatenate(gt_scores) if gt_scores else np.zeros(0, np.float32)
    all_c = np.concatenate(gt_cls) if gt_cls else np.zeros(0, np.int64)
    coco = _coco_ap(records, nc)
    # each class's threshold at each FAR point on this folder's negatives, once for all breakdowns
    far_thr = {key: np.array([threshold_for_far(neg_max[:, c], far, floor=1e-6) for c in range(nc)])
               for key, far in _FAR_POINTS.items()} if neg_max.shape[0] else {}
    per_class: dict[str, Any] = {}
    for c, name in enumerate(classes):
        s = all_s[all_c == c]
        d: dict[str, Any] = {"n_objects": int(s.size)}
        for key in _FAR_POINTS:
            if not far_thr or s.size == 0:
                d[key] = d[key + "_ci95"] = None
                d[key.replace("pd_", "threshold_")] = None
                continue
            t = float(far_thr[key][c])
            d[key] = _r(float(np.mean(s >= t)))
            d[key + "_ci95"] = _ci(s >= t)
            d[key.replace("pd_", "threshold_")] = _r(t, 5)
        if thresholds is not None:
            t = float(thresholds[c])
            d["threshold"] = _r(t, 5)
            d["pd_at_operating_point"] = _r(float(np.mean(s >= t))) if s.size else None
            d["pd_at_operating_point_ci95"] = _ci(s >= t)
            d["far_images_class"] = _r(float(np.mean(neg_max[:, c] >= t))) if neg_max.shape[0] else None
        d["ap50"] = _r(coco[0][c]) if coco else None
        d["ap50_95"] = _r(coco[1][c]) if coco else None
        d["froc"] = _froc(records, c, iou=iou)
        per_class[name] = d
    out: dict[str, Any] = {
        "n_images": len(records),
        "n_negative_images": len(neg),
        "iou_pd": iou,
        "classes": per_class,
        "ap_backend": "pycocotools" if coco is not None else None,
    }
    if thresholds is not None:
        thr = np.asarray(thresholds, np.float32)
        alarms = np.any(neg_max >= thr[None, :], axis=1)
        out["far_images"] = _r(float(np.mean(alarms))) if neg_max.shape[0] else None
        out["far_images_ci95"] = _ci(alarms)
        out["thresholds"] = {n: _r(float(t), 5) for n, t in zip(classes, thr)}
        if all_s.size:
            out["pd_at_operating_point_all"] = _r(float(np.mean(all_s >= thr[all_c])))
    if by:
        out.update(_by_object(records, classes, all_s, all_c, far_thr, thresholds))
        for attr, key in (("kind", "by_input_kind"), ("family", "by_scenario_family"), ("scenario", "by_scenario")):
            groups = sorted({getattr(r, attr) for r in records})
            if len(groups) > 1 or (groups and groups[0]):
                out[key] = {
                    g: _slim(evaluate_records([r for r in records if getattr(r, attr) == g], classes, thresholds=thresholds, iou=iou, by=False))
                    for g in groups
                }
    return out


def mass_band(mass_g: float) -> str:
    """The :data:`MASS_BANDS` label of a mass in grams."""
    label = MASS_BANDS[0][0]
    for name, lo in MASS_BANDS:
        if mass_g >= lo:
            label = name
    return label


def _by_object(
    records: Sequence[ImageRecord],
    classes: Sequence[str],
    gt_scores: np.ndarray,
    gt_class_ids: np.ndarray,
    far_thr: dict[str, np.ndarray],
    thresholds: np.ndarray | None,
) -> dict[str, Any]:
    """``by_object_kind`` and ``by_object_mass`` (module docstring), each where every truth object
    carries the value (scans simulated by nii do; real scans do not).

    ``by_object_kind``: Pd per simulated phantom (``tusk``, ``chopsticks``, ``scale_pile``...).
    ``by_object_mass``: Pd per class and :data:`MASS_BANDS` band of the whole object's mass
    (``"ivory 1-10 kg"``, ordered by class, then band; each entry also names its ``mass_band``).
    Thresholds are the whole folder's (``far_thr`` per FAR point, ``thresholds`` for the operating
    point), so the groups of one class add up to the class's Pd. ``candidate_rate`` is the share
    of objects with any same-class candidate at all (score > 0, down to the model's ``min_conf``):
    a low rate means the network does not see the object, not that the threshold is too high.
    """
    out: dict[str, Any] = {}
    if not records or gt_scores.size == 0:
        return out

    def pd_by_group(groups: np.ndarray) -> dict[str, Any]:
        """Pd of the truth objects of each group label (one label per object, in ``gt_scores`` order)."""
        res: dict[str, Any] = {}
        for group in sorted(set(groups.tolist())):
            m = groups == group
            cs = sorted(set(gt_class_ids[m].tolist()))
            d: dict[str, Any] = {"class": classes[cs[0]] if len(cs) == 1 else [classes[c] for c in cs], "n_objects": int(m.sum())}
            s, c = gt_scores[m], gt_class_ids[m]
            for key in _FAR_POINTS:
                d[key] = _r(float(np.mean(s >= far_thr[key][c]))) if far_thr else None
            if thresholds is not None:
                hit = s >= np.asarray(thresholds, np.float32)[c]
                d["pd_at_operating_point"] = _r(float(np.mean(hit)))
                d["pd_at_operating_point_ci95"] = _ci(hit)
            d["candidate_rate"] = _r(float(np.mean(s > 0)))
            res[group] = d
        return res

    if all(len(r.gt_kinds) == len(r.gt_class_ids) for r in records):
        out["by_object_kind"] = pd_by_group(np.array([k for r in records for k in r.gt_kinds], dtype=object))
    if all(len(r.gt_mass_g) == len(r.gt_class_ids) for r in records):
        bands = [mass_band(m) for r in records for m in r.gt_mass_g]
        labels = np.array([f"{classes[c]} {b}" for c, b in zip(gt_class_ids.tolist(), bands)], dtype=object)
        band_of = dict(zip(labels.tolist(), bands))
        order = {name: k for k, (name, _) in enumerate(MASS_BANDS)}
        g = pd_by_group(labels)
        keys = sorted(g, key=lambda k: (classes.index(g[k]["class"]), order[band_of[k]]))
        out["by_object_mass"] = {k: {"class": g[k]["class"], "mass_band": band_of[k], **{f: v for f, v in g[k].items() if f != "class"}}
                                 for k in keys}
    return out


def _cover(truth: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Share of each truth box ``(G, 4)`` covered by each box ``(K, 4)`` -> ``(G, K)``."""
    t, _, inter = _intersection(truth, boxes)
    area = np.maximum((t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1]), 1e-9)
    return inter / area[:, None]


def evaluate_anomalies(
    records: Sequence[ImageRecord],
    classes: Sequence[str],
    *,
    thresholds: np.ndarray | None = None,
    cover: float = ANOMALY_COVER,
    iou: float = IOU_PD,
) -> dict[str, Any]:
    """Metrics of the material-anomaly cue on records collected with ``anomalies`` (module docstring).

    Returns ``{"n_scans", "cover", "classes": {name: {"n_objects", "recall", "recall_ci95",
    "found_by_model_or_cue", "found_by_model_or_cue_ci95"}}, "anomalies_per_negative_scan",
    "negative_scans_with_anomaly", "negative_scans_with_anomaly_ci95"}``; the model's share is
    taken at ``thresholds`` (omitted without them).
    """
    recs = [r for r in records if "anomaly_boxes" in r.meta]
    if not recs:
        raise InvalidParameterError("no record carries material-anomaly boxes: collect scans with anomalies=True")
    hit_c, hit_any, cls = [], [], []
    for r in recs:
        g = r.gt_boxes.shape[0]
        if g == 0:
            continue
        a = r.meta["anomaly_boxes"]
        cue = (_cover(r.gt_boxes, a) >= cover).any(axis=1) if len(a) else np.zeros(g, bool)
        hit_c.append(cue)
        if thresholds is not None:
            s = best_match_scores(r, iou=iou)
            hit_any.append(cue | (s >= np.asarray(thresholds, np.float32)[r.gt_class_ids]))
        cls.append(r.gt_class_ids)
    hc = np.concatenate(hit_c) if hit_c else np.zeros(0, bool)
    ha = np.concatenate(hit_any) if hit_any else None
    cc = np.concatenate(cls) if cls else np.zeros(0, np.int64)
    per: dict[str, Any] = {}
    for c, name in enumerate(classes):
        m = cc == c
        d: dict[str, Any] = {"n_objects": int(m.sum()), "recall": _r(float(hc[m].mean())) if m.any() else None, "recall_ci95": _ci(hc[m])}
        if ha is not None:
            d["found_by_model_or_cue"] = _r(float(ha[m].mean())) if m.any() else None
            d["found_by_model_or_cue_ci95"] = _ci(ha[m])
        per[name] = d
    neg = [len(r.meta["anomaly_boxes"]) for r in recs if r.negative]
    with_any = np.array([n > 0 for n in neg], bool)
    return {
        "n_scans": len(recs),
        "cover": cover,
        "classes": per,
        "anomalies_per_negative_scan": _r(float(np.mean(neg))) if neg else None,
        "negative_scans_with_anomaly": _r(float(with_any.mean())) if neg else None,
        "negative_scans_with_anomaly_ci95": _ci(with_any),
    }


def _slim(d: dict[str, Any]) -> dict[str, Any]:
    """Drop the FROC curves of a breakdown (kept only at the top level)."""
    for c in d.get("classes", {}).values():
        c.pop("froc", None)
    return d


def _froc(records: Sequence[ImageRecord], c: int, *, iou: float, points: Sequence[float] = (0.0625, 0.125, 0.25, 0.5, 1, 2, 4, 8)) -> list[dict[str, float]]:
    """Pd versus mean false positives per image for class ``c`` at the listed FP rates."""
    n_img = max(len(records), 1)
    tp_scores, fp_scores, n_gt = [], [], 0
    for r in records:
        m = r.class_ids == c
        b, s = r.boxes[m], r.scores[m]
        g = r.gt_boxes[r.gt_class_ids == c]
        n_gt += g.shape[0]
        if b.shape[0] == 0:
            continue
        if g.shape[0]:
            hit = box_iou(b, g).max(axis=1) >= iou
        else:
            hit = np.zeros(b.shape[0], bool)
        fp_scores.append(s[~hit])
        tp_scores.append(best_match_scores(ImageRecord("", b, s, np.full(b.shape[0], c), g, np.full(g.shape[0], c)), iou=iou))
    if n_gt == 0:
        return []
    fps = np.sort(np.concatenate(fp_scores))[::-1] if fp_scores else np.zeros(0)
    gts = np.concatenate(tp_scores) if tp_scores else np.zeros(0)
    out = []
    for p in points:
        k = int(np.floor(p * n_img))
        t = float(fps[k]) + 1e-6 if k < fps.size else 1e-6
        pd = float(np.sum(gts >= t)) / n_gt
        out.append({"fp_per_image": p, "pd": round(pd, 4), "threshold": round(t, 5)})
    return out


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------


def write_plots(records: Sequence[ImageRecord], classes: Sequence[str], out_dir: str | os.PathLike, *, thresholds: np.ndarray | None = None, iou: float = IOU_PD) -> list[Path]:
    """Write ``pr_curve.png`` (precision-recall per class) and ``confusion_matrix.png``.

    Returns the written paths (empty when matplotlib is missing).
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plots written")
        return []
    from .._atomic import atomic_path

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nc = len(classes)
    written = []
    fig, ax = plt.subplots(figsize=(6, 5))
    for c, name in enumerate(classes):
        sc, tp = [], []
        n_gt = 0
        for r in records:
            m = r.class_ids == c
            b, s = r.boxes[m], r.scores[m]
            g = r.gt_boxes[r.gt_class_ids == c]
            n_gt += g.shape[0]
            if b.shape[0] == 0:
                continue
            order = np.argsort(-s)
            used = np.zeros(g.shape[0], bool)
            ious = box_iou(b[order], g) if g.shape[0] else np.zeros((b.shape[0], 0))
            for i in range(order.size):  # greedy matching, by score (the COCO rule)
                j = int(np.argmax(np.where(used, -1, ious[i]))) if g.shape[0] else -1
                ok = j >= 0 and ious[i, j] >= iou and not used[j]
                if ok:
                    used[j] = True
                tp.append(ok)
                sc.append(s[order[i]])
        if n_gt == 0 or not sc:
            continue
        o = np.argsort(-np.asarray(sc))
        tpc = np.cumsum(np.asarray(tp)[o])
        prec = tpc / np.arange(1, tpc.size + 1)
        rec = tpc / n_gt
        ax.plot(rec, prec, label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Precision-recall (IoU >= {iou})")
    if ax.get_lines():
        ax.legend(loc="lower left")
    with atomic_path(out_dir / "pr_curve.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    written.append(out_dir / "pr_curve.png")

    thr = np.full(nc, 0.25, np.float32) if thresholds is None else np.asarray(thresholds, np.float32)
    cm = np.zeros((nc + 1, nc + 1), np.int64)  # rows: predicted (+background), cols: truth (+background)
    for r in records:
        keep = r.scores >= thr[r.class_ids] if r.scores.size else np.zeros(0, bool)
        b, cl = r.boxes[keep], r.class_ids[keep]
        ious = box_iou(r.gt_boxes, b) if r.gt_boxes.shape[0] and b.shape[0] else np.zeros((r.gt_boxes.shape[0], b.shape[0]))
        matched_pred = np.zeros(b.shape[0], bool)
        for gi in range(r.gt_boxes.shape[0]):
            j = int(np.argmax(ious[gi])) if b.shape[0] else -1
            if j >= 0 and ious[gi, j] >= iou:
                cm[cl[j], r.gt_class_ids[gi]] += 1
                matched_pred[j] = True
            else:
                cm[nc, r.gt_class_ids[gi]] += 1
        for j in np.flatnonzero(~matched_pred):
            cm[cl[j], nc] += 1
    labels = list(classes) + ["background"]
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(nc + 1), labels, rotation=45, ha="right")
    ax.set_yticks(range(nc + 1), labels)
    ax.set_xlabel("truth")
    ax.set_ylabel("predicted (at operating point)")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
    fig.tight_layout()
    with atomic_path(out_dir / "confusion_matrix.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    written.append(out_dir / "confusion_matrix.png")
    return written


def records_from_arrays(items: Iterable[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> list[ImageRecord]:
    """Build records from ``(id, boxes, scores, class_ids, gt_boxes, gt_class_ids)`` tuples."""
    return [ImageRecord(i, np.asarray(b, np.float32).reshape(-1, 4), np.asarray(s, np.float32), np.asarray(c, np.int64), np.asarray(gb, np.float32).reshape(-1, 4), np.asarray(gc, np.int64)) for i, b, s, c, gb, gc in items]
