"""Fixtures for the nii.io tests: small seeded scans and one sample file per format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nii.containers import EnergyChannel, Provenance, RawScan, Scan, Step, Truth
from nii.materials import MaterialClass

H, W = 24, 40  # detector channels, scan lines

#: Format name that must read each sample of :func:`write_samples`.
EXPECTED_FORMAT = {
    "hdf5": "nii-hdf5",
    "dicos-processing": "dicos",
    "dicos-jpeg-lossless": "dicos",
    "dicos-presentation": "dicos",
    "tiff": "tiff",
    "raw": "raw",
    "png-pseudocolor": "rendered",
    "jpeg-pseudocolor": "rendered",
    "png-greyscale": "rendered",
    "png-16bit": "rendered",
}


def make_raw(seed: int = 0, *, energies: int = 2, dtype=np.uint16, refs: bool = True) -> RawScan:
    """A dual- (or single-) energy RawScan with dark/air/air_end references."""
    rng = np.random.default_rng(seed)
    hi = 60000 if dtype == np.uint16 else 3_000_000
    counts = rng.integers(200, hi, (energies, H, W)).astype(dtype)
    chans = (
        (EnergyChannel("low", 80), EnergyChannel("high", 140))[:energies]
        if energies <= 2
        else tuple(EnergyChannel(f"e{i}", 50 + 30 * i) for i in range(energies))
    )
    if energies == 1:
        chans = (EnergyChannel("single", 160),)
    kw = {}
    if refs:
        kw = dict(
            dark=rng.integers(50, 150, (energies, H, 4)).astype(dtype),
            air=rng.uniform(hi * 0.9, hi, (energies, H)).astype(np.float32),
            air_end=rng.integers(int(hi * 0.9), hi, (energies, H, 3)).astype(dtype),
            dead_mask=rng.random((energies, H)) < 0.1,
        )
    return RawScan(
        counts=counts,
        energies=chans,
        pixel_pitch_mm=(0.8, 1.25),
        profile="demo-140kv",
        scan_id=f"scan{seed}",
        acquired_at="2026-01-02T03:04:05",
        metadata={"site": "test", "n": 3},
        **kw,
    )


def make_material_scan(seed: int = 0, *, block: int = 4) -> Scan:
    """A one-plane Scan with a blocky material map and attenuation, for renderings."""
    rng = np.random.default_rng(seed)
    hb, wb = H // block, W // block
    material = np.kron(rng.integers(0, 5, (hb, wb)), np.ones((block, block), int)).astype(np.uint8)
    l_high = np.kron(rng.uniform(0.05, 5.0, (hb, wb)), np.ones((block, block))).astype(np.float32)
    l_high[material == MaterialClass.AIR] = 0.0
    return Scan(attenuation=l_high[None], energies=("high",), pixel_pitch_mm=(1.0, 1.0), material=material)


def make_scan(seed: int = 0) -> Scan:
    """A dual-energy normalised Scan with every map and some provenance."""
    rng = np.random.default_rng(seed)
    att = rng.uniform(0, 4, (2, H, W)).astype(np.float32)
    zeff = rng.uniform(5, 30, (H, W)).astype(np.float32)
    zeff[0, 0] = np.nan
    return Scan(
        attenuation=att,
        energies=(EnergyChannel("low", 80), EnergyChannel("high", 140)),
        pixel_pitch_mm=(1.5, 1.5),
        valid=rng.random((H, W)) > 0.05,
        zeff=zeff,
        material=rng.integers(0, 5, (H, W)).astype(np.uint8),
        color=rng.integers(0, 256, (H, W, 3)).astype(np.uint8),
        scan_id="norm0",
        truth=Truth(np.array([[1, 2, 10, 12]], np.float32), ("ivory",)),
        provenance=Provenance().append(Step("normalize", {"a": 1}), calibration_hash="abc"),
        metadata={"k": "v"},
    )


@pytest.fixture
def raw_scan() -> RawScan:
    return make_raw(0)


@pytest.fixture
def scan() -> Scan:
    return make_scan(0)


def write_samples(folder: Path) -> dict[str, Path]:
    """One small file per format (and variant); keys name the variant, values the path."""
    from nii.io import dicos, hdf5, raw, rendered, tiff

    folder.mkdir(parents=True, exist_ok=True)
    r = make_raw(1)
    out = {
        "hdf5": hdf5.write(r, folder / "scan.h5"),
        "dicos-processing": dicos.write(r, folder / "proc.dcs"),
        "dicos-jpeg-lossless": dicos.write(r, folder / "proc-jll.dcs", transfer_syntax="jpeg-lossless"),
        "dicos-presentation": dicos.write(make_scan(1), folder / "pres.dcs"),
        "tiff": tiff.write(r, folder / "scan.tif"),
        "raw": raw.write(r, folder / "scan.raw", interleave="line")[0],
        "png-pseudocolor": rendered.write(make_material_scan(1), folder / "pseudo.png"),
        "jpeg-pseudocolor": rendered.write(make_material_scan(1), folder / "pseudo.jpg"),
        "png-greyscale": rendered.write(make_material_scan(1), folder / "grey.png", kind="greyscale"),
        "png-16bit": rendered.write(make_raw(2, energies=1, refs=False), folder / "counts16.png"),
    }
    return out


@pytest.fixture(scope="session")
def samples(tmp_path_factory) -> dict[str, Path]:
    """Sample files of every format, written once per session (tests must not modify them)."""
    return write_samples(tmp_path_factory.mktemp("samples"))
