"""The HTTP service of ``nii serve`` (needs the ``serve`` extra: fastapi, uvicorn).

Import :func:`create_app` from :mod:`nii.service.app`; this package itself imports nothing heavy.
"""

from __future__ import annotations

__all__ = ["ServiceConfig", "check_bind", "create_app"]


def __getattr__(name: str):
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module 'nii.service' has no attribute {name!r}")
