"""Re-calibrate a detector's operating point on other scans (``nii calibrate thresholds``).

The thresholds of a model folder (``thresholds.json``) hold the best score of each class on
every negative calibration image, so the operating point for any image-level false-alarm rate
can be derived from them (:mod:`nii.detect.thresholds`). This module replaces or extends that
set of negative images:

* a site re-calibrates on its own cleared cargo (scans with no truth count as negatives), so
  that ``--far 1%`` means one alarm in a hundred of *its* scans rather than of simulated ones;
* with ``add=True`` the new negatives are added to the model's existing ones: more negatives
  give a threshold that is less at the mercy of the few loudest images (the standard error of
  an image-level FAR of 1 % over ``N`` images is ``sqrt(0.01 / N)``).

:func:`recalibrated_thresholds` computes the new :class:`~nii.detect.thresholds.Thresholds`;
:func:`recalibrate_model` writes them into a *new* model folder: the network files are copied
unchanged; ``thresholds.json``, ``config.json`` (name and
provenance), ``MODEL_CARD.md`` (a new operating-point section above the source card) and
``SHA256SUMS`` are rewritten. With ``test`` the copy is evaluated there (``metrics.json`` and
plots); without it the source's metrics, measured at the source's thresholds, are left out
rather than passed on as this folder's.
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

from ..errors import InvalidParameterError, ModelError

__all__ = ["calibration_scores", "recalibrate_model", "recalibrated_thresholds"]

logger = logging.getLogger(__name__)

#: Files of the source folder that describe its own evaluation; not copied (see module docstring).
_SOURCE_ONLY = ("metrics.json", "pr_curve.png", "confusion_matrix.png", "SHA256SUMS", "MODEL_CARD.md")


def calibration_scores(detector: Any, folders: Sequence[str | os.PathLike], *,
                       progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Run ``detector`` over ``folders`` and return ``(neg_scores (N, nc), pos_classes, pos_scores, n_images)``.

    ``neg_scores`` holds the best score of each class on each negative image (no truth object);
    ``pos_classes`` / ``pos_scores`` the class of each truth object and the best same-class score
    matched to it (0 if none).
    """
    from .evaluate import best_match_scores, collect, image_class_max

    nc = detector.config.nc
    negs: list[np.ndarray] = []
    pos_c: list[np.ndarray] = []
    pos_s: list[np.ndarray] = []
    n = 0
    for folder in folders:
        records = collect(detector, folder, progress=progress)
        n += len(records)
        negs += [image_class_max(r, nc) for r in records if r.negative]
        pos_c += [r.gt_class_ids for r in records]
        pos_s += [best_match_scores(r) for r in records]
    neg = np.array(negs, np.float32).reshape(-1, nc)
    pc = np.concatenate(pos_c) if pos_c else np.zeros(0, np.int64)
    ps = np.concatenate(pos_s) if pos_s else np.zeros(0, np.float32)
    return neg, pc.astype(np.int64), ps.astype(np.float32), n


def recalibrated_thresholds(
    detector: Any,
    data: Sequence[str | os.PathLike],
    *,
    add: bool = False,
    default_far: float | None = None,
    method: str | None = None,
) -> Any:
    """Thresholds of ``detector`` calibrated on the scans of ``data``.

    Parameters
    ----------
    detector : Detector
        The model (its current thresholds give the defaults and, with ``add``, negatives).
    data : sequence of paths
        Folders of scans (``*.h5``, directly or under ``scans/``) or YOLO tile folders; scans
        without truth are negatives.
    add : bool
        Keep the model's current negative calibration images and add the new ones.
    default_far : float, optional
        Default operating point (default: the model's).
    method : {"global", "per_class"}, optional
        Threshold rule; default: the better on the truth objects of ``data`` when it has some,
        else the model's current rule.
    """
    from .thresholds import METHODS, calibrate

    folders = [Path(d) for d in data]
    if not folders:
        raise InvalidParameterError("give at least one folder of calibration scans (--data)")
    for d in folders:
        if not d.is_dir():
            raise InvalidParameterError(f"{d}: calibration data must be a folder of scans")
    if method is not None and method not in METHODS:
        raise InvalidParameterError(f"method must be one of {METHODS}, got {method!r}")
    src_th = detector.thresholds
    far = src_th.default_far if default_far is None else float(default_far)
    t0 = time.perf_counter()
    neg, pos_c, pos_s, n_images = calibration_scores(detector, folders)
    n_new = int(neg.shape[0])
    if add:
        neg = np.vstack([np.asarray(src_th.neg_scores, np.float32), neg])
    if neg.shape[0] == 0:
        raise ModelError("the calibration scans hold no negative images (scans without contraband): "
                         "cannot calibrate an image-level FAR", path=folders[0])
    have_pos = pos_c.size > 0
    info = {
        "calibration_data": [str(d) for d in folders],
        "n_images": n_images,
        "n_negative_new": n_new,
        "n_negative_from_source": int(src_th.n_negative) if add else 0,
        "source_calibration": src_th.info.get("calibration_data"),
        "score_seconds": round(time.perf_counter() - t0, 1),
    }
    return calibrate(detector.config.classes, neg, pos_classes=pos_c if have_pos else None,
                     pos_scores=pos_s if have_pos else None, default_far=far, floor=detector.config.min_conf,
                     method=method if (method is not None or have_pos) else src_th.method, info=info)


