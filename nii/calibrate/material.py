"""Material calibration: the 2-D ``(L_high, R) -> Zeff`` table built from step-wedge scans.

``R = L_low / L_high`` depends on the material's atomic number *and*, through beam hardening, on
its thickness, so Zeff is looked up in a table indexed by both ``L_high`` and ``R``
(``shared/PHYSICS.md``). The table is built from step wedges of reference materials of known Zeff
(e.g. polyethylene, PMMA, water, aluminium, iron, copper), each measured at many thicknesses:

1. for each reference material ``m`` the measured steps give ``R_m(L_high)``; it is interpolated
   linearly in ``L_high`` between steps (held constant outside the measured range);
2. on every row ``L_high = l_i`` of a regular grid the reference materials give points
   ``(R_m(l_i), log Zeff_m)``; sorted by Zeff, ``R`` is made non-decreasing (isotonic guard against
   noise) and ``log Zeff`` is interpolated linearly in ``R`` between neighbouring reference
   materials, extrapolated linearly from the outermost pair and clipped to ``[ZEFF_FLOOR,
   ZEFF_CEIL]``;
3. the result is stored on a regular ``(L_high, R)`` grid, so the normaliser's kernel does an O(1)
   bilinear lookup.

A :class:`MaterialTable` is frozen, carries the scanner profile and energies it was built for,
the reference points themselves (for audit) and an identity hash. Tables are stored as ``.npz``
(no pickles) under ``calibration/materials/`` with an ``index.json`` of SHA-256 sums.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..containers import EnergyChannel, freeze_array
from ..errors import (
    CalibrationError,
    FileAccessError,
    InvalidDataError,
    InvalidParameterError,
)

__all__ = [
    "TABLE_VERSION",
    "ZEFF_CEIL",
    "ZEFF_FLOOR",
    "MaterialTable",
    "WedgeMaterial",
    "build_material_table",
    "default_table_path",
    "load_default_table",
]

TABLE_VERSION = "nii-mat/1"
#: Zeff values of the table are clipped to this range (extrapolation beyond the references).
ZEFF_FLOOR = 3.0
ZEFF_CEIL = 60.0


@dataclass(frozen=True, eq=False)
class WedgeMaterial:
    """Measured step wedge of one reference material.

    Parameters
    ----------
    name : str
        Material name (physics tables).
    zeff : float
        Its effective atomic number.
    l_low, l_high : ndarray (n,)
        Mean log attenuation of each step, low and high energy.
    thickness_cm : ndarray (n,), optional
        Step thicknesses (for the record).
    """

    name: str
    zeff: float
    l_low: np.ndarray
    l_high: np.ndarray
    thickness_cm: np.ndarray | None = None

    def __post_init__(self) -> None:
        lo = np.asarray(self.l_low, dtype=np.float64).ravel()
        hi = np.asarray(self.l_high, dtype=np.float64).ravel()
        if lo.shape != hi.shape:
            raise InvalidDataError(f"wedge {self.name!r}: l_low {lo.shape} and l_high {hi.shape} differ")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise InvalidDataError(f"wedge {self.name!r}: attenuation contains NaN or Inf")
        z = float(self.zeff)
        if not (np.isfinite(z) and z > 0):
            raise InvalidDataError(f"wedge {self.name!r}: zeff must be positive, got {self.zeff!r}")
        object.__setattr__(self, "zeff", z)
        object.__setattr__(self, "l_low", freeze_array(lo))
        object.__setattr__(self, "l_high", freeze_array(hi))
        if self.thickness_cm is not None:
            t = np.asarray(self.thickness_cm, dtype=np.float64).ravel()
            if t.shape != hi.shape:
                raise InvalidDataError(f"wedge {self.name!r}: thickness_cm {t.shape} != steps {hi.shape}")
            object.__setattr__(self, "thickness_cm", freeze_array(t))


def _energies_tuple(energies: Sequence[Any]) -> tuple[EnergyChannel, ...]:
    out = []
    for e in energies:
        if isinstance(e, EnergyChannel):
            out.append(e)
        elif isinstance(e, Mapping):
            out.append(EnergyChannel(str(e["label"]), e.get("kvp")))
        else:
            out.append(EnergyChannel(*e))
    return tuple(out)


@dataclass(frozen=True, eq=False)
class MaterialTable:
    """Regular-grid ``(L_high, R) -> Zeff`` table of one scanner profile.

    ``values[i, j]`` is Zeff at ``L_high = l0 + i * dl`` and ``R = r0 + j * dr``.
    """

    values: np.ndarray
    l0: float
    dl: float
    r0: float
    dr: float
    profile: str | None
    energies: tuple[EnergyChannel, ...]
    references: tuple[WedgeMaterial, ...] = ()
    source: str = ""
    version: str = TABLE_VERSION
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=np.float32)
        if v.ndim != 2 or min(v.shape) < 2:
            raise CalibrationError(f"material table values must be 2-D with >= 2 points per axis, got {v.shape}")
        if not np.all(np.isfinite(v)):
            raise CalibrationError("material table contains NaN or Inf")
        for name in ("l0", "dl", "r0", "dr"):
            x = float(getattr(self, name))
            if not np.isfinite(x):
                raise CalibrationError(f"material table {name} must be finite")
            object.__setattr__(self, name, x)
        if self.dl <= 0 or self.dr <= 0:
            raise CalibrationError("material table grid steps dl, dr must be positive")
        if self.version != TABLE_VERSION:
            raise CalibrationError(f"material table version {self.version!r} is not {TABLE_VERSION!r}")
        object.__setattr__(self, "values", freeze_array(v))
        object.__setattr__(self, "energies", _energies_tuple(self.energies))
        object.__setattr__(self, "references", tuple(self.references))
        object.__setattr__(self, "metadata", types.MappingProxyType(dict(self.metadata)))

    # -- identity -------------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "profile": self.profile,
            "energies": [{"label": e.label, "kvp": e.kvp} for e in self.energies],
            "grid": {"l0": self.l0, "dl": self.dl, "r0": self.r0, "dr": self.dr, "shape": list(self.values.shape)},
            "source": self.source,
            "references": [
                {
                    "name": r.name,
                    "zeff": r.zeff,
                    "l_low": r.l_low.tolist(),
                    "l_high": r.l_high.tolist(),
                    "thickness_cm": None if r.thickness_cm is None else r.thickness_cm.tolist(),
                }
                for r in self.references
            ],
            "metadata": dict(self.metadata),
        }

    @property
    def hash(self) -> str:
        """SHA-256 of the table values and its metadata (identity of the calibration)."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.values, dtype="<f4").tobytes())
        h.update(json.dumps(self._meta(), sort_keys=True).encode())
        return h.hexdigest()

    @property
    def grid_params(self) -> np.ndarray:
        """``float32 [l0, 1/dl, r0, 1/dr]`` as the kernel wants them."""
        return np.array([self.l0, 1.0 / self.dl, self.r0, 1.0 / self.dr], dtype=np.float32)

    @property
    def l_high_axis(self) -> np.ndarray:
        return self.l0 + self.dl * np.arange(self.values.shape[0])

    @property
    def r_axis(self) -> np.ndarray:
        return self.r0 + self.dr * np.arange(self.values.shape[1])

    def lookup(self, l_high: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Bilinear Zeff lookup (NumPy, float32, same law as the kernel); clamped to the grid."""
        l_high = np.asarray(l_high, dtype=np.float32)
        r = np.asarray(r, dtype=np.float32)
        tpar = self.grid_params
        nl, nr = self.values.shape
        fx = np.clip((l_high - tpar[0]) * tpar[1], np.float32(0), np.float32(nl - 1))
        fy = np.clip((r - tpar[2]) * tpar[3], np.float32(0), np.float32(nr - 1))
        i = np.minimum(fx.astype(np.int64), nl - 2)
        j = np.minimum(fy.astype(np.int64), nr - 2)
        tx = fx - i.astype(np.float32)
        ty = fy - j.astype(np.float32)
        t = self.values
        a = t[i, j] + ty * (t[i, j + 1] - t[i, j])
        b = t[i + 1, j] + ty * (t[i + 1, j + 1] - t[i + 1, j])
        return (a + tx * (b - a)).astype(np.float32)

    # -- storage --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the table as ``.npz`` (values + JSON metadata), atomically."""
        from .._atomic import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                values=np.ascontiguousarray(self.values, dtype="<f4"),
                meta=np.array(json.dumps(self._meta(), sort_keys=True)),
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, sha256: str | None = None) -> MaterialTable:
        """Read a table written by :meth:`save`; verify the file's SHA-256 when given."""
        from .._assets import sha256_file

        path = Path(path)
        if not path.is_file():
            raise FileAccessError("material table not found", path=path)
        if sha256 is not None and sha256_file(path) != sha256:
            raise CalibrationError(f"SHA-256 mismatch (expected {sha256})", path=path)
        try:
            with np.load(path, allow_pickle=False) as z:
                values = np.array(z["values"], dtype=np.float32)
                meta = json.loads(str(z["meta"]))
        except (OSError, KeyError, ValueError) as exc:
            raise CalibrationError(f"not a nii material table: {exc}", path=path) from exc
        try:
            g = meta["grid"]
            refs = tuple(
                WedgeMaterial(r["name"], r["zeff"], r["l_low"], r["l_high"], r.get("thickness_cm"))
                for r in meta.get("references", [])
            )
            return cls(
                values=values,
                l0=g["l0"],
                dl=g["dl"],
                r0=g["r0"],
                dr=g["dr"],
                profile=meta.get("profile"),
                energies=_energies_tuple(meta["energies"]),
                references=refs,
                source=meta.get("source", ""),
                version=meta.get("version", "?"),
                metadata=meta.get("metadata", {}),
            )
        except (KeyError, TypeError, InvalidDataError) as exc:
            raise CalibrationError(f"malformed material table metadata: {exc}", path=path) from exc

    def replace(self, **changes: Any) -> MaterialTable:
        return dataclasses.replace(self, **changes)


