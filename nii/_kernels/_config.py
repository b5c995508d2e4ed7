"""The one place where Numba compilation flags of nii's kernels are set.

``FASTMATH`` stays False: the kernels must reproduce NumPy float32 reference laws bit for bit
(colour, detector encoding, class thresholds), which fast-math reassociation and FMA contraction
would break.
"""

FASTMATH = False
