"""Simulator benchmark: scans/s end to end (scene + imaging + HDF5), per-stage ms, NumPy baseline,
memory-copy bound.

Usage: ``python benchmarks/simulate.py [--profile baggage_sandwich_140] [--count 12] [--workers 2]``
(same as ``nii bench simulate``). Prints JSON.
"""

import sys

from nii.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "simulate", "--json", *sys.argv[1:]]))
