"""Interface types shared by the phantom/scene side and the image-formation side of the simulator.

A scene is described, before any X-ray physics, by the path length of each material along every
ray: a :class:`MaterialStack`. Image formation turns a stack into detector counts for a scanner
profile (``nii.sim.imaging.form_image``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..containers import Truth, freeze_array
from ..errors import InvalidDataError

__all__ = ["MaterialStack", "SceneResult"]


@dataclass(frozen=True, eq=False)
class MaterialStack:
    """Path length per material along each ray of a line-scanner image.

    Parameters
    ----------
    materials : tuple of str
        Material names as in the physics tables (``calibration/physics``), e.g. ``"ivory"``.
    thickness_cm : ndarray, shape (M, H, W), float32
        Path length in cm of material ``m`` along the ray hitting detector channel ``h`` at scan
        line ``w``. Zero where the material is absent.
    pixel_pitch_mm : (float, float)
        Detector and line pitch in mm at which the stack is sampled.
    """

    materials: tuple[str, ...]
    thickness_cm: np.ndarray
    pixel_pitch_mm: tuple[float, float]

    def __post_init__(self) -> None:
        t = np.asarray(self.thickness_cm, dtype=np.float32)
        if t.ndim != 3 or t.shape[0] != len(self.materials):
            raise InvalidDataError(
                f"thickness_cm must be (M, H, W) with M = {len(self.materials)} materials, got {t.shape}"
            )
        if not np.all(np.isfinite(t)) or np.any(t < 0):
            raise InvalidDataError("thickness_cm must be finite and non-negative")
        if len(set(self.materials)) != len(self.materials):
            raise InvalidDataError(f"materials must be unique, got {self.materials}")
        object.__setattr__(self, "materials", tuple(self.materials))
        object.__setattr__(self, "thickness_cm", freeze_array(t))
        object.__setattr__(self, "pixel_pitch_mm", tuple(float(p) for p in self.pixel_pitch_mm))

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the image."""
        return tuple(self.thickness_cm.shape[1:])  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class SceneResult:
    """A composed scene: material stack, ground truth and per-object masks."""

    stack: MaterialStack
    truth: Truth
    masks: tuple[np.ndarray, ...] = ()
    scenario: str = ""
    seed: int = 0
    metadata: Mapping[str, Any] = field(default_factory=dict)
