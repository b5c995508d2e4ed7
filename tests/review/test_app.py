"""Review app API: queue, layers, decisions, history, auth, path traversal, persistence."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the review app needs the [serve] extra")

from fastapi.testclient import TestClient  # noqa: E402

from nii.errors import FileAccessError, InvalidParameterError  # noqa: E402
from nii.review.app import create_app  # noqa: E402
from nii.review.results import LAYERS, safe_join  # noqa: E402

TOKEN = "s3cret-token-for-tests"
BASE = "http://127.0.0.1"


def client(results_dir, **kw):
    return TestClient(create_app(results_dir, **kw), base_url=BASE)


def decide(c, key, headers=None, **body):
    return c.post(f"/api/scans/{key}/decisions", json=body, headers=headers or {})


def png_shape(data: bytes):
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return img.shape


def test_queue_alarms_first_and_filters(results_dir):
    c = client(results_dir)
    r = c.get("/api/scans")
    assert r.status_code == 200
    scans = r.json()["scans"]
    assert [s["key"] for s in scans] == ["tusk-0001", "clear-0002"]
    assert scans[0]["alarm"] and scans[0]["n_detections"] == 3 and not scans[1]["alarm"]
    assert [s["key"] for s in c.get("/api/scans?alarm=0").json()["scans"]] == ["clear-0002"]
    assert [s["key"] for s in c.get("/api/scans?cls=pangolin_scales").json()["scans"]] == ["tusk-0001"]
    assert c.get("/api/scans?q=clear").json()["scans"][0]["key"] == "clear-0002"
    assert png_shape(c.get("/api/scans/tusk-0001/thumb.png").content)[1] == 320


def test_page_and_static_served_locally(results_dir):
    c = client(results_dir)
    page = c.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    import re

    remote = re.compile(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|fetch\(\s*["'`]https?:|@import""")
    for url in ("/", "/static/app.js", "/static/app.css"):
        r = c.get(url)
        assert r.status_code == 200 and not remote.search(r.text), url  # no CDN, nothing remote
    assert c.get("/static/../app.py").status_code == 404
    assert "default-src 'self'" in page.headers["content-security-policy"]


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_full_resolution(results_dir, layer):
    c = client(results_dir)
    r = c.get(f"/api/scans/tusk-0001/layers/{layer}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert png_shape(r.content)[:2] == (160, 400)


def test_layers_differ_and_select_materials(results_dir):
    import cv2

    c = client(results_dir)
    imgs = {l: cv2.imdecode(np.frombuffer(c.get(f"/api/scans/tusk-0001/layers/{l}.png").content, np.uint8), cv2.IMREAD_COLOR)[..., ::-1] for l in LAYERS}
    from tests.outputs.fakes import tusk_scan

    scan = tusk_scan()
    np.testing.assert_array_equal(imgs["color"], scan.color)
    tusk = scan.material == 2  # mixed: the ivory
    organic = scan.material == 1
    # organic-only keeps organic pixels' colour and greys the tusk; metal-only greys both
    np.testing.assert_array_equal(imgs["organic"][organic], scan.color[organic])
    t = imgs["organic"][tusk].astype(int)
    assert np.all(np.abs(t[:, 0] - t[:, 1]) <= 1)
    assert np.all(np.abs(imgs["metal"][organic].astype(int)[:, 0] - imgs["metal"][organic].astype(int)[:, 2]) <= 1)
    assert not np.array_equal(imgs["high"], imgs["low"])
    assert c.get("/api/scans/tusk-0001/layers/rainbow.png").status_code == 404


def test_decisions_history_and_state(results_dir):
    c = client(results_dir)
    assert decide(c, "tusk-0001", kind="detection", action="confirm", detection_index=0, operator="ana").status_code == 201
    assert decide(c, "tusk-0001", kind="detection", action="reject", detection_index=1, operator="ana", note="bone of a chicken").status_code == 201
    assert decide(c, "tusk-0001", kind="detection", action="relabel", detection_index=1, operator="ben", label="ivory_worked").status_code == 201
    r = decide(c, "tusk-0001", kind="missed", action="add", box=[10, 20, 40, 60], label="rhino_horn", operator="ana")
    assert r.status_code == 201
    missed_id = r.json()["id"]
    assert decide(c, "tusk-0001", kind="verdict", action="seize", operator="ana").status_code == 201
    d = c.get("/api/scans/tusk-0001").json()
    st = d["state"]
    assert st["detections"]["0"]["action"] == "confirm"
    assert st["detections"]["1"]["action"] == "relabel" and st["detections"]["1"]["label"] == "ivory_worked"
    assert st["missed"][0]["box"] == [10.0, 20.0, 40.0, 60.0]
    assert st["verdict"]["action"] == "seize" and st["verdict"]["operator"] == "ana"
    assert len(d["history"]) == 5  # the reject is kept in the history
    assert d["history"][1]["note"] == "bone of a chicken" and d["history"][1]["report_sha256"] == d["report_sha256"]
    assert decide(c, "tusk-0001", kind="missed", action="withdraw", ref_id=missed_id, operator="ana").status_code == 201
    assert c.get("/api/scans/tusk-0001").json()["state"]["missed"] == []
    assert c.get("/api/scans?reviewed=1").json()["scans"][0]["verdict"] == "seize"


@pytest.mark.parametrize(
    "body",
    [
        dict(kind="detection", action="confirm", detection_index=7),
        dict(kind="detection", action="relabel", detection_index=0),
        dict(kind="detection", action="destroy", detection_index=0),
        dict(kind="missed", action="add", box=[5, 5, 1, 1], label="ivory"),
        dict(kind="missed", action="withdraw", ref_id=999),
        dict(kind="verdict", action="maybe"),
        dict(kind="note", action="note", note="   "),
    ],
)
def test_invalid_decisions_rejected(results_dir, body):
    c = client(results_dir)
    assert decide(c, "tusk-0001", operator="ana", **body).status_code == 422
    assert c.get("/api/scans/tusk-0001/history").json() == []


def test_decisions_survive_restart_and_are_append_only(results_dir):
    c = client(results_dir)
    decide(c, "tusk-0001", kind="detection", action="confirm", detection_index=0, operator="ana")
    decide(c, "tusk-0001", kind="detection", action="reject", detection_index=0, operator="ana")
    c2 = client(results_dir)  # a new app on the same folder: the server restarted
    h = c2.get("/api/scans/tusk-0001/history").json()
    assert [x["action"] for x in h] == ["confirm", "reject"]
    con = sqlite3.connect(results_dir / "nii-review.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE decisions SET action = 'confirm'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM decisions")
    con.close()


def test_scan_files_untouched(results_dir):
    before = {p.name: p.read_bytes() for p in results_dir.iterdir()}
    c = client(results_dir)
    for layer in LAYERS:
        c.get(f"/api/scans/tusk-0001/layers/{layer}.png")
    decide(c, "tusk-0001", kind="verdict", action="clear", operator="ana")
    after = {p.name: p.read_bytes() for p in results_dir.iterdir() if not p.name.startswith("nii-review.sqlite")}
    assert after == before


def test_token_required_for_api(results_dir):
    c = client(results_dir, token=TOKEN)
    body = dict(kind="detection", action="confirm", detection_index=0, operator="ana")
    assert decide(c, "tusk-0001", **body).status_code == 401
    assert decide(c, "tusk-0001", headers={"Authorization": "Bearer wrong-token-xyz"}, **body).status_code == 401
    assert c.get("/api/scans").status_code == 401
    assert c.get("/api/scans/tusk-0001/layers/color.png").status_code == 401
    assert c.get("/api/config").json() == {"version": c.get("/api/config").json()["version"], "auth_required": True, "authenticated": False, "layers": list(LAYERS)}
    assert decide(c, "tusk-0001", headers={"Authorization": f"Bearer {TOKEN}"}, **body).status_code == 201
    # login cookie
    assert c.post("/api/login", json={"token": "nope-nope-nope"}).status_code == 401
    assert c.post("/api/login", json={"token": TOKEN}).status_code == 200
    assert decide(c, "tusk-0001", **body).status_code == 201
    assert len(c.get("/api/scans/tusk-0001/history").json()) == 2


def test_operator_required_without_token(results_dir):
    c = client(results_dir)
    r = decide(c, "tusk-0001", kind="detection", action="confirm", detection_index=0)
    assert r.status_code == 401 and "operator" in r.json()["detail"]
    assert decide(c, "tusk-0001", kind="detection", action="confirm", detection_index=0, operator="  ").status_code == 401


def test_cross_site_and_host_checks(results_dir):
    c = client(results_dir)
    body = json.dumps(dict(kind="verdict", action="clear", operator="ana"))
    r = c.post("/api/scans/tusk-0001/decisions", content=body, headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = c.post("/api/scans/tusk-0001/decisions", content=body, headers={"Content-Type": "application/json", "Origin": "http://evil.example"})
    assert r.status_code == 403
    assert c.get("/api/scans", headers={"Host": "evil.example"}).status_code == 400
    assert c.get("/api/scans/tusk-0001/history").json() == []


@pytest.mark.parametrize(
    "url",
    [
        "/api/scans/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/scans/../../etc/passwd/layers/color.png",
        "/api/scans/%2e%2e/thumb.png",
        "/api/scans/tusk-0001/layers/..%2F..%2Fetc%2Fpasswd.png",
        "/static/..%2Fapp.py",
        "/static/%2e%2e%2fstore.py",
    ],
)
def test_path_traversal_refused(results_dir, url):
    c = client(results_dir)
    r = c.get(url)
    assert r.status_code in (404, 400)
    assert b"root:" not in r.content and b"import" not in r.content


def test_report_naming_outside_file_is_not_served(results_dir, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    doc = json.loads((results_dir / "tusk-0001.json").read_text())
    doc["scan_id"] = "evil"
    doc["outputs"] = {"png": "../secret.png", "h5": "/etc/passwd"}
    (results_dir / "evil.json").write_text(json.dumps(doc))
    (results_dir / "link.png").symlink_to(secret)
    doc["outputs"] = {"png": "link.png"}
    (results_dir / "evil2.json").write_text(json.dumps(doc))
    c = client(results_dir)
    for key in ("evil", "evil2"):
        for url in (f"/api/scans/{key}/annotated.png", f"/api/scans/{key}/thumb.png", f"/api/scans/{key}/layers/color.png"):
            r = c.get(url)
            assert r.status_code == 404 and b"PNG secret" not in r.content


def test_safe_join(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.txt").write_text("x")
    assert safe_join(tmp_path, "a/f.txt") == (tmp_path / "a" / "f.txt").resolve()
    (tmp_path / "out").symlink_to(tmp_path.parent)
    for bad in ("../x", "a/../../x", "/etc/passwd", "", "a/\x00", "out/x", "a/..", "."):
        with pytest.raises(FileAccessError):
            safe_join(tmp_path, bad)


def test_create_app_rejects_weak_setups(results_dir):
    with pytest.raises(InvalidParameterError):
        create_app(results_dir, token="short")
    with pytest.raises(InvalidParameterError):
        create_app(results_dir, allowed_hosts=None)
    with pytest.raises(FileAccessError):
        create_app(results_dir / "missing")


def test_cli_refuses_public_bind_without_token(results_dir, monkeypatch, capsys):
    from nii.cli import main

    monkeypatch.delenv("NII_REVIEW_TOKEN", raising=False)
    assert main(["review", str(results_dir), "--host", "0.0.0.0"]) == 1
    err = capsys.readouterr().err
    assert "token" in err and "0.0.0.0" in err


def test_cli_starts_server_on_loopback_and_public_with_token(results_dir, monkeypatch):
    import uvicorn

    from nii.cli import main

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.delenv("NII_REVIEW_TOKEN", raising=False)
    assert main(["review", str(results_dir), "--port", "0"]) == 0
    app, kw = calls[-1]
    assert kw["host"] == "127.0.0.1" and kw["port"] == 0
    c = TestClient(app, base_url=BASE)
    assert c.get("/api/scans").status_code == 200
    assert c.get("/api/scans", headers={"Host": "attacker.example"}).status_code == 400
    monkeypatch.setenv("NII_REVIEW_TOKEN", TOKEN)
    assert main(["review", str(results_dir), "--host", "0.0.0.0", "--db", str(results_dir.parent / "d.sqlite")]) == 0
    app, kw = calls[-1]
    assert kw["host"] == "0.0.0.0"
    c = TestClient(app, base_url="http://scanner-42.example")
    assert c.get("/api/scans").status_code == 401
    assert c.get("/api/scans", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert (results_dir.parent / "d.sqlite").exists()


def test_scan_note_and_layers_without_material_maps(results_dir):
    from nii.review.results import render_layer

    c = client(results_dir)
    r = decide(c, "clear-0002", kind="note", action="note", note="bag re-scanned at belt 2", operator="ben")
    assert r.status_code == 201
    st = c.get("/api/scans/clear-0002").json()["state"]
    assert st["notes"][0]["note"] == "bag re-scanned at belt 2" and st["verdict"] is None
    att = np.zeros((1, 4, 5), np.float32)
    att[0, 1:3, 1:4] = 1.0
    grey = render_layer({"attenuation": att}, "low")
    assert grey.shape == (4, 5, 3) and grey[0, 0, 0] == 255 and grey[1, 1, 0] < 255
    np.testing.assert_array_equal(render_layer({"attenuation": att}, "color"), grey)
    for layer in ("organic", "metal", "zeff"):
        with pytest.raises(InvalidParameterError):
            render_layer({"attenuation": att}, layer)
