"""Detector latency benchmark: per baggage scan (~1 Mpx) and per container scan (~2000 x 8000 px),
onnxruntime vs Ultralytics, p50/p95, against a plain-Python post-processing baseline and the
memory-copy bound. Prints JSON.

    .venv/bin/python benchmarks/detect.py [--model detectors/NAME] [--threads 2] [--repeat 15]

Same as ``nii bench detect --json`` (implementation: :mod:`nii.bench.detect`).
"""

import sys

from nii.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "detect", "--json", *sys.argv[1:]]))
