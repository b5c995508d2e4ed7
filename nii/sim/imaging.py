"""Image formation: from a :class:`~nii.sim.types.MaterialStack` to the detector counts of a scanner.

Physics, per energy channel ``c`` of a :class:`~nii.profiles.ScannerProfile` (see
``shared/PHYSICS.md`` and :mod:`nii.profiles` for the detector model):

1. **Primary**: polychromatic Beer-Lambert through the detector response,
   ``T_c = sum_E w_c(E) exp(-sum_m mu_m(E) t_m)`` with ``w_c`` the detected-energy weights
   (:meth:`ScannerProfile.effective_spectra`). The image path uses a coarse energy binning of
   ``w_c`` (:func:`spectral_bins`; bins chosen per profile so that ``L = -ln T`` is within 0.15 %
   of the 1 keV grid for every table material up to L = 8, checked when the bins are made);
   :func:`expected_log_attenuation` evaluates the exact fine-grid law.
2. **Blur**: Gaussian focal-spot penumbra and detector PSF (quadrature sum), integrated over
   the pixel aperture, on the primary.
3. **Scatter**: a low-frequency field ``scatter_fraction * G_sigma * primary`` added to the
   signal, in the object lines and in the air references alike (so a wide uniform slab
   normalises to its primary; small dense objects lose contrast).
4. **Quantum noise**: an energy-integrating detector's signal is a compound-Poisson sum whose
   variance follows the second spectral moment; it is drawn as ``N_eq`` Poisson quanta, where
   ``N_eq = N0 * T^2 / S2`` and ``N0 = quanta_per_pixel * <E>^2 / <E^2>`` (Swank factor). Normal
   approximation where ``N_eq >= 50``, exact Poisson below. (Noise is added after the blur, so
   pixels are independent: a simplification of scintillator light spread.)
5. **Gain**: per-channel gain ``1 + gain_nonuniformity * N(0, 1)`` times a linear **drift**
   ``1 + gain_drift * tau`` over the acquisition (``tau`` = 0 at the first air line, 1 at the
   last ``air_end`` line); counts ``= dark + gain * air_level * full_scale * signal``.
6. **Dark**: per-channel offset ``dark_level * (1 + dark_spread * N(0, 1))``; **electronic
   noise** (read noise, Gaussian, ADC counts).
7. **Dead / hot channels**: dead read dark (+ read noise), hot read full scale; both are marked in
   ``dead_mask``.
8. **Saturation** at ``2**adc_bits - 1`` and **ADC quantisation** (rounding).

Acquisition timeline, per scan: ``n_dark_lines`` dark lines (tube off), ``n_air_lines`` air lines
(``air``), the object's ``W`` lines, ``n_air_lines`` air lines (``air_end``).

Quantum and read noise are drawn together as one Gaussian per pixel (their variances add) except
where exact Poisson applies. The per-pixel work runs in Numba kernels (:mod:`nii._kernels.sim`):
the binned transmission, the signal chain, and dead/hot + ADC in one pass; about 50-100 ms per
1 Mpx dual-energy scan on 2 cores (``nii bench imaging``).

Every effect can be switched off through :class:`DetectorEffects`. With ``quantisation=False``
the ADC is ideal: counts are stored as uint32 in units of 1/256 ADC count
(``metadata["counts_scale"] == 256``); dark/air normalisation is unaffected by the scale.
The same seed gives identical bytes.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..containers import RawScan, Truth
from ..errors import InvalidDataError, InvalidParameterError
from .types import MaterialStack

if TYPE_CHECKING:  # pragma: no cover
    from ..physics.tables import PhysicsTables
    from ..profiles import ScannerProfile

__all__ = [
    "COUNTS_SCALE_IDEAL",
    "POISSON_EXACT_BELOW",
    "DetectorEffects",
    "SpectralBins",
    "expected_log_attenuation",
    "expected_transmission",
    "form_image",
    "polychromatic_transmission",
    "spectral_bins",
]

log = logging.getLogger(__name__)

#: Counts per ADC code when quantisation is off (ideal ADC, uint32 storage).
COUNTS_SCALE_IDEAL = 256
#: Pixels expecting fewer equivalent quanta than this get exact Poisson draws.
POISSON_EXACT_BELOW = 50.0
#: Binning accuracy target: max relative error of L against the 1 keV grid ...
BIN_TOLERANCE = 1.5e-3
#: ... for every table material at every path length whose fine-grid L is at most this.
L_VALIDATED = 8.0


@dataclass(frozen=True)
class DetectorEffects:
    """Which detector effects :func:`form_image` simulates (all on by default).

    Examples
    --------
    >>> DetectorEffects.none().blur, DetectorEffects().blur
    (False, True)
    >>> DetectorEffects.only("quantum_noise").quantum_noise
    True
    """

    quantum_noise: bool = True
    electronic_noise: bool = True
    blur: bool = True
    scatter: bool = True
    dark: bool = True
    gain: bool = True
    dead_hot: bool = True
    drift: bool = True
    saturation: bool = True
    quantisation: bool = True

    @classmethod
    def none(cls) -> DetectorEffects:
        """Every effect off: counts are the noise-free primary (ideal ADC)."""
        return cls(**{f.name: False for f in dataclasses.fields(cls)})

    @classmethod
    def only(cls, *names: str) -> DetectorEffects:
        """Only the named effects on."""
        known = {f.name for f in dataclasses.fields(cls)}
        bad = set(names) - known
        if bad:
            raise InvalidParameterError(f"unknown detector effect(s) {sorted(bad)}; known: {sorted(known)}")
        return cls(**{n: n in names for n in known})

    def to_dict(self) -> dict[str, bool]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Noise-free forward model (fine grid)
# ---------------------------------------------------------------------------------------------


def _resolve(profile: ScannerProfile | str, tables: PhysicsTables | None):
    from ..physics.tables import load_tables
    from ..profiles import load_profile

    return load_profile(profile), (tables if tables is not None else load_tables())


def expected_transmission(
    materials: Mapping[str, float | np.ndarray],
    profile: ScannerProfile | str,
    *,
    tables: PhysicsTables | None = None,
    moment: int = 1,
) -> np.ndarray:
    """Noise-free polychromatic transmission per channel on the tables' fine (1 keV) grid.

    Parameters
    ----------
    materials : mapping of str to float or ndarray
        Path length in cm per material; arrays broadcast against each other.
    profile : ScannerProfile or str
    tables : PhysicsTables, optional
    moment : {1, 2}
        1: the signal ``I/I0``; 2: the second-moment transmission that sets quantum noise.

    Returns
    -------
    ndarray, shape (E, *broadcast shape), float64
    """
    prof, tab = _resolve(profile, tables)
    if not isinstance(materials, Mapping) or not materials:
        raise InvalidParameterError("materials must be a non-empty mapping {material name: path length in cm}")
    names = list(materials)
    try:
        arrs = np.broadcast_arrays(*[np.asarray(materials[n], dtype=np.float64) for n in names])
    except ValueError as exc:
        raise InvalidParameterError(f"path lengths do not broadcast together: {exc}") from exc
    shape = arrs[0].shape
    t = np.stack([a.reshape(-1) for a in arrs])  # (M, N)
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise InvalidParameterError("path lengths must be finite and >= 0 cm")
    mu = tab.mu_matrix(names)  # (M, K)
    w = prof.effective_spectra(tab, moment=moment)  # (E, K)
    n = t.shape[1]
    out = np.empty((w.shape[0], n))
    norm = w @ np.ones((w.shape[1], 1))  # same operation as below, so zero path gives exactly 1
    chunk = max(1, 4_000_000 // mu.shape[1])
    for s in range(0, n, chunk):
        att = mu.T @ t[:, s : s + chunk]  # (K, n)
        out[:, s : s + chunk] = (w @ np.exp(-att)) / norm
    out[:, ~np.any(t > 0, axis=0)] = 1.0  # nothing in the beam: exactly 1
    return out.reshape((w.shape[0],) + shape)


def expected_log_attenuation(
    materials: Mapping[str, float | np.ndarray],
    profile: ScannerProfile | str,
    *,
    tables: PhysicsTables | None = None,
) -> np.ndarray:
    """Noise-free polychromatic ``L = -ln(I/I0)`` per channel for given path lengths (cm).

    This is the exact law of the simulator on the 1 keV grid (no blur, scatter or noise): what
    a dark/air-normalised scan of a wide uniform object measures on average. Calibration tables
    (step wedges) are built from it.

    Parameters
    ----------
    materials : mapping of str to float or ndarray
        Path length in cm per material (table names, e.g. ``{"aluminium": t}``); arrays broadcast.
    profile : ScannerProfile or str
    tables : PhysicsTables, optional
        Default :func:`nii.physics.tables.load_tables`.

    Returns
    -------
    ndarray, shape (E, *broadcast shape), float64
        Low energy first; ``+inf`` where the transmission underflows float64.

    Examples
    --------
    >>> L = expected_log_attenuation({"water": np.array([0.0, 10.0])}, "baggage_sandwich_140")
    >>> L.shape, float(L[0, 0])
    ((2, 2), 0.0)
    >>> bool(L[0, 1] > L[1, 1] > 0)  # low-energy channel attenuates more
    True
    """
    t = expected_transmission(materials, profile, tables=tables, moment=1)
    with np.errstate(divide="ignore"):
        return 0.0 - np.log(t)  # +inf where nothing gets through (float64 underflow); 0.0 not -0.0 in air


# ---------------------------------------------------------------------------------------------
# Coarse energy binning of the effective spectra
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SpectralBins:
    """Energy binning of a profile's effective spectra used by the image kernel.

    Attributes
    ----------
    edges : tuple of ndarray
        Per channel, fine-grid indices where bins start (plus the end).
    w1, w2 : ndarray (E, B) float32
        First- and second-moment weights per bin (rows sum to 1; padding bins 0).
    mu : ndarray (E, M, B) float32
        Bin-averaged linear attenuation (1/cm) of every table material (signal-weighted).
    n_bins : tuple of int
        Bins used per channel.
    max_rel_error : float
        Largest relative error of L against the fine grid found in the validation sweep.
    swank : ndarray (E,)
        ``<E>^2 / (<E^0> <E^2>)`` of the absorbed spectrum: equivalent quanta per absorbed photon.
    """

    edges: tuple[np.ndarray, ...]
    w1: np.ndarray
    w2: np.ndarray
    mu: np.ndarray
    n_bins: tuple[int, ...]
    max_rel_error: float
    swank: np.ndarray


def _bins_from_edges(w1: np.ndarray, w2: np.ndarray, mu: np.ndarray, edges: np.ndarray):
    """Bin weights and signal-weighted bin-averaged attenuation for fine-grid ``edges``."""
    b1 = np.add.reduceat(w1, edges[:-1])
    b2 = np.add.reduceat(w2, edges[:-1])
    num = np.add.reduceat(w1[None, :] * mu, edges[:-1], axis=1)
    mub = num / np.where(b1 > 0, b1, 1.0)[None, :]
    return b1, b2, mub


def _validation_thicknesses(mu: np.ndarray, w1: np.ndarray, l_max: float = 8.0) -> np.ndarray:
    """Per material, path lengths from ``L ~ 0.01`` to far beyond ``l_max`` (geometric, 48 steps).

    The mean-attenuation estimate of ``L`` overshoots strongly for hardening materials (lead), so
    the range runs to 40 times ``l_max``; :func:`_refine_bins` ignores points whose fine-grid ``L``
    exceeds ``l_max``.
    """
    mean_mu = mu @ w1  # (M,)
    l_targets = np.geomspace(0.01, 40.0 * l_max, 48)
    return l_targets[None, :] / mean_mu[:, None]  # (M, T)


def _refine_bins(w1: np.ndarray, w2: np.ndarray, mu: np.ndarray, tol: float, start: int = 6, max_bins: int = 64):
    """Greedy energy binning of one channel.

    Start from ``start`` equal-signal quantile bins, split at every absorption edge of any table
    material; then split (at its signal median) the bin contributing most to the worst relative
    L error over all materials and validation path lengths, until the error is <= ``tol``.
    Returns ``edges, b1, b2, mub, err``.
    """
    nz = np.nonzero(w1 > 0)[0]
    lo, hi = int(nz[0]), int(nz[-1]) + 1
    cum = np.cumsum(w1[lo:hi])
    cum /= cum[-1]
    cuts = np.searchsorted(cum, np.arange(1, start) / start, side="left") + lo + 1
    jumps = np.nonzero(np.any(np.diff(mu, axis=1) > 0, axis=0))[0] + 1  # absorption edges
    jumps = jumps[(jumps > lo) & (jumps < hi)]
    edges = np.unique(np.concatenate([[lo], cuts, jumps, [hi]]))
    thick = _validation_thicknesses(mu, w1)  # (M, T)
    fine_e = np.exp(-mu[:, None, :] * thick[:, :, None])  # (M, T, K)
    contrib = fine_e * w1  # (M, T, K)
    t_fine = contrib.sum(axis=2)
    with np.errstate(divide="ignore"):
        l_fine = -np.log(t_fine)
    keep = (l_fine <= L_VALIDATED).astype(np.float64)  # errors beyond L = 8 are not counted
    t_fine = np.where(t_fine > 0, t_fine, 1.0)
    while True:
        b1, b2, mub = _bins_from_edges(w1, w2, mu, edges)
        exact_b = np.add.reduceat(contrib, edges[:-1], axis=2)  # (M, T, B)
        approx_b = b1 * np.exp(-mub[:, None, :] * thick[:, :, None])
        delta = approx_b - exact_b
        rel = keep * np.abs(delta.sum(axis=2)) / t_fine / np.maximum(l_fine, 1e-12)
        err = float(rel.max())
        if err <= tol or len(edges) - 1 >= max_bins:
            return edges, b1, b2, mub, err
        per_bin = (np.abs(delta) * (keep / (t_fine * np.maximum(l_fine, 1e-12)))[:, :, None]).max(axis=(0, 1))
        order = np.argsort(per_bin)[::-1]
        mids = []
        for b in order[: max(1, len(order) // 8)]:  # the worst eighth of the bins, split at once
            a, z = edges[b], edges[b + 1]
            if z - a < 2:
                continue
            c = np.cumsum(w1[a:z])
            mid = a + 1 + int(np.searchsorted(c, c[-1] / 2.0))
            mids.append(min(max(mid, a + 1), z - 1))
        if not mids:
            return edges, b1, b2, mub, err
        edges = np.unique(np.concatenate([edges, mids]))


@functools.lru_cache(maxsize=16)
def _spectral_bins(profile: ScannerProfile, tables: PhysicsTables, tol: float) -> SpectralBins:
    mu_all = tables.mu_matrix(tables.materials)  # (M, K)
    w1s = profile.effective_spectra(tables, moment=1)
    w2s = profile.effective_spectra(tables, moment=2)
    w0s = profile.effective_spectra(tables, moment=0)
    e = tables.energies_kev
    per = []
    worst = 0.0
    for c in range(profile.n_energies):
        edges, b1, b2, mub, err = _refine_bins(w1s[c], w2s[c], mu_all, tol)
        worst = max(worst, err)
        if err > tol:
            log.warning("profile %s channel %d: binning error %.2g > %.2g with %d bins", profile.id, c, err, tol, len(b1))
        per.append((edges, b1, b2, mub))
    nbmax = max(len(p[1]) for p in per)
    n_e, n_m = profile.n_energies, mu_all.shape[0]
    w1 = np.zeros((n_e, nbmax), np.float32)
    w2 = np.zeros((n_e, nbmax), np.float32)
    mu = np.zeros((n_e, n_m, nbmax), np.float32)
    for c, (edges, b1, b2, mub) in enumerate(per):
        k = len(b1)
        w1[c, :k] = b1 / b1.sum()
        w2[c, :k] = b2 / b2.sum()
        mu[c, :, :k] = mub
    m0 = (w0s * 1.0).sum(1)
    m1 = (w0s * e).sum(1)
    m2 = (w0s * e * e).sum(1)
    swank = m1**2 / (m0 * m2)
    for a in (w1, w2, mu, swank):
        a.flags.writeable = False
    return SpectralBins(
        edges=tuple(p[0] for p in per),
        w1=w1,
        w2=w2,
        mu=mu,
        n_bins=tuple(len(p[1]) for p in per),
        max_rel_error=worst,
        swank=swank,
    )


def spectral_bins(profile: ScannerProfile | str, tables: PhysicsTables | None = None, *, tol: float = BIN_TOLERANCE) -> SpectralBins:
    """Coarse energy bins of a profile's effective spectra (cached per profile and tables).

    Start from 6 equal-signal quantile bins of the detected-energy weights, split at every
    absorption edge of a table material, then split greedily the bin contributing most to the
    worst error until every table material at path lengths giving ``L`` from 0.01 to 8 agrees
    with the 1 keV grid within ``tol`` (relative error of ``L``; at most 64 bins, with a logged
    warning if that is not enough). Each bin's attenuation is the signal-weighted mean of its
    fine-grid energies. ``max_rel_error`` of the result records what was reached.
    """
    prof, tab = _resolve(profile, tables)
    if not (0 < tol < 0.1):
        raise InvalidParameterError(f"tol must be in (0, 0.1), got {tol!r}")
    return _spectral_bins(prof, tab, float(tol))


def polychromatic_transmission(
    thickness_cm: np.ndarray,
    materials: tuple[str, ...],
    profile: ScannerProfile | str,
    *,
    tables: PhysicsTables | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Binned noise-free transmission of a material stack (Numba kernel).

    Parameters
    ----------
    thickness_cm : ndarray (M, H, W) float32
    materials : tuple of str
        The M material names.

    Returns
    -------
    t, s2 : ndarray (E, H, W) float32
        Signal transmission ``I/I0`` and second-moment transmission (noise variance factor).
    """
    prof, tab = _resolve(profile, tables)
    thick = np.ascontiguousarray(thickness_cm, dtype=np.float32)
    if thick.ndim != 3 or thick.shape[0] != len(materials):
        raise InvalidDataError(f"thickness_cm must be (M, H, W) with M = {len(materials)}, got {thick.shape}")
    if not np.all(np.isfinite(thick)) or (thick.size and thick.min() < 0):
        raise InvalidDataError("thickness_cm must be finite and >= 0")
    return _transmission(thick, tuple(materials), prof, tab)


