"""The :class:`Phantom` type and its projection onto a scene grid."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import InvalidParameterError
from .primitives import Grid, Part, chord, splat_ellipsoids, splat_plates

__all__ = ["Phantom", "Projection", "project", "TRUTH_CLASSES"]

#: The detector's classes, in label-index order (COCO category id = index + 1, YOLO id = index).
TRUTH_CLASSES = ("ivory", "ivory_worked", "pangolin_scales", "rhino_horn")


@dataclass(frozen=True, eq=False)
class Phantom:
    """A 3-D object: analytic parts plus optional clouds of small solids, in its own frame (cm).

    Parameters
    ----------
    kind : str
        Catalogue name, e.g. ``"tusk"``.
    parts : tuple of Part
        Convex solids in the phantom frame.
    ellipsoids : dict, optional
        Many small ellipsoids per material: ``{material: (centers (N,3), rots (N,3,3), semi (N,3), inner (N,))}``.
    plates : dict, optional
        Thin plates per material: ``{material: (N, 18) table}`` (see :func:`splat_plates`).
    truth_class : str or None
        One of :data:`TRUTH_CLASSES` for a target, else None.
    role : {"target", "confuser", "clutter", "container"}
    confuser_class : str or None
        Family name of a confuser (``"bone"``, ``"shell"``, ``"pvc_pipe"``...), reported in metadata.
    info : dict
        Dimensions and other facts about the object (JSON-serialisable).
    """

    kind: str
    parts: tuple[Part, ...] = ()
    ellipsoids: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    plates: dict[str, np.ndarray] = field(default_factory=dict)
    truth_class: str | None = None
    role: str = "clutter"
    confuser_class: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.truth_class is not None and self.truth_class not in TRUTH_CLASSES:
            raise InvalidParameterError(f"truth_class must be one of {TRUTH_CLASSES} or None, got {self.truth_class!r}")
        if self.role not in ("target", "confuser", "clutter", "container"):
            raise InvalidParameterError(f"role must be target, confuser, clutter or container, got {self.role!r}")
        object.__setattr__(self, "parts", tuple(self.parts))

    @property
    def materials(self) -> tuple[str, ...]:
        names = [p.material for p in self.parts] + list(self.ellipsoids) + list(self.plates)
        return tuple(dict.fromkeys(names))

    def volume(self) -> float:
        """Volume (cm³) of the analytic parts and ellipsoid clouds (plates excluded)."""
        v = sum(p.volume() for p in self.parts)
        for _centers, _rots, semi, inner in self.ellipsoids.values():
            v += float(np.sum(4.0 / 3.0 * np.pi * np.prod(semi, axis=1) * (1 - np.asarray(inner) ** 3)))
        return v

    def extent(self) -> np.ndarray:
        """Half-size (3,) of a phantom-frame box about the origin holding every part."""
        hi = np.zeros(3)
        for p in self.parts:
            c = p.canonical_corners() @ p.rot.T + p.center
            hi = np.maximum(hi, np.abs(c).max(axis=0))
        for centers, _r, semi, _i in self.ellipsoids.values():
            if len(centers):
                hi = np.maximum(hi, (np.abs(centers) + semi.max(axis=1, keepdims=True)).max(axis=0))
        for table in self.plates.values():
            if len(table):
                hi = np.maximum(hi, (np.abs(table[:, :3]) + table[:, 17:18]).max(axis=0))
        return hi


@dataclass(frozen=True, eq=False)
class Projection:
    """Path-length maps (cm) of one posed phantom over a pixel window ``roi = (i0, i1, j0, j1)``."""

    roi: tuple[int, int, int, int]
    maps: dict[str, np.ndarray]

    def total(self) -> np.ndarray:
        """Path length summed over materials, shape of the window."""
        out = np.zeros((self.roi[1] - self.roi[0], self.roi[3] - self.roi[2]), np.float32)
        for m in self.maps.values():
            out += m
        return out


def _world_xy_bounds(corners: np.ndarray) -> tuple[float, float, float, float]:
    return corners[:, 0].min(), corners[:, 0].max(), corners[:, 1].min(), corners[:, 1].max()


_KIND_CODE = {"ellipsoid": 0, "box": 1, "frustum": 2}


def project(phantom: Phantom, grid: Grid, *, rotation: np.ndarray, center: np.ndarray, backend: str = "numba") -> Projection | None:
    """Project a posed phantom along the beam (``z``) onto ``grid``.

    Parameters
    ----------
    rotation : (3, 3)
        Rotation of the phantom frame into the scene (columns = phantom axes in the scene).
    center : (3,) cm
        Scene position of the phantom origin; ``x`` along the belt (image columns), ``y`` across
        it (rows). ``z`` does not change a parallel projection.
    backend : {"numba", "numpy"}
        ``numba`` runs one compiled loop over all parts; ``numpy`` evaluates each part's chord
        vectorised over its window (:func:`~nii.sim.phantoms.primitives.chord`), the reference.

    Returns
    -------
    Projection or None
        None when the phantom falls entirely outside the grid.

    Examples
    --------
    A 5 mm steel plate lying flat, 2 x 2 cm, on a 1 mm grid:

    >>> import numpy as np
    >>> from nii.sim.phantoms import Grid, Phantom, project
    >>> from nii.sim.phantoms.primitives import box
    >>> plate = Phantom("plate", (box("steel", (1.0, 1.0, 0.25)),))
    >>> pr = project(plate, Grid((40, 40), (1.0, 1.0)), rotation=np.eye(3), center=np.array([2.0, 2.0, 0.0]))
    >>> round(float(pr.maps["steel"].max()), 3), int((pr.maps["steel"] > 0).sum())
    (0.5, 400)
    """
    if backend not in ("numba", "numpy"):
        raise InvalidParameterError(f"backend must be 'numba' or 'numpy', got {backend!r}")
    rot = np.asarray(rotation, np.float64).reshape(3, 3)
    cen = np.asarray(center, np.float64).reshape(3)
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-6):
        raise InvalidParameterError("rotation must be orthonormal")
    posed = []
    bounds = []
    for part in phantom.parts:
        r = rot @ part.rot
        c = cen + rot @ part.center
        corners = part.canonical_corners() @ r.T + c
        b = _world_xy_bounds(corners)
        roi = grid.roi(*b)
        if roi is None:
            continue
        posed.append((part, r, c, roi))
        bounds.append(roi)
    clouds = []
    for mat, (centers, rots, semi, inner) in phantom.ellipsoids.items():
        if len(centers) == 0:
            continue
        wc = centers @ rot.T + cen
        wr = np.einsum("ij,njk->nik", rot, rots)
        rmax = semi.max(axis=1)
        roi = grid.roi((wc[:, 0] - rmax).min(), (wc[:, 0] + rmax).max(), (wc[:, 1] - rmax).min(), (wc[:, 1] + rmax).max())
        if roi is None:
            continue
        clouds.append((mat, wc, wr, semi, inner))
        bounds.append(roi)
    plate_sets = []
    for mat, table in phantom.plates.items():
        if len(table) == 0:
            continue
        t = table.copy()
        t[:, 0:3] = table[:, 0:3] @ rot.T + cen
        t[:, 3:6] = table[:, 3:6] @ rot.T
        t[:, 6:9] = table[:, 6:9] @ rot.T
        t[:, 9:12] = table[:, 9:12] @ rot.T
        r = t[:, 17]
        roi = grid.roi((t[:, 0] - r).min(), (t[:, 0] + r).max(), (t[:, 1] - r).min(), (t[:, 1] + r).max())
        if roi is None:
            continue
        plate_sets.append((mat, t))
        bounds.append(roi)
    if not bounds:
        return None
    b = np.array(bounds)
    i0, i1, j0, j1 = int(b[:, 0].min()), int(b[:, 1].max()), int(b[:, 2].min()), int(b[:, 3].max())
    shape = (i1 - i0, j1 - j0)
    names = list(dict.fromkeys([p[0].material for p in posed] + [c[0] for c in clouds] + [t[0] for t in plate_sets]))
    buf3 = np.zeros((len(names), *shape), np.float32)
    maps = {n: buf3[k] for k, n in enumerate(names)}

    def buf(material: str) -> np.ndarray:
        return maps[material]

    if posed and backend == "numba":
        from ..._kernels.scene import project_parts_kernel

        n = len(posed)
        par = np.zeros((n, 9))
        for k, (part, _r, _c, _roi) in enumerate(posed):
            par[k, : len(part.params)] = part.params
        project_parts_kernel(
            buf3,
            np.array([names.index(p[0].material) for p in posed], np.int64),
            np.array([_KIND_CODE[p[0].kind] for p in posed], np.int64),
            np.ascontiguousarray(np.stack([p[1] for p in posed])),
            np.ascontiguousarray(np.stack([p[2] for p in posed])),
            par,
            np.array([float(p[0].sign) for p in posed]),
            np.array([p[3] for p in posed], np.int64),
            i0, j0, grid.py, grid.px,
        )
    elif posed:
        for part, r, c, (a0, a1, c0, c1) in posed:
            ys = (np.arange(a0, a1) + 0.5) * grid.py - c[1]
            xs = (np.arange(c0, c1) + 0.5) * grid.px - c[0]
            X = xs[None, :]
            Y = ys[:, None]
            # canonical-frame origin o = r^T (p - c) with p_z = c_z; direction d = r^T e_z
            o = (r[0, 0] * X + r[1, 0] * Y, r[0, 1] * X + r[1, 1] * Y, r[0, 2] * X + r[1, 2] * Y)
            ch = chord(part, o, r[2, :])
            buf(part.material)[a0 - i0 : a1 - i0, c0 - j0 : c1 - j0] += (part.sign * ch).astype(np.float32)
    for mat, wc, wr, semi, inner in clouds:
        splat_ellipsoids(buf(mat), wc, wr, semi, inner=inner, origin=(i0, j0), grid=grid)
    for mat, t in plate_sets:
        splat_plates(buf(mat), t, origin=(i0, j0), grid=grid)
    np.maximum(buf3, 0.0, out=buf3)  # cavities cancel their host exactly; clip rounding
    return Projection((i0, i1, j0, j1), maps)
