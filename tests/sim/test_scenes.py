"""Scene composer: determinism, truth from masks, negatives, target fraction, scenario registry."""

from __future__ import annotations

import numpy as np
import pytest

from nii.errors import InvalidParameterError
from nii.sim.phantoms import TRUTH_CLASSES, Grid
from nii.sim.scenes import (
    FAMILIES,
    MASK_THRESHOLD_CM,
    SCENARIOS,
    compose_scene,
    get_scenario,
    profile_domain,
    scene_grid,
    scene_seed,
)


class _Profile:
    """Geometry-only stand-in for a scanner profile (the composer reads only these fields)."""

    def __init__(self, id="test_baggage", pitch=1.0, channels=300):
        self.id = id
        self.kind = "sandwich"
        self.detector_pitch_mm = pitch
        self.line_pitch_mm = pitch
        self.channels = channels


BAG = _Profile()
CARGO = _Profile("test_cargo", 5.0, 200)
SMALL = Grid((300, 450), (2.0, 2.0))  # 60 x 90 cm


def _same(a, b):
    assert a.stack.materials == b.stack.materials
    np.testing.assert_array_equal(a.stack.thickness_cm, b.stack.thickness_cm)
    np.testing.assert_array_equal(a.truth.boxes, b.truth.boxes)
    assert a.truth.classes == b.truth.classes
    assert a.metadata["confusers"] == b.metadata["confusers"]


@pytest.mark.parametrize("name", [n for n in SCENARIOS if "baggage" in SCENARIOS[n].domains])
def test_every_baggage_scenario_is_deterministic_and_consistent(name):
    a = compose_scene(name, BAG, scene_seed(5, 1, name), grid=SMALL)
    b = compose_scene(name, BAG, scene_seed(5, 1, name), grid=SMALL)
    _same(a, b)
    assert a.stack.shape == SMALL.shape
    assert a.stack.pixel_pitch_mm == SMALL.pitch_mm
    assert len(a.masks) == len(a.truth)
    assert set(a.truth.classes) <= set(TRUTH_CLASSES)
    # each truth box is the bounding box of its mask
    for (x0, y0, x1, y1), mask in zip(a.truth.boxes, a.masks):
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        assert (x0, y0, x1, y1) == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    if a.metadata["family"] == "negative":
        assert len(a.truth) == 0


def test_masks_lie_where_target_material_is():
    """The target's own material has path length over every mask pixel."""
    for k in range(6):
        r = compose_scene("luggage_clothes", BAG, k, grid=SMALL, force_target=True)
        mats = {"ivory": ("ivory",), "ivory_worked": ("ivory",), "pangolin_scales": ("keratin",), "rhino_horn": ("rhino_horn",)}
        for cls, mask in zip(r.truth.classes, r.masks):
            m = sum(r.stack.thickness_cm[r.stack.materials.index(n)] for n in mats[cls])
            assert np.all(m[mask] > MASK_THRESHOLD_CM * 0.999)


def test_different_seeds_differ():
    a = compose_scene("mixed", BAG, 1, grid=SMALL)
    b = compose_scene("mixed", BAG, 2, grid=SMALL)
    assert a.stack.materials != b.stack.materials or not np.array_equal(a.stack.thickness_cm, b.stack.thickness_cm)


def test_seed_depends_on_index_not_on_order():
    s1 = scene_seed(3, 7, "p", "s").generate_state(4)
    s2 = scene_seed(3, 7, "p", "s").generate_state(4)
    s3 = scene_seed(3, 8, "p", "s").generate_state(4)
    s4 = scene_seed(3, 7, "p", "other").generate_state(4)
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(s1, s3) and not np.array_equal(s1, s4)
    with pytest.raises(InvalidParameterError):
        scene_seed(-1, 0)


def test_negative_scenes_have_no_truth_but_report_confusers():
    n_conf = 0
    for k in range(6):
        r = compose_scene("negative_confusers", BAG, k, grid=SMALL)
        assert len(r.truth) == 0 and r.masks == ()
        n_conf += len(r.metadata["confusers"])
        for c in r.metadata["confusers"]:
            x0, y0, x1, y1 = c["box"]
            assert 0 <= x0 < x1 <= SMALL.shape[1] and 0 <= y0 < y1 <= SMALL.shape[0]
            assert c["class"]
    assert n_conf >= 6
    r = compose_scene("negative_clutter", BAG, 0, grid=SMALL)
    assert len(r.truth) == 0 and r.metadata["confusers"] == []


