"""Cost per tile of detector networks: the model's own at other tile sizes, and untrained YOLO11
scales (the ``train`` extra), p50/p95 per tile, ratios to the model's network and the memory-copy
bound. Prints JSON.

    .venv/bin/python benchmarks/networks.py [--model detectors/NAME] [--tiles 320,480] [--scales yolo11n,yolo11s]

Same as ``nii bench networks --json`` (implementation: :mod:`nii.bench.networks`).
"""

import sys

from nii.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "networks", "--json", *sys.argv[1:]]))
