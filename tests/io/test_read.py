"""``nii.read``: sniffing by content, bad paths, corruption of every format, ``nii info``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zlib

import numpy as np
import pytest

from nii.containers import RawScan, Scan
from nii.errors import CorruptFileError, FileAccessError, InvalidParameterError, NiiError, SizeLimitError, UnsupportedFormatError
from nii.io import formats, read, sniff

from .conftest import EXPECTED_FORMAT


def _copy(src, dst):
    """Copy a sample (and a raw file's sidecar, renamed to follow it)."""
    shutil.copyfile(src, dst)
    side = src.with_name(src.name + ".json")
    if side.exists():
        obj = json.loads(side.read_text())
        obj.pop("data", None)
        dst.with_name(dst.name + ".json").write_text(json.dumps(obj))
        for name in ("dark", "air", "air_end"):
            spec = obj.get(name) or {}
            if "file" in spec:
                shutil.copyfile(src.parent / spec["file"], dst.parent / spec["file"])


def test_every_sample_reads(samples):
    assert set(samples) == set(EXPECTED_FORMAT)
    for key, path in samples.items():
        scan = read(path)
        assert isinstance(scan, (RawScan, Scan))
        assert scan.source.format == EXPECTED_FORMAT[key] == sniff(path), key
        assert scan.source.path == str(path)


@pytest.mark.parametrize("key", sorted(EXPECTED_FORMAT))
def test_wrong_extension_is_read_by_content(tmp_path, samples, key):
    wrong = tmp_path / "misnamed.txt"
    _copy(samples[key], wrong)
    assert read(wrong).source.format == EXPECTED_FORMAT[key]
    noext = tmp_path / "noext"
    _copy(samples[key], noext)
    assert read(noext).source.format == EXPECTED_FORMAT[key]


def test_jpeg_named_png(tmp_path, samples):
    fake = tmp_path / "screenshot.png"
    fake.write_bytes(samples["jpeg-pseudocolor"].read_bytes())
    scan = read(fake)
    assert scan.metadata["container"] == "jpeg"


def test_forced_format(samples):
    assert read(samples["tiff"], format="tiff").source.format == "tiff"
    with pytest.raises(InvalidParameterError):
        read(samples["tiff"], format="bmp")
    with pytest.raises(NiiError, match="scan.tif"):
        read(samples["tiff"], format="dicos")


def test_unknown_bytes(tmp_path):
    path = tmp_path / "mystery.bin"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000).astype(np.uint8).tobytes())
    with pytest.raises(UnsupportedFormatError, match="mystery.bin"):
        read(path)
    text = tmp_path / "notes.json"
    text.write_text('{"hello": 1}')
    with pytest.raises(UnsupportedFormatError, match="notes.json"):
        read(text)


def test_missing_directory_empty(tmp_path):
    with pytest.raises(FileAccessError, match="absent.h5"):
        read(tmp_path / "absent.h5")
    with pytest.raises(FileAccessError, match="not a regular file"):
        read(tmp_path)
    (tmp_path / "empty.dcs").write_bytes(b"")
    with pytest.raises(CorruptFileError, match="empty.dcs"):
        read(tmp_path / "empty.dcs")
    with pytest.raises(InvalidParameterError):
        read(tmp_path / "empty.dcs", max_pixels=0)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_unreadable_file(tmp_path, samples):
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tmp_path / "locked.tif"
    shutil.copyfile(samples["tiff"], path)
    path.chmod(0)
    with pytest.raises(FileAccessError, match="locked.tif"):
        read(path)


@pytest.mark.parametrize("key", sorted(EXPECTED_FORMAT))
def test_size_limit_every_format(samples, key):
    with pytest.raises(SizeLimitError, match=samples[key].name):
        read(samples[key], max_pixels=10)


@pytest.mark.parametrize("key", sorted(EXPECTED_FORMAT))
def test_truncation_every_format(tmp_path, samples, key):
    data = samples[key].read_bytes()
    for frac in (0.002, 0.05, 0.3, 0.7, 0.99):
        cut = max(1, int(len(data) * frac))
        path = tmp_path / f"cut{frac}-{samples[key].name}"
        _copy(samples[key], path)
        path.write_bytes(data[:cut])
        with pytest.raises(NiiError) as info:
            read(path)
        assert path.name in str(info.value), (key, frac)


@pytest.mark.parametrize("key", sorted(EXPECTED_FORMAT))
def test_flipped_bytes_every_format(tmp_path, samples, key):
    """Random byte damage: the file either still reads or fails with a NiiError naming it."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    data = np.frombuffer(samples[key].read_bytes(), np.uint8)
    outcomes = {"read": 0, "error": 0}
    for i in range(12):
        bad = data.copy()
        # damage the first 1 KiB (headers) half of the time, anywhere otherwise
        span = min(len(bad), 1024) if i % 2 == 0 else len(bad)
        idx = rng.integers(0, span, 6)
        bad[idx] ^= rng.integers(1, 256, 6).astype(np.uint8)
        path = tmp_path / f"flip{i}-{samples[key].name}"
        _copy(samples[key], path)
        path.write_bytes(bad.tobytes())
        try:
            read(path)
            outcomes["read"] += 1
        except NiiError as exc:
            assert path.name in str(exc), (key, i, str(exc))
            outcomes["error"] += 1
    assert sum(outcomes.values()) == 12


def test_nan_in_hdf5_reference(tmp_path):
    from nii.errors import InvalidDataError
    from nii.io import write_hdf5

    from .conftest import make_raw

    r = make_raw(0)
    path = write_hdf5(r, tmp_path / "n.h5")
    import h5py

    with h5py.File(path, "a") as f:
        air = f["raw/air"][()]
        air[0, 0] = np.nan
        del f["raw/air"]
        f["raw/air"] = air
    with pytest.raises(InvalidDataError, match="n.h5.*NaN"):
        read(path)


def test_formats_listed():
    assert formats() == ["nii-hdf5", "dicos", "raw", "tiff", "rendered"]


def test_nii_info_on_every_format(samples):
    pytest.importorskip("nii.cli._common")
    files = [str(p) for p in samples.values()]
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from nii.cli import main; sys.exit(main(sys.argv[1:]))", "info", "--json", *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    by_source = {r["source"]: r for r in rows}
    for key, path in samples.items():
        row = by_source[str(path)]
        assert row["status"] == "ok" and row["format"] == EXPECTED_FORMAT[key], row


def test_permission_error_is_a_file_access_error(samples, monkeypatch):
    """Simulated (root can read anything): an OSError on open becomes FileAccessError."""
    import nii.io as nio

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(nio, "open", deny, raising=False)
    with pytest.raises(FileAccessError, match="scan.tif.*Permission denied"):
        read(samples["tiff"])
