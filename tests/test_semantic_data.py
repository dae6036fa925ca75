"""Shape data set (sampling, augmentation) and the train / map / regions / srvr commands end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh
from click.testing import CliRunner

from recon.robust.semantic.shapes import (
    SHAPE_CLASSES,
    augmented_mesh,
    class_of,
    fit_unit_ball,
    make_instance,
    sample_surface,
    split_bases,
)


def test_surface_samples_lie_on_the_mesh_with_unit_normals(rng):
    box = trimesh.creation.box(extents=(2.0, 1.0, 0.5))
    points, normals = sample_surface(box.vertices, box.faces, 5000, rng)
    on_face = np.isclose(np.abs(points), [1.0, 0.5, 0.25], atol=1e-6).any(axis=1)
    assert on_face.all()
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    # area-uniform: the two 2×1 faces hold 2/(2+1+0.5) of the area
    share = np.isclose(np.abs(points[:, 2]), 0.25, atol=1e-6).mean()
    assert share == pytest.approx(2.0 / 3.5, abs=0.03)


def test_fit_unit_ball_centres_and_scales():
    vertices = np.array([[1.0, 1.0, 1.0], [3.0, 2.0, 1.0], [3.0, 1.0, 5.0]])
    fitted = fit_unit_ball(vertices, radius=0.9)
    np.testing.assert_allclose((fitted.min(0) + fitted.max(0)) / 2, 0.0, atol=1e-12)
    assert np.linalg.norm(fitted, axis=1).max() == pytest.approx(0.9)


def test_every_class_is_split_into_train_and_held_out_bases():
    classes = list(SHAPE_CLASSES)
    train, held_out = split_bases(classes)
    assert {label for _, label in train} == set(range(len(classes)))
    assert not {name for name, _ in train} & {name for name, _ in held_out}
    assert class_of("cow") == "quadruped"


def test_augmentation_is_seeded_and_stays_in_the_unit_ball():
    first = augmented_mesh("bone", np.random.default_rng(1))
    again = augmented_mesh("bone", np.random.default_rng(1))
    other = augmented_mesh("bone", np.random.default_rng(2))
    np.testing.assert_array_equal(first[0], again[0])
    assert first[0].shape != other[0].shape or not np.allclose(first[0], other[0])
    assert np.linalg.norm(first[0], axis=1).max() <= 0.95 + 1e-9
    instance = make_instance("bone", 4, 3, 500, seed=0)
    assert instance.points.shape == (500, 3) and instance.label == 4 and instance.name == "bone#3"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from recon.data.sources import is_fetched

    if not is_fetched("cgal"):
        pytest.skip("the CGAL meshes are not fetched (recon data fetch cgal)")
    from recon.cli.robust_semantic import semantic

    run_dir = tmp_path_factory.mktemp("semantic") / "run"
    args = ["train", "-o", str(run_dir), "--arch", "mlp", "--size", "16", "--points", "300", "--per-class", "1",
            "--epochs", "1", "--images-per-epoch", "32", "--batch-size", "16", "--quiet"]  # fmt: skip
    result = CliRunner().invoke(semantic, args)
    assert result.exit_code == 0, result.output
    return run_dir, args


def test_train_writes_a_run_folder_and_refuses_to_overwrite(tiny_run):
    from recon.cli.robust_semantic import semantic

    run_dir, args = tiny_run
    for name in ("config.json", "meta.json", "metrics.jsonl", "checkpoints/latest.pt", "DONE"):
        assert (run_dir / name).exists(), name
    state = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert state["epoch"] == 1
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["classes"] == list(SHAPE_CLASSES)
    assert config["config"]["prior"] == "canonical" and config["view_prior"]["elevation_range"] == [0.0, 30.0]
    again = CliRunner().invoke(semantic, args)
    assert again.exit_code != 0 and "--force" in str(again.exception or again.output)


def test_map_and_regions_commands(tiny_run, tmp_path):
    from recon.cli.robust_semantic import semantic
    from recon.robust.semantic.maps import AZIMUTHS_1D, AZIMUTHS_2D, ELEVATIONS_2D

    run_dir, _ = tiny_run
    result = CliRunner().invoke(
        semantic, ["map", str(run_dir), "--shapes", "bone", "-o", str(tmp_path / "maps")]
    )
    assert result.exit_code == 0, result.output
    two = np.load(tmp_path / "maps" / "bone" / "map2d.npy")
    one = np.load(tmp_path / "maps" / "bone" / "map1d.npy")
    assert two.shape == (len(ELEVATIONS_2D), len(AZIMUTHS_2D)) and one.shape == (len(AZIMUTHS_1D),)
    assert ((two >= 0) & (two <= 1)).all()
    assert (tmp_path / "maps" / "bone" / "map2d.png").stat().st_size > 0
    result = CliRunner().invoke(
        semantic,
        [
            "regions",
            str(run_dir),
            "--shapes",
            "bone",
            "--steps",
            "3",
            "--init",
            "130,30",
            "-o",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code == 0, result.output
    records = json.loads((tmp_path / "r" / "regions.json").read_text())["regions"]
    assert {r["method"] for r in records} == {"naive", "oir_b", "oir_w"}
    for r in records:
        assert 0 <= r["lower"][0] <= r["upper"][0] <= 360 and -10 <= r["lower"][1] <= r["upper"][1] <= 90
        assert np.all(np.array(r["lower"]) <= r["verified_lower"]) and np.all(
            np.array(r["verified_upper"]) <= r["upper"]
        )
        assert r["passed"] == (r["min_score"] >= 0.5) and r["verified_ratio"] <= r["ratio"]
    result = CliRunner().invoke(
        semantic,
        ["srvr", str(run_dir), "--shapes", "bone", "--steps", "2", "--init", "130,30", "--check-step", "5",
         "-o", str(tmp_path / "s")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = (tmp_path / "s" / "srvr.md").read_text()
    assert "(mlp, canonical)" in table and "SRVR oir_w verified [boxes passing]" in table
    bad = CliRunner().invoke(
        semantic, ["regions", str(run_dir), "--init", "500,0", "-o", str(tmp_path / "x")]
    )
    assert bad.exit_code != 0 and "outside" in str(bad.exception)


@pytest.mark.parametrize(
    ("args", "option"),
    [(["regions", "RUN", "--check-step", "0"], "--check-step"),
     (["regions", "RUN", "--check-threshold", "1.5"], "--check-threshold"),
     (["srvr", "RUN", "-o", "OUT", "--check-step", "nan"], "--check-step"),
     (["train", "-o", "RUN", "--prior", "frontal"], "--prior"),
     (["train", "-o", "RUN", "--arch", "wide-cnn"], "--arch")],
)  # fmt: skip
def test_bad_new_options_exit_2_before_anything_runs(args, option, tmp_path):
    from recon.cli.robust_semantic import semantic

    result = CliRunner().invoke(semantic, [str(tmp_path / a) if a in ("RUN", "OUT") else a for a in args])
    assert result.exit_code == 2 and option in result.output
    assert not any(tmp_path.iterdir())
