"""Atomic outputs: a file or an assembled folder appears whole or not at all."""

from __future__ import annotations

import pytest

from nii._atomic import atomic_dir, atomic_write_text
from nii.errors import FileAccessError


def test_atomic_dir_renames_on_success(tmp_path):
    with atomic_dir(tmp_path / "sub" / "model") as work:
        assert work.parent == tmp_path / "sub" and work.name.startswith(".model-")
        (work / "a.txt").write_text("a")
        assert not (tmp_path / "sub" / "model").exists()
    assert (tmp_path / "sub" / "model" / "a.txt").read_text() == "a"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["model"]


def test_atomic_dir_leaves_nothing_on_failure_and_keeps_what_exists(tmp_path):
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "model") as work:
        (work / "half.txt").write_text("x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    atomic_write_text(tmp_path / "model" / "keep.txt", "kept")
    with pytest.raises(FileAccessError, match="exists already"), atomic_dir(tmp_path / "model"):
        pass
    assert (tmp_path / "model" / "keep.txt").read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
