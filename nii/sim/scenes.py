"""Scene composer: named scenarios that pack containers with clutter, confusers and concealed targets.

A scenario belongs to a *family* (the concealment it models). Families are explicit because the
detector is evaluated with one family held out of training entirely:

=========== ==================================================================================
family      scenarios
=========== ==================================================================================
luggage     ``luggage_clothes`` (targets among clothes, shoes, electronics in a suitcase)
sack        ``sack_nuts``, ``sack_shells`` (scales or horn inside sacks of nuts or shells)
timber      ``hollow_timber`` (targets in a bore inside logs)
metal       ``behind_metal`` (targets under steel / aluminium / lead sheets and machinery)
bones       ``mixed_bones`` (ivory among cattle bones in cartons)
carton      ``carton_stack``, ``pallet_cargo`` (targets in stacked cartons; pallet / ULD air cargo)
negative    ``negative_confusers`` (no target: bones, shells, PVC, aluminium, resin...),
            ``negative_clutter`` (no target, no confuser: plain luggage or cargo)
=========== ==================================================================================

``mixed`` draws one of the scenarios above per scene (weights in :data:`MIXED_WEIGHTS`) and
records the one drawn. Truth classes are :data:`~nii.sim.phantoms.TRUTH_CLASSES`; a
``pangolin_scales`` box covers one pile, sack or loose cluster of plates (a single loose plate
is a cluster of one). Confusers are not truth: their class and box go to
``SceneResult.metadata["confusers"]`` so that false alarms on them can be counted.
"""

from __future__ import annotations

import hashlib
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..containers import Truth
from ..errors import InvalidParameterError
from .phantoms import Grid, Phantom, build, project, random_rotation
from .phantoms.primitives import box as _box_part
from .phantoms.primitives import ellipsoid as _ellipsoid_part
from .phantoms.primitives import rotation_about
from .phantoms.primitives import tube as _tube_parts
from .types import MaterialStack, SceneResult

__all__ = [
    "Scenario",
    "SCENARIOS",
    "FAMILIES",
    "MIXED_WEIGHTS",
    "get_scenario",
    "list_scenarios",
    "scene_grid",
    "profile_domain",
    "compose_scene",
    "scene_seed",
    "MASK_THRESHOLD_CM",
    "OVERBURDEN_MATERIALS",
    "OVERBURDEN_AREAL_DENSITY",
]

#: Path length (cm) above which a pixel belongs to an object's mask (and so to its box).
MASK_THRESHOLD_CM = 0.02
#: Minimum visible area (pixels) for a target to get a truth box.
MIN_BOX_PIXELS = 12


@dataclass(frozen=True)
class Scenario:
    """A named scene recipe.

    Parameters
    ----------
    name, family, description : str
    container : str
        ``suitcase``, ``sack``, ``timber``, ``cartons``, ``pallet`` or ``uld`` (cargo only).
    domains : tuple of str
        ``"baggage"`` and/or ``"cargo"``: the profiles where the scenario makes sense.
    target_fraction : float
        Probability that a scene holds at least one target.
    clutter_density : float
        Clutter items per 1000 cm² of container footprint.
    overlap : float
        Probability that a clutter/confuser item is placed over a target rather than anywhere.
    targets, confusers : tuple of str
        Catalogue phantoms drawn for targets and confusers.
    n_confusers : (int, int)
        Range of the number of confusers per scene.
    """

    name: str
    family: str
    description: str
    container: str
    domains: tuple[str, ...]
    target_fraction: float
    clutter_density: float
    overlap: float
    targets: tuple[str, ...] = ()
    confusers: tuple[str, ...] = ()
    n_confusers: tuple[int, int] = (0, 2)
    n_targets: tuple[int, int] = (1, 2)

    def with_params(self, *, target_fraction: float | None = None, clutter_density: float | None = None,
                    overlap: float | None = None, targets: tuple[str, ...] | None = None,
                    confusers: tuple[str, ...] | None = None, n_targets: tuple[int, int] | None = None) -> "Scenario":
        """Copy with some parameters overridden (validated); ``targets`` / ``confusers`` replace
        the catalogue phantoms drawn (e.g. to make a curated sample); ``n_targets`` is the range of
        the number of targets in a scene that holds any (e.g. more per scene for training)."""
        from .phantoms import CATALOG

        for what, names, role in (("targets", targets, "target"), ("confusers", confusers, "confuser")):
            for n in names or ():
                if n not in CATALOG or CATALOG[n].role != role:
                    ok = ", ".join(k for k, e in CATALOG.items() if e.role == role)
                    raise InvalidParameterError(f"{what} must name {role} phantoms ({ok}), got {n!r}")
        out = replace(
            self,
            targets=self.targets if targets is None else tuple(targets),
            confusers=self.confusers if confusers is None else tuple(confusers),
            n_targets=(self.n_targets if targets is None else (len(targets), len(targets))) if n_targets is None
            else (int(n_targets[0]), int(n_targets[1])),
            n_confusers=self.n_confusers if confusers is None else (len(confusers), len(confusers) + 1),
            target_fraction=self.target_fraction if target_fraction is None else float(target_fraction),
            clutter_density=self.clutter_density if clutter_density is None else float(clutter_density),
            overlap=self.overlap if overlap is None else float(overlap),
        )
        if not 0 <= out.n_targets[0] <= out.n_targets[1] <= 12:
            raise InvalidParameterError(f"n_targets must be a range (lo, hi) with 0 <= lo <= hi <= 12, got {out.n_targets}")
        for name in ("target_fraction", "overlap"):
            v = getattr(out, name)
            if not 0.0 <= v <= 1.0:
                raise InvalidParameterError(f"{name} must lie in [0, 1], got {v}")
        if not 0.0 <= out.clutter_density <= 50.0:
            raise InvalidParameterError(f"clutter_density must lie in [0, 50] items per 1000 cm², got {out.clutter_density}")
        return out


