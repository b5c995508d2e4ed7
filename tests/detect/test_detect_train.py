"""Tests that need the ``train`` extra (torch + ultralytics); skipped cleanly without it."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def ul():
    from nii.detect import _ultralytics

    # never import ultralytics here directly: only the adapter may, with its offline settings
    # (an import outside it would write ~/.config/Ultralytics and probe the network)
    if not _ultralytics.available():
        pytest.skip("the train extra (torch + ultralytics) is not installed")

    return _ultralytics


def test_onnx_and_ultralytics_backends_agree(ul, demo_dir, demo_detector, make_object):
    from nii.detect import Detector

    pt_det = Detector.load(demo_dir, backend="ultralytics")
    assert pt_det.backend.name == "ultralytics"
    img, _, _ = make_object(300, "pangolin_scales", at=(80, 120), seed=2, n_clutter=2)
    a = demo_detector.infer_image(img)
    b = pt_det.infer_image(img)
    assert len(a) > 0
    # raw network outputs agree, hence the decoded candidates too
    tiles, _ = demo_detector._tiles(img)
    batch = np.ascontiguousarray(tiles.transpose(0, 3, 1, 2), np.float32) / 255.0
    np.testing.assert_allclose(demo_detector.backend(batch), pt_det.backend(batch), atol=2e-3, rtol=1e-3)
    conf = a.scores >= 0.1
    confb = b.scores >= 0.1
    assert conf.sum() == confb.sum()
    np.testing.assert_allclose(np.sort(a.scores[conf]), np.sort(b.scores[confb]), atol=2e-3)


def test_ultralytics_own_predict_matches(ul, demo_dir, demo_detector, make_object):
    """Ultralytics' predict pipeline (letterbox, its NMS) finds the same object as nii's decoder."""
    from nii.detect.evaluate import box_iou

    img, _truth, _ = make_object(128, "ivory_worked", at=(30, 40), seed=3)
    boxes, scores, cls = ul.predict_ultralytics(demo_dir / "model.pt", img, conf=0.25, iou=0.5, imgsz=128)
    raw = demo_detector.infer_image(img, conf=0.25)
    assert len(boxes) and len(raw)
    i, j = int(np.argmax(scores)), int(np.argmax(raw.scores))
    assert cls[i] == raw.class_ids[j]
    assert scores[i] == pytest.approx(raw.scores[j], abs=2e-3)
    assert box_iou(boxes[i : i + 1], raw.boxes[j : j + 1])[0, 0] > 0.95


def test_adapter_leaves_no_global_state(ul, demo_dir):
    import cv2

    env = dict(os.environ)
    threads = cv2.getNumThreads()
    printopts = np.get_printoptions()
    ul.TorchBackend(demo_dir / "model.pt")
    assert dict(os.environ) == env
    assert cv2.getNumThreads() == threads
    assert np.get_printoptions() == printopts


def test_one_epoch_training_smoke(ul, tmp_path):
    """Build a few synthetic tiles, train one epoch, export, calibrate, package, load."""
    from nii.dataset.synthetic import build_synthetic_dataset
    from nii.detect import Detector
    from nii.detect.training import Recipe, train_model

    data = build_synthetic_dataset(tmp_path / "data", size=64, n_train=8, n_val=6, n_test=6, seed=1)
    out = train_model(
        data,
        tmp_path / "model",
        recipe=Recipe(model="yolo11-pico", imgsz=64, epochs=1, batch=4, time_hours=None, workers=0, close_mosaic=0,
                      optimizer="AdamW", lr0=0.003, warmup_epochs=0.5, cache="ram"),
        work_dir=tmp_path / "work",
    )
    import json

    args = json.loads((out / "train_info.json").read_text())["ultralytics_args"]
    assert (args["optimizer"], args["lr0"], args["warmup_epochs"], args["cache"]) == ("AdamW", 0.003, 0.5, "ram")
    assert 'optimizer = "AdamW"' in (out / "recipe.toml").read_text()
    for f in ("model.onnx", "model.pt", "config.json", "thresholds.json", "MODEL_CARD.md", "recipe.toml", "SHA256SUMS", "metrics.json"):
        assert (out / f).is_file(), f
    det = Detector.load(out)
    assert det.config.tile_size == 64 and det.config.classes[0] == "ivory"
    det.infer_image(np.zeros((100, 70, 3), np.uint8))


def test_two_stage_training_weights_only_then_package(ul, tmp_path):
    """`--weights-only` on the training machine, `--from-weights` on the packaging one."""
    import dataclasses
    import json

    from nii.dataset.synthetic import build_synthetic_dataset
    from nii.detect import Detector
    from nii.detect.training import Recipe, train_model

    data = build_synthetic_dataset(tmp_path / "data", size=64, n_train=8, n_val=6, n_test=6, seed=1)
    recipe = Recipe(model="yolo11-pico", imgsz=64, epochs=1, batch=4, time_hours=None, workers=0, close_mosaic=0)
    w = train_model(data, tmp_path / "w", recipe=recipe, work_dir=tmp_path / "work", command="stage one", weights_only=True)
    assert {p.name for p in w.iterdir()} <= {"model.pt", "train_info.json", "train_log.csv"}
    assert (w / "model.pt").is_file()
    info = json.loads((w / "train_info.json").read_text())
    assert info["recipe"]["model"] == "yolo11-pico" and info["epochs_run"] == 1 and info["command"] == "stage one"
    # the packaging stage uses the recorded recipe, not the one it is given
    out = train_model(data, tmp_path / "m", recipe=Recipe(), from_weights=w / "model.pt", command="stage two")
    toml = (out / "recipe.toml").read_text()
    assert 'model = "yolo11-pico"' in toml and 'train = "stage one"' in toml and 'package = "stage two"' in toml
    for f in ("model.onnx", "model.pt", "config.json", "thresholds.json", "MODEL_CARD.md", "SHA256SUMS", "metrics.json"):
        assert (out / f).is_file(), f
    assert (out / "model.pt").read_bytes() == (w / "model.pt").read_bytes()
    # the card's test table gives each Pd with its 95 % interval, computed from the same counts
    m = json.loads((out / "metrics.json").read_text())
    card = (out / "MODEL_CARD.md").read_text()
    assert "95 % Wilson intervals" in card
    ci = m["classes"]["ivory"]["pd_at_far_1pct_ci95"]
    assert ci is not None and f"({100 * ci[0]:.1f}–{100 * ci[1]:.1f})" in card
    assert json.loads((out / "train_info.json").read_text())["recipe"]["model"] == "yolo11-pico"
    det = Detector.load(out)
    assert det.config.tile_size == 64
    # a continued run starts from those weights and records where it came from
    cont = train_model(data, tmp_path / "w2", recipe=dataclasses.replace(recipe, init_weights=str(w / "model.pt"), mosaic=0.0),
                       work_dir=tmp_path / "work2", weights_only=True)
    info2 = json.loads((cont / "train_info.json").read_text())
    assert info2["init"]["epochs_run"] == 1 and info2["init"]["recipe"]["model"] == "yolo11-pico"
    assert info2["ultralytics_args"]["mosaic"] == 0.0
    out2 = train_model(data, tmp_path / "m2", recipe=Recipe(), from_weights=cont / "model.pt")
    assert "It continued from `model.pt`" in (out2 / "MODEL_CARD.md").read_text()
    # the continuation averaged with its start, packaged and recorded as such
    out3 = train_model(data, tmp_path / "m3", recipe=Recipe(), from_weights=cont / "model.pt", average_with=w / "model.pt", mix=0.3)
    wa = json.loads((out3 / "train_info.json").read_text())["weight_average"]
    assert wa["mix"] == 0.3 and wa["with"]["weights"] == str(w / "model.pt") and wa["of"]["weights"] == str(cont / "model.pt")
    assert "the average 0.7 x" in (out3 / "MODEL_CARD.md").read_text()
    assert (out3 / "model.pt").read_bytes() != (cont / "model.pt").read_bytes()
    assert Detector.load(out3).config.tile_size == 64


def test_weight_average_is_the_parameterwise_mix(ul, demo_dir, tmp_path):
    import torch

    from nii.errors import InvalidParameterError, ModelError

    ck = torch.load(demo_dir / "model.pt", map_location="cpu", weights_only=False)
    sd = {k: v.clone() for k, v in ck["model"].state_dict().items()}  # state_dict() shares the parameters' storage
    doubled = {k: (v * 2 if v.is_floating_point() else v) for k, v in sd.items()}
    ck["model"].load_state_dict(doubled)
    torch.save(ck, tmp_path / "b.pt")
    ul.average_pt(demo_dir / "model.pt", tmp_path / "b.pt", tmp_path / "m.pt", weight=0.25)
    got = torch.load(tmp_path / "m.pt", map_location="cpu", weights_only=False)["model"].state_dict()
    assert got.keys() == sd.keys()
    n_float = 0
    for k, v in sd.items():
        if v.is_floating_point():
            n_float += 1
            torch.testing.assert_close(got[k].float(), 1.25 * v.float(), rtol=2e-3, atol=1e-4)  # 0.75 a + 0.25 (2 a)
            assert got[k].dtype == v.dtype
        else:
            assert torch.equal(got[k], v)
    assert n_float > 20
    # the ends of the range are the networks themselves
    ul.average_pt(demo_dir / "model.pt", tmp_path / "b.pt", tmp_path / "a.pt", weight=0.0)
    a = torch.load(tmp_path / "a.pt", map_location="cpu", weights_only=False)["model"].state_dict()
    assert all(torch.equal(a[k], sd[k]) for k in sd)
    with pytest.raises(InvalidParameterError, match="average weight"):
        ul.average_pt(demo_dir / "model.pt", tmp_path / "b.pt", tmp_path / "x.pt", weight=1.5)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="junk.pt"):
        ul.average_pt(tmp_path / "junk.pt", tmp_path / "b.pt", tmp_path / "x.pt", weight=0.5)
    # another architecture (a yolo11-pico with 1 class instead of 4) is refused
    other = torch.load(demo_dir / "model.pt", map_location="cpu", weights_only=False)
    m = other["model"]
    last = [k for k, v in m.state_dict().items() if v.ndim == 4 and v.shape[0] > 1][-1]
    sd2 = dict(m.state_dict())
    sd2[last] = sd2[last][:1]
    torch.save({"model": _Holder(sd2)}, tmp_path / "c.pt")
    with pytest.raises(ModelError, match="different architectures"):
        ul.average_pt(demo_dir / "model.pt", tmp_path / "c.pt", tmp_path / "x.pt", weight=0.5)
    assert not (tmp_path / "x.pt").exists()


class _Holder:
    """A stand-in module whose state_dict has other shapes (picklable at module level)."""

    def __init__(self, sd):
        self._sd = sd

    def state_dict(self):
        return self._sd


def test_continued_training_starts_from_the_given_weights(ul, tmp_path):
    """At a vanishing learning rate a continued run must end where it started (from scratch it
    would be a fresh random network: Ultralytics drops the weights unless told to keep them)."""
    import dataclasses

    import torch

    from nii.dataset.synthetic import build_synthetic_dataset
    from nii.detect.training import Recipe, train_model

    data = build_synthetic_dataset(tmp_path / "data", size=64, n_train=8, n_val=6, n_test=6, seed=1)
    recipe = Recipe(model="yolo11-pico", imgsz=64, epochs=1, batch=4, time_hours=None, workers=0, close_mosaic=0, seed=3)
    w = train_model(data, tmp_path / "w", recipe=recipe, work_dir=tmp_path / "work", weights_only=True)
    # another seed: a from-scratch network would not even start from the same random weights
    cont = dataclasses.replace(recipe, seed=11, init_weights=str(w / "model.pt"), optimizer="SGD", lr0=1e-9, warmup_epochs=0.0)
    w2 = train_model(data, tmp_path / "w2", recipe=cont, work_dir=tmp_path / "work2", weights_only=True)

    def convs(pt):
        sd = torch.load(pt, map_location="cpu", weights_only=False)["model"].float().state_dict()
        return {k: v for k, v in sd.items() if k.endswith(".conv.weight")}

    a, b = convs(w / "model.pt"), convs(w2 / "model.pt")
    assert a.keys() == b.keys() and len(a) > 5
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-5, rtol=1e-4)
