"""SQLite journal of the hot folder: one row per scan job, every state change committed.

The journal is what makes ``nii watch`` exactly-once across crashes. A job row is created (state
``processing``, output stem and destination name fixed) in one transaction *before* any work is
done; the state moves to ``written`` once the JSON report (written last, atomically) exists, and
to ``done`` or ``quarantined`` once the input has been moved. Every step is idempotent, so after
``kill -9`` at any moment a restart finishes each unfinished job from the state it had, and no
job ever gets a second output stem.

States
------
``processing``   claimed; outputs may be partly written (re-processed on restart)
``written``      complete results exist; the input still has to be moved to ``done/``
``done``         finished; input in ``done/``
``quarantined``  refused (unreadable, invalid, or failed ``max_attempts`` times); input in
                 ``quarantine/`` with a ``.reason.json`` beside it
"""

from __future__ import annotations

import datetime as _dt
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from ..errors import FileAccessError

__all__ = ["STATES", "Job", "Journal"]

STATES = ("processing", "written", "done", "quarantined")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,          -- file name in the input folder
    sha256      TEXT NOT NULL,          -- content hash when claimed
    size        INTEGER NOT NULL,
    stem        TEXT NOT NULL UNIQUE,   -- output file stem, fixed at claim time
    dest        TEXT NOT NULL UNIQUE,   -- file name in done/ or quarantine/, fixed at claim time
    state       TEXT NOT NULL CHECK (state IN ('processing', 'written', 'done', 'quarantined')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    reason      TEXT,
    alarm       INTEGER,
    claimed_at  TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_name_sha ON jobs(name, sha256);
CREATE INDEX IF NOT EXISTS jobs_sha ON jobs(sha256);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

JOURNAL_SCHEMA = "nii-station-journal/1"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Job:
    """One row of the journal."""

    id: int
    name: str
    sha256: str
    size: int
    stem: str
    dest: str
    state: str
    attempts: int
    reason: str | None
    alarm: bool | None
    claimed_at: str
    finished_at: str | None

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> Job:
        d = dict(row)
        d["alarm"] = None if d["alarm"] is None else bool(d["alarm"])
        return cls(**d)


class Journal:
    """The job journal of one hot folder (SQLite, WAL mode, synchronous=FULL).

    Parameters
    ----------
    path : path
        Database file; created with its folder when missing.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        except (OSError, sqlite3.Error) as exc:
            raise FileAccessError(f"cannot open the station journal: {exc}", path=self.path) from exc
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta(key, value) VALUES ('schema', ?)", (JOURNAL_SCHEMA,))
            elif row[0] != JOURNAL_SCHEMA:
                raise FileAccessError(f"journal schema is {row[0]!r}, this nii reads {JOURNAL_SCHEMA!r}", path=self.path)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries ---------------------------------------------------------------------------

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return Job._from_row(row) if row else None

    def jobs(self, state: str | None = None) -> list[Job]:
        """All jobs (optionally in one state), oldest first."""
        with self._lock:
            if state is None:
                rows = self._db.execute("SELECT * FROM jobs ORDER BY id").fetchall()
            else:
                rows = self._db.execute("SELECT * FROM jobs WHERE state=? ORDER BY id", (state,)).fetchall()
        return [Job._from_row(r) for r in rows]

    def unfinished(self) -> list[Job]:
        """Jobs in ``processing`` or ``written``, oldest first (to resume after a restart)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs WHERE state IN ('processing', 'written') ORDER BY id").fetchall()
        return [Job._from_row(r) for r in rows]

    def find(self, name: str, sha256: str) -> Job | None:
        """The most recent job of this file name and content, if any."""
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE name=? AND sha256=? ORDER BY id DESC LIMIT 1", (name, sha256)).fetchone()
        return Job._from_row(row) if row else None

    def find_content(self, sha256: str) -> Job | None:
        """The first finished (done) job of this content, under any name, if any."""
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE sha256=? AND state='done' ORDER BY id LIMIT 1", (sha256,)).fetchone()
        return Job._from_row(row) if row else None

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        out = dict.fromkeys(STATES, 0)
        out.update({r[0]: int(r[1]) for r in rows})
        return out

    # -- transitions -----------------------------------------------------------------------

    def claim(self, name: str, sha256: str, size: int, *, stem_base: str) -> Job:
        """Create a job in state ``processing`` with a stem and destination name no job has used."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                stem = self._free(stem_base, "stem")
                p = Path(name)
                dest = name
                i = 2
                while self._db.execute("SELECT 1 FROM jobs WHERE dest=?", (dest,)).fetchone():
                    dest = f"{p.stem}-{i}{p.suffix}"
                    i += 1
                cur = self._db.execute(
                    "INSERT INTO jobs(name, sha256, size, stem, dest, state, attempts, claimed_at) VALUES (?, ?, ?, ?, ?, 'processing', 0, ?)",
                    (name, sha256, int(size), stem, dest, _now()),
                )
                job_id = cur.lastrowid
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return Job._from_row(row)

    def _free(self, base: str, column: str) -> str:
        value, i = base, 2
        while self._db.execute(f"SELECT 1 FROM jobs WHERE {column}=?", (value,)).fetchone():
            value = f"{base}-{i}"
            i += 1
        return value

    def start_attempt(self, job_id: int) -> int:
        """Count one more processing attempt (committed before the work starts); return the count."""
        with self._lock:
            self._db.execute("UPDATE jobs SET attempts = attempts + 1 WHERE id=?", (job_id,))
            return int(self._db.execute("SELECT attempts FROM jobs WHERE id=?", (job_id,)).fetchone()[0])

    def mark_written(self, job_id: int, *, alarm: bool | None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state='written', alarm=? WHERE id=? AND state='processing'",
                (None if alarm is None else int(alarm), job_id),
            )

    def mark_done(self, job_id: int) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET state='done', finished_at=? WHERE id=?", (_now(), job_id))

    def mark_quarantined(self, job_id: int, reason: str) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET state='quarantined', reason=?, finished_at=? WHERE id=?", (reason, _now(), job_id))

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs())
