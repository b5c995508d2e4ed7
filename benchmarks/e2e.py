"""End-to-end benchmark: scans per second and latency p50/p95/p99 through the Python API, the HTTP
service (bounded local load client) and Dask with 1 and 2 workers, for baggage- and container-size
scans; peak memory per worker. Prints a table (stderr) and JSON (stdout), saves a plot.

    .venv/bin/python benchmarks/e2e.py [--baggage 24] [--containers 4] [--container 2000x8000] [--plot e2e-bench.png]

Same as ``nii bench e2e --json`` (implementation: :mod:`nii.bench.e2e`).
"""

import sys

from nii.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "e2e", "--json", *sys.argv[1:]]))
