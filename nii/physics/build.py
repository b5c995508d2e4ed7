"""Regenerate the committed physics tables (``calibration/physics``) from xraydb and spekpy.

This is the only module of nii that imports xraydb and spekpy (the ``physics`` extra); the
runtime reads the tables through :mod:`nii.physics.tables`. Run it with::

    nii physics build [--out DIR]

It writes, atomically and byte-reproducibly (fixed zip timestamps):

``attenuation.npz``
    ``energies_kev`` (K,), ``materials`` (M,), ``density`` (M,), ``zeff`` (M,),
    ``mu_rho`` / ``mu_rho_photo`` / ``mu_rho_incoh`` (M, K) float32 cm^2/g (total includes coherent),
    ``composition_json`` (element mass fractions, sources), ``meta_json``.
``spectra.npz``
    ``energies_kev`` (K,), ``keys`` (S,), ``fluence`` (S, K) float32 photons / (cm^2 mAs) at 1 m
    per 1 keV bin centred on the grid energy, ``tubes_json``, ``meta_json``.
``README.md`` (table of compositions, densities, Zeff and sources; how to rebuild) and
``SHA256SUMS``.

Energy grid: 10 to 450 keV in 1 keV steps (441 points). Cross-sections: Elam et al. tables as
shipped by xraydb (``mu_elam``); mixtures by the mass-fraction rule. Effective atomic number:
power law ``Zeff = (sum_i f_i Z_i^2.94)^(1/2.94)`` over electron fractions ``f_i`` (Spiers 1946;
the convention of shared/PHYSICS.md). Spectra: spekpy (Poludniowski et al. 2021) with the tube's
anode angle and filtration, bins of 0.5 keV summed in pairs onto the 1 keV grid.
"""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._assets import sha256_file
from .._atomic import atomic_path, atomic_write_text
from ..errors import CalibrationError
from .materials import CATEGORIES, MATERIALS, MaterialSpec

__all__ = ["ENERGY_GRID_KEV", "ZEFF_EXPONENT", "build_tables", "element_fractions", "zeff_power_law"]

log = logging.getLogger(__name__)

#: The tables' energy grid, keV.
ENERGY_GRID_KEV = np.arange(10.0, 451.0, 1.0)
#: Exponent of the power-law effective atomic number.
ZEFF_EXPONENT = 2.94

ATTENUATION_FILE = "attenuation.npz"
SPECTRA_FILE = "spectra.npz"


def element_fractions(spec: MaterialSpec, by_name: Mapping[str, MaterialSpec] | None = None) -> dict[str, float]:
    """Element mass fractions of ``spec`` (normalised to 1), resolving nested materials."""
    import xraydb

    by_name = by_name or {m.name: m for m in MATERIALS}
    out: dict[str, float] = {}
    total = sum(f for _, f in spec.composition)
    for comp, frac in spec.composition:
        if comp in by_name and comp != spec.name:
            sub = element_fractions(by_name[comp], by_name)
        else:
            counts = xraydb.chemparse(comp)
            masses = {el: n * xraydb.atomic_mass(el) for el, n in counts.items()}
            m_tot = sum(masses.values())
            sub = {el: m / m_tot for el, m in masses.items()}
        for el, w in sub.items():
            out[el] = out.get(el, 0.0) + w * frac / total
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def zeff_power_law(fractions: Mapping[str, float], *, exponent: float = ZEFF_EXPONENT) -> float:
    """Power-law effective atomic number from element mass fractions."""
    import xraydb

    el = list(fractions)
    z = np.array([xraydb.atomic_number(e) for e in el], float)
    a = np.array([xraydb.atomic_mass(e) for e in el], float)
    w = np.array([fractions[e] for e in el], float)
    electrons = w * z / a
    f = electrons / electrons.sum()
    return float(np.sum(f * z**exponent) ** (1.0 / exponent))


def _mu_rho(fractions: Mapping[str, float], energies_ev: np.ndarray, kind: str) -> np.ndarray:
    import xraydb

    mu = np.zeros_like(energies_ev, dtype=np.float64)
    for el, w in fractions.items():
        mu += w * np.asarray(xraydb.mu_elam(el, energies_ev, kind=kind), float)
    return mu


