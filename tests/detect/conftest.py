"""Fixtures of the detector tests: the committed demo model, loaded once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nii.containers import EnergyChannel, Scan
from nii.encoding import ATT_SCALE, ZEFF_HI, ZEFF_LO

DEMO = Path(__file__).resolve().parents[2] / "detectors" / "demo-tiny"


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    return DEMO


@pytest.fixture(scope="session")
def demo_detector():
    from nii.detect import Detector

    return Detector.load(DEMO)


def scan_from_encoded(img: np.ndarray, pitch_mm: float = 3.0, *, rendered: bool = False) -> Scan:
    """A dual-energy Scan whose nii-det/1 encoding at its own pitch is ``img`` (up to rounding)."""
    v0 = img[..., 0].astype(np.float64)
    v2 = img[..., 2].astype(np.float64)
    l_high = (-ATT_SCALE * np.log1p(-np.minimum(v0, 254.4) / 255.0)).astype(np.float32)
    l_low = (-ATT_SCALE * np.log1p(-np.minimum(v2, 254.4) / 255.0)).astype(np.float32)
    z = np.where(img[..., 1] > 0, ZEFF_LO + img[..., 1] / 255.0 * (ZEFF_HI - ZEFF_LO), np.nan).astype(np.float32)
    return Scan(
        attenuation=np.stack([l_low, l_high]),
        energies=(EnergyChannel("low", 80), EnergyChannel("high", 140)),
        pixel_pitch_mm=(pitch_mm, pitch_mm),
        zeff=z,
        scan_id="synthetic",
    )


def draw_object(size: int, cls: str, *, seed: int = 0, at: tuple[int, int] = (0, 0), obj_px: int = 60, n_clutter: int = 0):
    """An encoded ``size x size`` image with one object of ``cls`` whose bounding square starts at ``at``."""
    from nii.dataset.synthetic import synthetic_image

    rng = np.random.default_rng(seed)
    small, boxes, names = synthetic_image(obj_px, rng=rng, n_objects=1, n_clutter=n_clutter, classes=(cls,), object_size=(obj_px, obj_px))
    img = np.zeros((size, size, 3), np.uint8)
    y, x = at
    img[y : y + obj_px, x : x + obj_px] = small
    b = boxes.copy()
    b[:, [0, 2]] += x
    b[:, [1, 3]] += y
    return img, b, names


@pytest.fixture(scope="session")
def make_scan():
    """The :func:`scan_from_encoded` helper."""
    return scan_from_encoded


@pytest.fixture(scope="session")
def make_object():
    """The :func:`draw_object` helper."""
    return draw_object
