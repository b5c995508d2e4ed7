"""Material classes and the operator pseudo-colour convention shared by every part of nii.

The classes follow the convention of dual-energy baggage and cargo scanners
(see ``shared/PHYSICS.md``): organic (Zeff < 10) orange, mixed / light inorganic (10-18) green,
metal (> 18) blue, impenetrable black; brightness falls with attenuation.

The renderer (``nii.normalize``) and the reader of 8-bit pseudo-colour screenshots
(``nii.io.rendered``) both use these constants, so an image nii renders reads back to the same
classes.
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = [
    "MaterialClass",
    "ZEFF_ORGANIC_MAX",
    "ZEFF_MIXED_MAX",
    "AIR_ATTENUATION_MAX",
    "CLASS_HUE_RGB",
    "zeff_to_class",
    "DISPLAY_GAMMA",
    "render_pseudocolor",
    "despeckle_display",
    "attenuation_from_brightness",
]


class MaterialClass(enum.IntEnum):
    """Per-pixel material class; stored as ``uint8`` maps."""

    AIR = 0
    ORGANIC = 1
    MIXED = 2
    METAL = 3
    IMPENETRABLE = 4


#: Upper Zeff bound of the organic class (exclusive).
ZEFF_ORGANIC_MAX = 10.0
#: Upper Zeff bound of the mixed / light-inorganic class (exclusive); above is metal.
ZEFF_MIXED_MAX = 18.0
#: Pixels whose high-energy log attenuation is below this are air (nothing in the beam).
AIR_ATTENUATION_MAX = 0.02

#: Fully saturated display colour (RGB, uint8) of each class at zero attenuation.
CLASS_HUE_RGB = np.array(
    [
        [255, 255, 255],  # AIR: white
        [255, 150, 20],  # ORGANIC: orange
        [40, 200, 40],  # MIXED: green
        [40, 90, 255],  # METAL: blue
        [0, 0, 0],  # IMPENETRABLE: black
    ],
    dtype=np.uint8,
)
CLASS_HUE_RGB.flags.writeable = False


def zeff_to_class(zeff: np.ndarray) -> np.ndarray:
    """Map an effective-atomic-number array to :class:`MaterialClass` codes (uint8).

    Air and impenetrable pixels cannot be told from Zeff alone; the normaliser sets them from
    attenuation. NaN Zeff maps to AIR.

    Examples
    --------
    >>> zeff_to_class(np.array([7.4, 13.8, 26.0])).tolist()
    [1, 2, 3]
    """
    z = np.asarray(zeff, dtype=np.float32)
    out = np.full(z.shape, MaterialClass.AIR, dtype=np.uint8)
    out[z < ZEFF_ORGANIC_MAX] = MaterialClass.ORGANIC
    out[(z >= ZEFF_ORGANIC_MAX) & (z < ZEFF_MIXED_MAX)] = MaterialClass.MIXED
    out[z >= ZEFF_MIXED_MAX] = MaterialClass.METAL
    return out


#: Display brightness of a non-air pixel is ``exp(-DISPLAY_GAMMA * L_high)``.
DISPLAY_GAMMA = 0.6


def render_pseudocolor(l_high: np.ndarray, material: np.ndarray) -> np.ndarray:
    """Reference operator rendering: hue from class, brightness from high-energy attenuation.

    ``rgb = round(CLASS_HUE_RGB[class] * exp(-DISPLAY_GAMMA * L_high))`` for object pixels; AIR is
    white and IMPENETRABLE black. This NumPy version is the specification; the fused Numba
    kernel of the normaliser must match it exactly, and :mod:`nii.io.rendered` inverts it.

    Parameters
    ----------
    l_high : ndarray (H, W) float
        High-energy (or single-energy) log attenuation.
    material : ndarray (H, W) uint8
        :class:`MaterialClass` codes.

    Returns
    -------
    ndarray (H, W, 3) uint8, RGB.
    """
    l_high = np.asarray(l_high, dtype=np.float32)
    material = np.asarray(material, dtype=np.uint8)
    if l_high.shape != material.shape:
        raise ValueError(f"l_high {l_high.shape} and material {material.shape} must have the same shape")
    b = np.exp(-np.float32(DISPLAY_GAMMA) * np.maximum(l_high, np.float32(0.0))).astype(np.float32)
    hue = CLASS_HUE_RGB[np.minimum(material, MaterialClass.IMPENETRABLE)].astype(np.float32)
    rgb = np.floor(hue * b[..., None] + np.float32(0.5)).astype(np.uint8)
    rgb[material == MaterialClass.AIR] = 255
    rgb[material == MaterialClass.IMPENETRABLE] = 0
    return rgb


def attenuation_from_brightness(brightness: np.ndarray) -> np.ndarray:
    """Invert the display brightness law: ``L_high = -ln(b) / DISPLAY_GAMMA`` (b in (0, 1])."""
    b = np.clip(np.asarray(brightness, dtype=np.float32), np.float32(1e-4), np.float32(1.0))
    return (-np.log(b) / np.float32(DISPLAY_GAMMA)).astype(np.float32)


def despeckle_display(rgb: np.ndarray, material: np.ndarray, *, max_neighbours: int = 1) -> np.ndarray:
    """Operator display only: show isolated object pixels in air as air.

    Detector noise just above :data:`AIR_ATTENUATION_MAX` makes single pixels of the air region
    "organic"; in the rendering they are bright orange dots that draw the eye away from the
    cargo. An object pixel with at most ``max_neighbours`` object pixels among its 8 neighbours
    is painted with the air colour (white). The material maps themselves, the detector input and
    every statistic are untouched; this applies to the picture alone. Returns a new array.

    Parameters
    ----------
    rgb : ndarray (H, W, 3) uint8
        Rendering (e.g. :func:`render_pseudocolor` or the normaliser's ``color`` map).
    material : ndarray (H, W) uint8
        :class:`MaterialClass` codes of the same pixels.
    max_neighbours : int
        Object neighbours (0-8) up to which a pixel counts as isolated (default 1: single
        pixels and pairs).
    """
    import cv2

    from .errors import InvalidParameterError

    rgb = np.asarray(rgb)
    material = np.asarray(material)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InvalidParameterError(f"rgb must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if material.shape != rgb.shape[:2]:
        raise InvalidParameterError(f"material shape {material.shape} differs from the image's {rgb.shape[:2]}")
    if not 0 <= int(max_neighbours) <= 8:
        raise InvalidParameterError(f"max_neighbours must be in 0..8, got {max_neighbours}")
    obj = (material != MaterialClass.AIR).astype(np.uint8)
    # 3x3 sums including the pixel itself (border pixels see air outside the image)
    n = cv2.boxFilter(obj, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
    isolated = (obj == 1) & (n <= 1 + int(max_neighbours)) & (material != MaterialClass.IMPENETRABLE)
    out = rgb.copy()
    out[isolated] = 255
    return out
