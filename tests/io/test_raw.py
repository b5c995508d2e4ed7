"""Raw binary + nii-raw/1 sidecar: round trips, hypothesis properties, sidecar errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nii.containers import EnergyChannel, RawScan, Scan
from nii.errors import (
    FileAccessError,
    InvalidDataError,
    InvalidParameterError,
    SidecarError,
    SizeLimitError,
    UnsupportedFormatError,
)
from nii.io import raw, read

from .conftest import make_raw


def _equal_raw(a: RawScan, b: RawScan) -> None:
    np.testing.assert_array_equal(a.counts, b.counts)
    assert a.counts.dtype == b.counts.dtype
    for name in ("dark", "air", "air_end"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.shape == y.shape, name
            np.testing.assert_array_equal(x, y)
    assert a.energies == b.energies and a.pixel_pitch_mm == b.pixel_pitch_mm


@pytest.mark.parametrize("references", ["inline", "files"])
@pytest.mark.parametrize("interleave", ["planar", "line", "pixel"])
def test_round_trip_data_or_sidecar_path(tmp_path, raw_scan, interleave, references):
    data, side = raw.write(raw_scan, tmp_path / "bag.raw", interleave=interleave, references=references)
    for path in (data, side):
        back = read(path)
        assert back.source.format == "raw"
        assert back.source.path == str(data)  # the data file, even when the sidecar was given
        assert back.metadata["raw_sidecar"] == str(side)
        _equal_raw(raw_scan, back)
        assert back.scan_id == raw_scan.scan_id and back.profile == raw_scan.profile
        assert back.metadata["site"] == "test"


def test_sidecar_found_by_stem_convention(tmp_path, raw_scan):
    data, side = raw.write(raw_scan, tmp_path / "bag.raw", sidecar=tmp_path / "bag.json")
    obj = json.loads(side.read_text())
    del obj["data"]  # rely on the name convention both ways
    side.write_text(json.dumps(obj))
    _equal_raw(raw_scan, read(data))
    _equal_raw(raw_scan, read(side))


def test_attenuation_float_raw_is_a_scan(tmp_path, scan):
    data, _ = raw.write(scan, tmp_path / "att.bin", dtype="float64", byte_order="big")
    back = read(data)
    assert isinstance(back, Scan) and back.attenuation.dtype == np.float32
    np.testing.assert_array_equal(back.attenuation, scan.attenuation)


def test_nan_in_float_data(tmp_path):
    att = np.zeros((1, 3, 4), np.float32)
    s = Scan(att, ("single",), (1, 1))
    data, _ = raw.write(s, tmp_path / "nan.bin")
    arr = np.fromfile(data, np.float32)
    arr[5] = np.nan
    arr.tofile(data)
    with pytest.raises(InvalidDataError, match="nan.bin.*NaN"):
        read(data)


# ---------------------------------------------------------------------------- hypothesis

_dtypes = st.sampled_from(["uint16", "uint32"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    e=st.integers(1, 3),
    h=st.integers(1, 7),
    w=st.integers(1, 9),
    dtype=_dtypes,
    byte_order=st.sampled_from(["little", "big"]),
    interleave=st.sampled_from(["planar", "line", "pixel"]),
    axis_order=st.sampled_from(["lines", "rows"]),
    header_len=st.integers(0, 17),
    n_dark=st.integers(0, 3),
    n_air=st.integers(0, 3),
    n_air_end=st.integers(0, 2),
    references=st.sampled_from(["inline", "files"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_round_trip(
    tmp_path_factory, e, h, w, dtype, byte_order, interleave, axis_order, header_len, n_dark, n_air, n_air_end, references, seed
):
    rng = np.random.default_rng(seed)
    header = bytes(range(header_len))  # opaque header (starts with 0: never another format's magic)
    top = np.iinfo(dtype).max
    counts = rng.integers(0, top, (e, h, w), dtype=np.uint64, endpoint=True).astype(dtype)
    dark = rng.integers(0, 100, (e, h, n_dark)).astype(dtype) if n_dark else None
    air = rng.integers(1000, top, (e, h, n_air), endpoint=True).astype(dtype) if n_air else None
    air_end = rng.integers(1000, top, (e, h, n_air_end), endpoint=True).astype(dtype) if n_air_end else None
    scan = RawScan(
        counts, tuple(EnergyChannel(f"e{i}", 60 + i) for i in range(e)), (0.5, 2.0), dark=dark, air=air, air_end=air_end
    )
    folder = tmp_path_factory.mktemp("prop")
    data, side = raw.write(
        scan,
        folder / "x.dat",
        byte_order=byte_order,
        interleave=interleave,
        axis_order=axis_order,
        header=header,
        references=references,
    )
    itemsize = np.dtype(dtype).itemsize
    inline = (n_dark + n_air + n_air_end) if references == "inline" else 0
    assert data.stat().st_size == len(header) + e * h * (w + inline) * itemsize
    back = read(data, format="raw")
    _equal_raw(scan, back)
    # the stored bytes are in the declared byte order: every layout starts with sample (0, 0, 0) and
    # ends with (E-1, H-1, W-1) when no reference lines are inline (the order itself: next test)
    stored = np.frombuffer(
        data.read_bytes()[len(header) :], dtype=np.dtype(dtype).newbyteorder("<" if byte_order == "little" else ">")
    )
    if inline == 0:
        assert stored[0] == counts[0, 0, 0] and stored[-1] == counts[-1, -1, -1]


def test_interleave_layouts_by_hand(tmp_path):
    """A 2-energy, 2-channel, 3-line stream read under each interleave gives the documented order."""
    e, h, w = 2, 2, 3
    vals = np.arange(e * h * w, dtype="<u2")
    data = tmp_path / "hand.raw"
    vals.tofile(data)
    expect = {
        # stream index -> (energy, channel, line)
        "planar": vals.reshape(e, w, h).transpose(0, 2, 1),
        "line": vals.reshape(w, e, h).transpose(1, 2, 0),
        "pixel": vals.reshape(w, h, e).transpose(2, 1, 0),
    }
    for il, arr in expect.items():
        side = {
            "format": "nii-raw/1",
            "data": "hand.raw",
            "width": w,
            "height": h,
            "energies": ["low", "high"],
            "dtype": "uint16",
            "byte_order": "little",
            "interleave": il,
            "pixel_pitch_mm": [1, 1],
        }
        (tmp_path / "hand.raw.json").write_text(json.dumps(side))
        np.testing.assert_array_equal(read(data).counts, arr)
    # pixel interleave, line-major: the first two values are channel 0 of line 0, low then high
    assert expect["pixel"][0, 0, 0] == 0 and expect["pixel"][1, 0, 0] == 1


# ---------------------------------------------------------------------------- errors


def _sidecar(tmp_path, **changes):
    scan = make_raw(4, refs=False)
    data, side = raw.write(scan, tmp_path / "s.raw")
    obj = json.loads(side.read_text())
    obj.update(changes)
    side.write_text(json.dumps(obj))
    return data, side


def test_size_mismatch_names_file_and_both_sizes(tmp_path):
    data, side = _sidecar(tmp_path, width=41)
    actual = data.stat().st_size
    with pytest.raises(SidecarError) as info:
        read(data)
    msg = str(info.value)
    assert "s.raw" in msg and str(actual) in msg and str(actual + 2 * 24 * 2) in msg


def test_truncated_data(tmp_path):
    data, side = _sidecar(tmp_path)
    data.write_bytes(data.read_bytes()[:-3])
    with pytest.raises(SidecarError, match="s.raw.*truncated"):
        read(side)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"width": 0}, "width"),
        ({"height": "24"}, "height"),
        ({"dtype": "int8"}, "dtype"),
        ({"dtype": "float32"}, "dtype"),
        ({"byte_order": "middle"}, "byte_order"),
        ({"interleave": "zigzag"}, "interleave"),
        ({"energies": []}, "energies"),
        ({"energies": [{"kvp": 3}]}, "energies"),
        ({"pixel_pitch_mm": [0, 1]}, "pixel_pitch_mm"),
        ({"pixel_pitch_mm": None}, "pixel_pitch_mm"),
        ({"dark": {"lines": 0}}, "dark.lines"),
        ({"air": {"lines": 2, "file": "nope.raw"}}, "air"),
        ({"header_bytes": -1}, "header_bytes"),
        ({"metadata": [1]}, "metadata"),
        ({"data": "missing.raw"}, "missing.raw"),
        ({"energies": [{"label": "single"}]}, "declares"),
    ],
)
def test_bad_sidecar_values(tmp_path, changes, match):
    data, side = _sidecar(tmp_path, **changes)
    with pytest.raises(SidecarError, match=match) as info:
        read(side)
    assert "s.raw" in str(info.value)


def test_foreign_json_is_not_claimed(tmp_path):
    data, side = _sidecar(tmp_path, format="other/1")
    with pytest.raises(UnsupportedFormatError, match="s.raw.json"):
        read(side)
    with pytest.raises(SidecarError, match="s.raw"):
        read(data, format="raw")


def test_malformed_json(tmp_path):
    data, side = _sidecar(tmp_path)
    side.write_text('{"format": "nii-raw/1", "width": ')
    with pytest.raises(SidecarError, match="s.raw.json.*JSON"):
        read(side)


def test_data_without_sidecar(tmp_path):
    path = tmp_path / "lonely.raw"
    path.write_bytes(b"\x01\x02" * 100)
    with pytest.raises(SidecarError, match="lonely.raw"):
        raw.read(path, max_pixels=10**6)


def test_size_limit_before_allocation(tmp_path):
    data, side = _sidecar(tmp_path, width=1_000_000, height=1_000_000)
    with pytest.raises(SizeLimitError, match="s.raw"):
        read(side)


@pytest.mark.parametrize("what", ["zero_air", "air_below_dark"])
def test_bad_references(tmp_path, what):
    r = make_raw(5)
    air = np.zeros_like(r.air) if what == "zero_air" else np.full_like(r.air, 10)
    data, _ = raw.write(r.replace(air=air), tmp_path / "ref.raw")
    with pytest.raises(InvalidDataError, match="ref.raw.*air"):
        read(data)


def test_writer_validates(tmp_path, raw_scan):
    with pytest.raises(InvalidParameterError):
        raw.write(raw_scan, tmp_path / "x.raw", interleave="diagonal")
    with pytest.raises(InvalidParameterError):
        raw.write(raw_scan, tmp_path / "x.raw", dtype="float32")
    with pytest.raises(InvalidParameterError):
        raw.write(make_raw(1, dtype=np.uint32), tmp_path / "x.raw", dtype="uint16")
    assert not list(tmp_path.iterdir())


def test_separate_reference_file_size_mismatch(tmp_path, raw_scan):
    data, side = raw.write(raw_scan, tmp_path / "r.raw", references="files")
    ref = tmp_path / "r.dark.raw"
    ref.write_bytes(ref.read_bytes() + b"xx")
    with pytest.raises(SidecarError, match="r.dark.raw.*declares"):
        read(data)
    shutil.copy(data, tmp_path / "copy.raw")
    with pytest.raises(FileAccessError):
        read(tmp_path / "absent.raw")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    e=st.integers(1, 3),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    dtype=st.sampled_from(["float32", "float64"]),
    byte_order=st.sampled_from(["little", "big"]),
    interleave=st.sampled_from(["planar", "line", "pixel"]),
    axis_order=st.sampled_from(["lines", "rows"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_attenuation_round_trip(tmp_path_factory, e, h, w, dtype, byte_order, interleave, axis_order, seed):
    att = np.random.default_rng(seed).uniform(-0.1, 12.0, (e, h, w)).astype(np.float32)
    scan = Scan(att, tuple(f"e{i}" for i in range(e)), (1.0, 1.0))
    data, _ = raw.write(
        scan,
        tmp_path_factory.mktemp("att") / "a.bin",
        dtype=dtype,
        byte_order=byte_order,
        interleave=interleave,
        axis_order=axis_order,
    )
    back = read(data, format="raw")
    assert isinstance(back, Scan)
    np.testing.assert_array_equal(back.attenuation, att)


def test_data_starting_like_a_jpeg_is_raw_when_the_sidecar_names_it(tmp_path):
    """Counts 55551 (bytes FF D8) then 0x..FF look like a JPEG signature: the sidecar wins."""
    counts = np.full((1, 4, 6), 1000, np.uint16)
    counts[0, 0, 0] = 0xD8FF
    counts[0, 1, 0] = 0x01FF
    scan = RawScan(counts, ("single",), (1.0, 1.0))
    data, side = raw.write(scan, tmp_path / "ff.raw")
    assert data.read_bytes()[:3] == b"\xff\xd8\xff"
    assert raw.sniff(data.read_bytes()[:64], data)
    # by the naming convention alone (no "data" entry) such a file is not claimed
    obj = json.loads(side.read_text())
    del obj["data"]
    side.write_text(json.dumps(obj))
    assert not raw.sniff(data.read_bytes()[:64], data)
    np.testing.assert_array_equal(read(side).counts, counts)
