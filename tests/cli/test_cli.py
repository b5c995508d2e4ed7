"""End-to-end tests of the ``nii`` command line (in-process through ``nii.cli.main``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nii.cli import main
from nii.io.hdf5 import write as write_h5

from tests.synth import make_raw


def _lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]


@pytest.fixture
def scan_folder(tmp_path, rng):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(2):
        write_h5(make_raw(rng, scan_id=f"good{i}"), d / f"good{i}.h5")
    (d / "corrupt.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)  # HDF5 signature, garbage after
    return d


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("info", "scan", "convert"):
        assert cmd in out


def test_info_json(tmp_path, rng, capsys):
    p = tmp_path / "a.h5"
    write_h5(make_raw(rng), p)
    assert main(["info", str(p), "--json"]) == 0
    (doc,) = _lines(capsys.readouterr().out)
    assert doc["format"] == "nii-hdf5"
    assert doc["shape"] == [2, 24, 40]
    assert [e["label"] for e in doc["energies"]] == ["low", "high"]


def test_info_missing_file_exit_1(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope.h5"), "--json"]) == 1
    (doc,) = _lines(capsys.readouterr().out)
    assert doc["status"] == "error" and "nope.h5" in (doc["source"] + doc["error"])


def test_convert_roundtrip_and_refuses_overwrite(tmp_path, rng, capsys):
    src = tmp_path / "a.h5"
    raw = make_raw(rng)
    write_h5(raw, src)
    dst = tmp_path / "b.h5"
    assert main(["convert", str(src), "-o", str(dst)]) == 0
    import nii

    back = nii.read(dst)
    np.testing.assert_array_equal(back.counts, raw.counts)
    before = dst.read_bytes()
    assert main(["convert", str(src), "-o", str(dst)]) == 1  # exists, no --force
    assert dst.read_bytes() == before
    assert "exists" in capsys.readouterr().err


@pytest.mark.slow
def test_scan_folder_with_corrupt_file(scan_folder, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["scan", str(scan_folder), "-o", str(out), "--json", "--no-detect"])
    docs = _lines(capsys.readouterr().out)
    assert rc == 1
    by_status = {d["source"]: d for d in docs}
    assert len(docs) == 3
    bad = by_status[str(scan_folder / "corrupt.h5")]
    assert bad["status"] == "error" and "corrupt.h5" in bad["error"]
    good = [d for d in docs if d["status"] == "ok"]
    assert len(good) == 2
    for d in good:
        assert d["detections"] == [] and d["error"] is None and d["scan_id"].startswith("good")
        for ext in ("json", "png", "h5"):
            assert (out / f"{d['scan_id']}.{ext}").is_file()
    # nothing half-written is left behind
    assert not list(out.glob("*.part")) and not list(out.glob(".*"))


@pytest.mark.slow
def test_scan_table_summary(scan_folder, tmp_path, capsys):
    (scan_folder / "corrupt.h5").unlink()
    rc = main(["scan", str(scan_folder), "-o", str(tmp_path / "o"), "--no-detect"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "2 scan(s) processed" in out


def test_scan_unknown_format_option(scan_folder, tmp_path, capsys):
    assert main(["scan", str(scan_folder), "-o", str(tmp_path / "o"), "--formats", "json,xml"]) == 1
    assert "xml" in capsys.readouterr().err


def test_scan_missing_input_exit_1(tmp_path, capsys):
    rc = main(["scan", str(tmp_path / "missing"), "-o", str(tmp_path / "o"), "--json", "--no-detect"])
    assert rc == 1
    (doc,) = _lines(capsys.readouterr().out)
    assert doc["status"] == "error" and "missing" in doc["error"]
