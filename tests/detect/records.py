"""Hand-made evaluation records for the metric tests (``tests.detect.records.rec``)."""

from __future__ import annotations

import numpy as np

from nii.detect.evaluate import ImageRecord


def rec(i, boxes=(), scores=(), cls=(), gt=(), gtc=(), kind="dual_energy", family="luggage") -> ImageRecord:
    """One image's predictions (xyxy ``boxes``, ``scores``, ``cls``) and truth (``gt``, ``gtc``)."""
    return ImageRecord(
        str(i),
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(scores, np.float32),
        np.asarray(cls, np.int64),
        np.asarray(gt, np.float32).reshape(-1, 4),
        np.asarray(gtc, np.int64),
        kind=kind,
        family=family,
    )
