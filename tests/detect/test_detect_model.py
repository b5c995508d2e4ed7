"""The Detector on the committed demo model: loading and hashes, tiling, seams, scans, thresholds."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from nii.detect import Detection, Detector
from nii.detect.evaluate import box_iou
from nii.errors import InvalidDataError, ModelError


def test_load_verifies_hashes(demo_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(demo_dir, d)
    Detector.load(d)  # intact copy loads
    cfg = json.loads((d / "config.json").read_text())
    cfg["tile_size"] = 160
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="SHA-256 mismatch"):
        Detector.load(d)


def test_load_requires_sha256sums(demo_dir, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(demo_dir, d)
    (d / "SHA256SUMS").unlink()
    with pytest.raises(ModelError, match="SHA256SUMS"):
        Detector.load(d)


def test_every_committed_model_folder_verifies(demo_dir):
    """Each folder under detectors/ matches its SHA256SUMS (a file edited without rewriting the sums
    would make Detector.load refuse it), lists its model files, and DEFAULT names one of them."""
    from nii.detect.detector import verify_model_folder

    root = demo_dir.parent
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert demo_dir in folders
    for folder in folders:
        listed = verify_model_folder(folder)
        assert {"model.onnx", "config.json", "thresholds.json", "MODEL_CARD.md"} <= set(listed), folder.name
    default = (root / "DEFAULT").read_text().strip()
    assert default in {f.name for f in folders}


def test_committed_graphs_take_the_input_their_config_says(demo_dir):
    """A folder whose config.json records a graph rewrite (nii optimize) has a network that takes
    uint8 NHWC tiles; every other one takes the float32 NCHW export. The default is rewritten."""
    import json

    import onnxruntime as ort

    from nii.detect.graph import takes_uint8_tiles

    root = demo_dir.parent
    seen = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        cfg = json.loads((folder / "config.json").read_text())
        inp = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"]).get_inputs()[0]
        u8 = takes_uint8_tiles(inp.type, inp.shape)
        assert u8 == ("graph" in cfg), folder.name
        assert inp.shape[-1 if u8 else 1] == cfg.get("input_channels", 3), folder.name
        seen[folder.name] = u8
    assert seen[(root / "DEFAULT").read_text().strip()] and not seen["demo-tiny"]


def test_default_model_resolution(demo_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("NII_DETECTORS_DIR", str(tmp_path))
    with pytest.raises(ModelError, match="no default detector model"):
        Detector.load(None)
    shutil.copytree(demo_dir, tmp_path / "demo-tiny")
    (tmp_path / "DEFAULT").write_text("demo-tiny\n")
    det = Detector.load(None)
    assert det.config.name == "demo-tiny"
    assert Detector.load("demo-tiny").folder == tmp_path / "demo-tiny"


def test_missing_folder(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        Detector.load(tmp_path / "nope")


def test_detects_an_object(demo_detector, make_object):
    img, truth, _names = make_object(128, "ivory_worked", at=(30, 40), seed=3)
    raw = demo_detector.infer_image(img, conf=0.25)
    hit = (raw.class_ids == 1) & (box_iou(raw.boxes, truth)[:, 0] >= 0.5)
    assert hit.any()


def test_empty_image_has_no_confident_detection(demo_detector):
    raw = demo_detector.infer_image(np.zeros((200, 300, 3), np.uint8), conf=0.25, skip_air=False)
    assert len(raw) == 0
    raw = demo_detector.infer_image(np.zeros((200, 300, 3), np.uint8), skip_air=False)  # at min_conf
    assert len(raw) == 0


def test_air_tiles_are_skipped_without_changing_the_candidates(demo_detector, make_object, monkeypatch):
    from nii.detect.detector import AIR_LEVEL, live_tiles

    # one object in the corner of a wide, otherwise empty (air) image: most tiles are air
    img, _truth, _ = make_object(128, "ivory_worked", at=(30, 40), seed=3)
    wide = np.zeros((300, 900, 3), np.uint8)
    wide[:128, :128] = img
    wide[250, 700, 2] = AIR_LEVEL + 1  # one faint pixel keeps its tiles live
    tiles, _ = demo_detector._tiles(wide)
    live = live_tiles(tiles)
    ref = tiles.reshape(len(tiles), -1).astype(int).max(axis=1) > AIR_LEVEL
    np.testing.assert_array_equal(live, ref)
    assert 0 < live.sum() < len(tiles) // 2
    seen = []
    backend = demo_detector.backend
    monkeypatch.setattr(demo_detector, "backend", lambda b: seen.append(len(b)) or backend(b))
    a = demo_detector.infer_image(wide)
    assert sum(seen) == live.sum()
    b = demo_detector.infer_image(wide, skip_air=False)
    assert sum(seen) == live.sum() + len(tiles)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    assert len(a) > 0
    # an all-air image: no model run at all, and the model itself finds nothing there
    seen.clear()
    assert len(demo_detector.infer_image(np.zeros((200, 300, 3), np.uint8))) == 0 and not seen
    with pytest.raises(InvalidDataError, match="tiles must be"):
        live_tiles(np.zeros((4, 4, 3), np.uint8))


def test_object_on_a_tile_seam_is_reported_once(demo_detector, make_object):
    t = demo_detector.config.tile_size
    # 3 tiles across a 300 px wide image: origins 0, 86, 172; a 60 px object centred on x = 128
    img, truth, _ = make_object(300, "ivory_worked", at=(100, 98), seed=5)
    raw = demo_detector.infer_image(img, conf=0.25)
    same = (raw.class_ids == 1) & (box_iou(raw.boxes, truth)[:, 0] > 0.05)
    assert same.sum() == 1
    assert box_iou(raw.boxes[same], truth)[0, 0] >= 0.5
    # without seam merging the fragment from the first tile survives as a second box
    unmerged = demo_detector.infer_image(img, conf=0.25, merge=False)
    assert t == 128 and len(unmerged) >= len(raw)


def test_batching_does_not_change_results(demo_detector, make_object):
    img, _, _ = make_object(400, "pangolin_scales", at=(150, 150), seed=1)
    a = demo_detector.infer_image(img)
    bs = demo_detector.batch_size
    try:
        demo_detector.batch_size = 1
        b = demo_detector.infer_image(img)
    finally:
        demo_detector.batch_size = bs
    np.testing.assert_allclose(np.sort(a.scores), np.sort(b.scores), atol=1e-4)


def test_side_by_side_lanes_give_the_in_turn_outputs_in_tile_order(demo_dir, make_object):
    """threads=2 runs several tiles on two single-threaded lanes at once; the outputs are those of
    running every tile in turn on one session, tile by tile, in the tiles' order."""
    from nii.detect.detector import tiles_to_batch

    rng = np.random.default_rng(7)
    img, _, _ = make_object(400, "pangolin_scales", at=(150, 150), seed=1)
    seq = Detector.load(demo_dir, threads=1, batch_size=2)
    par = Detector.load(demo_dir, threads=2, batch_size=2)
    assert seq.backend.lanes == 1 and par.backend.lanes == 2
    tiles, _ = par._tiles(img)
    tiles = np.concatenate([tiles, rng.integers(0, 256, (4,) + tiles.shape[1:], dtype=np.uint8)])  # 13 tiles: odd, > lanes x batch
    ref = np.concatenate([seq.backend(tiles_to_batch(tiles[i : i + 1])) for i in range(len(tiles))])
    out = par.run_tiles(tiles)
    assert par.backend._pool is not None  # the lanes ran
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(seq.run_tiles(tiles), ref, rtol=0, atol=1e-5)
    # one tile: the two-thread session, no lane needed
    one = Detector.load(demo_dir, threads=2)
    np.testing.assert_allclose(one.run_tiles(tiles[:1]), ref[:1], rtol=0, atol=1e-5)
    assert one.backend._pool is None
    # whole images: the same candidates either way
    a, b = seq.infer_image(img), par.infer_image(img)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    assert par.run_tiles(tiles[:0]).shape == (0, 4 + par.config.nc, 0)
    with pytest.raises(InvalidDataError, match="tiles must be uint8"):
        par.run_tiles(tiles.astype(np.float32))