def tube_spectrum(tube: Any, energies_kev: np.ndarray = ENERGY_GRID_KEV) -> np.ndarray:
    """spekpy fluence of ``tube`` (a :class:`nii.profiles.TubeSpec`) per 1 keV bin on the grid."""
    import spekpy

    spek = spekpy.Spek(kvp=float(tube.kvp), th=float(tube.anode_angle_deg), dk=0.5, targ=tube.anode)
    for material, mm in tube.filtration:
        spek.filter(material, float(mm))
    k, fl = spek.get_spectrum()  # bin centres k = 0.25, 0.75, ... ; fluence per keV
    k = np.asarray(k, float)
    fl = np.asarray(fl, float) * 0.5  # photons per 0.5 keV bin
    # The 1 keV bin centred on integer e collects the 0.5 keV bins centred at e - 0.25 and e + 0.25,
    # i.e. the bins whose centre rounds to e.
    centre = np.rint(k).astype(np.int64)
    out = np.zeros(energies_kev.size)
    grid = np.rint(energies_kev).astype(np.int64)
    pos = np.searchsorted(grid, centre)
    ok = (pos < grid.size) & (grid[np.minimum(pos, grid.size - 1)] == centre)
    np.add.at(out, pos[ok], fl[ok])
    return out


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Deterministic ``.npz``: fixed member order and timestamps, deflate-compressed."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            arr = np.asarray(arrays[name])
            arr = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)  # keeps 0-d arrays 0-d
            np.lib.format.write_array(buf, arr, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)
    os.chmod(path, 0o644)


def _profiles_tubes(profiles_dir: Path | None) -> dict[str, Any]:
    from .._assets import asset_dir
    from ..profiles import load_profile_path

    d = profiles_dir or asset_dir("calibration") / "profiles"
    tubes: dict[str, Any] = {}
    for p in sorted(d.glob("*.toml")):
        prof = load_profile_path(p)
        for t in prof.tubes:
            tubes.setdefault(t.key, t)
    if not tubes:
        raise CalibrationError("no scanner profiles found, so no tube spectra to build", path=d)
    return tubes


def build_tables(out_dir: str | Path | None = None, *, profiles_dir: str | Path | None = None) -> dict[str, Any]:
    """Compute and write the physics tables; return a summary (paths, SHA-256, versions).

    Parameters
    ----------
    out_dir : path, optional
        Output folder; default ``calibration/physics`` of the asset resolver.
    profiles_dir : path, optional
        Folder of scanner profiles whose tubes need spectra; default ``calibration/profiles``.
    """
    try:
        import spekpy
        import xraydb
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise CalibrationError(f"`nii physics build` needs the physics extra (pip install 'nii[physics]'): {exc}") from exc
    from importlib.metadata import version

    from .._assets import asset_dir

    out = Path(out_dir) if out_dir is not None else asset_dir("calibration") / "physics"
    out.mkdir(parents=True, exist_ok=True)
    e_kev = ENERGY_GRID_KEV
    e_ev = e_kev * 1000.0
    by_name = {m.name: m for m in MATERIALS}

    names, dens, zeff, mu_t, mu_p, mu_i, comp = [], [], [], [], [], [], {}
    for spec in MATERIALS:
        fr = element_fractions(spec, by_name)
        names.append(spec.name)
        dens.append(spec.density)
        zeff.append(zeff_power_law(fr))
        mu_t.append(_mu_rho(fr, e_ev, "total"))
        mu_p.append(_mu_rho(fr, e_ev, "photo"))
        mu_i.append(_mu_rho(fr, e_ev, "incoh"))
        comp[spec.name] = {
            "category": spec.category,
            "density": spec.density,
            "elements": {el: round(w, 6) for el, w in fr.items()},
            "components": [[c, f] for c, f in spec.composition],
            "source": spec.source,
            "note": spec.note,
        }
    versions = {"xraydb": version("xraydb"), "spekpy": version("spekpy"), "numpy": np.__version__}
    meta = {
        "schema": "nii-physics/1",
        "energy_grid_kev": [float(e_kev[0]), float(e_kev[-1]), 1.0],
        "cross_sections": "Elam, Ravel & Sieber 2002 via xraydb.mu_elam; mixtures by mass fraction",
        "zeff": f"power law exponent {ZEFF_EXPONENT} over electron fractions",
        "versions": versions,
    }
    att = {
        "energies_kev": e_kev.astype(np.float32),
        "materials": np.array(names),
        "density": np.array(dens, np.float64),
        "zeff": np.array(zeff, np.float64),
        "mu_rho": np.array(mu_t, np.float32),
        "mu_rho_photo": np.array(mu_p, np.float32),
        "mu_rho_incoh": np.array(mu_i, np.float32),
        "composition_json": np.array(json.dumps(comp, sort_keys=True)),
        "meta_json": np.array(json.dumps(meta, sort_keys=True)),
    }
    _write_npz(out / ATTENUATION_FILE, att)

    tubes = _profiles_tubes(Path(profiles_dir) if profiles_dir else None)
    keys = sorted(tubes)
    fluence = np.array([tube_spectrum(tubes[k], e_kev) for k in keys], np.float32)
    tubes_json = {
        k: {"kvp": t.kvp, "anode": t.anode, "anode_angle_deg": t.anode_angle_deg, "filtration": [list(f) for f in t.filtration]}
        for k, t in tubes.items()
    }
    smeta = dict(meta, spectra="spekpy default physics model, photons/(cm^2 mAs) at 1 m per 1 keV bin")
    _write_npz(
        out / SPECTRA_FILE,
        {
            "energies_kev": e_kev.astype(np.float32),
            "keys": np.array(keys),
            "fluence": fluence,
            "tubes_json": np.array(json.dumps(tubes_json, sort_keys=True)),
            "meta_json": np.array(json.dumps(smeta, sort_keys=True)),
        },
    )
    shas = {f: sha256_file(out / f) for f in (ATTENUATION_FILE, SPECTRA_FILE)}
    atomic_write_text(out / "README.md", _readme(comp, zeff, names, keys, tubes_json, versions, shas))
    atomic_write_text(out / "SHA256SUMS", "".join(f"{h}  {f}\n" for f, h in sorted(shas.items())))
    for name in ("README.md", "SHA256SUMS"):
        os.chmod(out / name, 0o644)
    log.info("physics tables written to %s (%s)", out, ", ".join(f"{f} {h[:12]}" for f, h in shas.items()))
    del spekpy, xraydb
    return {"out": str(out), "sha256": shas, "versions": versions, "materials": len(names), "spectra": keys}


