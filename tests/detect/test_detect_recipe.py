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


def test_image_cache_reaches_ultralytics_only_when_asked():
    assert "cache" not in Recipe().ultralytics_extra() and "cache" not in Recipe().to_toml()
    r = Recipe(cache="ram")
    assert r.ultralytics_extra()["cache"] == "ram" and 'cache = "ram"' in r.to_toml()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr0": 0.01}, "explicit optimizer"),
        ({"optimizer": "adam"}, "optimizer must be one of"),
        ({"optimizer": "SGD", "lr0": 1.5}, "lr0 must be in"),
        ({"optimizer": "SGD", "lr0": 0.0}, "lr0 must be in"),
        ({"warmup_epochs": -1.0}, "warmup_epochs"),
        ({"cache": "memory"}, "cache must be one of"),
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


# --- two-stage training: --weights-only on one machine, --from-weights on another -----------------


def test_cli_weights_only_excludes_set_default_and_from_weights(tmp_path, capsys):
    for extra in (["--set-default"], ["--from-weights", str(tmp_path / "w.pt")]):
        rc = main(["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "m"), "--weights-only", *extra])
        assert rc != 0
        assert "--weights-only" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def _write_dataset(root, **config):
    import json

    root.mkdir(parents=True)
    manifest = {"classes": ["ivory", "ivory_worked", "pangolin_scales", "rhino_horn"], "pitch_mm": 3.0, "tile_size": 320,
                "config": {"seed": 2026, "pitch_mm": 3.0, "tile_size": 320, "overlap": 64, "held_out_family": "timber",
                           "kind_weights": [0.7, 0.15, 0.15], "n_train": 100, **config}}
    (root / "dataset.json").write_text(json.dumps(manifest))
    return manifest


def _write_weights(folder, manifest):
    import dataclasses
    import json

    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"not really weights")
    info = {"epochs_run": 3, "train_seconds": 60.0, "device": "0", "n_train_images": 10,
            "recipe": dataclasses.asdict(Recipe(device="0")), "command": "nii train ...", "dataset_manifest": manifest}
    (folder / "train_info.json").write_text(json.dumps(info))
    return folder / "model.pt"


def test_from_weights_refuses_a_dataset_built_with_another_seed(tmp_path):
    """Other seeds would give val/test scenes that overlap the training scenes: refused before any work."""
    from nii.detect.training import train_model

    trained_on = _write_dataset(tmp_path / "gpu-data", n_train=6000)
    _write_dataset(tmp_path / "data", seed=7)
    pt = _write_weights(tmp_path / "w", trained_on)
    with pytest.raises(InvalidParameterError, match="seed: 2026 vs 7"):
        train_model(tmp_path / "data", tmp_path / "m", recipe=Recipe(), from_weights=pt)
    assert not (tmp_path / "m").exists()


def test_from_weights_needs_the_training_record(tmp_path):
    from nii.detect.training import train_model
    from nii.errors import FileAccessError, ModelError

    _write_dataset(tmp_path / "data")
    with pytest.raises(FileAccessError, match="weights file not found"):
        train_model(tmp_path / "data", tmp_path / "m", recipe=Recipe(), from_weights=tmp_path / "missing.pt")
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "model.pt").write_bytes(b"x")
    with pytest.raises(FileAccessError, match="train_info.json missing"):
        train_model(tmp_path / "data", tmp_path / "m", recipe=Recipe(), from_weights=tmp_path / "w" / "model.pt")
    (tmp_path / "w" / "train_info.json").write_text('{"epochs_run": 3}')
    with pytest.raises(ModelError, match="lacks 'recipe'"):
        train_model(tmp_path / "data", tmp_path / "m", recipe=Recipe(), from_weights=tmp_path / "w" / "model.pt")
    with pytest.raises(InvalidParameterError, match="exclude each other"):
        train_model(tmp_path / "data", tmp_path / "m", recipe=Recipe(), weights_only=True, from_weights=tmp_path / "w" / "model.pt")
    with pytest.raises(InvalidParameterError, match="average_with needs from_weights"):
        train_model(tmp_path / "data", tmp_path / "m", recipe=Recipe(), average_with=tmp_path / "w" / "model.pt")
    with pytest.raises(InvalidParameterError, match="mix must lie"):
        train_model(tmp_path / "data", tmp_path / "m", recipe=Recipe(), from_weights=tmp_path / "w" / "model.pt",
                    average_with=tmp_path / "w" / "model.pt", mix=2.0)
    with pytest.raises(FileAccessError, match="weights to average with not found"):
        train_model(tmp_path / "data", tmp_path / "m", recipe=Recipe(), from_weights=tmp_path / "w" / "model.pt",
                    average_with=tmp_path / "missing.pt")
    assert not (tmp_path / "m").exists()


def test_results_csv_is_read_without_polars(tmp_path, monkeypatch):
    """Ultralytics copies results.csv into checkpoints with polars; the adapter falls back to csv."""
    import sys
    from types import SimpleNamespace

    from nii.detect import _ultralytics as ul

    csv = tmp_path / "results.csv"
    csv.write_text("epoch, train/box_loss,note\n1,3.5,a\n2,2.25,b\n")
    assert ul._read_results_csv(csv) == {"epoch": [1.0, 2.0], "train/box_loss": [3.5, 2.25], "note": ["a", "b"]}
    assert ul._read_results_csv(tmp_path / "absent.csv") == {}
    monkeypatch.setitem(sys.modules, "polars", None)
    assert ul._has_polars() is False
    trainer = SimpleNamespace(csv=str(csv))
    ul._csv_results_without_polars(trainer)
    assert trainer.read_results_csv()["epoch"] == [1.0, 2.0]