def test_onnxruntime_workers_sleep_rather_than_spin(demo_dir, make_object):
    """The multi-threaded session and the lanes' session are made with spinning off (waiting
    workers would take the cores from the scan's next Numba steps; nii.detect._ort)."""
    from nii.detect._ort import ALLOW_SPINNING

    det = Detector.load(demo_dir, threads=2, batch_size=2)
    img, _, _ = make_object(400, "pangolin_scales", at=(150, 150), seed=1)
    det.run_tiles(det._tiles(img)[0])  # starts the lanes
    for session in (det.backend.session, det.backend._lane_session):
        opts = session.get_session_options()
        assert opts.get_session_config_entry(ALLOW_SPINNING) == "0"
        assert opts.inter_op_num_threads == 1
    assert det.backend.session.get_session_options().intra_op_num_threads == 2
    assert det.backend._lane_session.get_session_options().intra_op_num_threads == 1


def test_lanes_are_shared_by_concurrent_callers(demo_dir, make_object):
    """One detector, four threads detecting at once on its two lanes: each gets its own answer."""
    from concurrent.futures import ThreadPoolExecutor

    det = Detector.load(demo_dir, threads=2, batch_size=2)
    imgs = [make_object(400, "pangolin_scales", at=(150, 40 + 30 * k), seed=k)[0] for k in range(4)]
    want = [det.infer_image(im) for im in imgs]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(det.infer_image, imgs * 2))
    for a, b in zip(want * 2, got):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)


def _lanes_in_child(det, tiles, queue):  # pragma: no cover - runs in a forked child
    queue.put(det.run_tiles(tiles))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Python >= 3.12 warns on fork with threads