def _transmission(thick: np.ndarray, materials: tuple[str, ...], prof: ScannerProfile, tab: PhysicsTables):
    """:func:`polychromatic_transmission` without validation (a MaterialStack is validated already)."""
    from .._kernels.sim import transmission_kernel

    thick = np.ascontiguousarray(thick, dtype=np.float32)
    bins = spectral_bins(prof, tab)
    idx = [tab.index(m) for m in materials]
    mu = np.ascontiguousarray(bins.mu[:, idx, :])
    n_e = prof.n_energies
    t = np.empty((n_e,) + thick.shape[1:], np.float32)
    s2 = np.empty_like(t)
    if len(materials) == 0:
        t.fill(1.0)
        s2.fill(1.0)
        return t, s2
    transmission_kernel(thick, mu, bins.w1, bins.w2, t, s2)
    return t, s2


# ---------------------------------------------------------------------------------------------
# Image formation
# ---------------------------------------------------------------------------------------------


def _pixel_gaussian_kernel(sigma: float) -> np.ndarray:
    """Gaussian PSF of ``sigma`` px integrated over each pixel's aperture (sums to 1)."""
    r = max(1, math.ceil(4.0 * sigma + 0.5))
    edges = (np.arange(-r, r + 2) - 0.5) / (sigma * math.sqrt(2.0))
    cdf = 0.5 * (1.0 + np.array([math.erf(v) for v in edges]))
    k = np.diff(cdf)
    return (k / k.sum()).astype(np.float32)


