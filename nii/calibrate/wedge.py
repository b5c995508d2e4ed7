"""Step wedges: simulated or measured step-wedge scans -> material table; Zeff accuracy.

A *step wedge* is a slab of one reference material whose thickness changes in steps along the
belt. Its scan is normalised like any scan (dark, drift-corrected air, channel repair, log) and
the mean ``(L_low, L_high)`` of the interior of every step gives one calibration point.

Simulated wedges (:func:`simulate_wedges`) go through the full simulator
(:func:`nii.sim.imaging.form_image`: polychromatic spectrum, blur, scatter, noise, gain, drift,
dead channels, ADC) and then through :func:`nii.normalization.normalize` — the same path a real scan
takes, so the table absorbs scatter and beam hardening as the scanner sees them. Real wedges
(:func:`wedges_from_scans`) are RawScans whose metadata describe the steps::

    {"wedge": {"material": "aluminium", "zeff": 13.0,
               "steps": [[first_line, end_line, thickness_cm], ...]}}

Step thicknesses are chosen per material so that ``L_high`` runs evenly in ``log L`` from
``l_min`` to ``l_max`` (:func:`step_thicknesses`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..containers import RawScan
from ..errors import InvalidDataError, InvalidParameterError
from .material import MaterialTable, WedgeMaterial, build_material_table

__all__ = [
    "REFERENCE_MATERIALS",
    "TEST_PIECES",
    "build_table_for_profile",
    "measure_steps",
    "simulate_wedge_scan",
    "simulate_wedges",
    "step_thicknesses",
    "wedges_from_scans",
    "zeff_accuracy",
]

logger = logging.getLogger(__name__)

#: Reference materials of the shipped tables (physics-table names).
REFERENCE_MATERIALS = ("polyethylene", "pom", "water", "aluminium", "iron", "copper")
#: Materials used only to test the tables (never to build them).
TEST_PIECES = ("nylon", "wood", "keratin", "rhino_horn", "glass", "bone_cattle", "ivory", "pvc", "salt", "shell")

_STEP_LINES = 48
_MARGIN = 10
_CHANNELS = 48


def step_thicknesses(
    material: str,
    profile: Any,
    *,
    n_steps: int = 16,
    l_min: float = 0.04,
    l_max: float = 7.0,
    tables: Any = None,
) -> np.ndarray:
    """Thicknesses (cm) whose noise-free ``L_high`` runs geometrically from ``l_min`` to ``l_max``."""
    from ..sim.imaging import expected_log_attenuation

    if int(n_steps) < 2 or not (0 < l_min < l_max):
        raise InvalidParameterError(f"need n_steps >= 2 and 0 < l_min < l_max, got {n_steps}, {l_min}, {l_max}")
    grid = np.geomspace(1e-4, 500.0, 600)
    lh = expected_log_attenuation({material: grid}, profile, tables=tables)[-1]
    ok = np.isfinite(lh)
    target = np.geomspace(l_min, l_max, int(n_steps))
    lh, grid = np.maximum.accumulate(lh[ok]), grid[ok]
    reach = target <= lh[-1]
    return np.interp(np.log(target[reach]), np.log(np.maximum(lh, 1e-12)), grid)


def simulate_wedge_scan(
    layers: Mapping[str, np.ndarray],
    profile: Any,
    *,
    seed: int,
    channels: int = _CHANNELS,
    step_lines: int = _STEP_LINES,
    effects: Any = None,
    tables: Any = None,
) -> RawScan:
    """Simulate one scan of ``n`` steps; ``layers[m][k]`` is material ``m``'s thickness (cm) at step ``k``.

    Step ``k`` occupies lines ``[k * step_lines, (k + 1) * step_lines)``; all ``channels`` see it.
    """
    from ..profiles import load_profile
    from ..sim.imaging import DetectorEffects, form_image
    from ..sim.types import MaterialStack

    prof = load_profile(profile)
    names = tuple(layers)
    th = np.stack([np.asarray(layers[n], np.float32).ravel() for n in names])  # (M, n)
    n = th.shape[1]
    stack = np.repeat(th[:, None, :], step_lines, axis=2).reshape(len(names), 1, n * step_lines)
    stack = np.broadcast_to(stack, (len(names), int(channels), n * step_lines))
    ms = MaterialStack(names, stack, prof.pixel_pitch_mm)
    fx = effects if effects is not None else DetectorEffects()
    return form_image(ms, prof, seed=seed, effects=fx, tables=tables, scan_id=f"wedge-{'+'.join(names)}")


def measure_steps(scan: Any, steps: Sequence[tuple[int, int]], *, margin: int = _MARGIN) -> np.ndarray:
    """Mean attenuation ``(E, n_steps)`` of each step's interior over valid pixels of a normalised scan."""
    att = scan.attenuation
    valid = scan.valid if scan.valid is not None else np.ones(att.shape[1:], bool)
    out = np.empty((att.shape[0], len(steps)))
    for k, (a, b) in enumerate(steps):
        a2, b2 = a + margin, b - margin
        if b2 <= a2:
            raise InvalidDataError(f"step {k} ({a}..{b}) is too short for a {margin}-line margin")
        v = valid[:, a2:b2]
        if not v.any():
            out[:, k] = np.nan
            continue
        for e in range(att.shape[0]):
            out[e, k] = float(att[e, :, a2:b2][v].mean())
    return out


