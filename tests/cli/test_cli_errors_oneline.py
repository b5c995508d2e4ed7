"""The CLI prints an error as one unbroken line, the message taken literally."""

from __future__ import annotations


def test_error_is_one_line_and_literal(tmp_path, capsys):
    from nii.cli import main

    missing = tmp_path / ("a-long-folder-name-" * 5) / "model[1]"
    assert main(["optimize", str(missing)]) == 1
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0], lines


def test_reported_file_failures_are_one_line_each(tmp_path, capsys):
    from nii.cli import main

    missing = tmp_path / ("a-long-folder-name-" * 5) / "scan[1].h5"
    assert main(["info", str(missing)]) != 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert any(str(missing) in ln for ln in lines), lines
