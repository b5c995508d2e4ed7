"""Benchmark of the preprocessing core: full normalisation of a dual-energy scan.

In one run:

* the fused Numba path (:func:`nii.normalization.normalize_and_encode`: attenuation, valid mask,
  Zeff, class, operator colour and detector input) at four scan lengths (cost linear in pixels);
* a plain NumPy implementation of the same steps (:func:`numpy_normalize`) on the largest size;
* the memory-copy bound: the time ``np.copyto`` takes to move as many bytes as the normaliser
  reads (counts) plus writes (all maps), i.e. a copy of ``(read + written) / 2`` bytes;
* the JIT cost of the first call (compile, or load from Numba's cache), reported apart;
* optionally (``--stream-lines N``), streaming normalisation of a ``H x N`` scan in a fresh
  process, with its peak extra resident memory.

``mpx_per_s`` counts pixels of one energy plane (``H * W``) per second.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

__all__ = ["add_arguments", "make_scan", "numpy_normalize", "run"]

_BYTES_WRITTEN_PER_PX = 2 * 4 + 1 + 4 + 1 + 3 + 3  # attenuation (2 planes), valid, zeff, class, colour, input


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--channels", type=int, default=2048, help="detector channels H (default 2048)")
    parser.add_argument("--lines", type=int, default=4096, help="scan lines W of the largest size (default 4096)")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions per size (best is reported)")
    parser.add_argument("--stream-lines", type=int, default=0, metavar="N",
                        help="also stream a H x N scan in a fresh process and report its extra RSS (e.g. 100000)")
    parser.add_argument("--seed", type=int, default=0)


def _table(energies):
    """The shipped table of the baggage profile when present, else a synthetic one (speed only)."""
    from ..calibrate import WedgeMaterial, build_material_table
    from ..errors import NiiError

    try:
        from ..calibrate import load_default_table

        t = load_default_table("baggage_sandwich_140")
        return t.replace(profile=None, energies=energies), "baggage_sandwich_140"
    except NiiError:
        steps = np.geomspace(0.03, 8.0, 12)
        refs = [("pe", 5.4, 1.15), ("water", 7.4, 1.3), ("al", 13.0, 1.7), ("fe", 26.0, 2.6), ("cu", 29.0, 2.9)]
        w = [WedgeMaterial(n, z, steps * r, steps) for n, z, r in refs]
        return build_material_table(w, profile=None, energies=energies), "synthetic"


def make_scan(h: int, w: int, *, seed: int = 0, t0: int = 0):
    """A synthetic dual-energy RawScan with objects, dead channels, drift and start/end air lines."""
    from ..containers import EnergyChannel, RawScan

    rng = np.random.default_rng(seed)
    e = 2
    dark = rng.normal(300.0, 4.0, (e, h)).astype(np.float32)
    gain = rng.normal(30000.0, 600.0, (e, h)).astype(np.float32)
    # smooth random attenuation field: blocks of objects, 25 % air
    yy = np.linspace(0, 6 * np.pi, h, dtype=np.float32)[:, None]
    xx = np.linspace(0, 6 * np.pi * w / 4096, w, dtype=np.float32)[None, :] + np.float32(t0 * 6 * np.pi / 4096)
    l_high = np.maximum(np.float32(0.0), np.sin(yy) * np.cos(xx) * np.float32(4.0) + np.float32(1.0))
    l_low = l_high * np.float32(1.4)
    counts = np.empty((e, h, w), dtype=np.uint16)
    for k, l in enumerate((l_low, l_high)):
        mean = dark[k][:, None] + gain[k][:, None] * np.exp(-l)
        noise = rng.standard_normal((h, w), dtype=np.float32) * np.sqrt(mean)
        counts[k] = np.clip(mean + noise, 0, 65535).astype(np.uint16)
    dead = np.zeros((e, h), bool)
    dead[:, rng.choice(h, size=max(1, h // 200), replace=False)] = True
    counts[dead] = 0
    dark_lines = (dark[..., None] + rng.normal(0, 4.0, (e, h, 16))).astype(np.float32)
    air = dark + gain
    return RawScan(
        counts=counts,
        energies=(EnergyChannel("low", 80.0), EnergyChannel("high", 140.0)),
        pixel_pitch_mm=(1.0, 1.0),
        dark=dark_lines,
        air=air,
        air_end=air * np.float32(1.01),
        dead_mask=dead,
        scan_id=f"bench-{h}x{w}",
    )


def numpy_normalize(raw, table) -> dict[str, np.ndarray]:
    """Plain NumPy implementation of the same steps as the fused kernel (whole-array operations)."""
    from ..calibrate import combine_lines, detect_bad_channels
    from ..encoding import encode_detector_input
    from ..materials import (
        AIR_ATTENUATION_MAX,
        MaterialClass,
        render_pseudocolor,
        zeff_to_class,
    )

    e, _, w = raw.counts.shape
    dark, dstd = combine_lines(raw.dark, return_std=True)
    air0 = (combine_lines(raw.air) if raw.air.ndim == 3 else np.asarray(raw.air, np.float32)) - dark
    air1 = (combine_lines(raw.air_end) if raw.air_end.ndim == 3 else np.asarray(raw.air_end, np.float32)) - dark
    starve = np.maximum(np.float32(4.0), np.float32(5.0) * dstd)
    bad = raw.dead_mask | detect_bad_channels(dark, raw.air, dark_std=dstd)["bad"] | ~(air0 > 2 * starve)
    # open beam linear in line index between the mean times of the start and end air lines
    n_a = raw.air.shape[2] if raw.air.ndim == 3 else 1
    n_b = raw.air_end.shape[2] if raw.air_end.ndim == 3 else 1
    c0, c1 = -(n_a + 1) / 2.0, w - 1 + (n_b + 1) / 2.0
    slope = (air1.astype(np.float64) - air0) / (c1 - c0)
    t = np.arange(w, dtype=np.float32)
    i0 = (air0 - slope * c0).astype(np.float32)[..., None] + slope.astype(np.float32)[..., None] * t
    net = raw.counts.astype(np.float32) - dark[..., None]
    starved = net < starve[..., None]
    np.maximum(net, starve[..., None], out=net)
    att = np.log(i0 / net)
    for k in range(e):
        good = np.nonzero(~bad[k])[0]
        badc = np.nonzero(bad[k])[0]
        p = np.clip(np.searchsorted(good, badc), 1, good.size - 1)
        lo, hi = good[p - 1], good[p]
        wt = np.clip((badc - lo) / (hi - lo), 0, 1).astype(np.float32)[:, None]
        att[k, badc] = att[k, lo] + wt * (att[k, hi] - att[k, lo])
        starved[k, badc] = starved[k, lo] | starved[k, hi]
    l_lo, l_hi = att[0], att[-1]
    imp = starved[-1]
    air = l_hi < np.float32(AIR_ATTENUATION_MAX)
    zeff = table.lookup(l_hi, l_lo / np.maximum(l_hi, np.float32(AIR_ATTENUATION_MAX)))
    zeff[air | imp] = np.nan
    mat = zeff_to_class(zeff)
    mat[air] = MaterialClass.AIR
    mat[imp] = MaterialClass.IMPENETRABLE
    color = render_pseudocolor(l_hi, mat)
    enc = encode_detector_input(l_lo, l_hi, zeff, mat)
    return {"attenuation": att, "valid": ~starved.any(axis=0), "zeff": zeff, "material": mat, "color": color, "enc": enc}


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _copy_time(nbytes: int, repeat: int) -> float:
    src = np.ones(nbytes // 8, dtype=np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    return _best(lambda: np.copyto(dst, src), repeat)


def _breakdown(raw, table, repeat: int) -> dict[str, float]:
    """Where the time of one normalisation goes (best of ``repeat``), in seconds.

    ``prepare``: references, drift, repair plan (per scan, independent of length);
    ``kernel_fresh_outputs``: the fused kernel writing into newly allocated maps, as
    :func:`~nii.normalization.normalize_and_encode` does (the first touch of each page costs a
    page fault and the kernel's zeroing of it);
    ``kernel_preallocated_outputs``: the same kernel writing into maps already in memory, the
    like-for-like comparison with the copy bound (whose buffers are also pre-faulted);
    ``allocate_and_touch_outputs``: allocating and zero-filling the maps alone.
    """
    from .. import normalization as nz

    cal = nz._calibration_for(raw, table, True)
    cal.check(raw)
    e, h, w = raw.counts.shape

    def prep():
        return nz._prepare(raw, cal, total_lines=w, starve_counts=4.0, starve_sigma=5.0, materials=True)

    p = prep()
    out = nz._fused_outputs(e, h, w, want_color=True, want_enc=True)
    nz._run_fused(raw, p, 0, want_color=True, want_enc=True, out=out)

    def touch():
        for a in nz._fused_outputs(e, h, w, want_color=True, want_enc=True).values():
            a.fill(0)

    return {
        "prepare": _best(prep, repeat),
        "kernel_fresh_outputs": _best(lambda: nz._run_fused(raw, p, 0, want_color=True, want_enc=True), repeat),
        "kernel_preallocated_outputs": _best(lambda: nz._run_fused(raw, p, 0, want_color=True, want_enc=True, out=out), repeat),
        "allocate_and_touch_outputs": _best(touch, repeat),
    }


def _stream_child(h: int, lines: int, strip: int, seed: int) -> dict[str, Any]:
    """Runs in a fresh process: stream H x lines through normalize_stream, report extra peak RSS."""
    from ..normalization import normalize_stream

    def hwm() -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return 0  # pragma: no cover

    base = make_scan(h, strip, seed=seed)
    table, _ = _table(base.energies)
    # warm up (compile / cache load) on a small scan before the baseline
    small = make_scan(64, 64, seed=seed)
    for _ in normalize_stream([small], table, total_lines=64):
        pass
    rss0 = hwm()
    n_strips = (lines + strip - 1) // strip

    def strips():
        for i in range(n_strips):
            n = min(strip, lines - i * strip)
            counts = base.counts if n == strip else base.counts[:, :, :n]
            yield base.replace(counts=counts)

    t = time.perf_counter()
    done = 0
    for s in normalize_stream(strips(), table, total_lines=lines):
        done += s.attenuation.shape[2]
    dt = time.perf_counter() - t
    return {"lines": done, "channels": h, "strip_lines": strip, "seconds": dt,
            "mpx_per_s": h * done / dt / 1e6, "extra_rss_mb": (hwm() - rss0) / 2**20}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; returns a JSON-serialisable dict."""
    import numba

    from ..normalization import normalize_and_encode

    h, w_max, repeat = int(args.channels), int(args.lines), int(args.repeat)
    if h < 16 or w_max < 64:
        from ..errors import InvalidParameterError

        raise InvalidParameterError("--channels must be >= 16 and --lines >= 64")
    tiny = make_scan(32, 64, seed=args.seed)
    table, table_src = _table(tiny.energies)
    t = time.perf_counter()
    normalize_and_encode(tiny, table)
    jit_s = time.perf_counter() - t
    sizes = []
    for w in (w_max // 8, w_max // 4, w_max // 2, w_max):
        raw = make_scan(h, w, seed=args.seed)
        normalize_and_encode(raw, table)  # warm (page faults, caches)
        dt = _best(lambda raw=raw: normalize_and_encode(raw, table), repeat)
        sizes.append({"channels": h, "lines": w, "mpx": h * w / 1e6, "seconds": dt, "mpx_per_s": h * w / dt / 1e6})
    raw = make_scan(h, w_max, seed=args.seed)
    dt_numba = sizes[-1]["seconds"]
    breakdown = _breakdown(raw, table, repeat)
    scan, _ = normalize_and_encode(raw, table)
    ref = numpy_normalize(raw, table)
    dt_numpy = _best(lambda: numpy_normalize(raw, table), max(1, min(repeat, 2)))
    agree = {
        "attenuation_max_rel": float(np.max(np.abs(scan.attenuation - ref["attenuation"]) / np.maximum(np.abs(ref["attenuation"]), 1e-3))),
        "material_equal_fraction": float(np.mean(scan.material == ref["material"])),
        "color_equal_fraction": float(np.mean(np.all(scan.color == ref["color"], axis=-1))),
    }
    px = h * w_max
    bytes_read = raw.counts.nbytes
    bytes_written = px * _BYTES_WRITTEN_PER_PX
    copy_s = _copy_time((bytes_read + bytes_written) // 2, repeat)
    result: dict[str, Any] = {
        "benchmark": "preprocess",
        "shape": [2, h, w_max],
        "mpx_per_s": px / dt_numba / 1e6,
        "seconds": dt_numba,
        "numpy_mpx_per_s": px / dt_numpy / 1e6,
        "numpy_seconds": dt_numpy,
        "speedup_vs_numpy": dt_numpy / dt_numba,
        "copy_seconds": copy_s,
        "bytes_read": bytes_read,
        "bytes_written": bytes_written,
        "fraction_of_copy_bound": copy_s / dt_numba,
        "jit_first_call_seconds": jit_s,
        "breakdown_seconds": breakdown,
        "fraction_of_copy_bound_preallocated": copy_s / breakdown["kernel_preallocated_outputs"],
        "sizes": sizes,
        "agreement_with_numpy": agree,
        "table": table_src,
        "threads": numba.get_num_threads(),
        "cpus": os.cpu_count(),
    }
    if args.stream_lines:
        code = (
            "import json,sys; from nii.bench.preprocess import _stream_child as f; "
            f"print(json.dumps(f({h}, {int(args.stream_lines)}, 4096, {int(args.seed)})))"
        )
        cmd = [sys.executable, "-c", code]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            result["stream"] = {"error": proc.stderr.strip()[-2000:]}
        else:
            result["stream"] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
