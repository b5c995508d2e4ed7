"""Single source of the nii version string."""

__version__ = "0.1.0"
