"""``nii simulate`` end to end: files, labels consistent with /truth, determinism across workers."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("nii.sim.imaging")

from nii.cli import main  # noqa: E402
from nii.sim.labels import parse_yolo  # noqa: E402

ARGS = ["simulate", "--profile", "dual_kvp_80_140", "--channels", "128", "--length-cm", "40", "--seed", "3"]


def _run(tmp_path, name, *extra):
    out = tmp_path / name
    rc = main([*ARGS, "--out", str(out), *extra])
    assert rc == 0
    return out


def test_list(capsys):
    assert main(["simulate", "--list"]) == 0
    text = capsys.readouterr().out
    assert "luggage_clothes" in text and "negative_confusers" in text and "baggage_sandwich_140" in text


def test_bad_arguments(capsys, tmp_path):
    assert main(["simulate", "--profile", "nope", "--count", "1", "--out", str(tmp_path)]) == 1
    assert "unknown profile" in capsys.readouterr().err
    assert main(["simulate", "--profile", "dual_kvp_80_140", "--scenario", "nope", "--count", "1", "--out", str(tmp_path)]) == 1
    assert "unknown scenario" in capsys.readouterr().err
    assert main(["simulate", "--profile", "dual_kvp_80_140", "--scenario", "pallet_cargo", "--count", "1", "--out", str(tmp_path)]) == 1
    assert main(["simulate", "--profile", "dual_kvp_80_140", "--out", str(tmp_path)]) == 1
    assert "--count" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate", "--target-fraction", "2"])


def test_simulate_writes_consistent_dataset(tmp_path):
    import nii

    out = _run(tmp_path, "a", "--scenario", "luggage_clothes", "--count", "3", "--workers", "1", "--target-fraction", "1")
    man = json.loads((out / "manifest.json").read_text())
    assert man["seed"] == 3 and man["profile"] == "dual_kvp_80_140" and man["scenario"] == "luggage_clothes"
    coco = json.loads((out / "annotations.coco.json").read_text())
    assert len(coco["images"]) == 3
    n_boxes = 0
    for img in coco["images"]:
        raw = nii.read(out / img["file_name"])
        assert raw.shape[1:] == (128, 400)
        assert raw.dark is not None and raw.air is not None
        assert raw.metadata["simulation"]["scenario"] == "luggage_clothes"
        anns = [a for a in coco["annotations"] if a["image_id"] == img["id"]]
        assert len(anns) == len(raw.truth)
        for a, box in zip(anns, raw.truth.boxes):
            x, y, w, h = a["bbox"]
            np.testing.assert_allclose([x, y, x + w, y + h], box, atol=1e-3)
        yolo = parse_yolo((out / "labels" / (img["file_name"][:-3] + ".txt")).read_text(), img["height"], img["width"])
        assert yolo.classes == raw.truth.classes
        np.testing.assert_allclose(yolo.boxes, raw.truth.boxes, atol=0.01)
        n_boxes += len(raw.truth)
    assert n_boxes >= 3
    assert (out / "classes.txt").exists() and (out / "dataset.yaml").exists()


@pytest.mark.slow
def test_same_bytes_whatever_the_workers(tmp_path):
    import h5py

    a = _run(tmp_path, "w1", "--scenario", "mixed", "--count", "3", "--workers", "1")
    b = _run(tmp_path, "w2", "--scenario", "mixed", "--count", "3", "--workers", "2")
    names = sorted(p.name for p in a.glob("*.h5"))
    assert names == sorted(p.name for p in b.glob("*.h5")) and len(names) == 3
    for n in names:
        with h5py.File(a / n) as fa, h5py.File(b / n) as fb:
            np.testing.assert_array_equal(fa["raw/counts"][()], fb["raw/counts"][()])
            np.testing.assert_array_equal(fa["truth/boxes"][()], fb["truth/boxes"][()])
    assert (a / "annotations.coco.json").read_text() == (b / "annotations.coco.json").read_text()


def test_sample_scans_folder_is_complete():
    """sample_scans/: <= 15 MB, every file opens with truth, every class and main confuser shown."""
    import nii
    from nii._assets import asset_dir
    from nii.sim.phantoms import TRUTH_CLASSES
    from nii.sim.run import SAMPLE_PRESET

    folder = asset_dir("sample_scans")
    files = sorted(folder.glob("*.h5"))
    if not files:
        pytest.skip("sample_scans/ not generated in this checkout")
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert total <= 15_000_000
    assert 10 <= len(files) <= 15 and [p.stem for p in files] == [s[0] for s in SAMPLE_PRESET]
    readme = (folder / "README.md").read_text()
    assert "nii simulate --preset samples" in readme
    classes, confusers, negatives = set(), set(), 0
    for p in files:
        raw = nii.read(p)
        assert raw.truth is not None and raw.dark is not None and raw.air is not None
        assert f"`{p.name}`" in readme and (folder / "thumbs" / f"{p.stem}.png").is_file()
        classes |= set(raw.truth.classes)
        negatives += len(raw.truth) == 0
        confusers |= {c["class"] for c in raw.metadata["simulation"]["confusers"]}
    assert classes == set(TRUTH_CLASSES)
    assert {"bone", "shell", "pvc_pipe", "aluminium_profile", "resin_carving"} <= confusers
    assert negatives >= 2
    from nii._assets import sha256_file

    sums = dict(line.split()[::-1] for line in (folder / "SHA256SUMS").read_text().splitlines())
    assert sorted(sums) == [p.name for p in files]
    assert all(sha256_file(p) == sums[p.name] for p in files)


@pytest.mark.slow
def test_bench_simulate_reports_stages():
    import argparse

    from nii.bench import simulate as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out = bench.run(parser.parse_args(["--profile", "dual_kvp_80_140", "--scenario", "negative_clutter", "--count", "2", "--workers", "1"]))
    assert out["benchmark"] == "simulate" and out["count"] == 2
    assert set(out["stage_ms"]) == {"scene", "imaging", "write", "total"}
    assert out["pool_scans_per_s"] > 0 and out["scene_numpy_baseline_ms"] > 0 and out["memcopy_bound_ms"] > 0
    assert out["mpx_per_energy"] == pytest.approx(896 * 950 / 1e6)
