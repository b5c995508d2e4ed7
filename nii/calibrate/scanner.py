"""Scanner calibration (ccdproc-style): master dark and air, bad channels, per-channel gain.

* :func:`combine_lines` — combine many recorded reference lines ``(E, H, n)`` into one master line
  ``(E, H)`` with sigma-clipped mean (or median), channel slab by channel slab so that memory stays
  below ``mem_limit`` whatever ``n`` is (works on ``np.memmap`` and h5py datasets, which read only
  the slab sliced);
* :func:`detect_bad_channels` — dead (no gain), hot (dark far above its neighbours) and noisy
  (dark noise far above typical) channels, per energy;
* :class:`CalibrationSet` — a frozen, hashed set: master dark, dark noise, master air, gain,
  bad-channel mask, the scanner profile and energies it belongs to, and optionally the material
  table. It refuses a scan whose channel count, energies or profile differ.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..containers import EnergyChannel, RawScan, freeze_array
from ..errors import (
    CalibrationError,
    CalibrationMismatchError,
    FileAccessError,
    InvalidDataError,
    InvalidParameterError,
)
from .material import MaterialTable, _energies_tuple

__all__ = [
    "CALIBRATION_VERSION",
    "CalibrationSet",
    "channel_gain",
    "combine_lines",
    "detect_bad_channels",
]

CALIBRATION_VERSION = "nii-cal/1"
_MAD_TO_SIGMA = 1.482602218505602


def combine_lines(
    lines: Any,
    *,
    method: str = "sigma_clip",
    sigma: float = 3.0,
    max_iters: int = 5,
    mem_limit: int = 64 << 20,
    return_std: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Combine reference lines ``(E, H, n)`` into a master ``(E, H)`` float32 line.

    Parameters
    ----------
    lines : array-like (E, H, n) or (E, H)
        Recorded lines (a 2-D input is already a master and is returned as float32).
        Any object with ``shape`` and NumPy slicing works (``np.memmap``, ``h5py.Dataset``).
    method : {"sigma_clip", "median", "mean"}
        ``sigma_clip``: iterative rejection of values further than ``sigma`` robust standard
        deviations (MAD) from the median, then the mean of what is left.
    sigma : float
        Clipping threshold.
    max_iters : int
        Clipping iterations.
    mem_limit : int
        Bytes of working memory; the channels are processed in slabs that fit.
    return_std : bool
        Also return the (clipped) standard deviation of one line per channel.

    Examples
    --------
    >>> x = np.full((1, 2, 9), 100.0); x[0, 0, 3] = 1e6  # one cosmic / glitch
    >>> combine_lines(x).tolist()
    [[100.0, 100.0]]
    """
    if method not in ("sigma_clip", "median", "mean"):
        raise InvalidParameterError(f"method must be 'sigma_clip', 'median' or 'mean', got {method!r}")
    if not (np.isfinite(sigma) and sigma > 0):
        raise InvalidParameterError(f"sigma must be positive, got {sigma!r}")
    shape = tuple(getattr(lines, "shape", np.shape(lines)))
    if len(shape) == 2:
        master = np.asarray(lines, dtype=np.float32)
        return (master, np.zeros_like(master)) if return_std else master
    if len(shape) != 3 or shape[2] == 0:
        raise InvalidDataError(f"reference lines must be (E, H, n) with n >= 1, got {shape}")
    e, h, n = shape
    # ~6 float64 temporaries of the slab
    per_channel = max(1, 6 * 8 * n * e)
    slab = int(max(1, min(h, mem_limit // per_channel)))
    master = np.empty((e, h), dtype=np.float32)
    std = np.empty((e, h), dtype=np.float32)
    for h0 in range(0, h, slab):
        h1 = min(h, h0 + slab)
        x = np.asarray(lines[:, h0:h1, :], dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise InvalidDataError("reference lines contain NaN or Inf")
        if method == "mean" or n < 3:
            m = x.mean(axis=2)
            s = x.std(axis=2)
        elif method == "median":
            m = np.median(x, axis=2)
            s = _MAD_TO_SIGMA * np.median(np.abs(x - m[..., None]), axis=2)
        else:
            m, s = _sigma_clip(x, float(sigma), int(max_iters))
        master[:, h0:h1] = m
        std[:, h0:h1] = s
    return (master, std) if return_std else master


def _sigma_clip(x: np.ndarray, sigma: float, max_iters: int) -> tuple[np.ndarray, np.ndarray]:
    """Iterative sigma clipping along the last axis; returns the clipped mean and std.

    The kept readings are always a contiguous run of the sorted values, so the median and the
    MAD of the kept set are found by index (Numba kernel :func:`nii._kernels.calib.sigma_clip_rows`;
    NumPy reference ``tests/naive.py: naive_sigma_clip``).
    """
    from .._kernels.calib import sigma_clip_rows

    lead = x.shape[:-1]
    flat = np.ascontiguousarray(x, dtype=np.float64).reshape(-1, x.shape[-1])
    mean, std = sigma_clip_rows(flat, float(sigma), int(max_iters))
    return mean.reshape(lead), std.reshape(lead)


def _local_median(x: np.ndarray, size: int) -> np.ndarray:
    """Running median of odd width ``size`` along the last axis, edges padded by repetition
    (equal to ``scipy.ndimage.median_filter(x, size=(1, size), mode="nearest")``, ~2x faster)."""
    half = size // 2
    padded = np.pad(x, ((0, 0), (half, half)), mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(padded, size, axis=1)
    return np.partition(win, half, axis=-1)[..., half]


def channel_gain(dark: np.ndarray, air: np.ndarray) -> np.ndarray:
    """Per-channel gain: open-beam signal above dark relative to the median channel of its energy."""
    net = np.asarray(air, dtype=np.float64) - np.asarray(dark, dtype=np.float64)
    med = np.median(net, axis=-1, keepdims=True)
    if np.any(med <= 0):
        raise InvalidDataError("air reference is not above dark: median open-beam signal <= 0")
    return (net / med).astype(np.float32)


def detect_bad_channels(
    dark: np.ndarray,
    air: np.ndarray,
    *,
    dark_std: np.ndarray | None = None,
    dead_fraction: float = 0.2,
    hot_fraction: float = 3.0,
    hot_sigma: float = 12.0,
    noisy_factor: float = 8.0,
    window: int = 31,
) -> dict[str, np.ndarray]:
    """Find dead, hot and noisy detector channels from master references.

    Parameters
    ----------
    dark, air : ndarray (E, H)
        Master dark and open-beam (air, including dark) lines.
    dark_std : ndarray (E, H), optional
        Standard deviation of the dark per channel (from many lines): flags noisy channels.
    dead_fraction : float
        A channel is dead when its open-beam signal above dark is below this fraction of the
        local median (``window`` neighbouring channels), or not positive.
    hot_fraction : float
        ...or hot when it is above ``hot_fraction`` times the local median,
    hot_sigma : float
        ...or when its dark is more than ``hot_sigma`` robust sigmas above the local median dark.
    noisy_factor : float
        A channel is noisy when its dark noise exceeds ``noisy_factor`` times the median noise.

    Returns
    -------
    dict with bool (E, H) arrays ``dead``, ``hot``, ``noisy`` and ``bad`` (their union).
    """
    dark = np.asarray(dark, dtype=np.float64)
    air = np.asarray(air, dtype=np.float64)
    if dark.shape != air.shape or dark.ndim != 2:
        raise InvalidDataError(f"dark {dark.shape} and air {air.shape} must both be (E, H)")
    window = int(max(3, min(window, 2 * (dark.shape[1] // 2) + 1)))
    net = air - dark
    local = _local_median(net, window)
    dead = (net <= 0) | (net < dead_fraction * np.maximum(local, 0))
    hot = net > hot_fraction * np.maximum(local, 0)
    dres = dark - _local_median(dark, window)
    dsig = _MAD_TO_SIGMA * np.median(np.abs(dres), axis=1, keepdims=True)
    dsig = np.maximum(dsig, 1.0)
    hot |= dres > hot_sigma * dsig
    noisy = np.zeros_like(dead)
    if dark_std is not None:
        ds = np.asarray(dark_std, dtype=np.float64)
        if ds.shape != dark.shape:
            raise InvalidDataError(f"dark_std {ds.shape} must match dark {dark.shape}")
        med = np.median(ds, axis=1, keepdims=True)
        noisy = ds > noisy_factor * np.maximum(med, 0.5)
    return {"dead": dead, "hot": hot, "noisy": noisy, "bad": dead | hot | noisy}


def _energy_key(energies: Sequence[EnergyChannel]) -> list[tuple[str, float | None]]:
    return [(e.label, e.kvp) for e in energies]


@dataclass(frozen=True, eq=False)
class CalibrationSet:
    """A frozen scanner calibration with an identity hash.

    Parameters
    ----------
    profile : str or None
        Scanner-profile id; a scan of another profile is refused.
    energies : tuple of EnergyChannel
        Energy channels; a scan with other channels (label or kVp) is refused.
    n_channels : int or None
        Detector channels ``H``; None for a material-only calibration (any ``H``).
    dark, air : ndarray (E, H) float32, optional
        Master dark and open-beam (air, including dark) lines.
    dark_std : ndarray (E, H) float32, optional
        Noise (standard deviation) of one dark reading per channel.
    bad : ndarray (E, H) bool, optional
        Dead / hot / noisy channels to repair.
    material : MaterialTable, optional
        Material calibration for Zeff.
    created : str
        ISO time of creation.
    metadata : mapping
        Free JSON-serialisable notes (e.g. number of lines combined).
    """

    profile: str | None
    energies: tuple[EnergyChannel, ...]
    n_channels: int | None = None
    dark: np.ndarray | None = None
    air: np.ndarray | None = None
    dark_std: np.ndarray | None = None
    bad: np.ndarray | None = None
    material: MaterialTable | None = None
    created: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        energies = _energies_tuple(self.energies)
        object.__setattr__(self, "energies", energies)
        e = len(energies)
        if e == 0:
            raise CalibrationError("a calibration set needs at least one energy channel")
        h = self.n_channels
        for name in ("dark", "air", "dark_std", "bad"):
            a = getattr(self, name)
            if a is None:
                continue
            a = np.asarray(a, dtype=bool if name == "bad" else np.float32)
            if a.ndim != 2 or a.shape[0] != e:
                raise CalibrationError(f"calibration {name} must be (E={e}, H), got {a.shape}")
            if h is None:
                h = a.shape[1]
            if a.shape[1] != h:
                raise CalibrationError(f"calibration {name} has {a.shape[1]} channels, expected {h}")
            if name != "bad" and not np.all(np.isfinite(a)):
                raise CalibrationError(f"calibration {name} contains NaN or Inf")
            object.__setattr__(self, name, freeze_array(a))
        if (self.dark is None) != (self.air is None):
            raise CalibrationError("a calibration set needs both master dark and air, or neither")
        object.__setattr__(self, "n_channels", None if h is None else int(h))
        if self.material is not None:
            if not isinstance(self.material, MaterialTable):
                raise CalibrationError(f"material must be a MaterialTable, got {type(self.material).__name__}")
            if self.material.profile != self.profile and self.material.profile is not None and self.profile is not None:
                raise CalibrationMismatchError(
                    f"material table is for profile {self.material.profile!r}, calibration for {self.profile!r}"
                )
            if _energy_key(self.material.energies) != _energy_key(energies):
                raise CalibrationMismatchError(
                    f"material table energies {[x.describe() for x in self.material.energies]} differ from "
                    f"calibration energies {[x.describe() for x in energies]}"
                )
        if not self.created:
            object.__setattr__(self, "created", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
        object.__setattr__(self, "metadata", types.MappingProxyType(dict(self.metadata)))

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_references(
        cls,
        dark_lines: Any,
        air_lines: Any,
        *,
        energies: Sequence[EnergyChannel],
        profile: str | None,
        material: MaterialTable | None = None,
        method: str = "sigma_clip",
        sigma: float = 3.0,
        mem_limit: int = 64 << 20,
        bad_extra: np.ndarray | None = None,
    ) -> CalibrationSet:
        """Build a set from recorded dark and air lines ``(E, H, n)`` (see :func:`combine_lines`)."""
        dark, dark_std = combine_lines(dark_lines, method=method, sigma=sigma, mem_limit=mem_limit, return_std=True)
        air = combine_lines(air_lines, method=method, sigma=sigma, mem_limit=mem_limit)
        if dark.shape != air.shape:
            raise InvalidDataError(f"dark lines {dark.shape} and air lines {air.shape} differ in (E, H)")
        has_std = len(getattr(dark_lines, "shape", ())) == 3 and dark_lines.shape[2] >= 3
        flags = detect_bad_channels(dark, air, dark_std=dark_std if has_std else None)
        bad = flags["bad"]
        if bad_extra is not None:
            bad = bad | np.asarray(bad_extra, dtype=bool)
        meta = {
            "method": method,
            "sigma": sigma,
            "dark_lines": int(dark_lines.shape[2]) if len(getattr(dark_lines, "shape", ())) == 3 else 1,
            "air_lines": int(air_lines.shape[2]) if len(getattr(air_lines, "shape", ())) == 3 else 1,
            "dead": int(flags["dead"].sum()),
            "hot": int(flags["hot"].sum()),
            "noisy": int(flags["noisy"].sum()),
        }
        return cls(
            profile=profile,
            energies=tuple(energies),
            dark=dark,
            air=air,
            dark_std=dark_std if has_std else None,
            bad=bad,
            material=material,
            metadata=meta,
        )

    @classmethod
    def from_raw(cls, raw: RawScan, *, material: MaterialTable | None = None, **kwargs: Any) -> CalibrationSet:
        """Build a set from a scan's own dark and air references."""
        if raw.dark is None or raw.air is None:
            raise InvalidDataError(f"scan {raw.scan_id!r} has no dark and air references to calibrate from")
        return cls.from_references(
            raw.dark, raw.air, energies=raw.energies, profile=raw.profile, material=material,
            bad_extra=raw.dead_mask, **kwargs,
        )

    def with_material(self, material: MaterialTable | None) -> CalibrationSet:
        """A copy with another material table."""
        return dataclasses.replace(self, material=material)

    # -- identity and checks --------------------------------------------------------------------
    @property
    def gain(self) -> np.ndarray | None:
        """Per-channel gain (open beam above dark relative to the median channel)."""
        if self.dark is None or self.air is None:
            return None
        return channel_gain(self.dark, self.air)

    def _meta(self) -> dict[str, Any]:
        return {
            "version": CALIBRATION_VERSION,
            "profile": self.profile,
            "energies": [{"label": e.label, "kvp": e.kvp} for e in self.energies],
            "n_channels": self.n_channels,
            "material_hash": None if self.material is None else self.material.hash,
            "created": self.created,
            "metadata": dict(self.metadata),
        }

    @property
    def hash(self) -> str:
        """SHA-256 identity of the set (arrays, profile, energies, material table hash)."""
        h = hashlib.sha256()
        meta = self._meta()
        meta.pop("created")  # identity is the content, not when it was made
        h.update(json.dumps(meta, sort_keys=True).encode())
        for name in ("dark", "air", "dark_std", "bad"):
            a = getattr(self, name)
            h.update(name.encode())
            if a is not None:
                h.update(np.ascontiguousarray(a, dtype=bool if name == "bad" else "<f4").tobytes())
        return h.hexdigest()

    def check(self, raw: RawScan) -> None:
        """Raise :class:`CalibrationMismatchError` unless ``raw`` matches profile, energies and shape."""
        if self.profile is not None and raw.profile is not None and raw.profile != self.profile:
            raise CalibrationMismatchError(
                f"scan {raw.scan_id!r} is from scanner profile {raw.profile!r}, calibration is for {self.profile!r}"
            )
        if self.profile is not None and raw.profile is None and self.dark is not None:
            raise CalibrationMismatchError(
                f"scan {raw.scan_id!r} names no scanner profile; calibration is for {self.profile!r}"
            )
        if _energy_key(raw.energies) != _energy_key(self.energies):
            raise CalibrationMismatchError(
                f"scan {raw.scan_id!r} energies {[e.describe() for e in raw.energies]} differ from calibration "
                f"energies {[e.describe() for e in self.energies]}"
            )
        h = raw.counts.shape[1]
        if self.n_channels is not None and h != self.n_channels:
            raise CalibrationMismatchError(
                f"scan {raw.scan_id!r} has {h} detector channels, calibration has {self.n_channels}"
            )

    # -- storage --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write as ``.npz`` (arrays + JSON metadata + embedded material table), atomically."""
        from .._atomic import atomic_path

        path = Path(path)
        arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(self._meta(), sort_keys=True))}
        for name in ("dark", "air", "dark_std", "bad"):
            a = getattr(self, name)
            if a is not None:
                arrays[name] = np.ascontiguousarray(a)
        if self.material is not None:
            arrays["material_values"] = np.ascontiguousarray(self.material.values, dtype="<f4")
            arrays["material_meta"] = np.array(json.dumps(self.material._meta(), sort_keys=True))
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CalibrationSet:
        """Read a set written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise FileAccessError("calibration set not found", path=path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {k: np.array(z[k]) for k in ("dark", "air", "dark_std", "bad") if k in z.files}
                mat = None
                if "material_values" in z.files:
                    mmeta = json.loads(str(z["material_meta"]))
                    mat = _table_from(np.array(z["material_values"]), mmeta)
        except (OSError, KeyError, ValueError) as exc:
            raise CalibrationError(f"not a nii calibration set: {exc}", path=path) from exc
        if meta.get("version") != CALIBRATION_VERSION:
            raise CalibrationError(f"calibration version {meta.get('version')!r} is not {CALIBRATION_VERSION!r}", path=path)
        cal = cls(
            profile=meta.get("profile"),
            energies=_energies_tuple(meta["energies"]),
            n_channels=meta.get("n_channels"),
            material=mat,
            created=meta.get("created", ""),
            metadata=meta.get("metadata", {}),
            **arrays,
        )
        if mat is not None and meta.get("material_hash") not in (None, mat.hash):
            raise CalibrationError("embedded material table fails its hash check", path=path)
        return cal


def _table_from(values: np.ndarray, meta: Mapping[str, Any]) -> MaterialTable:
    from .material import WedgeMaterial

    g = meta["grid"]
    refs = tuple(
        WedgeMaterial(r["name"], r["zeff"], r["l_low"], r["l_high"], r.get("thickness_cm"))
        for r in meta.get("references", [])
    )
    return MaterialTable(
        values=values, l0=g["l0"], dl=g["dl"], r0=g["r0"], dr=g["dr"], profile=meta.get("profile"),
        energies=_energies_tuple(meta["energies"]), references=refs, source=meta.get("source", ""),
        version=meta.get("version", "?"), metadata=meta.get("metadata", {}),
    )
