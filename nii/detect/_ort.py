"""onnxruntime session options shared by nii's CPU sessions (detector and second stage).

Worker threads of an onnxruntime intra-op pool spin on the CPU, by default, while they wait for
work, also after a run has returned. On the 2-core stations nii targets, the next steps of the
same scan (the anomaly cue's and the encoder's Numba kernels) and the next scan then share the
cores with threads that only wait: with spinning, a baggage scan took 27.7-28.0 ms at p50 and
49-63 ms at p95 (`nii bench detect`), without it 20.9-23.0 ms and 24-26 ms, while the network's
own call changed by under 1 ms at p50 (measured 2026-11-27, see detectors/README "Latency").
nii therefore turns spinning off.
"""

from __future__ import annotations

from typing import Any

__all__ = ["session_options"]

#: onnxruntime's session config key for intra-op worker spinning ("1" = spin, its default)
ALLOW_SPINNING = "session.intra_op.allow_spinning"


def session_options(threads: int) -> Any:
    """``onnxruntime.SessionOptions``: ``threads`` intra-op threads, one inter-op thread, quiet
    logs, worker threads that sleep rather than spin while they wait."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry(ALLOW_SPINNING, "0")
    return opts
