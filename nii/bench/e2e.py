"""End-to-end throughput and latency: API, HTTP service and Dask (1 and 2 workers), baggage and container scans.

Each mode runs the whole chain — read the file, normalise, detect, write the outputs — on the same
scan files:

* ``api``: one warmed-up :class:`nii.Pipeline` in this process, ``process()`` + ``write_outputs()``
  one scan after another;
* ``service``: ``nii serve``'s application on a loopback socket (uvicorn, ``--service-workers``
  threads), fed by a bounded local load client (``--clients`` concurrent uploads, retrying on 503);
  latency is the client's (upload → result);
* ``dask-1`` / ``dask-2``: ``nii scan --dask local:N`` (:class:`nii.distributed.DaskScan`); latency
  is per scan on the worker (process + write); throughput is scans over the wall time of the batch.

References measured in the same run: reading the files only (``nii.read``, the I/O + decoding
floor) and the memory-copy bound (one ``numpy`` copy of each scan's counts). Peak resident memory
is reported for this process (API and service share it) and for each Dask worker.

Baggage scans are the shipped ``sample_scans`` (~0.3-0.7 Mpx per energy); container scans are
simulated once with the ``cargo_300`` profile at ``--container`` H x W pixels.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_arguments", "percentiles", "run", "table"]

MODES = ("api", "service", "dask-1", "dask-2")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model folder (default: the default model, else detectors/demo-tiny)")
    parser.add_argument("--baggage", type=int, default=24, help="baggage scans per mode (default 24, cycling the sample scans)")
    parser.add_argument("--containers", type=int, default=4, help="container scans per mode (default 4; 0 skips)")
    parser.add_argument("--container", default="2000x8000", help="container scan H x W in px (default 2000x8000)")
    parser.add_argument("--formats", default="json,png", help="outputs written per scan (default json,png)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    parser.add_argument("--clients", type=int, default=2, help="concurrent uploads of the service load client (default 2)")
    parser.add_argument("--service-workers", type=int, default=2, help="worker threads of the service (default 2)")
    parser.add_argument("--plot", default="e2e-bench.png", help="save a plot here ('' for none; default e2e-bench.png)")
    parser.add_argument("--seed", type=int, default=0)


def percentiles(ms: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean of latencies in ms (linear interpolation)."""
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"p50_ms": round(float(p50), 1), "p95_ms": round(float(p95), 1), "p99_ms": round(float(p99), 1), "mean_ms": round(float(a.mean()), 1)}


def _peak_rss() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if sys.platform == "darwin" else r * 1024)


def _container_file(folder: Path, hw: tuple[int, int], seed: int) -> Path:
    from ..io import write_hdf5
    from ..profiles import load_profile
    from ..sim.imaging import form_image
    from ..sim.scenes import compose_scene, scene_grid

    p = load_profile("cargo_300")
    h, w = hw
    grid = scene_grid(p, channels=h, length_cm=w * p.line_pitch_mm / 10.0)
    scene = compose_scene("pallet_cargo", p, seed, grid=grid, force_target=True)
    raw = form_image(scene.stack, p, seed=seed, truth=scene.truth, scan_id=f"container-{seed}")
    path = folder / f"container_{seed}.h5"
    write_hdf5(raw, path)
    return path


def _files(args: argparse.Namespace, tmp: Path) -> dict[str, list[Path]]:
    from .._assets import asset_dir

    samples = sorted(asset_dir("sample_scans").glob("*.h5"))
    out: dict[str, list[Path]] = {"baggage": []}
    for i in range(args.baggage):
        src = samples[i % len(samples)]
        dst = tmp / "baggage" / f"b{i:03d}_{src.name}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            os.link(src, dst)
        out["baggage"].append(dst)
    if args.containers > 0:
        h, w = (int(v) for v in args.container.lower().split("x"))
        first = _container_file(tmp, (h, w), args.seed)
        out["container"] = []
        for i in range(args.containers):
            dst = tmp / "container" / f"c{i:03d}.h5"
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(first, dst)
            out["container"].append(dst)
    return out


