"""Regenerate ``detectors/demo-tiny`` (the tiny demo model the tests load). Reviewed script, not a test.

    .venv/bin/python tests/detect/make_demo_model.py [OUT]

Needs the ``train`` extra. About 2 minutes on 2 CPU cores: a synthetic-shapes dataset
(:func:`nii.dataset.synthetic.build_synthetic_dataset`, 128-px tiles, seed 7) and 60 epochs of
the ``yolo11-pico`` architecture (~0.1 M parameters). The result is deterministic up to torch's
CPU kernels; commit the folder with its SHA256SUMS after checking ``metrics.json``.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path


def main(out: str) -> None:
    from nii.dataset.synthetic import build_synthetic_dataset
    from nii.detect.training import Recipe, train_model

    logging.basicConfig(level=logging.INFO)
    with tempfile.TemporaryDirectory(prefix="nii-demo-") as tmp:
        data = build_synthetic_dataset(Path(tmp) / "data", size=128, n_train=320, n_val=80, n_test=80, seed=7)
        recipe = Recipe(model="yolo11-pico", imgsz=128, epochs=60, batch=16, seed=7, time_hours=None, workers=0, close_mosaic=10)
        train_model(data, out, recipe=recipe, name="demo-tiny", work_dir=Path(tmp) / "work", command="tests/detect/make_demo_model.py")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[2] / "detectors" / "demo-tiny"))
