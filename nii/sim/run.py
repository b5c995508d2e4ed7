"""Batch generation of simulated scans: deterministic, parallel across cores.

Scan ``i`` of a run is a pure function of ``(profile, scenario, seed, i, parameters)``: its
scene and its image-formation noise are seeded from ``SeedSequence([seed, i, hash(profile,
scenario)])``, so the bytes of every scan are the same whatever the number of workers.

Output folder::

    DIR/<stem>.h5              one nii HDF5 per scan (RawScan with dark/air references and /truth)
    DIR/labels/<stem>.txt      YOLO labels (normalised cx cy w h; empty for a negative scan)
    DIR/annotations.coco.json  COCO detection labels of the whole run
    DIR/classes.txt, DIR/dataset.yaml
    DIR/manifest.json          command, seed, profile, scenario, parameters, nii version, per-scan facts
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write_text
from .._version import __version__
from ..errors import InvalidParameterError, NiiError

__all__ = ["SimJob", "ScanRecord", "simulate_one", "generate", "generate_preset", "SAMPLE_PRESET", "sample_jobs", "write_dataset_files"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimJob:
    """Everything needed to make scan ``index`` (picklable, sent to worker processes)."""

    profile: str
    scenario: str
    seed: int
    index: int
    out_dir: str
    stem: str
    compression: str | None = "lzf"
    target_fraction: float | None = None
    clutter_density: float | None = None
    overlap: float | None = None
    force_target: bool | None = None
    channels: int | None = None
    length_cm: float | None = None
    effects: tuple[str, ...] | None = None
    targets: tuple[str, ...] | None = None
    confusers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ScanRecord:
    """What a worker reports about the scan it wrote."""

    index: int
    file_name: str
    height: int
    width: int
    boxes: list[list[float]]
    classes: list[str]
    areas: list[float]
    scenario: str
    family: str
    confusers: list[dict[str, Any]]
    timings_ms: dict[str, float] = field(default_factory=dict)


def _check_job(job: SimJob) -> None:
    if job.seed < 0 or job.index < 0:
        raise InvalidParameterError(f"seed and index must be non-negative, got seed={job.seed}, index={job.index}")
    if job.compression not in ("lzf", "gzip", None):
        raise InvalidParameterError(f"compression must be lzf, gzip or None, got {job.compression!r}")


def simulate_one(job: SimJob) -> ScanRecord:
    """Compose, image and write one scan; return its record (runs in a worker process)."""
    from ..io.hdf5 import write
    from ..profiles import load_profile
    from .imaging import DetectorEffects, form_image
    from .scenes import compose_scene, scene_grid, scene_seed

    _check_job(job)
    t0 = time.perf_counter()
    profile = load_profile(job.profile)
    ss = scene_seed(job.seed, job.index, job.profile, job.scenario)
    scene_ss, image_ss = ss.spawn(2)
    grid = scene_grid(profile, channels=job.channels, length_cm=job.length_cm)
    scene = compose_scene(job.scenario, profile, scene_ss, grid=grid, target_fraction=job.target_fraction,
                          clutter_density=job.clutter_density, overlap=job.overlap, force_target=job.force_target,
                          targets=job.targets, confusers=job.confusers)
    t1 = time.perf_counter()
    effects = DetectorEffects() if job.effects is None else DetectorEffects.only(*job.effects)
    image_seed = int(image_ss.generate_state(1, np.uint64)[0] >> np.uint64(1))
    sim_meta = {
        "profile": job.profile,
        "seed": job.seed,
        "index": job.index,
        "nii_version": __version__,
        **{k: v for k, v in scene.metadata.items() if k != "objects"},
        "objects": sorted(set(scene.metadata.get("objects", []))),
    }
    raw = form_image(scene.stack, profile, seed=image_seed, effects=effects, scan_id=job.stem, truth=scene.truth,
                     metadata={"simulation": sim_meta})
    t2 = time.perf_counter()
    path = Path(job.out_dir) / f"{job.stem}.h5"
    write(raw, path, compression=job.compression)
    t3 = time.perf_counter()
    h, w = scene.stack.shape
    return ScanRecord(
        index=job.index,
        file_name=path.name,
        height=h,
        width=w,
        boxes=np.asarray(scene.truth.boxes, float).tolist(),
        classes=list(scene.truth.classes),
        areas=[float(m.sum()) for m in scene.masks],
        scenario=scene.scenario,
        family=str(scene.metadata.get("family", "")),
        confusers=list(scene.metadata.get("confusers", [])),
        timings_ms={"scene": 1e3 * (t1 - t0), "imaging": 1e3 * (t2 - t1), "write": 1e3 * (t3 - t2), "total": 1e3 * (t3 - t0)},
    )


def _worker_init() -> None:
    """One Numba thread per worker process: the pool already uses every core (measured: with two
    workers on two cores, two threads each made the imaging kernel 2x slower than one)."""
    import numba

    numba.set_num_threads(1)


def _run_jobs(jobs: Sequence[SimJob], workers: int, on_done: Callable[[ScanRecord], None] | None) -> list[ScanRecord]:
    """Run jobs in-process (``workers == 1``) or in a spawn pool with a bounded queue."""
    records: list[ScanRecord] = []

    def finish(rec: ScanRecord) -> None:
        records.append(rec)
        if on_done:
            on_done(rec)

    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            finish(simulate_one(job))
        return records
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    pending: set = set()
    todo = iter(jobs)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_worker_init)
    try:
        for job in todo:
            pending.add(pool.submit(simulate_one, job))
            if len(pending) >= 4 * workers:  # bounded: a run of a million scans holds few futures
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    finish(fut.result())
        for fut in pending:
            finish(fut.result())
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return sorted(records, key=lambda r: r.index)


def _label_record(r: ScanRecord):
    from ..containers import Truth
    from .labels import LabelRecord

    truth = Truth(np.array(r.boxes, np.float32).reshape(-1, 4), tuple(r.classes))
    return LabelRecord(r.file_name, r.height, r.width, truth, tuple(r.areas), extra={"scenario": r.scenario, "family": r.family})


def write_dataset_files(out_dir: Path, records: Sequence[ScanRecord], manifest: dict[str, Any]) -> None:
    """Write YOLO labels, COCO JSON, class files and the manifest for ``records``."""
    from .labels import write_class_files, write_coco, write_yolo

    labels = [_label_record(r) for r in records]
    for rec in labels:
        write_yolo(out_dir / "labels", rec)
    write_coco(out_dir / "annotations.coco.json", labels, info={"description": "nii simulated scans", "version": __version__,
                                                                 "seed": manifest.get("seed")})
    write_class_files(out_dir)
    manifest = dict(manifest)
    manifest["scans"] = [{k: v for k, v in asdict(r).items() if k != "timings_ms"} for r in records]
    atomic_write_text(out_dir / "manifest.json", json.dumps(manifest, indent=1, default=str) + "\n")


def generate(
    *,
    profile: str,
    scenario: str,
    count: int,
    seed: int,
    out_dir: str | os.PathLike,
    workers: int | None = None,
    compression: str | None = "lzf",
    target_fraction: float | None = None,
    clutter_density: float | None = None,
    overlap: float | None = None,
    channels: int | None = None,
    length_cm: float | None = None,
    start: int = 0,
    command: str = "",
    on_done: Callable[[ScanRecord], None] | None = None,
) -> list[ScanRecord]:
    """Generate ``count`` scans of ``scenario`` for ``profile`` into ``out_dir``.

    Validates everything before starting workers; see the module docstring for the output.
    """
    from ..profiles import list_profiles, load_profile
    from .scenes import get_scenario, profile_domain

    if not isinstance(count, int) or not 1 <= count <= 10_000_000:
        raise InvalidParameterError(f"count must be an integer in [1, 10000000], got {count!r}")
    if seed < 0 or start < 0:
        raise InvalidParameterError(f"seed and start must be non-negative, got {seed}, {start}")
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise InvalidParameterError(f"workers must be >= 1, got {workers}")
    if profile not in list_profiles():
        raise InvalidParameterError(f"unknown profile {profile!r}; known: {', '.join(list_profiles())}")
    sc = get_scenario(scenario).with_params(target_fraction=target_fraction, clutter_density=clutter_density, overlap=overlap)
    dom = profile_domain(load_profile(profile))
    if dom not in sc.domains:
        raise InvalidParameterError(f"scenario {scenario!r} is for {'/'.join(sc.domains)} profiles; {profile!r} is a {dom} profile")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NiiError(f"cannot create output folder: {exc}", path=out) from exc
    jobs = [SimJob(profile, scenario, int(seed), i, str(out), f"{scenario}_{seed}_{i:06d}", compression, target_fraction,
                   clutter_density, overlap, None, channels, length_cm) for i in range(start, start + count)]
    records = _run_jobs(jobs, min(workers, count), on_done)
    manifest = {
        "command": command, "nii_version": __version__, "profile": profile, "scenario": scenario, "seed": seed, "count": count,
        "start": start, "compression": compression, "target_fraction": sc.target_fraction, "clutter_density": sc.clutter_density,
        "overlap": sc.overlap, "channels": channels, "length_cm": length_cm,
    }
    write_dataset_files(out, records, manifest)
    return records


#: The sample-scan set of ``sample_scans/``: stem, profile, scenario, force_target, channels, belt
#: length (cm), and the target / confuser phantoms drawn (None: the scenario's). Grids are smaller
#: than a real scan (~0.3 Mpx) so that the set stays under 15 MB.
SAMPLE_PRESET: tuple[tuple[str, str, str, bool, int, float, tuple[str, ...] | None, tuple[str, ...] | None], ...] = (
    ("01_luggage_tusk", "dual_kvp_80_140", "luggage_clothes", True, 448, 75.0, ("tusk",), ("resin_carving",)),
    ("02_luggage_carvings", "baggage_sandwich_140", "luggage_clothes", True, 480, 60.0, ("figurine", "bangle", "name_seal"), ("wood_carving",)),
    ("03_sack_shells_scales", "dual_kvp_80_140", "sack_shells", True, 448, 75.0, ("scale_pile", "scale_sack"), None),
    ("04_sack_nuts_horn", "baggage_sandwich_140", "sack_nuts", True, 480, 60.0, ("rhino_horn_piece",), None),
    ("05_timber_bore", "cargo_300", "hollow_timber", True, 320, 200.0, ("tusk",), None),
    ("06_behind_metal", "dual_kvp_80_140", "behind_metal", True, 448, 75.0, ("rhino_horn",), None),
    ("07_mixed_bones", "dual_kvp_80_140", "mixed_bones", True, 448, 75.0, ("tusk_section", "chopsticks"), None),
    ("08_carton_stack", "baggage_sandwich_140", "carton_stack", True, 480, 60.0, ("ivory_block", "pangolin_scale"), ("resin_carving", "ceramic")),
    ("09_pallet_cargo", "cargo_300", "pallet_cargo", True, 256, 250.0, None, None),
    ("10_negative_lookalikes", "dual_kvp_80_140", "negative_confusers", False, 448, 75.0, None,
     ("cattle_bone", "pvc_pipe", "aluminium_profile", "resin_carving", "shells")),
    ("11_negative_confusers", "baggage_sandwich_140", "negative_confusers", False, 480, 60.0, None, None),
    ("12_negative_clutter", "dual_kvp_80_140", "negative_clutter", False, 448, 75.0, None, None),
)


def sample_jobs(out_dir: str | os.PathLike, seed: int, *, compression: str | None = "gzip") -> list[SimJob]:
    """Jobs of the ``samples`` preset (see :data:`SAMPLE_PRESET`)."""
    return [SimJob(p, s, int(seed), i, str(out_dir), stem, compression, None, None, None, ft, ch, ln, None, tg, cf)
            for i, (stem, p, s, ft, ch, ln, tg, cf) in enumerate(SAMPLE_PRESET)]


def write_thumbnail(scan_path: str | os.PathLike, png_path: str | os.PathLike, *, width: int = 480) -> str:
    """Operator-colour thumbnail of a scan with its truth boxes (red) and confuser boxes (yellow).

    Uses :func:`nii.normalization.normalize` with the profile's shipped material calibration; without
    one, the attenuation-only rendering (``materials=False``). Returns which rendering was used.
    """
    import cv2

    from .._atomic import atomic_write_bytes
    from ..errors import CalibrationError
    from ..io import read
    from ..normalization import normalize

    raw = read(scan_path)
    try:
        scan = normalize(raw)
        mode = "materials"
    except CalibrationError:
        scan = normalize(raw, materials=False)
        mode = "attenuation only (no material calibration shipped for the profile)"
    img = np.ascontiguousarray(scan.color[..., ::-1])  # RGB -> BGR for OpenCV
    sy = img.shape[0] / raw.shape[1]
    sx = img.shape[1] / raw.shape[2]
    thick = max(1, int(round(img.shape[1] / width)) * 2)
    sim = dict(raw.metadata).get("simulation", {})
    for c in sim.get("confusers", []):
        x0, y0, x1, y1 = c["box"]
        cv2.rectangle(img, (int(x0 * sx), int(y0 * sy)), (int(x1 * sx), int(y1 * sy)), (0, 200, 255), thick)
    if raw.truth is not None:
        for (x0, y0, x1, y1), _name in zip(raw.truth.boxes, raw.truth.classes):
            cv2.rectangle(img, (int(x0 * sx), int(y0 * sy)), (int(x1 * sx), int(y1 * sy)), (0, 0, 255), thick)
    h = max(1, int(round(img.shape[0] * width / img.shape[1])))
    small = cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", small)
    if not ok:
        raise NiiError("PNG encoding failed", path=png_path)
    atomic_write_bytes(png_path, buf.tobytes())
    return mode


_README_HEAD = """# Sample scans

