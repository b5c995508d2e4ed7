"""Per-scan outputs: JSON report (schema), annotated PNG, results HDF5, DICOS DX + TDR."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nii.errors import InvalidDataError, InvalidParameterError
from nii.outputs import ANOMALY_RGB, FORMATS, annotated_image, build_report, class_color, read_detections, write_outputs
from nii.schemas import SCAN_REPORT, load_schema, validate_report
from tests.outputs.fakes import clear_result, tusk_result


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    res = tusk_result()
    return res, out, write_outputs(res, out, stem="tusk-0001")


def test_all_formats_written_and_listed(written):
    res, out, w = written
    assert set(FORMATS) == {"json", "png", "h5", "tdr"}
    assert set(w) == {"json", "png", "h5", "dx", "tdr"}
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["tusk-0001.json", "tusk-0001.png", "tusk-0001.h5", "tusk-0001.dx.dcm", "tusk-0001.tdr.dcm"]
    )  # no temporary files left behind
    doc = json.loads(Path(w["json"]).read_text())
    assert doc["outputs"] == {"h5": "tusk-0001.h5", "png": "tusk-0001.png", "dx": "tusk-0001.dx.dcm", "tdr": "tusk-0001.tdr.dcm"}


def test_report_content_and_schema(written):
    res, out, w = written
    doc = json.loads(Path(w["json"]).read_text())
    validate_report(doc)
    assert doc["schema"] == SCAN_REPORT
    assert doc["alarm"] is True
    assert doc["alarm_summary"] == {"n_detections": 2, "n_yolo": 1, "n_material_anomaly": 1, "classes": ["ivory", "bone_like"], "max_confidence": 0.87}
    assert doc["source"]["sha256"] == "a" * 64
    assert doc["scanner"]["profile"] == "test-dual" and doc["scanner"]["shape"] == [2, 160, 400]
    assert doc["provenance"]["calibration_hash"] == "c" * 64 and doc["provenance"]["model_hash"] == "m" * 64
    for k in ("read", "normalize", "detect", "total", "write_h5", "write_png", "write_tdr"):
        assert doc["timings_ms"][k] >= 0
    d0, d1 = doc["detections"]
    assert d0["class"] == "ivory" and d0["origin"] == "yolo" and d0["index"] == 0
    assert d0["box_px"] == [98.0, 39.2, 302.0, 111.2]
    assert d0["evidence"]["zeff_median"] == pytest.approx(13.4)
    assert d1["origin"] == "material_anomaly"


def test_schema_rejects_bad_reports(written):
    doc = json.loads(Path(written[2]["json"]).read_text())
    for mutate in (
        lambda d: d.pop("source"),
        lambda d: d["detections"][0].update(origin="guess"),
        lambda d: d["detections"][0].update(confidence=1.5),
        lambda d: d["outputs"].update(png="../../etc/passwd"),
        lambda d: d.update(schema="nii-scan-report/0"),
    ):
        bad = json.loads(json.dumps(doc))
        mutate(bad)
        with pytest.raises(InvalidDataError):
            validate_report(bad)


def test_schema_is_package_data():
    s = load_schema()
    assert s["properties"]["schema"]["const"] == SCAN_REPORT
    with pytest.raises(InvalidParameterError):
        load_schema("nii-scan-report/99")


def test_clear_scan_report_validates(tmp_path):
    w = write_outputs(clear_result(), tmp_path, formats=("json",))
    assert set(w) == {"json"} and [p.name for p in tmp_path.iterdir()] == ["clear-0002.json"]
    doc = json.loads(Path(w["json"]).read_text())
    validate_report(doc)
    assert doc["alarm"] is False and doc["detections"] == [] and doc["outputs"] == {}


def test_results_hdf5_has_maps_and_detections(written):
    from nii.io import hdf5

    res, out, w = written
    scan = hdf5.read(Path(w["h5"]), max_pixels=10**8, prefer="scan")
    np.testing.assert_array_equal(scan.attenuation, res.scan.attenuation)
    np.testing.assert_array_equal(scan.color, res.scan.color)
    dets = read_detections(w["h5"])
    assert [d["class"] for d in dets] == ["ivory", "bone_like"]
    import h5py

    with h5py.File(w["h5"], "r") as f:
        g = f["detections"]
        assert g.attrs["schema"] == "nii-detections/1"
        np.testing.assert_allclose(g["boxes_px"][0], [98.0, 39.2, 302.0, 111.2], rtol=1e-6)
        assert list(g["origin"].asstr()[()]) == ["yolo", "material_anomaly"]


def test_tdr_reads_back_with_pydicom(written):
    import pydicom

    from nii.tdr import TDR_SOP_CLASS, read_tdr

    res, out, w = written
    ds = pydicom.dcmread(w["tdr"])
    dx = pydicom.dcmread(w["dx"], stop_before_pixels=True)
    assert ds.SOPClassUID == TDR_SOP_CLASS == "1.2.840.10008.5.1.4.1.1.501.3"
    assert ds.file_meta.MediaStorageSOPClassUID == TDR_SOP_CLASS
    assert dx.SOPClassUID == "1.2.840.10008.5.1.4.1.1.501.2.1"
    assert ds.StudyInstanceUID == dx.StudyInstanceUID
    assert ds.AlarmDecision == "ALARM" and ds.TDRType == "MACHINE"
    assert ds.NumberOfTotalObjects == 2
    assert list(ds.ThreatDetectionAlgorithmAndVersion)[:2] == ["nii", res.scan.provenance.nii_version]
    assert ds.TotalProcessingTime == pytest.approx(133.0)
    rep = read_tdr(w["tdr"])
    assert [t.category for t in rep.threats] == ["CONTRABAND", "CONTRABAND"]
    assert [t.class_name for t in rep.threats] == ["ivory", "bone_like"]
    assert [t.origin for t in rep.threats] == ["yolo", "material_anomaly"]
    assert rep.threats[0].probability == pytest.approx(0.87, abs=1e-6)
    for t, d in zip(rep.threats, res.detections):
        assert t.referenced_sop_instance_uid == dx.SOPInstanceUID
        np.testing.assert_allclose(t.box_px, d.to_dict()["box_px"], atol=1e-3)
    # box lies inside the referenced image (rows = H, columns = W)
    x0, y0, x1, y1 = rep.threats[0].box_px
    assert 0 <= x0 < x1 <= dx.Columns and 0 <= y0 < y1 <= dx.Rows


def test_tdr_clear_scan(tmp_path):
    from nii.tdr import read_tdr

    w = write_outputs(clear_result(), tmp_path, formats=("tdr",))
    rep = read_tdr(w["tdr"])
    assert rep.alarm is False and rep.threats == () and rep.n_total == 0


def test_tdr_refuses_non_dx_reference(tmp_path, written):
    from nii.errors import CorruptFileError
    from nii.tdr import read_tdr, write_tdr

    res, out, w = written
    with pytest.raises(InvalidParameterError, match="not DICOS DX"):
        write_tdr(res, tmp_path / "x.dcm", dx=w["tdr"])  # a TDR is not an image
    with pytest.raises(CorruptFileError):
        read_tdr(w["dx"])


def test_annotated_png(written):
    import cv2

    res, out, w = written
    img = cv2.imread(w["png"], cv2.IMREAD_COLOR)[..., ::-1]
    scale = 2  # 400 px wide scan, enlarged to >= 800
    assert img.shape == (48 + 160 * scale, 400 * scale, 3)
    x0, y0, x1, y1 = (int(round(v * scale)) for v in res.detections[0].to_dict()["box_px"])
    # left edge of the ivory box, below its label, drawn solid in the class colour
    col = img[48 + y0 + 30 : 48 + y1 - 5, x0]
    assert np.all(np.abs(col.astype(int) - class_color("ivory")).sum(axis=1) < 10)
    # the anomaly box is dashed: its bottom edge alternates between the anomaly colour and the scan
    a = res.detections[1].to_dict()["box_px"]
    row = img[48 + int(round(a[3] * scale)), int(a[0] * scale) + 2 : int(a[2] * scale) - 2]
    is_anom = np.abs(row.astype(int) - ANOMALY_RGB).sum(axis=1) < 10
    assert 0.25 < is_anom.mean() < 0.75
    # header strip is dark and holds red alarm text
    head = img[:48]
    assert np.median(head) < 40 and ((head[..., 0] > 200) & (head[..., 1] < 100)).sum() > 50


def test_annotated_image_never_shrinks():
    res = tusk_result(100, 1200)
    img = annotated_image(res)
    assert img.shape[1] == 1200


def test_bad_formats_and_failed_result(tmp_path):
    from nii.pipeline import Result

    with pytest.raises(InvalidParameterError, match="unknown output format"):
        write_outputs(tusk_result(), tmp_path, formats=("json", "gif"))
    with pytest.raises(InvalidParameterError):
        write_outputs(Result(source="x", scan_id="x", status="error", error="boom"), tmp_path)
    with pytest.raises(InvalidParameterError, match="stem"):
        write_outputs(tusk_result(), tmp_path, stem="../evil")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_earlier_outputs(tmp_path, monkeypatch):
    from nii.io import dicos

    res = tusk_result()
    w = write_outputs(res, tmp_path, formats=("json", "tdr"))
    before = Path(w["json"]).read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(dicos, "write", boom)
    with pytest.raises(OSError):
        write_outputs(res, tmp_path, formats=("json", "tdr"))
    assert Path(w["json"]).read_bytes() == before  # the report is written last: untouched
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_build_report_needs_ok_result():
    from nii.pipeline import Result

    with pytest.raises(InvalidParameterError):
        build_report(Result(source=None, scan_id="x", status="error", error="bad"))


def test_header_names_the_model_and_its_operating_point():
    import dataclasses

    from nii.containers import Provenance, Step
    from nii.outputs import _model_text

    res = tusk_result()
    assert _model_text(res) == "model fake-model at FAR 1 %"
    img = annotated_image(res)
    assert img.shape[0] == 48 + 160 * 2  # fits beside the first line: right-aligned there
    right = img[4:24, -120:]
    assert ((right > 120).all(axis=2)).sum() > 30  # grey text at the right end of line 1
    long = Step("detect", {"model": "a-model-with-a-rather-long-site-specific-name-v12", "far": 0.005})
    scan = res.scan.replace(provenance=Provenance(steps=(long,)))
    res2 = dataclasses.replace(res, scan=scan)
    assert _model_text(res2) == "model a-model-with-a-rather-long-site-specific-name-v12 at FAR 0.5 %"
    assert annotated_image(res2).shape[0] == 66 + 160 * 2  # a third header line
    bare = dataclasses.replace(res, scan=res.scan.replace(provenance=Provenance()))
    assert _model_text(bare) == "" and annotated_image(bare).shape[0] == 48 + 160 * 2