def test_target_fraction_is_respected_statistically():
    n = 60
    hits = sum(compose_scene("sack_shells", BAG, k, grid=Grid((150, 220), (4.0, 4.0)), target_fraction=0.3).metadata["has_target"]
               for k in range(n))
    # binomial(60, 0.3): mean 18, sd 3.5; a visible target can rarely be lost off-grid
    assert 7 <= hits <= 29
    assert not any(compose_scene("sack_shells", BAG, k, grid=SMALL, target_fraction=0.0).truth.classes for k in range(5))


def test_force_target_and_overrides():
    r = compose_scene("luggage_clothes", BAG, 4, grid=SMALL, force_target=True)
    assert len(r.truth) >= 1
    assert r.metadata["family"] == "luggage"
    with pytest.raises(InvalidParameterError, match="target_fraction"):
        compose_scene("luggage_clothes", BAG, 0, grid=SMALL, target_fraction=1.5)
    with pytest.raises(InvalidParameterError, match="unknown scenario"):
        compose_scene("nope", BAG, 0)


def test_cargo_only_scenario_rejected_on_baggage_profile():
    with pytest.raises(InvalidParameterError, match="cargo"):
        compose_scene("pallet_cargo", BAG, 0, grid=SMALL)
    r = compose_scene("pallet_cargo", CARGO, 0, force_target=True)
    assert r.metadata["domain"] == "cargo"
    assert r.stack.shape == scene_grid(CARGO).shape


def test_mixed_records_the_drawn_scenario_and_families_are_explicit():
    fams = set()
    for k in range(12):
        r = compose_scene("mixed", BAG, k, grid=SMALL)
        assert r.scenario in SCENARIOS and r.scenario != "mixed"
        assert r.metadata["family"] == SCENARIOS[r.scenario].family
        fams.add(r.metadata["family"])
    assert len(fams) >= 3
    assert set(FAMILIES) >= {"luggage", "sack", "timber", "metal", "bones", "carton", "negative"}
    for fam, names in FAMILIES.items():
        assert all(get_scenario(n).family == fam for n in names)


def test_profile_domain_and_grid():
    assert profile_domain(BAG) == "baggage" and profile_domain(CARGO) == "cargo"
    g = scene_grid(_Profile(pitch=0.8, channels=1024))
    assert g.shape[0] == 1024 and 0.8e6 <= g.shape[0] * g.shape[1] <= 1.3e6
    with pytest.raises(InvalidParameterError):
        scene_grid(BAG, channels=3)


def test_scene_materials_known_to_physics():
    mats = pytest.importorskip("nii.physics.materials")
    known = set(mats.material_names())
    for name in SCENARIOS:
        prof = CARGO if name == "pallet_cargo" else BAG
        r = compose_scene(name, prof, 9, grid=SMALL if prof is BAG else None)
        assert set(r.stack.materials) <= known


@pytest.mark.parametrize("grid", [Grid((40, 60), (5.0, 5.0)), Grid((64, 400), (2.0, 2.0)), Grid((200, 120), (10.0, 10.0))],
                         ids=["tiny", "strip", "coarse"])
def test_every_scenario_survives_odd_grids(grid):
    """Grids smaller than the containers (or very coarse) still give valid scenes and boxes."""
    for name, sc in SCENARIOS.items():
        prof = CARGO if "baggage" not in sc.domains else BAG
        for seed in range(3):
            r = compose_scene(name, prof, seed, grid=grid, force_target=True)
            assert r.stack.shape == grid.shape
            b = np.asarray(r.truth.boxes)
            if len(b):
                assert np.all(b[:, 0] >= 0) and np.all(b[:, 2] <= grid.shape[1]) and np.all(b[:, 3] <= grid.shape[0])


def test_overrides_of_targets_and_confusers():
    r = compose_scene("luggage_clothes", BAG, 1, grid=SMALL, force_target=True, targets=("bangle",), confusers=("pvc_pipe",))
    assert r.metadata["target_kinds"] in (["bangle"], [])
    assert {c["kind"] for c in r.metadata["confusers"]} <= {"pvc_pipe"}
    with pytest.raises(InvalidParameterError, match="target phantoms"):
        compose_scene("luggage_clothes", BAG, 1, grid=SMALL, targets=("pvc_pipe",))
    with pytest.raises(InvalidParameterError, match="mixed"):
        compose_scene("mixed", BAG, 1, grid=SMALL, targets=("tusk",))


