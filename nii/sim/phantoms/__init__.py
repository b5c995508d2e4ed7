"""Phantoms: 3-D objects (targets, confusers, clutter, containers) projected to path-length maps.

* :mod:`.primitives` — analytic convex solids (ellipsoid, box, mitred frustum) with exact
  parallel-beam chords, and Numba splatting of many small ellipsoids or thin plates;
* :mod:`.base` — :class:`Phantom` and :func:`project`;
* :mod:`.library` — the catalogue (:data:`CATALOG`, :func:`build`).
"""

from __future__ import annotations

from .base import TRUTH_CLASSES, Phantom, Projection, project
from .library import CATALOG, build, catalog_names
from .primitives import Grid, random_rotation

__all__ = ["TRUTH_CLASSES", "Phantom", "Projection", "project", "CATALOG", "build", "catalog_names", "Grid", "random_rotation"]
