"""Physics-based dual-energy X-ray scan simulator (phantoms, scenes, image formation).

Submodules are imported on use; importing :mod:`nii.sim` itself is cheap.
"""
