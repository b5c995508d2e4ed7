"""Image formation: kernel oracle, binning accuracy, API contract and each detector effect alone."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
import pytest

from nii.containers import RawScan, Truth
from nii.errors import InvalidDataError, InvalidParameterError
from nii.physics.tables import load_tables
from nii.profiles import list_profiles, load_profile
from nii.sim.imaging import (
    COUNTS_SCALE_IDEAL,
    DetectorEffects,
    expected_log_attenuation,
    expected_transmission,
    form_image,
    polychromatic_transmission,
    spectral_bins,
)
from nii.sim.types import MaterialStack
from tests.naive import (
    adc_naive,
    naive_flat_field,
    polychromatic_transmission_naive,
    signal_chain_naive,
)

PROFILE = "baggage_sandwich_140"


@pytest.fixture(scope="module")
def tables():
    return load_tables()


@pytest.fixture(scope="module")
def prof():
    return load_profile(PROFILE)


def _stack(prof, h=48, w=64, **paths):
    """Stack with the given materials; a float fills the whole image, an array is used as is."""
    names = tuple(paths)
    t = np.zeros((len(names), h, w), np.float32)
    for i, n in enumerate(names):
        t[i] = paths[n]
    return MaterialStack(names, t, prof.pixel_pitch_mm)


def _object_stack(prof, h=64, w=96):
    t = np.zeros((3, h, w), np.float32)
    t[0, 8:56, 10:86] = 4.0  # water block
    t[1, 20:44, 30:60] = 0.8  # aluminium plate inside it
    t[2, 30:40, 70:90] = 3.0  # ivory piece half outside the water
    return MaterialStack(("water", "aluminium", "ivory"), t, prof.pixel_pitch_mm)




# ---------------------------------------------------------------------------------------------
# kernel and binning
# ---------------------------------------------------------------------------------------------


def test_kernel_matches_numpy_oracle(prof, tables):
    rng = np.random.default_rng(3)
    names = ("water", "aluminium", "steel", "keratin", "lead")
    thick = (rng.random((5, 40, 50)) * np.array([20, 3, 0.5, 5, 0.05])[:, None, None]).astype(np.float32)
    thick[rng.random(thick.shape) < 0.5] = 0  # sparse: many pixels with few materials, some none
    thick[:, :3, :3] = 0
    t, s2 = polychromatic_transmission(thick, names, prof, tables=tables)
    bins = spectral_bins(prof, tables)
    idx = [tables.index(n) for n in names]
    rt, rs2 = polychromatic_transmission_naive(thick, bins.mu[:, idx, :], bins.w1, bins.w2)
    np.testing.assert_allclose(t, rt, rtol=5e-5, atol=1e-30)
    np.testing.assert_allclose(s2, rs2, rtol=5e-5, atol=1e-30)
    assert np.all(t[:, :3, :3] == 1) and np.all(s2[:, :3, :3] == 1)


@pytest.mark.parametrize("quantum", [True, False])
def test_signal_chain_kernel_matches_numpy_oracle(quantum):
    from nii._kernels.sim import signal_chain_kernel

    rng = np.random.default_rng(8)
    e, h, w, n_air = 2, 9, 13, 4
    t = np.exp(-rng.uniform(0.0, 12.0, (e, h, w))).astype(np.float32)  # down to ~6e-6: some low-count pixels
    s2 = (t * rng.uniform(0.5, 1.0, t.shape)).astype(np.float32)
    z = rng.standard_normal((e, h, w + 2 * n_air)).astype(np.float32)
    gain = rng.uniform(0.9, 1.1, (e, h))
    drift = np.linspace(1.0, 1.01, w + 2 * n_air)
    dark = rng.uniform(900, 1100, (e, h))
    amp, n0, sd_e = np.array([49000.0, 48000.0]), np.array([17000.0, 15000.0]), np.array([4.0, 3.0])
    out = np.empty((e, h, w + 2 * n_air), np.float32)
    low = np.empty(out.shape, bool)
    signal_chain_kernel(t, s2, z, n_air, 1.02, gain, drift, dark, amp, n0, sd_e, quantum, 50.0, out, low)
    ref, ref_low = signal_chain_naive(t, s2, z, n_air, 1.02, gain, drift, dark, amp, n0, sd_e, quantum, 50.0)
    np.testing.assert_array_equal(low, ref_low)
    assert low.any() == quantum
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-2)


@pytest.mark.parametrize(("dtype", "scale", "limit"), [(np.uint16, 1.0, 65535.0), (np.uint32, 256.0, 2.0**24)])
def test_adc_kernel_matches_numpy_oracle(dtype, scale, limit):
    from nii._kernels.sim import adc_kernel

    rng = np.random.default_rng(9)
    e, h, n_dark, n = 2, 12, 3, 20
    counts = rng.uniform(-50, 70000, (e, h, n_dark + n)).astype(np.float32)
    z = rng.standard_normal((e, h, n)).astype(np.float32)
    dead = rng.random((e, h)) < 0.2
    hot = ~dead & (rng.random((e, h)) < 0.2)
    dark = rng.uniform(900, 1100, (e, h))
    sd_e = np.array([4.0, 3.0])
    out = np.empty(counts.shape, dtype)
    adc_kernel(counts, z, dead, hot, dark, sd_e, n_dark, 65535.0, limit, scale, out)
    ref = adc_naive(counts, z, dead, hot, dark, sd_e, n_dark, 65535.0, limit, scale)
    assert np.abs(out.astype(np.float64) - ref).max() <= 1.0  # float32 vs float64 rounding at .5
    assert np.mean(out.astype(np.float64) == ref) > 0.999


@pytest.mark.parametrize("pid", ["baggage_sandwich_140", "dual_kvp_80_140", "cargo_300"])
def test_binning_error_below_0p2_percent(pid, tables):
    """Coarse bins against the 1 keV grid for single materials and random mixtures, L <= 8."""
    p = load_profile(pid)
    bins = spectral_bins(p, tables)
    assert bins.max_rel_error < 2e-3
    assert max(bins.n_bins) <= 64
    rng = np.random.default_rng(11)
    mats = [m for m in tables.materials if tables.composition(m)["category"] != "detector"]
    for _ in range(30):
        names = tuple(rng.choice(mats, size=3, replace=False))
        w1 = p.effective_spectra(tables)[1]
        mean_mu = tables.mu_matrix(names) @ w1
        # random path lengths whose summed high-energy L is between 0.05 and 6
        share = rng.dirichlet(np.ones(3))
        total_l = float(np.exp(rng.uniform(np.log(0.05), np.log(6.0))))
        t = share * total_l / mean_mu
        fine = expected_log_attenuation(dict(zip(names, t)), p, tables=tables)
        thick = np.asarray(t, np.float32)[:, None, None]
        tt, _ = polychromatic_transmission(thick, names, p, tables=tables)
        coarse = -np.log(tt[:, 0, 0].astype(np.float64))
        np.testing.assert_allclose(coarse, fine, rtol=2e-3)


def test_expected_log_attenuation_broadcasts(prof, tables):
    t = np.linspace(0, 10, 7)
    L = expected_log_attenuation({"water": t[:, None], "aluminium": np.array([0.0, 1.0])}, prof, tables=tables)
    assert L.shape == (2, 7, 2)
    assert L[0, 0, 0] == 0 and np.all(np.diff(L[:, :, 0], axis=1) > 0)
    assert np.all(L[:, :, 1] > L[:, :, 0])
    # additive in monochromatic limit only: polychromatic L of the sum is below the sum of L's (hardening)
    both = expected_log_attenuation({"water": 10.0, "aluminium": 1.0}, prof, tables=tables)
    apart = expected_log_attenuation({"water": 10.0}, prof, tables=tables) + expected_log_attenuation({"aluminium": 1.0}, prof, tables=tables)
    assert np.all(both < apart)
    assert expected_transmission({"water": 1.0}, prof, moment=2).shape == (2,)
    with pytest.raises(InvalidParameterError):
        expected_log_attenuation({"water": -1.0}, prof)
    with pytest.raises(InvalidParameterError):
        expected_log_attenuation({}, prof)


# ---------------------------------------------------------------------------------------------
# API contract
# ---------------------------------------------------------------------------------------------


def test_form_image_contract(prof):
    st = _object_stack(prof)
    truth = Truth(np.array([[70, 30, 90, 40]], np.float32), ("ivory",))
    raw = form_image(st, PROFILE, seed=5, scan_id="t1", truth=truth)
    assert isinstance(raw, RawScan)
    e, h, w = raw.shape
    assert (e, h, w) == (2, 64, 96)
    assert raw.counts.dtype == np.uint16
    assert raw.dark.shape == (2, h, prof.n_dark_lines)
    assert raw.air.shape == raw.air_end.shape == (2, h, prof.n_air_lines)
    assert raw.dead_mask.shape == (2, h) and raw.dead_mask.dtype == bool
    assert raw.profile == PROFILE and raw.scan_id == "t1" and raw.truth is truth
    assert raw.pixel_pitch_mm == prof.pixel_pitch_mm
    assert [c.label for c in raw.energies] == ["low", "high"]
    assert raw.metadata["counts_scale"] == 1 and raw.metadata["seed"] == 5
    assert raw.metadata["physics_sha256"] == load_tables().sha256
    assert max(int(a.max()) for a in (raw.counts, raw.dark, raw.air, raw.air_end)) <= 2**prof.adc_bits - 1
    # the object attenuates, low channel more than high
    T = naive_flat_field(raw)
    assert T[0, 32, 40] < T[1, 32, 40] < 0.5
    assert abs(T[1, 2, 2] - 1) < 0.05


def test_same_seed_same_bytes_different_seed_differs(prof):
    st = _object_stack(prof)

    def digest(raw):
        h = hashlib.sha256()
        for a in (raw.counts, raw.dark, raw.air, raw.air_end, raw.dead_mask):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    a = form_image(st, PROFILE, seed=42)
    b = form_image(st, PROFILE, seed=42)
    c = form_image(st, PROFILE, seed=43)
    d = form_image(st, PROFILE, seed=np.random.default_rng(42))
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)
    assert d.counts.shape == a.counts.shape


def test_bad_inputs(prof):
    st = _object_stack(prof)
    with pytest.raises(InvalidDataError, match="pitch"):
        form_image(MaterialStack(st.materials, st.thickness_cm, (1.0, 1.0)), PROFILE, seed=0)
    with pytest.raises(InvalidDataError, match="unobtainium"):
        form_image(MaterialStack(("unobtainium",), st.thickness_cm[:1], prof.pixel_pitch_mm), PROFILE, seed=0)
    with pytest.raises(InvalidParameterError, match="seed"):
        form_image(st, PROFILE, seed=-1)
    with pytest.raises(InvalidParameterError, match="n_ref_lines"):
        form_image(st, PROFILE, seed=0, n_ref_lines=0)
    with pytest.raises(InvalidParameterError, match="unknown detector effect"):
        DetectorEffects.only("glare")


@pytest.mark.parametrize("pid", ["dual_kvp_80_140", "cargo_300"])
def test_other_profiles_run(pid):
    p = load_profile(pid)
    raw = form_image(_object_stack(p), p, seed=1)
    assert raw.counts.max() <= 2**p.adc_bits - 1 and raw.profile == pid
    assert set(list_profiles()) >= {pid}


# ---------------------------------------------------------------------------------------------
# each effect alone
# ---------------------------------------------------------------------------------------------


def test_no_effects_is_the_noise_free_primary(prof, tables):
    st = _object_stack(prof)
    raw = form_image(st, prof, seed=0, effects=DetectorEffects.none())
    assert raw.counts.dtype == np.uint32 and raw.metadata["counts_scale"] == COUNTS_SCALE_IDEAL
    assert np.all(raw.dark == 0) and not raw.dead_mask.any()
    amp = np.asarray(prof.air_level) * prof.full_scale * COUNTS_SCALE_IDEAL
    np.testing.assert_array_equal(raw.air, np.broadcast_to(np.rint(amp)[:, None, None], raw.air.shape))
    t, _ = polychromatic_transmission(st.thickness_cm, st.materials, prof, tables=tables)
    np.testing.assert_allclose(raw.counts / amp[:, None, None], t, atol=1.0 / amp.min())


def test_quantisation_alone(prof):
    st = _object_stack(prof)
    ideal = form_image(st, prof, seed=0, effects=DetectorEffects.none())
    q = form_image(st, prof, seed=0, effects=DetectorEffects.only("quantisation"))
    assert q.counts.dtype == np.uint32 and q.metadata["counts_scale"] == 1  # unsaturated: may exceed 16 bits
    assert form_image(st, prof, seed=0, effects=DetectorEffects.only("quantisation", "saturation")).counts.dtype == np.uint16
    diff = q.counts.astype(np.float64) - ideal.counts / COUNTS_SCALE_IDEAL
    assert np.abs(diff).max() <= 0.5 + 1e-6
    assert np.abs(diff).max() > 0.1  # rounding really happened


def test_dark_alone(prof):
    raw = form_image(_object_stack(prof), prof, seed=1, effects=DetectorEffects.only("dark"))
    d = raw.dark.astype(np.float64) / COUNTS_SCALE_IDEAL
    assert np.all(d == d[:, :, :1])  # no noise: constant per channel
    per_ch = d[:, :, 0]
    for e in range(2):
        assert per_ch[e].mean() == pytest.approx(prof.dark_level[e], rel=0.02)
        assert per_ch[e].std() == pytest.approx(prof.dark_level[e] * prof.dark_spread, rel=0.25)
    T = naive_flat_field(raw)
    ideal = naive_flat_field(form_image(_object_stack(prof), prof, seed=1, effects=DetectorEffects.none()))
    np.testing.assert_allclose(T, ideal, atol=2e-5)


def test_gain_alone_cancels_in_normalisation(prof):
    st = _object_stack(prof)
    raw = form_image(st, prof, seed=2, effects=DetectorEffects.only("gain"))
    air = raw.air.astype(np.float64).mean(axis=2)
    rel = air / air.mean(axis=1, keepdims=True)
    assert rel.std(axis=1) == pytest.approx([prof.gain_nonuniformity] * 2, rel=0.3)
    ideal = naive_flat_field(form_image(st, prof, seed=2, effects=DetectorEffects.none()))
    np.testing.assert_allclose(naive_flat_field(raw), ideal, atol=2e-5)


def test_drift_alone(prof):
    st = _object_stack(prof)
    raw = form_image(st, prof, seed=3, effects=DetectorEffects.only("drift"))
    a0, a1 = raw.air.astype(np.float64).mean(), raw.air_end.astype(np.float64).mean()
    n_air, w = raw.air.shape[2], raw.counts.shape[2]
    n_lines = 2 * n_air + w
    expected = prof.gain_drift * (n_air + w) / (n_lines - 1)  # centre-to-centre of the air blocks
    assert a1 / a0 - 1 == pytest.approx(expected, rel=0.02)
    # without correction the object region is biased; linear interpolation removes it
    ideal = naive_flat_field(form_image(st, prof, seed=3, effects=DetectorEffects.none()))
    np.testing.assert_allclose(naive_flat_field(raw), ideal, atol=2e-5)
    uncorrected = raw.counts[:, :, -1].astype(np.float64) / raw.air.astype(np.float64).mean(axis=2)
    assert np.abs(uncorrected[1, :4] - 1).min() > prof.gain_drift * 0.5


def test_electronic_noise_alone(prof):
    # with the dark offset on, so that read noise is not clipped at zero counts
    raw = form_image(_object_stack(prof), prof, seed=4, effects=DetectorEffects.only("electronic_noise", "dark"))
    sd = raw.dark.astype(np.float64).std(axis=2).mean(axis=1) / COUNTS_SCALE_IDEAL
    np.testing.assert_allclose(sd, prof.electronic_noise, rtol=0.1)
    air_sd = raw.air.astype(np.float64).std(axis=2).mean(axis=1) / COUNTS_SCALE_IDEAL
    np.testing.assert_allclose(air_sd, prof.electronic_noise, rtol=0.1)  # signal-independent


def test_quantum_noise_alone_is_signal_dependent(prof):
    raw = form_image(_object_stack(prof), prof, seed=5, effects=DetectorEffects.only("quantum_noise"))
    assert np.all(raw.dark == 0)
    air_sd = raw.air.astype(np.float64).std(axis=2).mean(axis=1)
    assert np.all(air_sd > 50 * COUNTS_SCALE_IDEAL)  # ~0.7 % of ~49000 counts


def test_blur_alone(prof):
    h, w = 40, 80
    edge = np.zeros((1, h, w), np.float32)
    edge[0, :, w // 2 :] = 2.0
    st = MaterialStack(("aluminium",), edge, prof.pixel_pitch_mm)
    sharp = naive_flat_field(form_image(st, prof, seed=0, effects=DetectorEffects.none()))[1, h // 2]
    blurred = naive_flat_field(form_image(st, prof, seed=0, effects=DetectorEffects.only("blur")))[1, h // 2]
    assert np.allclose(sharp[: w // 2], 1) and np.allclose(sharp[w // 2 :], sharp[-1])
    # far from the edge nothing changes, at the edge the step is smoothed
    np.testing.assert_allclose(blurred[:10], sharp[:10], rtol=1e-5)
    np.testing.assert_allclose(blurred[-10:], sharp[-10:], rtol=1e-5)
    assert sharp[-1] < blurred[w // 2] < 1 and sharp[-1] < blurred[w // 2 - 1] < 1
    # the line-spread function is the Gaussian PSF (profile sigma) integrated over pixels
    y = (blurred - sharp[-1]) / (1 - sharp[-1])
    lsf = -np.diff(y)
    x = np.arange(w - 1) - (w / 2 - 1)
    assert lsf.sum() == pytest.approx(1.0, abs=1e-4)
    sigma_px = prof.blur.sigma_mm() / prof.line_pitch_mm
    i = np.arange(-10, 11)
    cdf = lambda v: 0.5 * (1 + np.vectorize(math.erf)(v / (sigma_px * math.sqrt(2))))
    expected = cdf(i + 0.5) - cdf(i - 0.5)
    np.testing.assert_allclose(lsf[w // 2 - 11 : w // 2 + 10], expected, atol=2e-3)
    assert np.sum(lsf * x) == pytest.approx(0.0, abs=1e-3)


def test_scatter_alone(prof):
    h, w = 64, 128
    # small dense object on air: scatter from the open beam fills it in (contrast loss)
    small = np.zeros((1, h, w), np.float32)
    small[0, 28:36, 60:68] = 1.0
    st = MaterialStack(("steel",), small, prof.pixel_pitch_mm)
    ideal = naive_flat_field(form_image(st, prof, seed=0, effects=DetectorEffects.none()))
    sc = form_image(st, prof, seed=0, effects=DetectorEffects.only("scatter"))
    T = naive_flat_field(sc)
    assert np.all(T[:, 32, 64] > ideal[:, 32, 64] * 1.05)
    amp = np.asarray(prof.air_level) * prof.full_scale * COUNTS_SCALE_IDEAL
    np.testing.assert_allclose(sc.air.mean(axis=(1, 2)), amp * (1 + prof.scatter_fraction), rtol=1e-6)
    # a wide uniform slab normalises to its primary
    slab = _stack(prof, h, w, water=10.0)
    np.testing.assert_allclose(
        naive_flat_field(form_image(slab, prof, seed=0, effects=DetectorEffects.only("scatter"))),
        naive_flat_field(form_image(slab, prof, seed=0, effects=DetectorEffects.none())),
        rtol=1e-3,
    )


def test_dead_and_hot_channels_alone(prof):
    bad = dataclasses.replace(prof, dead_channel_rate=0.05, hot_channel_rate=0.05)
    st = _object_stack(prof, h=200)
    raw = form_image(st, bad, seed=6, effects=DetectorEffects.only("dead_hot", "dark", "quantisation", "saturation"))
    m = raw.dead_mask
    assert 0.04 < m.mean() < 0.2
    good = ~m
    for e in range(2):
        rows = raw.counts[e, m[e]]
        dark_rows = raw.dark[e, m[e]].mean(axis=1, keepdims=True)
        hot = rows.min(axis=1) == prof.full_scale
        dead = np.all(np.abs(rows.astype(np.float64) - dark_rows) <= 1, axis=1)
        assert np.all(hot | dead) and hot.any() and dead.any()
        assert np.all(raw.air[e, m[e]][hot] == prof.full_scale)
        assert raw.counts[e, good[e]].min() < prof.full_scale
    assert not form_image(st, bad, seed=6, effects=DetectorEffects.none()).dead_mask.any()


def test_saturation_alone(prof):
    hot = dataclasses.replace(prof, channel_specs=tuple(dataclasses.replace(c, air_level=1.0, dark_level=3000.0) for c in prof.channel_specs))
    st = _object_stack(prof)
    fx = DetectorEffects.only("saturation", "dark")
    raw = form_image(st, hot, seed=0, effects=fx)
    limit = prof.full_scale * COUNTS_SCALE_IDEAL
    assert raw.air.max() == limit and raw.counts.max() == limit
    free = form_image(st, hot, seed=0, effects=DetectorEffects.only("dark"))
    assert free.air.max() > limit


def test_empty_stack_and_impenetrable_objects(prof):
    empty = MaterialStack((), np.zeros((0, 16, 20), np.float32), prof.pixel_pitch_mm)
    raw = form_image(empty, prof, seed=0, effects=DetectorEffects.none())
    np.testing.assert_allclose(naive_flat_field(raw), 1.0)
    lead = _stack(prof, 16, 20, lead=50.0)  # 50 cm of lead: nothing gets through
    raw = form_image(lead, prof, seed=0, effects=DetectorEffects(dead_hot=False))
    T = naive_flat_field(raw)
    assert np.all(np.isfinite(T)) and np.abs(T).max() < 1e-3  # dark + read noise only
    assert raw.metadata["timeline"] == {"dark": prof.n_dark_lines, "air": prof.n_air_lines, "object": 20, "air_end": prof.n_air_lines}
