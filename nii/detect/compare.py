"""Paired comparison of two detectors on the same labelled scans (``nii evaluate --compare``).

A single split of a few thousand scans resolves a change of a few points of Pd at best, and the
Wilson intervals of :mod:`nii.detect.evaluate` are the wrong tool to compare two models: they
treat each model's objects as independent and its threshold as fixed, and they ignore that both
models saw the *same* scans. This module answers "is model B better than model A here?" with a
paired bootstrap over scans:

* each resample draws the folder's images with replacement (the same draw for both models), so
  the objects of one scan move together and the two models' errors stay paired;
* in each resample, each model's threshold at each FAR point is taken again on the resample's
  negative images (exactly as :func:`~nii.detect.evaluate.evaluate_records` takes it on the
  whole folder), then its Pd on the resample's objects;
* the reported interval is the 2.5-97.5 percentile range of ``Pd_B - Pd_A`` over the resamples,
  per class and for the class mean (the mean over the classes that have objects), with the
  share of resamples in which B is higher and in which it is lower.

With each model's own operating-point thresholds, ``pd_at_operating_point`` and ``far_images``
are compared the same way (thresholds fixed: they were calibrated elsewhere).

The point estimates are those of ``evaluate_records`` on the same records, so a comparison and
two separate ``nii evaluate`` runs agree.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidParameterError
from .evaluate import _FAR_POINTS, IOU_PD, ImageRecord, _r, best_match_scores, image_class_max
from .thresholds import threshold_for_far

__all__ = ["compare_records"]

logger = logging.getLogger(__name__)


class _Summary:
    """What Pd at a FAR needs of one model's records: negatives' class maxima, objects' best scores."""

    def __init__(self, records: Sequence[ImageRecord], order: Sequence[str], nc: int, iou: float) -> None:
        by_id = {r.image_id: r for r in records}
        recs = [by_id[i] for i in order]
        self.neg_idx = np.array([k for k, r in enumerate(recs) if r.negative], np.int64)
        self.neg_max = np.array([image_class_max(recs[k], nc) for k in self.neg_idx], np.float32).reshape(-1, nc)
        scores = [best_match_scores(r, iou=iou) for r in recs]
        self.obj_scan = np.concatenate([np.full(s.size, k, np.int64) for k, s in enumerate(scores)]) if recs else np.zeros(0, np.int64)
        self.obj_score = np.concatenate(scores) if recs else np.zeros(0, np.float32)
        self.obj_cls = np.concatenate([np.asarray(r.gt_class_ids, np.int64) for r in recs]) if recs else np.zeros(0, np.int64)

    def pd_far(self, w: np.ndarray, far: float, nc: int) -> np.ndarray:
        """Pd of each class ``(nc,)`` at ``far`` with image weights ``w`` (resample counts); nan without objects."""
        reps = w[self.neg_idx].astype(np.int64)
        neg = np.repeat(self.neg_max, reps, axis=0)
        wo = w[self.obj_scan]
        out = np.full(nc, np.nan)
        for c in range(nc):
            sel = self.obj_cls == c
            tot = float(wo[sel].sum())
            if tot == 0 or neg.shape[0] == 0:
                continue
            t = threshold_for_far(neg[:, c], far, floor=1e-6)
            out[c] = float((wo * (sel & (self.obj_score >= t))).sum()) / tot
        return out

    def pd_op(self, w: np.ndarray, thr: np.ndarray, nc: int) -> np.ndarray:
        wo = w[self.obj_scan]
        out = np.full(nc, np.nan)
        for c in range(nc):
            sel = self.obj_cls == c
            tot = float(wo[sel].sum())
            if tot:
                out[c] = float((wo * (sel & (self.obj_score >= thr[c]))).sum()) / tot
        return out

    def far_images(self, w: np.ndarray, thr: np.ndarray) -> float:
        wn = w[self.neg_idx]
        if wn.sum() == 0:
            return float("nan")
        alarms = np.any(self.neg_max >= thr[None, :], axis=1)
        return float((wn * alarms).sum() / wn.sum())


def _check_pairing(records_a: Sequence[ImageRecord], records_b: Sequence[ImageRecord], names: tuple[str, str]) -> list[str]:
    ids_a = [r.image_id for r in records_a]
    ids_b = [r.image_id for r in records_b]
    for ids, name in ((ids_a, names[0]), (ids_b, names[1])):
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise InvalidParameterError(f"{name}: image {dup!r} appears more than once; a paired comparison needs unique image ids")
    if set(ids_a) != set(ids_b):
        only = sorted(set(ids_a) ^ set(ids_b))
        raise InvalidParameterError(
            f"{names[0]} and {names[1]} were not run on the same images ({len(only)} differ, e.g. {only[0]!r}); "
            "run both on the same folder"
        )
    by_b = {r.image_id: r for r in records_b}
    for r in records_a:
        gb = by_b[r.image_id].gt_class_ids
        if not np.array_equal(np.asarray(r.gt_class_ids), np.asarray(gb)):
            raise InvalidParameterError(f"image {r.image_id!r}: the two runs read different truth ({list(r.gt_class_ids)} vs {list(gb)})")
    return ids_a


def _interval(d: np.ndarray) -> dict[str, Any]:
    d = d[np.isfinite(d)]
    if d.size == 0:
        return {"diff_ci95": None, "share_b_higher": None, "share_b_lower": None}
    return {
        "diff_ci95": [_r(float(np.percentile(d, 2.5))), _r(float(np.percentile(d, 97.5)))],
        "share_b_higher": _r(float(np.mean(d > 0))),
        "share_b_lower": _r(float(np.mean(d < 0))),
    }