def _normalize_plain(raw: RawScan) -> Any:
    from ..normalization import normalize

    return normalize(raw, materials=False)


def simulate_wedges(
    profile: Any,
    materials: Sequence[str] = REFERENCE_MATERIALS,
    *,
    n_steps: int = 16,
    l_max: float = 7.0,
    seed: int = 0,
    tables: Any = None,
    effects: Any = None,
    background: Mapping[str, float] | None = None,
) -> list[WedgeMaterial]:
    """Simulated step wedges of reference materials, measured through the normaliser.

    ``background`` (e.g. ``{"steel": 0.3}``, cm) puts a fixed plate in the beam of every step;
    the scan then starts with a background-only step whose attenuation is subtracted from every
    step (a *background-specific* calibration, for objects behind that plate).
    """
    from ..physics.tables import load_tables

    tab = tables if tables is not None else load_tables()
    bgd = {k: float(v) for k, v in (background or {}).items() if float(v) > 0}
    out = []
    for i, m in enumerate(materials):
        if m not in tab:
            raise InvalidParameterError(f"reference material {m!r} is not in the physics tables")
        if m in bgd:
            raise InvalidParameterError(f"reference material {m!r} is also the background")
        t = step_thicknesses(m, profile, n_steps=n_steps, l_max=l_max, tables=tab)
        th = np.concatenate([[0.0], t]) if bgd else t
        layers = {m: th, **{k: np.full(th.size, v) for k, v in bgd.items()}}
        raw = simulate_wedge_scan(layers, profile, seed=seed + 1009 * i, effects=effects, tables=tab)
        scan = _normalize_plain(raw)
        steps = [(k * _STEP_LINES, (k + 1) * _STEP_LINES) for k in range(th.size)]
        lm = measure_steps(scan, steps)
        if bgd:
            lm = lm[:, 1:] - lm[:, :1]
        ok = np.all(np.isfinite(lm), axis=0) & (lm[-1] > 0)
        out.append(WedgeMaterial(m, tab.zeff(m), lm[0, ok], lm[-1, ok], t[ok]))
    return out


def wedges_from_scans(raws: Sequence[RawScan], *, calibration: Any = None) -> list[WedgeMaterial]:
    """Measured step wedges from real scans whose ``metadata["wedge"]`` describes the steps."""
    from ..normalization import normalize

    by_mat: dict[str, list[tuple[float, float, float, float]]] = {}
    for raw in raws:
        spec = raw.metadata.get("wedge")
        if not isinstance(spec, Mapping) or "material" not in spec or "steps" not in spec or "zeff" not in spec:
            raise InvalidDataError(f"scan {raw.scan_id!r}: metadata['wedge'] with material, zeff and steps is required")
        scan = normalize(raw, calibration, materials=False)
        steps = [(int(a), int(b)) for a, b, _ in spec["steps"]]
        lm = measure_steps(scan, steps)
        for k, (_, _, t) in enumerate(spec["steps"]):
            if np.all(np.isfinite(lm[:, k])):
                by_mat.setdefault(str(spec["material"]), []).append((float(spec["zeff"]), lm[0, k], lm[-1, k], float(t)))
    out = []
    for name, rows in by_mat.items():
        z = {r[0] for r in rows}
        if len(z) != 1:
            raise InvalidDataError(f"wedge scans of {name!r} disagree on its Zeff: {sorted(z)}")
        a = np.array(rows)
        out.append(WedgeMaterial(name, a[0, 0], a[:, 1], a[:, 2], a[:, 3]))
    return out


def build_table_for_profile(
    profile: str,
    *,
    materials: Sequence[str] = REFERENCE_MATERIALS,
    n_steps: int = 16,
    l_max: float = 7.0,
    seed: int = 0,
    tables: Any = None,
    background: Mapping[str, float] | None = None,
) -> MaterialTable:
    """The material table of a profile from simulated wedges (what ``nii calibrate wedge --simulate`` ships).

    With ``background`` the table is background-specific (see :func:`simulate_wedges`).
    """
    from ..physics.tables import load_tables
    from ..profiles import load_profile

    prof = load_profile(profile)
    if len(prof.energies) < 2:
        raise InvalidParameterError(f"profile {profile!r} is single-energy: no material table")
    tab = tables if tables is not None else load_tables()
    wedges = simulate_wedges(prof, materials, n_steps=n_steps, l_max=l_max, seed=seed, tables=tab,
                             background=background)
    meta = {"physics_sha256": tab.sha256, "n_steps": n_steps, "l_max": l_max,
            "step_lines": _STEP_LINES, "channels": _CHANNELS}
    if background:
        meta["background_cm"] = dict(background)
    return build_material_table(
        wedges,
        profile=prof.id,
        energies=prof.energies,
        source=f"simulated step wedges (nii.sim.imaging.form_image, all effects, seed {seed})"
        + (f", behind {dict(background)} cm" if background else ""),
        metadata=meta,
    )


