"""The training recipe: validation of the optimizer options and what reaches Ultralytics (no torch needed)."""

from __future__ import annotations

import pytest

from nii.cli import main
from nii.detect.training import Recipe
from nii.errors import InvalidParameterError


def test_default_recipe_leaves_the_optimizer_to_ultralytics():
    extra = Recipe().ultralytics_extra()
    assert extra == {"optimizer": "auto", "warmup_epochs": 3.0}


def test_explicit_optimizer_and_lr0_reach_ultralytics_and_the_recipe_file():
    r = Recipe(optimizer="AdamW", lr0=0.003, warmup_epochs=1)
    assert r.ultralytics_extra() == {"optimizer": "AdamW", "warmup_epochs": 1.0, "lr0": 0.003}
    toml = r.to_toml()
    assert 'optimizer = "AdamW"' in toml and "lr0 = 0.003" in toml and "warmup_epochs = 1" in toml


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr0": 0.01}, "explicit optimizer"),
        ({"optimizer": "adam"}, "optimizer must be one of"),
        ({"optimizer": "SGD", "lr0": 1.5}, "lr0 must be in"),
        ({"optimizer": "SGD", "lr0": 0.0}, "lr0 must be in"),
        ({"warmup_epochs": -1.0}, "warmup_epochs"),
    ],
)
def test_bad_optimizer_options_are_refused(kwargs, message):
    with pytest.raises(InvalidParameterError, match=message):
        Recipe(**kwargs)


def test_cli_refuses_lr0_with_auto_optimizer_before_training(tmp_path, capsys):
    rc = main(["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "m"), "--lr0", "0.01"])
    assert rc != 0
    assert "explicit optimizer" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
