"""Analytic solids and their parallel-beam projection to path-length maps.

A phantom is a set of solids (*parts*) in its own frame, posed in the scene by a rotation ``R``
and a centre ``c`` (cm). The beam runs along the scene's ``z`` axis; a detector pixel is the ray
``p(t) = (x, y, t)``. Mapped into a part's canonical frame the ray is ``o + t d`` with ``|d| = 1``,
so the length of the ``t`` interval inside the solid is the path length in cm. Every solid here is
convex and its chord is found in closed form, vectorised over the pixels of the part's own
bounding box: projection is exact up to pixel sampling, whatever the rotation.

Canonical solids
----------------
``ellipsoid``  semi-axes ``(a, b, c)`` about the origin.
``box``        half-extents ``(hx, hy, hz)`` about the origin.
``frustum``    circular cone frustum on the ``z`` axis from ``z = 0`` (radius ``r0``) to ``z = L``
               (radius ``r1``), cut by a start plane through the origin and an end plane through
               ``(0, 0, L)`` (normals ``n0``, ``n1`` pointing into the solid). Consecutive frusta
               of a bent tube share mitre planes, so a tube is partitioned exactly into them.

A part has a sign: ``-1`` removes material (a pulp cavity, a marrow cavity, a hollow log), and is
always nested in a ``+1`` part of the same material.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import InvalidParameterError

__all__ = [
    "Grid",
    "Part",
    "ellipsoid",
    "box",
    "tube",
    "hollow_box",
    "random_rotation",
    "random_rotations",
    "rotation_about",
    "chord",
    "splat_ellipsoids",
    "splat_plates",
]


@dataclass(frozen=True)
class Grid:
    """Pixel grid of a scene: ``shape = (H, W)`` and pitch ``(detector_mm, line_mm)``.

    Pixel ``(i, j)`` is centred at ``y = (i + 0.5) * py``, ``x = (j + 0.5) * px`` in cm, where
    ``py = detector_mm / 10`` and ``px = line_mm / 10``; truth boxes use ``x`` along ``W``.
    """

    shape: tuple[int, int]
    pitch_mm: tuple[float, float]

    def __post_init__(self) -> None:
        h, w = (int(s) for s in self.shape)
        if h < 1 or w < 1:
            raise InvalidParameterError(f"grid shape must be positive, got {self.shape}")
        det, line = (float(p) for p in self.pitch_mm)
        if not (det > 0 and line > 0):
            raise InvalidParameterError(f"grid pitch_mm must be positive, got {self.pitch_mm}")
        object.__setattr__(self, "shape", (h, w))
        object.__setattr__(self, "pitch_mm", (det, line))

    @property
    def py(self) -> float:
        """Detector pitch in cm (rows, ``H``)."""
        return self.pitch_mm[0] / 10.0

    @property
    def px(self) -> float:
        """Line pitch in cm (columns, ``W``)."""
        return self.pitch_mm[1] / 10.0

    @property
    def size_cm(self) -> tuple[float, float]:
        """``(height, width)`` of the image in cm."""
        return self.shape[0] * self.py, self.shape[1] * self.px

    @property
    def pixel_area_cm2(self) -> float:
        return self.py * self.px

    def roi(self, xmin: float, xmax: float, ymin: float, ymax: float) -> tuple[int, int, int, int] | None:
        """Pixel rows ``[i0, i1)`` and columns ``[j0, j1)`` whose centres may fall in the cm box."""
        i0 = max(int(np.floor(ymin / self.py - 0.5)), 0)
        i1 = min(int(np.ceil(ymax / self.py - 0.5)) + 1, self.shape[0])
        j0 = max(int(np.floor(xmin / self.px - 0.5)), 0)
        j1 = min(int(np.ceil(xmax / self.px - 0.5)) + 1, self.shape[1])
        if i1 <= i0 or j1 <= j0:
            return None
        return i0, i1, j0, j1


#: The eight corners of the unit cube [0, 1]^3 (read-only).
_CUBE01 = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=np.float64)
_CUBE01.flags.writeable = False


@dataclass(frozen=True, eq=False)
class Part:
    """One convex solid of a phantom, in the phantom's frame.

    Parameters
    ----------
    kind : {"ellipsoid", "box", "frustum"}
    material : str
        Material name of the physics tables.
    center : (3,) float
        Origin of the part's canonical frame in the phantom frame (cm).
    rot : (3, 3) float
        Columns are the canonical axes expressed in the phantom frame.
    params : tuple of float
        ``ellipsoid``: ``(a, b, c)``; ``box``: ``(hx, hy, hz)``;
        ``frustum``: ``(L, r0, r1, n0x, n0y, n0z, n1x, n1y, n1z)``.
    sign : {+1, -1}
        ``-1`` subtracts (a cavity inside a ``+1`` part of the same material).
    """

    kind: str
    material: str
    center: np.ndarray
    rot: np.ndarray
    params: tuple[float, ...]
    sign: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("ellipsoid", "box", "frustum"):
            raise InvalidParameterError(f"Part.kind must be ellipsoid, box or frustum, got {self.kind!r}")
        if self.sign not in (1, -1):
            raise InvalidParameterError(f"Part.sign must be +1 or -1, got {self.sign!r}")
        object.__setattr__(self, "center", np.asarray(self.center, dtype=np.float64).reshape(3))
        object.__setattr__(self, "rot", np.asarray(self.rot, dtype=np.float64).reshape(3, 3))
        object.__setattr__(self, "params", tuple(float(p) for p in self.params))

    def half_extent(self) -> np.ndarray:
        """Half-size of an axis-aligned box about the canonical origin holding the solid."""
        p = self.params
        if self.kind in ("ellipsoid", "box"):
            return np.abs(np.array(p[:3]))
        rmax = max(p[1], p[2])
        return np.array([rmax, rmax, p[0] + rmax])

    def canonical_corners(self) -> np.ndarray:
        """Eight corners (8, 3) of a canonical-frame box holding the solid."""
        if self.kind == "frustum":
            rmax = max(self.params[1], self.params[2])
            lo = np.array([-rmax, -rmax, -rmax])
            hi = np.array([rmax, rmax, self.params[0] + rmax])
        else:
            hi = self.half_extent()
            lo = -hi
        return lo + _CUBE01 * (hi - lo)

    def volume(self) -> float:
        """Volume in cm³ (a frustum ignores its mitre cuts, exact for perpendicular ends)."""
        p = self.params
        if self.kind == "ellipsoid":
            v = 4.0 / 3.0 * np.pi * p[0] * p[1] * p[2]
        elif self.kind == "box":
            v = 8.0 * p[0] * p[1] * p[2]
        else:
            v = np.pi * p[0] / 3.0 * (p[1] ** 2 + p[1] * p[2] + p[2] ** 2)
        return float(self.sign * v)


# ----------------------------------------------------------------------------------------------
# construction helpers


def rotation_about(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix for ``angle`` radians about ``axis`` (Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    n = np.linalg.norm(a)
    if n == 0:
        return np.eye(3)
    a = a / n
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def random_rotation(rng: np.random.Generator, *, max_tilt_deg: float | None = None) -> np.ndarray:
    """A random rotation.

    ``max_tilt_deg=None`` draws uniformly from SO(3) (random unit quaternion). Otherwise the object
    is first spun about its own axes at random (so any face may lie down), then turned about the
    beam axis ``z`` uniformly and tilted by at most ``max_tilt_deg`` about a random horizontal axis,
    which is how objects lie in a bag or a carton.
    """
    if max_tilt_deg is None:
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        w, x, y, z = q
        return np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )
    yaw = rotation_about(np.array([0.0, 0.0, 1.0]), rng.uniform(0, 2 * np.pi))
    phi = rng.uniform(0, 2 * np.pi)
    tilt = rotation_about(np.array([np.cos(phi), np.sin(phi), 0.0]), np.deg2rad(rng.uniform(-max_tilt_deg, max_tilt_deg)))
    return tilt @ yaw


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` rotations (n, 3, 3) drawn uniformly from SO(3) (normalised Gaussian quaternions)."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=-1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=-1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1),
        ],
        axis=1,
    )


def _frame_from_z(z: np.ndarray) -> np.ndarray:
    """Rotation whose third column is the unit vector ``z``."""
    z = z / np.linalg.norm(z)
    helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.column_stack([x, y, z])


def ellipsoid(material: str, semi: tuple[float, float, float], *, center=(0.0, 0.0, 0.0), rot=None, sign: int = 1) -> Part:
    """Ellipsoid part with semi-axes ``semi`` (cm)."""
    if min(semi) <= 0:
        raise InvalidParameterError(f"ellipsoid semi-axes must be positive, got {semi}")
    return Part("ellipsoid", material, np.asarray(center, float), np.eye(3) if rot is None else rot, tuple(semi), sign)


def box(material: str, half: tuple[float, float, float], *, center=(0.0, 0.0, 0.0), rot=None, sign: int = 1) -> Part:
    """Cuboid part with half-extents ``half`` (cm)."""
    if min(half) <= 0:
        raise InvalidParameterError(f"box half-extents must be positive, got {half}")
    return Part("box", material, np.asarray(center, float), np.eye(3) if rot is None else rot, tuple(half), sign)


def hollow_box(material: str, half: tuple[float, float, float], wall: float, *, center=(0.0, 0.0, 0.0), rot=None) -> list[Part]:
    """A closed box shell of wall thickness ``wall`` (outer box minus inner box)."""
    inner = tuple(h - wall for h in half)
    parts = [box(material, half, center=center, rot=rot)]
    if min(inner) > 0:
        parts.append(box(material, inner, center=center, rot=rot, sign=-1))
    return parts


def tube(material: str, points: np.ndarray, radii: np.ndarray, *, closed: bool = False, sign: int = 1) -> list[Part]:
    """A tube of circular section along a polyline, as mitred frusta.

    Parameters
    ----------
    points : (n, 3) array
        Centreline in cm (for ``closed=True`` the last point joins the first).
    radii : (n,) array
        Radius (cm) at each point, linear in between; must be non-negative.
    closed : bool
        Join the last point to the first (a ring, e.g. a bangle).
    """
    pts = np.asarray(points, dtype=np.float64)
    rad = np.asarray(radii, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or pts.shape[0] < 2 or rad.shape != (pts.shape[0],):
        raise InvalidParameterError(f"tube needs (n>=2, 3) points and (n,) radii, got {pts.shape} and {rad.shape}")
    if np.any(rad < 0):
        raise InvalidParameterError("tube radii must be non-negative")
    if closed:
        pts = np.vstack([pts, pts[:1]])
        rad = np.append(rad, rad[0])
    seg = np.diff(pts, axis=0)
    lengths = np.linalg.norm(seg, axis=1)
    if np.any(lengths <= 0):
        raise InvalidParameterError("tube points must be distinct")
    tang = seg / lengths[:, None]
    nseg = len(tang)
    # joint normals: bisector of the adjoining tangents (the end tangents at open ends)
    joint = np.empty((nseg + 1, 3))
    joint[0] = tang[0] if not closed else tang[-1] + tang[0]
    joint[-1] = tang[-1] if not closed else tang[-1] + tang[0]
    joint[1:-1] = tang[:-1] + tang[1:]
    joint /= np.linalg.norm(joint, axis=1, keepdims=True)
    parts = []
    for k in range(nseg):
        if rad[k] == 0 and rad[k + 1] == 0:
            continue
        frame = _frame_from_z(tang[k])
        n0 = frame.T @ joint[k]
        n1 = -(frame.T @ joint[k + 1])
        parts.append(
            Part(
                "frustum",
                material,
                pts[k],
                frame,
                (lengths[k], rad[k], rad[k + 1], *n0, *n1),
                sign,
            )
        )
    return parts


# ----------------------------------------------------------------------------------------------
# chords


def _interval_len(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.maximum(hi - lo, 0.0)


def _slab(o: np.ndarray, d: float, lo: float, hi: float, tlo: np.ndarray, thi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intersect ``[tlo, thi]`` with the ray's ``lo <= o + t d <= hi``."""
    if abs(d) < 1e-12:
        outside = (o < lo) | (o > hi)
        return tlo, np.where(outside, -np.inf, thi)
    t0 = (lo - o) / d
    t1 = (hi - o) / d
    return np.maximum(tlo, np.minimum(t0, t1)), np.minimum(thi, np.maximum(t0, t1))


