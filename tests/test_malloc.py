"""nii._malloc: glibc malloc tuning, made by the nii command (opt-out) and passed to Dask workers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _glibc() -> bool:
    from nii._malloc import _glibc

    return _glibc() is not None


def test_tune_allocator_in_a_fresh_process():
    got = _run(
        "import json, nii\n"
        "from nii import _malloc\n"
        "before = _malloc.allocator_state()\n"
        "ok = nii.tune_allocator()\n"
        "again = nii.tune_allocator()\n"
        "print(json.dumps({'before': before, 'ok': ok, 'again': again, 'after': _malloc.allocator_state()}))\n"
    )
    assert got["before"] == "default"
    if _glibc():
        assert got["ok"] and got["again"]
        assert got["after"] == "glibc tuned (mmap threshold 1024 MB, trim threshold 1024 MB)"
    else:  # pragma: no cover - other C libraries: nothing to tune
        assert not got["ok"] and got["after"] == "default"


def test_importing_nii_changes_nothing():
    got = _run("import json, nii, nii.detect, nii.pipeline\nfrom nii import _malloc\nprint(json.dumps({'s': _malloc.allocator_state()}))")
    assert got["s"] == "default"


@pytest.mark.parametrize("flag, tuned", [([], True), (["--malloc", "default"], False)])
def test_the_nii_command_tunes_its_process_unless_asked_not_to(flag, tuned):
    got = _run(
        "import json, contextlib, io\n"
        "from nii.cli import main\n"
        "from nii import _malloc\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        f"    rc = main({flag!r} + ['info', 'no-such-file.h5'])\n"
        "print(json.dumps({'rc': rc, 's': _malloc.allocator_state()}))\n"
    )
    assert got["rc"] == 1  # the command itself ran (and failed on the missing file)
    assert (got["s"] != "default") == (tuned and _glibc())


@pytest.mark.parametrize("kw", [{"mmap_threshold_mb": 0}, {"trim_threshold_mb": 4096}, {"mmap_threshold_mb": 1.5}, {"trim_threshold_mb": True}])
def test_bad_settings_are_refused(kw):
    from nii import tune_allocator
    from nii.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="threshold_mb must be an int"):
        tune_allocator(**kw)


def test_dask_workers_get_the_client_settings(monkeypatch):
    pytest.importorskip("distributed")
    from nii import _malloc
    from nii.distributed import PipelinePlugin

    calls = []
    monkeypatch.setattr(_malloc, "tune_allocator", lambda **kw: calls.append(kw) or True)
    monkeypatch.setattr("nii.distributed.Pipeline", lambda **kw: ("pipeline", kw))
    PipelinePlugin({"far": 0.01}, malloc=None).setup(None)
    assert calls == []
    plugin = PipelinePlugin({"far": 0.01}, malloc={"mmap_threshold_mb": 1024, "trim_threshold_mb": 1024})
    plugin.setup(None)
    assert calls == [{"mmap_threshold_mb": 1024, "trim_threshold_mb": 1024}] and plugin.pipeline == ("pipeline", {"far": 0.01})
