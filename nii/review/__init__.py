"""``nii review``: the operator review web app (FastAPI, plain HTML/JS, SQLite decision log).

* :mod:`nii.review.results` — read-only index of a results folder written by ``nii scan`` and
  server-side rendering of the viewer layers from the results HDF5;
* :mod:`nii.review.store` — append-only SQLite (WAL) log of operator decisions;
* :mod:`nii.review.app` — the FastAPI application (``create_app``);
* :mod:`nii.review.feedback` — export of decisions as YOLO / COCO labels for training.

FastAPI and uvicorn come with the ``serve`` extra and are imported only here.
"""

from __future__ import annotations

__all__ = ["create_app"]


def create_app(*args, **kwargs):
    """See :func:`nii.review.app.create_app`."""
    from .app import create_app as _create  # noqa: PLC0415

    return _create(*args, **kwargs)
