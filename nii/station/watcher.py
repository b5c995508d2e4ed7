"""The hot folder: take complete scans from a folder, process each exactly once, journal every step.

A file in the input folder is taken when it is *complete*:

* files whose names mark them as still being written are never taken (names starting with a dot,
  or ending in ``.part``, ``.tmp``, ``.partial``, ``.filepart``, ``.crdownload``, ``.uploading``);
  a scanner that writes ``.scan.h5.part`` and renames it to ``scan.h5`` delivers atomically, and
* any other file must keep the same size and modification time for ``settle_s`` seconds
  (``settle_s=0`` trusts the atomic-rename protocol and takes files at first sight).

A raw dump (``.raw``/``.bin``/``.dat`` data file with a ``nii-raw/1`` JSON sidecar named
``<name>.json`` or ``<stem>.json``) is one scan: it is taken when both files are complete (a data
file whose sidecar has not come within 30 s is taken alone, and refused), and the sidecar moves
with it to ``done/`` or ``quarantine/``.

Each taken file becomes a job in the SQLite :class:`~nii.station.journal.Journal`; its output stem
and destination name are fixed before work starts. Outputs are written atomically with the JSON
report last, so a report on disk means complete results. The input then moves to ``done/`` (or to
``quarantine/`` with ``<name>.reason.json`` when it cannot be processed). After a crash or
``kill -9`` at any moment, :meth:`Watcher.recover` finishes every unfinished job from its journaled
state: a job whose report exists is not processed again, one without is processed again into the
same file names, so no scan is lost and none produces two result sets. A scan that keeps killing
the process is quarantined after ``max_attempts`` attempts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_text
from ..errors import FileAccessError, InvalidParameterError, NiiError
from .journal import Job, Journal

__all__ = ["TEMP_SUFFIXES", "WatchStats", "Watcher", "is_partial_name"]

logger = logging.getLogger(__name__)

#: File-name endings of files still being written (never taken).
TEMP_SUFFIXES = (".part", ".tmp", ".partial", ".filepart", ".crdownload", ".uploading", ".sqlite-wal", ".sqlite-shm", ".lock")


#: Raw-dump data files that come with a JSON sidecar (``nii-raw/1``: ``<name>.json`` or ``<stem>.json``).
RAW_SUFFIXES = (".raw", ".bin", ".dat")


def sidecar_names(name: str) -> tuple[str, ...]:
    """Names a raw data file's sidecar may have in the same folder (empty for other files)."""
    p = Path(name)
    if p.suffix.lower() not in RAW_SUFFIXES:
        return ()
    return (f"{name}.json", f"{p.stem}.json")


def is_partial_name(name: str) -> bool:
    """True for names that mark a file as incomplete or private (dot files, temporary suffixes)."""
    low = name.lower()
    return name.startswith(".") or low.endswith(TEMP_SUFFIXES)


def _sha256(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


@dataclass
class WatchStats:
    """Counters of one :meth:`Watcher.run` (also logged)."""

    done: int = 0
    quarantined: int = 0
    alarms: int = 0
    recovered: int = 0
    errors: int = 0
    seconds: float = 0.0
    jobs: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "jobs"}


