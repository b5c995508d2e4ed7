"""Calibration of line scanners: scanner references and the material (Zeff) table.

* :mod:`nii.calibrate.scanner` — master dark/air lines (sigma-clipped, memory-bounded), dead / hot /
  noisy channels, per-channel gain, the frozen :class:`CalibrationSet`;
* :mod:`nii.calibrate.material` — the ``(L_high, R) -> Zeff`` :class:`MaterialTable` and its builder;
* :mod:`nii.calibrate.wedge` — step-wedge scans (simulated or real) -> table; Zeff accuracy.

See ``docs/calibration.md`` for the method and its accuracy.
"""

from __future__ import annotations

from typing import Any

from .material import (
    TABLE_VERSION,
    MaterialTable,
    WedgeMaterial,
    build_material_table,
    default_table_path,
    load_default_table,
)
from .scanner import (
    CALIBRATION_VERSION,
    CalibrationSet,
    channel_gain,
    combine_lines,
    detect_bad_channels,
)

__all__ = [
    "CALIBRATION_VERSION",
    "TABLE_VERSION",
    "CalibrationSet",
    "MaterialTable",
    "WedgeMaterial",
    "build_material_table",
    "channel_gain",
    "combine_lines",
    "default_calibration",
    "default_table_path",
    "detect_bad_channels",
    "load_calibration",
    "load_default_table",
]


def default_calibration(profile: str | None, energies: Any = None) -> CalibrationSet:
    """The shipped calibration of a profile: its material table, no scanner frames.

    Single-energy profiles (or ``energies`` with one channel) get a set without a table.
    """
    from ..errors import CalibrationError

    if energies is not None and len(energies) < 2:
        return CalibrationSet(profile=profile, energies=tuple(energies))
    if not profile:
        raise CalibrationError("scan names no scanner profile, so no default calibration applies: pass calibration=")
    table = load_default_table(profile)
    return CalibrationSet(profile=profile, energies=table.energies, material=table, created="shipped")


def load_calibration(path: Any) -> CalibrationSet:
    """Load a :class:`CalibrationSet` (``.npz`` of ``nii-cal/1``) or a bare material table."""
    import numpy as np

    from ..errors import CalibrationError

    try:
        with np.load(path, allow_pickle=False) as z:
            is_table = "values" in z.files
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"not a nii calibration file: {exc}", path=path) from exc
    if is_table:
        t = MaterialTable.load(path)
        return CalibrationSet(profile=t.profile, energies=t.energies, material=t)
    return CalibrationSet.load(path)