def test_each_truth_box_carries_its_whole_mass():
    """target_mass_g is the object's volume times its density: a block's mass is its size times
    ivory's density, and it equals the ivory in the scene's stack (the only ivory there)."""
    from nii.physics.tables import load_tables

    rho = load_tables().density("ivory")
    for k in range(3):
        r = compose_scene("luggage_clothes", BAG, k, grid=SMALL, force_target=True, targets=("ivory_block",), n_targets=(1, 1))
        assert len(r.metadata["target_mass_g"]) == len(r.truth) == len(r.metadata["target_kinds"]) == 1
        mass = r.metadata["target_mass_g"][0]
        assert mass == r.metadata["targets"][0]["mass_g"]
        assert mass == pytest.approx(np.prod(r.metadata["targets"][0]["size_cm"]) * rho, rel=2e-3)
        in_stack = r.stack.thickness_cm[r.stack.materials.index("ivory")].sum(dtype=np.float64) * (SMALL.py * SMALL.px) * rho
        assert mass == pytest.approx(in_stack, rel=1e-3)


def _areal_density(r, i, j):
    from nii.physics.tables import load_tables

    t = load_tables()
    return sum(float(r.stack.thickness_cm[k, i, j]) * t.density(m) for k, m in enumerate(r.stack.materials))


def test_overburden_lays_organic_slabs_over_targets_and_moves_nothing_else():
    from nii.sim.scenes import OVERBURDEN_AREAL_DENSITY, OVERBURDEN_MATERIALS

    for k in range(4):
        plain = compose_scene("luggage_clothes", BAG, k, grid=SMALL, force_target=True)
        _same(plain, compose_scene("luggage_clothes", BAG, k, grid=SMALL, force_target=True, overburden=0.0))
        assert "overburden" not in plain.metadata
        ob = compose_scene("luggage_clothes", BAG, k, grid=SMALL, force_target=True, overburden=1.0)
        # the same objects in the same places: truth, masses, confusers
        np.testing.assert_array_equal(ob.truth.boxes, plain.truth.boxes)
        assert ob.truth.classes == plain.truth.classes and len(plain.truth)
        assert ob.metadata["target_mass_g"] == plain.metadata["target_mass_g"]
        assert ob.metadata["confusers"] == plain.metadata["confusers"]
        assert ob.metadata["overburden"]["slabs"] >= len(plain.truth)
        # slabs only add path length, and only of the organic goods
        for m in ob.stack.materials:
            a = ob.stack.thickness_cm[ob.stack.materials.index(m)]
            b = plain.stack.thickness_cm[plain.stack.materials.index(m)] if m in plain.stack.materials else np.zeros_like(a)
            assert np.all(a >= b - 1e-6)
            if not np.allclose(a, b):
                assert m in OVERBURDEN_MATERIALS
        # every target's centre lies under at least the lightest slab
        for x0, y0, x1, y1 in plain.truth.boxes:
            i, j = int((y0 + y1) / 2), int((x0 + x1) / 2)
            assert _areal_density(ob, i, j) - _areal_density(plain, i, j) >= OVERBURDEN_AREAL_DENSITY["baggage"][0] * 0.99


def test_overburden_also_falls_on_negative_scenes():
    """Slabs land anywhere too, so that the network cannot read a slab as a sign of a target."""
    got = [compose_scene("negative_clutter", BAG, k, grid=SMALL, overburden=1.0) for k in range(8)]
    assert all(not len(r.truth) for r in got)
    assert sum(r.metadata["overburden"]["slabs"] for r in got) > 0


def test_overburden_must_be_a_probability():
    with pytest.raises(InvalidParameterError, match="overburden"):
        compose_scene("luggage_clothes", BAG, 0, grid=SMALL, overburden=1.5)
    with pytest.raises(InvalidParameterError, match="overburden_style"):
        compose_scene("luggage_clothes", BAG, 0, grid=SMALL, overburden=0.5, overburden_style="planks")


