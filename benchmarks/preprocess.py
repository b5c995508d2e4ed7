"""Preprocessing benchmark: fused Numba normalisation vs plain NumPy vs the memory-copy bound.

Usage: ``python benchmarks/preprocess.py [--channels 2048] [--lines 4096] [--stream-lines 100000]``
(same as ``nii bench preprocess --json``). Prints JSON.
"""

import sys

from nii.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "preprocess", "--json", *sys.argv[1:]]))
