"""Fixtures of the review-app tests: a results folder with an alarm scan and a clear scan."""

from __future__ import annotations

import pytest

from nii.outputs import write_outputs
from tests.outputs.fakes import clear_result, tusk_result


def make_results(root):
    write_outputs(tusk_result(n_det=3), root, formats=("json", "png", "h5"))
    write_outputs(clear_result(), root, formats=("json", "png", "h5"))
    return root


@pytest.fixture(scope="session")
def results_template(tmp_path_factory):
    return make_results(tmp_path_factory.mktemp("results-template"))


@pytest.fixture
def results_dir(tmp_path, results_template):
    import shutil

    dst = tmp_path / "results"
    shutil.copytree(results_template, dst)
    return dst