def _gaussian(img: np.ndarray, sigma_h: float, sigma_w: float) -> np.ndarray:
    """Separable blur of a float32 (H, W) image by a pixel-integrated Gaussian, reflecting borders.

    Integrating over the pixel keeps sub-pixel PSFs (common: a baggage scanner's blur is a
    fraction of its pitch) well defined; a sigma of 0 leaves the image unchanged.
    """
    import cv2

    if sigma_h <= 1e-3 and sigma_w <= 1e-3:
        return img
    kx = _pixel_gaussian_kernel(sigma_w) if sigma_w > 1e-3 else np.ones(1, np.float32)
    ky = _pixel_gaussian_kernel(sigma_h) if sigma_h > 1e-3 else np.ones(1, np.float32)
    return cv2.sepFilter2D(img, -1, kx, ky, borderType=cv2.BORDER_REFLECT)


def _lowpass(img: np.ndarray, sigma_h: float, sigma_w: float) -> np.ndarray:
    """Wide Gaussian blur (scatter field) computed on a decimated grid, then upsampled."""
    import cv2

    h, w = img.shape
    f = max(1, int(min(sigma_h, sigma_w) // 4))
    if f == 1:
        return _gaussian(img, sigma_h, sigma_w)
    small = cv2.resize(img, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape
    small = _gaussian(small, sigma_h * sh / h, sigma_w * sw / w)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.default_rng(int(seed))
    raise InvalidParameterError(f"seed must be a non-negative int or a numpy Generator, got {seed!r}")


def form_image(
    stack: MaterialStack,
    profile: ScannerProfile | str,
    *,
    seed: int | np.random.Generator,
    effects: DetectorEffects = DetectorEffects(),
    scan_id: str = "",
    truth: Truth | None = None,
    n_ref_lines: int | None = None,
    tables: PhysicsTables | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> RawScan:
    """Simulate the raw detector counts of a line scanner for a material stack.

    Parameters
    ----------
    stack : MaterialStack
        Path lengths per material, ``(M, H, W)``, sampled at the profile's pitch (H detector
        channels, W lines).
    profile : ScannerProfile or str
    seed : int or numpy.random.Generator
        Same seed, same bytes.
    effects : DetectorEffects
        Effects to simulate (all by default); see the module docstring.
    scan_id : str
    truth : Truth, optional
        Passed through to the scan.
    n_ref_lines : int, optional
        Number of air lines before and after the object (default ``profile.n_air_lines``);
        dark lines are ``profile.n_dark_lines``.
    tables : PhysicsTables, optional
    metadata : mapping, optional
        Extra metadata merged into the scan's.

    Returns
    -------
    RawScan
        ``counts`` (E, H, W) uint16 (uint32 when quantisation or saturation is off or
        ``adc_bits > 16``), ``dark`` (E, H, n_dark), ``air`` and ``air_end`` (E, H, n_air),
        ``dead_mask`` (E, H), the profile id, pitch, energies, truth; metadata records the
        effects, the seed, the physics-table identity and ``counts_scale``.

    Raises
    ------
    InvalidDataError
        Unknown material in the stack, or stack pitch differs from the profile's.
    """
    from .._kernels.sim import adc_kernel, signal_chain_kernel
    from ..physics.tables import load_tables
    from ..profiles import load_profile

    prof = load_profile(profile)
    tab = tables if tables is not None else load_tables()
    if not isinstance(stack, MaterialStack):
        raise InvalidParameterError(f"stack must be a MaterialStack, got {type(stack).__name__}")
    if not isinstance(effects, DetectorEffects):
        raise InvalidParameterError(f"effects must be DetectorEffects, got {type(effects).__name__}")
    unknown = [m for m in stack.materials if m not in tab]
    if unknown:
        raise InvalidDataError(f"stack materials {unknown} are not in the physics tables ({', '.join(tab.materials)})")
    if not np.allclose(stack.pixel_pitch_mm, prof.pixel_pitch_mm, rtol=1e-6):
        raise InvalidDataError(
            f"stack pixel_pitch_mm {stack.pixel_pitch_mm} differs from profile {prof.id!r} pitch {prof.pixel_pitch_mm}; "
            "sample the scene at the scanner's pitch"
        )
    n_air = prof.n_air_lines if n_ref_lines is None else int(n_ref_lines)
    if n_air < 1:
        raise InvalidParameterError(f"n_ref_lines must be >= 1, got {n_ref_lines!r}")
    n_dark = prof.n_dark_lines
    rng = _rng(seed)
    fx = effects
    n_e = prof.n_energies
    h, w = stack.shape

    # 1. primary -----------------------------------------------------------------------------
    t, s2 = _transmission(stack.thickness_cm, stack.materials, prof, tab)  # stack validated on construction

    # 2. blur, 3. scatter (object lines; air lines are uniform so blur leaves them unchanged)
    sig_px_h = prof.blur.sigma_mm() / prof.detector_pitch_mm
    sig_px_w = prof.blur.sigma_mm() / prof.line_pitch_mm
    scatter_air = prof.scatter_fraction if fx.scatter else 0.0
    for e in range(n_e):
        if fx.blur:
            t[e] = _gaussian(t[e], sig_px_h, sig_px_w)
            s2[e] = _gaussian(s2[e], sig_px_h, sig_px_w)
        if fx.scatter and prof.scatter_fraction > 0:
            sc = prof.scatter_fraction * _lowpass(
                t[e], prof.scatter_sigma_mm / prof.detector_pitch_mm, prof.scatter_sigma_mm / prof.line_pitch_mm
            )
            t[e] += sc
            s2[e] += sc  # scatter quanta: treated with the open-beam spectrum's noise per unit signal

    # 4.-6. signal chain: quantum noise, gain, drift, dark, read noise -------------------------
    # Timeline: n_dark dark lines (tube off), n_air air lines, W object lines, n_air air lines.
    bins = spectral_bins(prof, tab)
    n_lines = w + 2 * n_air
    full = prof.full_scale
    scale = 1 if fx.quantisation else COUNTS_SCALE_IDEAL
    gain = np.ones((n_e, h), np.float64)
    if fx.gain and prof.gain_nonuniformity > 0:
        gain = np.clip(1.0 + prof.gain_nonuniformity * rng.standard_normal((n_e, h)), 0.2, None)
    drift = np.ones(n_lines, np.float64)
    if fx.drift and prof.gain_drift != 0:
        drift = 1.0 + prof.gain_drift * (np.arange(n_lines) / max(n_lines - 1, 1))
    dark = np.zeros((n_e, h), np.float64)
    if fx.dark:
        base = np.asarray(prof.dark_level, np.float64)[:, None]
        dark = np.clip(base * (1.0 + prof.dark_spread * rng.standard_normal((n_e, h))), 0.0, None)
    amp = np.asarray(prof.air_level, np.float64) * full  # open-beam counts above dark
    n0 = np.asarray(prof.quanta_per_pixel, np.float64) * bins.swank  # equivalent quanta, open beam
    sd_e = np.asarray(prof.electronic_noise, np.float64) if fx.electronic_noise else np.zeros(n_e)
    noisy = fx.quantum_noise or fx.electronic_noise
    z = rng.standard_normal((n_e, h, n_lines), dtype=np.float32) if noisy else np.zeros((n_e, h, n_lines), np.float32)
    counts = np.empty((n_e, h, n_dark + n_lines), np.float32)
    low = np.empty((n_e, h, n_lines), np.bool_)
    signal_chain_kernel(
        t, s2, z, n_air, 1.0 + scatter_air, gain, drift, dark, amp, n0, sd_e,
        bool(fx.quantum_noise), POISSON_EXACT_BELOW, counts[:, :, n_dark:], low,
    )
    if fx.quantum_noise and low.any():
        # exact Poisson where few equivalent quanta arrive: sig * Poisson(neq) / neq
        ei, hi, li = np.nonzero(low)
        j = li - n_air
        inside = (j >= 0) & (j < w)
        sig = np.full(ei.shape, 1.0 + scatter_air)
        v2 = sig.copy()
        sig[inside] = t[ei[inside], hi[inside], j[inside]]
        v2[inside] = s2[ei[inside], hi[inside], j[inside]]
        neq = sig * sig / np.maximum(v2, 1e-30) * n0[ei]
        draws = rng.poisson(neq)
        g = gain[ei, hi] * amp[ei] * drift[li]
        extra = g * sig * (draws / np.maximum(neq, 1e-300) - 1.0)
        counts[ei, hi, n_dark + li] += extra.astype(np.float32)
    del t, s2
    counts[:, :, :n_dark] = dark[:, :, None]
    if fx.electronic_noise and n_dark:
        counts[:, :, :n_dark] += (sd_e[:, None, None] * rng.standard_normal((n_e, h, n_dark))).astype(np.float32)

    # 7. dead / hot channels, 8. saturation and ADC quantisation (one pass) ------------------------
    dead = np.zeros((n_e, h), bool)
    hot = np.zeros((n_e, h), bool)
    if fx.dead_hot and (prof.dead_channel_rate > 0 or prof.hot_channel_rate > 0):
        u = rng.random((n_e, h))
        dead = u < prof.dead_channel_rate
        hot = (u >= prof.dead_channel_rate) & (u < prof.dead_channel_rate + prof.hot_channel_rate)
    if fx.saturation:
        limit = float(full)
    else:
        limit = float(np.iinfo(np.uint32).max // scale)
    dtype = np.uint16 if fx.quantisation and fx.saturation and prof.adc_bits <= 16 else np.uint32
    out = np.empty(counts.shape, dtype)
    adc_kernel(counts, z, dead, hot, dark, sd_e, n_dark, float(full), limit, float(scale), out)
    del counts, z
    dead_mask = dead | hot

    meta = {
        "simulator": "nii.sim.imaging/1",
        "effects": fx.to_dict(),
        "seed": int(seed) if isinstance(seed, (int, np.integer)) else None,
        "physics_sha256": tab.sha256,
        "counts_scale": scale,
        "adc_bits": prof.adc_bits,
        "spectral_bins": list(bins.n_bins),
        # acquisition order of the lines; drift is linear in this line index
        "timeline": {"dark": n_dark, "air": n_air, "object": w, "air_end": n_air},
        "materials": list(stack.materials),
    }
    meta.update(dict(metadata or {}))
    return RawScan(
        counts=np.ascontiguousarray(out[:, :, n_dark + n_air : n_dark + n_air + w]),
        energies=prof.energies,
        pixel_pitch_mm=prof.pixel_pitch_mm,
        dark=out[:, :, :n_dark].copy(),
        air=out[:, :, n_dark : n_dark + n_air].copy(),
        air_end=out[:, :, n_dark + n_air + w :].copy(),
        dead_mask=dead_mask,
        profile=prof.id,
        scan_id=scan_id,
        truth=truth,
        metadata=meta,
    )
