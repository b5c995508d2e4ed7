"""Scanner profiles: the physical description of an X-ray line scanner, one TOML file each.

A profile (``calibration/profiles/<id>.toml``, schema ``nii-profile/1``) states everything the
simulator needs to turn path lengths into detector counts and the normaliser needs to know about
a scanner: tubes (kVp, anode, filtration), the detector stack in beam order (which layer feeds
which energy channel), geometry (pitches, channel count), ADC, noise, blur, scatter, references
and defects.

Detector model (used by :meth:`ScannerProfile.effective_spectra`): energy-integrating
scintillators. A photon of energy ``E`` reaching layer ``j`` has passed every earlier layer
(``exp(-sum mu t)``), is absorbed in ``j`` with probability ``1 - exp(-mu_j t_j)`` and then
deposits its whole energy (K-fluorescence escape is ignored), so channel ``c`` sees the weight::

    w_c(E) = N_tube_c(E) * prod_{i before j} exp(-mu_i(E) t_i) * (1 - exp(-mu_j(E) t_j)) * E

Quantum noise of an energy-integrating detector follows the second moment ``N(E) A(E) E^2``.

Examples
--------
>>> from nii.profiles import load_profile
>>> p = load_profile("baggage_sandwich_140")
>>> [e.label for e in p.energies]
['low', 'high']
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .containers import EnergyChannel
from .errors import CalibrationError, InvalidParameterError

if TYPE_CHECKING:  # pragma: no cover
    from .physics.tables import PhysicsTables

__all__ = [
    "SCHEMA",
    "BlurSpec",
    "ChannelSpec",
    "DetectorLayer",
    "ScannerProfile",
    "TubeSpec",
    "list_profiles",
    "load_profile",
    "load_profile_path",
    "profile_from_mapping",
]

SCHEMA = "nii-profile/1"
_KINDS = ("sandwich", "dual_kvp", "single")

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass(frozen=True)
class TubeSpec:
    """An X-ray tube as spekpy models it.

    Parameters
    ----------
    name : str
        Name referenced by channels.
    kvp : float
        Peak voltage in kV.
    anode : str
        Target material (spekpy ``targ``), ``"W"``.
    anode_angle_deg : float
        Anode (take-off) angle in degrees.
    filtration : tuple of (str, float)
        Tube filtration as ``(spekpy material, mm)`` (e.g. ``("Be", 0.8)``, ``("Al", 2.5)``).
    """

    name: str
    kvp: float
    anode: str = "W"
    anode_angle_deg: float = 12.0
    filtration: tuple[tuple[str, float], ...] = ()

    @property
    def key(self) -> str:
        """Canonical key of the spectrum in the physics tables, e.g. ``W_140kV_12deg_Be0.8_Al2.5``."""
        filt = "_".join(f"{m}{mm:g}" for m, mm in self.filtration) or "nofilter"
        return f"{self.anode}_{self.kvp:g}kV_{self.anode_angle_deg:g}deg_{filt}"


@dataclass(frozen=True)
class DetectorLayer:
    """One layer of the detector stack, in beam order.

    Parameters
    ----------
    material : str
        Physics-table material name (e.g. ``"CsI"``, ``"copper"``).
    thickness_mm : float
    channels : tuple of str
        Labels of the energy channels read from this layer (empty for a filter or cover).
    """

    material: str
    thickness_mm: float
    channels: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChannelSpec:
    """One energy channel: its tube and its signal chain.

    Parameters
    ----------
    label : str
        ``"low"`` / ``"high"`` / ``"single"``.
    tube : str
        Name of the :class:`TubeSpec` feeding it.
    quanta_per_pixel : float
        Mean number of X-ray photons absorbed in the channel's sensing layer per pixel, open beam.
    electronic_noise : float
        Read-noise standard deviation in ADC counts (at ``adc_bits``).
    dark_level : float
        Mean dark offset in ADC counts.
    air_level : float
        Mean open-beam signal above dark as a fraction of ADC full scale.
    """

    label: str
    tube: str
    quanta_per_pixel: float
    electronic_noise: float
    dark_level: float
    air_level: float


@dataclass(frozen=True)
class BlurSpec:
    """Unsharpness: focal spot penumbra and detector point-spread function.

    Parameters
    ----------
    focal_spot_mm : float
        Focal spot size (FWHM-like) in mm.
    magnification : float
        Source-detector over source-object distance for a typical object (>= 1); the focal-spot
        penumbra at the detector is ``focal_spot_mm * (magnification - 1)``.
    detector_psf_fwhm_mm : float
        FWHM of the detector PSF (scintillator light spread, cross-talk) in mm.
    """

    focal_spot_mm: float
    magnification: float
    detector_psf_fwhm_mm: float

    def sigma_mm(self) -> float:
        """Combined Gaussian sigma at the detector plane, mm (quadrature sum)."""
        fs = self.focal_spot_mm * (self.magnification - 1.0) / FWHM_PER_SIGMA
        det = self.detector_psf_fwhm_mm / FWHM_PER_SIGMA
        return math.hypot(fs, det)


@dataclass(frozen=True)
class ScannerProfile:
    """A scanner's physical description (see the module docstring and ``calibration/profiles``).

    Per-channel quantities (``quanta_per_pixel``, ``electronic_noise``, ``dark_level``,
    ``air_level``) are tuples in channel order, low energy first.
    """

    id: str
    kind: str
    description: str
    detector_pitch_mm: float
    line_pitch_mm: float
    channels: int
    adc_bits: int
    blur: BlurSpec
    scatter_fraction: float
    scatter_sigma_mm: float
    gain_nonuniformity: float
    dead_channel_rate: float
    hot_channel_rate: float
    gain_drift: float
    dark_spread: float
    n_dark_lines: int
    n_air_lines: int
    tubes: tuple[TubeSpec, ...]
    layers: tuple[DetectorLayer, ...]
    channel_specs: tuple[ChannelSpec, ...]

    # -- derived, per channel ------------------------------------------------------------
    @property
    def energies(self) -> tuple[EnergyChannel, ...]:
        """One :class:`~nii.containers.EnergyChannel` per channel (label and tube kVp)."""
        return tuple(EnergyChannel(c.label, self.tube(c.tube).kvp) for c in self.channel_specs)

    @property
    def n_energies(self) -> int:
        return len(self.channel_specs)

    @property
    def quanta_per_pixel(self) -> tuple[float, ...]:
        return tuple(c.quanta_per_pixel for c in self.channel_specs)

    @property
    def electronic_noise(self) -> tuple[float, ...]:
        return tuple(c.electronic_noise for c in self.channel_specs)

    @property
    def dark_level(self) -> tuple[float, ...]:
        return tuple(c.dark_level for c in self.channel_specs)

    @property
    def air_level(self) -> tuple[float, ...]:
        return tuple(c.air_level for c in self.channel_specs)

    @property
    def full_scale(self) -> int:
        """Largest ADC code, ``2**adc_bits - 1``."""
        return (1 << self.adc_bits) - 1

    @property
    def pixel_pitch_mm(self) -> tuple[float, float]:
        """``(detector_pitch_mm, line_pitch_mm)`` as stored in scans."""
        return (self.detector_pitch_mm, self.line_pitch_mm)

    def tube(self, name: str) -> TubeSpec:
        for t in self.tubes:
            if t.name == name:
                return t
        raise InvalidParameterError(f"profile {self.id!r} has no tube {name!r}")

    def blur_sigma_px(self) -> float:
        """Blur sigma in detector pixels (used along both axes)."""
        return self.blur.sigma_mm() / self.detector_pitch_mm

    # -- detector response --------------------------------------------------------------
    def effective_spectra(self, tables: PhysicsTables, *, moment: int = 1) -> np.ndarray:
        """Detected-energy weights per channel on the tables' energy grid.

        Parameters
        ----------
        tables : PhysicsTables
            From :func:`nii.physics.tables.load_tables`.
        moment : {0, 1, 2}
            0: absorbed photons ``N T A``; 1: deposited energy ``N T A E`` (the signal of an
            energy-integrating detector); 2: ``N T A E^2`` (its quantum-noise variance).

        Returns
        -------
        ndarray, shape (E, K), float64
            Each row normalised to sum 1 (the grid is uniform, so sums are integrals).
        """
        return _effective_spectra_cached(self, tables, int(moment)).copy()

    def absorbed_fraction(self, tables: PhysicsTables) -> np.ndarray:
        """Fraction of the tube's photons that each channel absorbs, ``(E,)`` (diagnostic)."""
        raw = _raw_spectra(self, tables, 0)
        tube = np.stack([tables.spectrum(self.tube(c.tube).key) for c in self.channel_specs])
        return raw.sum(axis=1) / tube.sum(axis=1)

    def describe(self) -> dict[str, Any]:
        """Plain-JSON summary (for ``nii physics show`` and provenance)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "description": self.description,
            "energies": [e.describe() for e in self.energies],
            "pitch_mm": list(self.pixel_pitch_mm),
            "channels": self.channels,
            "adc_bits": self.adc_bits,
            "quanta_per_pixel": list(self.quanta_per_pixel),
            "electronic_noise": list(self.electronic_noise),
            "blur_sigma_mm": round(self.blur.sigma_mm(), 4),
            "scatter_fraction": self.scatter_fraction,
            "tubes": [t.key for t in self.tubes],
            "layers": [f"{l.material} {l.thickness_mm:g} mm" + (f" -> {','.join(l.channels)}" if l.channels else "") for l in self.layers],
        }


def _raw_spectra(profile: ScannerProfile, tables: PhysicsTables, moment: int) -> np.ndarray:
    e = tables.energies_kev.astype(np.float64)
    out = np.empty((profile.n_energies, e.size), np.float64)
    for ci, ch in enumerate(profile.channel_specs):
        n = tables.spectrum(profile.tube(ch.tube).key).astype(np.float64)
        trans = np.ones_like(e)
        sensed = None
        for layer in profile.layers:
            mu_t = tables.mu(layer.material).astype(np.float64) * (layer.thickness_mm / 10.0)
            if ch.label in layer.channels:
                sensed = trans * -np.expm1(-mu_t)
                break
            trans = trans * np.exp(-mu_t)
        if sensed is None:  # validated at load; defensive for hand-built profiles
            raise CalibrationError(f"profile {profile.id!r}: no detector layer feeds channel {ch.label!r}")
        out[ci] = n * sensed * e**moment
    return out


@functools.lru_cache(maxsize=64)
def _effective_spectra_cached(profile: ScannerProfile, tables: PhysicsTables, moment: int) -> np.ndarray:
    if moment not in (0, 1, 2):
        raise InvalidParameterError(f"moment must be 0, 1 or 2, got {moment!r}")
    raw = _raw_spectra(profile, tables, moment)
    s = raw.sum(axis=1, keepdims=True)
    if np.any(s <= 0):
        raise CalibrationError(f"profile {profile.id!r}: a channel detects no signal")
    out = raw / s
    out.flags.writeable = False
    return out


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _profiles_dir() -> Path:
    from ._assets import asset_dir

    return asset_dir("calibration") / "profiles"


def list_profiles() -> list[str]:
    """Ids of the profiles in ``calibration/profiles`` (sorted)."""
    d = _profiles_dir()
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


def load_profile(name: str | ScannerProfile) -> ScannerProfile:
    """Load ``calibration/profiles/<name>.toml`` (cached per process); a profile passes through.

    Raises
    ------
    CalibrationError
        Unknown id, unreadable or invalid file (the message names the file and the key).
    """
    if isinstance(name, ScannerProfile):
        return name
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise InvalidParameterError(f"profile must be a profile id such as 'baggage_sandwich_140', got {name!r}")
    d = _profiles_dir()
    path = d / f"{name}.toml"
    if not path.is_file():
        raise CalibrationError(f"unknown scanner profile {name!r}; known: {', '.join(list_profiles()) or 'none'}", path=path)
    return _load_path(str(path), path.stat().st_mtime_ns)


def load_profile_path(path: str | Path) -> ScannerProfile:
    """Load a profile TOML from any path (its ``id`` must equal the file name's stem)."""
    p = Path(path)
    if not p.is_file():
        raise CalibrationError("scanner profile not found", path=p)
    return _load_path(str(p.resolve()), p.stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _load_path(path: str, _mtime: int) -> ScannerProfile:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CalibrationError(f"cannot read scanner profile: {exc}", path=path) from exc
    profile = profile_from_mapping(data, where=path)
    if profile.id != Path(path).stem:
        raise CalibrationError(f"profile id {profile.id!r} differs from the file name", path=path)
    return profile


def _get(d: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...], *, default: Any = ...) -> Any:
    if key not in d:
        if default is ...:
            raise CalibrationError(f"missing key {key!r}", path=where)
        return default
    val = d[key]
    if not isinstance(val, kind) or (isinstance(val, bool) and kind is not bool):
        raise CalibrationError(f"key {key!r} must be {getattr(kind, '__name__', kind)}, got {val!r}", path=where)
    return val


def _num(d: Mapping[str, Any], key: str, where: str, *, lo: float, hi: float = math.inf, default: Any = ...) -> float:
    v = _get(d, key, where, (int, float), default=default)
    v = float(v)
    if not (lo <= v <= hi) or not math.isfinite(v):
        raise CalibrationError(f"key {key!r} = {v!r} out of range [{lo}, {hi}]", path=where)
    return v


def profile_from_mapping(data: Mapping[str, Any], *, where: str = "<profile>") -> ScannerProfile:
    """Build and validate a :class:`ScannerProfile` from a parsed TOML mapping."""
    schema = data.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise CalibrationError(f"schema must be {SCHEMA!r}, got {schema!r}", path=where)
    pid = _get(data, "id", where, str)
    kind = _get(data, "kind", where, str)
    if kind not in _KINDS:
        raise CalibrationError(f"kind must be one of {_KINDS}, got {kind!r}", path=where)
    geo = _get(data, "geometry", where, dict)
    adc = _get(data, "adc", where, dict)
    blur = _get(data, "blur", where, dict)
    scatter = _get(data, "scatter", where, dict)
    defects = _get(data, "defects", where, dict)
    refs = _get(data, "references", where, dict)

    tubes = []
    for t in _get(data, "tube", where, list):
        filt = tuple((str(_get(f, "material", where, str)), _num(f, "mm", where, lo=0.0)) for f in _get(t, "filtration", where, list, default=[]))
        tubes.append(
            TubeSpec(
                name=_get(t, "name", where, str),
                kvp=_num(t, "kvp", where, lo=20.0, hi=450.0),
                anode=_get(t, "anode", where, str, default="W"),
                anode_angle_deg=_num(t, "anode_angle_deg", where, lo=1.0, hi=45.0, default=12.0),
                filtration=filt,
            )
        )
    tube_names = [t.name for t in tubes]
    if not tubes or len(set(tube_names)) != len(tube_names):
        raise CalibrationError(f"tubes must be non-empty with unique names, got {tube_names}", path=where)

    chans = []
    for c in _get(data, "channel", where, list):
        ch = ChannelSpec(
            label=_get(c, "label", where, str),
            tube=_get(c, "tube", where, str),
            quanta_per_pixel=_num(c, "quanta_per_pixel", where, lo=1.0),
            electronic_noise=_num(c, "electronic_noise", where, lo=0.0),
            dark_level=_num(c, "dark_level", where, lo=0.0),
            air_level=_num(c, "air_level", where, lo=0.01, hi=1.0),
        )
        if ch.tube not in tube_names:
            raise CalibrationError(f"channel {ch.label!r} references unknown tube {ch.tube!r}", path=where)
        chans.append(ch)
    labels = [c.label for c in chans]
    if not chans or len(set(labels)) != len(labels):
        raise CalibrationError(f"channels must be non-empty with unique labels, got {labels}", path=where)

    layers = []
    for l in _get(data, "layer", where, list):
        chs = tuple(str(x) for x in _get(l, "channels", where, list, default=[]))
        unknown = set(chs) - set(labels)
        if unknown:
            raise CalibrationError(f"detector layer feeds unknown channel(s) {sorted(unknown)}", path=where)
        layers.append(DetectorLayer(_get(l, "material", where, str), _num(l, "thickness_mm", where, lo=0.0), chs))
    for lab in labels:
        if not any(lab in l.channels for l in layers):
            raise CalibrationError(f"no detector layer feeds channel {lab!r}", path=where)

    adc_bits = int(_num(adc, "bits", where, lo=8, hi=24))
    profile = ScannerProfile(
        id=pid,
        kind=kind,
        description=_get(data, "description", where, str, default=""),
        detector_pitch_mm=_num(geo, "detector_pitch_mm", where, lo=1e-3, hi=100.0),
        line_pitch_mm=_num(geo, "line_pitch_mm", where, lo=1e-3, hi=100.0),
        channels=int(_num(geo, "channels", where, lo=1, hi=1e5)),
        adc_bits=adc_bits,
        blur=BlurSpec(
            focal_spot_mm=_num(blur, "focal_spot_mm", where, lo=0.0, hi=20.0),
            magnification=_num(blur, "magnification", where, lo=1.0, hi=10.0),
            detector_psf_fwhm_mm=_num(blur, "detector_psf_fwhm_mm", where, lo=0.0, hi=50.0),
        ),
        scatter_fraction=_num(scatter, "fraction", where, lo=0.0, hi=1.0),
        scatter_sigma_mm=_num(scatter, "sigma_mm", where, lo=0.1, hi=1e4),
        gain_nonuniformity=_num(defects, "gain_nonuniformity", where, lo=0.0, hi=0.5),
        dead_channel_rate=_num(defects, "dead_channel_rate", where, lo=0.0, hi=0.5),
        hot_channel_rate=_num(defects, "hot_channel_rate", where, lo=0.0, hi=0.5),
        gain_drift=_num(defects, "gain_drift", where, lo=-0.5, hi=0.5),
        dark_spread=_num(defects, "dark_spread", where, lo=0.0, hi=1.0, default=0.0),
        n_dark_lines=int(_num(refs, "dark_lines", where, lo=1, hi=4096)),
        n_air_lines=int(_num(refs, "air_lines", where, lo=1, hi=4096)),
        tubes=tuple(tubes),
        layers=tuple(layers),
        channel_specs=tuple(chans),
    )
    full = profile.full_scale
    for ch in chans:
        if ch.dark_level + ch.air_level * full > full:
            raise CalibrationError(
                f"channel {ch.label!r}: dark_level + air_level * full scale exceeds the {adc_bits}-bit ADC", path=where
            )
    return profile