def _references(files: list[Path]) -> dict[str, Any]:
    from ..io import read

    t_read, t_copy, nbytes = [], [], 0
    for f in files:
        t0 = time.perf_counter()
        raw = read(f)
        t_read.append((time.perf_counter() - t0) * 1e3)
        counts = np.asarray(raw.counts)
        nbytes += counts.nbytes
        t0 = time.perf_counter()
        np.copy(counts)
        t_copy.append((time.perf_counter() - t0) * 1e3)
    return {"read_only": percentiles(t_read), "memcpy": percentiles(t_copy), "mean_counts_mb": round(nbytes / len(files) / 1e6, 2)}


def _api(model: str, files: list[Path], out: Path, formats: tuple[str, ...]) -> dict[str, Any]:
    from ..outputs import write_outputs
    from ..pipeline import Pipeline

    pipe = Pipeline(model=model)
    lat = []
    t_all = time.perf_counter()
    for i, f in enumerate(files):
        t0 = time.perf_counter()
        res = pipe.process(f)
        write_outputs(res, out, formats=formats, stem=f"s{i:04d}")
        lat.append((time.perf_counter() - t0) * 1e3)
    wall = time.perf_counter() - t_all
    return {"n": len(files), "wall_s": round(wall, 2), "scans_per_s": round(len(files) / wall, 3), **percentiles(lat),
            "warmup_ms": round(pipe.warmup_ms or 0.0, 1), "peak_rss_mb": round(_peak_rss() / 2**20, 1)}


def _service(model: str, files: list[Path], data: Path, formats: tuple[str, ...], *, clients: int, workers: int) -> dict[str, Any]:
    import socket
    from concurrent.futures import ThreadPoolExecutor

    import httpx2
    import uvicorn

    from ..service.app import ServiceConfig, create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = ServiceConfig(model=model, workers=workers, queue_size=max(1, clients), data_dir=str(data), formats=formats)
    server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 120
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise RuntimeError("service did not start")
    lat: list[float] = []
    refused = 0
    lock = threading.Lock()
    try:
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            def one(f: Path) -> None:
                nonlocal refused
                body = f.read_bytes()
                t0 = time.perf_counter()
                while True:
                    r = client.post("/v1/scans", content=body, headers={"Content-Type": "application/octet-stream"})
                    if r.status_code != 503:
                        break
                    with lock:
                        refused += 1
                    time.sleep(min(float(r.headers.get("retry-after", 1)), 2.0))
                if r.status_code != 200:
                    raise RuntimeError(f"service answered {r.status_code}: {r.text[:200]}")
                with lock:
                    lat.append((time.perf_counter() - t0) * 1e3)

            t_all = time.perf_counter()
            with ThreadPoolExecutor(max_workers=clients) as pool:
                list(pool.map(one, files))
            wall = time.perf_counter() - t_all
    finally:
        server.should_exit = True
        th.join(120)
    return {"n": len(files), "wall_s": round(wall, 2), "scans_per_s": round(len(files) / wall, 3), **percentiles(lat),
            "clients": clients, "workers": workers, "refused_503": refused, "peak_rss_mb": round(_peak_rss() / 2**20, 1)}