class Watcher:
    """Watch ``in_dir`` and process every complete scan dropped into it, exactly once.

    Parameters
    ----------
    in_dir, out_dir : path
        Input (hot) folder and results folder.
    pipeline : nii.Pipeline
        The (warmed-up) pipeline used for every scan.
    formats : iterable of str
        Outputs per scan (:data:`nii.outputs.FORMATS`); ``json`` is always written (it marks
        complete results).
    done_dir, quarantine_dir : path, optional
        Where inputs go afterwards; default ``in_dir/done`` and ``in_dir/quarantine``.
    journal : path, optional
        SQLite journal; default ``in_dir/.nii-journal.sqlite``.
    settle_s : float
        Seconds a file's size and mtime must stay unchanged before it is taken.
    poll_s : float
        Seconds between folder listings.
    max_attempts : int
        Attempts (including ones interrupted by a crash) before a scan is quarantined.
    """

    def __init__(
        self,
        in_dir: str | os.PathLike,
        out_dir: str | os.PathLike,
        *,
        pipeline: Any,
        formats: Iterable[str] | None = None,
        done_dir: str | os.PathLike | None = None,
        quarantine_dir: str | os.PathLike | None = None,
        journal: str | os.PathLike | None = None,
        settle_s: float = 2.0,
        poll_s: float = 0.5,
        max_attempts: int = 3,
    ) -> None:
        from ..outputs import FORMATS, _check_formats

        self.in_dir = Path(in_dir)
        if not self.in_dir.is_dir():
            raise FileAccessError("input folder does not exist or is not a folder", path=self.in_dir)
        self.out_dir = Path(out_dir)
        fm = _check_formats(FORMATS if formats is None else formats)
        self.formats = fm if "json" in fm else (*fm, "json")
        self.done_dir = Path(done_dir) if done_dir is not None else self.in_dir / "done"
        self.quarantine_dir = Path(quarantine_dir) if quarantine_dir is not None else self.in_dir / "quarantine"
        for name, v in (("settle_s", settle_s), ("poll_s", poll_s)):
            if not (v >= 0):
                raise InvalidParameterError(f"{name} must be >= 0, got {v}")
        if int(max_attempts) < 1:
            raise InvalidParameterError(f"max_attempts must be >= 1, got {max_attempts}")
        self.settle_s = float(settle_s)
        self.poll_s = float(poll_s)
        self.max_attempts = int(max_attempts)
        self.sidecar_wait_s = max(30.0, self.settle_s)
        self.pipeline = pipeline
        for d in (self.out_dir, self.done_dir, self.quarantine_dir):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise FileAccessError(f"cannot create folder: {exc.strerror or exc}", path=d) from exc
        self._lock_fh = _lock_folder(self.in_dir / ".nii-watch.lock")
        try:
            self.journal = Journal(journal if journal is not None else self.in_dir / ".nii-journal.sqlite")
        except BaseException:
            self._lock_fh.close()
            raise
        self._seen: dict[str, tuple[int, int, float]] = {}
        self._retry_after: dict[int, float] = {}
        self.stats = WatchStats()

    def close(self) -> None:
        """Close the journal and release the folder lock (another watcher may then start)."""
        self.journal.close()
        self._lock_fh.close()

    # -- discovery -------------------------------------------------------------------------

    def _listing(self) -> dict[str, os.stat_result]:
        out: dict[str, os.stat_result] = {}
        try:
            entries = list(os.scandir(self.in_dir))
        except OSError as exc:
            raise FileAccessError(f"cannot list the input folder: {exc.strerror or exc}", path=self.in_dir) from exc
        for e in entries:
            if is_partial_name(e.name):
                continue
            try:
                if not e.is_file(follow_symlinks=False):
                    continue
                out[e.name] = e.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished meanwhile
        return out

    def ready(self, *, now: float | None = None) -> tuple[list[str], int]:
        """Names of files complete now (oldest first) and how many are still settling."""
        now = time.monotonic() if now is None else now
        listing = self._listing()
        for gone in set(self._seen) - set(listing):
            del self._seen[gone]
        # a raw dump is one scan of several files: the data file is the job, its sidecar (and any
        # reference files <stem>.<ref>.raw) travel with it
        sidecars = {c for name in listing for c in sidecar_names(name) if c in listing}
        sidecars |= {c for name in list(sidecars) for c in _reference_files(name, listing)}
        ready: list[tuple[int, str]] = []
        settling = 0
        for name, st in listing.items():
            if name in sidecars:
                continue
            key = (st.st_size, st.st_mtime_ns)
            prev = self._seen.get(name)
            if prev is None or prev[:2] != key:
                self._seen[name] = (*key, now)
                prev = self._seen[name]
            for c in sidecar_names(name):
                if c in listing:
                    cst = listing[c]
                    cprev = self._seen.get(c)
                    ckey = (cst.st_size, cst.st_mtime_ns)
                    if cprev is None or cprev[:2] != ckey:
                        self._seen[c] = (*ckey, now)
                        cprev = self._seen[c]
                    prev = (*prev[:2], max(prev[2], cprev[2]))  # both files must have settled
                    break
            else:
                if sidecar_names(name) and now - prev[2] < self.sidecar_wait_s:
                    settling += 1  # data without its sidecar yet: wait for it (then refuse it)
                    continue
            if now - prev[2] >= self.settle_s:
                ready.append((st.st_mtime_ns, name))
            else:
                settling += 1
        return [n for _, n in sorted(ready)], settling

    # -- job steps -------------------------------------------------------------------------

    def _report_path(self, job: Job) -> Path:
        return self.out_dir / f"{job.stem}.json"

    def _complete_report(self, job: Job) -> dict[str, Any] | None:
        """The job's JSON report when its results are complete (report + every file it names)."""
        p = self._report_path(job)
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not all((self.out_dir / name).is_file() for name in doc.get("outputs", {}).values()):
            return None
        return doc

    def _clean_partials(self, job: Job) -> None:
        """Remove temporary files an interrupted atomic write of this job's outputs left behind."""
        for p in self.out_dir.glob(f".{job.stem}.*.part"):
            try:
                p.unlink()
            except OSError:
                pass

    def _move_sidecars(self, job: Job, folder: Path) -> None:
        """Move a raw dump's sidecar and reference files beside its data file's destination.

        They move before the data file, whose presence marks the job as not yet moved.
        """
        if not sidecar_names(job.name):
            return
        listing = set(os.listdir(self.in_dir))
        stem, dstem = Path(job.name).stem, Path(job.dest).stem
        for c in sidecar_names(job.name) + tuple(_reference_files(sidecar_names(job.name)[1], listing)):
            src = self.in_dir / c
            if src.is_file():
                os.replace(src, folder / (dstem + c[len(stem):]))

    def _quarantine(self, job: Job, reason: str) -> None:
        src = self.in_dir / job.name
        dest = self.quarantine_dir / job.dest
        doc = {"name": job.name, "sha256": job.sha256, "job": job.id, "reason": reason, "attempts": job.attempts,
               "quarantined_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        atomic_write_text(self.quarantine_dir / f"{job.dest}.reason.json", json.dumps(doc, indent=2))
        if src.exists():
            self._move_sidecars(job, self.quarantine_dir)
            os.replace(src, dest)
        self.journal.mark_quarantined(job.id, reason)
        self.stats.quarantined += 1
        logger.warning("quarantined %s: %s", job.name, reason)

    def _finish(self, job: Job) -> None:
        src = self.in_dir / job.name
        dest = self.done_dir / job.dest
        if src.exists():
            self._move_sidecars(job, self.done_dir)
            os.replace(src, dest)
        elif not dest.exists():
            logger.warning("%s: input vanished after processing; its results are in %s", job.name, self.out_dir)
        self.journal.mark_done(job.id)
        self.stats.done += 1

    def run_job(self, job: Job) -> None:
        """Advance one job to ``done`` or ``quarantined`` from whatever state it is in (idempotent)."""
        from ..outputs import write_outputs

        if job.state in ("done", "quarantined"):
            return
        src = self.in_dir / job.name
        if job.state == "processing":
            doc = self._complete_report(job)
            if doc is None:
                if not src.exists():
                    qdest = self.quarantine_dir / job.dest
                    if qdest.exists():  # crashed between moving to quarantine and journaling it
                        reason = _reason_of(self.quarantine_dir / f"{job.dest}.reason.json") or "quarantined"
                        self.journal.mark_quarantined(job.id, reason)
                        self.stats.quarantined += 1
                        return
                    self.journal.mark_quarantined(job.id, "input disappeared before it was processed")
                    self.stats.quarantined += 1
                    logger.warning("%s: input disappeared before it was processed", job.name)
                    return
                attempts = self.journal.start_attempt(job.id)
                job = self.journal.get(job.id) or job
                if attempts > self.max_attempts:
                    self._quarantine(job, f"not completed after {attempts - 1} attempt(s) (crashes or failures)")
                    return
                self._clean_partials(job)
                try:
                    sha, _ = _sha256(src)
                except OSError as exc:
                    self._defer(job, f"cannot read input: {exc}")
                    return
                if sha != job.sha256:
                    self._quarantine(job, f"input changed after it was taken (sha256 {job.sha256[:12]}… → {sha[:12]}…)")
                    return
                try:
                    res = self.pipeline.process(src)
                except NiiError as exc:
                    self._quarantine(job, str(exc))
                    return
                except Exception as exc:  # a bug or resource failure: retry later, quarantine after max_attempts
                    logger.exception("%s: processing failed", job.name)
                    self._defer(job, f"{type(exc).__name__}: {exc}")
                    return
                try:
                    write_outputs(res, self.out_dir, formats=self.formats, stem=job.stem)
                except (OSError, NiiError) as exc:
                    self._defer(job, f"cannot write outputs: {exc}")
                    return
                self.journal.mark_written(job.id, alarm=res.alarm)
                if res.alarm:
                    self.stats.alarms += 1
                logger.info("%s → %s.* (%s)", job.name, job.stem, "ALARM" if res.alarm else "clear")
            else:
                self.journal.mark_written(job.id, alarm=bool(doc.get("alarm")))
            job = self.journal.get(job.id) or job
        if job.state == "written":
            self._finish(job)

    def _defer(self, job: Job, why: str) -> None:
        self.stats.errors += 1
        delay = min(60.0, 2.0 ** max(0, job.attempts))
        self._retry_after[job.id] = time.monotonic() + delay
        logger.warning("%s: %s; retrying in %.0f s", job.name, why, delay)

    def recover(self) -> int:
        """Finish the jobs a previous run left unfinished; return how many there were."""
        jobs = self.journal.unfinished()
        for job in jobs:
            logger.info("resuming job %d (%s, %s)", job.id, job.name, job.state)
            self.run_job(job)
        self.stats.recovered += len(jobs)
        return len(jobs)

    def take(self, name: str) -> Job | None:
        """Claim the complete file ``name`` as a job (or find its unfinished job) and run it."""
        src = self.in_dir / name
        try:
            sha, size = _sha256(src)
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("%s: cannot read: %s", name, exc)
            return None
        prev = self.journal.find(name, sha)
        if prev is not None and prev.state in ("processing", "written"):
            job = prev
        else:
            job = self.journal.claim(name, sha, size, stem_base=_stem_base(name))
            self.stats.jobs.append(job.id)
            first = self.journal.find_content(sha)
            if first is not None:
                self._quarantine(job, f"duplicate: identical content was already processed as job {first.id} "
                                      f"({first.name} → {first.stem}.json, {first.finished_at})")
                return self.journal.get(job.id)
        if time.monotonic() < self._retry_after.get(job.id, 0.0):
            return job
        self.run_job(job)
        return self.journal.get(job.id)

    # -- loop ------------------------------------------------------------------------------

    def run(self, *, stop: threading.Event | None = None, once: bool = False, idle_exit_s: float | None = None) -> WatchStats:
        """Recover, then watch until ``stop`` is set.

        Parameters
        ----------
        stop : threading.Event, optional
            Set it (e.g. from a SIGTERM handler) to stop after the scan in hand.
        once : bool
            Exit as soon as no file is ready or settling and no job is pending.
        idle_exit_s : float, optional
            Exit after this many seconds without any file in the folder.
        """
        stop = stop or threading.Event()
        t0 = time.monotonic()
        self.recover()
        idle_since = time.monotonic()
        while not stop.is_set():
            names, settling = self.ready()
            before = (self.stats.done, self.stats.quarantined, self.stats.errors)
            for name in names:
                if stop.is_set():
                    break
                self.take(name)
            pending = bool(self.journal.unfinished())
            if names or settling or pending:
                idle_since = time.monotonic()
            elif once or idle_exit_s is not None and time.monotonic() - idle_since >= idle_exit_s:
                break
            if (self.stats.done, self.stats.quarantined, self.stats.errors) == before:
                stop.wait(self.poll_s)  # nothing advanced: do not spin
        self.stats.seconds = time.monotonic() - t0
        return self.stats


def _reference_files(sidecar: str, listing: Iterable[str]) -> list[str]:
    """Reference files of a raw dump (``<stem>.<ref>.raw`` beside ``<stem>.json``, as ``nii.io.raw`` writes them)."""
    if not sidecar.endswith(".json"):
        return []
    stem = Path(sidecar[: -len(".json")]).stem if sidecar[: -len(".json")].lower().endswith(RAW_SUFFIXES) else sidecar[: -len(".json")]
    return [n for n in listing if n.startswith(stem + ".") and n.lower().endswith(RAW_SUFFIXES) and n.count(".") >= stem.count(".") + 2]


def _lock_folder(path: Path) -> Any:
    """Hold an exclusive lock on ``path`` for this watcher's life (released by the OS on kill -9).

    Two watchers on one folder would claim the same scans; the second one is refused.
    """
    try:
        fh = open(path, "a+", encoding="ascii")  # noqa: SIM115 - held open for the watcher's life
    except OSError as exc:
        raise FileAccessError(f"cannot create the watcher lock: {exc.strerror or exc}", path=path) from exc
    try:
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # pragma: no cover - not POSIX: no lock
        return fh
    except OSError:
        fh.seek(0)
        other = fh.read().strip() or "?"
        fh.close()
        raise FileAccessError(f"another nii watch (pid {other}) is already watching this folder", path=path.parent) from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def _stem_base(name: str) -> str:
    stem = name
    for suf in (".dx.dcm", ".tdr.dcm"):
        if stem.lower().endswith(suf):
            stem = stem[: -len(suf)]
    stem = Path(stem).stem
    base = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem).strip("_-") or "scan"
    if not base[0].isalnum():
        base = "s" + base
    return base


def _reason_of(path: Path) -> str | None:
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("reason"))
    except (OSError, ValueError):
        return None
