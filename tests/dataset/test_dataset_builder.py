"""The simulator-driven dataset builder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nii.dataset.builder import (
    BuildConfig,
    _scenario_pool,
    randomized_profile,
    render_as,
)
from nii.errors import InvalidParameterError


def _have_material_tables() -> bool:
    from nii.calibrate.material import load_default_table
    from nii.errors import NiiError

    try:
        load_default_table("baggage_sandwich_140")
    except NiiError:
        return False
    return True


def test_config_validation():
    with pytest.raises(InvalidParameterError):
        BuildConfig(tile_size=100)
    with pytest.raises(InvalidParameterError):
        BuildConfig(overlap=200)
    with pytest.raises(InvalidParameterError):
        BuildConfig(n_train=-1)
    with pytest.raises(InvalidParameterError):
        BuildConfig(train_first_index=-1)
    with pytest.raises(InvalidParameterError, match="train_overburden"):
        BuildConfig(train_overburden=1.2)
    with pytest.raises(InvalidParameterError, match="train_overburden_style"):
        BuildConfig(train_overburden=0.5, train_overburden_style="planks")


def test_held_out_family_never_in_train_pool():
    names, w = _scenario_pool("baggage", "timber", None)
    assert "hollow_timber" not in names and abs(w.sum() - 1) < 1e-9
    only, _ = _scenario_pool("cargo", None, "timber")
    assert only == ["hollow_timber"]
    assert "negative_confusers" in names  # negatives full of confusers are in the mix


def test_randomized_profile_changes_physics_not_identity():
    from nii.profiles import load_profile

    p = load_profile("baggage_sandwich_140")
    r = randomized_profile(p, np.random.default_rng(0))
    assert r.id == p.id and r.channels == p.channels and r.pixel_pitch_mm == p.pixel_pitch_mm
    assert r.quanta_per_pixel != p.quanta_per_pixel
    assert r.blur.detector_psf_fwhm_mm != p.blur.detector_psf_fwhm_mm


def test_render_as_recovers_scan_like_the_reader():
    from nii.containers import EnergyChannel, Scan, Truth

    l = np.zeros((40, 50), np.float32)
    l[10:20, 10:30] = 1.0
    mat = np.zeros((40, 50), np.uint8)
    mat[10:20, 10:30] = 2
    z = np.where(mat > 0, 13.8, np.nan).astype(np.float32)
    s = Scan(attenuation=np.stack([l * 1.4, l]), energies=(EnergyChannel("low", 80), EnergyChannel("high", 140)),
             pixel_pitch_mm=(3.0, 3.0), zeff=z, material=mat, truth=Truth(np.array([[10, 10, 30, 20]]), ("ivory",)), scan_id="x")
    rng = np.random.default_rng(1)
    pc = render_as(s, "pseudocolor", rng)
    assert pc.rendered and pc.n_energies == 1 and pc.pixel_pitch_mm == (3.0, 3.0)
    assert pc.metadata["input_kind"] == "pseudocolor" and pc.truth.classes == ("ivory",)
    assert np.all(pc.material[12:18, 12:28] == 2)
    gr = render_as(s, "greyscale", rng)
    assert gr.zeff is None and gr.metadata["input_kind"] == "greyscale"
    assert abs(float(np.median(gr.attenuation[0, 12:18, 12:28])) - 1.0) < 0.05
    with pytest.raises(InvalidParameterError):
        render_as(s, "infrared", rng)


@pytest.mark.slow
def test_build_a_tiny_dataset(tmp_path):
    if not _have_material_tables():
        pytest.skip("no shipped material calibration yet (nii calibrate wedge --simulate)")
    from nii.dataset.builder import build_dataset
    from nii.io import read

    cfg = BuildConfig(n_train=3, n_val=3, n_test=3, seed=5, profiles=("baggage_sandwich_140",), profile_weights=None,
                      kind_weights=(0.4, 0.3, 0.3), val_tile_scans=1)
    root = build_dataset(tmp_path / "d", cfg, command="test")
    man = json.loads((root / "dataset.json").read_text())
    assert man["n_errors"] == 0, man["errors"]
    assert man["held_out_families"] == ["timber"]
    assert man["counts"]["train"]["tiles"] >= 1
    scans = sorted((root / "test" / "scans").glob("*.h5"))
    assert len(scans) == 3 and len(list((root / "val" / "scans").glob("*.h5"))) == 3
    s = read(scans[0])
    assert s.metadata["split"] == "test" and s.metadata["input_kind"] in ("dual_energy", "pseudocolor", "greyscale")
    # every scan names the phantom behind each truth box, in truth order (Pd by object kind)
    from nii.sim.scenes import _IVORY_RAW, _IVORY_WORKED, _RHINO, _SCALES

    seen = []
    for f in scans + sorted((root / "val" / "scans").glob("*.h5")):
        sc = read(f)
        kinds = sc.metadata["target_kinds"]
        assert len(kinds) == len(sc.truth.classes) == len(sc.metadata["target_mass_g"])
        assert all(m > 0 for m in sc.metadata["target_mass_g"])
        assert all(k in (*_IVORY_RAW, *_IVORY_WORKED, *_SCALES, *_RHINO, "scale_sack") for k in kinds)
        seen += kinds
    assert seen  # seed 5 places targets in some of these scans
    # tiles are at the detector pitch and size
    from nii.dataset.yolo import read_tile

    t = read_tile(next((root / "train" / "images").glob("*.png")))
    assert t.shape == (320, 320, 3)
    # splits come from disjoint seeds: no identical tile across train and val
    tr = {p.read_bytes() for p in (root / "train" / "images").glob("*.png")}
    va = {p.read_bytes() for p in (root / "val" / "images").glob("*.png")}
    assert not tr & va


def test_train_first_index_builds_later_scenes_and_leaves_val_test_alone(tmp_path):
    """Scenes 2-3 built alone are byte-identical to scenes 2-3 of a build from 0; val scenes too."""
    if not _have_material_tables():
        pytest.skip("no shipped material calibration yet (nii calibrate wedge --simulate)")
    from nii.dataset.builder import build_dataset

    kw = dict(n_val=1, n_test=0, seed=9, profiles=("baggage_sandwich_140",), profile_weights=None, val_tile_scans=1)
    a = build_dataset(tmp_path / "a", BuildConfig(n_train=4, **kw), command="a")
    b = build_dataset(tmp_path / "b", BuildConfig(n_train=2, train_first_index=2, **kw), command="b")
    rec_a = [json.loads(x) for x in (a / "train" / "index.jsonl").read_text().splitlines()]
    rec_b = [json.loads(x) for x in (b / "train" / "index.jsonl").read_text().splitlines()]
    assert {r["scene"] for r in rec_b} == {2, 3}
    late = sorted(r["id"] for r in rec_a if r["scene"] >= 2)
    assert sorted(r["id"] for r in rec_b) == late and late
    for tile_id in late:
        assert (b / "train" / "images" / f"{tile_id}.png").read_bytes() == (a / "train" / "images" / f"{tile_id}.png").read_bytes()
    va, vb = (sorted((d / "val" / "scans").glob("*.h5")) for d in (a, b))
    assert [p.name for p in va] == [p.name for p in vb]
    assert json.loads((b / "dataset.json").read_text())["config"]["train_first_index"] == 2


def test_train_overburden_changes_training_scenes_only(tmp_path):
    """Slabs go into training scenes; validation scans stay those of a build without them."""
    if not _have_material_tables():
        pytest.skip("no shipped material calibration yet (nii calibrate wedge --simulate)")
    from nii.dataset.builder import build_dataset
    from nii.io import read

    kw = {"n_train": 2, "n_val": 1, "n_test": 0, "seed": 9, "profiles": ("baggage_sandwich_140",), "profile_weights": None, "val_tile_scans": 1}
    a = build_dataset(tmp_path / "a", BuildConfig(**kw), command="a")
    b = build_dataset(tmp_path / "b", BuildConfig(train_overburden=1.0, **kw), command="b")
    c = build_dataset(tmp_path / "c", BuildConfig(train_overburden=1.0, train_overburden_style="textured", **kw), command="c")
    assert json.loads((b / "dataset.json").read_text())["config"]["train_overburden"] == 1.0
    assert json.loads((c / "dataset.json").read_text())["config"]["train_overburden_style"] == "textured"
    ta, tb, tc = ({p.name: p.read_bytes() for p in (d / "train" / "images").glob("*.png")} for d in (a, b, c))
    assert ta.keys() == tb.keys() and any(ta[k] != tb[k] for k in ta)
    assert tc.keys() == tb.keys() and any(tc[k] != tb[k] for k in tc)
    (va,), (vb,) = ((d / "val" / "scans").glob("*.h5") for d in (a, b))
    sa, sb = read(va), read(vb)
    np.testing.assert_array_equal(sa.attenuation, sb.attenuation)
    assert "overburden" not in sb.metadata


@pytest.mark.slow
def test_a_pooled_build_equals_a_single_process_build(tmp_path):
    """Workers run with one Numba / OpenCV thread each (no oversubscription); the output does not
    depend on it: every tile, label and scan is byte-identical to a one-process build."""
    if not _have_material_tables():
        pytest.skip("no shipped material calibration yet (nii calibrate wedge --simulate)")
    from nii.dataset.builder import build_dataset

    kw = {"n_train": 4, "n_val": 2, "n_test": 2, "seed": 13, "profiles": ("baggage_sandwich_140", "cargo_300"),
          "profile_weights": None, "val_tile_scans": 1}
    one = build_dataset(tmp_path / "one", BuildConfig(workers=1, **kw), command="x")
    two = build_dataset(tmp_path / "two", BuildConfig(workers=2, **kw), command="x")

    def files(root):
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and p.name not in ("dataset.json", "data.yaml")}

    a, b = files(one), files(two)
    assert a.keys() == b.keys() and any(k.endswith(".h5") for k in a)
    assert [k for k in a if a[k] != b[k]] == []


def test_build_into_a_dangling_link_names_the_folder(tmp_path):
    from nii.dataset.builder import build_dataset
    from nii.errors import FileAccessError

    link = tmp_path / "d"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(FileAccessError, match="link to a missing folder") as e:
        build_dataset(link, BuildConfig(n_train=1, n_val=0, n_test=0), command="x")
    assert e.value.path == str(link)
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileAccessError, match="cannot create the dataset folders"):
        build_dataset(tmp_path / "f", BuildConfig(n_train=1, n_val=0, n_test=0), command="x")
