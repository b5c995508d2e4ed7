"""Detector input encoding ``nii-det/1``: how a normalised scan is fed to the detector.

An 8-bit, 3-channel image ``(H, W, 3)`` at the detector's standard pitch:

==========  ====================================================================================
channel     content
==========  ====================================================================================
0           high-energy attenuation: ``round(255 * (1 - exp(-L_high / ATT_SCALE)))`` (air 0)
1           effective atomic number: ``round(255 * clip((Zeff - ZEFF_LO) / (ZEFF_HI - ZEFF_LO), 0, 1))``
            where Zeff is defined and the pixel is not air; 0 for air/undefined
2           low-energy attenuation, same law as channel 0 with ``L_low``
==========  ====================================================================================

Single-energy scans put ``L`` in channels 0 and 2 and 0 in channel 1; rendered pseudo-colour
scans put the class-representative Zeff (:data:`CLASS_ZEFF`) in channel 1. Impenetrable pixels
encode as 255 in channels 0 and 2 and 0 in channel 1.

This NumPy function is the specification; the Numba kernel of the normaliser must reproduce it
exactly (tested), and the model's ``config.json`` names the encoding it was trained on.
"""

from __future__ import annotations

import numpy as np

from .materials import AIR_ATTENUATION_MAX, MaterialClass

__all__ = ["ENCODING", "ATT_SCALE", "ZEFF_LO", "ZEFF_HI", "CLASS_ZEFF", "encode_detector_input"]

ENCODING = "nii-det/1"
ATT_SCALE = 2.0
ZEFF_LO = 5.0
ZEFF_HI = 30.0
#: Representative Zeff per material class, for inputs that only carry a class (renderings).
CLASS_ZEFF = np.array([np.nan, 7.0, 13.0, 26.0, np.nan], dtype=np.float32)
CLASS_ZEFF.flags.writeable = False


def encode_detector_input(
    l_low: np.ndarray | None,
    l_high: np.ndarray,
    zeff: np.ndarray | None,
    material: np.ndarray | None = None,
) -> np.ndarray:
    """Encode attenuation and Zeff maps as the detector's ``uint8 (H, W, 3)`` input.

    Parameters
    ----------
    l_low : ndarray (H, W) or None
        Low-energy log attenuation; None for single-energy input (channel 2 then repeats L_high).
    l_high : ndarray (H, W)
        High-energy (or single-energy) log attenuation.
    zeff : ndarray (H, W) or None
        Effective atomic number (NaN where undefined); None when unknown.
    material : ndarray (H, W) uint8, optional
        Material classes; IMPENETRABLE pixels saturate, AIR pixels get Zeff 0.

    Examples
    --------
    >>> enc = encode_detector_input(np.zeros((1, 2)), np.array([[0.0, 2.0]]), np.array([[np.nan, 13.8]]))
    >>> enc[0].tolist()
    [[0, 0, 0], [161, 90, 0]]
    """
    l_high = np.asarray(l_high, dtype=np.float32)
    l_low = l_high if l_low is None else np.asarray(l_low, dtype=np.float32)
    if l_low.shape != l_high.shape:
        raise ValueError(f"l_low {l_low.shape} and l_high {l_high.shape} must have the same shape")
    out = np.empty(l_high.shape + (3,), dtype=np.uint8)
    scale = np.float32(ATT_SCALE)
    out[..., 0] = np.floor(255.0 * (1.0 - np.exp(-np.maximum(l_high, 0) / scale)) + 0.5).astype(np.uint8)
    out[..., 2] = np.floor(255.0 * (1.0 - np.exp(-np.maximum(l_low, 0) / scale)) + 0.5).astype(np.uint8)
    if zeff is None:
        out[..., 1] = 0
    else:
        z = np.asarray(zeff, dtype=np.float32)
        zn = np.clip((z - np.float32(ZEFF_LO)) / np.float32(ZEFF_HI - ZEFF_LO), 0.0, 1.0)
        ch1 = np.floor(255.0 * zn + 0.5)
        air = ~np.isfinite(z) | (l_high < np.float32(AIR_ATTENUATION_MAX))
        out[..., 1] = np.where(air, 0, ch1).astype(np.uint8)
    if material is not None:
        material = np.asarray(material)
        imp = material == MaterialClass.IMPENETRABLE
        out[imp, 0] = 255
        out[imp, 2] = 255
        out[imp, 1] = 0
        out[material == MaterialClass.AIR, 1] = 0
    return out
