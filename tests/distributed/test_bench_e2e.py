"""``nii bench e2e`` runs every mode end to end on a tiny workload and reports consistent numbers."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from nii.bench import e2e

ROOT = Path(__file__).resolve().parents[2]


def test_percentiles():
    p = e2e.percentiles([10.0, 20.0, 30.0, 40.0, 50.0])
    assert p["p50_ms"] == 30.0 and p["mean_ms"] == 30.0 and 40.0 < p["p95_ms"] <= p["p99_ms"] <= 50.0


@pytest.mark.slow
def test_bench_e2e_all_modes_small(tmp_path):
    p = argparse.ArgumentParser()
    e2e.add_arguments(p)
    args = p.parse_args(["--model", str(ROOT / "detectors" / "demo-tiny"), "--baggage", "2", "--containers", "1",
                         "--container", "256x512", "--plot", str(tmp_path / "e2e.png"), "--formats", "json"])
    res = e2e.run(args)
    assert set(res["results"]) == set(e2e.MODES)
    for mode, kinds in res["results"].items():
        assert set(kinds) == {"baggage", "container"}
        for kind, r in kinds.items():
            assert r["n"] == (2 if kind == "baggage" else 1)
            assert r["scans_per_s"] > 0 and 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"], (mode, kind)
            assert r["peak_rss_mb"] > 50
    assert len(res["results"]["dask-2"]["baggage"]["peak_rss_mb_per_worker"]) == 2
    assert res["scans"]["container"]["shape"][1:] == [256, 512]
    assert (tmp_path / "e2e.png").stat().st_size > 10_000
    rows = e2e.table_rows(res)
    assert len(rows) == 8