def _isotonic(y: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators: the closest non-decreasing sequence (least squares)."""
    vals: list[float] = []
    counts: list[int] = []
    for v in y:
        vals.append(float(v))
        counts.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            c = counts[-2] + counts[-1]
            v2 = (vals[-2] * counts[-2] + vals[-1] * counts[-1]) / c
            vals[-2:] = [v2]
            counts[-2:] = [c]
    return np.repeat(vals, counts)


def build_material_table(
    wedges: Sequence[WedgeMaterial],
    *,
    profile: str | None,
    energies: Sequence[EnergyChannel],
    n_l: int = 192,
    n_r: int = 256,
    l_max: float | None = None,
    source: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> MaterialTable:
    """Build the ``(L_high, R) -> Zeff`` table from step-wedge measurements.

    Parameters
    ----------
    wedges : sequence of WedgeMaterial
        At least 2 reference materials (5 or more recommended), each with at least 3 steps
        (10 or more recommended) with ``L_high`` above the air threshold.
    profile, energies
        Scanner profile id and energy channels the wedges were measured with.
    n_l, n_r : int
        Grid size along ``L_high`` and ``R``.
    l_max : float, optional
        Upper end of the ``L_high`` axis; default the largest measured step.

    Returns
    -------
    MaterialTable

    Examples
    --------
    >>> w = [WedgeMaterial(n, z, np.array([0.2, 1.0, 3.0]) * r, np.array([0.2, 1.0, 3.0]))
    ...      for n, z, r in [("a", 6.0, 1.2), ("b", 13.0, 1.6), ("c", 26.0, 2.4)]]
    >>> t = build_material_table(w, profile=None, energies=[EnergyChannel("low"), EnergyChannel("high")])
    >>> round(float(t.lookup(np.float32(1.0), np.float32(1.6))), 2)
    13.0
    """
    from ..materials import AIR_ATTENUATION_MAX

    energies = _energies_tuple(energies)
    if len(energies) < 2:
        raise InvalidParameterError("a material table needs dual-energy wedges (energies has < 2 channels)")
    if int(n_l) < 4 or int(n_r) < 4:
        raise InvalidParameterError(f"n_l and n_r must be >= 4, got {n_l}, {n_r}")
    wedges = list(wedges)
    if len(wedges) < 2:
        raise InvalidParameterError(f"need at least 2 reference materials, got {len(wedges)}")
    names = [w.name for w in wedges]
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"reference materials must be unique, got {names}")
    curves = []
    for w in wedges:
        keep = w.l_high > AIR_ATTENUATION_MAX
        if keep.sum() < 3:
            raise InvalidDataError(f"wedge {w.name!r} has fewer than 3 steps with L_high > {AIR_ATTENUATION_MAX}")
        hi = w.l_high[keep]
        r = w.l_low[keep] / hi
        order = np.argsort(hi)
        curves.append((hi[order], r[order], np.log(w.zeff)))
    curves.sort(key=lambda c: c[2])
    top = max(c[0][-1] for c in curves)
    l_max = float(top if l_max is None else l_max)
    if not l_max > 0:
        raise InvalidParameterError(f"l_max must be positive, got {l_max}")
    l_axis = np.linspace(0.0, l_max, int(n_l))
    r_at = np.stack([np.interp(l_axis, c[0], c[1]) for c in curves], axis=1)  # (n_l, M)
    logz = np.array([c[2] for c in curves])
    r_lo = float(r_at.min())
    r_hi = float(r_at.max())
    span = r_hi - r_lo
    if not span > 0:
        raise InvalidDataError("reference materials give the same R: the wedges cannot separate Zeff")
    r_axis = np.linspace(r_lo - 0.25 * span, r_hi + 0.25 * span, int(n_r))
    values = np.empty((int(n_l), int(n_r)), dtype=np.float64)
    for i in range(int(n_l)):
        ri = _isotonic(r_at[i])
        # strictly increasing for interpolation (equal R -> tiny separation)
        ri = ri + np.arange(ri.size) * 1e-9 * max(span, 1e-6)
        lz = np.interp(r_axis, ri, logz)
        below = r_axis < ri[0]
        above = r_axis > ri[-1]
        s0 = (logz[1] - logz[0]) / (ri[1] - ri[0])
        s1 = (logz[-1] - logz[-2]) / (ri[-1] - ri[-2])
        lz[below] = logz[0] + s0 * (r_axis[below] - ri[0])
        lz[above] = logz[-1] + s1 * (r_axis[above] - ri[-1])
        values[i] = np.exp(np.clip(lz, np.log(ZEFF_FLOOR), np.log(ZEFF_CEIL)))
    return MaterialTable(
        values=values.astype(np.float32),
        l0=0.0,
        dl=float(l_axis[1] - l_axis[0]),
        r0=float(r_axis[0]),
        dr=float(r_axis[1] - r_axis[0]),
        profile=profile,
        energies=energies,
        references=tuple(wedges),
        source=source,
        metadata=dict(metadata or {}),
    )


def default_table_path(profile: str) -> tuple[Path, str | None]:
    """Path of the shipped table of ``profile`` and its recorded SHA-256 (``calibration/materials``)."""
    from .._assets import asset_dir

    folder = asset_dir("calibration") / "materials"
    index = folder / "index.json"
    sha = None
    fname = f"{profile}.npz"
    if index.is_file():
        try:
            entry = json.loads(index.read_text()).get("tables", {}).get(profile)
        except (OSError, ValueError) as exc:
            raise CalibrationError(f"unreadable material index: {exc}", path=index) from exc
        if entry:
            fname = entry.get("file", fname)
            sha = entry.get("sha256")
    return folder / fname, sha


#: tables already read by :func:`load_default_table`: (path, recorded SHA-256) -> (file stamp, table)
_DEFAULT_TABLES: dict[tuple[str, str | None], tuple[tuple[int, int, int], MaterialTable]] = {}
_DEFAULT_TABLES_LOCK = threading.Lock()


def load_default_table(profile: str) -> MaterialTable:
    """Load the shipped, hash-checked material table of a scanner profile.

    Every scan without an explicit calibration resolves this table (``normalize`` and the
    detector's encoding each do, per scan), so a table once read and verified is kept and handed
    out again while its file is unchanged (same modification time, size and inode; the table is
    immutable). A changed file, or a changed SHA-256 in ``index.json``, is read and verified anew.
    """
    if not profile:
        raise CalibrationError("scan has no scanner profile: pass a calibration explicitly")
    path, sha = default_table_path(profile)
    try:
        st = path.stat()
    except OSError:
        st = None
    if st is None or not path.is_file():
        raise CalibrationError(
            f"no default material calibration for profile {profile!r} "
            f"(build one with `nii calibrate wedge --profile {profile} --simulate`)",
            path=path,
        )
    key = (str(path), sha)
    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    hit = _DEFAULT_TABLES.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    table = MaterialTable.load(path, sha256=sha)
    with _DEFAULT_TABLES_LOCK:
        _DEFAULT_TABLES[key] = (stamp, table)
    return table
