"""The detector's training data: simulator -> normalised scans -> ``nii-det/1`` tiles (``nii dataset build``).

Layout written under the output folder::

    dataset.json          manifest: command, seeds, classes, pitch, tile size, families, counts
    data.yaml             Ultralytics dataset file
    train/images/*.png    encoded tiles (YOLO), train/labels/*.txt, train/index.jsonl
    val/images, val/labels, val/index.jsonl   tiles of a subset of the validation scans
    val/scans/*.h5        whole validation scans with truth (threshold calibration)
    test/scans/*.h5       whole test scans with truth (``nii evaluate``)

Design:

* **Disjoint seeds**: scene ``i`` of split ``s`` uses ``scene_seed(seed, i, s)``; the split name
  is part of the seed, so no scene repeats across splits.
* **Held-out family**: scenes of one concealment family (default ``timber``) are generated for
  the test split only; train and val never see it.
* **Negatives and confusers**: the scenario mix includes ``negative_confusers`` (bones, shells,
  PVC, aluminium...) and ``negative_clutter``; other scenarios are target-free 40 % of the time.
* **Domain randomisation** (train and val): scanner profile (baggage sandwich, dual kVp, cargo),
  quantum noise (quanta x 0.35-1.5), blur (PSF x 0.7-1.8), scatter (x 0.5-2), gain
  non-uniformity and drift (x 0.5-2.5), clutter density (x 0.5-1.6) and overlap, and a global
  attenuation-scale error (+-4 %, calibration drift).
* **Input kinds**: each scene is encoded as ``dual_energy`` (normaliser output) or, as
  augmentation, re-read from an 8-bit ``pseudocolor`` rendering (PNG or JPEG) or a
  ``greyscale`` single-energy rendering through the same decoder the reader uses
  (:func:`nii.io.rendered.scan_from_8bit`); the test split records the kind of every scan so
  metrics are reported per input kind.
* **Object kinds and masses**: every val/test scan's metadata names the catalogue phantom behind
  each truth box (``target_kinds``, in truth order: ``tusk``, ``chopsticks``, ``scale_pile``...)
  and its whole mass in grams (``target_mass_g``), so that ``nii evaluate`` reports Pd per
  object kind and per class and mass band as well as per class.
* Tiles are cut at the detector pitch with the detector's own tiler; a tile keeps the boxes of
  objects at least ``min_visible`` visible in it, and tiles without objects are kept with
  probability ``negative_tile_keep``.
* **More positives per simulated scene** (train only): a scene that holds targets holds
  ``train_targets`` of them (default 1-3, the scenarios' own range is 1-2), and every target also
  gets ``target_crops`` extra tiles placed at random so that it lies wholly inside
  (:func:`cut_target_crops`). Simulation is most of the build time; these make the same time
  yield 2-3x more labelled instances. Val and test keep the scenarios' natural mix.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FileAccessError, InvalidParameterError

__all__ = ["DEFAULT_PROFILES", "INPUT_KINDS", "BuildConfig", "build_dataset", "randomized_profile", "render_as"]

logger = logging.getLogger(__name__)

INPUT_KINDS = ("dual_energy", "pseudocolor", "greyscale")
DEFAULT_PROFILES = ("baggage_sandwich_140", "dual_kvp_80_140", "cargo_300")


@dataclass(frozen=True)
class BuildConfig:
    """Parameters of ``nii dataset build`` (recorded in ``dataset.json``).

    Parameters
    ----------
    n_train, n_val, n_test : int
        Scenes per split.
    train_first_index : int
        Index of the first training scene (scenes ``train_first_index ..
        train_first_index + n_train - 1``): a later build with a higher start adds *new* training
        scenes to an earlier one's; the validation and test scenes do not depend on it.
    seed : int
    pitch_mm : float
        Detector pitch (mm).
    tile_size, overlap : int
        Tile geometry (pixels at the detector pitch).
    profiles : tuple of str
        Scanner profiles drawn from (uniformly).
    profile_weights : tuple of float, optional
        Relative weights of ``profiles``.
    held_out_family : str or None
        Scenario family generated for the test split only.
    kind_weights : (float, float, float)
        Probabilities of ``dual_energy``, ``pseudocolor``, ``greyscale`` encodings.
    randomize : bool
        Domain randomisation on (train/val; the test split uses it too, with other seeds).
    negative_tile_keep : float
        Probability of keeping a train tile without any object.
    confuser_tile_keep : float
        Probability of keeping a train tile without any object that shows a confuser (bones,
        shells, PVC...): hard negatives, which set the false-alarm rate.
    min_visible : float
        A box is labelled in a tile when at least this fraction of it lies inside.
    val_tile_scans : int
        Validation scans also written as tiles (for Ultralytics' own validation).
    train_target_fraction : float or None
        Probability that a training scene of a scenario with targets holds one (None: the
        scenario's own, 0.6); val and test keep the scenarios' natural mix so that their
        negatives measure the false-alarm rate.
    train_targets : (int, int) or None
        Range of the number of targets in a training scene that holds any (None: the scenario's).
    target_crops : int
        Extra training tiles per target, placed at random with the target wholly inside.
    train_overburden : float
        Probability that each target of a training scene gets a thick organic slab laid over it
        (wood, paper, food, water, plastics or textiles; 2-10 g/cm² on baggage, 3-25 g/cm² on
        cargo profiles; see :func:`nii.sim.scenes.compose_scene`): domain randomisation towards targets buried in
        goods. Validation and test scenes never get one, and 0 (the default) builds the training
        scenes of earlier datasets unchanged.
    train_overburden_style : {"box", "textured"}
        ``box`` (the default; every dataset built before 2026-11-27): uniform slabs over targets
        plus a few anywhere. ``textured``: boards with gaps and knots, voided boxes with grain,
        round masses and bundles of rolls, laid over confusers as often as over targets (see
        :func:`nii.sim.scenes.compose_scene`).
    workers : int
        Worker processes.
    """

    n_train: int = 1200
    n_val: int = 400
    n_test: int = 400
    train_first_index: int = 0
    seed: int = 0
    pitch_mm: float = 3.0
    tile_size: int = 320
    overlap: int = 64
    profiles: tuple[str, ...] = DEFAULT_PROFILES
    profile_weights: tuple[float, ...] | None = (0.45, 0.3, 0.25)
    held_out_family: str | None = "timber"
    kind_weights: tuple[float, float, float] = (0.7, 0.15, 0.15)
    randomize: bool = True
    negative_tile_keep: float = 0.2
    confuser_tile_keep: float = 0.6
    min_visible: float = 0.4
    val_tile_scans: int = 120
    train_target_fraction: float | None = 0.85
    train_targets: tuple[int, int] | None = (1, 3)
    target_crops: int = 1
    train_overburden: float = 0.0
    train_overburden_style: str = "box"
    workers: int = 1

    def __post_init__(self) -> None:
        for k in ("n_train", "n_val", "n_test", "train_first_index"):
            if int(getattr(self, k)) < 0:
                raise InvalidParameterError(f"{k} must be >= 0, got {getattr(self, k)}")
        if not (self.pitch_mm > 0):
            raise InvalidParameterError(f"pitch_mm must be positive, got {self.pitch_mm}")
        if self.tile_size % 32 or self.tile_size < 64:
            raise InvalidParameterError(f"tile_size must be a multiple of 32 and >= 64, got {self.tile_size}")
        if not (0 <= self.overlap < self.tile_size // 2):
            raise InvalidParameterError(f"overlap must be in [0, tile_size/2), got {self.overlap}")
        if len(self.kind_weights) != 3 or min(self.kind_weights) < 0 or sum(self.kind_weights) <= 0:
            raise InvalidParameterError(f"kind_weights must be 3 non-negative numbers, got {self.kind_weights}")
        if self.profile_weights is not None and len(self.profile_weights) != len(self.profiles):
            object.__setattr__(self, "profile_weights", None)
        if self.workers < 1:
            raise InvalidParameterError(f"workers must be >= 1, got {self.workers}")
        if self.train_targets is not None and not (len(self.train_targets) == 2 and 1 <= self.train_targets[0] <= self.train_targets[1] <= 12):
            raise InvalidParameterError(f"train_targets must be a range lo,hi with 1 <= lo <= hi <= 12, got {self.train_targets}")
        if not 0 <= self.target_crops <= 8:
            raise InvalidParameterError(f"target_crops must be in [0, 8], got {self.target_crops}")
        if not 0.0 <= self.train_overburden <= 1.0:
            raise InvalidParameterError(f"train_overburden must lie in [0, 1], got {self.train_overburden}")
        from ..sim.scenes import OVERBURDEN_STYLES

        if self.train_overburden_style not in OVERBURDEN_STYLES:
            raise InvalidParameterError(f"train_overburden_style must be one of {', '.join(OVERBURDEN_STYLES)}, "
                                        f"got {self.train_overburden_style!r}")


def randomized_profile(profile: Any, rng: np.random.Generator) -> Any:
    """A copy of ``profile`` with noise, blur, scatter and gain effects scaled at random."""
    q = rng.uniform(0.35, 1.5)
    chans = tuple(dataclasses.replace(c, quanta_per_pixel=c.quanta_per_pixel * q) for c in profile.channel_specs)
    blur = dataclasses.replace(profile.blur, detector_psf_fwhm_mm=profile.blur.detector_psf_fwhm_mm * rng.uniform(0.7, 1.8))
    return dataclasses.replace(
        profile,
        channel_specs=chans,
        blur=blur,
        scatter_fraction=min(0.5, profile.scatter_fraction * rng.uniform(0.5, 2.0)),
        gain_nonuniformity=profile.gain_nonuniformity * rng.uniform(0.5, 2.5),
        gain_drift=profile.gain_drift * rng.uniform(0.5, 2.5),
    )


def render_as(scan: Any, kind: str, rng: np.random.Generator) -> Any:
    """The scan as the reader would recover it from an 8-bit rendering of ``kind``.

    ``pseudocolor``: operator colours (:func:`nii.materials.render_pseudocolor`), PNG or JPEG
    (quality 70-95) at random; ``greyscale``: ``255 exp(-L_high)``. The result keeps the
    scan's pitch, truth and metadata (a real screenshot's pitch is unknown; see the limits in
    the model card).
    """
    import cv2

    from ..io.rendered import scan_from_8bit
    from ..materials import render_pseudocolor

    l_high = np.asarray(scan.attenuation[-1])
    lossy = bool(rng.random() < 0.5)
    if kind == "pseudocolor":
        img = render_pseudocolor(l_high, scan.material)
    elif kind == "greyscale":
        img = np.floor(255.0 * np.exp(-np.maximum(l_high, 0.0)) + 0.5).astype(np.uint8)
    else:
        raise InvalidParameterError(f"kind must be 'pseudocolor' or 'greyscale', got {kind!r}")
    if lossy:
        q = int(rng.integers(70, 96))
        bgr = img[..., ::-1] if img.ndim == 3 else img
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, q])
        if not ok:  # pragma: no cover - OpenCV failure
            raise InvalidParameterError("JPEG encoding of the rendering failed")
        dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        img = dec[..., ::-1] if dec.ndim == 3 else dec
    rs = scan_from_8bit(np.ascontiguousarray(img), Path(scan.scan_id or "scan"), meta={"lossy": lossy, "pitch_assumed": False})
    meta = {**dict(scan.metadata), **dict(rs.metadata), "input_kind": kind}
    return rs.replace(pixel_pitch_mm=scan.pixel_pitch_mm, truth=scan.truth, metadata=meta, scan_id=scan.scan_id, profile=scan.profile)


def _scenario_pool(domain: str, exclude_family: str | None, only_family: str | None) -> tuple[list[str], np.ndarray]:
    from ..sim.scenes import MIXED_WEIGHTS, SCENARIOS

    names = [
        n
        for n, s in SCENARIOS.items()
        if n != "mixed" and domain in s.domains and (exclude_family is None or s.family != exclude_family) and (only_family is None or s.family == only_family)
    ]
    w = np.array([MIXED_WEIGHTS.get(n, 1.0) for n in names], np.float64)
    return names, w / w.sum()


def _worker_init() -> None:
    """One Numba and one OpenCV thread per worker process: the pool already uses every core, and
    each worker's own thread pool (as many threads as cores) would oversubscribe them."""
    import cv2
    import numba

    numba.set_num_threads(1)
    cv2.setNumThreads(1)


def _job(args: tuple[BuildConfig, str, int, str]) -> list[dict[str, Any]]:
    """Generate scene ``index`` of ``split`` and write its outputs; return index records."""
    cfg, split, index, root = args
    try:
        return _make_scene(cfg, split, index, Path(root))
    except Exception as exc:  # a failing scene must not stop a long build; it is reported
        logger.exception("scene %s/%d failed", split, index)
        return [{"split": split, "scene": index, "error": f"{type(exc).__name__}: {exc}"}]


def _make_scene(cfg: BuildConfig, split: str, index: int, root: Path) -> list[dict[str, Any]]:
    from ..io import write_hdf5
    from ..normalization import detector_input, normalize
    from ..profiles import load_profile
    from ..sim.imaging import form_image
    from ..sim.scenes import SCENARIOS, compose_scene, profile_domain, scene_seed

    # two independent streams: one for the builder's own choices, one for the scene composer
    ss_build, ss_scene = scene_seed(cfg.seed, index, "nii-dataset", split).spawn(2)
    rng = np.random.default_rng(ss_build)
    pw = None if cfg.profile_weights is None else np.asarray(cfg.profile_weights, np.float64) / sum(cfg.profile_weights)
    prof = load_profile(cfg.profiles[int(rng.choice(len(cfg.profiles), p=pw))])
    domain = profile_domain(prof)
    held = cfg.held_out_family
    if split == "test" and held and rng.random() < 0.2:
        names, w = _scenario_pool(domain, None, held)
        if not names:
            names, w = _scenario_pool(domain, held, None)
    else:
        names, w = _scenario_pool(domain, held, None)
    scenario = names[int(rng.choice(len(names), p=w))]
    sc_def = SCENARIOS[scenario]
    kw: dict[str, Any] = {}
    if cfg.randomize:
        kw["clutter_density"] = float(np.clip(sc_def.clutter_density * rng.uniform(0.5, 1.6), 0, 50))
        kw["overlap"] = float(np.clip(sc_def.overlap + rng.uniform(-0.2, 0.3), 0, 1))
    if split == "train" and cfg.train_target_fraction is not None and sc_def.targets:
        kw["target_fraction"] = float(cfg.train_target_fraction)
    if split == "train" and cfg.train_targets is not None and sc_def.targets:
        kw["n_targets"] = tuple(cfg.train_targets)
    if split == "train" and cfg.train_overburden > 0:
        kw["overburden"] = float(cfg.train_overburden)
        if cfg.train_overburden_style != "box":
            kw["overburden_style"] = cfg.train_overburden_style
    scene = compose_scene(scenario, prof, ss_scene, **kw)
    sim_prof = randomized_profile(prof, rng) if cfg.randomize else prof
    scan_id = f"{split}_{index:06d}"
    meta = {
        "scenario": scene.scenario,
        "family": scene.metadata.get("family", ""),
        "domain": domain,
        "split": split,
        "scene_index": index,
        "dataset_seed": cfg.seed,
        "confusers": scene.metadata.get("confusers", []),
        # the catalogue phantom of each truth box, in truth order (evaluation breaks Pd down by it)
        "target_kinds": list(scene.metadata.get("target_kinds", [])),
        # and its mass in grams (evaluation breaks Pd down by mass band)
        "target_mass_g": list(scene.metadata.get("target_mass_g", [])),
    }
    raw = form_image(scene.stack, sim_prof, seed=rng, scan_id=scan_id, truth=scene.truth, metadata=meta)
    kind = INPUT_KINDS[int(rng.choice(3, p=np.asarray(cfg.kind_weights) / sum(cfg.kind_weights)))]
    records: list[dict[str, Any]] = []
    base = {"scene": index, "scan_id": scan_id, "scenario": scene.scenario, "family": meta["family"], "profile": prof.id, "kind": kind,
            "n_objects": len(scene.truth), "classes": list(scene.truth.classes)}
    if split in ("val", "test"):
        (root / split / "scans").mkdir(parents=True, exist_ok=True)
        if kind == "dual_energy":
            write_hdf5(raw.replace(metadata={**meta, "input_kind": kind}), root / split / "scans" / f"{scan_id}.h5")
        else:
            full = normalize(raw)
            write_hdf5(render_as(full, kind, rng), root / split / "scans" / f"{scan_id}.h5")
        records.append({**base, "file": f"{split}/scans/{scan_id}.h5"})
        if split == "test" or index >= cfg.val_tile_scans:
            return records
    # tiles at the detector pitch
    scan = normalize(raw, pitch_mm=cfg.pitch_mm)
    if cfg.randomize:
        scan = scan.replace(attenuation=(scan.attenuation * np.float32(rng.uniform(0.96, 1.04))).astype(np.float32))
    if kind != "dual_energy":
        scan = render_as(scan, kind, rng)
    enc = np.asarray(detector_input(scan))
    boxes = np.asarray(scan.truth.boxes if scan.truth is not None else np.zeros((0, 4)), np.float64).reshape(-1, 4)
    cls = [TRUTH_INDEX[c] for c in (scan.truth.classes if scan.truth is not None else ())]
    sy, sx = enc.shape[0] / raw.shape[1], enc.shape[1] / raw.shape[2]
    conf_boxes = np.array([c["box"] for c in scene.metadata.get("confusers", [])], np.float64).reshape(-1, 4) * np.array([sx, sy, sx, sy])
    tiles = cut_tiles(
        enc, boxes, cls, root / split, scan_id,
        tile=cfg.tile_size, overlap=cfg.overlap, min_visible=cfg.min_visible,
        negative_tile_keep=cfg.negative_tile_keep, rng=rng,
        confuser_boxes=conf_boxes, confuser_tile_keep=cfg.confuser_tile_keep,
    )
    if split == "train" and cfg.target_crops and len(boxes):
        tiles += cut_target_crops(enc, boxes, cls, root / split, scan_id, tile=cfg.tile_size, min_visible=cfg.min_visible,
                                  per_target=cfg.target_crops, rng=rng)
    records = records + [{**base, **t} for t in tiles]
    if not tiles:
        records.append({**base, "id": None, "note": "no tile kept"})
    return records


def cut_tiles(
    enc: np.ndarray,
    boxes: np.ndarray,
    class_ids: Sequence[int],
    split_dir: Path,
    stem: str,
    *,
    tile: int,
    overlap: int,
    min_visible: float,
    negative_tile_keep: float,
    rng: np.random.Generator,
    confuser_boxes: np.ndarray | None = None,
    confuser_tile_keep: float | None = None,
) -> list[dict[str, Any]]:
    """Cut an encoded image into overlapping YOLO tiles under ``split_dir/{images,labels}``.

    A box is labelled in a tile when at least ``min_visible`` of its area lies inside; tiles that
    only show fragments of objects (ambiguous labels) are skipped, and empty tiles are kept with
    probability ``negative_tile_keep`` (``confuser_tile_keep`` when a quarter or more of one of
    ``confuser_boxes`` lies in the tile: a hard negative). Returns one record per written tile.
    """
    from ..detect.detector import tile_origins
    from .yolo import write_tile

    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    t = tile
    enc = _pad_to_tile(enc, t)
    ph, pw_ = enc.shape[:2]
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-6)
    cbox = np.zeros((0, 4)) if confuser_boxes is None else np.asarray(confuser_boxes, np.float64).reshape(-1, 4)
    carea = np.maximum((cbox[:, 2] - cbox[:, 0]) * (cbox[:, 3] - cbox[:, 1]), 1e-6)
    out: list[dict[str, Any]] = []
    for y in tile_origins(ph, tile=t, overlap=overlap):
        for x in tile_origins(pw_, tile=t, overlap=overlap):
            cb, keep, partial = _tile_labels(boxes, area, int(y), int(x), t, min_visible)
            part = enc[y : y + t, x : x + t]
            if not np.any(part):
                continue
            p_keep = negative_tile_keep
            if confuser_tile_keep is not None and len(cbox) and not keep.any():
                _, hard, _ = _tile_labels(cbox, carea, int(y), int(x), t, 0.25)
                p_keep = confuser_tile_keep if hard.any() else negative_tile_keep
            if not keep.any() and (partial.any() or rng.random() >= p_keep):
                continue  # skip empty tiles mostly, and tiles that only show fragments (ambiguous labels)
            name = f"{stem}_{int(y):04d}_{int(x):04d}"
            write_tile(split_dir / "images" / f"{name}.png", split_dir / "labels" / f"{name}.txt", part, cb[keep], [class_ids[i] for i in np.flatnonzero(keep)])
            out.append({"id": name, "tile": [int(y), int(x)], "n_boxes": int(keep.sum())})
    return out


def _pad_to_tile(enc: np.ndarray, tile: int) -> np.ndarray:
    """``enc`` zero-padded at the bottom / right to at least ``tile`` pixels in each direction."""
    h, w = enc.shape[:2]
    ph, pw_ = max(h, tile), max(w, tile)
    if (ph, pw_) == (h, w):
        return enc
    pad = np.zeros((ph, pw_, enc.shape[2]), enc.dtype)
    pad[:h, :w] = enc
    return pad


def _tile_labels(boxes: np.ndarray, area: np.ndarray, y: int, x: int, t: int, min_visible: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes shifted into the tile at ``(y, x)`` and clipped; which are labelled, which are fragments."""
    cb = boxes.copy()
    cb[:, [0, 2]] = np.clip(cb[:, [0, 2]] - x, 0, t)
    cb[:, [1, 3]] = np.clip(cb[:, [1, 3]] - y, 0, t)
    vis = (cb[:, 2] - cb[:, 0]) * (cb[:, 3] - cb[:, 1]) / area
    keep = vis >= min_visible
    return cb, keep, (vis > 0.02) & ~keep


def cut_target_crops(
    enc: np.ndarray,
    boxes: np.ndarray,
    class_ids: Sequence[int],
    split_dir: Path,
    stem: str,
    *,
    tile: int,
    min_visible: float,
    per_target: int,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """Extra training tiles centred at random on each target (``target_crops``).

    For every box, ``per_target`` tiles of ``tile`` pixels are placed uniformly among the positions
    that hold the box wholly (or, for a box larger than a tile, that lie inside it), clamped to the
    image. The labels follow the same rule as :func:`cut_tiles`; a crop that only duplicates the
    image (image no larger than a tile) is skipped, since the regular tiling already has it.
    """
    from .yolo import write_tile

    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    h, w = enc.shape[:2]
    if h <= tile and w <= tile:
        return []
    t = tile
    enc = _pad_to_tile(enc, t)
    ph, pw_ = enc.shape[:2]
    area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-6)
    out: list[dict[str, Any]] = []
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        for k in range(per_target):
            lo_x, hi_x = sorted((x1 - t, x0))
            lo_y, hi_y = sorted((y1 - t, y0))
            x = int(np.clip(np.floor(rng.uniform(lo_x, hi_x + 1e-9)), 0, pw_ - t))
            y = int(np.clip(np.floor(rng.uniform(lo_y, hi_y + 1e-9)), 0, ph - t))
            cb, keep, _ = _tile_labels(boxes, area, y, x, t, min_visible)
            if not keep.any():
                continue
            name = f"{stem}_c{i:02d}{k}_{y:04d}_{x:04d}"
            write_tile(split_dir / "images" / f"{name}.png", split_dir / "labels" / f"{name}.txt", enc[y : y + t, x : x + t],
                       cb[keep], [class_ids[j] for j in np.flatnonzero(keep)])
            out.append({"id": name, "tile": [y, x], "n_boxes": int(keep.sum()), "crop": "target"})
    return out


def merge_feedback(
    feedback_dir: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    *,
    pitch_mm: float,
    tile: int = 320,
    overlap: int = 64,
    min_visible: float = 0.6,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Add operator feedback (``nii dataset add-feedback``) to a dataset's training split.

    Each feedback image (``nii-det/1`` at its scan's own pitch) is resampled to the detector pitch
    (area averaging of the encoded channels, an approximation of encoding the resampled maps), its
    boxes scaled, and cut into tiles exactly like simulated scenes. Regions the operator rejected
    as false alarms carry no label: they become hard negatives, so every tile is kept. Returns the
    tile records (also appended to ``train/index.jsonl``).
    """
    import cv2

    from .._atomic import atomic_write_text
    from .yolo import read_labels, read_tile

    fb = Path(feedback_dir)
    man_path = fb / "feedback.json"
    try:
        manifest = json.loads(man_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidParameterError(f"{man_path}: not a feedback export of `nii dataset add-feedback` ({exc})") from exc
    if manifest.get("schema") != "nii-feedback/1":
        raise InvalidParameterError(f"{man_path}: schema is {manifest.get('schema')!r}, expected 'nii-feedback/1'")
    fb_classes = list(manifest.get("classes", []))
    if any(c not in TRUTH_INDEX for c in fb_classes):
        raise InvalidParameterError(f"{man_path}: classes {fb_classes} are not the detector's {list(TRUTH_INDEX)}")
    root = Path(dataset_dir) / "train"
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = []
    for im in manifest.get("images", []):
        enc = read_tile(fb / im["image"])
        h, w = enc.shape[:2]
        boxes, ids = read_labels(fb / im["label"], (h, w))
        pitch = im.get("pixel_pitch_mm") or (pitch_mm, pitch_mm)
        fy, fx = float(pitch[0]) / pitch_mm, float(pitch[1]) / pitch_mm
        nh, nw = max(1, round(h * fy)), max(1, round(w * fx))
        if (nh, nw) != (h, w):
            enc = cv2.resize(enc, (nw, nh), interpolation=cv2.INTER_AREA)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4) * np.array([nw / w, nh / h, nw / w, nh / h])
        ids = [TRUTH_INDEX[fb_classes[int(i)]] for i in ids]
        stem = "feedback_" + str(Path(im["image"]).stem)
        tiles = cut_tiles(enc, boxes, ids, root, stem, tile=tile, overlap=overlap, min_visible=min_visible,
                          negative_tile_keep=1.0, rng=rng)
        records += [{"scan_id": im.get("scan_id"), "source": "feedback", "n_objects": len(ids), **t} for t in tiles]
    index = root / "index.jsonl"
    old = index.read_text(encoding="utf-8") if index.exists() else ""
    atomic_write_text(index, old + "".join(json.dumps(r) + "\n" for r in records))
    return records


TRUTH_INDEX = {"ivory": 0, "ivory_worked": 1, "pangolin_scales": 2, "rhino_horn": 3}


def build_dataset(
    out: str | os.PathLike,
    config: BuildConfig,
    *,
    command: str = "",
    progress: Callable[[str, int, int], None] | None = None,
) -> Path:
    """Build the dataset under ``out`` (see the module docstring); return the folder."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from .._atomic import atomic_write_text
    from ..sim.phantoms import TRUTH_CLASSES
    from ..sim.scenes import FAMILIES
    from .yolo import write_data_yaml

    if tuple(TRUTH_CLASSES) != tuple(TRUTH_INDEX):
        raise InvalidParameterError(f"simulator classes {TRUTH_CLASSES} differ from the builder's {tuple(TRUTH_INDEX)}")
    if config.held_out_family is not None and config.held_out_family not in FAMILIES:
        raise InvalidParameterError(f"held_out_family must be one of {sorted(FAMILIES)}, got {config.held_out_family!r}")
    root = Path(out)
    try:
        for split in ("train", "val"):
            (root / split / "images").mkdir(parents=True, exist_ok=True)
            (root / split / "labels").mkdir(parents=True, exist_ok=True)
        (root / "test").mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a file in the way, or a link to a folder that is gone
        why = "a link to a missing folder" if root.is_symlink() and not root.exists() else exc.strerror or str(exc)
        raise FileAccessError(f"cannot create the dataset folders: {why}", path=root) from exc
    counts: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for split, n in (("train", config.n_train), ("val", config.n_val), ("test", config.n_test)):
        first = int(config.train_first_index) if split == "train" else 0
        jobs = [(config, split, first + i, str(root)) for i in range(n)]
        recs: list[dict[str, Any]] = []
        if config.workers > 1 and n > 1:
            # spawn, not fork: a forked child inherits a Numba thread pool it cannot use (the parent
            # may have run parallel kernels already, e.g. an earlier build in the same process)
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=config.workers, mp_context=ctx, initializer=_worker_init) as ex:
                for k, r in enumerate(ex.map(_job, jobs, chunksize=4)):
                    recs.extend(r)
                    if progress:
                        progress(split, k + 1, n)
        else:
            for k, j in enumerate(jobs):
                recs.extend(_job(j))
                if progress:
                    progress(split, k + 1, n)
        errors += [r for r in recs if "error" in r]
        recs = [r for r in recs if "error" not in r]
        tiles = [r for r in recs if r.get("id")]
        scans = [r for r in recs if r.get("file")]
        if tiles:
            atomic_write_text(root / split / "index.jsonl", "".join(json.dumps(r) + "\n" for r in tiles))
        if scans:
            atomic_write_text(root / split / "scans.jsonl", "".join(json.dumps(r) + "\n" for r in scans))
        per_class = {c: 0 for c in TRUTH_INDEX}
        for r in scans or {r["scene"]: r for r in recs}.values():
            for c in r["classes"]:
                per_class[c] += 1
        src = scans or list({r["scene"]: r for r in recs}.values())
        counts[split] = {
            "scenes": n,
            "tiles": len(tiles),
            "tiles_with_objects": sum(1 for r in tiles if r.get("n_boxes")),
            "scans_written": len(scans),
            "negative_scenes": sum(1 for r in src if r["n_objects"] == 0),
            "objects_per_class": per_class,
            "by_family": _count(src, "family"),
            "by_kind": _count(src, "kind"),
            "by_profile": _count(src, "profile"),
        }
    write_data_yaml(root, tuple(TRUTH_INDEX), splits={"train": "train/images", "val": "val/images"})
    manifest = {
        "schema": "nii-dataset/1",
        "name": root.name,
        "kind": "simulated",
        "classes": list(TRUTH_INDEX),
        "encoding": "nii-det/1",
        "pitch_mm": config.pitch_mm,
        "tile_size": config.tile_size,
        "overlap": config.overlap,
        "seeds": {"base": config.seed, "scene_seed": "nii.sim.scenes.scene_seed(seed, index, 'nii-dataset', split)"},
        "held_out_families": [config.held_out_family] if config.held_out_family else [],
        "train_families": sorted(f for f in FAMILIES if f not in (config.held_out_family, "mixed")),
        "input_kinds": dict(zip(INPUT_KINDS, config.kind_weights)),
        "profiles": list(config.profiles),
        "config": dataclasses.asdict(config),
        "counts": counts,
        "errors": errors[:50],
        "n_errors": len(errors),
        "command": command or "nii dataset build " + " ".join(sys.argv[3:]),
    }
    atomic_write_text(root / "dataset.json", json.dumps(manifest, indent=1) + "\n")
    return root


def _count(recs: Sequence[dict[str, Any]], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in recs:
        out[str(r.get(key))] = out.get(str(r.get(key)), 0) + 1
    return dict(sorted(out.items()))
