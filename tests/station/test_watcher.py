"""Hot folder: completeness rules, journal states, exactly-once recovery, quarantine, duplicates."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import nii
from nii.errors import FileAccessError, InvalidParameterError
from nii.pipeline import Pipeline
from nii.station import Journal, Watcher, is_partial_name
from tests.synth import make_raw


@pytest.fixture(scope="module")
def pipe():
    return Pipeline(model=False)


class CountingPipeline:
    """Wraps a pipeline and counts process() calls per file name."""

    def __init__(self, inner):
        self.inner = inner
        self.calls: dict[str, int] = {}

    def process(self, src):
        name = Path(src).name
        self.calls[name] = self.calls.get(name, 0) + 1
        return self.inner.process(src)


def drop(folder: Path, name: str, seed: int) -> Path:
    """Deliver a scan atomically: write a .part file, then rename."""
    raw = make_raw(np.random.default_rng(seed), scan_id=Path(name).stem)
    tmp = folder / f".{name}.part"
    nii.write_hdf5(raw, tmp)
    os.replace(tmp, folder / name)
    return folder / name


def results(out: Path) -> dict[str, list[str]]:
    sets: dict[str, list[str]] = {}
    for p in sorted(out.iterdir()):
        if p.name.startswith("."):
            continue
        sets.setdefault(p.name.split(".")[0], []).append(p.name)
    return sets


def test_partial_names():
    assert is_partial_name(".scan.h5") and is_partial_name("scan.h5.part") and is_partial_name("a.TMP")
    assert not is_partial_name("scan.h5") and not is_partial_name("scan.dcm")


def test_settle_rule_waits_for_stable_size(tmp_path, pipe):
    inb = tmp_path / "in"
    inb.mkdir()
    w = Watcher(inb, tmp_path / "out", pipeline=pipe, settle_s=2.0)
    f = inb / "growing.h5"
    f.write_bytes(b"x" * 10)
    (inb / ".hidden.h5").write_bytes(b"x")
    (inb / "upload.h5.part").write_bytes(b"x")
    assert w.ready(now=100.0) == ([], 1)
    assert w.ready(now=101.0) == ([], 1)
    with open(f, "ab") as fh:
        fh.write(b"more")
    os.utime(f, ns=(1, 1))  # a changed size/mtime restarts the clock
    assert w.ready(now=102.5) == ([], 1)
    assert w.ready(now=104.0) == ([], 1)
    assert w.ready(now=104.6) == (["growing.h5"], 0)
    w.close()


def test_once_processes_good_quarantines_bad_and_duplicates(tmp_path, pipe):
    inb, out = tmp_path / "in", tmp_path / "out"
    inb.mkdir()
    drop(inb, "a.h5", 1)
    drop(inb, "b.h5", 2)
    (inb / "junk.h5").write_bytes(b"junk, not a scan")
    w = Watcher(inb, out, pipeline=pipe, settle_s=0, poll_s=0.01, formats=["json", "h5"])
    stats = w.run(once=True)
    assert (stats.done, stats.quarantined) == (2, 1)
    assert sorted(p.name for p in (inb / "done").iterdir()) == ["a.h5", "b.h5"]
    assert sorted(p.name for p in (inb / "quarantine").iterdir()) == ["junk.h5", "junk.h5.reason.json"]
    reason = json.loads((inb / "quarantine" / "junk.h5.reason.json").read_text())
    assert "junk.h5" in reason["reason"] and "not a format" in reason["reason"]
    assert results(out) == {"a": ["a.h5", "a.json"], "b": ["b.h5", "b.json"]}
    rep = json.loads((out / "a.json").read_text())
    assert rep["scan_id"] == "a" and rep["outputs"] == {"h5": "a.h5"}
    # the same content dropped again is a duplicate; a new scan under a used name gets a new stem
    os.replace(inb / "done" / "a.h5", inb / "a-again.h5")
    drop(inb, "b.h5", 3)
    stats = w.run(once=True)
    assert stats.done == 3 and stats.quarantined == 2
    assert (inb / "quarantine" / "a-again.h5.reason.json").is_file()
    assert "duplicate" in json.loads((inb / "quarantine" / "a-again.h5.reason.json").read_text())["reason"]
    assert sorted(p.name for p in (inb / "done").iterdir()) == ["b-2.h5", "b.h5"]
    assert set(results(out)) == {"a", "b", "b-2"}
    assert w.journal.counts() == {"processing": 0, "written": 0, "done": 3, "quarantined": 2}
    w.close()


def _claimed(inb: Path, journal: Journal, name: str):
    from nii.station.watcher import _sha256

    sha, size = _sha256(inb / name)
    return journal.claim(name, sha, size, stem_base=Path(name).stem)


@pytest.mark.parametrize("crash_point", ["claimed", "partial_outputs", "report_written", "written", "moved", "quarantine_moved"])
def test_recovery_from_each_crash_point(tmp_path, pipe, crash_point):
    """Reproduce the on-disk + journal state a kill -9 leaves at each point; a restart finishes it exactly once."""
    inb, out = tmp_path / "in", tmp_path / "out"
    inb.mkdir()
    drop(inb, "s.h5", 7)
    counting = CountingPipeline(pipe)
    w = Watcher(inb, out, pipeline=counting, settle_s=0, poll_s=0.01, formats=["json", "png"])
    job = _claimed(inb, w.journal, "s.h5")
    from nii.outputs import write_outputs

    if crash_point == "partial_outputs":
        res = pipe.process(inb / "s.h5")
        write_outputs(res, out, formats=["png"], stem=job.stem)  # png done, report not yet
        (out / f".{job.stem}.png.abc.part").write_bytes(b"half")
    elif crash_point in ("report_written", "written", "moved"):
        write_outputs(pipe.process(inb / "s.h5"), out, formats=["json", "png"], stem=job.stem)
        if crash_point in ("written", "moved"):
            w.journal.mark_written(job.id, alarm=False)
        if crash_point == "moved":
            os.replace(inb / "s.h5", inb / "done" / "s.h5")
    elif crash_point == "quarantine_moved":
        (inb / "quarantine" / "s.h5.reason.json").write_text(json.dumps({"reason": "bad scan"}))
        os.replace(inb / "s.h5", inb / "quarantine" / "s.h5")
    w.close()

    w2 = Watcher(inb, out, pipeline=counting, settle_s=0, poll_s=0.01, formats=["json", "png"])
    w2.run(once=True)
    final = w2.journal.get(job.id)
    assert len(w2.journal.jobs()) == 1  # never a second job for the same scan
    if crash_point == "quarantine_moved":
        assert final.state == "quarantined" and final.reason == "bad scan"
        assert results(out) == {}
    else:
        assert final.state == "done"
        assert results(out) == {"s": ["s.json", "s.png"]}
        assert (inb / "done" / "s.h5").is_file() and not (inb / "s.h5").exists()
        expected_calls = {"claimed": 1, "partial_outputs": 1}.get(crash_point, 0)
        assert counting.calls.get("s.h5", 0) == expected_calls
    assert not list(out.glob(".*.part"))
    w2.close()


def test_poison_scan_quarantined_after_max_attempts(tmp_path, pipe):
    inb = tmp_path / "in"
    inb.mkdir()
    drop(inb, "p.h5", 1)
    w = Watcher(inb, tmp_path / "out", pipeline=pipe, settle_s=0, max_attempts=2)
    job = _claimed(inb, w.journal, "p.h5")
    w.journal.start_attempt(job.id)
    w.journal.start_attempt(job.id)  # two attempts died with the process
    w.run(once=True)
    j = w.journal.get(job.id)
    assert j.state == "quarantined" and "2 attempt" in j.reason
    assert (inb / "quarantine" / "p.h5").is_file()
    w.close()


def test_transient_failure_is_retried_not_quarantined(tmp_path, pipe):
    inb = tmp_path / "in"
    inb.mkdir()
    drop(inb, "t.h5", 1)

    class Flaky:
        n = 0

        def process(self, src):
            self.n += 1
            if self.n == 1:
                raise MemoryError("simulated")
            return pipe.process(src)

    w = Watcher(inb, tmp_path / "out", pipeline=Flaky(), settle_s=0, poll_s=0.01, max_attempts=3)
    w._retry_after.clear()
    job = w.take("t.h5")
    assert job.state == "processing" and w.stats.errors == 1
    w._retry_after.clear()  # skip the back-off
    w.run(once=True)
    assert w.journal.get(job.id).state == "done"
    w.close()


def test_stop_event_and_bad_arguments(tmp_path, pipe):
    with pytest.raises(FileAccessError):
        Watcher(tmp_path / "nope", tmp_path / "out", pipeline=pipe)
    (tmp_path / "in").mkdir()
    with pytest.raises(InvalidParameterError):
        Watcher(tmp_path / "in", tmp_path / "out", pipeline=pipe, max_attempts=0)
    w = Watcher(tmp_path / "in", tmp_path / "out", pipeline=pipe, poll_s=0.01)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    stats = w.run(stop=stop)  # returns once stopped, does not hang
    assert stats.seconds >= 0.15
    w.close()


def test_second_watcher_on_same_folder_is_refused(tmp_path, pipe):
    (tmp_path / "in").mkdir()
    w = Watcher(tmp_path / "in", tmp_path / "out", pipeline=pipe)
    with pytest.raises(FileAccessError, match=f"pid {os.getpid()}"):
        Watcher(tmp_path / "in", tmp_path / "out2", pipeline=pipe)
    w.close()
    Watcher(tmp_path / "in", tmp_path / "out", pipeline=pipe).close()  # free again once closed


def test_raw_dump_with_sidecar_is_one_scan(tmp_path, pipe):
    from nii.io.raw import write as write_raw

    inb, out = tmp_path / "in", tmp_path / "out"
    inb.mkdir()
    raw = make_raw(np.random.default_rng(5), scan_id="bag7")
    data, side = write_raw(raw, tmp_path / "bag7.raw")
    w = Watcher(inb, out, pipeline=pipe, settle_s=0, poll_s=0.01, formats=["json"])
    refs = sorted(p.name for p in tmp_path.glob("bag7.*.raw"))  # float references go to their own files
    assert refs == ["bag7.air.raw", "bag7.dark.raw"]
    os.replace(data, inb / data.name)  # the data file arrives first: wait for its sidecar
    assert w.ready(now=1000.0) == ([], 1)
    for name in refs:
        os.replace(tmp_path / name, inb / name)
    os.replace(side, inb / side.name)
    assert w.ready(now=1000.5) == (["bag7.raw"], 0)  # sidecar and references are not scans of their own
    stats = w.run(once=True)
    assert (stats.done, stats.quarantined) == (1, 0)
    assert sorted(p.name for p in (inb / "done").iterdir()) == sorted([data.name, side.name, *refs])
    assert sorted(p.name for p in out.iterdir()) == ["bag7.json"]
    w.close()


def test_raw_data_without_sidecar_is_refused_after_waiting(tmp_path, pipe):
    inb = tmp_path / "in"
    inb.mkdir()
    (inb / "lonely.raw").write_bytes(b"\0" * 4096)
    w = Watcher(inb, tmp_path / "out", pipeline=pipe, settle_s=0)
    assert w.ready(now=10.0) == ([], 1)
    assert w.ready(now=10.0 + w.sidecar_wait_s) == (["lonely.raw"], 0)
    w.take("lonely.raw")
    assert (inb / "quarantine" / "lonely.raw").is_file()
    assert "sidecar" in json.loads((inb / "quarantine" / "lonely.raw.reason.json").read_text())["reason"].lower()
    w.close()