def test_lanes_work_in_a_forked_child(demo_dir, make_object):
    """A process forked after the lanes started has none of their threads: it makes its own."""
    import multiprocessing

    img, _, _ = make_object(400, "pangolin_scales", at=(150, 150), seed=1)
    det = Detector.load(demo_dir, threads=2, batch_size=2)
    tiles, _ = det._tiles(img)
    want = det.run_tiles(tiles)  # the parent's lanes are running now
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    proc = ctx.Process(target=_lanes_in_child, args=(det, tiles, q))
    proc.start()
    try:
        got = q.get(timeout=60)
    finally:
        proc.join(timeout=60)
        if proc.is_alive():
            proc.kill()
    assert proc.exitcode == 0
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_input_validation(demo_detector):
    with pytest.raises(InvalidDataError):
        demo_detector.infer_image(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(InvalidDataError):
        demo_detector.infer_image(np.zeros((64, 64, 4), np.uint8))


def test_detect_scan_returns_detections_with_evidence(demo_detector, make_object, make_scan):
    img, truth, _ = make_object(200, "ivory_worked", at=(50, 70), seed=3)
    scan = make_scan(img, 3.0)
    dets = demo_detector.detect(scan, conf=0.25)
    yolo = [d for d in dets if d.origin == "yolo"]
    assert yolo and all(isinstance(d, Detection) for d in dets)
    best = max(yolo, key=lambda d: d.confidence)
    assert best.class_name == "ivory_worked"
    assert box_iou(np.array([best.box_px]), truth)[0, 0] >= 0.5
    np.testing.assert_allclose(best.box_mm, np.array(best.box_px) * 3.0, rtol=1e-5)
    assert best.evidence["zeff_median"] == pytest.approx(13.8, abs=0.3)
    assert best.evidence["frac_bone_like"] > 0.5
    d = best.to_dict()
    json.dumps(d)
    assert set(d) >= {"class", "confidence", "box_px", "box_mm", "origin", "evidence"}


def test_rendered_scan_at_another_pitch_maps_boxes_back(demo_detector, make_object):
    """A pseudo-colour screenshot at 1.5 mm is encoded at the model pitch; boxes come back in its frame."""
    from pathlib import Path

    import cv2

    from nii.encoding import ATT_SCALE, ZEFF_HI, ZEFF_LO
    from nii.io.rendered import scan_from_8bit
    from nii.materials import render_pseudocolor, zeff_to_class

    img, truth, _ = make_object(160, "ivory_worked", at=(40, 50), seed=3)
    l_high = (-ATT_SCALE * np.log1p(-np.minimum(img[..., 0].astype(np.float64), 254) / 255.0)).astype(np.float32)
    z = np.where(img[..., 1] > 0, ZEFF_LO + img[..., 1] / 255.0 * (ZEFF_HI - ZEFF_LO), np.nan)
    mat = np.where(np.isfinite(z), zeff_to_class(np.nan_to_num(z, nan=1.0)), 0).astype(np.uint8)
    rgb = cv2.resize(render_pseudocolor(l_high, mat), (320, 320), interpolation=cv2.INTER_NEAREST)  # 1.5 mm
    scan = scan_from_8bit(rgb, Path("shot")).replace(pixel_pitch_mm=(1.5, 1.5))
    enc = demo_detector.encode(scan)
    assert enc.shape == (160, 160, 3)
    # the object's material survives: class-representative Zeff 13 in channel 1 inside the truth box
    x0, y0, x1, y1 = truth[0].astype(int)
    assert np.median(enc[y0:y1, x0:x1, 1][enc[y0:y1, x0:x1, 1] > 0]) == round(255 * (13 - ZEFF_LO) / (ZEFF_HI - ZEFF_LO))
    raw = demo_detector.infer_image(enc)
    boxes, scores, _ = demo_detector.candidates(scan)
    assert len(raw) > 0
    np.testing.assert_allclose(boxes, raw.boxes * 2.0, rtol=1e-5)
    np.testing.assert_allclose(scores, raw.scores)


def test_far_moves_the_operating_point(demo_detector, make_object, make_scan):
    th = demo_detector.thresholds
    lo, hi = th.for_far("30%"), th.for_far("0.5%")
    assert np.all(lo <= hi) and np.any(lo < hi)  # a higher FAR lowers thresholds (never raises one)
    rng = np.random.default_rng(0)
    from nii.dataset.synthetic import synthetic_image

    img, _, _ = synthetic_image(256, rng=rng, n_objects=3, n_clutter=4)
    scan = make_scan(img)
    d_hi = {(d.class_id, d.box_px) for d in demo_detector.detect(scan, far="0.5%", anomalies=False, evidence=False)}
    d_lo = {(d.class_id, d.box_px) for d in demo_detector.detect(scan, far="30%", anomalies=False, evidence=False)}
    assert d_hi <= d_lo  # the stricter point reports a subset
    assert len(demo_detector.detect(scan, conf=0.01, anomalies=False)) >= len(d_lo)
    for d in demo_detector.detect(scan, far="1%", anomalies=False, evidence=False):
        assert d.confidence >= th.for_far(0.01)[d.class_id]


def test_with_far_changes_the_default_operating_point(demo_detector):
    d = demo_detector.with_far("30%")
    assert d.backend is demo_detector.backend
    np.testing.assert_array_equal(d.thresholds.for_far(), demo_detector.thresholds.for_far("30%"))
    assert demo_detector.thresholds.default_far == 0.01
