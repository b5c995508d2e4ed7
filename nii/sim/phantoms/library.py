"""The phantom catalogue: targets, confusers, clutter and containers.

Every builder is ``f(rng, **dimensions) -> Phantom`` with the phantom centred at its own origin
and dimensions in cm; unspecified dimensions are drawn from ``rng`` within the ranges below
(sources: museum and CITES seizure descriptions; the issue's ranges where it gives them).

Material names are those of the physics tables (``nii.physics.materials``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...errors import InvalidParameterError
from .base import Phantom
from .primitives import Part, box, ellipsoid, hollow_box, random_rotation, random_rotations, tube

__all__ = ["CatalogEntry", "CATALOG", "build", "catalog_names", "MATERIALS_USED"]

# material names of the physics tables
IVORY = "ivory"
KERATIN = "keratin"
RHINO = "rhino_horn"
BONE = "bone_cattle"
SHELL = "shell"
PVC = "pvc"
ALU = "aluminium"
GLASS = "glass"
SALT = "salt"
RESIN = "fake_ivory"
CERAMIC = "ceramic"
WATER = "water"
WOOD = "wood"
PAPER = "paper"
CARDBOARD = "cardboard"
PE = "polyethylene"
PMMA = "pmma"
NYLON = "nylon"
COTTON = "cotton"
SUGAR = "sugar"
FLOUR = "flour"
NUTS = "nuts"
RUBBER = "rubber"
STEEL = "steel"
COPPER = "copper"
LEAD = "lead"

MATERIALS_USED = (IVORY, KERATIN, RHINO, BONE, SHELL, PVC, ALU, GLASS, SALT, RESIN, CERAMIC, WATER, WOOD, PAPER,
                  CARDBOARD, PE, PMMA, NYLON, COTTON, SUGAR, FLOUR, NUTS, RUBBER, STEEL, COPPER, LEAD)

_Z = np.array([0.0, 0.0, 1.0])
_X = np.array([1.0, 0.0, 0.0])
_Y = np.array([0.0, 1.0, 0.0])


def _u(rng: np.random.Generator, lo: float, hi: float, value: float | None = None) -> float:
    return float(rng.uniform(lo, hi)) if value is None else float(value)


def _check_range(name: str, value: float, lo: float, hi: float, unit: str = "cm") -> None:
    if not lo <= value <= hi:
        raise InvalidParameterError(f"{name} must lie in [{lo}, {hi}] {unit}, got {value}")


def _arc(length: float, bend_rad: float, n: int, *, twist: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Points (n, 3) along a circular arc of ``length`` bending by ``bend_rad``; arc parameter s in [0, 1]."""
    s = np.linspace(0.0, 1.0, n)
    if abs(bend_rad) < 1e-6:
        pts = np.column_stack([s * length, np.zeros(n), np.zeros(n)])
    else:
        rad = length / bend_rad
        ang = s * bend_rad
        pts = np.column_stack([rad * np.sin(ang), rad * (1 - np.cos(ang)), np.zeros(n)])
    if twist:
        pts[:, 2] = twist * length * s**2  # a slight out-of-plane (helical) sweep
    return pts - pts.mean(axis=0), s


# ----------------------------------------------------------------------------------------------
# targets: ivory


def tusk(rng: np.random.Generator, *, length_cm: float | None = None, hollow_fraction: float = 1.0 / 3.0,
         bend_rad: float | None = None) -> Phantom:
    """Whole elephant tusk: curved tapered cone of dentine, hollow pulp cavity in the proximal third.

    Base radius grows with length (about 4 % of the length plus 1 cm: a 150 cm tusk is about 14 cm
    across at the lip); the cavity wall is thin at the lip (~15 % of the radius) and closes at
    ``hollow_fraction`` of the length.
    """
    length = _u(rng, 30, 200, length_cm)
    _check_range("length_cm", length, 30, 200)
    if not 0 <= hollow_fraction < 1:
        raise InvalidParameterError(f"hollow_fraction must lie in [0, 1), got {hollow_fraction}")
    base_r = (0.04 * length + 1.0) * rng.uniform(0.85, 1.15)
    n = 24
    bend = _u(rng, 0.35, 1.1, bend_rad)
    _check_range("bend_rad", bend, 0.0, 2.0, "rad")
    pts, s = _arc(length, bend, n, twist=rng.uniform(-0.1, 0.1))
    radii = base_r * (1.0 - s) ** 0.75 + 0.15 * s
    parts = tube(IVORY, pts, radii)
    cavity_len = hollow_fraction
    if cavity_len > 0:
        lip = rng.uniform(0.8, 0.88)
        m = max(int(round(cavity_len * (n - 1))), 1)
        cs = s[: m + 1] / s[m]
        inner = radii[: m + 1] * lip * (1.0 - cs) ** 1.2
        inner[-1] = 0.0
        parts += tube(IVORY, pts[: m + 1], inner, sign=-1)
    return Phantom("tusk", tuple(parts), truth_class="ivory", role="target",
                   info={"length_cm": length, "base_radius_cm": base_r, "hollow_fraction": hollow_fraction, "bend_rad": bend})


def tusk_section(rng: np.random.Generator, *, length_cm: float | None = None, radius_cm: float | None = None) -> Phantom:
    """Cut section of a tusk: a slightly tapered, slightly curved log, hollow if cut from the base."""
    length = _u(rng, 8, 45, length_cm)
    r = _u(rng, 2.5, 7.0, radius_cm)
    pts, s = _arc(length, rng.uniform(0, 0.3), 6)
    radii = r * (1.0 - 0.25 * s * length / 45.0)
    parts = tube(IVORY, pts, radii)
    hollow = bool(rng.random() < 0.4)
    if hollow:
        parts += tube(IVORY, pts, radii * np.linspace(0.75, 0.2, len(s)) * rng.uniform(0.8, 1.0), sign=-1)
    return Phantom("tusk_section", tuple(parts), truth_class="ivory", role="target",
                   info={"length_cm": length, "radius_cm": r, "hollow": hollow})