def _halfspace(o_dot_n: np.ndarray, d_dot_n: float, tlo: np.ndarray, thi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intersect ``[tlo, thi]`` with ``o.n + t d.n >= 0``."""
    if abs(d_dot_n) < 1e-12:
        return tlo, np.where(o_dot_n < 0, -np.inf, thi)
    t = -o_dot_n / d_dot_n
    if d_dot_n > 0:
        return np.maximum(tlo, t), thi
    return tlo, np.minimum(thi, t)


def chord(part: Part, o: tuple[np.ndarray, np.ndarray, np.ndarray], d: np.ndarray) -> np.ndarray:
    """Path length (cm) of rays ``o + t d`` (canonical frame, ``|d| = 1``) through ``part``."""
    ox, oy, oz = o
    dx, dy, dz = (float(v) for v in d)
    p = part.params
    if part.kind == "ellipsoid":
        a0, b0, c0 = p[:3]
        qx, qy, qz = ox / a0, oy / b0, oz / c0
        ex, ey, ez = dx / a0, dy / b0, dz / c0
        a = ex * ex + ey * ey + ez * ez
        b = qx * ex + qy * ey + qz * ez
        c = qx * qx + qy * qy + qz * qz - 1.0
        disc = b * b - a * c
        return 2.0 * np.sqrt(np.maximum(disc, 0.0)) / a
    shape = np.broadcast_shapes(np.shape(ox), np.shape(oy), np.shape(oz))
    tlo = np.full(shape, -np.inf)
    thi = np.full(shape, np.inf)
    if part.kind == "box":
        for oc, dc, h in ((ox, dx, p[0]), (oy, dy, p[1]), (oz, dz, p[2])):
            tlo, thi = _slab(np.broadcast_to(oc, shape), dc, -h, h, tlo, thi)
        return _interval_len(tlo, thi)
    # frustum
    length, r0, r1 = p[0], p[1], p[2]
    n0 = p[3:6]
    n1 = p[6:9]
    tlo, thi = _halfspace(ox * n0[0] + oy * n0[1] + oz * n0[2], dx * n0[0] + dy * n0[1] + dz * n0[2], tlo, thi)
    tlo, thi = _halfspace(ox * n1[0] + oy * n1[1] + (oz - length) * n1[2], dx * n1[0] + dy * n1[1] + dz * n1[2], tlo, thi)
    k = (r1 - r0) / length
    # keep to the nappe where the radius r0 + k z is non-negative
    if k != 0.0:
        tlo, thi = _halfspace(r0 + k * oz, k * dz, tlo, thi)
    # x^2 + y^2 - (r0 + k z)^2 <= 0  ->  A t^2 + 2 B t + C <= 0
    rz = r0 + k * oz
    a = dx * dx + dy * dy - (k * dz) ** 2
    b = ox * dx + oy * dy - rz * k * dz
    c = ox * ox + oy * oy - rz * rz
    if abs(a) < 1e-12:
        a = 1e-12 if a >= 0 else -1e-12
    disc = b * b - a * c
    sq = np.sqrt(np.maximum(disc, 0.0))
    # numerically stable roots of a t^2 + 2 b t + c
    q = -(b + np.where(b >= 0, sq, -sq))
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = q / a
        t2 = np.where(q != 0, c / q, t1)
    t1, t2 = np.minimum(t1, t2), np.maximum(t1, t2)
    if a > 0:
        inside = _interval_len(np.maximum(tlo, t1), np.minimum(thi, t2))
        return np.where(disc > 0, inside, 0.0)
    # a < 0: inside is (-inf, t1] U [t2, inf) (both nappes; the half-space above keeps one)
    left = _interval_len(tlo, np.minimum(thi, t1))
    right = _interval_len(np.maximum(tlo, t2), thi)
    return np.where(disc > 0, left + right, _interval_len(tlo, thi))


# ----------------------------------------------------------------------------------------------
# splatting many small solids (Numba kernels behind validating wrappers)


def _check_out(out: np.ndarray) -> None:
    if not isinstance(out, np.ndarray) or out.ndim != 2 or out.dtype != np.float32 or not out.flags.c_contiguous or not out.flags.writeable:
        raise InvalidParameterError("out must be a writeable C-contiguous float32 (H, W) array")


def splat_ellipsoids(out: np.ndarray, centers: np.ndarray, rots: np.ndarray, semi: np.ndarray, *, inner: np.ndarray | None = None,
                     origin: tuple[int, int] = (0, 0), grid: Grid) -> np.ndarray:
    """Add the chords of many ellipsoids (solid or hollow shells) to ``out`` in place.

    Parameters
    ----------
    out : (h, w) float32
        Map covering scene pixels ``[origin[0], origin[0] + h) x [origin[1], origin[1] + w)``.
    centers : (N, 3) cm
    rots : (N, 3, 3)
        Rotation of each ellipsoid (columns = its axes in the scene).
    semi : (N, 3) cm
        Semi-axes.
    inner : (N,), optional
        Hollow fraction in [0, 1): a shell is the ellipsoid minus the same one scaled by ``inner``.
    """
    _check_out(out)
    centers = np.asarray(centers, np.float64).reshape(-1, 3)
    n = centers.shape[0]
    rots = np.asarray(rots, np.float64).reshape(n, 3, 3)
    semi = np.asarray(semi, np.float64).reshape(n, 3)
    if np.any(semi <= 0):
        raise InvalidParameterError("ellipsoid semi-axes must be positive")
    inner_arr = np.zeros(n) if inner is None else np.asarray(inner, np.float64).reshape(n)
    if np.any((inner_arr < 0) | (inner_arr >= 1)):
        raise InvalidParameterError("inner fractions must lie in [0, 1)")
    if n == 0:
        return out
    # M = R diag(1/s^2) R^T; projected form P = Mxy - m m^T / M33, peak chord 2 / sqrt(M33)
    m = np.einsum("nij,nj,nkj->nik", rots, 1.0 / semi**2, rots)
    a = m[:, 2, 2]
    mx, my = m[:, 0, 2], m[:, 1, 2]
    p00 = m[:, 0, 0] - mx * mx / a
    p01 = m[:, 0, 1] - mx * my / a
    p11 = m[:, 1, 1] - my * my / a
    params = np.column_stack([centers[:, 0], centers[:, 1], p00, p01, p11, 2.0 / np.sqrt(a), inner_arr, semi.max(axis=1)])
    from ..._kernels.scene import splat_ellipsoids_kernel

    splat_ellipsoids_kernel(out, np.ascontiguousarray(params), int(origin[0]), int(origin[1]), grid.py, grid.px)
    return out


#: Columns of the plate parameter table of :func:`splat_plates`.
PLATE_COLUMNS = ("cx", "cy", "cz", "ux", "uy", "uz", "vx", "vy", "vz", "nx", "ny", "nz",
                 "width", "length", "thick", "ridge_period", "ridge_depth", "rmax")


def splat_plates(out: np.ndarray, plates: np.ndarray, *, origin: tuple[int, int] = (0, 0), grid: Grid, min_cos: float = 0.15) -> np.ndarray:
    """Add the path length through thin ridged shield-shaped plates to ``out`` in place.

    ``plates`` is an ``(N, 18)`` table with the columns of :data:`PLATE_COLUMNS`; ``u``, ``v``,
    ``n`` must be orthonormal. See :func:`nii._kernels.scene.splat_plates_kernel`.
    """
    _check_out(out)
    plates = np.ascontiguousarray(plates, dtype=np.float64)
    if plates.ndim != 2 or plates.shape[1] != len(PLATE_COLUMNS):
        raise InvalidParameterError(f"plates must be (N, {len(PLATE_COLUMNS)}), got {plates.shape}")
    if not 0 < min_cos <= 1:
        raise InvalidParameterError(f"min_cos must lie in (0, 1], got {min_cos}")
    if plates.shape[0] == 0:
        return out
    from ..._kernels.scene import splat_plates_kernel

    splat_plates_kernel(out, plates, int(origin[0]), int(origin[1]), grid.py, grid.px, float(min_cos))
    return out