def recalibrate_model(
    model: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    data: Sequence[str | os.PathLike],
    add: bool = False,
    default_far: float | None = None,
    method: str | None = None,
    test: str | os.PathLike | None = None,
    overlap: int | None = None,
    command: str = "",
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write a copy of ``model`` with thresholds calibrated on ``data`` into the new folder ``out``.

    ``model`` is a model folder (verified against its ``SHA256SUMS``) or None for the default
    model; ``out`` must not exist (the folder is assembled aside and renamed into place);
    ``test`` is an optional folder of labelled scans to evaluate the copy on (``metrics.json``,
    plots); ``overlap`` sets the copy's minimum tile overlap in pixels (the calibration scans and
    the test run with it; with ``add`` the source's negatives keep the source's tiling). The other
    parameters are those of :func:`recalibrated_thresholds`.
    """
    from .._atomic import atomic_dir, atomic_write_text
    from .detector import Detector, resolve_model_dir, write_sha256sums
    from .thresholds import image_far
    from .training import evaluate_folder

    say = progress or (lambda s: logger.info(s))
    src = resolve_model_dir(model)
    out = Path(out)
    if out.exists():
        raise InvalidParameterError(f"{out}: already exists; choose a new folder for the re-calibrated model")
    if test is not None and not Path(test).is_dir():
        raise InvalidParameterError(f"{test}: test data must be a folder of labelled scans")
    det = Detector.load(src, backend="onnx")  # verifies SHA256SUMS
    src_overlap = det.config.overlap
    if overlap is not None and int(overlap) != src_overlap:
        try:
            cfg_o = dataclasses.replace(det.config, overlap=int(overlap))
        except ModelError as exc:
            raise InvalidParameterError(f"overlap {overlap}: {exc.reason}") from exc
        det = Detector(det.folder, cfg_o, det.thresholds, det.backend, det.model_hash, batch_size=det.batch_size, rescorer=det.rescorer)
    say(f"scoring calibration scans in {', '.join(map(str, data))}")
    th = recalibrated_thresholds(det, data, add=add, default_far=default_far, method=method)
    info = dict(th.info)
    if det.config.overlap != src_overlap:
        info["overlap"] = {"source": src_overlap, "new": det.config.overlap}
        th = dataclasses.replace(th, info=info)

    with atomic_dir(out) as work:
        for f in sorted(src.iterdir()):
            if f.is_file() and f.name not in _SOURCE_ONLY and not f.name.startswith("."):
                shutil.copy2(f, work / f.name)
        extra = dict(det.config.extra)
        extra["recalibrated_from"] = src.name
        cfg = dataclasses.replace(det.config, name=out.name, extra=extra)
        atomic_write_text(work / "config.json", json.dumps(cfg.to_dict(), indent=1) + "\n")
        th.save(work / "thresholds.json")
        metrics = None
        if test is not None:
            say(f"evaluating on {test}")
            metrics = evaluate_folder(work, cfg, th, Path(test))
        prov = {**info, "source": str(src), "command": command}
        atomic_write_text(work / "recalibrate_info.json", json.dumps(prov, indent=1) + "\n")
        src_card = (src / "MODEL_CARD.md").read_text(encoding="utf-8") if (src / "MODEL_CARD.md").is_file() else ""
        far_src = image_far(th.neg_scores, det.thresholds.for_far(th.default_far))
        _write_card(work, name=out.name, src=src.name, th=th, info=prov, metrics=metrics, src_card=src_card,
                    far_src=far_src, add=add)
        write_sha256sums(work)
    return out


def _write_card(folder: Path, *, name: str, src: str, th: Any, info: dict[str, Any], metrics: dict[str, Any] | None,
                src_card: str, far_src: float, add: bool) -> None:
    from .._atomic import atomic_write_text

    n_src, n_new = info["n_negative_from_source"], info["n_negative_new"]
    data = ", ".join(f"`{d}`" for d in info["calibration_data"])
    source_part = f"the source's {n_src} and {n_new} new ones from {data}" if add else f"{n_new} from {data}"
    L = [f"# Model card: {name}", "",
         (f"`{src}` with its operating point re-calibrated (`nii calibrate thresholds --out`): the network files are "
          "the source's, unchanged; the thresholds are new. This section supersedes the source card's operating point "
          "and metrics, which follow unchanged below."), "",
         f"Made by: `{info.get('command') or 'nii calibrate thresholds'}`.", "",
         *([(f"Tile overlap changed from {info['overlap']['source']} to {info['overlap']['new']} px (a minimum: tiles are "
             "spread evenly over the scan); the new calibration scans and the test ran with it, the source's negatives "
             "(if kept) with the source's."), ""] if "overlap" in info else []),
         "## Operating point", "",
         (f"Calibrated on {th.n_negative} negative images: {source_part} ({info['n_images']} scans scored). "
          f"Rule `{th.method}`, default FAR {th.default_far:.2%}. The source's thresholds for that FAR alarm on "
          f"{far_src:.2%} of these negative images."), ""]
    L += card_operating_points(th)
    if metrics:
        L += card_test_metrics(metrics)
    else:
        L += [("No test metrics: the source's were measured at its own thresholds and are not copied "
               "(`nii calibrate thresholds --out DIR --test TEST` evaluates the new folder)."), ""]
    L += card_source(src, src_card)
    atomic_write_text(folder / "MODEL_CARD.md", "\n".join(L))


def card_operating_points(th: Any) -> list[str]:
    """Model-card lines: the thresholds at each FAR target."""
    return [f"- FAR {op['far_target']:.1%}: " + ", ".join(f"{c} {t:.3f}" for c, t in op["thresholds"].items())
            for op in th.operating_points()] + [""]


def card_test_metrics(metrics: dict[str, Any]) -> list[str]:
    """Model-card lines: far_images and, per class, Pd at the operating point, at 1 % and 5 % FAR, and AP50."""
    from .quantize import _pct

    L = ["## Test metrics", "",
         (f"On `{metrics.get('data')}`: far_images at the operating point "
          f"{_pct(metrics.get('far_images'), metrics.get('far_images_ci95'))}. In brackets: 95 % Wilson intervals."), "",
         "| class | Pd at the operating point | Pd @ 1 % FAR | Pd @ 5 % FAR | AP50 |", "|---|---|---|---|---|"]
    for c, d in metrics["classes"].items():
        L.append(f"| {c} | {_pct(d.get('pd_at_operating_point'), d.get('pd_at_operating_point_ci95'))} "
                 f"| {_pct(d.get('pd_at_far_1pct'), d.get('pd_at_far_1pct_ci95'))} | {_pct(d.get('pd_at_far_5pct'))} "
                 f"| {_pct(d.get('ap50'))} |")
    return [*L, "", *card_object_breakdowns(metrics), "See `metrics.json`, `pr_curve.png`, `confusion_matrix.png`.", ""]


def card_object_breakdowns(metrics: dict[str, Any]) -> list[str]:
    """Model-card lines: Pd per simulated object kind and per class and mass band
    (``metrics["by_object_kind"]``, ``metrics["by_object_mass"]``), where present."""
    from .quantize import _pct

    L: list[str] = []
    head = "| objects | Pd at the operating point | Pd @ 1 % FAR | Pd @ 5 % FAR | candidates |"

    def row(d: dict[str, Any]) -> str:
        return (f"| {d['n_objects']} | {_pct(d.get('pd_at_operating_point'), d.get('pd_at_operating_point_ci95'))} "
                f"| {_pct(d.get('pd_at_far_1pct'))} | {_pct(d.get('pd_at_far_5pct'))} | {_pct(d.get('candidate_rate'))} |")

    kinds = sorted((metrics.get("by_object_kind") or {}).items(), key=lambda kv: (str(kv[1]["class"]), kv[0]))
    sections = (
        ("### Pd by object kind", ("The simulator's phantom behind each truth object, at the class thresholds above; "
                                   "'candidates': the share with any same-class candidate at all (down to the model's min_conf)."),
         "| object kind | class ",
         [f"| {k} | {d['class']} " + row(d) for k, d in kinds]),
        ("### Pd by object mass", ("The whole object's mass (simulator: volume times density, hidden parts included), at the "
                                   "same thresholds."), "| class | mass ",
         [f"| {d['class']} | {d['mass_band']} " + row(d) for d in (metrics.get("by_object_mass") or {}).values()]),
    )
    for title, blurb, first, rows in sections:
        if rows:
            L += [title, "", blurb, "", first + head, "|---|---|---|---|---|---|---|", *rows, ""]
    return L


def card_source(src: str, src_card: str, *, note: str = "") -> list[str]:
    """Model-card lines: the source model's card, its headings one level down."""
    if not src_card.strip():
        return []
    return ["---", "", f"## Source model card ({src})", "", *([note, ""] if note else []),
            *[("#" + ln) if ln.startswith("#") else ln for ln in src_card.splitlines()], ""]