Simulated dual-energy scans (nii HDF5, schema `nii-scan/1`) with ground truth, made by nii's own
simulator (`nii.sim`: analytic phantoms, scene composer, physics-based image formation). No public
X-ray image of ivory, pangolin scales or rhino horn exists; these show what nii is trained and
tested on. Every file holds raw counts with dark and air references and `/truth`; the scene's
confusers (look-alikes that are *not* targets) are listed in the file metadata
(`metadata.simulation.confusers`) so that false alarms on them can be counted.

Truth classes: `ivory` (tusks, cut sections), `ivory_worked` (blocks, bangles, carvings, chopsticks,
name seals), `pangolin_scales` (one box per pile, sack or loose cluster of plates; a lone plate is a
cluster of one), `rhino_horn` (whole horns and pieces).

Regenerate (deterministic: the same bytes for the same seed, nii version and physics tables):

```
nii simulate --preset samples --seed {seed} --out sample_scans
```

Open one: `nii info sample_scans/{first}`; run the detector: `nii scan sample_scans/ --out results/`.
Labels of the set: `annotations.coco.json` (COCO), `labels/*.txt` (YOLO), `manifest.json`.
Thumbnails (`thumbs/`): operator colours ({mode}); red boxes = truth, yellow = confusers.

| file | profile | scenario (family) | grid H x W | contents | truth | thumbnail |
|---|---|---|---|---|---|---|
"""


def write_samples_readme(out_dir: Path, records: Sequence[ScanRecord], seed: int, mode: str) -> Path:
    """Write ``README.md`` describing the sample set (table with a thumbnail per scan)."""
    from ..io import read

    rows = []
    for r in records:
        sim = dict(read(out_dir / r.file_name).metadata).get("simulation", {})
        objects = ", ".join(o for o in sim.get("objects", []))
        confusers = sorted({c["class"] for c in r.confusers})
        truth = ", ".join(f"{t['class']} ({t['kind']})" for t in sim.get("targets", [])) or "none (negative)"
        contents = f"objects: {objects}" + (f"; confusers: {', '.join(confusers)}" if confusers else "")
        stem = Path(r.file_name).stem
        rows.append(f"| `{r.file_name}` | {sim.get('profile', '')} | {r.scenario} ({r.family}) | {r.height} x {r.width} | "
                    f"{contents} | {truth} | ![{stem}](thumbs/{stem}.png) |")
    first = records[0].file_name if records else ""
    text = _README_HEAD.format(seed=seed, mode=mode, first=first) + "\n".join(rows) + "\n"
    return atomic_write_text(out_dir / "README.md", text)


def generate_preset(name: str, *, out_dir: str | os.PathLike, seed: int, workers: int | None = None, compression: str | None = "gzip",
                    command: str = "", on_done: Callable[[ScanRecord], None] | None = None, thumbnails: bool = True) -> list[ScanRecord]:
    """Generate a named preset (``samples``) into ``out_dir``, with thumbnails, a README table and
    ``SHA256SUMS`` of the scans."""
    if name != "samples":
        raise InvalidParameterError(f"unknown preset {name!r}; known: samples")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = sample_jobs(out, seed, compression=compression)
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    records = _run_jobs(jobs, min(max(workers, 1), len(jobs)), on_done)
    manifest = {"command": command, "nii_version": __version__, "preset": name, "seed": seed, "count": len(jobs),
                "compression": compression, "scans_spec": [list(p) for p in SAMPLE_PRESET]}
    write_dataset_files(out, records, manifest)
    if thumbnails:
        modes = {write_thumbnail(out / r.file_name, out / "thumbs" / (Path(r.file_name).stem + ".png")) for r in records}
        write_samples_readme(out, records, seed, "; ".join(sorted(modes)))
    from .._assets import sha256_file

    sums = "".join(f"{sha256_file(out / r.file_name)}  {r.file_name}\n" for r in records)
    atomic_write_text(out / "SHA256SUMS", sums)
    return records
