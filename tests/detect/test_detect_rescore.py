"""The second stage: crops at the scan's own pitch, scalar inputs, score combination, two-stage folders."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest

from nii.containers import EnergyChannel, Scan
from nii.detect.rescore import (
    KINDS,
    N_SCALARS,
    RescorerConfig,
    candidate_scalars,
    combine_scores,
    crop_candidates,
    crop_window,
    input_kind_index,
)
from nii.errors import InvalidParameterError, ModelError

CFG = RescorerConfig()


def _random_scan(make_scan, *, h=70, w=90, pitch=1.0, seed=3):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[..., 1] = np.where(rng.random((h, w)) < 0.2, 0, img[..., 1])
    return make_scan(img, pitch)


def _reference_crop(enc, box, pitch, size):
    """Plain reference: encode the whole scan, pad it with air, cut the square, resize."""
    x0, y0, x1, y1 = box
    side = max(max(x1 - x0, y1 - y0) * CFG.context + CFG.pad_px, CFG.min_crop_mm / pitch)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    a0, a1 = round(cx - side / 2), round(cx + side / 2)
    b0, b1 = round(cy - side / 2), round(cy + side / 2)
    m = 200
    canvas = np.zeros((enc.shape[0] + 2 * m, enc.shape[1] + 2 * m, 3), np.uint8)
    canvas[m : m + enc.shape[0], m : m + enc.shape[1]] = enc
    sub = canvas[b0 + m : b1 + m, a0 + m : a1 + m]
    return cv2.resize(sub, (size, size), interpolation=cv2.INTER_AREA if sub.shape[0] > size else cv2.INTER_LINEAR)


def test_crop_window_is_a_square_around_the_box_with_context():
    x0, y0, x1, y1, side = crop_window(np.array([10, 20, 30, 30]), (1.0, 1.0), config=CFG)
    assert side == pytest.approx(20 * 1.4 + 8)
    assert (x0, y0, x1, y1) == (2, 7, 38, 43)
    # a tiny box still gets min_crop_mm of context, in pixels of each axis
    x0, y0, x1, y1, side = crop_window(np.array([50, 50, 52, 52]), (0.5, 0.5), config=CFG)
    assert side == pytest.approx(24.0) and (x1 - x0, y1 - y0) == (48, 48)


@pytest.mark.parametrize("pitch", [1.0, 0.8])
def test_crops_equal_the_full_encoding_cut_and_resized(make_scan, pitch):
    from nii.normalization import detector_input

    scan = _random_scan(make_scan, pitch=pitch)
    enc = np.asarray(detector_input(scan))
    boxes = np.array([[20, 15, 50, 40], [0, 0, 12, 9], [80, 60, 90, 70], [30, 10, 32, 60]], np.float32)
    crops, side = crop_candidates(scan, boxes, config=CFG)
    assert crops.shape == (4, CFG.crop, CFG.crop, 3) and crops.dtype == np.uint8
    for b, c, s in zip(boxes, crops, side):
        np.testing.assert_array_equal(c, _reference_crop(enc, b, pitch, CFG.crop))
        assert s == pytest.approx(crop_window(b, (pitch, pitch), config=CFG)[4])


def test_crops_of_a_rendered_scan_use_the_class_zeff():
    from nii.normalization import detector_input

    rng = np.random.default_rng(5)
    h, w = 60, 64
    scan = Scan(attenuation=rng.uniform(0, 4, (1, h, w)).astype(np.float32), energies=(EnergyChannel("single", 160),),
                pixel_pitch_mm=(1.0, 1.0), material=rng.integers(0, 6, (h, w), dtype=np.uint8), rendered=True,
                metadata={"rendering": "pseudocolor"})
    enc = np.asarray(detector_input(scan))
    box = np.array([[10, 12, 40, 30]], np.float32)
    crops, _ = crop_candidates(scan, box, config=CFG)
    np.testing.assert_array_equal(crops[0], _reference_crop(enc, box[0], 1.0, CFG.crop))
    assert input_kind_index(scan) == KINDS.index("pseudocolor")


def test_input_kind_of_plain_scans(make_scan):
    scan = _random_scan(make_scan)
    assert input_kind_index(scan) == KINDS.index("dual_energy")
    single = Scan(attenuation=scan.attenuation[1:], energies=scan.energies[1:], pixel_pitch_mm=(1.0, 1.0))
    assert input_kind_index(single) == KINDS.index("greyscale")
    tagged = dataclasses.replace(scan, metadata={"input_kind": "greyscale"})
    assert input_kind_index(tagged) == KINDS.index("greyscale")


def test_candidate_scalars():
    boxes = np.array([[0, 0, 40, 20], [10, 10, 11, 11]], np.float32)
    s = candidate_scalars(np.array([2, 0]), boxes, pitch_yx=(2.0, 2.0), side_mm=np.array([100.0, 24.0]), kind=1)
    assert s.shape == (2, N_SCALARS) and s.dtype == np.float32
    np.testing.assert_array_equal(s[:, 0:4], [[0, 0, 1, 0], [1, 0, 0, 0]])
    assert s[0, 4] == pytest.approx(np.log(100) - 5.5)
    assert s[0, 5] == pytest.approx(np.log(80 / 40)) and s[1, 5] == pytest.approx(0.0)
    np.testing.assert_array_equal(s[:, 6:9], [[0, 1, 0], [0, 1, 0]])
    assert s[0, 9] == pytest.approx(np.log(2.0))
    assert s[0, 10] == pytest.approx((np.log(80 * 40) - 8) / 2)
    with pytest.raises(InvalidParameterError):
        candidate_scalars(np.array([0]), boxes[:1], pitch_yx=(1, 1), side_mm=np.array([30.0]), kind=0, nc=3)


def test_combined_score_needs_both_stages():
    y = np.array([0.81, 0.81, 0.04])
    p = np.array([[0.0, 0.0, 1.0, 0, 0], [0.9, 0.1, 0.0, 0, 0], [0.0, 1.0, 0.0, 0, 0]])
    c = np.array([1, 1, 0])
    np.testing.assert_allclose(combine_scores(y, p, c), [0.9, 0.0, 0.2], atol=1e-7)
    np.testing.assert_allclose(combine_scores(y, p, c, how="rescorer"), [1.0, 0.0, 1.0])
    with pytest.raises(InvalidParameterError):
        combine_scores(y, p, c, how="max")


@pytest.mark.parametrize("bad", [{"combine": "max"}, {"file": "../x.onnx"}, {"crop": 8}, {"context": 0.5}, {"colour": 1}])
def test_config_errors_name_the_problem(bad):
    with pytest.raises(ModelError, match="rescorer"):
        RescorerConfig.from_dict({**CFG.to_dict(), **bad})


# -- two-stage folders (torch: the train extra) -----------------------------------------------


@pytest.fixture(scope="module")
def torch_available():
    pytest.importorskip("torch")
    pytest.importorskip("onnx")


def _write_labelled(folder, make_scan, *, seed, n_scans, n_objects, prefix):
    """``folder/scans/`` with ``n_scans`` labelled synthetic scans (every third a negative)."""
    from nii.containers import Truth
    from nii.dataset.synthetic import synthetic_image
    from nii.io import write_hdf5

    scans = folder / "scans"
    scans.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n_scans):
        n = 0 if i % 3 == 0 else n_objects
        img, boxes, names = synthetic_image(128, rng=rng, n_objects=n, n_clutter=4)
        scan = make_scan(img)
        if n:
            scan = dataclasses.replace(scan, truth=Truth(boxes, tuple(names)))
        write_hdf5(scan, scans / f"{prefix}_{i:03d}.h5")
    return folder


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, make_scan):
    """Two disjoint folders of labelled synthetic scans (a third of them negatives)."""
    root = tmp_path_factory.mktemp("two-stage")
    return [_write_labelled(root / name, make_scan, seed=seed, n_scans=18, n_objects=2, prefix="s")
            for name, seed in (("train", 11), ("cal", 12))]


@pytest.fixture(scope="module")
def two_stage(torch_available, demo_dir, labelled, tmp_path_factory):
    from nii.detect.rescore_train import build_two_stage

    train, cal = labelled
    out = tmp_path_factory.mktemp("models") / "demo-2s"
    return build_two_stage(demo_dir, out, data=[train], calibrate=[cal], test=cal, epochs=1, seed=1, threads=1)


@pytest.mark.train
def test_two_stage_folder_loads_and_is_described(two_stage, demo_dir):
    from nii.detect import Detector

    det = Detector.load(two_stage)
    assert det.rescorer is not None
    sums = (two_stage / "SHA256SUMS").read_text()
    assert "rescorer.onnx" in sums and "run.sh" not in sums
    d = det.describe()
    assert d["second_stage"]["file"] == "rescorer.onnx" and len(d["second_stage"]["sha256"]) == 64
    assert det.rescorer.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    cfg = json.loads((two_stage / "config.json").read_text())
    assert cfg["second_stage_of"] == demo_dir.name and cfg["rescorer"]["combine"] == "geo"
    info = json.loads((two_stage / "rescorer_info.json").read_text())
    assert info["onnx_vs_torch_max_abs"] < 1e-3 and info["candidates"]["scans"] == 18
    assert sum(info["candidates"]["by_label"].values()) == info["candidates"]["candidates"]
    assert (two_stage / "metrics.json").is_file()
    card = (two_stage / "MODEL_CARD.md").read_text()
    assert card.startswith("# Model card: demo-2s") and "## Source model card (demo-tiny)" in card


@pytest.mark.train
def test_final_score_is_the_geometric_mean_of_both_stages(two_stage, demo_detector, labelled):
    from nii.detect import Detector
    from nii.io import read

    det = Detector.load(two_stage)
    scan = read(sorted((labelled[1] / "scans").iterdir())[1])
    yb, ys, yc = demo_detector.candidates(scan, conf=0.0)
    crops, side = crop_candidates(scan, yb, config=det.rescorer.config)
    sc = candidate_scalars(yc, yb, pitch_yx=scan.pixel_pitch_mm, side_mm=side, kind=input_kind_index(scan))
    p = det.rescorer.probabilities(crops, sc)
    expect = np.sqrt(ys * p[np.arange(len(yc)), yc + 1])
    _, s, c = det.candidates(scan, conf=0.0)
    order = np.argsort(-expect, kind="stable")
    np.testing.assert_allclose(s, expect[order], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(c, yc[order])
    # conf applies to the final score
    _, s2, _ = det.candidates(scan, conf=float(np.median(s)) if len(s) else 0.5)
    assert np.all(s2 >= (np.median(s) if len(s) else 0.5))


@pytest.mark.train
def test_detect_skips_candidates_that_cannot_reach_a_threshold(two_stage, labelled):
    from nii.detect import Detector
    from nii.io import read

    det = Detector.load(two_stage)
    seen = []
    rescore = det.rescorer.rescore

    def counting(scan, boxes, scores, cls, **kw):
        seen.append(len(scores))
        return rescore(scan, boxes, scores, cls, **kw)

    det.rescorer.rescore = counting
    checked = 0
    for path in sorted((labelled[1] / "scans").iterdir())[:6]:
        scan = read(path)
        boxes, final, cls = det.candidates(scan, conf=0.0)
        n_all = seen[-1]
        yolo = det.infer_image(det.encode(scan), conf=det.config.min_conf).scores
        if len(final) < 2:
            continue
        conf = float(np.sqrt(np.median(yolo)))  # the weaker half of the YOLO scores cannot reach it
        got = det.detect(scan, conf=conf, evidence=False, anomalies=False)
        assert seen[-1] < n_all  # the second stage saw fewer candidates
        keep = final >= conf
        assert [d.class_id for d in got] == cls[keep].tolist()
        np.testing.assert_allclose([d.confidence for d in got], final[keep], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(np.array([d.box_px for d in got]).reshape(-1, 4), boxes[keep], atol=1e-4)
        checked += 1
    assert checked >= 2


@pytest.mark.train
def test_thresholds_are_calibrated_on_final_scores(two_stage, labelled):
    from nii.detect import Detector
    from nii.detect.evaluate import collect, image_class_max

    det = Detector.load(two_stage)
    recs = [r for r in collect(det, labelled[1]) if r.negative]
    expect = np.array([image_class_max(r, det.config.nc) for r in recs], np.float32)
    np.testing.assert_allclose(det.thresholds.neg_scores, expect, atol=1e-5)  # stored to 5 decimals


@pytest.mark.train
def test_a_tampered_or_unlisted_second_stage_is_refused(two_stage, tmp_path):
    import shutil

    from nii.detect import Detector

    bad = tmp_path / "bad"
    shutil.copytree(two_stage, bad)
    with open(bad / "rescorer.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="SHA-256 mismatch"):
        Detector.load(bad)
    unlisted = tmp_path / "unlisted"
    shutil.copytree(two_stage, unlisted)
    sums = unlisted / "SHA256SUMS"
    sums.write_text("".join(ln + "\n" for ln in sums.read_text().splitlines() if "rescorer.onnx" not in ln))
    with pytest.raises(ModelError, match="not listed"):
        Detector.load(unlisted)


@pytest.mark.train
def test_build_refuses_overlapping_data_and_two_stage_sources(torch_available, two_stage, demo_dir, labelled, tmp_path):
    from nii.detect.rescore_train import build_two_stage

    with pytest.raises(InvalidParameterError, match="must differ"):
        build_two_stage(demo_dir, tmp_path / "x", data=[labelled[0]], calibrate=[labelled[0]])
    with pytest.raises(InvalidParameterError, match="already has a second stage"):
        build_two_stage(two_stage, tmp_path / "y", data=[labelled[0]], calibrate=[labelled[1]])
    with pytest.raises(InvalidParameterError, match="already exists"):
        build_two_stage(demo_dir, two_stage, data=[labelled[0]], calibrate=[labelled[1]])
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.slow
def test_extraction_with_workers_equals_one_process(demo_detector, labelled):
    from nii.detect.rescore_train import extract_candidates

    one = extract_candidates(demo_detector, [labelled[0]], config=CFG)
    two = extract_candidates(demo_detector, [labelled[0]], config=CFG, workers=2)
    assert one.counts == two.counts and one.counts["scans"] == 18 and one.counts["candidates"] > 0
    np.testing.assert_array_equal(one.crops, two.crops)
    np.testing.assert_array_equal(one.scalars, two.scalars)
    np.testing.assert_array_equal(one.labels, two.labels)


def test_saved_candidates_load_back_equal_and_refuse_another_source(demo_detector, demo_dir, labelled, tmp_path, capsys):
    import h5py

    from nii.cli import main
    from nii.detect.rescore_train import extract_candidates, load_candidates, save_candidates
    from nii.errors import InvalidDataError

    cs = extract_candidates(demo_detector, [labelled[0]], config=CFG)
    f = save_candidates(cs, tmp_path / "c.h5", detector=demo_detector, config=CFG, folders=[labelled[0]])
    back, meta = load_candidates(f, detector=demo_detector, config=CFG)
    np.testing.assert_array_equal(back.crops, cs.crops)
    np.testing.assert_array_equal(back.scalars, cs.scalars)
    np.testing.assert_array_equal(back.labels, cs.labels)
    assert back.counts == cs.counts and back.n_scans == 18 and meta["folders"] == [str(labelled[0].resolve())]
    # the CLI writes the same file, and never over an existing one
    assert main(["rescorer", "extract", str(demo_dir), "--data", str(labelled[0]), "--out", str(tmp_path / "d.h5"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["candidates"] == cs.counts["candidates"] and out["scans"] == 18
    np.testing.assert_array_equal(load_candidates(tmp_path / "d.h5", detector=demo_detector, config=CFG)[0].crops, cs.crops)
    before = (tmp_path / "d.h5").read_bytes()
    assert main(["rescorer", "extract", str(demo_dir), "--data", str(labelled[0]), "--out", str(tmp_path / "d.h5")]) == 1
    assert "exists already" in capsys.readouterr().err and (tmp_path / "d.h5").read_bytes() == before
    # another crop geometry, another network, a file of something else: refused, naming the file
    with pytest.raises(InvalidDataError, match="crop settings") as e:
        load_candidates(f, detector=demo_detector, config=dataclasses.replace(CFG, crop=64))
    assert "c.h5" in str(e.value)
    g = tmp_path / "g.h5"
    g.write_bytes(f.read_bytes())
    with h5py.File(g, "r+") as h:
        m = json.loads(h.attrs["nii"])
        h.attrs["nii"] = json.dumps({**m, "model_sha256": "0" * 64})
    with pytest.raises(InvalidDataError, match="extract again") as e:
        load_candidates(g, detector=demo_detector, config=CFG)
    assert "g.h5" in str(e.value)
    with h5py.File(g, "r+") as h:
        h.attrs["nii"] = json.dumps(m)
        del h["labels"]
        h["labels"] = np.zeros(3, np.int64)
    with pytest.raises(InvalidDataError, match="inconsistent"):
        load_candidates(g, detector=demo_detector, config=CFG)
    (tmp_path / "t.h5").write_text("not hdf5")
    with pytest.raises(InvalidDataError, match="not an HDF5") as e:
        load_candidates(tmp_path / "t.h5", detector=demo_detector, config=CFG)
    assert "t.h5" in str(e.value)
    with pytest.raises(InvalidDataError, match="no such"):
        load_candidates(tmp_path / "none.h5", detector=demo_detector, config=CFG)


@pytest.mark.train
def test_training_on_saved_candidates_equals_training_on_the_scans(torch_available, two_stage, demo_dir, demo_detector, labelled, tmp_path):
    from nii.detect.rescore_train import build_two_stage, extract_candidates, save_candidates

    train, cal = labelled
    f = save_candidates(extract_candidates(demo_detector, [train], config=CFG), tmp_path / "c.h5",
                        detector=demo_detector, config=CFG, folders=[train])
    out = build_two_stage(demo_dir, tmp_path / "m", candidates=[f], calibrate=[cal], test=cal, epochs=1, seed=1, threads=1)
    a = json.loads((two_stage / "rescorer_info.json").read_text())
    b = json.loads((out / "rescorer_info.json").read_text())
    assert b["candidates"] == a["candidates"] and b["data"] == [] and b["candidates_files"][0]["folders"] == [str(train.resolve())]
    assert [r["loss"] for r in b["train_log"]] == [r["loss"] for r in a["train_log"]]
    def timeless(d):
        if isinstance(d, dict):
            return {k: timeless(v) for k, v in d.items() if "seconds" not in k}
        return [timeless(v) for v in d] if isinstance(d, list) else d

    assert timeless(json.loads((out / "thresholds.json").read_text())) == timeless(json.loads((two_stage / "thresholds.json").read_text()))
    assert str(train.resolve()) in (out / "MODEL_CARD.md").read_text()
    # the scans behind a candidates file count as training data: not also calibration, not twice
    with pytest.raises(InvalidParameterError, match="must differ"):
        build_two_stage(demo_dir, tmp_path / "x", candidates=[f], calibrate=[train])
    with pytest.raises(InvalidParameterError, match="twice"):
        build_two_stage(demo_dir, tmp_path / "y", data=[train], candidates=[f], calibrate=[cal])
    with pytest.raises(InvalidParameterError, match="--candidates"):
        build_two_stage(demo_dir, tmp_path / "z", calibrate=[cal])
    assert not any((tmp_path / n).exists() for n in "xyz")


def _toy_candidates(n=64, seed=0):
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    scalars = rng.normal(size=(n, N_SCALARS)).astype(np.float32)
    labels = rng.integers(0, 3, n)
    return crops, scalars, labels


@pytest.mark.train
def test_crop_network_widths_and_an_explicit_cpu_device(torch_available):
    import torch

    from nii.detect import _rescorer_torch as rt

    crops, scalars, labels = _toy_candidates()
    kw = dict(n_out=3, epochs=2, seed=5, batch=16, threads=1)
    a, log_a = rt.train_cropnet(crops, scalars, labels, **kw)
    b, log_b = rt.train_cropnet(crops, scalars, labels, device="cpu", **kw)
    # naming the CPU changes nothing: same random draws, same weights
    assert a.widths == (24, 48, 96, 128, 160) and [r["loss"] for r in log_a] == [r["loss"] for r in log_b]
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    c, _ = rt.train_cropnet(crops, scalars, labels, widths=(8, 12, 16), **kw)
    assert c.widths == (8, 12, 16) and len(c.f) == 3 and c.f[-1][3].out_channels == 16
    assert c.h[0].in_features == 2 * 16 + N_SCALARS and next(c.parameters()).device.type == "cpu"
    assert rt.predict(c, crops[:5], scalars[:5]).shape == (5, 3)
    with pytest.raises(ModelError, match="not a torch device"):
        rt.train_cropnet(crops, scalars, labels, device="gpu-please", **kw)
    with pytest.raises(ModelError, match="cpu or cuda"):
        rt.train_cropnet(crops, scalars, labels, device="meta", **kw)
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA device"):
            rt.train_cropnet(crops, scalars, labels, device="cuda", **kw)


@pytest.mark.train
def test_rescorer_train_cli_takes_widths_and_device(torch_available, demo_dir, demo_detector, labelled, tmp_path, capsys):
    from nii.cli import main
    from nii.detect import Detector
    from nii.detect.rescore_train import build_two_stage, extract_candidates, save_candidates

    train, cal = labelled
    f = save_candidates(extract_candidates(demo_detector, [train], config=CFG), tmp_path / "c.h5",
                        detector=demo_detector, config=CFG, folders=[train])
    out = tmp_path / "wide"
    assert main(["rescorer", "train", str(demo_dir), "--candidates", str(f), "--calibrate", str(cal), "--out", str(out),
                 "--epochs", "1", "--seed", "1", "--threads", "1", "--widths", "8, 16,16,32", "--device", "cpu"]) == 0
    info = json.loads((out / "rescorer_info.json").read_text())
    assert info["widths"] == [8, 16, 16, 32] and info["device"] == "cpu"
    det = Detector.load(out)
    assert det.rescorer is not None
    capsys.readouterr()
    for bad in ("8,16", "8,16,x", "8,16,2000", "8,16,16.5"):
        assert main(["rescorer", "train", str(demo_dir), "--candidates", str(f), "--calibrate", str(cal),
                     "--out", str(tmp_path / "bad"), "--widths", bad]) == 1
        assert "widths must be" in capsys.readouterr().err
    with pytest.raises(InvalidParameterError, match="widths must be"):
        build_two_stage(demo_dir, tmp_path / "bad", candidates=[f], calibrate=[cal], widths=[0, 8, 8])
    assert main(["rescorer", "train", str(demo_dir), "--candidates", str(f), "--calibrate", str(cal),
                 "--out", str(tmp_path / "bad"), "--device", "gpu-please"]) == 1
    assert "not a torch device" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


@pytest.mark.train
def test_other_model_tools_keep_or_refuse_the_second_stage(two_stage, labelled, tmp_path):
    from nii.detect import Detector
    from nii.detect.quantize import quantize_model
    from nii.detect.recalibrate import recalibrate_model

    out = recalibrate_model(two_stage, tmp_path / "site", data=[labelled[1]], overlap=16)
    det = Detector.load(out)
    assert det.rescorer is not None and det.config.overlap == 16
    assert "rescorer.onnx" in (out / "SHA256SUMS").read_text()
    with pytest.raises(InvalidParameterError, match="two-stage model"):
        quantize_model(two_stage, tmp_path / "q", data=labelled[1])
    assert not (tmp_path / "q").exists()


@pytest.mark.train
def test_a_second_stage_that_does_not_fit_its_config_is_refused(two_stage, tmp_path):
    import shutil

    from nii.detect import Detector
    from nii.detect.detector import write_sha256sums

    bad = tmp_path / "bad-crop"
    shutil.copytree(two_stage, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["rescorer"]["crop"] = 64
    (bad / "config.json").write_text(json.dumps(cfg))
    write_sha256sums(bad)
    with pytest.raises(ModelError, match=r"takes crops \[3, 96, 96\], config.json says \[3, 64, 64\]"):
        Detector.load(bad)


@pytest.mark.train
def test_an_ensemble_scores_with_the_mean_of_its_members(two_stage, demo_dir, labelled, tmp_path, capsys):
    import shutil

    from nii.cli import main
    from nii.detect import Detector
    from nii.detect.detector import write_sha256sums
    from nii.detect.rescore import crop_candidates, candidate_scalars, input_kind_index
    from nii.detect.rescore_train import build_ensemble, build_two_stage, ensemble_onnx
    from nii.io import read

    train, cal = labelled
    other = build_two_stage(demo_dir, tmp_path / "demo-2s-b", data=[train], calibrate=[cal], epochs=1, seed=2, threads=1)
    out = tmp_path / "demo-ens"
    assert main(["rescorer", "ensemble", str(two_stage), str(other), "--calibrate", str(cal), "--test", str(cal),
                 "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == str(out)
    ens, a, b = Detector.load(out), Detector.load(two_stage), Detector.load(other)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["ensemble_of"] == [two_stage.name, other.name] and cfg["name"] == "demo-ens"
    info = json.loads((out / "rescorer_info.json").read_text())
    assert [m["rescorer_sha256"] for m in info["members"]] == [a.rescorer.sha256, b.rescorer.sha256]
    assert info["training_folders"] == [str(train.resolve())] and info["joined_vs_members_max_abs"] < 1e-4
    assert (out / "metrics.json").is_file() and "rescorer.onnx" in (out / "SHA256SUMS").read_text()
    assert "## Source model card (demo-2s-b)" in (out / "MODEL_CARD.md").read_text()
    # its probabilities are the mean of the members' on every candidate of a scan, and detection
    # uses them: the final score is sqrt(yolo * mean p)
    scan = read(sorted((cal / "scans").glob("*.h5"))[1])
    boxes, y, cls = Detector(a.folder, a.config, a.thresholds, a.backend, a.model_hash).candidates(scan)
    assert len(y) > 0
    crops, side = crop_candidates(scan, boxes, config=a.rescorer.config)
    sc = candidate_scalars(cls, boxes, pitch_yx=scan.pixel_pitch_mm, side_mm=side, kind=input_kind_index(scan), nc=4)
    pa, pb, pe = (d.rescorer.probabilities(crops, sc) for d in (a, b, ens))
    np.testing.assert_allclose(pe, (pa + pb) / 2, atol=1e-5)
    assert not np.allclose(pa, pb, atol=1e-3)
    got = ens.candidates(scan)[1]
    want = np.sqrt(y * ((pa + pb) / 2)[np.arange(len(y)), cls + 1])
    want = np.sort(want[want >= ens.config.min_conf])[::-1]
    assert len(want) > 1 and len(got) == len(want)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # what cannot be joined is refused before anything is written
    with pytest.raises(InvalidParameterError, match="given twice"):
        build_ensemble([two_stage, two_stage], tmp_path / "x", calibrate=[cal])
    with pytest.raises(InvalidParameterError, match="at least two"):
        build_ensemble([two_stage], tmp_path / "x", calibrate=[cal])
    with pytest.raises(InvalidParameterError, match="no second stage"):
        build_ensemble([two_stage, demo_dir], tmp_path / "x", calibrate=[cal])
    with pytest.raises(InvalidParameterError, match="trained on calibration"):
        build_ensemble([two_stage, other], tmp_path / "x", calibrate=[train])
    moved = tmp_path / "moved-first-stage"
    shutil.copytree(other, moved)
    c2 = json.loads((moved / "config.json").read_text())
    c2["min_conf"] = 0.05
    (moved / "config.json").write_text(json.dumps(c2))
    write_sha256sums(moved)
    with pytest.raises(InvalidParameterError, match="min_conf"):
        build_ensemble([two_stage, moved], tmp_path / "x", calibrate=[cal])
    assert main(["rescorer", "ensemble", str(two_stage), str(other), "--calibrate", str(cal), "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    (tmp_path / "junk.onnx").write_text("not onnx")
    with pytest.raises(ModelError, match="not an ONNX") as e:
        ensemble_onnx([a.rescorer.path, tmp_path / "junk.onnx"], tmp_path / "j.onnx")
    assert "junk.onnx" in str(e.value)


# -- evidence fusion (nii.detect.fusion) on a two-stage folder ---------------------------------------------------


@pytest.fixture(scope="module")
def fit_scans(labelled, make_scan):
    """A third labelled folder, seen by neither the second stage nor the calibration."""
    return _write_labelled(labelled[0].parent / "fit", make_scan, seed=13, n_scans=30, n_objects=3, prefix="f")


@pytest.fixture(scope="module")
def fused(two_stage, labelled, fit_scans, tmp_path_factory):
    from nii.detect.fusion import build_fused

    out = tmp_path_factory.mktemp("models") / "demo-2s-fused"
    return build_fused(two_stage, out, data=[fit_scans], calibrate=[labelled[1]], floor=0.001, l2=1.0, workers=2, threads=1)


@pytest.mark.train
def test_a_fused_folder_scores_with_its_logistic_model_and_calibrates_on_it(fused, two_stage, labelled):
    from nii.detect import Detector
    from nii.detect.evaluate import collect, image_class_max
    from nii.detect.fusion import fusion_features
    from nii.io import read

    det = Detector.load(fused)
    src = Detector.load(two_stage)
    assert det.rescorer.fusion is not None and src.rescorer.fusion is None
    assert det.describe()["second_stage"]["fusion"] == {"format": "nii-fusion/1", "floor": 0.001, "mode": "cap"}
    cfg = json.loads((fused / "config.json").read_text())
    assert cfg["fusion_of"] == two_stage.name and cfg["fusion"]["fitted_on"]["scans"] == 30
    card = (fused / "MODEL_CARD.md").read_text()
    assert "## Evidence fusion" in card and "| frac_bone_like |" in card
    assert "fusion_info.json" in (fused / "SHA256SUMS").read_text()
    checked = 0
    for path in sorted((labelled[1] / "scans").iterdir())[:8]:
        scan = read(path)
        enc = src.encode(scan)
        raw = src.infer_image(enc, conf=src.config.min_conf)
        boxes = src._to_scan_frame(raw.boxes, scan, enc.shape[:2])
        if not len(raw.scores):
            continue
        crops, side = crop_candidates(scan, boxes, config=src.rescorer.config)
        sc = candidate_scalars(raw.class_ids, boxes, pitch_yx=scan.pixel_pitch_mm, side_mm=side, kind=input_kind_index(scan))
        p = src.rescorer.probabilities(crops, sc)
        two = np.sqrt(raw.scores * p[np.arange(len(p)), raw.class_ids + 1])
        z = det.rescorer.fusion.predict(fusion_features(scan, boxes, raw.scores, p, raw.class_ids), raw.class_ids)
        expect = np.where(two >= 0.001, np.minimum(z, two), 0.0)  # mode "cap": never above sqrt(y p)
        keep = expect >= det.config.min_conf
        order = np.argsort(-expect[keep], kind="stable")
        b, s, c = det.candidates(scan)
        np.testing.assert_allclose(s, expect[keep][order], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(c, raw.class_ids[keep][order])
        # detect() (the reach bound prunes the second stage) keeps exactly the candidates at or above the thresholds
        thr = det.thresholds.for_far(None)
        got = det.detect(scan, evidence=False, anomalies=False)
        assert [d.class_id for d in got] == c[s >= thr[c]].tolist()
        checked += 1
    assert checked >= 4
    recs = [r for r in collect(det, labelled[1]) if r.negative]
    np.testing.assert_allclose(det.thresholds.neg_scores, [image_class_max(r, det.config.nc) for r in recs], atol=1e-5)
    # a site's re-calibration keeps the fusion and calibrates on the fused scores
    from nii.detect.recalibrate import recalibrate_model

    site = Detector.load(recalibrate_model(fused, fused.parent / "fused-site", data=[labelled[0]]))
    assert site.rescorer.fusion is not None
    np.testing.assert_array_equal(site.rescorer.fusion.weights, det.rescorer.fusion.weights)
    neg = [r for r in collect(det, labelled[0]) if r.negative]
    np.testing.assert_allclose(site.thresholds.neg_scores, [image_class_max(r, det.config.nc) for r in neg], atol=1e-5)


@pytest.mark.train
def test_fusion_refuses_seen_scans_a_fused_source_and_a_lone_section(fused, two_stage, labelled, fit_scans, tmp_path, capsys):
    import shutil

    from nii.cli import main
    from nii.detect import Detector
    from nii.detect.detector import write_sha256sums
    from nii.detect.fusion import build_fused

    with pytest.raises(InvalidParameterError, match="differ from calibration/test"):
        build_fused(two_stage, tmp_path / "a", data=[labelled[1]], calibrate=[labelled[1]])
    with pytest.raises(InvalidParameterError, match="the second stage has not seen"):
        build_fused(two_stage, tmp_path / "b", data=[labelled[0]], calibrate=[labelled[1]])
    with pytest.raises(InvalidParameterError, match="already has an evidence fusion"):
        build_fused(fused, tmp_path / "c", data=[fit_scans], calibrate=[labelled[1]])
    from nii.detect.rescore_train import build_ensemble

    with pytest.raises(InvalidParameterError, match="has an evidence fusion: join the two-stage folders"):
        build_ensemble([two_stage, fused], tmp_path / "e", calibrate=[labelled[1]])
    assert main(["rescorer", "fuse", str(two_stage), "--data", str(labelled[1]), "--calibrate", str(labelled[1]),
                 "--out", str(tmp_path / "d")]) != 0
    assert "differ from calibration/test" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in "abcde")
    lone = tmp_path / "lone"
    shutil.copytree(fused, lone)
    cfg = json.loads((lone / "config.json").read_text())
    del cfg["rescorer"]
    (lone / "config.json").write_text(json.dumps(cfg))
    write_sha256sums(lone)
    with pytest.raises(ModelError, match="no second stage"):
        Detector.load(lone)
