"""Training data for the detector: the simulator-driven builder (``nii dataset build``), YOLO
file helpers and a synthetic shapes set for tests. Submodules load on use."""
