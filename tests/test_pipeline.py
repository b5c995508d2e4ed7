"""The Python API: nii.Pipeline (warm-up, sources, thread safety, process_many) and the README example."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import nii
from nii.errors import (
    CalibrationMismatchError,
    InvalidParameterError,
    UnsupportedFormatError,
)
from nii.pipeline import Pipeline, Result, result_record, warmup_scan
from tests.synth import make_raw

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_scans" / "01_luggage_tusk.h5"
SAMPLE2 = ROOT / "sample_scans" / "02_luggage_carvings.h5"
DEMO = ROOT / "detectors" / "demo-tiny"


@pytest.fixture(scope="module")
def pipe() -> Pipeline:
    return Pipeline(model=DEMO)


def _dets(res: Result) -> list[dict]:
    return [d.to_dict() for d in res.detections]


def test_public_name_and_warmup(pipe):
    assert nii.Pipeline is Pipeline
    assert pipe.warmup_ms is not None and pipe.warmup_ms > 0
    assert pipe.detector is not None and pipe.model_hash == pipe.detector.model_hash


def test_results_name_the_model_and_operating_point(pipe):
    """Every result says which network, hash and thresholds produced its detections (JSON, HDF5, DICOS TDR)."""
    res = pipe.process(SAMPLE)
    prov = res.scan.provenance
    assert prov.model_hash == pipe.model_hash and len(prov.model_hash) == 64
    step = prov.steps[-1]
    assert step.name == "detect"
    det = pipe.detector
    assert step.params["model"] == det.config.name and step.params["model_sha256"] == det.model_hash
    assert step.params["far"] == det.thresholds.default_far and step.params["backend"] == "onnxruntime"
    np.testing.assert_allclose(list(step.params["thresholds"].values()), det.thresholds.for_far(), atol=1e-6)
    assert Pipeline(model=DEMO, far="5%").process(SAMPLE).scan.provenance.steps[-1].params["far"] == 0.05
    assert Pipeline(model=False).process(SAMPLE).scan.provenance.model_hash is None


def test_warmup_scan_is_deterministic_and_normalisable():
    a, b = warmup_scan("dual_kvp_80_140"), warmup_scan("dual_kvp_80_140")
    assert np.array_equal(a.counts, b.counts)
    scan = nii.normalize(a)
    # the steel-like block attenuates more than the organic block, air is ~0
    att = np.asarray(scan.attenuation[-1])
    assert att[24, 30] > att[40, 60] > 0.1 > abs(att[2, 2])


def test_path_bytes_and_container_agree(pipe):
    by_path = pipe.process(SAMPLE)
    by_bytes = pipe.process(SAMPLE.read_bytes())
    by_raw = pipe.process(nii.read(SAMPLE))
    assert by_path.ok and by_path.source == str(SAMPLE)
    assert by_bytes.source is None and by_bytes.scan.source.path == "<bytes>"
    assert by_bytes.scan.source.sha256 == by_path.scan.source.sha256
    assert _dets(by_path) == _dets(by_bytes) == _dets(by_raw)
    assert by_path.alarm == bool(by_path.detections)
    assert {"read", "normalize", "detect", "total"} <= set(by_path.timings_ms)


def test_bad_sources_raise_nii_errors(pipe):
    with pytest.raises(UnsupportedFormatError, match="<bytes>"):
        pipe.process(b"not a scan at all")
    with pytest.raises(nii.InvalidDataError, match="empty"):
        pipe.process(b"")
    with pytest.raises(InvalidParameterError, match="source must be"):
        pipe.process(12)  # type: ignore[arg-type]


def test_process_many_order_and_errors(pipe, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    srcs = [SAMPLE, tmp_path / "missing.h5", bad, SAMPLE2]
    seq = list(pipe.process_many(srcs))
    par = list(pipe.process_many(srcs, workers=3))
    for results in (seq, par):
        assert [r.status for r in results] == ["ok", "error", "error", "ok"]
        assert "missing.h5" in results[1].error and "bad.h5" in results[2].error
    assert [_dets(r) for r in seq] == [_dets(r) for r in par]
    with pytest.raises(InvalidParameterError):
        list(pipe.process_many(srcs, workers=0))


def test_thread_safety_concurrent_process_matches_sequential(pipe):
    expected = {p: _dets(pipe.process(p)) for p in (SAMPLE, SAMPLE2)}
    got: list[tuple[Path, list[dict]]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(p):
        try:
            d = _dets(pipe.process(p))
            with lock:
                got.append((p, d))
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(p,)) for p in (SAMPLE, SAMPLE2) * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(got) == 6
    for p, d in got:
        assert d == expected[p]


def test_profile_assigned_and_mismatch_refused(rng):
    pipe = Pipeline(profile="dual_kvp_80_140", model=False)
    raw = make_raw(rng, profile=None, scan_id="noprof")
    res = pipe.process(raw)
    assert res.ok and res.scan.profile == "dual_kvp_80_140"
    other = make_raw(rng, profile="cargo_300", scan_id="cargo")
    with pytest.raises(CalibrationMismatchError, match="cargo_300"):
        pipe.process(other)
    with pytest.raises(nii.NiiError):
        Pipeline(profile="no_such_profile", model=False, warmup=False)


def test_far_operating_point_validated_and_applied():
    with pytest.raises(nii.NiiError):
        Pipeline(model=DEMO, far="250%", warmup=False)
    strict = Pipeline(model=DEMO, far="0.1%", warmup=False)
    loose = Pipeline(model=DEMO, far="20%", warmup=False)
    n_strict = sum(d.to_dict()["origin"] == "yolo" for d in strict.process(SAMPLE).detections)
    n_loose = sum(d.to_dict()["origin"] == "yolo" for d in loose.process(SAMPLE).detections)
    assert n_strict <= n_loose


def test_result_record_is_small_and_json_ready(pipe):
    rec = result_record(pipe.process(SAMPLE), {"json": "x/a.json"})
    assert rec["ok"] and rec["n_detections"] == len(rec["json"]["detections"])
    assert "provenance" not in rec["json"] and "wrote x/a.json" in rec["json"]["notes"]


def _integration_snippet() -> str:
    text = (ROOT / "docs" / "integration.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- integration-example: start -->\s*```python\n(.*?)```\s*<!-- integration-example: end -->", text, re.DOTALL)
    assert m, "docs/integration.md lost its marked Python example"
    return m.group(1)


@pytest.mark.slow
def test_readme_example_runs_as_is(tmp_path):
    """The integrator's snippet, run from a copy of the repository layout it refers to."""
    snippet = _integration_snippet()
    for rel in re.findall(r'"((?:sample_scans|detectors)/[^"]+)"', snippet):
        assert (ROOT / rel).exists(), rel
    script = tmp_path / "example.py"
    script.write_text(snippet, encoding="utf-8")
    # run with the repository root as working directory, as the README says, but write results to tmp
    env_code = f"import os, runpy; os.chdir({str(ROOT)!r}); import nii.outputs as o; " \
               f"orig=o.write_outputs; o.write_outputs=lambda r, d, **k: orig(r, os.path.join({str(tmp_path)!r}, d), **k); " \
               f"runpy.run_path({str(script)!r}, run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", env_code], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "01_luggage_tusk" in out and ("ALARM" in out or "clear" in out)
    assert "missing.h5" in out and "error" in out
    assert (tmp_path / "nii-results" / "01_luggage_tusk.json").is_file()


def test_readme_shows_the_tested_example():
    """README.md's Python example is the one tested above, character for character."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert _integration_snippet().strip() in readme