_IVORY_RAW = ("tusk", "tusk_section")
_IVORY_WORKED = ("ivory_block", "bangle", "figurine", "chopsticks", "name_seal")
_SCALES = ("pangolin_scale", "scale_pile")
_RHINO = ("rhino_horn", "rhino_horn_piece")
_ALL_SMALL_TARGETS = ("tusk_section", *_IVORY_WORKED, *_SCALES, *_RHINO)
_CONFUSERS = ("cattle_bone", "shells", "pvc_pipe", "aluminium_profile", "resin_carving", "wood_carving", "ceramic", "dried_fish")

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("luggage_clothes", "luggage", "suitcase packed with clothes, shoes, toiletries and electronics; targets among them",
                 "suitcase", ("baggage",), 0.6, 3.0, 0.5, _ALL_SMALL_TARGETS, _CONFUSERS, (0, 2)),
        Scenario("sack_nuts", "sack", "jute sacks of nuts in shell; scales or horn pieces buried inside",
                 "sack", ("baggage", "cargo"), 0.6, 0.0, 0.0, ("scale_pile", "rhino_horn_piece", "tusk_section"), ("nut_sack",), (1, 2)),
        Scenario("sack_shells", "sack", "sacks of sea shells (declared cargo) hiding pangolin scales",
                 "sack", ("baggage", "cargo"), 0.6, 0.0, 0.0, ("scale_pile", "scale_sack", "pangolin_scale"), ("shell_sack",), (1, 2)),
        Scenario("hollow_timber", "timber", "timber logs with a bored cavity holding tusks or horn",
                 "timber", ("cargo", "baggage"), 0.6, 0.0, 0.0, ("tusk", "tusk_section", "rhino_horn", "chopsticks"), ("pvc_pipe",), (0, 1)),
        Scenario("behind_metal", "metal", "targets under or behind metal sheets, tools and machinery",
                 "suitcase", ("baggage", "cargo"), 0.6, 2.0, 0.9, ("tusk_section", "ivory_block", "rhino_horn", "scale_pile", "figurine"),
                 ("aluminium_profile",), (0, 2)),
        Scenario("mixed_bones", "bones", "ivory pieces mixed into a carton of cattle bones",
                 "cartons", ("baggage", "cargo"), 0.6, 0.5, 0.6, ("tusk_section", "ivory_block", "chopsticks", "tusk"), ("cattle_bone",), (4, 12)),
        Scenario("carton_stack", "carton", "stacked cartons of goods, one may hold worked ivory, scales or horn",
                 "cartons", ("baggage", "cargo"), 0.6, 2.5, 0.4, _ALL_SMALL_TARGETS, ("ceramic", "resin_carving", "wood_carving"), (0, 3)),
        Scenario("pallet_cargo", "carton", "air-cargo pallet or ULD of cartons and crates with tusks or sacks of scales",
                 "pallet", ("cargo",), 0.6, 1.5, 0.4, ("tusk", "scale_sack", "rhino_horn", "tusk_section"), ("cattle_bone", "pvc_pipe", "shell_sack"), (0, 3)),
        Scenario("negative_confusers", "negative", "no target: look-alikes only (bones, shells, PVC, aluminium, resin, ceramics, wood, nuts, fish)",
                 "suitcase", ("baggage", "cargo"), 0.0, 2.5, 0.3, (), _CONFUSERS, (2, 6)),
        Scenario("negative_clutter", "negative", "no target and no confuser: ordinary luggage or cargo",
                 "suitcase", ("baggage", "cargo"), 0.0, 3.5, 0.0, (), (), (0, 0)),
    )
}

#: Weights of the scenarios that ``mixed`` draws from (read-only).
MIXED_WEIGHTS: Mapping[str, float] = types.MappingProxyType({
    "luggage_clothes": 3, "sack_nuts": 1, "sack_shells": 1, "hollow_timber": 1, "behind_metal": 1.5,
    "mixed_bones": 1, "carton_stack": 1.5, "pallet_cargo": 1.5, "negative_confusers": 2, "negative_clutter": 1.5,
})
SCENARIOS["mixed"] = Scenario("mixed", "mixed", "one of the scenarios above per scene, weighted; records which", "any",
                              ("baggage", "cargo"), 0.6, 3.0, 0.5)

def _families() -> Mapping[str, tuple[str, ...]]:
    fams: dict[str, tuple[str, ...]] = {}
    for sc in SCENARIOS.values():
        fams[sc.family] = fams.get(sc.family, ()) + (sc.name,)
    return types.MappingProxyType(fams)


#: Scenario names per family (read-only), registry order.
FAMILIES: Mapping[str, tuple[str, ...]] = _families()


def list_scenarios() -> list[str]:
    """Scenario names, registry order."""
    return list(SCENARIOS)


def get_scenario(name: str | Scenario) -> Scenario:
    """Look a scenario up by name."""
    if isinstance(name, Scenario):
        return name
    try:
        return SCENARIOS[name]
    except KeyError:
        raise InvalidParameterError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None


def profile_domain(profile: Any) -> str:
    """``"cargo"`` for cargo/vehicle profiles (id or kind says so, or pitch >= 2 mm), else ``"baggage"``."""
    dom = getattr(profile, "domain", None)
    if dom in ("baggage", "cargo"):
        return dom
    pid = str(getattr(profile, "id", "")) + " " + str(getattr(profile, "kind", ""))
    pitch = getattr(profile, "detector_pitch_mm", 1.0)
    return "cargo" if ("cargo" in pid or "vehicle" in pid or pitch >= 2.0) else "baggage"


def scene_seed(seed: int, index: int, *extra: str) -> np.random.SeedSequence:
    """Seed of scene ``index`` of a run seeded ``seed``: independent of worker count and order."""
    if seed < 0 or index < 0:
        raise InvalidParameterError(f"seed and index must be non-negative, got {seed}, {index}")
    salt = int.from_bytes(hashlib.sha256("\x00".join(extra).encode()).digest()[:8], "little")
    return np.random.SeedSequence([int(seed), int(index), salt])


# ----------------------------------------------------------------------------------------------


