"""Benchmarks runnable as ``nii bench NAME`` (each module: ``add_arguments(parser)``, ``run(args) -> dict``).

Modules are discovered by name from :data:`BENCHMARKS`; missing ones are skipped. The scripts in
``benchmarks/`` call the same functions.
"""

from __future__ import annotations

#: Benchmark module names (``nii/bench/<name>.py``), in the order ``nii bench --help`` lists them.
BENCHMARKS = ("preprocess", "imaging", "simulate", "detect", "networks", "e2e")

__all__ = ["BENCHMARKS"]