def _dask(model: str, files: list[Path], out: Path, formats: tuple[str, ...], *, n_workers: int, client: Any = None) -> dict[str, Any]:
    from ..distributed import DaskScan, worker_peak_rss

    job = DaskScan(client, {"model": model})
    t_all = time.perf_counter()
    records = job.run([str(f) for f in files], out, formats=formats)
    wall = time.perf_counter() - t_all
    bad = [r["error"] for r in records if not r["ok"]]
    if bad:
        raise RuntimeError(f"dask run failed: {bad[:3]}")
    lat = [r["task_ms"] for r in records]
    rss = worker_peak_rss(client)
    return {"n": len(files), "wall_s": round(wall, 2), "scans_per_s": round(len(files) / wall, 3), **percentiles(lat),
            "workers": n_workers, "peak_rss_mb_per_worker": {k.rsplit(":", 1)[-1]: round(v / 2**20, 1) for k, v in rss.items()},
            "peak_rss_mb": round(max(rss.values()) / 2**20, 1)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ..detect import Detector
    from ..errors import ModelError

    try:
        model = args.model if args.model is not None else str(Detector.load(None).folder)
    except ModelError:
        from .._assets import asset_dir

        model = str(asset_dir("detectors") / "demo-tiny")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"--modes: unknown {unknown}; choose from {', '.join(MODES)}")
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    res: dict[str, Any] = {"benchmark": "e2e", "model": Path(model).name, "formats": list(formats), "cpu_count": os.cpu_count(),
                           "results": {}, "references": {}}
    with tempfile.TemporaryDirectory(prefix="nii-bench-e2e-") as d:
        tmp = Path(d)
        sets = _files(args, tmp)
        res["scans"] = {k: {"n": len(v), "shape": list(_shape(v[0]))} for k, v in sets.items()}
        for kind, files in sets.items():
            res["references"][kind] = _references(files[: min(len(files), 8)])
        for mode in modes:
            res["results"][mode] = {}
            client = cluster = None
            if mode.startswith("dask"):
                from ..distributed import open_client

                client, cluster = open_client(f"local:{mode.split('-')[1]}")
            try:
                for kind, files in sets.items():
                    out = tmp / "out" / mode / kind
                    if mode == "api":
                        r = _api(model, files, out, formats)
                    elif mode == "service":
                        r = _service(model, files, out, formats, clients=args.clients, workers=args.service_workers)
                    else:
                        r = _dask(model, files, out, formats, n_workers=int(mode.split("-")[1]), client=client)
                    res["results"][mode][kind] = r
            finally:
                if client is not None:
                    client.close()
                    cluster.close()
    if args.plot:
        res["plot"] = _plot(res, args.plot)
    return res


def _shape(files: list[Path] | Path) -> tuple[int, ...]:
    import h5py

    f = files if isinstance(files, Path) else files[0]
    with h5py.File(f, "r") as h:
        for name in ("raw/counts", "counts"):
            if name in h:
                return tuple(h[name].shape)
    return ()


def table_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for mode, kinds in res["results"].items():
        for kind, r in kinds.items():
            rows.append({"mode": mode, "scan": kind, "n": r["n"], "scans_per_s": r["scans_per_s"], "p50_ms": r["p50_ms"],
                         "p95_ms": r["p95_ms"], "p99_ms": r["p99_ms"], "peak_rss_mb": r["peak_rss_mb"]})
    return rows


def _plot(res: dict[str, Any], path: str) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = table_rows(res)
    kinds = sorted({r["scan"] for r in rows})
    fig, axes = plt.subplots(len(kinds), 2, figsize=(10, 3.2 * len(kinds)), squeeze=False)
    for i, kind in enumerate(kinds):
        sub = [r for r in rows if r["scan"] == kind]
        names = [r["mode"] for r in sub]
        axes[i, 0].bar(names, [r["scans_per_s"] for r in sub], color="#3b7dd8")
        axes[i, 0].set_ylabel("scans / s")
        axes[i, 0].set_title(f"{kind}: throughput")
        x = np.arange(len(sub))
        for j, (q, c) in enumerate((("p50_ms", "#2a9d8f"), ("p95_ms", "#e9c46a"), ("p99_ms", "#e76f51"))):
            axes[i, 1].bar(x + (j - 1) * 0.27, [r[q] for r in sub], width=0.27, label=q[:3], color=c)
        axes[i, 1].set_xticks(x, names)
        axes[i, 1].set_ylabel("latency (ms)")
        axes[i, 1].set_title(f"{kind}: latency")
        axes[i, 1].legend(fontsize=8)
    fig.suptitle(f"nii end-to-end ({res['model']}, {res['cpu_count']} CPUs, outputs {','.join(res['formats'])})")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def table(res: dict):
    """The results as a rich table (used by ``nii bench e2e`` without ``--json``)."""
    from rich.table import Table

    t = Table(title=f"nii end-to-end ({res['model']}, {res['cpu_count']} CPUs)")
    for col in ("mode", "scan", "n", "scans_per_s", "p50_ms", "p95_ms", "p99_ms", "peak_rss_mb"):
        t.add_column(col, justify="left" if col in ("mode", "scan") else "right")
    for r in table_rows(res):
        t.add_row(*(str(v) for v in r.values()))
    return t