@dataclass
class _Canvas:
    grid: Grid
    backend: str = "numba"
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    _buf: np.ndarray | None = None

    def plane(self, material: str) -> np.ndarray:
        """The (H, W) path-length plane of ``material``, a view into one (M, H, W) buffer.

        Planes are handed out in order of first use from a zeroed buffer (untouched planes cost
        no memory), so the final stack is a view, not a copy.
        """
        if material not in self.maps:
            n = len(self.maps)
            if self._buf is None or n == self._buf.shape[0]:
                grown = np.zeros((n + 32, *self.grid.shape), np.float32)
                if self._buf is not None:
                    grown[:n] = self._buf
                self._buf = grown
                self.maps = {m: self._buf[k] for k, m in enumerate(self.maps)}
            self.maps[material] = self._buf[n]
        return self.maps[material]

    def stacked(self) -> tuple[tuple[str, ...], np.ndarray]:
        """Materials in plane order and the (M, H, W) view of their planes."""
        names = tuple(self.maps)
        if not names:
            return ("water",), np.zeros((1, *self.grid.shape), np.float32)
        return names, self._buf[: len(names)]
    targets: list[tuple[Phantom, np.ndarray]] = field(default_factory=list)  # phantom, full-image mask
    #: per target (same order): volume (cm³) of each of its materials, from its own projection
    target_volumes: list[dict[str, float]] = field(default_factory=list)
    confusers: list[dict[str, Any]] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)

    def add(self, phantom: Phantom, center: np.ndarray, rotation: np.ndarray) -> None:
        """Project the posed phantom and add its path lengths; keep masks of targets and confusers."""
        pr = project(phantom, self.grid, rotation=rotation, center=center, backend=self.backend)
        self.objects.append(phantom.kind)
        if pr is None:
            return
        i0, i1, j0, j1 = pr.roi
        for mat, m in pr.maps.items():
            self.plane(mat)[i0:i1, j0:j1] += m
        if phantom.role not in ("target", "confuser"):
            return
        local = pr.total() > MASK_THRESHOLD_CM
        if phantom.role == "target":
            mask = np.zeros(self.grid.shape, bool)
            mask[i0:i1, j0:j1] = local
            self.targets.append((phantom, mask))
            px_cm2 = self.grid.py * self.grid.px
            self.target_volumes.append({mat: float(m.sum(dtype=np.float64)) * px_cm2 for mat, m in pr.maps.items()})
        else:
            box = _mask_box(local, offset=(i0, j0))
            if box is not None:
                self.confusers.append({"class": phantom.confuser_class, "kind": phantom.kind, "box": box})


def _mass_g(volumes: Mapping[str, float]) -> float:
    """Mass (g) of a target from its material volumes (cm³) and the physics tables' densities.

    The whole object as projected, including any part hidden behind other objects: what a
    seizure would weigh, not what the image shows (a part outside the image is not counted).
    """
    from ..physics.tables import load_tables

    tables = load_tables()
    return round(sum(v * tables.density(mat) for mat, v in volumes.items()), 1)


