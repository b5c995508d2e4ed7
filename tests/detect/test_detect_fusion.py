"""Evidence fusion: features, the logistic fit, the reach bound, the config section."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nii.detect.evidence import box_evidence
from nii.detect.fusion import FEATURES, FUSION_FORMAT, RANGES, Fusion, fit_logistic, fusion_features
from nii.errors import InvalidDataError, InvalidParameterError, ModelError

CLASSES = ("ivory", "ivory_worked", "pangolin_scales", "rhino_horn")


def _scan(make_scan, seed=0, h=60, w=80):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[10:40, 20:60, 1] = 88  # Zeff ~13.6: bone-like where dense enough
    img[10:40, 20:60, 0] = 200
    img[..., 1] = np.where(rng.random((h, w)) < 0.1, 0, img[..., 1])
    return make_scan(img, 1.5)


def _penalised_loss(beta, z, y, l2):
    t = z @ beta
    return float(np.sum(np.logaddexp(0.0, t) - y * t) + 0.5 * l2 * np.sum(beta[:-1] ** 2))


def test_logistic_fit_minimises_the_penalised_loss(rng):
    from scipy.optimize import minimize

    x = rng.normal(size=(400, 4)) * [1.0, 3.0, 0.5, 2.0] + [0.0, 1.0, -2.0, 5.0]
    x = np.hstack([x, np.full((400, 1), 7.0)])  # a constant column gets weight 0
    y = (rng.random(400) < 1 / (1 + np.exp(-(x[:, 0] - 0.5 * x[:, 1] + 0.3)))).astype(float)
    w, b = fit_logistic(x, y, l2=3.0)
    assert w[4] == 0.0
    mu, sd = x[:, :4].mean(0), x[:, :4].std(0)
    z = np.hstack([(x[:, :4] - mu) / sd, np.ones((400, 1))])
    ref = minimize(_penalised_loss, np.zeros(5), args=(z, y, 3.0), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(w[:4], ref[:4] / sd, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b, ref[4] - np.sum(ref[:4] / sd * mu), rtol=1e-4, atol=1e-6)
    with pytest.raises(InvalidParameterError, match="l2 must be positive"):
        fit_logistic(x, y, l2=0.0)


def test_features_come_from_the_scores_and_the_box_evidence(make_scan):
    scan = _scan(make_scan)
    boxes = np.array([[20, 10, 60, 40], [0, 0, 15, 15]], np.float32)
    yolo = np.array([0.6, 0.02])
    probs = np.array([[0.3, 0.5, 0.1, 0.05, 0.05], [0.9, 0.02, 0.03, 0.03, 0.02]])
    cls = np.array([0, 3])
    x = fusion_features(scan, boxes, yolo, probs, cls)
    assert x.shape == (2, len(FEATURES))
    f = {k: x[:, i] for i, k in enumerate(FEATURES)}
    np.testing.assert_allclose(f["logit_yolo"], np.log(yolo / (1 - yolo)))
    np.testing.assert_allclose(f["logit_class_prob"], np.log([0.5 / 0.5, 0.02 / 0.98]))
    np.testing.assert_allclose(f["logit_background_prob"], np.log([0.3 / 0.7, 0.9 / 0.1]))
    assert (f["kind_pseudocolor"] == 0).all() and (f["kind_greyscale"] == 0).all()
    for i, b in enumerate(boxes):
        e = box_evidence(scan, b)
        assert f["frac_bone_like"][i] == pytest.approx(e["frac_bone_like"])
        assert f["zeff_median"][i] == pytest.approx(np.clip((e["zeff_median"] - 10) / 5, *RANGES["zeff_median"]))
        assert f["log_areal_density"][i] == pytest.approx(np.log1p(e["areal_density_median_g_cm2"]))
        assert f["object_fraction"][i] == pytest.approx(e["object_fraction"])
    assert f["frac_bone_like"][0] > 0.5
    # single-energy input: no Zeff features, the kind says so
    grey = dataclasses.replace(scan, attenuation=scan.attenuation[1:], energies=scan.energies[1:], zeff=None)
    g = fusion_features(grey, boxes, yolo, probs, cls)
    dual_only = [FEATURES.index(k) for k in ("frac_bone_like", "frac_dense_organic", "frac_metal", "zeff_median", "zeff_p10", "zeff_p90")]
    assert (g[:, dual_only] == 0).all() and (g[:, FEATURES.index("kind_greyscale")] == 1).all()
    np.testing.assert_allclose(g[:, FEATURES.index("log_areal_density")], x[:, FEATURES.index("log_areal_density")])
    assert fusion_features(scan, np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5)), np.zeros(0, int)).shape == (0, len(FEATURES))
    with pytest.raises(InvalidParameterError, match="2 boxes, 1 scores"):
        fusion_features(scan, boxes, yolo[:1], probs, cls)


def _random_fusion(rng, nc=4, mode="cap"):
    return Fusion(rng.normal(size=(nc, len(FEATURES))), rng.normal(size=nc), floor=0.05, mode=mode)


@pytest.mark.parametrize("kind", [0, 1, 2])
@pytest.mark.parametrize("combine", ["geo", "rescorer"])
@pytest.mark.parametrize("mode", ["cap", "replace"])
def test_reach_never_drops_a_candidate_that_can_reach_its_threshold(rng, kind, combine, mode):
    lo = np.array([RANGES[f][0] for f in FEATURES])
    hi = np.array([RANGES[f][1] for f in FEATURES])
    dropped = 0
    for trial in range(20):
        fz = _random_fusion(rng, mode=mode)
        n = 500
        y = rng.uniform(0.0, 1.0, n) ** 2
        cls = rng.integers(0, 4, n)
        p = rng.uniform(0.0, 1.0, n)
        two = np.sqrt(y * p) if combine == "geo" else p
        x = rng.uniform(lo, hi, (n, len(FEATURES)))
        x[:, 0] = np.log(np.clip(y, 1e-4, 1 - 1e-4) / (1 - np.clip(y, 1e-4, 1 - 1e-4)))
        x[:, 1] = np.log(np.clip(p, 1e-4, 1 - 1e-4) / (1 - np.clip(p, 1e-4, 1 - 1e-4)))
        x[:, 3], x[:, 4] = float(kind == 1), float(kind == 2)
        if kind:
            x[:, 5:11] = 0.0
        fused = np.where(two >= fz.floor, fz.predict(x, cls), 0.0)
        if mode == "cap":
            fused = np.minimum(fused, two)
        thr = rng.uniform(0.05, 0.95, 4).astype(np.float32)
        reach = fz.reach(y, cls, thr, kind=kind, combine=combine)
        passes = fused >= thr[cls]
        assert not (passes & ~reach).any()
        dropped += int((~reach).sum())
    assert dropped > 0  # the bound does prune


def test_config_section_round_trips_and_bad_sections_are_refused(rng):
    fz = _random_fusion(rng)
    d = fz.to_dict(CLASSES)
    assert d["format"] == FUSION_FORMAT and d["features"] == list(FEATURES) and list(d["classes"]) == list(CLASSES)
    back = Fusion.from_dict(d, CLASSES)
    np.testing.assert_allclose(back.weights, fz.weights, atol=1e-6)
    np.testing.assert_allclose(back.bias, fz.bias, atol=1e-6)
    bad = [({**d, "format": "nii-fusion/9"}, "format"),
           ({**d, "features": d["features"][:-1]}, "features must be"),
           ({**d, "classes": dict(list(d["classes"].items())[:3])}, "each of the model's classes"),
           ({**d, "classes": {**d["classes"], "ivory": {"weights": [1.0] * 3, "bias": 0.0}}}, "13 weights"),
           ({**d, "classes": {**d["classes"], "ivory": {"weights": [float("nan")] * 13, "bias": 0.0}}}, "finite"),
           ({**d, "floor": 0.0}, "floor"),
           ({**d, "mode": "max"}, "mode must be one of"),
           ({k: v for k, v in d.items() if k != "mode"}, "'mode' is missing"),
           ("nope", "must be an object")]
    for sec, msg in bad:
        with pytest.raises(ModelError, match=msg):
            Fusion.from_dict(sec, CLASSES)


def test_fit_fusion_needs_both_labels_for_every_class(rng):
    from nii.detect.fusion import fit_fusion

    x = rng.normal(size=(80, len(FEATURES)))
    cls = np.repeat(np.arange(4), 20)
    lab = np.tile(np.r_[np.ones(10), np.zeros(10)], 4)
    fz = fit_fusion(x, cls, lab, CLASSES, l2=1.0)
    assert fz.weights.shape == (4, len(FEATURES))
    lab[cls == 2] = 0
    with pytest.raises(InvalidDataError, match="too few pangolin_scales candidates"):
        fit_fusion(x, cls, lab, CLASSES)


def test_fuse_with_thresholds_skips_only_candidates_below_them(make_scan, rng, monkeypatch):
    import nii.detect.evidence as ev

    scan = _scan(make_scan, seed=4)
    n = 60
    x0 = rng.uniform(0, 60, n)
    y0 = rng.uniform(0, 40, n)
    boxes = np.stack([x0, y0, x0 + rng.uniform(4, 20, n), y0 + rng.uniform(4, 20, n)], 1)
    yolo = rng.uniform(0.01, 1.0, n)
    probs = rng.dirichlet(np.ones(5), n)
    cls = rng.integers(0, 4, n)
    two = np.sqrt(yolo * probs[np.arange(n), cls + 1])
    calls = []
    real = ev.box_evidence
    monkeypatch.setattr(ev, "box_evidence", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    skipped = 0
    for trial in range(10):
        fz = _random_fusion(np.random.default_rng(trial), mode=("cap", "replace")[trial % 2])
        calls.clear()
        full = fz.fuse(scan, boxes, yolo, probs, cls, two)
        n_full = len(calls)
        thr = np.quantile(full[full > 0], [0.3, 0.5, 0.7, 0.9]).astype(np.float32) if (full > 0).any() else np.full(4, 0.5, np.float32)
        calls.clear()
        part = fz.fuse(scan, boxes, yolo, probs, cls, two, thresholds=thr)
        keep = full >= thr[cls]
        np.testing.assert_array_equal(part[keep], full[keep])
        assert (part[~keep] < thr[cls][~keep]).all()
        assert n_full == int((two >= fz.floor).sum())
        skipped += n_full - len(calls)
    assert skipped > 0  # the evidence of some hopeless candidates was never computed


def test_cap_mode_never_raises_the_two_stage_score(make_scan, rng):
    scan = _scan(make_scan, seed=5)
    n = 40
    boxes = np.stack([rng.uniform(0, 50, n), rng.uniform(0, 30, n)], 1)
    boxes = np.hstack([boxes, boxes + rng.uniform(5, 25, (n, 2))])
    yolo = rng.uniform(0.01, 1.0, n)
    probs = rng.dirichlet(np.ones(5), n)
    cls = rng.integers(0, 4, n)
    two = np.sqrt(yolo * probs[np.arange(n), cls + 1]).astype(np.float32)
    w, b = rng.normal(size=(4, len(FEATURES))), rng.normal(size=4) + 3.0  # a fusion that likes everything
    free = Fusion(w, b, mode="replace").fuse(scan, boxes, yolo, probs, cls, two)
    cap = Fusion(w, b, mode="cap").fuse(scan, boxes, yolo, probs, cls, two)
    on = two >= 0.05
    np.testing.assert_array_equal(cap[on], np.minimum(free[on], two[on]))
    assert (cap <= two).all() and (free[on] > two[on]).any() and (cap[~on] == 0).all()
