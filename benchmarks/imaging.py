"""Image-formation benchmark: Numba transmission kernel and full ``form_image`` vs plain NumPy vs memory copy.

Usage: ``python benchmarks/imaging.py [--profile baggage_sandwich_140] [--channels 1024] [--lines 1000]``
(same as ``nii bench imaging``). Prints JSON.
"""

import sys

from nii.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "imaging", "--json", *sys.argv[1:]]))
