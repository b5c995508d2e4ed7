"""Small synthetic scans for tests (importable as ``tests.synth``)."""

from __future__ import annotations

import numpy as np


def make_raw(rng: np.random.Generator, e: int = 2, h: int = 24, w: int = 40, *, dtype=np.uint16, scan_id: str = "synthetic", profile: str | None = "dual_kvp_80_140"):
    """A small, physically plausible RawScan: air ~ 30000 counts, dark ~ 200, an absorbing block."""
    from nii import EnergyChannel, RawScan

    dark = rng.normal(200.0, 2.0, size=(e, h)).astype(np.float32)
    air = rng.normal(30000.0, 300.0, size=(e, h)).astype(np.float32)
    trans = np.ones((e, h, w), np.float32)
    trans[:, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = np.array([0.2, 0.35][:e], np.float32)[:, None, None] if e <= 2 else 0.3
    counts = dark[..., None] + air[..., None] * trans
    counts = rng.poisson(counts).clip(0, np.iinfo(dtype).max).astype(dtype)
    energies = [EnergyChannel("low", 80.0), EnergyChannel("high", 140.0)][:e] if e <= 2 else [EnergyChannel(f"e{i}") for i in range(e)]
    return RawScan(
        counts=counts,
        energies=energies,
        pixel_pitch_mm=(1.0, 1.2),
        dark=dark,
        air=air,
        scan_id=scan_id,
        profile=profile,
    )


def synthetic_material_table(*, hardening: float = 0.0, n_l: int = 48, n_r: int = 64):
    """A (L_high, R) -> Zeff table from five synthetic reference wedges with monotone R(Z).

    ``hardening`` > 0 makes R fall with thickness, ``R = r0 - hardening * ln(1 + L)``, like a
    polychromatic beam.
    """
    from nii.calibrate import WedgeMaterial, build_material_table
    from nii.containers import EnergyChannel

    steps = np.geomspace(0.03, 8.0, 12)
    refs = [("pe", 5.4, 1.15), ("water", 7.4, 1.3), ("al", 13.0, 1.7), ("fe", 26.0, 2.6), ("cu", 29.0, 2.9)]
    wedges = [WedgeMaterial(n, z, steps * (r - hardening * np.log1p(steps)), steps) for n, z, r in refs]
    energies = (EnergyChannel("low", 80.0), EnergyChannel("high", 140.0))
    return build_material_table(wedges, profile=None, energies=energies, n_l=n_l, n_r=n_r)
