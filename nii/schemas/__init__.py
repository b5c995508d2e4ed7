"""Versioned JSON Schemas shipped with nii (package data, loaded through importlib.resources).

``scan-report-1.json`` describes the per-scan JSON report of ``nii scan`` (``schema:
"nii-scan-report/1"``). A breaking change gets a new numbered file; old files stay.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from ..errors import InvalidParameterError

__all__ = ["SCAN_REPORT", "load_schema", "validate_report"]

#: ``schema`` value of the current scan report and the file that describes it.
SCAN_REPORT = "nii-scan-report/1"
_FILES = {SCAN_REPORT: "scan-report-1.json"}


@functools.cache
def _load_text(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def load_schema(schema: str = SCAN_REPORT) -> dict[str, Any]:
    """Return the JSON Schema (a fresh dict) for a ``schema`` value such as ``"nii-scan-report/1"``."""
    try:
        name = _FILES[schema]
    except KeyError:
        raise InvalidParameterError(f"unknown schema {schema!r}; known: {sorted(_FILES)}") from None
    return json.loads(_load_text(name))


def validate_report(doc: dict[str, Any]) -> None:
    """Validate a scan report against its schema; raise :class:`~nii.errors.InvalidDataError` naming the field.

    Needs ``jsonschema`` (a development dependency).
    """
    import jsonschema  # noqa: PLC0415

    from ..errors import InvalidDataError  # noqa: PLC0415

    if not isinstance(doc, dict):
        raise InvalidDataError(f"scan report must be a JSON object, got {type(doc).__name__}")
    if doc.get("schema") not in _FILES:
        raise InvalidDataError(f"scan report schema is {doc.get('schema')!r}; known: {sorted(_FILES)}")
    schema = load_schema(doc["schema"])
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        raise InvalidDataError(f"scan report does not match {SCAN_REPORT} at {where}: {e.message} ({len(errors)} error(s))")
