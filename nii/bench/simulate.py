"""Benchmark of ``nii simulate``: scans per second end to end, and where the time goes.

In one run:

* per-stage milliseconds (scene composition, image formation, HDF5 write) over ``--count``
  scans in one process (after a warm-up scan that loads Numba's cache);
* throughput: ``--count`` scans through a pool of ``--workers`` spawn processes (already
  started and warmed up), as ``nii simulate`` runs them; the goal is >= 4 baggage scans/s
  (~1 Mpx per energy) on 2 cores;
* baseline: the same scenes composed with the plain NumPy projection (``backend="numpy"``);
* memory-copy bound: the time to copy as many bytes as a scene writes (its material stack) and
  a scan stores (its counts), the floor no composer can beat.

The time of ``nii simulate`` itself also includes the rich progress bar and label files, which
are negligible beside these stages.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

import numpy as np

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="baggage_sandwich_140", help="scanner profile (default baggage_sandwich_140)")
    parser.add_argument("--scenario", default="mixed", help="scenario (default mixed)")
    parser.add_argument("--count", type=int, default=12, help="scans per measurement (default 12)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for the throughput run (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compression", choices=("lzf", "gzip", "none"), default="lzf")
    parser.add_argument("--skip-baseline", action="store_true", help="skip the NumPy-projection baseline")


def _warm(_: int) -> float:
    """Worker warm-up: import and load the compiled kernels once."""
    t = time.perf_counter()
    from nii.sim import imaging, run, scenes  # noqa: F401

    return time.perf_counter() - t


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; return a JSON-serialisable dict."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from ..errors import InvalidParameterError
    from ..profiles import load_profile
    from ..sim.run import SimJob, simulate_one
    from ..sim.scenes import compose_scene, scene_grid, scene_seed

    if args.count < 1 or args.workers < 1:
        raise InvalidParameterError("--count and --workers must be >= 1")
    compression = None if args.compression == "none" else args.compression
    profile = load_profile(args.profile)
    grid = scene_grid(profile)
    out: dict[str, Any] = {
        "benchmark": "simulate",
        "profile": args.profile,
        "scenario": args.scenario,
        "grid": list(grid.shape),
        "mpx_per_energy": grid.shape[0] * grid.shape[1] / 1e6,
        "count": args.count,
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "compression": args.compression,
    }
    with tempfile.TemporaryDirectory(prefix="nii-bench-sim-") as tmp:
        jobs = [SimJob(args.profile, args.scenario, args.seed, i, tmp, f"b{i:05d}", compression) for i in range(args.count + 1)]
        t = time.perf_counter()
        simulate_one(jobs[0])  # warm-up: JIT cache load, physics tables
        out["warmup_s"] = time.perf_counter() - t
        recs = [simulate_one(j) for j in jobs[1:]]
        stages = {k: float(np.mean([r.timings_ms[k] for r in recs])) for k in ("scene", "imaging", "write", "total")}
        out["stage_ms"] = {k: round(v, 1) for k, v in stages.items()}
        out["single_process_scans_per_s"] = round(1e3 / stages["total"], 3)
        # throughput through a warmed pool
        with ProcessPoolExecutor(max_workers=args.workers, mp_context=mp.get_context("spawn")) as pool:
            list(pool.map(_warm, range(args.workers)))
            list(pool.map(simulate_one, jobs[: args.workers]))  # warm the kernels in every worker
            t = time.perf_counter()
            list(pool.map(simulate_one, jobs[1:]))
            wall = time.perf_counter() - t
        out["pool_scans_per_s"] = round(args.count / wall, 3)
        out["goal_scans_per_s"] = 4.0
        out["meets_goal"] = out["pool_scans_per_s"] >= 4.0
    # baseline and memory bound on the scene stage (scenes are dropped at once: 40+ MB each)
    seeds = [scene_seed(args.seed, i, args.profile, args.scenario).spawn(2)[0] for i in range(1, args.count + 1)]
    backends = ("numba",) if args.skip_baseline else ("numba", "numpy")
    times = {b: 0.0 for b in backends}
    sizes = []
    for s in seeds:
        for b in backends:  # interleaved, so that machine load hits both alike
            t = time.perf_counter()
            sc = compose_scene(args.scenario, profile, s, grid=grid, backend=b)
            times[b] += time.perf_counter() - t
            sizes.append(sc.stack.thickness_cm.nbytes)
            del sc
    out["scene_numba_ms"] = round(1e3 * times["numba"] / args.count, 1)
    if "numpy" in times:
        out["scene_numpy_baseline_ms"] = round(1e3 * times["numpy"] / args.count, 1)
    nbytes = int(np.mean(sizes)) + 2 * 2 * grid.shape[0] * grid.shape[1]
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    best = min(_timed_copy(src, dst) for _ in range(5))
    out["memcopy_bound_ms"] = round(1e3 * best, 2)
    out["bytes_per_scan"] = nbytes
    return out


def _timed_copy(src: np.ndarray, dst: np.ndarray) -> float:
    t = time.perf_counter()
    np.copyto(dst, src)
    return time.perf_counter() - t
