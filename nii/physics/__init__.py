"""X-ray physics data of nii: attenuation tables, tube spectra, materials.

* :mod:`nii.physics.tables` — runtime loader of the committed tables (NumPy only);
* :mod:`nii.physics.materials` — the material list (compositions, densities, sources);
* :mod:`nii.physics.build` — regeneration with xraydb + spekpy (``nii physics build``).

Submodules are imported on use.
"""
