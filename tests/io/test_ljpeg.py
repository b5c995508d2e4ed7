"""nii's lossless JPEG (process 14, SV1) encoder against independent decoders."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nii.errors import InvalidParameterError
from nii.io._ljpeg import encode_lossless

libjpeg = pytest.importorskip("libjpeg")


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 40),
    cols=st.integers(1, 40),
    bits=st.integers(2, 16),
    smooth=st.booleans(),
    predictor=st.integers(1, 7),
    seed=st.integers(0, 2**32 - 1),
)
def test_decodes_bit_exactly_with_libjpeg(rows, cols, bits, smooth, predictor, seed):
    rng = np.random.default_rng(seed)
    top = (1 << bits) - 1
    if smooth:
        base = np.add.outer(np.arange(rows), np.arange(cols)) * max(1, top // (rows + cols))
        img = np.clip(base + rng.integers(-3, 4, (rows, cols)), 0, top)
    else:
        img = rng.integers(0, top, (rows, cols), endpoint=True)
    img = img.astype(np.uint16)
    data = encode_lossless(img, precision=bits, predictor=predictor)
    assert data[:4] == b"\xff\xd8\xff\xc3" and data[-2:] == b"\xff\xd9"
    np.testing.assert_array_equal(libjpeg.decode(data), img)


@pytest.mark.parametrize(
    "img",
    [
        np.zeros((3, 3), np.uint16),
        np.full((2, 5), 65535, np.uint16),
        np.array([[0, 65535, 0, 32768, 32767, 1]], np.uint16),  # difference category 16 (+-32768)
        np.array([[7]], np.uint16),
    ],
)
def test_edge_values(img):
    np.testing.assert_array_equal(libjpeg.decode(encode_lossless(img)), img)


def test_8bit_also_decodes_with_opencv():
    """A second, unrelated decoder (libjpeg-turbo inside OpenCV) reads the 8-bit stream too."""
    import cv2

    img = np.random.default_rng(0).integers(0, 256, (17, 23)).astype(np.uint8)
    data = encode_lossless(img)
    out = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if out is None:
        pytest.skip("this OpenCV build has no lossless-JPEG decoder")
    np.testing.assert_array_equal(out, img)


def test_rejects_bad_input():
    with pytest.raises(InvalidParameterError):
        encode_lossless(np.zeros((2, 2), np.float32))
    with pytest.raises(InvalidParameterError):
        encode_lossless(np.full((2, 2), 300, np.uint16), precision=8)
    with pytest.raises(InvalidParameterError):
        encode_lossless(np.zeros((0, 2), np.uint16))
    with pytest.raises(InvalidParameterError):
        encode_lossless(np.zeros((2, 2), np.uint16), predictor=8)
