"""Benchmark of image formation alone (:func:`nii.sim.imaging.form_image`).

In one run, on a synthetic baggage-like material stack (``--channels`` x ``--lines`` pixels,
10 materials, a few per pixel, ~25 % air):

* ``form_image`` with all detector effects, best of ``--repeat``, split into the Numba
  transmission kernel and the rest (blur, scatter, noise, ADC);
* the transmission kernel with 1 thread and with all Numba threads;
* a plain NumPy baseline of the same binned transmission (``np.exp`` on the bins), on the same
  stack;
* the memory-copy bound: copying as many bytes as the kernel reads (the stack) plus writes
  (two float32 planes per energy);
* the first call's cost (Numba cache load or compile), reported apart;
* the binning: bins per channel and their maximum relative error of ``L`` against the 1 keV grid.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

__all__ = ["add_arguments", "make_stack", "numpy_transmission", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="baggage_sandwich_140", help="scanner profile (default baggage_sandwich_140)")
    parser.add_argument("--channels", type=int, default=1024, help="detector channels H (default 1024)")
    parser.add_argument("--lines", type=int, default=1000, help="scan lines W (default 1000: ~1 Mpx per energy)")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions (best is reported)")
    parser.add_argument("--seed", type=int, default=0)


def make_stack(h: int, w: int, pitch: tuple[float, float], *, seed: int = 0):
    """A baggage-like :class:`~nii.sim.types.MaterialStack`: a bag of clothes with objects in it."""
    from ..sim.types import MaterialStack

    rng = np.random.default_rng(seed)
    names = ("nylon", "cotton", "water", "aluminium", "steel", "ivory", "keratin", "pvc", "paper", "copper")
    t = np.zeros((len(names), h, w), np.float32)
    y0, y1, x0, x1 = int(0.1 * h), int(0.9 * h), int(0.1 * w), int(0.95 * w)
    t[0, y0:y1, x0:x1] = 0.4  # bag shell
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    clothes = 8.0 * (0.5 + 0.5 * np.sin(yy / 37.0) * np.cos(xx / 53.0))
    t[1, y0:y1, x0:x1] = clothes[y0:y1, x0:x1]
    for m in range(2, len(names)):
        for _ in range(3):
            cy, cx = rng.uniform(y0, y1), rng.uniform(x0, x1)
            ry, rx = rng.uniform(0.03, 0.12) * h, rng.uniform(0.03, 0.12) * w
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
            depth = {2: 6.0, 3: 0.5, 4: 0.3, 5: 3.0, 6: 2.0, 7: 1.0, 8: 1.5, 9: 0.1}[m]
            t[m][inside] += depth * np.sqrt(1 - np.minimum(1, ((yy[inside] - cy) / ry) ** 2 + ((xx[inside] - cx) / rx) ** 2))
    return MaterialStack(names, t, pitch)


def numpy_transmission(thick: np.ndarray, mu: np.ndarray, w1: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Plain NumPy binned transmission ``sum_b w1 exp(-sum_m mu t)`` (float32, chunked)."""
    m, h, w = thick.shape
    flat = thick.reshape(m, -1)
    out = np.empty((mu.shape[0], h * w), np.float32)
    for s in range(0, h * w, chunk):
        blk = flat[:, s : s + chunk]
        for e in range(mu.shape[0]):
            att = mu[e].T @ blk  # (B, n)
            out[e, s : s + chunk] = w1[e] @ np.exp(-att)
    return out.reshape(mu.shape[0], h, w)


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; return a JSON-serialisable dict."""
    import numba

    from .._kernels.sim import transmission_kernel
    from ..physics.tables import load_tables
    from ..profiles import load_profile
    from ..sim.imaging import form_image, polychromatic_transmission, spectral_bins

    prof = load_profile(args.profile)
    tables = load_tables()
    stack = make_stack(args.channels, args.lines, prof.pixel_pitch_mm, seed=args.seed)
    h, w = stack.shape
    mpx = h * w / 1e6
    bins = spectral_bins(prof, tables)

    t0 = time.perf_counter()
    polychromatic_transmission(stack.thickness_cm[:, :4, :4], stack.materials, prof, tables=tables)
    first_call = time.perf_counter() - t0

    kernel_s = _best(lambda: polychromatic_transmission(stack.thickness_cm, stack.materials, prof, tables=tables), args.repeat)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        kernel_1t = _best(lambda: polychromatic_transmission(stack.thickness_cm, stack.materials, prof, tables=tables), args.repeat)
    finally:
        numba.set_num_threads(threads)
    form_s = _best(lambda: form_image(stack, prof, seed=args.seed, tables=tables), args.repeat)

    idx = [tables.index(m) for m in stack.materials]
    mu = np.ascontiguousarray(bins.mu[:, idx, :])
    numpy_s = _best(lambda: numpy_transmission(np.asarray(stack.thickness_cm), mu, bins.w1), 1)

    src = np.asarray(stack.thickness_cm)
    n_bytes = src.nbytes + 2 * prof.n_energies * h * w * 4
    a = np.empty(n_bytes // 4, np.float32)
    b = np.ones_like(a)
    copy_s = _best(lambda: np.copyto(a, b), args.repeat)

    nz = (src > 0).sum(axis=0)
    return {
        "benchmark": "imaging",
        "profile": prof.id,
        "shape": [prof.n_energies, h, w],
        "mpx_per_energy": round(mpx, 3),
        "materials": len(stack.materials),
        "mean_materials_per_pixel": round(float(nz.mean()), 2),
        "air_fraction": round(float((nz == 0).mean()), 3),
        "energy_bins": list(bins.n_bins),
        "binning_max_rel_error": float(f"{bins.max_rel_error:.3e}"),
        "numba_threads": threads,
        "first_call_s": round(first_call, 3),
        "form_image_ms": round(1e3 * form_s, 1),
        "form_image_ms_per_mpx": round(1e3 * form_s / mpx, 1),
        "kernel_ms": round(1e3 * kernel_s, 1),
        "kernel_1thread_ms": round(1e3 * kernel_1t, 1),
        "rest_of_form_image_ms": round(1e3 * (form_s - kernel_s), 1),
        "numpy_baseline_kernel_ms": round(1e3 * numpy_s, 1),
        "speedup_vs_numpy": round(numpy_s / kernel_s, 1),
        "memcopy_bound_ms": round(1e3 * copy_s, 2),
        "kernel_uses": transmission_kernel.__name__,
    }
