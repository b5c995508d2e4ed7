"""``nii scan --dask``: same outputs as a local ``nii scan`` (JSON reports minus timings, HDF5 datasets)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")

from nii.cli import main
from nii.distributed import parse_address
from nii.errors import InvalidParameterError

ROOT = Path(__file__).resolve().parents[2]
TIMING_KEYS = {"processed_at", "timings_ms", "time", "duration_ms", "elapsed_ms"}


def test_parse_address():
    assert parse_address("local") == ("local", None)
    assert parse_address("local:3") == ("local", 3)
    assert parse_address("tcp://10.0.0.5:8786") == ("tcp://10.0.0.5:8786", None)
    for bad in ("local:0", "local:x", " "):
        with pytest.raises(InvalidParameterError):
            parse_address(bad)


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _h5_datasets(path: Path) -> dict[str, np.ndarray]:
    import h5py

    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for name in ("01_luggage_tusk.h5", "05_timber_bore.h5", "09_pallet_cargo.h5"):
        shutil.copy(ROOT / "sample_scans" / name, d / name)
    shutil.copy(ROOT / "sample_scans" / "01_luggage_tusk.h5", d / "zz_same_id.h5")  # same scan id: "-2" stem
    (d / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 32)
    return d


@pytest.mark.slow
def test_dask_local2_matches_local_scan(inputs, tmp_path, capsys):
    args = [str(inputs), "--model", str(ROOT / "detectors" / "demo-tiny"), "--formats", "json,h5,png", "--json"]
    rc_local = main(["scan", *args, "-o", str(tmp_path / "local")])
    local_lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    rc_dask = main(["scan", *args, "-o", str(tmp_path / "dask"), "--dask", "local:2"])
    dask_lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rc_local == rc_dask == 1  # the broken file fails in both

    # the same --json lines, in the same (input) order, apart from timings and output folders
    def norm(lines, out):
        res = []
        for d in lines:
            d = _strip(d)
            d["notes"] = [n.replace(str(tmp_path / out), "OUT") for n in d["notes"]]
            res.append(d)
        return res

    assert norm(local_lines, "local") == norm(dask_lines, "dask")
    assert [d["status"] for d in local_lines].count("error") == 1

    local_files = sorted(p.name for p in (tmp_path / "local").iterdir())
    dask_files = sorted(p.name for p in (tmp_path / "dask").iterdir())  # no staging folder left behind
    assert local_files == dask_files
    assert "01_luggage_tusk-2.json" in local_files
    for name in local_files:
        a, b = tmp_path / "local" / name, tmp_path / "dask" / name
        if name.endswith(".json"):
            assert _strip(json.loads(a.read_text())) == _strip(json.loads(b.read_text())), name
        elif name.endswith(".h5"):
            da, db = _h5_datasets(a), _h5_datasets(b)
            assert sorted(da) == sorted(db), name
            for k in da:
                x, y = np.asarray(da[k]), np.asarray(db[k])
                assert np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"), f"{name}:{k}"
