"""Rendered PNG/JPEG: pseudo-colour inversion, greyscale, 16-bit PNG, header limits."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from nii.containers import RawScan, Scan
from nii.encoding import CLASS_ZEFF
from nii.errors import CorruptFileError, InvalidParameterError, SizeLimitError, UnsupportedFormatError
from nii.io import read, rendered
from nii.materials import DISPLAY_GAMMA, MaterialClass, render_pseudocolor

from .conftest import make_material_scan, make_raw


def _rendering(seed=0, h=48, w=64, block=8):
    rng = np.random.default_rng(seed)
    material = np.kron(rng.integers(0, 5, (h // block, w // block)), np.ones((block, block), int)).astype(np.uint8)
    l_high = np.kron(rng.uniform(0.0, 6.0, (h // block, w // block)), np.ones((block, block))).astype(np.float32)
    return l_high, material


def test_pseudocolor_png_exact_classes_and_quantisation_bound(tmp_path):
    l_high, material = _rendering(0)
    rgb = render_pseudocolor(l_high, material)
    path = tmp_path / "shot.png"
    cv2.imwrite(str(path), rgb[..., ::-1])
    s = read(path)
    assert isinstance(s, Scan) and s.rendered and s.source.format == "rendered"
    assert s.metadata["rendering"] == "pseudocolor" and s.metadata["pitch_assumed"]
    assert s.pixel_pitch_mm == rendered.DEFAULT_PITCH_MM
    np.testing.assert_array_equal(s.material, material)
    np.testing.assert_array_equal(s.color, rgb)
    np.testing.assert_array_equal(np.isnan(s.zeff), np.isnan(CLASS_ZEFF[material]))
    obj = np.isin(material, [MaterialClass.ORGANIC, MaterialClass.MIXED, MaterialClass.METAL])
    # 8-bit quantisation: each channel within 0.5 of hue*b, so b within |h|_1 * 0.5 / |h|^2 of the truth
    from nii.materials import CLASS_HUE_RGB

    hue = CLASS_HUE_RGB[material].astype(np.float64)
    db = 0.5 * hue.sum(-1) / np.maximum((hue**2).sum(-1), 1)
    b = np.exp(-DISPLAY_GAMMA * l_high.astype(np.float64))
    lo = -np.log(np.minimum(b + db, 1.0)) / DISPLAY_GAMMA
    hi = -np.log(np.maximum(b - db, 0.5 / 255)) / DISPLAY_GAMMA
    got = s.attenuation[0]
    assert np.all((got[obj] >= lo[obj] - 1e-4) & (got[obj] <= hi[obj] + 1e-4))
    assert np.all(got[material == MaterialClass.AIR] == 0)
    assert np.all(got[material == MaterialClass.IMPENETRABLE] == pytest.approx(-np.log(0.5 / 255) / DISPLAY_GAMMA))


@pytest.mark.parametrize("quality, min_agree", [(95, 0.95), (80, 0.93)])
def test_pseudocolor_jpeg_mostly_right(tmp_path, quality, min_agree):
    l_high, material = _rendering(1, h=96, w=128, block=16)
    rgb = render_pseudocolor(l_high, material)
    path = tmp_path / "shot.jpg"
    cv2.imwrite(str(path), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    s = read(path)
    assert s.metadata["lossy"] and s.metadata["container"] == "jpeg"
    visible = rgb.max(-1) >= 24  # colour of near-black pixels is not recoverable after JPEG
    assert (s.material == material)[visible].mean() >= min_agree
    obj = visible & np.isin(material, [1, 2, 3]) & (s.material == material)
    assert np.median(np.abs(s.attenuation[0] - l_high)[obj]) < 0.1


def test_greyscale_png(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (20, 30)).astype(np.uint8)
    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), grey)
    s = read(path)
    assert s.metadata["rendering"] == "greyscale" and s.energies[0].label == "single" and s.material is None
    expect = -np.log(np.maximum(grey, 0.5) / 255.0)
    np.testing.assert_allclose(s.attenuation[0], expect, rtol=1e-6, atol=1e-6)


def test_grey_saved_as_rgb_is_greyscale(tmp_path):
    grey = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (5, 1))
    cv2.imwrite(str(tmp_path / "g3.png"), np.stack([grey] * 3, -1))
    assert read(tmp_path / "g3.png").metadata["rendering"] == "greyscale"


def test_writer_round_trip(tmp_path):
    s = make_material_scan(0)
    back = read(rendered.write(s, tmp_path / "w.png"))
    np.testing.assert_array_equal(back.material, s.material)
    grey = read(rendered.write(s, tmp_path / "wg.png", kind="greyscale"))
    t = np.exp(-s.attenuation[0].astype(np.float64)) * 255
    assert np.all(np.abs(grey.attenuation[0] - s.attenuation[0]) <= 0.5 / np.maximum(t - 0.5, 0.5) + 1e-5)
    with pytest.raises(InvalidParameterError):
        rendered.write(s.replace(material=None), tmp_path / "x.png", kind="pseudocolor")
    with pytest.raises(InvalidParameterError):
        rendered.write(s, tmp_path / "x.png", container="gif")


def test_16bit_png_is_counts(tmp_path):
    r = make_raw(3, energies=1, refs=False)
    back = read(rendered.write(r, tmp_path / "c16.png"))
    assert isinstance(back, RawScan) and back.counts.dtype == np.uint16
    np.testing.assert_array_equal(back.counts, r.counts)
    assert back.dark is None and back.metadata["pitch_assumed"]
    cv2.imwrite(str(tmp_path / "c16rgb.png"), np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(UnsupportedFormatError, match="c16rgb.png.*16-bit colour"):
        read(tmp_path / "c16rgb.png")


def test_jpeg_under_png_name_is_read_as_jpeg(tmp_path):
    s = make_material_scan(2)
    jpg = rendered.write(s, tmp_path / "real.jpg")
    fake = tmp_path / "looks-like.png"
    fake.write_bytes(jpg.read_bytes())
    back = read(fake)
    assert back.metadata["container"] == "jpeg" and back.metadata["lossy"]


def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b"")


def test_png_size_limit_before_decoding(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_declaring(100_000, 100_000))
    with pytest.raises(SizeLimitError, match="huge.png"):
        read(path)


def test_jpeg_size_limit_before_decoding(tmp_path):
    data = bytearray(rendered.write(make_material_scan(0), tmp_path / "a.jpg").read_bytes())
    sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2))
    data[sof + 5 : sof + 9] = struct.pack(">HH", 65000, 65000)
    path = tmp_path / "huge.jpg"
    path.write_bytes(bytes(data))
    with pytest.raises(SizeLimitError, match="huge.jpg"):
        read(path)


@pytest.mark.parametrize("cut", [30, 200, -10])
def test_truncated_images(tmp_path, cut):
    for name in ("t.png", "t.jpg"):
        data = rendered.write(make_material_scan(0), tmp_path / name).read_bytes()
        bad = tmp_path / f"cut-{name}"
        bad.write_bytes(data[:cut])
        with pytest.raises(CorruptFileError, match=f"cut-{name}"):
            read(bad)


def test_decode_functions_validate():
    with pytest.raises(InvalidParameterError):
        rendered.decode_pseudocolor(np.zeros((2, 2), np.uint8))
    with pytest.raises(InvalidParameterError):
        rendered.decode_greyscale(np.zeros((2, 2, 3), np.uint8))
