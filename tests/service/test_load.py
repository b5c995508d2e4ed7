"""The service under load on a real loopback socket: overload answers 503 + Retry-After, no request is lost."""

from __future__ import annotations

import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
import httpx2
import uvicorn

from nii.pipeline import Pipeline
from nii.service.app import ServiceConfig, create_app
from nii.service.metrics import Counter, Gauge, Histogram, Registry

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_scans" / "01_luggage_tusk.h5"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app):
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        th.join(30)


class SlowPipeline:
    """A real pipeline that takes at least ``delay`` s per scan, so a burst overloads a small queue."""

    def __init__(self, inner, delay):
        self.inner, self.delay = inner, delay
        self.model_hash = inner.model_hash

    def process(self, src):
        time.sleep(self.delay)
        return self.inner.process(src)


def test_metrics_text_format():
    reg = Registry()
    c = reg.add(Counter("x_total", "Xs.", ("kind",), initial=[("a",)]))
    h = reg.add(Histogram("lat_seconds", "Latency.", buckets=(0.1, 1.0)))
    reg.add(Gauge("depth", "Depth.", lambda: 3))
    c.inc(kind="b")
    c.inc(2, kind="a")
    for v in (0.05, 0.5, 5.0):
        h.observe(v)
    text = reg.render()
    assert 'x_total{kind="a"} 2\nx_total{kind="b"} 1' in text
    assert 'lat_seconds_bucket{le="0.1"} 1\nlat_seconds_bucket{le="1"} 2\nlat_seconds_bucket{le="+Inf"} 3' in text
    assert "lat_seconds_sum 5.55\nlat_seconds_count 3" in text
    assert "# TYPE depth gauge\ndepth 3" in text
    with pytest.raises(ValueError):
        c.inc(-1, kind="a")


@pytest.mark.slow
def test_burst_overload_gets_503_and_no_request_is_lost(tmp_path):
    pipe = SlowPipeline(Pipeline(model=False), delay=0.3)
    cfg = ServiceConfig(workers=1, queue_size=2, data_dir=str(tmp_path / "data"), formats=("json",))
    data = SAMPLE.read_bytes()
    n = 12
    answers: dict[int, list[int]] = {i: [] for i in range(n)}
    ids: dict[int, str] = {}
    with serving(create_app(cfg, pipeline=pipe)) as base, httpx2.Client(base_url=base, timeout=60) as client:

        def one(i: int) -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                r = client.post("/v1/scans", content=data, params={"filename": f"s{i}.h5"},
                                headers={"Content-Type": "application/octet-stream"})
                answers[i].append(r.status_code)
                if r.status_code == 503:
                    retry = int(r.headers["retry-after"])
                    assert 1 <= retry <= 120
                    assert "queue full" in r.json()["detail"]
                    time.sleep(min(retry, 1.0) * 0.5)  # bounded client: back off, then retry
                    continue
                assert r.status_code == 200, r.text
                ids[i] = r.json()["id"]
                return

        with ThreadPoolExecutor(max_workers=n) as pool:
            list(pool.map(one, range(n)))
        metrics = client.get("/metrics").text

    assert len(ids) == n and len(set(ids.values())) == n  # every request answered once, with its own result
    first = [a[0] for a in answers.values()]
    assert first.count(503) >= 1, "a burst of 12 on capacity 3 must be refused in part"
    assert first.count(200) >= 3
    ok = float(re.search(r'^nii_scans_total\{status="ok"\} (\S+)$', metrics, re.MULTILINE).group(1))
    rejected = float(re.search(r'^nii_requests_rejected_total\{reason="queue_full"\} (\S+)$', metrics, re.MULTILINE).group(1))
    assert ok == n
    assert rejected == sum(a.count(503) for a in answers.values())
    assert re.search(r"^nii_queue_depth 0$", metrics, re.MULTILINE)
