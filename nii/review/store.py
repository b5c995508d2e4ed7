"""Append-only SQLite log of operator decisions (WAL journal, full sync).

Every decision is a new row with the operator's name, the UTC time and the SHA-256 of the scan
report it was made against; rows are never updated or deleted (SQLite triggers refuse it), so
the full history is kept and the current state of a scan is derived from its latest rows:

=============  =================================================================================
kind           actions
=============  =================================================================================
detection      ``confirm``, ``reject`` (false alarm), ``relabel`` (``label`` required) — for
               ``detection_index``; the latest one counts
missed         ``add`` (``box`` and ``label`` required): a box the detector missed;
               ``withdraw`` (``ref_id`` of the ``add``) takes one back
verdict        ``clear``, ``inspect``, ``seize`` — whole scan; the latest one counts
note           free text about the scan (``note`` required)
=============  =================================================================================

Any decision may carry a free-text ``note``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import FileAccessError, InvalidParameterError

__all__ = ["DecisionStore", "ACTIONS", "VERDICTS"]

ACTIONS = {
    "detection": ("confirm", "reject", "relabel"),
    "missed": ("add", "withdraw"),
    "verdict": ("clear", "inspect", "seize"),
    "note": ("note",),
}
VERDICTS = ACTIONS["verdict"]
_MAX_TEXT = 4000
_MAX_NAME = 120

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    scan_key        TEXT NOT NULL,
    scan_id         TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('detection', 'missed', 'verdict', 'note')),
    action          TEXT NOT NULL,
    detection_index INTEGER,
    label           TEXT,
    box             TEXT,
    note            TEXT,
    ref_id          INTEGER REFERENCES decisions(id),
    operator        TEXT NOT NULL CHECK (length(operator) > 0),
    created_at      TEXT NOT NULL,
    report_sha256   TEXT
);
CREATE INDEX IF NOT EXISTS decisions_scan ON decisions (scan_key, id);
CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions are append-only: rows cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions are append-only: rows cannot be deleted'); END;
"""
_COLS = ("id", "scan_key", "scan_id", "kind", "action", "detection_index", "label", "box", "note", "ref_id", "operator", "created_at", "report_sha256")