def _readme(
    comp: Mapping[str, Any],
    zeff: Sequence[float],
    names: Sequence[str],
    keys: Sequence[str],
    tubes: Mapping[str, Any],
    versions: Mapping[str, str],
    shas: Mapping[str, str],
) -> str:
    lines = [
        "# Physics tables (generated — do not edit)",
        "",
        "Generated by `nii physics build` (module `nii/physics/build.py`; needs the `physics` extra).",
        f"Versions: xraydb {versions['xraydb']}, spekpy {versions['spekpy']}, numpy {versions['numpy']}.",
        "Rebuild: `nii physics build` (or `nii physics build --out DIR` to compare); the files are",
        "byte-reproducible for the same versions. The runtime reads them with NumPy only.",
        "Offline: xraydb and spekpy read only the data files bundled with them (neither imports a",
        "network module), so the build needs no internet access.",
        "",
        "- `attenuation.npz`: mass attenuation (total incl. coherent, photoelectric, incoherent), cm²/g,",
        "  10–450 keV in 1 keV steps, float32; Elam et al. (2002) cross-sections via `xraydb.mu_elam`,",
        "  mixtures by the mass-fraction rule.",
        "- `spectra.npz`: tube spectra (spekpy), photons/(cm² mAs) at 1 m per 1 keV bin, one per tube of",
        "  every scanner profile in `calibration/profiles`.",
        f"- Zeff: power law (Σ f_i Z_i^{ZEFF_EXPONENT})^(1/{ZEFF_EXPONENT}) over electron fractions f_i.",
        "",
        "## SHA-256",
        "",
        "| file | sha256 |",
        "|---|---|",
    ]
    lines += [f"| `{f}` | `{h}` |" for f, h in sorted(shas.items())]
    lines += ["", "## Materials", "", "| material | category | density g/cm³ | Zeff | composition (mass fraction) | source / note |", "|---|---|---|---|---|---|"]
    order = sorted(range(len(names)), key=lambda i: (CATEGORIES.index(comp[names[i]]["category"]), i))
    for i in order:
        c = comp[names[i]]
        els = " ".join(f"{el} {w * 100:.1f}" for el, w in c["elements"].items() if w >= 0.0005)
        src = c["source"] + (f" — {c['note']}" if c["note"] else "")
        lines.append(f"| {names[i]} | {c['category']} | {c['density']:g} | {zeff[i]:.2f} | {els} | {src} |")
    lines += ["", "## Tube spectra", "", "| key | kVp | anode angle ° | filtration (mm) |", "|---|---|---|---|"]
    for k in keys:
        t = tubes[k]
        filt = ", ".join(f"{m} {mm:g}" for m, mm in t["filtration"])
        lines.append(f"| `{k}` | {t['kvp']:g} | {t['anode_angle_deg']:g} | {filt} |")
    return "\n".join(lines) + "\n"
