"""Private Numba kernels of nii.

Kernels are compiled with ``cache=True`` and are never called from outside the package: each
has a validating public wrapper elsewhere in nii and a plain NumPy reference in ``tests/naive.py``.
"""
