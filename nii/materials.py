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
