"""Operator display: isolated object pixels in air are shown as air (picture only)."""

from __future__ import annotations

import numpy as np
import pytest

from nii.errors import InvalidParameterError
from nii.materials import MaterialClass, despeckle_display


def _reference(rgb, material, max_neighbours):
    h, w = material.shape
    out = rgb.copy()
    obj = material != MaterialClass.AIR
    for y in range(h):
        for x in range(w):
            if not obj[y, x] or material[y, x] == MaterialClass.IMPENETRABLE:
                continue
            n = obj[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].sum() - 1
            if n <= max_neighbours:
                out[y, x] = 255
    return out


@pytest.mark.parametrize("max_neighbours", [0, 1, 3])
def test_despeckle_matches_a_pixel_loop(max_neighbours):
    rng = np.random.default_rng(7)
    material = np.where(rng.random((23, 31)) < 0.15, rng.integers(1, 5, (23, 31)), 0).astype(np.uint8)
    material[5:15, 8:20] = MaterialClass.MIXED  # a solid object keeps every pixel
    rgb = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    out = despeckle_display(rgb, material, max_neighbours=max_neighbours)
    np.testing.assert_array_equal(out, _reference(rgb, material, max_neighbours))
    np.testing.assert_array_equal(out[6:14, 9:19], rgb[6:14, 9:19])
    assert out is not rgb


def test_despeckle_validates_its_input():
    with pytest.raises(InvalidParameterError, match="uint8"):
        despeckle_display(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8))
    with pytest.raises(InvalidParameterError, match="differs"):
        despeckle_display(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.uint8))
    with pytest.raises(InvalidParameterError, match="max_neighbours"):
        despeckle_display(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), max_neighbours=9)