def _entry(a: float, b: float, boot_a: np.ndarray, boot_b: np.ndarray, n_objects: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {} if n_objects is None else {"n_objects": n_objects}
    fin = np.isfinite(a) and np.isfinite(b)
    out.update({"a": _r(a) if np.isfinite(a) else None, "b": _r(b) if np.isfinite(b) else None,
                "diff": _r(b - a) if fin else None})
    out.update(_interval(boot_b - boot_a))
    return out


def _class_mean(pd: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Mean over the classes with objects in the whole folder (axis -1); nan where one is missing in a resample."""
    v = pd[..., present]
    return v.mean(axis=-1) if v.shape[-1] else np.full(v.shape[:-1], np.nan)


def compare_records(
    records_a: Sequence[ImageRecord],
    records_b: Sequence[ImageRecord],
    classes: Sequence[str],
    *,
    thresholds_a: np.ndarray | None = None,
    thresholds_b: np.ndarray | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    iou: float = IOU_PD,
    names: tuple[str, str] = ("a", "b"),
) -> dict[str, Any]:
    """Paired bootstrap of ``B - A`` (``records_b`` minus ``records_a``) on the same labelled images.

    Parameters
    ----------
    records_a, records_b : sequences of ImageRecord
        Each model's records on the same images (matched by ``image_id``; order is free; the truth
        must agree).
    classes : sequence of str
        The class names both models share, in class-id order.
    thresholds_a, thresholds_b : ndarray (nc,), optional
        Each model's operating-point thresholds; both given: ``pd_at_operating_point`` and
        ``far_images`` are compared too.
    n_boot : int
        Number of resamples (>= 100).
    seed : int
        Seed of the resampling (the result is a pure function of the inputs and the seed).
    iou : float
        IoU for Pd matching (as in ``evaluate_records``).
    names : (str, str)
        Labels of A and B in the result and in error messages.

    Returns
    -------
    dict
        ``{"a", "b", "n_images", "n_negative_images", "n_boot", "seed", "iou_pd",
        "pd_at_far_1pct": {"classes": {name: entry}, "class_mean": entry}, "pd_at_far_5pct": ...,
        ["pd_at_operating_point": ..., "far_images": entry]}`` where an entry holds ``a``, ``b``,
        ``diff`` (``b - a``), ``diff_ci95``, ``share_b_higher`` and ``share_b_lower``.
    """
    nc = len(classes)
    if nc == 0:
        raise InvalidParameterError("need at least one class")
    if int(n_boot) < 100:
        raise InvalidParameterError(f"n_boot must be >= 100 for a 95 % interval, got {n_boot}")
    if (thresholds_a is None) != (thresholds_b is None):
        raise InvalidParameterError("give both models' thresholds or neither")
    order = _check_pairing(records_a, records_b, names)
    n = len(order)
    if n == 0:
        raise InvalidParameterError("no images to compare")
    sa = _Summary(records_a, order, nc, iou)
    sb = _Summary(records_b, order, nc, iou)
    if sa.neg_idx.size == 0:
        raise InvalidParameterError("no negative images: Pd at an image-level FAR needs scans without objects")
    present = np.array([np.any(sa.obj_cls == c) for c in range(nc)])
    ones = np.ones(n, np.int64)

    def draws():
        """The resamples as image counts, the same sequence on every call (kept one at a time:
        ``n_boot x n`` counts at once would be 80 MB for 5,000 images)."""
        rng = np.random.default_rng(seed)
        for _ in range(int(n_boot)):
            yield np.bincount(rng.integers(0, n, n), minlength=n)

    def both(fn_a, fn_b) -> tuple[np.ndarray, np.ndarray]:
        pairs = [(fn_a(w), fn_b(w)) for w in draws()]
        return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])

    out: dict[str, Any] = {
        "a": names[0], "b": names[1], "n_images": n, "n_negative_images": int(sa.neg_idx.size),
        "n_boot": int(n_boot), "seed": int(seed), "iou_pd": iou,
    }

    def block(fn_a, fn_b) -> dict[str, Any]:
        pa, pb = fn_a(ones), fn_b(ones)
        ba, bb = both(fn_a, fn_b)
        cls = {name: _entry(pa[c], pb[c], ba[:, c], bb[:, c], int(np.sum(sa.obj_cls == c))) for c, name in enumerate(classes)}
        mean = _entry(float(_class_mean(pa, present)), float(_class_mean(pb, present)), _class_mean(ba, present), _class_mean(bb, present))
        return {"classes": cls, "class_mean": mean}

    for key, far in _FAR_POINTS.items():
        out[key] = block(lambda w, far=far: sa.pd_far(w, far, nc), lambda w, far=far: sb.pd_far(w, far, nc))
    if thresholds_a is not None:
        ta = np.asarray(thresholds_a, np.float32).reshape(-1)
        tb = np.asarray(thresholds_b, np.float32).reshape(-1)
        if ta.size != nc or tb.size != nc:
            raise InvalidParameterError(f"thresholds must have one value per class ({nc}), got {ta.size} and {tb.size}")
        out["pd_at_operating_point"] = block(lambda w: sa.pd_op(w, ta, nc), lambda w: sb.pd_op(w, tb, nc))
        fa, fb = both(lambda w: sa.far_images(w, ta), lambda w: sb.far_images(w, tb))
        out["far_images"] = _entry(sa.far_images(ones, ta), sb.far_images(ones, tb), fa, fb)
    logger.info("paired bootstrap of %s - %s on %d images (%d resamples)", names[1], names[0], n, n_boot)
    return out
