"""``nii watch`` as a real process: SIGTERM finishes the scan in hand; repeated kill -9 loses nothing, duplicates nothing."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nii
from nii.station import Journal
from tests.synth import make_raw

ROOT = Path(__file__).resolve().parents[2]
OUT_FILES = ("dx.dcm", "h5", "json", "png", "tdr.dcm")


def _watch(inb: Path, out: Path, *extra: str) -> subprocess.Popen:
    code = "import sys; from nii.cli import main; sys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", code, "watch", str(inb), "-o", str(out), "--settle", "0", "--poll", "0.05", "--no-detect", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _drop(inb: Path, name: str, seed: int, *, h: int = 160, w: int = 400) -> str:
    raw = make_raw(np.random.default_rng(seed), h=h, w=w, scan_id=Path(name).stem)
    tmp = inb / f".{name}.part"
    nii.write_hdf5(raw, tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    os.replace(tmp, inb / name)
    return digest


def _result_sets(out: Path) -> dict[str, set[str]]:
    sets: dict[str, set[str]] = {}
    for p in out.iterdir():
        if not p.name.startswith("."):
            stem, _, ext = p.name.partition(".")
            sets.setdefault(stem, set()).add(ext)
    return sets


def test_sigterm_finishes_scan_in_hand(tmp_path):
    inb, out = tmp_path / "in", tmp_path / "out"
    inb.mkdir()
    proc = _watch(inb, out)
    try:
        for i in range(4):
            _drop(inb, f"s{i}.h5", i, h=256, w=900)
        deadline = time.monotonic() + 60
        while not list(out.glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert list(out.glob("*.json")), "no scan processed within 60 s"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "finishing the scan in hand" in err
    with Journal(inb / ".nii-journal.sqlite") as j:
        assert j.unfinished() == []  # the scan in hand was completed, not abandoned
        done = j.jobs("done")
    assert len(done) >= 1
    sets = _result_sets(out)
    assert sorted(sets) == sorted(job.stem for job in done)
    assert all(exts == set(OUT_FILES) for exts in sets.values())
    left = sorted(p.name for p in inb.glob("s*.h5"))
    assert len(left) + len(done) == 4  # untouched scans wait for the next start


@pytest.mark.slow
def test_repeated_kill9_exactly_one_result_per_scan(tmp_path):
    rng = np.random.default_rng(9)
    inb, out = tmp_path / "in", tmp_path / "out"
    inb.mkdir()
    digests: dict[str, str] = {}
    n = 0
    kills = 0
    interrupted = 0  # kills that left a job half-done (journaled as processing/written)
    t_end = time.monotonic() + 45  # bound the loop in time as well as in rounds
    for _ in range(7):
        for _ in range(3):
            name = f"scan{n:02d}.h5"
            digests[name] = _drop(inb, name, 100 + n, h=256, w=900)
            n += 1
        before = len(list(out.glob("*.json"))) if out.exists() else 0
        proc = _watch(inb, out, "--max-attempts", "100")
        if rng.uniform() < 0.25:
            time.sleep(float(rng.uniform(0.05, 1.0)))  # during start-up (imports, warm-up, recovery)
        else:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(list(out.glob("*.json"))) <= before:
                time.sleep(0.01)
            time.sleep(float(rng.uniform(0.0, 0.5)))  # mid-batch: processing, writing or moving
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        kills += 1
        with Journal(inb / ".nii-journal.sqlite") as j:
            interrupted += bool(j.unfinished())
        if time.monotonic() > t_end:
            break
    # a last, uninterrupted run finishes everything
    proc = _watch(inb, out, "--once", "--max-attempts", "100")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert kills >= 3
    assert interrupted >= 1, "no kill landed while a scan was in hand: the test did not exercise recovery"

    done = {p.name for p in (inb / "done").iterdir()}
    quarantined = {p.name for p in (inb / "quarantine").iterdir()}
    assert not quarantined, f"valid scans were quarantined: {quarantined}"
    assert done == set(digests)
    assert not [p for p in inb.iterdir() if p.is_file() and not p.name.startswith(".")]

    with Journal(inb / ".nii-journal.sqlite") as j:
        jobs = j.jobs()
    assert len(jobs) == len(digests)  # one job per scan, never two
    assert all(job.state == "done" for job in jobs)
    sets = _result_sets(out)
    assert sorted(sets) == sorted(Path(name).stem for name in digests)  # no "-2" second result sets
    for stem, exts in sets.items():
        assert exts == set(OUT_FILES), stem
        report = json.loads((out / f"{stem}.json").read_text())
        assert report["source"]["sha256"] == digests[f"{stem}.h5"]
        assert report["scan_id"] == stem
    assert not list(out.glob(".*.part"))
    print(f"kill -9 loop: {kills} kills, {interrupted} mid-job; attempts per job {[job.attempts for job in jobs]}")
