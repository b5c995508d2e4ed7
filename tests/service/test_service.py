"""HTTP service: routes, errors, auth, metrics, the committed OpenAPI spec."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from nii.errors import InvalidParameterError
from nii.pipeline import Pipeline
from nii.service.app import ServiceConfig, check_bind, create_app, openapi_spec

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_scans" / "01_luggage_tusk.h5"
TOKEN = "s3cret-token-0123456789"


@pytest.fixture(scope="module")
def pipe():
    return Pipeline(model=ROOT / "detectors" / "demo-tiny")


@pytest.fixture
def client(pipe, tmp_path):
    app = create_app(ServiceConfig(workers=2, queue_size=4, max_upload_bytes=8 << 20, data_dir=str(tmp_path / "data")), pipeline=pipe)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def _post(c, data: bytes, **params):
    return c.post("/v1/scans", content=data, params=params, headers={"Content-Type": "application/octet-stream"})


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def test_openapi_committed_matches_app():
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
    assert committed == openapi_spec(), "regenerate: python -m nii.service.app docs/openapi.json"
    assert {"/v1/scans", "/v1/scans/{scan_id}", "/v1/scans/{scan_id}/image", "/healthz", "/metrics"} <= set(committed["paths"])
    body = committed["paths"]["/v1/scans"]["post"]["requestBody"]["content"]
    assert "application/octet-stream" in body


def test_check_bind_requires_token_beyond_localhost():
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("localhost", None)
    check_bind("0.0.0.0", TOKEN)
    for host in ("0.0.0.0", "192.168.1.5", "scanner-gw.example"):
        with pytest.raises(InvalidParameterError, match="token"):
            check_bind(host, None)
    with pytest.raises(InvalidParameterError, match="16"):
        ServiceConfig(token="short")


def test_upload_get_image_and_metrics(client):
    assert client.get("/healthz").json()["status"] == "ok"
    r = _post(client, SAMPLE.read_bytes(), filename="01_luggage_tusk.h5")
    assert r.status_code == 200, r.text
    doc = r.json()
    rep = doc["report"]
    assert doc["status"] == "ok" and rep["schema"] == "nii-scan-report/1"
    assert rep["source"]["path"] == "01_luggage_tusk.h5" and rep["scan_id"] == "01_luggage_tusk"
    assert doc["alarm"] == rep["alarm"] == bool(rep["detections"])
    assert r.headers["location"] == doc["links"]["self"] == f"/v1/scans/{doc['id']}"
    g = client.get(doc["links"]["self"])
    assert g.status_code == 200 and g.json()["report"] == rep
    img = client.get(doc["links"]["image"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/png" and img.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get("/v1/scans/" + "0" * 32).status_code == 404
    assert client.get("/v1/scans/../../etc/passwd").status_code == 404
    m = client.get("/metrics")
    assert m.headers["content-type"].startswith("text/plain; version=0.0.4")
    t = m.text
    assert metric(t, 'nii_scans_total{status="ok"}') == 1
    assert metric(t, "nii_alarms_total") == (1 if doc["alarm"] else 0)
    assert metric(t, "nii_scan_latency_seconds_count") == 1
    assert metric(t, 'nii_scan_latency_seconds_bucket{le="+Inf"}') == 1
    assert metric(t, 'nii_stage_latency_seconds_count{stage="normalize"}') == 1
    assert metric(t, "nii_queue_depth") == 0 and metric(t, "nii_queue_capacity") == 6
    assert "# TYPE nii_scan_latency_seconds histogram" in t


def test_async_upload_then_poll(client):
    r = _post(client, SAMPLE.read_bytes(), wait="false")
    assert r.status_code == 202
    url = r.json()["links"]["self"]
    for _ in range(600):
        g = client.get(url)
        if g.status_code == 200:
            break
        assert g.status_code == 202 and g.json()["status"] in ("queued", "processing")
        time.sleep(0.05)
    assert g.status_code == 200 and g.json()["status"] == "ok"


@pytest.mark.parametrize(
    ("body", "ctype", "code", "words"),
    [
        (b"", "application/octet-stream", 400, "empty"),
        (b"hello, this is not a scan", "application/octet-stream", 415, "not a format"),
        (b"\x89HDF\r\n\x1a\n" + b"\0" * 64, "application/octet-stream", 422, "<bytes>"),
        (b"--x\r\nContent-Disposition: form-data; name=file\r\n\r\nabc\r\n--x--\r\n", "multipart/form-data; boundary=x", 415, "octet-stream"),
        (b'{"scan": 1}', "application/json", 415, "octet-stream"),
    ],
)
def test_malformed_uploads_get_4xx_with_message(client, body, ctype, code, words):
    r = client.post("/v1/scans", content=body, headers={"Content-Type": ctype})
    assert r.status_code == code, r.text
    assert words in r.json()["detail"]


def test_size_limit(pipe, tmp_path):
    app = create_app(ServiceConfig(max_upload_bytes=1000, data_dir=str(tmp_path)), pipeline=pipe)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        r = _post(c, SAMPLE.read_bytes())
        assert r.status_code == 413 and "1000" in r.json()["detail"]

        def chunks():  # no Content-Length: the limit is enforced while streaming
            for _ in range(5):
                yield b"\0" * 400

        r = c.post("/v1/scans", content=chunks(), headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 413
        assert metric(c.get("/metrics").text, 'nii_requests_rejected_total{reason="too_large"}') == 2
        assert metric(c.get("/metrics").text, "nii_queue_depth") == 0  # the slot was released


def test_token_auth(pipe, tmp_path):
    app = create_app(ServiceConfig(token=TOKEN, data_dir=str(tmp_path)), pipeline=pipe)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.get("/healthz").status_code == 200  # probes need no token
        assert c.get("/metrics").status_code == 401
        r = _post(c, SAMPLE.read_bytes())
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        bad = c.post("/v1/scans", content=b"x", headers={"Authorization": "Bearer wrong-token-000000000"})
        assert bad.status_code == 401
        ok = c.post("/v1/scans", content=SAMPLE.read_bytes(),
                    headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/octet-stream"})
        assert ok.status_code == 200
        assert c.get(ok.json()["links"]["self"], headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert metric(c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text,
                      'nii_requests_rejected_total{reason="unauthorized"}') == 3


def test_serve_cli_size_parser_and_bind_check(monkeypatch):
    import argparse

    monkeypatch.delenv("NII_TOKEN", raising=False)
    from nii.cli import main
    from nii.cli.serve import _size

    assert _size("512M") == 512 << 20 and _size("2GiB") == 2 << 30 and _size("1000") == 1000
    for bad in ("lots", "0", "-5K"):
        with pytest.raises(argparse.ArgumentTypeError):
            _size(bad)
    # beyond localhost without a token: refused before anything starts
    assert main(["serve", "--host", "0.0.0.0", "--no-detect"]) == 1