def zeff_accuracy(
    table: MaterialTable,
    profile: str,
    *,
    pieces: Sequence[str] = TEST_PIECES,
    thicknesses_cm: Sequence[float] = (1.0, 2.0, 3.0, 5.0, 7.0, 10.0),
    steel_mm: Sequence[float] = (0.0, 2.0, 5.0),
    seed: int = 1,
    tables: Any = None,
    background_tables: Mapping[float, MaterialTable] | None = None,
) -> list[dict[str, Any]]:
    """Calibrated Zeff of simulated test pieces, bare and behind steel.

    Each configuration is a 48-line block of a simulated scan (all detector effects). Bare
    pieces: the median per-pixel Zeff of the block's interior from :func:`nii.normalization.normalize`.
    Behind steel: the steel's own attenuation, measured on a steel-only block of the same scan,
    is subtracted from each pixel (``L_piece = L_total - L_steel`` per energy, the background
    subtraction an analyst applies) and Zeff is looked up in the background-specific table for
    that steel (``background_tables[steel_mm]``, built by :func:`build_table_for_profile` with
    ``background={"steel": mm / 10}`` when not given). Also reported: the same subtraction looked
    up in the plain table (``zeff_plain_table``, biased low by the steel's beam hardening) and the
    Zeff of the superposition (``zeff_superposed``, what the per-pixel map shows).

    Returns
    -------
    list of dict
        ``material, zeff_true, thickness_cm, steel_mm, zeff, error_rel, zeff_superposed``.
    """
    from ..normalization import normalize
    from ..physics.tables import load_tables

    tab = tables if tables is not None else load_tables()
    bg_tables = dict(background_tables or {})
    for s in steel_mm:
        if s > 0 and s not in bg_tables:
            bg_tables[s] = build_table_for_profile(profile, tables=tab, background={"steel": s / 10.0})
    rows: list[dict[str, Any]] = []
    for ip, piece in enumerate(pieces):
        if piece in {r.name for r in table.references}:
            raise InvalidParameterError(f"{piece!r} was used to build the table: not a test piece")
        for js, s in enumerate(steel_mm):
            th = [0.0] + list(thicknesses_cm) if s > 0 else list(thicknesses_cm)
            layers = {piece: np.array(th)}
            if s > 0:
                layers["steel"] = np.full(len(th), s / 10.0)
            raw = simulate_wedge_scan(layers, profile, seed=seed + 7919 * ip + 31 * js, tables=tab)
            scan = normalize(raw, table)
            steps = [(k * _STEP_LINES + _MARGIN, (k + 1) * _STEP_LINES - _MARGIN) for k in range(len(th))]
            att = scan.attenuation.astype(np.float64)
            bg = np.zeros(att.shape[0])
            first = 0
            if s > 0:
                a, b = steps[0]
                v = scan.valid[:, a:b]
                bg = np.array([att[e, :, a:b][v].mean() for e in range(att.shape[0])])
                first = 1
            for k in range(first, len(th)):
                a, b = steps[k]
                v = scan.valid[:, a:b]
                if not v.any():
                    rows.append({"material": piece, "zeff_true": tab.zeff(piece), "thickness_cm": th[k],
                                 "steel_mm": s, "zeff": float("nan"), "error_rel": float("nan"),
                                 "zeff_plain_table": float("nan"), "zeff_superposed": float("nan")})
                    continue
                lo = att[0, :, a:b][v] - bg[0]
                hi = att[-1, :, a:b][v] - bg[-1]
                with np.errstate(divide="ignore", invalid="ignore"):
                    r = (lo / hi).astype(np.float32)
                    z = table.lookup(hi.astype(np.float32), r)
                    zb = bg_tables[s].lookup(hi.astype(np.float32), r) if s > 0 else z
                zplain = float(np.median(z))
                zmed = float(np.median(zb))
                zsup = float(np.nanmedian(scan.zeff[:, a:b][v])) if s > 0 else zmed
                zt = tab.zeff(piece)
                rows.append({"material": piece, "zeff_true": zt, "thickness_cm": th[k], "steel_mm": s,
                             "zeff": zmed, "error_rel": abs(zmed - zt) / zt, "zeff_plain_table": zplain,
                             "zeff_superposed": zsup})
    return rows