def ivory_block(rng: np.random.Generator, *, size_cm: tuple[float, float, float] | None = None) -> Phantom:
    """Worked ivory block / blank (squared-off billet)."""
    size = size_cm or (rng.uniform(4, 20), rng.uniform(3, 8), rng.uniform(2, 6))
    return Phantom("ivory_block", (box(IVORY, tuple(0.5 * np.asarray(size))),), truth_class="ivory_worked", role="target",
                   info={"size_cm": list(map(float, size))})


def bangle(rng: np.random.Generator, *, inner_radius_cm: float | None = None, section_radius_cm: float | None = None,
           material: str = IVORY) -> Phantom:
    """Bangle: a torus (closed tube of 24 mitred frusta)."""
    rin = _u(rng, 2.8, 4.0, inner_radius_cm)
    rs = _u(rng, 0.35, 1.0, section_radius_cm)
    big = rin + rs
    ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    pts = np.column_stack([big * np.cos(ang), big * np.sin(ang), np.zeros_like(ang)])
    parts = tube(material, pts, np.full(len(ang), rs), closed=True)
    is_ivory = material == IVORY
    return Phantom("bangle" if is_ivory else f"bangle_{material}", tuple(parts),
                   truth_class="ivory_worked" if is_ivory else None, role="target" if is_ivory else "confuser",
                   confuser_class=None if is_ivory else "bangle_imitation", info={"inner_radius_cm": rin, "section_radius_cm": rs})


def _figure_parts(rng: np.random.Generator, material: str, height: float) -> list[Part]:
    """A carved standing figure: base block, robed body, head, arms, optional headdress."""
    w = height * rng.uniform(0.22, 0.35)
    parts: list[Part] = [box(material, (w * 0.6, w * 0.45, height * 0.05), center=(0, 0, -height * 0.45))]
    parts.append(ellipsoid(material, (w * 0.5, w * 0.38, height * 0.3), center=(0, 0, -height * 0.12)))
    parts.append(ellipsoid(material, (w * 0.28, w * 0.26, height * 0.11), center=(0, 0, height * 0.3)))
    for side in (-1, 1):
        a = np.array([[side * w * 0.45, 0, height * 0.1], [side * w * 0.55, w * 0.15, -height * 0.12], [side * w * 0.2, w * 0.3, -height * 0.2]])
        parts += tube(material, a, np.array([w * 0.1, w * 0.09, w * 0.08]))
    if rng.random() < 0.5:
        parts.append(ellipsoid(material, (w * 0.18, w * 0.18, height * 0.07), center=(0, 0, height * 0.43)))
    return parts


def figurine(rng: np.random.Generator, *, height_cm: float | None = None) -> Phantom:
    """Carved ivory figurine (standing figure, 6-35 cm)."""
    h = _u(rng, 6, 35, height_cm)
    return Phantom("figurine", tuple(_figure_parts(rng, IVORY, h)), truth_class="ivory_worked", role="target", info={"height_cm": h})


