"""TIFF reader/writer: nii round trip, foreign files, 8-bit renderings, limits."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import tifffile

from nii.containers import RawScan, Scan
from nii.errors import CorruptFileError, InvalidDataError, InvalidParameterError, SizeLimitError, UnsupportedFormatError
from nii.io import read, tiff

from .conftest import make_material_scan, make_raw


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_round_trip(tmp_path, raw_scan, compression):
    path = tiff.write(raw_scan, tmp_path / "a.tif", compression=compression)
    back = read(path)
    assert isinstance(back, RawScan) and back.source.format == "tiff"
    np.testing.assert_array_equal(back.counts, raw_scan.counts)
    for name in ("dark", "air", "air_end"):
        np.testing.assert_array_equal(getattr(back, name), getattr(raw_scan, name))
        assert getattr(back, name).shape == getattr(raw_scan, name).shape
    assert back.energies == raw_scan.energies and back.pixel_pitch_mm == raw_scan.pixel_pitch_mm
    assert back.scan_id == raw_scan.scan_id and back.metadata["site"] == "test"
    # one page per energy plane, rows = detector channels
    with tifffile.TiffFile(path) as tf:
        np.testing.assert_array_equal(tf.pages[1].asarray(), raw_scan.counts[1])


def test_uint32_round_trip(tmp_path):
    r = make_raw(2, dtype=np.uint32, refs=False)
    back = read(tiff.write(r, tmp_path / "b.tiff"))
    assert back.counts.dtype == np.uint32
    np.testing.assert_array_equal(back.counts, r.counts)


def test_foreign_tiff_defaults(tmp_path):
    rng = np.random.default_rng(0)
    planes = rng.integers(0, 65535, (2, 10, 12)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "f.tif", planes)  # one multi-page image, tifffile's own metadata
    back = read(tmp_path / "f.tif")
    np.testing.assert_array_equal(back.counts, planes)
    assert [e.label for e in back.energies] == ["low", "high"]
    assert back.metadata["pitch_assumed"] and back.metadata["energies_assumed"]
    tifffile.imwrite(tmp_path / "one.tif", planes[0])
    assert read(tmp_path / "one.tif").energies[0].label == "single"


def test_foreign_pages_must_agree(tmp_path):
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as tw:
        tw.write(np.zeros((4, 5), np.uint16))
        tw.write(np.zeros((4, 6), np.uint16))
    with pytest.raises(InvalidDataError, match="mixed.tif"):
        read(tmp_path / "mixed.tif")


def test_float_tiff_refused(tmp_path):
    tifffile.imwrite(tmp_path / "f32.tif", np.zeros((4, 5), np.float32))
    with pytest.raises(UnsupportedFormatError, match="f32.tif.*float32"):
        read(tmp_path / "f32.tif")


def test_8bit_tiff_is_a_rendering(tmp_path):
    from nii.materials import render_pseudocolor

    s = make_material_scan(3)
    rgb = render_pseudocolor(s.attenuation[0], s.material)
    tifffile.imwrite(tmp_path / "shot.tif", rgb, photometric="rgb")
    back = read(tmp_path / "shot.tif")
    assert isinstance(back, Scan) and back.rendered
    np.testing.assert_array_equal(back.material, s.material)
    tifffile.imwrite(tmp_path / "grey.tif", np.full((4, 5), 255, np.uint8))
    grey = read(tmp_path / "grey.tif")
    assert grey.metadata["rendering"] == "greyscale"
    np.testing.assert_array_equal(grey.attenuation, 0)


def test_writer_takes_rawscan_only(tmp_path, scan):
    with pytest.raises(InvalidParameterError):
        tiff.write(scan, tmp_path / "x.tif")
    assert not (tmp_path / "x.tif").exists()


def test_bad_description_roles(tmp_path, raw_scan):
    path = tiff.write(raw_scan, tmp_path / "d.tif")
    with tifffile.TiffFile(path) as tf:
        desc = json.loads(tf.pages[0].description)
    desc["pages"] = desc["pages"][:-1]
    data = path.read_bytes()
    old = json.dumps(json.loads(data[data.index(b'{"format"') :].split(b"\x00")[0]))
    new = json.dumps(desc).ljust(len(old))
    assert len(new) == len(old)
    path.write_bytes(data.replace(old.encode(), new.encode()))
    with pytest.raises(CorruptFileError, match="d.tif.*pages"):
        read(path)


def _tiny_tiff_declaring(width: int, height: int) -> bytes:
    """A 2-byte-strip little-endian TIFF whose IFD declares ``width x height`` uint16 pixels."""
    entries = [
        (256, 4, 1, width),  # ImageWidth LONG
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 16),  # BitsPerSample
        (259, 3, 1, 1),  # Compression none
        (262, 3, 1, 1),  # BlackIsZero
        (273, 4, 1, 8),  # StripOffsets
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, 2),  # StripByteCounts
    ]
    ifd_off = 10
    out = b"II*\x00" + struct.pack("<I", ifd_off) + b"\x00\x00"
    out += struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        packed = struct.pack("<HI", value, 0)[:4] if typ == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, count) + packed
    return out + struct.pack("<I", 0)


def test_size_limit_before_decoding(tmp_path):
    path = tmp_path / "huge.tif"
    path.write_bytes(_tiny_tiff_declaring(200_000, 100_000))
    with pytest.raises(SizeLimitError, match="huge.tif"):
        read(path)
    small = tmp_path / "small.tif"
    small.write_bytes(_tiny_tiff_declaring(1, 1))
    assert read(small).shape == (1, 1, 1)  # the hand-made header itself is valid


def test_failed_write_leaves_nothing(tmp_path, raw_scan, monkeypatch):
    """A crash after the first page: no file under the final name, no temporary left over."""
    original = tifffile.TiffWriter.write
    calls = []

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return original(self, *args, **kwargs)

    target = tmp_path / "out.tif"
    target.write_bytes(b"previous version")
    monkeypatch.setattr(tifffile.TiffWriter, "write", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        tiff.write(raw_scan, target)
    assert target.read_bytes() == b"previous version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]