class DecisionStore:
    """Decision log in one SQLite file (created on first use).

    A new connection is opened per operation, so one store may be shared by the threads of a
    web server.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            with self._connect() as con:
                con.executescript(_SCHEMA)
                con.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', 'nii-review-decisions/1')")
        except sqlite3.Error as exc:
            raise FileAccessError(f"cannot open or create the decision database ({exc})", path=self.path) from exc

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A fresh autocommit connection (WAL, full sync), closed on exit."""
        con = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA foreign_keys=ON")
            con.row_factory = sqlite3.Row
            yield con
        finally:
            con.close()

    # -- metadata -----------------------------------------------------------------------------
    def set_meta(self, key: str, value: str) -> None:
        """Record a setting (e.g. ``results_dir``); unlike decisions, settings may be replaced."""
        with self._connect() as con:
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(value)))

    def get_meta(self, key: str) -> str | None:
        with self._connect() as con:
            row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    # -- writing ------------------------------------------------------------------------------
    def add(
        self,
        *,
        scan_key: str,
        scan_id: str,
        kind: str,
        action: str,
        operator: str,
        detection_index: int | None = None,
        n_detections: int | None = None,
        label: str | None = None,
        box: Sequence[float] | None = None,
        note: str | None = None,
        ref_id: int | None = None,
        report_sha256: str | None = None,
    ) -> dict[str, Any]:
        """Validate and append one decision; return it as stored."""
        operator = (operator or "").strip()
        if not operator:
            raise InvalidParameterError("operator: a decision needs the operator's name")
        if len(operator) > _MAX_NAME:
            raise InvalidParameterError(f"operator: at most {_MAX_NAME} characters")
        if kind not in ACTIONS:
            raise InvalidParameterError(f"kind must be one of {tuple(ACTIONS)}, got {kind!r}")
        if action not in ACTIONS[kind]:
            raise InvalidParameterError(f"action for kind {kind!r} must be one of {ACTIONS[kind]}, got {action!r}")
        label = label.strip() if isinstance(label, str) else None
        note = note.strip() if isinstance(note, str) and note.strip() else None
        for name, v in (("label", label), ("note", note)):
            if v is not None and len(v) > (_MAX_NAME if name == "label" else _MAX_TEXT):
                raise InvalidParameterError(f"{name}: too long")
        if kind == "detection":
            if detection_index is None or detection_index < 0 or (n_detections is not None and detection_index >= n_detections):
                raise InvalidParameterError(f"detection_index {detection_index!r} out of range (scan has {n_detections} detection(s))")
            if action == "relabel" and not label:
                raise InvalidParameterError("label: relabel needs the new class")
        else:
            detection_index = None
        box_json = None
        if kind == "missed" and action == "add":
            if not label:
                raise InvalidParameterError("label: a missed box needs its class")
            if box is None or len(box) != 4:
                raise InvalidParameterError("box: a missed box needs [x0, y0, x1, y1] in pixels")
            b = [float(v) for v in box]
            if not all(math.isfinite(v) for v in b) or b[2] <= b[0] or b[3] <= b[1]:
                raise InvalidParameterError(f"box must be finite with x0 < x1 and y0 < y1, got {box!r}")
            box_json = json.dumps([round(v, 2) for v in b])
        if kind == "missed" and action == "withdraw":
            if ref_id is None:
                raise InvalidParameterError("ref_id: withdraw needs the id of the missed box")
            with self._connect() as con:
                row = con.execute(
                    "SELECT 1 FROM decisions WHERE id = ? AND scan_key = ? AND kind = 'missed' AND action = 'add'", (ref_id, scan_key)
                ).fetchone()
            if row is None:
                raise InvalidParameterError(f"ref_id {ref_id} is not a missed box of this scan")
        else:
            ref_id = None
        if kind == "note" and not note:
            raise InvalidParameterError("note: a note needs text")
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
        with self._connect() as con:
            cur = con.execute(
                "INSERT INTO decisions (scan_key, scan_id, kind, action, detection_index, label, box, note, ref_id, operator, created_at, report_sha256)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (scan_key, scan_id, kind, action, detection_index, label, box_json, note, ref_id, operator, now, report_sha256),
            )
            row = con.execute("SELECT * FROM decisions WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _row(row)

    # -- reading ------------------------------------------------------------------------------
    def history(self, scan_key: str | None = None) -> list[dict[str, Any]]:
        """All decisions (of one scan, or of all), oldest first."""
        with self._connect() as con:
            if scan_key is None:
                rows = con.execute("SELECT * FROM decisions ORDER BY id").fetchall()
            else:
                rows = con.execute("SELECT * FROM decisions WHERE scan_key = ? ORDER BY id", (scan_key,)).fetchall()
        return [_row(r) for r in rows]

    def state(self, scan_key: str, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Current state of one scan derived from its history."""
        return derive_state(self.history(scan_key) if history is None else history)

    def states(self) -> dict[str, dict[str, Any]]:
        """Current state of every scan that has decisions."""
        by: dict[str, list[dict[str, Any]]] = {}
        for d in self.history():
            by.setdefault(d["scan_key"], []).append(d)
        return {k: derive_state(v) for k, v in by.items()}


def derive_state(history: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"detections": {index: latest}, "missed": [live adds], "verdict": latest|None, "notes": [...]}``."""
    dets: dict[int, dict[str, Any]] = {}
    missed: dict[int, dict[str, Any]] = {}
    verdict = None
    notes = []
    for d in history:
        if d["kind"] == "detection":
            dets[d["detection_index"]] = d
        elif d["kind"] == "missed":
            if d["action"] == "add":
                missed[d["id"]] = d
            else:
                missed.pop(d["ref_id"], None)
        elif d["kind"] == "verdict":
            verdict = d
        if d.get("note"):
            notes.append(d)
    return {"detections": dets, "missed": list(missed.values()), "verdict": verdict, "notes": notes}


def _row(row: sqlite3.Row) -> dict[str, Any]:
    d = {k: row[k] for k in _COLS}
    d["box"] = json.loads(d["box"]) if d["box"] else None
    return d