def chopsticks(rng: np.random.Generator, *, count: int | None = None) -> Phantom:
    """A bundle of 2-20 ivory chopsticks (24 cm, tapered 0.45 -> 0.22 cm radius)."""
    n = int(rng.integers(2, 21)) if count is None else int(count)
    if not 1 <= n <= 60:
        raise InvalidParameterError(f"count must lie in [1, 60], got {n}")
    length = rng.uniform(22, 27)
    parts: list[Part] = []
    cols = int(np.ceil(np.sqrt(n)))
    for k in range(n):
        y = (k % cols - cols / 2) * 0.95 + rng.normal(0, 0.05)
        z = (k // cols - cols / 2) * 0.95
        x0 = rng.normal(0, 0.8)
        pts = np.array([[x0 - length / 2, y, z], [x0 + length / 2, y + rng.normal(0, 0.2), z]])
        parts += tube(IVORY, pts, np.array([0.45, 0.22]))
    return Phantom("chopsticks", tuple(parts), truth_class="ivory_worked", role="target", info={"count": n, "length_cm": length})


def name_seal(rng: np.random.Generator) -> Phantom:
    """Name seal (hanko / chop): a 5-8 cm rod, round or square, often with a carved knob."""
    length = rng.uniform(5, 8)
    r = rng.uniform(0.6, 1.5)
    if rng.random() < 0.5:
        parts = tube(IVORY, np.array([[0, 0, -length / 2], [0, 0, length / 2]]), np.array([r, r]))
    else:
        parts = [box(IVORY, (r, r, length / 2))]
    if rng.random() < 0.6:
        parts.append(ellipsoid(IVORY, (r * 0.9, r * 0.9, r * 0.8), center=(0, 0, length / 2 + r * 0.5)))
    return Phantom("name_seal", tuple(parts), truth_class="ivory_worked", role="target", info={"length_cm": length, "radius_cm": r})


# ----------------------------------------------------------------------------------------------
# targets: pangolin scales


def _plate_table(rng: np.random.Generator, centers: np.ndarray, normals: np.ndarray, *, size: tuple[float, float] = (3.0, 8.0),
                 thick: tuple[float, float] = (0.1, 0.3)) -> np.ndarray:
    """Plate table (see ``PLATE_COLUMNS``) for plates at ``centers`` with rough ``normals``."""
    n = len(centers)
    nrm = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    helper = np.where(np.abs(nrm[:, :1]) < 0.9, _X, _Y)
    u = np.cross(helper, nrm)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(nrm, u)
    spin = rng.uniform(0, 2 * np.pi, n)[:, None]
    u, v = np.cos(spin) * u + np.sin(spin) * v, -np.sin(spin) * u + np.cos(spin) * v
    length = rng.uniform(*size, n)
    width = length * rng.uniform(0.75, 1.05, n)
    th = rng.uniform(*thick, n)
    period = rng.uniform(0.15, 0.3, n)
    depth = rng.uniform(0.15, 0.35, n)
    rmax = 0.5 * np.maximum(length, 1.3 * width) + 0.05
    return np.column_stack([centers, u, v, nrm, width, length, th, period, depth, rmax])


def pangolin_scale(rng: np.random.Generator) -> Phantom:
    """One loose pangolin scale: ridged keratin shield, 3-8 cm long, 1-3 mm thick."""
    table = _plate_table(rng, np.zeros((1, 3)), _Z[None, :])
    return Phantom("pangolin_scale", plates={KERATIN: table}, truth_class="pangolin_scales", role="target",
                   info={"plates": 1, "length_cm": float(table[0, 13])})


def scale_pile(rng: np.random.Generator, *, count: int | None = None, radius_cm: float | None = None) -> Phantom:
    """A loose heap of overlapping scales: plates dropped on a mound, lying roughly flat."""
    n = int(rng.integers(20, 400)) if count is None else int(count)
    if not 1 <= n <= 20000:
        raise InvalidParameterError(f"count must lie in [1, 20000], got {n}")
    rad = _u(rng, 6, 30, radius_cm) if radius_cm is None else float(radius_cm)
    rr = rad * np.sqrt(rng.random(n))
    th = rng.uniform(0, 2 * np.pi, n)
    height = rad * 0.5 * (1 - (rr / rad) ** 2)
    z = rng.uniform(0, 1, n) * height
    centers = np.column_stack([rr * np.cos(th), rr * np.sin(th) * 0.8, z - z.mean()])
    normals = _Z + rng.normal(0, 0.35, (n, 3))
    table = _plate_table(rng, centers, normals)
    return Phantom("scale_pile", plates={KERATIN: table}, truth_class="pangolin_scales", role="target",
                   info={"plates": n, "radius_cm": rad})


def scale_sack(rng: np.random.Generator, *, count: int | None = None, size_cm: tuple[float, float, float] | None = None) -> Phantom:
    """A woven polypropylene sack packed with hundreds to thousands of scales at random orientation.

    Packing: plates fill an ellipsoidal sack volume at a packing fraction of 0.15-0.3 (loose flakes);
    the plate count follows from volume x fraction / plate volume unless given.
    """
    size = size_cm or (rng.uniform(40, 80), rng.uniform(30, 50), rng.uniform(15, 30))
    semi = 0.5 * np.asarray(size, float)
    vol = 4 / 3 * np.pi * np.prod(semi)
    if count is None:
        frac = rng.uniform(0.15, 0.3)
        n = int(min(vol * frac / (5.5 * 4.5 * 0.2 * 0.6), 6000))
    else:
        n = int(count)
    if not 1 <= n <= 20000:
        raise InvalidParameterError(f"count must lie in [1, 20000], got {n}")
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    p *= rng.random((n, 1)) ** (1 / 3)
    centers = p * (semi - 2.5)
    normals = rng.normal(size=(n, 3)) + _Z * 0.8  # settled: biased to lie flat
    table = _plate_table(rng, centers, normals)
    parts = [ellipsoid(PE, tuple(semi + 0.1)), ellipsoid(PE, tuple(semi), sign=-1)]
    return Phantom("scale_sack", tuple(parts), plates={KERATIN: table}, truth_class="pangolin_scales", role="target",
                   info={"plates": n, "size_cm": list(map(float, size))})


# ----------------------------------------------------------------------------------------------
# targets: rhino horn


def rhino_horn(rng: np.random.Generator, *, length_cm: float | None = None) -> Phantom:
    """Whole rhino horn: curved cone of compacted keratin fibres with an oval base.

    Fibrous structure: 8-16 thin longitudinal voids (tubules running base to tip) give the
    streaky texture seen in radiographs.

    Long horns are slender: the base radius is 22-32 % of the length at 15 cm and falls as
    ``length ** -0.6`` relative to it, so the mass (keratin at 1.3 g/cm³) runs from 0.3-0.6 kg
    at 15 cm (an Asian or rear horn) through 0.9-2 kg at 30 cm to 3-6.5 kg at 60 cm (a large
    white-rhino front horn: those average about 4 kg). A base proportional to the length, as
    before 2026-11-26, made a 60 cm horn weigh 19-38 kg.
    """
    length = _u(rng, 15, 60, length_cm)
    base = length * rng.uniform(0.22, 0.32) * (15.0 / length) ** 0.6
    pts, s = _arc(length, rng.uniform(0.3, 0.9), 14)
    radii = base * (1 - s) ** 1.1 + 0.2 * s
    parts = tube(RHINO, pts, radii)
    for _ in range(int(rng.integers(8, 17))):
        ang = rng.uniform(0, 2 * np.pi)
        frac = rng.uniform(0.1, 0.7)
        off = np.column_stack([np.zeros(len(s)), np.cos(ang) * frac * radii, np.sin(ang) * frac * radii])
        vr = rng.uniform(0.05, 0.15) * (1 - s[:-3])
        parts += tube(RHINO, (pts + off)[:-3], np.maximum(vr, 0.02), sign=-1)
    # oval base: a squat ellipsoid blending the base
    parts.append(ellipsoid(RHINO, (base * 0.35, base * 1.05, base * 0.8), center=pts[0]))
    return Phantom("rhino_horn", tuple(parts), truth_class="rhino_horn", role="target", info={"length_cm": length, "base_radius_cm": base})


def rhino_horn_piece(rng: np.random.Generator) -> Phantom:
    """Piece of rhino horn: a sawn frustum chunk or an irregular lump (two to four fused lumps)."""
    if rng.random() < 0.5:
        length = rng.uniform(4, 15)
        r0 = rng.uniform(2, 6)
        pts = np.array([[-length / 2, 0, 0], [length / 2, 0, 0]])
        parts = tube(RHINO, pts, np.array([r0, r0 * rng.uniform(0.5, 0.9)]))
        shape = "sawn"
    else:
        parts = []
        for _ in range(int(rng.integers(2, 5))):
            parts.append(ellipsoid(RHINO, tuple(rng.uniform(1.5, 5, 3)), center=rng.normal(0, 1.5, 3), rot=random_rotation(rng)))
        shape = "lump"
    return Phantom("rhino_horn_piece", tuple(parts), truth_class="rhino_horn", role="target", info={"shape": shape})


# ----------------------------------------------------------------------------------------------
# confusers


def cattle_bone(rng: np.random.Generator, *, length_cm: float | None = None) -> Phantom:
    """Cattle long bone (femur / metacarpal): cortical shaft with a marrow cavity and knobbly epiphyses."""
    length = _u(rng, 18, 45, length_cm)
    r = length * rng.uniform(0.06, 0.09)
    pts, s = _arc(length * 0.8, rng.uniform(0, 0.25), 8)
    radii = r * (1 + 0.25 * (2 * s - 1) ** 2)
    parts = tube(BONE, pts, radii)
    parts += tube(BONE, pts[1:-1], radii[1:-1] * rng.uniform(0.55, 0.7), sign=-1)
    for end, sgn in ((pts[0], -1), (pts[-1], 1)):
        parts.append(ellipsoid(BONE, (r * 1.1, r * 1.7, r * 1.3), center=end + sgn * np.array([r * 0.6, 0, 0])))
        parts.append(ellipsoid(BONE, (r * 0.6, r * 1.0, r * 0.8), center=end + sgn * np.array([r * 0.6, 0, 0]), sign=-1))
    return Phantom("cattle_bone", tuple(parts), role="confuser", confuser_class="bone", info={"length_cm": length})


def shell_cloud_params(rng: np.random.Generator, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ellipsoid-cloud arrays for sea shells (hollow CaCO3 ovoids, 3-12 cm) at ``centers``."""
    n = len(centers)
    semi = np.column_stack([rng.uniform(1.5, 6, n), rng.uniform(1.2, 4, n), rng.uniform(0.6, 2.5, n)])
    rots = random_rotations(rng, n)
    inner = rng.uniform(0.75, 0.93, n)
    return centers, rots, semi, inner


def shells(rng: np.random.Generator, *, count: int | None = None) -> Phantom:
    """A handful of sea shells (hollow calcium carbonate), loose."""
    n = int(rng.integers(1, 12)) if count is None else int(count)
    centers = rng.normal(0, 6, (n, 3))
    return Phantom("shells", ellipsoids={SHELL: shell_cloud_params(rng, centers)}, role="confuser", confuser_class="shell", info={"count": n})


def pvc_pipe(rng: np.random.Generator, *, length_cm: float | None = None) -> Phantom:
    """PVC pipe offcut: straight thick-walled tube (the classic ivory look-alike)."""
    length = _u(rng, 15, 100, length_cm)
    r = rng.uniform(1.0, 5.5)
    wall = rng.uniform(0.15, 0.5)
    pts = np.array([[-length / 2, 0, 0], [length / 2, 0, 0]])
    parts = tube(PVC, pts, np.array([r, r])) + tube(PVC, pts, np.array([r - wall, r - wall]), sign=-1)
    return Phantom("pvc_pipe", tuple(parts), role="confuser", confuser_class="pvc_pipe", info={"length_cm": length, "radius_cm": r})


def aluminium_profile(rng: np.random.Generator, *, length_cm: float | None = None) -> Phantom:
    """Extruded aluminium profile: square tube, U-channel or angle."""
    length = _u(rng, 20, 120, length_cm)
    a = rng.uniform(1.5, 5)
    t = rng.uniform(0.15, 0.4)
    kind = ("tube", "channel", "angle")[int(rng.integers(0, 3))]
    L = length / 2
    if kind == "tube":  # open-ended square tube: outer bar minus the bore
        parts = [box(ALU, (L, a, a)), box(ALU, (L, a - t, a - t), sign=-1)]
    elif kind == "channel":  # U: web plus two flanges
        parts = [box(ALU, (L, a, t / 2), center=(0, 0, -a + t / 2)),
                 box(ALU, (L, t / 2, a - t / 2), center=(0, -a + t / 2, t / 2)),
                 box(ALU, (L, t / 2, a - t / 2), center=(0, a - t / 2, t / 2))]
    else:  # L angle
        parts = [box(ALU, (L, a, t / 2), center=(0, 0, -a + t / 2)), box(ALU, (L, t / 2, a - t / 2), center=(0, -a + t / 2, t / 2))]
    return Phantom("aluminium_profile", tuple(parts), role="confuser", confuser_class="aluminium_profile",
                   info={"length_cm": length, "shape": kind})


def resin_carving(rng: np.random.Generator) -> Phantom:
    """Resin ("fake ivory") carving: the same figure shapes, in filled polyester resin."""
    h = rng.uniform(6, 35)
    return Phantom("resin_carving", tuple(_figure_parts(rng, RESIN, h)), role="confuser", confuser_class="resin_carving", info={"height_cm": h})


def wood_carving(rng: np.random.Generator) -> Phantom:
    """Wooden carved figure."""
    h = rng.uniform(10, 45)
    return Phantom("wood_carving", tuple(_figure_parts(rng, WOOD, h)), role="confuser", confuser_class="wood_carving", info={"height_cm": h})


def ceramic(rng: np.random.Generator) -> Phantom:
    """Ceramic ware: a vase (hollow ovoid with a neck) or a stack of plates."""
    if rng.random() < 0.5:
        a = rng.uniform(5, 14)
        c = a * rng.uniform(1.0, 1.8)
        wall = rng.uniform(0.4, 0.8)
        parts = [ellipsoid(CERAMIC, (a, a, c)), ellipsoid(CERAMIC, (a - wall, a - wall, c - wall), sign=-1)]
        neck = np.array([[0, 0, c * 0.85], [0, 0, c + a * 0.5]])
        parts += tube(CERAMIC, neck, np.array([a * 0.3, a * 0.35])) + tube(CERAMIC, neck, np.array([a * 0.3 - wall, a * 0.35 - wall]), sign=-1)
        kind = "vase"
    else:
        n = int(rng.integers(2, 10))
        r = rng.uniform(8, 14)
        parts = []
        for k in range(n):
            parts += tube(CERAMIC, np.array([[0, 0, k * 0.9], [0, 0, k * 0.9 + 0.5]]), np.array([r, r]))
        kind = "plates"
    return Phantom("ceramic", tuple(parts), role="confuser", confuser_class="ceramic", info={"shape": kind})


def _grain_cloud(rng: np.random.Generator, semi_sack: np.ndarray, n: int, size: tuple[float, float]) -> tuple:
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    p *= rng.random((n, 1)) ** (1 / 3)
    centers = p * (semi_sack - size[1])
    s = rng.uniform(*size, n)
    semi = np.column_stack([s, s * rng.uniform(0.6, 0.9, n), s * rng.uniform(0.5, 0.8, n)])
    rots = random_rotations(rng, n)
    return centers, rots, semi, np.zeros(n)


def nut_sack(rng: np.random.Generator, *, size_cm: tuple[float, float, float] | None = None, count: int | None = None) -> Phantom:
    """Jute sack of nuts in shell (walnuts, cashew, areca): packed small ovoids, 1-2 cm."""
    size = size_cm or (rng.uniform(50, 80), rng.uniform(35, 50), rng.uniform(20, 30))
    semi = 0.5 * np.asarray(size, float)
    n = int(min(np.prod(semi) * 4.19 * 0.45 / (4.19 * 1.1**3 * 0.75 * 0.65), 4000)) if count is None else int(count)
    parts = [ellipsoid(COTTON, tuple(semi + 0.3)), ellipsoid(COTTON, tuple(semi), sign=-1)]
    return Phantom("nut_sack", tuple(parts), ellipsoids={NUTS: _grain_cloud(rng, semi, n, (0.8, 1.6))}, role="confuser",
                   confuser_class="nut_sack", info={"count": n, "size_cm": list(map(float, size))})


def dried_fish(rng: np.random.Generator) -> Phantom:
    """Dried fish: flattened body of dried tissue with a thin bony spine and ribs."""
    length = rng.uniform(15, 45)
    h = length * rng.uniform(0.18, 0.28)
    parts = [ellipsoid(WATER, (length / 2, h / 2, rng.uniform(0.5, 1.5)))]
    spine = np.array([[-length * 0.42, 0, 0], [length * 0.42, 0, 0]])
    parts += tube(BONE, spine, np.array([0.12, 0.2]) * length / 30)
    for x in np.linspace(-length * 0.25, length * 0.25, 7):
        for sgn in (-1, 1):
            parts += tube(BONE, np.array([[x, 0, 0], [x - h * 0.1, sgn * h * 0.4, 0]]), np.array([0.05, 0.03]))
    return Phantom("dried_fish", tuple(parts), role="confuser", confuser_class="dried_fish", info={"length_cm": length})


def shell_sack(rng: np.random.Generator, *, size_cm: tuple[float, float, float] | None = None, count: int | None = None) -> Phantom:
    """Sack of sea shells (declared cargo that pangolin scales hide in)."""
    size = size_cm or (rng.uniform(50, 80), rng.uniform(35, 50), rng.uniform(20, 30))
    semi = 0.5 * np.asarray(size, float)
    n = int(np.prod(semi) / 60) if count is None else int(count)
    n = int(np.clip(n, 5, 1500))
    p = rng.normal(size=(n, 3))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    centers = p * rng.random((n, 1)) ** (1 / 3) * (semi - 4)
    parts = [ellipsoid(PE, tuple(semi + 0.1)), ellipsoid(PE, tuple(semi), sign=-1)]
    return Phantom("shell_sack", tuple(parts), ellipsoids={SHELL: shell_cloud_params(rng, centers)}, role="confuser",
                   confuser_class="shell", info={"count": n, "size_cm": list(map(float, size))})


# ----------------------------------------------------------------------------------------------
# clutter


def bottle(rng: np.random.Generator) -> Phantom:
    """Bottle (glass or PET) partly filled with liquid."""
    r = rng.uniform(3, 5)
    h = rng.uniform(15, 30)
    mat = GLASS if rng.random() < 0.5 else PE
    wall = 0.35 if mat == GLASS else 0.05
    pts = np.array([[0, 0, -h / 2], [0, 0, h * 0.25], [0, 0, h * 0.4], [0, 0, h / 2]])
    rad = np.array([r, r, r * 0.35, r * 0.3])
    parts = tube(mat, pts, rad) + tube(mat, pts, np.maximum(rad - wall, 0.05), sign=-1)
    fill = rng.uniform(0.3, 0.95)
    parts += tube(WATER, np.array([[0, 0, -h / 2 + wall], [0, 0, -h / 2 + wall + fill * h * 0.7]]), np.array([r - wall, r - wall]) * 0.999)
    return Phantom("bottle", tuple(parts), role="clutter", info={"material": mat})


def laptop(rng: np.random.Generator) -> Phantom:
    """Laptop / tablet: plastic shell, glass screen, PCB, battery cells (steel cans), copper heat pipe."""
    w, d = rng.uniform(25, 38), rng.uniform(18, 26)
    parts = hollow_box(PE, (w / 2, d / 2, 1.0), 0.15)
    parts.append(box(GLASS, (w / 2 - 0.5, d / 2 - 0.5, 0.08), center=(0, 0, 0.8)))
    parts.append(box(GLASS, (w * 0.3, d * 0.25, 0.08), center=(0, d * 0.15, 0)))
    parts.append(box(COPPER, (w * 0.15, 0.3, 0.05), center=(0, d * 0.15, 0.2)))
    for k in range(int(rng.integers(2, 7))):
        x = -w / 2 + 2.5 + k * 1.9
        parts += tube(STEEL, np.array([[x, -d / 2 + 1.2, -0.3], [x, -d / 2 + 7.5, -0.3]]), np.array([0.9, 0.9]))
        parts += tube(WATER, np.array([[x, -d / 2 + 1.3, -0.3], [x, -d / 2 + 7.4, -0.3]]), np.array([0.85, 0.85]))
    return Phantom("laptop", tuple(parts), role="clutter")


def phone_charger(rng: np.random.Generator) -> Phantom:
    """Phone or power bank with charger and a coiled cable."""
    parts = [box(PE, (7.5, 3.6, 0.45)), box(GLASS, (7.2, 3.4, 0.05), center=(0, 0, 0.4)), box(STEEL, (3, 2.8, 0.25), center=(0, 0, -0.1))]
    ang = np.linspace(0, 4 * np.pi, 30)
    coil = np.column_stack([12 + 4 * np.cos(ang), 4 * np.sin(ang), ang * 0.1])
    parts += tube(COPPER, coil, np.full(30, 0.08))
    parts += tube(PE, coil, np.full(30, 0.2))
    return Phantom("phone_charger", tuple(parts), role="clutter")


def tool(rng: np.random.Generator) -> Phantom:
    """Hand tool: wrench, hammer or screwdriver (steel with plastic or wooden grip)."""
    k = int(rng.integers(0, 3))
    if k == 0:
        L = rng.uniform(15, 30)
        parts = [box(STEEL, (L / 2, 0.9, 0.3))]
        parts += tube(STEEL, np.array([[L / 2, 0, -0.3], [L / 2, 0, 0.3]]), np.array([1.8, 1.8]))
        parts += tube(STEEL, np.array([[L / 2, 0, -0.3], [L / 2, 0, 0.3]]), np.array([1.0, 1.0]), sign=-1)
        name = "wrench"
    elif k == 1:
        L = rng.uniform(25, 35)
        parts = tube(WOOD, np.array([[-L / 2, 0, 0], [L / 2, 0, 0]]), np.array([1.3, 1.3]))
        parts.append(box(STEEL, (1.4, 5.5, 1.4), center=(L / 2 + 1.4, 0, 0)))
        name = "hammer"
    else:
        L = rng.uniform(15, 25)
        parts = tube(PE, np.array([[-L / 2, 0, 0], [-L / 2 + 9, 0, 0]]), np.array([1.4, 1.2]))
        parts += tube(STEEL, np.array([[-L / 2 + 9, 0, 0], [L / 2, 0, 0]]), np.array([0.3, 0.25]))
        name = "screwdriver"
    return Phantom("tool", tuple(parts), role="clutter", info={"tool": name})


def machinery(rng: np.random.Generator) -> Phantom:
    """Machine part: electric motor (steel housing, copper windings, shaft) or a pump casting."""
    r = rng.uniform(5, 15)
    L = r * rng.uniform(1.2, 2.5)
    ax = np.array([[-L / 2, 0, 0], [L / 2, 0, 0]])
    parts = tube(STEEL, ax, np.array([r, r])) + tube(STEEL, ax * 0.98, np.array([r - 0.6, r - 0.6]), sign=-1)
    parts += tube(COPPER, ax * 0.7, np.array([r * 0.7, r * 0.7])) + tube(COPPER, ax * 0.7, np.array([r * 0.4, r * 0.4]), sign=-1)
    parts += tube(STEEL, np.array([[-L / 2 - 5, 0, 0], [L / 2 + 5, 0, 0]]), np.array([r * 0.12, r * 0.12]))
    return Phantom("machinery", tuple(parts), role="clutter", info={"radius_cm": r})


def food(rng: np.random.Generator) -> Phantom:
    """Food: packets of sugar / flour / rice, a tin can of liquid, or fruit."""
    k = int(rng.integers(0, 3))
    if k == 0:
        mat = (SUGAR, FLOUR)[int(rng.integers(0, 2))]
        half = (rng.uniform(5, 10), rng.uniform(3, 7), rng.uniform(2, 5))
        parts = [box(mat, half), *hollow_box(PAPER, tuple(h + 0.05 for h in half), 0.05)]
        name = mat
    elif k == 1:
        r, h = rng.uniform(3.5, 5), rng.uniform(8, 12)
        ax = np.array([[0, 0, -h / 2], [0, 0, h / 2]])
        parts = tube(STEEL, ax, np.array([r, r])) + tube(STEEL, ax * 0.99, np.array([r - 0.02, r - 0.02]), sign=-1)
        parts += tube(WATER, ax * 0.95, np.array([r - 0.03, r - 0.03]))
        name = "tin"
    else:
        n = int(rng.integers(2, 8))
        parts = [ellipsoid(WATER, tuple(rng.uniform(3, 5, 3)), center=rng.normal(0, 5, 3)) for _ in range(n)]
        name = "fruit"
    return Phantom("food", tuple(parts), role="clutter", info={"food": name})


def shoes(rng: np.random.Generator) -> Phantom:
    """A pair of shoes: rubber soles, nylon/leather uppers (hollow), steel shank."""
    parts: list[Part] = []
    L = rng.uniform(24, 31)
    for y in (-5.5, 5.5):
        parts.append(box(RUBBER, (L / 2, 4.5, 1.0), center=(0, y, -4)))
        parts += [ellipsoid(NYLON, (L / 2, 4.5, 5), center=(0, y, 0)), ellipsoid(NYLON, (L / 2 - 0.3, 4.2, 4.7), center=(0, y, 0), sign=-1)]
        parts.append(box(STEEL, (4, 0.6, 0.05), center=(-2, y, -3.2)))
    return Phantom("shoes", tuple(parts), role="clutter")


def toiletries(rng: np.random.Generator) -> Phantom:
    """Toiletry bag: small PE bottles of liquid, a razor, a glass jar."""
    parts: list[Part] = hollow_box(NYLON, (12, 7, 5), 0.1)
    for _ in range(int(rng.integers(2, 6))):
        c = np.array([rng.uniform(-8, 8), rng.uniform(-4, 4), 0])
        r = rng.uniform(1.5, 2.5)
        ax = np.array([[c[0], c[1] - 4, 0], [c[0], c[1] + 4, 0]])
        parts += tube(PE, ax, np.array([r, r])) + tube(PE, ax * 0.999, np.array([r - 0.08, r - 0.08]), sign=-1)
        parts += tube(WATER, ax * 0.95, np.array([r - 0.1, r - 0.1]))
    parts.append(box(STEEL, (2, 0.4, 0.1), center=(5, 5, 2)))
    return Phantom("toiletries", tuple(parts), role="clutter")


def books(rng: np.random.Generator) -> Phantom:
    """A stack of books / papers."""
    n = int(rng.integers(1, 5))
    w, d = rng.uniform(14, 22), rng.uniform(20, 30)
    parts = [box(PAPER, (w / 2, d / 2, rng.uniform(0.5, 2.0)), center=(rng.normal(0, 1), rng.normal(0, 1), k * 4)) for k in range(n)]
    return Phantom("books", tuple(parts), role="clutter")


def timber_log(rng: np.random.Generator, *, length_cm: float | None = None, radius_cm: float | None = None,
               cavity: tuple[float, float] | None = None) -> Phantom:
    """Timber log, optionally hollowed out along a central bore (a concealment)."""
    length = _u(rng, 80, 300, length_cm)
    r = _u(rng, 12, 35, radius_cm)
    bend = rng.uniform(0, 0.08)
    taper = 0.15
    if cavity is not None:  # a bored log is chosen straight and even, so the bore stays inside
        bend, taper = 0.0, 0.03
    pts, s = _arc(length, bend, 5)
    parts = tube(WOOD, pts, r * (1 - taper * s))
    info = {"length_cm": length, "radius_cm": r}
    if cavity is not None:
        clen, crad = cavity
        if not 0 < clen < length or not 0 < crad < r * (1 - taper):
            raise InvalidParameterError(f"cavity (length, radius) must fit inside the log ({length:.1f}, {r:.1f}) cm, got {cavity}")
        lo, hi = -length / 2 + min(5.0, 0.05 * length), length / 2 - clen - min(5.0, 0.05 * length)
        c0 = rng.uniform(lo, hi) if hi > lo else -clen / 2
        cpts = np.array([[c0, 0, 0], [c0 + clen, 0, 0]])
        parts += tube(WOOD, cpts, np.array([crad, crad]), sign=-1)
        info.update(cavity_length_cm=clen, cavity_radius_cm=crad, cavity_center_cm=c0 + clen / 2)
    return Phantom("timber_log", tuple(parts), role="container", info=info)


# ----------------------------------------------------------------------------------------------
# containers


def suitcase(rng: np.random.Generator, *, size_cm: tuple[float, float, float] | None = None) -> Phantom:
    """Hard or soft suitcase: shell, aluminium telescoping handle, wheels, zip, steel frame wire."""
    L, W, D = size_cm or (rng.uniform(55, 80), rng.uniform(38, 52), rng.uniform(22, 32))
    hard = rng.random() < 0.5
    shell_mat, wall = (PE, 0.3) if hard else (NYLON, 0.15)
    parts = hollow_box(shell_mat, (L / 2, W / 2, D / 2), wall)
    x = -L / 2 + 1.5
    for y in (-W * 0.3, W * 0.3):
        parts.append(box(ALU, (L * 0.45, 1.0, 0.5), center=(0, y, -D / 2 + 1.5)))
        parts.append(box(ALU, (L * 0.45, 0.85, 0.35), center=(0, y, -D / 2 + 1.5), sign=-1))
        for xx in (x, -x):
            parts += tube(RUBBER, np.array([[xx, y, -D / 2 - 2.5], [xx, y + 2.5, -D / 2 - 2.5]]), np.array([2.5, 2.5]))
    zip_pts = np.array([[-L / 2, -W / 2, 0], [L / 2, -W / 2, 0], [L / 2, W / 2, 0], [-L / 2, W / 2, 0]]) * 0.99
    parts += tube(STEEL, zip_pts, np.full(4, 0.1), closed=True)
    return Phantom("suitcase", tuple(parts), role="container", info={"size_cm": [L, W, D], "hard": hard})


def carton(rng: np.random.Generator, *, size_cm: tuple[float, float, float] | None = None) -> Phantom:
    """Corrugated carton (board walls ~0.5 cm)."""
    L, W, D = size_cm or (rng.uniform(30, 60), rng.uniform(25, 45), rng.uniform(20, 40))
    return Phantom("carton", tuple(hollow_box(CARDBOARD, (L / 2, W / 2, D / 2), 0.5)), role="container", info={"size_cm": [L, W, D]})


def pallet(rng: np.random.Generator, *, size_cm: tuple[float, float] = (120.0, 100.0)) -> Phantom:
    """Wooden pallet (EUR 120 x 80 / 120 x 100 cm): deck boards on three stringers with blocks."""
    L, W = size_cm
    parts: list[Part] = []
    for y in np.linspace(-W / 2 + 5, W / 2 - 5, 5):
        parts.append(box(WOOD, (L / 2, 5, 1.1), center=(0, y, 6)))
    for x in (-L / 2 + 5, 0.0, L / 2 - 5):
        parts.append(box(WOOD, (5, W / 2, 1.1), center=(x, 0, -6)))
        for y in (-W / 2 + 5, 0.0, W / 2 - 5):
            parts.append(box(WOOD, (5, 5, 3.9), center=(x, y, 0)))
    return Phantom("pallet", tuple(parts), role="container", info={"size_cm": [L, W]})


def crate(rng: np.random.Generator, *, size_cm: tuple[float, float, float] | None = None) -> Phantom:
    """Slatted wooden crate with steel corner nails."""
    L, W, D = size_cm or (rng.uniform(60, 120), rng.uniform(40, 80), rng.uniform(40, 80))
    parts = hollow_box(WOOD, (L / 2, W / 2, D / 2), 1.8)
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(box(STEEL, (0.15, 0.15, D / 2), center=(sx * (L / 2 - 0.9), sy * (W / 2 - 0.9), 0)))
    return Phantom("crate", tuple(parts), role="container", info={"size_cm": [L, W, D]})


def uld_wall(rng: np.random.Generator, *, size_cm: tuple[float, float, float] = (300.0, 150.0, 160.0)) -> Phantom:
    """Air-cargo ULD (LD-3-like) shell: aluminium skin panels, extruded edge rails, base plate."""
    L, W, D = size_cm
    parts = hollow_box(ALU, (L / 2, W / 2, D / 2), 0.2)
    parts.append(box(ALU, (L / 2, W / 2, 0.4), center=(0, 0, -D / 2 + 0.6)))
    for y in (-W / 2 + 2, W / 2 - 2):
        parts.append(box(ALU, (L / 2, 2, 2), center=(0, y, -D / 2 + 2)))
        parts.append(box(ALU, (L / 2, 1.7, 1.7), center=(0, y, -D / 2 + 2), sign=-1))
    return Phantom("uld_wall", tuple(parts), role="container", info={"size_cm": [L, W, D]})


def metal_sheet(rng: np.random.Generator, *, size_cm: tuple[float, float] | None = None, thickness_cm: float | None = None,
                material: str = STEEL) -> Phantom:
    """Metal plate used to shield contraband (steel, aluminium or lead sheet)."""
    L, W = size_cm or (rng.uniform(20, 60), rng.uniform(15, 40))
    t = _u(rng, 0.1, 0.6, thickness_cm)
    return Phantom("metal_sheet", (box(material, (L / 2, W / 2, t / 2)),), role="clutter", info={"size_cm": [L, W], "thickness_cm": t, "material": material})


# ----------------------------------------------------------------------------------------------
# registry


@dataclass(frozen=True)
class CatalogEntry:
    """A catalogue phantom: its builder, role and truth/confuser class."""

    name: str
    builder: Callable[..., Phantom]
    role: str
    klass: str | None
    description: str


def _entry(fn: Callable[..., Phantom], role: str, klass: str | None) -> CatalogEntry:
    doc = (fn.__doc__ or "").strip().splitlines()[0]
    return CatalogEntry(fn.__name__, fn, role, klass, doc)


CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        _entry(tusk, "target", "ivory"),
        _entry(tusk_section, "target", "ivory"),
        _entry(ivory_block, "target", "ivory_worked"),
        _entry(bangle, "target", "ivory_worked"),
        _entry(figurine, "target", "ivory_worked"),
        _entry(chopsticks, "target", "ivory_worked"),
        _entry(name_seal, "target", "ivory_worked"),
        _entry(pangolin_scale, "target", "pangolin_scales"),
        _entry(scale_pile, "target", "pangolin_scales"),
        _entry(scale_sack, "target", "pangolin_scales"),
        _entry(rhino_horn, "target", "rhino_horn"),
        _entry(rhino_horn_piece, "target", "rhino_horn"),
        _entry(cattle_bone, "confuser", "bone"),
        _entry(shells, "confuser", "shell"),
        _entry(shell_sack, "confuser", "shell"),
        _entry(pvc_pipe, "confuser", "pvc_pipe"),
        _entry(aluminium_profile, "confuser", "aluminium_profile"),
        _entry(resin_carving, "confuser", "resin_carving"),
        _entry(wood_carving, "confuser", "wood_carving"),
        _entry(ceramic, "confuser", "ceramic"),
        _entry(nut_sack, "confuser", "nut_sack"),
        _entry(dried_fish, "confuser", "dried_fish"),
        _entry(bottle, "clutter", None),
        _entry(laptop, "clutter", None),
        _entry(phone_charger, "clutter", None),
        _entry(tool, "clutter", None),
        _entry(machinery, "clutter", None),
        _entry(food, "clutter", None),
        _entry(shoes, "clutter", None),
        _entry(toiletries, "clutter", None),
        _entry(books, "clutter", None),
        _entry(metal_sheet, "clutter", None),
        _entry(timber_log, "container", None),
        _entry(suitcase, "container", None),
        _entry(carton, "container", None),
        _entry(pallet, "container", None),
        _entry(crate, "container", None),
        _entry(uld_wall, "container", None),
    )
}


def catalog_names(role: str | None = None) -> tuple[str, ...]:
    """Names of catalogue phantoms, optionally only those of one ``role``."""
    return tuple(n for n, e in CATALOG.items() if role is None or e.role == role)


def build(name: str, rng: np.random.Generator, **kwargs) -> Phantom:
    """Build catalogue phantom ``name`` with dimensions drawn from ``rng`` (or given as keywords)."""
    try:
        entry = CATALOG[name]
    except KeyError:
        raise InvalidParameterError(f"unknown phantom {name!r}; known: {', '.join(CATALOG)}") from None
    return entry.builder(rng, **kwargs)