def _jsonable(info: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in info.items():
        if isinstance(v, (np.floating, float)):
            out[k] = round(float(v), 3)
        elif isinstance(v, (np.integer, int, bool, str)) or v is None:
            out[k] = v.item() if isinstance(v, np.generic) else v
        elif isinstance(v, (list, tuple, np.ndarray)):
            out[k] = [round(float(x), 3) for x in np.asarray(v, float).ravel()]
    return out


def _mask_box(mask: np.ndarray, *, offset: tuple[int, int] = (0, 0)) -> list[float] | None:
    """``[x0, y0, x1, y1]`` (pixel edges) of a mask, None below :data:`MIN_BOX_PIXELS` pixels."""
    if np.count_nonzero(mask) < MIN_BOX_PIXELS:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    i0, j0 = offset
    return [float(cols[0] + j0), float(rows[0] + i0), float(cols[-1] + 1 + j0), float(rows[-1] + 1 + i0)]


def _textile_field(rng: np.random.Generator, shape: tuple[int, int], mean_cm: float) -> np.ndarray:
    """Folded clothes seen from above: smooth random thickness with fold ridges (cm)."""
    import cv2

    h, w = shape
    lo = rng.gamma(2.0, 0.5, size=(max(h // 40, 2), max(w // 40, 2))).astype(np.float32)
    field_ = cv2.resize(lo, (w, h), interpolation=cv2.INTER_CUBIC)
    folds = rng.gamma(1.5, 0.3, size=(max(h // 12, 2), max(w // 12, 2))).astype(np.float32)
    field_ += 0.5 * cv2.resize(folds, (w, h), interpolation=cv2.INTER_LINEAR)
    field_ = np.maximum(field_, 0)
    return field_ * (mean_cm / max(float(field_.mean()), 1e-6))


def _ru(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Uniform in [lo, hi]; the midpoint when the interval is empty (a grid smaller than the object)."""
    u = rng.random()  # always consume one draw, so later draws do not depend on the sizes
    return lo + u * (hi - lo) if hi > lo else 0.5 * (lo + hi)


def _uniform_xy(rng: np.random.Generator, region: tuple[float, float, float, float]) -> np.ndarray:
    x0, x1, y0, y1 = region
    return np.array([_ru(rng, x0, x1), _ru(rng, y0, y1), 0.0])


def _fit(size: float, avail: float) -> float:
    return max(min(size, avail), 5.0)


_LUGGAGE_CLUTTER = ("bottle", "laptop", "phone_charger", "tool", "food", "shoes", "toiletries", "books")
_CARGO_CLUTTER = ("machinery", "food", "bottle", "books", "tool", "laptop")


def _container(canvas: _Canvas, rng: np.random.Generator, kind: str, domain: str) -> list[tuple[float, float, float, float]]:
    """Place the container(s); return interior regions (x0, x1, y0, y1 in cm) for contents.

    ``suitcase`` (a suitcase; on a cargo profile, cartons), ``cartons`` (2-4, cargo 4-8, bigger),
    ``pallet`` (a pallet under a crate or inside a ULD shell). Sacks and logs are composed by
    their own scenario functions.
    """
    hcm, wcm = canvas.grid.size_cm
    cx, cy = wcm / 2, hcm / 2
    flat = np.eye(3)
    if kind == "suitcase" and domain == "cargo":
        kind = "cartons"
    if kind == "suitcase":
        L = _fit(rng.uniform(55, 80), wcm - 12)
        W = _fit(rng.uniform(38, 52), hcm - 12)
        ph = build("suitcase", rng, size_cm=(L, W, rng.uniform(22, 32)))
        canvas.add(ph, np.array([cx, cy, 0.0]), _yaw(rng, 3.0))
        return [(cx - L / 2 + 3, cx + L / 2 - 3, cy - W / 2 + 3, cy + W / 2 - 3)]
    if kind == "cartons":
        n = int(rng.integers(2, 5)) if domain == "baggage" else int(rng.integers(4, 9))
        regions = []
        for _ in range(n):
            L = _fit(rng.uniform(30, 60) * (1.6 if domain == "cargo" else 1), wcm * 0.6)
            W = _fit(rng.uniform(25, 45) * (1.6 if domain == "cargo" else 1), hcm * 0.7)
            c = np.array([_ru(rng, L / 2 + 2, wcm - L / 2 - 2), _ru(rng, W / 2 + 2, hcm - W / 2 - 2), 0.0])
            canvas.add(build("carton", rng, size_cm=(L, W, rng.uniform(20, 40))), c, flat)
            regions.append((c[0] - L / 2 + 2, c[0] + L / 2 - 2, c[1] - W / 2 + 2, c[1] + W / 2 - 2))
        return regions
    if kind == "pallet":
        L, W = _fit(120.0, wcm - 10), _fit(100.0, hcm - 10)
        canvas.add(build("pallet", rng, size_cm=(L, W)), np.array([cx, cy, 0.0]), flat)
        if rng.random() < 0.5 and wcm > 150:
            canvas.add(build("uld_wall", rng, size_cm=(wcm - 8, hcm - 8, 160.0)), np.array([cx, cy, 0.0]), flat)
        else:
            canvas.add(build("crate", rng, size_cm=(_fit(rng.uniform(60, 110), wcm - 20), _fit(rng.uniform(40, 90), hcm - 20), 80.0)),
                       np.array([cx + rng.uniform(-10, 10), cy, 0.0]), flat)
        return [(cx - L / 2 + 3, cx + L / 2 - 3, cy - W / 2 + 3, cy + W / 2 - 3)]
    raise InvalidParameterError(f"unknown container {kind!r}")


def _yaw(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    a = np.deg2rad(rng.uniform(-max_deg, max_deg))
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def _lying(rng: np.random.Generator) -> np.ndarray:
    """Pose of an object resting in a container: random 3-D orientation biased to lie flat."""
    if rng.random() < 0.35:
        return random_rotation(rng)
    return random_rotation(rng, max_tilt_deg=25.0)


def _grid_for(profile: Any, domain: str, *, channels: int | None, length_cm: float | None) -> Grid:
    det, line = profile.detector_pitch_mm, profile.line_pitch_mm
    h = int(channels or profile.channels)
    if length_cm is None:
        length_cm = {"baggage": 95.0, "cargo": 320.0}[domain]
    w = int(round(length_cm * 10.0 / line))
    return Grid((h, w), (det, line))


def scene_grid(profile: Any, *, channels: int | None = None, length_cm: float | None = None) -> Grid:
    """The image grid of a scene for ``profile``: all detector channels by ``length_cm`` of belt.

    Default belt length: 95 cm for baggage (a suitcase with margins: 0.85-1.2 Mpx per energy at
    0.8-1 mm pitch), 320 cm for cargo.
    """
    dom = profile_domain(profile)
    if channels is not None and not 16 <= int(channels) <= 8192:
        raise InvalidParameterError(f"channels must lie in [16, 8192], got {channels}")
    if length_cm is not None and not 10 <= float(length_cm) <= 2000:
        raise InvalidParameterError(f"length_cm must lie in [10, 2000], got {length_cm}")
    return _grid_for(profile, dom, channels=channels, length_cm=length_cm)


def _footprint(ph: Phantom, rot: np.ndarray) -> tuple[float, float]:
    """Half-size (x, y) in cm of a box holding the posed phantom's projection (conservative)."""
    h = np.abs(rot) @ ph.extent()
    return float(h[0]), float(h[1])


def _clamp_into(c: np.ndarray, region, half: tuple[float, float]) -> np.ndarray:
    """Move a centre so that a footprint of ``half`` stays inside ``region`` (centred if too big)."""
    x0, x1, y0, y1 = region
    out = c.copy()
    for k, (lo, hi, h) in enumerate(((x0, x1, half[0]), (y0, y1, half[1]))):
        lo, hi = lo + h, hi - h
        out[k] = np.clip(c[k], lo, hi) if hi >= lo else 0.5 * (lo + hi)
    return out


def _place_near(rng: np.random.Generator, canvas: _Canvas, region, overlap: float, ph: Phantom, rot: np.ndarray) -> np.ndarray:
    """A centre over a target already placed (probability ``overlap``) or anywhere in ``region``;
    either way the object's footprint is kept inside the region (the container)."""
    half = _footprint(ph, rot)
    if canvas.targets and rng.random() < overlap:
        _ph, mask = canvas.targets[int(rng.integers(0, len(canvas.targets)))]
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        if len(rows):
            i = rng.uniform(rows[0], rows[-1] + 1)
            j = rng.uniform(cols[0], cols[-1] + 1)
            return _clamp_into(np.array([j * canvas.grid.px, i * canvas.grid.py, 0.0]), region, half)
    return _inside(rng, region, half)


def compose_scene(scenario: str | Scenario, profile: Any, seed: int | np.random.SeedSequence, *,
                  grid: Grid | None = None, target_fraction: float | None = None, clutter_density: float | None = None,
                  overlap: float | None = None, force_target: bool | None = None, backend: str = "numba",
                  targets: tuple[str, ...] | None = None, confusers: tuple[str, ...] | None = None,
                  n_targets: tuple[int, int] | None = None, overburden: float = 0.0,
                  overburden_style: str = "box") -> SceneResult:
    """Compose one scene of ``scenario`` for ``profile`` (anything with the pitch/channel fields of
    :class:`nii.profiles.ScannerProfile`).

    Parameters
    ----------
    seed : int or SeedSequence
        The scene is a pure function of (scenario, profile geometry, seed, parameters).
    grid : Grid, optional
        Image grid; default :func:`scene_grid` of the profile.
    target_fraction, clutter_density, overlap : float, optional
        Override the scenario's parameters.
    force_target : bool, optional
        True/False forces a scene with/without targets (sample sets); None draws from
        ``target_fraction``.
    backend : {"numba", "numpy"}
        Projection of analytic parts (see :func:`nii.sim.phantoms.project`); same scene either way.
    targets, confusers : tuple of str, optional
        Catalogue phantoms to draw instead of the scenario's (not with ``mixed``).
    n_targets : (int, int), optional
        Range of the number of targets in a scene that holds any (default: the scenario's).
    overburden : float
        Probability that each target gets a thick organic slab laid over it (training-time
        domain randomisation; see :data:`OVERBURDEN_MATERIALS`). Its draws come from a stream of
        their own, so a scene with ``overburden=0`` (the default) is the scene it always was, and
        with any value the same objects sit in the same places: only the slabs are added.
    overburden_style : {"box", "textured"}
        ``box`` (the default, every dataset built before 2026-11-27): uniform boxes over targets
        plus Poisson(``overburden``) boxes anywhere. ``textured``: slabs with structure (boards
        with gaps and knots, boxes with voids and grain, round masses and bundles of rolls) laid
        over confusers as often as over targets, so that neither thick uneven organic matter nor
        a slab over a compact object is a sign of a target (see :func:`_add_overburden`).

    Returns
    -------
    SceneResult
        ``stack`` (materials present, path lengths in cm), ``truth`` (one box per visible target,
        the bounding box of its mask), ``masks`` (full-image bool mask per truth box: path length
        of the target > :data:`MASK_THRESHOLD_CM`), ``scenario`` (the one drawn, for ``mixed``),
        ``seed`` (a 32-bit digest of the seed sequence) and ``metadata`` (family, domain,
        parameters, confusers with class, kind and box, the kinds of every object placed, and
        ``target_kinds`` / ``target_mass_g``: each truth box's phantom and its mass in grams).
    """
    sc = get_scenario(scenario).with_params(target_fraction=target_fraction, clutter_density=clutter_density, overlap=overlap,
                                            targets=targets, confusers=confusers, n_targets=n_targets)
    if sc.name == "mixed" and (targets is not None or confusers is not None):
        raise InvalidParameterError("targets= and confusers= overrides need a named scenario, not 'mixed'")
    if not 0.0 <= float(overburden) <= 1.0:
        raise InvalidParameterError(f"overburden must lie in [0, 1], got {overburden}")
    if overburden_style not in OVERBURDEN_STYLES:
        raise InvalidParameterError(f"overburden_style must be one of {', '.join(OVERBURDEN_STYLES)}, got {overburden_style!r}")
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    rng = np.random.default_rng(ss)
    domain = profile_domain(profile)
    drawn = sc
    if sc.name == "mixed":
        names = [n for n, s in SCENARIOS.items() if n != "mixed" and domain in s.domains]
        w = np.array([MIXED_WEIGHTS.get(n, 1.0) for n in names])
        drawn = SCENARIOS[names[int(rng.choice(len(names), p=w / w.sum()))]]
        if target_fraction is not None or clutter_density is not None or overlap is not None or n_targets is not None:
            drawn = drawn.with_params(target_fraction=target_fraction, clutter_density=clutter_density, overlap=overlap,
                                      n_targets=n_targets)
    elif domain not in sc.domains:
        raise InvalidParameterError(f"scenario {sc.name!r} is for {'/'.join(sc.domains)} profiles, not {domain}")
    if grid is None:
        grid = scene_grid(profile)
    canvas = _Canvas(grid, backend)
    has_target = bool(rng.random() < drawn.target_fraction) if force_target is None else bool(force_target)
    if not drawn.targets:
        has_target = False
    _COMPOSERS[drawn.container](canvas, rng, drawn, domain, has_target)
    n_slabs = _add_overburden(canvas, ss, float(overburden), domain, overburden_style) if overburden > 0 else 0
    # truth
    boxes, classes, masks, kinds, masses, target_info = [], [], [], [], [], []
    for (ph, mask), volumes in zip(canvas.targets, canvas.target_volumes):
        b = _mask_box(mask)
        if b is None:
            continue
        boxes.append(b)
        classes.append(ph.truth_class)
        masks.append(mask)
        kinds.append(ph.kind)
        masses.append(_mass_g(volumes))
        target_info.append({"class": ph.truth_class, "kind": ph.kind, "box": b, "pixels": int(mask.sum()),
                            "mass_g": masses[-1], **_jsonable(ph.info)})
    truth = Truth(np.array(boxes, np.float32).reshape(-1, 4), tuple(classes))
    materials, thick = canvas.stacked()
    stack = MaterialStack(materials, thick, grid.pitch_mm)
    meta = {
        "scenario": drawn.name,
        "requested_scenario": sc.name,
        "family": drawn.family,
        "domain": domain,
        "container": drawn.container,
        "target_fraction": drawn.target_fraction,
        "clutter_density": drawn.clutter_density,
        "overlap": drawn.overlap,
        "has_target": bool(truth.classes),
        "target_kinds": kinds,
        "target_mass_g": masses,
        "targets": target_info,
        "confusers": canvas.confusers,
        "objects": canvas.objects,
    }
    if overburden > 0:
        meta["overburden"] = {"probability": float(overburden), "slabs": n_slabs, "style": overburden_style}
    return SceneResult(stack=stack, truth=truth, masks=tuple(masks), scenario=drawn.name,
                       seed=int(ss.generate_state(1)[0]), metadata=meta)


#: Materials of the organic slabs that ``overburden`` lays over targets: goods a target may lie
#: in or under (wood, paper, food, water, plastics, textiles).
OVERBURDEN_MATERIALS: tuple[str, ...] = ("wood", "cellulose", "paper", "cardboard", "cotton", "nylon", "polyethylene",
                                         "rubber", "water", "sugar", "flour", "nuts")
#: Areal density range (g/cm²) of an overburden slab per domain: up to 10 cm of water in a bag
#: (a 140 kV beam keeps a target visible under it), up to 40 cm of wood on a cargo scanner.
OVERBURDEN_AREAL_DENSITY: Mapping[str, tuple[float, float]] = types.MappingProxyType({"baggage": (2.0, 10.0), "cargo": (3.0, 25.0)})


#: Styles of :func:`compose_scene`'s ``overburden``.
OVERBURDEN_STYLES: tuple[str, ...] = ("box", "textured")
#: Confusers per scene that may get a slab over them in the ``textured`` style (targets get one
#: each with the same probability; a scene holds 1-3 targets in training).
_OVERBURDEN_MAX_CONFUSER_SITES = 3


def _add_overburden(canvas: _Canvas, ss: np.random.SeedSequence, p: float, domain: str, style: str = "box") -> int:
    """Lay organic slabs over targets (each with probability ``p``) and elsewhere; return how many.

    A slab over an object covers its footprint (1.1-2.5x its box plus 2-10 cm, so its edges fall
    beside the object rather than on it) and holds an areal density of its material drawn from
    :data:`OVERBURDEN_AREAL_DENSITY` for the domain. Every scene, negatives included, also gets
    Poisson(``p``) slabs of 10-50 cm in the middle 80 % of the image. The draws use their own
    stream (a child of the scene's seed) so that the rest of the scene does not move.

    ``style="box"``: uniform boxes, over targets only. ``style="textured"``: up to three
    confusers per scene also get a slab with probability ``p`` (so that a slab over a compact
    object is no sign of a target), and each slab has structure: parallel boards with gaps and
    knots, a box with voids and denser grain strips, a round mass (thickest in the middle), or
    a bundle of rolls (cylinders side by side, curved profiles); see :func:`_textured_slab`.
    """
    from ..physics.tables import load_tables

    rng = np.random.default_rng(np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, 0x0B0E)))
    tables = load_tables()
    g = canvas.grid
    hcm, wcm = g.size_cm
    placed: list[tuple[float, float, np.ndarray]] = []
    sites = [b for _ph, mask in list(canvas.targets) if (b := _mask_box(mask)) is not None]
    if style == "textured" and canvas.confusers:
        order = rng.permutation(len(canvas.confusers))[:_OVERBURDEN_MAX_CONFUSER_SITES]
        sites += [tuple(canvas.confusers[int(k)]["box"]) for k in order]
    for b in sites:
        if rng.random() >= p:
            continue
        w = (b[2] - b[0]) * g.px * rng.uniform(1.1, 2.5) + rng.uniform(2, 10)
        h = (b[3] - b[1]) * g.py * rng.uniform(1.1, 2.5) + rng.uniform(2, 10)
        c = np.array([(b[0] + b[2]) / 2 * g.px, (b[1] + b[3]) / 2 * g.py, 0.0]) + np.append(rng.normal(0, 0.15 * min(w, h), 2), 0)
        placed.append((w, h, c))
    for _ in range(int(rng.poisson(p))):
        c = np.array([rng.uniform(0.1, 0.9) * wcm, rng.uniform(0.1, 0.9) * hcm, 0.0])
        placed.append((rng.uniform(10, 50), rng.uniform(10, 50), c))
    lo, hi = OVERBURDEN_AREAL_DENSITY[domain]
    for w, h, c in placed:
        mat = OVERBURDEN_MATERIALS[int(rng.integers(0, len(OVERBURDEN_MATERIALS)))]
        t = rng.uniform(lo, hi) / tables.density(mat)
        info = {"size_cm": [float(w), float(h)], "thickness_cm": float(t), "material": mat}
        if style == "box":
            parts: tuple = (_box_part(mat, (w / 2, h / 2, t / 2)),)
        else:
            parts, info["shape"] = _textured_slab(rng, mat, w, h, t)
        canvas.add(Phantom("overburden_slab", parts, role="clutter", info=info), c, _yaw(rng, 20.0))
    return len(placed)


def _textured_slab(rng: np.random.Generator, mat: str, w: float, h: float, t: float) -> tuple[tuple, str]:
    """Parts of one structured slab of ``mat`` covering ``w`` x ``h`` cm, ``t`` cm thick at most
    places; and the shape's name. The grain runs along x or y at random.

    * ``boards``: 2-8 parallel boards of 0.6-1.3 t with 0-2 cm gaps, and 0-4 knots (flat
      ellipsoids adding 0.3-0.8 t);
    * ``voided``: a box with 1-5 ellipsoidal voids (up to 90 % of its thickness) and 2-8 grain
      strips adding 5-25 % of its thickness;
    * ``round``: an ellipsoid ``t`` thick in the middle, thinning to its rim (a sack, a bale);
    * ``rolls``: 1-5 cylinders side by side along the grain (rolled cloth or paper, poles), each
      ``t`` thick on its axis.
    """
    along_x = bool(rng.random() < 0.5)
    length, across = (w, h) if along_x else (h, w)

    def xy(u: float, v: float) -> tuple[float, float]:  # (along, across) -> (x, y)
        return (u, v) if along_x else (v, u)

    shape = ("boards", "voided", "round", "rolls")[int(rng.choice(4, p=[0.35, 0.3, 0.15, 0.2]))]
    parts: list = []
    if shape == "boards":
        n = int(rng.integers(2, 9))
        gaps = rng.uniform(0.0, 2.0, n - 1) * (rng.random(n - 1) < 0.6)
        bw = max((across - gaps.sum()) / n, 1.0)
        v = -across / 2
        for k in range(n):
            tk = t * rng.uniform(0.6, 1.3)
            cx, cy = xy(rng.normal(0, 0.03 * length), v + bw / 2)
            hx, hy = xy(length / 2, bw / 2)
            parts.append(_box_part(mat, (hx, hy, tk / 2), center=(cx, cy, 0.0)))
            v += bw + (gaps[k] if k < n - 1 else 0.0)
        for _ in range(int(rng.integers(0, 5))):
            r = rng.uniform(1.0, min(4.0, bw / 2 + 0.5))
            cx, cy = xy(rng.uniform(-0.45, 0.45) * length, rng.uniform(-0.45, 0.45) * across)
            parts.append(_ellipsoid_part(mat, (r, r * rng.uniform(0.6, 1.0), t * rng.uniform(0.15, 0.4)), center=(cx, cy, 0.0)))
    elif shape == "voided":
        parts.append(_box_part(mat, (w / 2, h / 2, t / 2)))
        for _ in range(int(rng.integers(1, 6))):
            a = min(rng.uniform(1.0, 6.0), 0.4 * length)
            b = min(rng.uniform(0.5, 3.0), 0.4 * across)
            cz = t / 2 * rng.uniform(0.2, 0.9)
            cx, cy = xy(rng.uniform(-0.5, 0.5) * (length - 2 * a), rng.uniform(-0.5, 0.5) * (across - 2 * b))
            sa, sb = xy(a, b)
            parts.append(_ellipsoid_part(mat, (sa, sb, cz), center=(cx, cy, 0.0), sign=-1))
        for _ in range(int(rng.integers(2, 9))):
            sw = rng.uniform(0.3, 2.0)
            cx, cy = xy(0.0, rng.uniform(-0.5, 0.5) * (across - sw))
            hx, hy = xy(length / 2, sw / 2)
            parts.append(_box_part(mat, (hx, hy, t * rng.uniform(0.025, 0.125)), center=(cx, cy, t / 2 + 0.01)))
    elif shape == "round":
        parts.append(_ellipsoid_part(mat, (w / 2, h / 2, t / 2)))
    else:
        n = max(1, min(5, int(across // max(t, 1e-3))))
        r = t / 2
        pitch = across / n
        for k in range(n):
            v = -across / 2 + pitch * (k + 0.5)
            u0 = -length / 2 * rng.uniform(0.85, 1.0)
            u1 = length / 2 * rng.uniform(0.85, 1.0)
            (x0, y0), (x1, y1) = xy(u0, v), xy(u1, v)
            parts += _tube_parts(mat, np.array([[x0, y0, 0.0], [x1, y1, 0.0]]), np.array([r, r]))
    return tuple(parts), shape


# ----------------------------------------------------------------------------------------------
# per-container composition


def _n_clutter(rng: np.random.Generator, sc: Scenario, regions) -> int:
    area = sum(max(r[1] - r[0], 0.0) * max(r[3] - r[2], 0.0) for r in regions)
    return int(rng.poisson(sc.clutter_density * area / 1000.0))


def _span(region) -> float:
    """Longest straight object that fits the region lying flat (its diagonal)."""
    return float(np.hypot(max(region[1] - region[0], 0.0), max(region[3] - region[2], 0.0)))


def _fitting(name: str, rng: np.random.Generator, region, *, tries: int = 6, required: bool = False) -> tuple[Phantom, np.ndarray] | None:
    """Build ``name`` and pose it lying down so that its footprint fits the region.

    Up to ``tries`` (phantom, pose) draws; when none fits, None, or for a ``required`` object
    (a target) the draw that overflows least.
    """
    w = max(region[1] - region[0], 0.0)
    h = max(region[3] - region[2], 0.0)
    best, best_over = None, np.inf
    for _ in range(tries):
        ph = _scaled_build(name, rng, region)
        rot = _lying(rng)
        hx, hy = _footprint(ph, rot)
        over = max(2 * hx - w, 0.0) + max(2 * hy - h, 0.0)
        if over == 0.0:
            return ph, rot
        if over < best_over:
            best, best_over = (ph, rot), over
    return best if required else None


def _inside(rng: np.random.Generator, region, half: tuple[float, float]) -> np.ndarray:
    """A uniform centre keeping a footprint of half-size ``half`` inside the region where it can."""
    x0, x1, y0, y1 = region
    return _uniform_xy(rng, (x0 + half[0], x1 - half[0], y0 + half[1], y1 - half[1]))


def _draw_targets(canvas: _Canvas, rng: np.random.Generator, sc: Scenario, regions) -> None:
    n = int(rng.integers(sc.n_targets[0], sc.n_targets[1] + 1))
    order = rng.permutation(len(sc.targets))
    for k in range(n):
        name = sc.targets[int(order[k % len(order)])]
        region = regions[int(rng.integers(0, len(regions)))]
        got = _fitting(name, rng, region, required=True)
        if got is not None:
            ph, rot = got
            canvas.add(ph, _inside(rng, region, _footprint(ph, rot)), rot)


def _scaled_build(name: str, rng: np.random.Generator, region) -> Phantom:
    span = min(_span(region), 300.0)
    if name == "tusk":
        return build(name, rng, length_cm=float(np.clip(rng.uniform(30, 200), 30, max(30.0, span * 0.9))))
    if name == "scale_sack":
        w = min(region[1] - region[0], 80.0)
        h = min(region[3] - region[2], 50.0)
        return build(name, rng, size_cm=(max(w * rng.uniform(0.6, 1.0), 20), max(h * rng.uniform(0.6, 1.0), 15), rng.uniform(15, 30)))
    return build(name, rng)


def _draw_confusers(canvas: _Canvas, rng: np.random.Generator, sc: Scenario, regions) -> None:
    if not sc.confusers:
        return
    n = int(rng.integers(sc.n_confusers[0], sc.n_confusers[1] + 1))
    order = rng.permutation(len(sc.confusers))  # every kind once before any repeats
    for k in range(n):
        name = sc.confusers[int(order[k % len(order)])]
        region = regions[int(rng.integers(0, len(regions)))]
        got = _fitting(name, rng, region)
        if got is not None:
            ph, rot = got
            canvas.add(ph, _place_near(rng, canvas, region, sc.overlap, ph, rot), rot)


def _draw_clutter(canvas: _Canvas, rng: np.random.Generator, sc: Scenario, regions, names: tuple[str, ...]) -> None:
    for _ in range(_n_clutter(rng, sc, regions)):
        name = names[int(rng.integers(0, len(names)))]
        region = regions[int(rng.integers(0, len(regions)))]
        got = _fitting(name, rng, region, tries=3)
        if got is not None:
            ph, rot = got
            canvas.add(ph, _place_near(rng, canvas, region, sc.overlap, ph, rot), rot)


def _add_textiles(canvas: _Canvas, rng: np.random.Generator, region, mean_cm: float) -> None:
    g = canvas.grid
    roi = g.roi(*region)
    if roi is None:
        return
    i0, i1, j0, j1 = roi
    fld = _textile_field(rng, (i1 - i0, j1 - j0), mean_cm)
    canvas.plane("cotton")[i0:i1, j0:j1] += fld
    canvas.objects.append("textiles")


def _compose_suitcase(canvas: _Canvas, rng: np.random.Generator, sc: Scenario, domain: str, has_target: bool) -> None:
    regions = _container(canvas, rng, "suitcase", domain)
    for r in regions:
        _add_textiles(canvas, rng, r, rng.uniform(2.0, 8.0) if domain == "baggage" else rng.uniform(5, 20))
    if has_target:
        _draw_targets(canvas, rng, sc, regions)
    if sc.family == "metal" and has_target:
        for _ph, mask in list(canvas.targets):
            b = _mask_box(mask)
            if b is None:
                continue
            g = canvas.grid
            w = (b[2] - b[0]) * g.px + rng.uniform(2, 15)
            h = (b[3] - b[1]) * g.py + rng.uniform(2, 15)
            mat = ("steel", "aluminium", "lead")[int(rng.choice(3, p=[0.6, 0.3, 0.1]))]
            t = {"steel": rng.uniform(0.1, 0.5), "aluminium": rng.uniform(0.3, 1.5), "lead": rng.uniform(0.05, 0.2)}[mat]
            sheet = build("metal_sheet", rng, size_cm=(w, h), thickness_cm=t, material=mat)
            c = np.array([(b[0] + b[2]) / 2 * g.px, (b[1] + b[3]) / 2 * g.py, 0.0]) + np.append(rng.normal(0, 2, 2), 0)
            canvas.add(sheet, c, _yaw(rng, 15.0))
        clutter = ("tool", "machinery", "laptop", "metal_sheet")
    else:
        clutter = _LUGGAGE_CLUTTER if domain == "baggage" else _CARGO_CLUTTER
    _draw_confusers(canvas, rng, sc, regions)
    _draw_clutter(canvas, rng, sc, regions, clutter)


def _compose_cartons(canvas: _Canvas, rng: np.random.Generator, sc: Scenario, domain: str, has_target: bool) -> None:
    regions = _container(canvas, rng, "cartons", domain)
    if has_target:
        _draw_targets(canvas, rng, sc, regions[:1])
    _draw_confusers(canvas, rng, sc, regions)
    _draw_clutter(canvas, rng, sc, regions, ("books", "food", "bottle", "toiletries", "phone_charger"))


def _compose_pallet(canvas: _Canvas, rng: np.random.Generator, sc: Scenario, domain: str, has_target: bool) -> None:
    regions = _container(canvas, rng, "pallet", domain)
    if has_target:
        _draw_targets(canvas, rng, sc, regions)
    _draw_confusers(canvas, rng, sc, regions)
    _draw_clutter(canvas, rng, sc, regions, _CARGO_CLUTTER)


def _compose_sack(canvas: _Canvas, rng: np.random.Generator, sc: Scenario, domain: str, has_target: bool) -> None:
    hcm, wcm = canvas.grid.size_cm
    n = 1 if domain == "baggage" else int(rng.integers(2, 5))
    regions = []
    for k in range(n):
        cx = wcm * (k + 0.5) / n
        L = _fit(rng.uniform(50, 80), wcm / n - 4)
        W = _fit(rng.uniform(35, 50), hcm - 8)
        sack = build(sc.confusers[0], rng, size_cm=(L, W, rng.uniform(20, 30)))
        c = np.array([cx, hcm / 2 + rng.uniform(-3, 3), 0.0])
        canvas.add(sack, c, _yaw(rng, 10.0))
        regions.append((c[0] - L * 0.3, c[0] + L * 0.3, c[1] - W * 0.3, c[1] + W * 0.3))
    if has_target:
        _draw_targets(canvas, rng, sc, regions)


def _along_x(ph: Phantom, rng: np.random.Generator) -> np.ndarray:
    """Rotation laying the phantom's longest axis along the scene x axis (along a bore)."""
    ext = ph.extent()
    k = int(np.argmax(ext))
    perm = np.eye(3)[:, [k, (k + 1) % 3, (k + 2) % 3]].T  # phantom axis k -> scene x
    spin = rotation_about(np.array([1.0, 0.0, 0.0]), rng.uniform(0, 2 * np.pi))
    return _yaw(rng, 2.0) @ spin @ perm


def _compose_timber(canvas: _Canvas, rng: np.random.Generator, sc: Scenario, domain: str, has_target: bool) -> None:
    """Logs along the belt; one is bored out to fit the contraband, which lies along the bore."""
    hcm, wcm = canvas.grid.size_cm
    n = 1 if domain == "baggage" else int(rng.integers(2, 4))
    ys = np.linspace(0, hcm, n + 2)[1:-1]
    hollow = int(rng.integers(0, n)) if has_target else -1
    length = float(_fit(wcm - 6, 300.0))
    rmax = float(_fit(30.0, hcm / (2 * n + 0.5)))
    for k, y in enumerate(ys):
        r = float(_ru(rng, min(12.0, rmax), rmax))
        if k != hollow:
            log = build("timber_log", rng, length_cm=length, radius_cm=r)
            canvas.add(log, np.array([wcm / 2, y, 0.0]), _yaw(rng, 2.0))
            continue
        ph = None
        for _ in range(8):
            name = sc.targets[int(rng.integers(0, len(sc.targets)))]
            if name == "tusk":  # the straighter tusks are the ones that go down a bore
                cand = build(name, rng, length_cm=float(np.clip(_ru(rng, 30, 0.6 * length), 30, 200)), bend_rad=_ru(rng, 0.1, 0.4))
            else:
                cand = build(name, rng)
            ext = cand.extent()
            ext_sorted = np.sort(ext)
            if 2 * ext_sorted[2] + 4 < 0.9 * length and np.hypot(ext_sorted[0], ext_sorted[1]) + 0.8 < rmax - 1.5:
                ph = cand
                break
        if ph is None:  # nothing fits this log: leave it solid
            canvas.add(build("timber_log", rng, length_cm=length, radius_cm=r), np.array([wcm / 2, y, 0.0]), _yaw(rng, 2.0))
            continue
        ext_sorted = np.sort(ph.extent())
        crad = float(np.hypot(ext_sorted[0], ext_sorted[1]) + 0.8)
        clen = float(2 * ext_sorted[2] + 4)
        r = max(r, crad + 1.5)
        log = build("timber_log", rng, length_cm=length, radius_cm=r, cavity=(clen, crad))
        rot_log = np.eye(3)
        canvas.add(log, np.array([wcm / 2, y, 0.0]), rot_log)
        bore = log.info["cavity_center_cm"]
        canvas.add(ph, np.array([wcm / 2 + bore, y, 0.0]), _along_x(ph, rng))
    _draw_confusers(canvas, rng, sc, [(10, wcm - 10, 10, hcm - 10)])


_COMPOSERS: dict[str, Callable[..., None]] = {
    "suitcase": _compose_suitcase,
    "cartons": _compose_cartons,
    "pallet": _compose_pallet,
    "sack": _compose_sack,
    "timber": _compose_timber,
}
