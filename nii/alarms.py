"""What counts as an alarm.

A scan *alarms* when the detector flags at least one object (``origin == "yolo"``). Material
anomalies (``origin == "material_anomaly"``: bone-like or dense-organic masses found by the physics
cue) are shown to the operator, clearly styled apart, but do not by themselves raise the alarm:
they fire on ordinary dense clutter, and counting them would make the image-level false-alarm
rate meaningless. Every output (JSON report, HDF5, DICOS TDR, service metrics, review queue)
uses this one rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["ALARM_ORIGINS", "is_alarm", "count_alarms"]

#: Detection origins that raise the scan's alarm.
ALARM_ORIGINS = ("yolo",)


def is_alarm(detection: Mapping[str, Any]) -> bool:
    """True when a detection (its ``to_dict()`` form) raises the alarm."""
    return detection.get("origin", "yolo") in ALARM_ORIGINS


def count_alarms(detections: Iterable[Mapping[str, Any]]) -> int:
    """Number of alarm-raising detections."""
    return sum(1 for d in detections if is_alarm(d))
