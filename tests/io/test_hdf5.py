"""nii HDF5 (schema nii-scan/1): round trips, schema checks, limits."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from nii.containers import RawScan, Scan
from nii.errors import CorruptFileError, InvalidParameterError, SizeLimitError
from nii.io import hdf5, read, read_hdf5, write_hdf5

from .conftest import make_raw


def _same_raw(a: RawScan, b: RawScan) -> None:
    assert a.shape == b.shape and a.counts.dtype == b.counts.dtype
    np.testing.assert_array_equal(a.counts, b.counts)
    for name in ("dark", "air", "air_end", "dead_mask"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype, name
            np.testing.assert_array_equal(x, y)
    assert a.energies == b.energies
    assert a.pixel_pitch_mm == b.pixel_pitch_mm
    assert (a.profile, a.scan_id, a.acquired_at) == (b.profile, b.scan_id, b.acquired_at)


@pytest.mark.parametrize("compression", ["gzip", "lzf", None])
def test_raw_round_trip(tmp_path, raw_scan, compression):
    path = write_hdf5(raw_scan, tmp_path / "a.h5", compression=compression)
    back = read(path)
    assert isinstance(back, RawScan)
    _same_raw(raw_scan, back)
    assert dict(back.metadata) == dict(raw_scan.metadata)
    assert back.source.format == "nii-hdf5" and len(back.source.sha256) == 64


def test_uint32_single_energy_round_trip(tmp_path):
    r = make_raw(3, energies=1, dtype=np.uint32, refs=False)
    back = read(write_hdf5(r, tmp_path / "b.h5"))
    _same_raw(r, back)


def test_scan_round_trip_with_maps_truth_provenance(tmp_path, scan):
    back = read(write_hdf5(scan, tmp_path / "s.h5"))
    assert isinstance(back, Scan)
    np.testing.assert_array_equal(back.attenuation, scan.attenuation)
    for name in ("valid", "material", "color"):
        np.testing.assert_array_equal(getattr(back, name), getattr(scan, name))
    np.testing.assert_array_equal(np.isnan(back.zeff), np.isnan(scan.zeff))
    np.testing.assert_array_equal(np.nan_to_num(back.zeff), np.nan_to_num(scan.zeff))
    assert back.truth.classes == ("ivory",)
    np.testing.assert_array_equal(back.truth.boxes, scan.truth.boxes)
    assert back.provenance.calibration_hash == "abc"
    assert [s.name for s in back.provenance.steps] == ["normalize"]
    assert back.energies == scan.energies


def test_scan_with_raw_prefer(tmp_path, scan):
    raw = make_raw(0)
    path = write_hdf5(scan, tmp_path / "both.h5", raw=raw)
    assert isinstance(read_hdf5(path), RawScan)
    assert isinstance(read_hdf5(path, prefer="scan"), Scan)
    with pytest.raises(InvalidParameterError):
        read_hdf5(path, prefer="other")


def test_not_a_nii_file(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(CorruptFileError, match="foreign.h5.*schema"):
        read(path)


def test_missing_groups_and_bad_shapes(tmp_path):
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = hdf5.SCHEMA
    with pytest.raises(CorruptFileError, match="empty.h5"):
        read(path)
    path = tmp_path / "flat.h5"
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = hdf5.SCHEMA
        f.attrs["pixel_pitch_mm"] = [1.0, 1.0]
        f.attrs["energies"] = ["single"]
        f.create_dataset("raw/counts", data=np.zeros((4, 4), np.uint16))
    with pytest.raises(CorruptFileError, match=r"flat.h5.*\(E, H, W\)"):
        read(path)


def test_energy_count_mismatch(tmp_path, raw_scan):
    path = write_hdf5(raw_scan, tmp_path / "e.h5")
    with h5py.File(path, "a") as f:
        f.attrs["energies"] = np.array(["single"], dtype=object)
    with pytest.raises(CorruptFileError, match="e.h5"):
        read(path)


def test_size_limit_checked_before_reading(tmp_path):
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = hdf5.SCHEMA
        f.attrs["pixel_pitch_mm"] = [1.0, 1.0]
        f.attrs["energies"] = ["single"]
        # declared 1 x 100000 x 100000 uint16 (20 GB), chunked and never written: a tiny file
        f.create_dataset("raw/counts", shape=(1, 100_000, 100_000), dtype=np.uint16, chunks=(1, 64, 64))
    assert path.stat().st_size < 1_000_000
    with pytest.raises(SizeLimitError, match="huge.h5"):
        read(path)


def test_size_limit_applies_to_references(tmp_path):
    path = tmp_path / "bigref.h5"
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = hdf5.SCHEMA
        f.attrs["pixel_pitch_mm"] = [1.0, 1.0]
        f.attrs["energies"] = ["single"]
        f.create_dataset("raw/counts", data=np.ones((1, 4, 4), np.uint16))
        f.create_dataset("raw/dark", shape=(1, 4, 50_000_000), dtype=np.uint16, chunks=(1, 4, 4096))
    with pytest.raises(SizeLimitError, match="bigref.h5.*/raw/dark"):
        read(path, max_pixels=1_000_000)


def test_nan_attenuation_and_bad_air(tmp_path, scan):
    from nii.errors import InvalidDataError

    path = write_hdf5(scan, tmp_path / "nan.h5")
    with h5py.File(path, "a") as f:
        att = f["calibrated/attenuation"][()]
        att[1, 2, 3] = np.inf
        del f["calibrated/attenuation"]
        f["calibrated/attenuation"] = att
    with pytest.raises(InvalidDataError, match="nan.h5.*NaN/Inf"):
        read(path)
    r = make_raw(0)
    path = write_hdf5(r.replace(air=np.zeros_like(r.air)), tmp_path / "air0.h5")
    with pytest.raises(InvalidDataError, match="air0.h5.*zero"):
        read(path)