def test_box_overburden_is_the_default_style():
    for k in range(3):
        _same(compose_scene("mixed", BAG, k, grid=SMALL, overburden=0.7),
              compose_scene("mixed", BAG, k, grid=SMALL, overburden=0.7, overburden_style="box"))


def _added(ob, plain):
    """Per-pixel path length (cm) that ``ob`` holds beyond ``plain``, and the materials it comes from."""
    extra = np.zeros(ob.stack.thickness_cm.shape[1:])
    mats = set()
    for k, m in enumerate(ob.stack.materials):
        a = ob.stack.thickness_cm[k]
        b = plain.stack.thickness_cm[plain.stack.materials.index(m)] if m in plain.stack.materials else np.zeros_like(a)
        assert np.all(a >= b - 1e-5), m  # voids never cut into the scene's own objects
        if not np.allclose(a, b):
            mats.add(m)
            extra += a - b
    return extra, mats


def test_textured_overburden_moves_no_object_and_adds_only_organic_goods():
    from nii.sim.scenes import OVERBURDEN_MATERIALS

    for k in range(4):
        plain = compose_scene("luggage_clothes", BAG, k, grid=SMALL, force_target=True)
        ob = compose_scene("luggage_clothes", BAG, k, grid=SMALL, force_target=True, overburden=1.0, overburden_style="textured")
        np.testing.assert_array_equal(ob.truth.boxes, plain.truth.boxes)
        assert ob.truth.classes == plain.truth.classes and len(plain.truth)
        assert ob.metadata["confusers"] == plain.metadata["confusers"]
        assert ob.metadata["overburden"]["style"] == "textured"
        extra, mats = _added(ob, plain)
        assert mats and mats <= set(OVERBURDEN_MATERIALS)
        # every target has organic matter laid over part of its box
        for x0, y0, x1, y1 in plain.truth.boxes.astype(int):
            assert extra[y0:y1 + 1, x0:x1 + 1].max() > 0


def test_textured_overburden_falls_on_confusers_of_negative_scenes():
    """A slab over a compact object must be no sign of a target: confusers get them too."""
    checked = 0
    for k in range(12):
        plain = compose_scene("negative_confusers", BAG, k, grid=SMALL)
        confusers = plain.metadata["confusers"]
        if not 1 <= len(confusers) <= 3:  # with more, three of them are drawn
            continue
        ob = compose_scene("negative_confusers", BAG, k, grid=SMALL, overburden=1.0, overburden_style="textured")
        assert not len(ob.truth) and ob.metadata["overburden"]["slabs"] >= len(confusers)
        extra, _ = _added(ob, plain)
        for c in confusers:
            x0, y0, x1, y1 = (int(v) for v in c["box"])
            assert extra[y0:y1 + 1, x0:x1 + 1].max() > 0, c
        checked += 1
    assert checked >= 3
    # the box style leaves negative scenes to the Poisson draws alone
    boxed = [compose_scene("negative_confusers", BAG, k, grid=SMALL, overburden=1.0).metadata["overburden"]["slabs"] for k in range(12)]
    textured = [compose_scene("negative_confusers", BAG, k, grid=SMALL, overburden=1.0, overburden_style="textured")
                .metadata["overburden"]["slabs"] for k in range(12)]
    assert sum(textured) > sum(boxed)


def test_textured_slabs_are_uneven_and_of_every_shape():
    """Boards with gaps and knots, voided boxes, round masses, rolls: thickness varies inside a slab."""
    from nii.sim.phantoms import Phantom, project
    from nii.sim.scenes import _textured_slab

    rng = np.random.default_rng(5)
    seen = set()
    for _ in range(60):
        parts, shape = _textured_slab(rng, "wood", 40.0, 25.0, 8.0)
        seen.add(shape)
        ph = Phantom("overburden_slab", parts, role="clutter")
        pr = project(ph, Grid((300, 300), (2.0, 2.0)), rotation=np.eye(3), center=np.array([30.0, 30.0, 0.0]))
        t = pr.maps["wood"]
        inside = t[t > 0.05]
        assert inside.size and inside.max() <= 8.0 * 1.3 + 8.0 * 0.4 * 2 + 1e-3  # thickest board plus a knot
        assert np.ptp(inside) > 0.05 * inside.mean(), shape  # not a uniform box
        assert np.all(t >= -1e-6)  # voids stay inside their box
    assert seen == {"boards", "voided", "round", "rolls"}
