"""``python -m nii`` is the ``nii`` command (for machines where the package is only on PYTHONPATH)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_python_m_nii_runs_the_cli():
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "nii", "train", "--help"], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--from-weights" in out.stdout and "--weights-only" in out.stdout and "--init-weights" in out.stdout
