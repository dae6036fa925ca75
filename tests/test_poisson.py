"""recon.core.normals, recon.baselines.poisson and `recon baseline poisson`, on analytic spheres."""

from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pytest
import trimesh
from click.testing import CliRunner
from conftest import sphere_points

from recon.baselines.poisson import PoissonConfig, prepare_scan, screened_poisson, solve
from recon.core.metrics import evaluate_reconstruction, sample_surface
from recon.core.normals import estimate_normals, orient_outward
from recon.errors import InputError, RunDirError
from recon.io.cleanup import area_weighted_vertex_normals

# Depth 6 resolves a unit sphere to ~1e-3 in a fraction of a second; the bounds below leave 2-3x margin.
# One solver thread: spinning OpenMP threads on a busy 2-core machine are ten times slower.
DEPTH = 6
THREADS = 1
MAX_MEAN_RADIAL_ERROR = 2e-3
MAX_RADIAL_ERROR = 1e-2


# ------------------------------------------------------------------------------------------- normals


def test_estimated_normals_agree_with_the_sphere_and_point_outward():
    points, truth = sphere_points(2_000, seed=1)
    normals = estimate_normals(points, k=20)
    dots = np.sum(normals * truth, axis=1)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0)
    assert dots.min() > 0.98


def test_orientation_carries_over_from_a_subsample(monkeypatch):
    import recon.core.normals

    monkeypatch.setattr(recon.core.normals, "MAX_ORIENT_POINTS", 300)
    points, truth = sphere_points(3_000, seed=2)
    normals = estimate_normals(points, k=15)
    assert np.sum(normals * truth, axis=1).min() > 0.95


def test_viewpoint_orientation_faces_the_viewpoint():
    points, truth = sphere_points(2_000, seed=3)
    front = points[points[:, 2] > 0.3]  # a cap seen from above, like a range scan
    normals = estimate_normals(front, orient="viewpoint", viewpoint=np.array([0.0, 0.0, 5.0]))
    assert np.sum(normals * truth[points[:, 2] > 0.3], axis=1).min() > 0.95


def test_orient_outward_flips_an_inward_set_only():
    points, truth = sphere_points(1_000, seed=4)
    shifted = points + [10.0, -3.0, 2.0]
    np.testing.assert_array_equal(orient_outward(shifted, -truth), truth)
    np.testing.assert_array_equal(orient_outward(shifted, truth), truth)


def test_vertex_normals_from_faces_of_an_icosphere_are_radial():
    mesh = trimesh.creation.icosphere(subdivisions=3)
    normals = area_weighted_vertex_normals(mesh.vertices, mesh.faces)
    radial = mesh.vertices / np.linalg.norm(mesh.vertices, axis=1, keepdims=True)
    assert np.sum(normals * radial, axis=1).min() > 0.999


def test_bad_orientation_mode_is_an_input_error():
    with pytest.raises(InputError):
        estimate_normals(sphere_points(100)[0], orient="sideways")
    with pytest.raises(InputError):
        estimate_normals(sphere_points(100)[0], orient="viewpoint")


# ------------------------------------------------------------------------------------------- Poisson


def _radial_errors(vertices, faces, center=(0.0, 0.0, 0.0), radius=1.0):
    samples, _ = sample_surface(vertices, faces, 20_000, seed=0)
    return np.abs(np.linalg.norm(samples - center, axis=1) - radius)


@pytest.mark.parametrize("backend", ["pymeshlab", "open3d"])
@pytest.mark.parametrize("with_normals", [True, False], ids=["scan-normals", "estimated-normals"])
def test_poisson_reconstructs_a_sphere(backend, with_normals):
    points, normals = sphere_points(3_000, seed=5)
    config = PoissonConfig(depth=DEPTH, backend=backend, threads=THREADS)
    vertices, faces, info = screened_poisson(points, normals if with_normals else None, config)
    error = _radial_errors(vertices, faces)
    assert error.mean() < MAX_MEAN_RADIAL_ERROR and error.max() < MAX_RADIAL_ERROR
    assert info["normals"] == ("scan" if with_normals else "estimated")
    assert info["n_faces"] == len(faces) and faces.max() < len(vertices)
    # Completeness too: the mesh covers the whole sphere, and it is oriented outward.
    exact = sphere_points(20_000, seed=6)
    res = evaluate_reconstruction(trimesh.Trimesh(vertices, faces, process=False), exact, n_samples=20_000)
    floor = 0.5 * np.sqrt(4 * np.pi / 20_000)
    assert res["completeness"] < 1.3 * floor
    assert res["normal_consistency_oriented"] > 0.99


def test_poisson_returns_the_mesh_in_the_scan_frame():
    center, radius = np.array([100.0, -20.0, 5.0]), 50.0
    points, normals = sphere_points(3_000, radius=radius, seed=7)
    vertices, faces, _ = screened_poisson(
        points + center, normals, PoissonConfig(depth=DEPTH, threads=THREADS)
    )
    error = _radial_errors(vertices, faces, center, radius)
    assert error.mean() < radius * MAX_MEAN_RADIAL_ERROR


def test_density_trimming_removes_vertices_and_keeps_a_valid_mesh():
    points, normals = sphere_points(3_000, seed=8)
    cap = points[:, 2] > -0.5  # an open scan: Poisson closes the hole with a low-density sheet
    config = PoissonConfig(depth=DEPTH, backend="open3d", threads=THREADS)
    full_v, full_f, _ = screened_poisson(points[cap], normals[cap], config)
    config.density_trim_quantile = 0.1
    vertices, faces, info = screened_poisson(points[cap], normals[cap], config)
    assert info["n_trimmed_vertices"] >= 0.1 * len(full_v) - 1
    assert len(vertices) == len(full_v) - info["n_trimmed_vertices"]
    assert faces.min() >= 0 and faces.max() == len(vertices) - 1
    # What is trimmed is the sheet far below the scan.
    assert vertices[:, 2].min() > full_v[:, 2].min()


def _sphere_with_outliers(n_outliers: int = 100):
    """3,000 points on the unit sphere and ``n_outliers`` stray points at least 0.6 off it (random normals)."""
    points, normals = sphere_points(3_000, seed=11)
    candidates = np.random.default_rng(12).uniform(-2.5, 2.5, (20 * n_outliers, 3))
    far = np.abs(np.linalg.norm(candidates, axis=1) - 1.0) > 0.6
    stray = candidates[far][:n_outliers]
    stray_normals = sphere_points(n_outliers, seed=13)[1]
    return np.concatenate([points, stray]), np.concatenate([normals, stray_normals])


def test_isolated_points_are_dropped_as_the_fit_drops_them():
    points, normals = _sphere_with_outliers(100)
    filtered = screened_poisson(points, normals, PoissonConfig(depth=DEPTH, threads=THREADS))
    unfiltered = screened_poisson(
        points, normals, PoissonConfig(depth=DEPTH, threads=THREADS, outlier_ratio=0)
    )
    assert filtered[2]["isolated_points"]["dropped"] == 100
    assert filtered[2]["n_points_used"] == 3_000 and filtered[2]["n_points"] == 3_100
    assert unfiltered[2]["isolated_points"]["dropped"] == 0
    error, unfiltered_error = _radial_errors(*filtered[:2]), _radial_errors(*unfiltered[:2])
    assert error.mean() < MAX_MEAN_RADIAL_ERROR and error.max() < MAX_RADIAL_ERROR
    # Without the filter the solve grows blobs around the stray points.
    assert unfiltered_error.mean() > 20 * error.mean()


def test_one_preparation_serves_every_solver_configuration():
    points, normals = sphere_points(2_000, seed=14)
    config = PoissonConfig(depth=DEPTH, threads=THREADS)
    vertices, faces, info = screened_poisson(points, normals, config)
    prepared = prepare_scan(points, normals, config)
    again = solve(prepared, config)
    np.testing.assert_array_equal(again[1], faces)
    np.testing.assert_allclose(again[0], vertices, atol=1e-12)
    deeper = solve(prepared, PoissonConfig(depth=DEPTH + 1, threads=THREADS, backend="open3d"))
    assert deeper[2]["n_points_used"] == info["n_points_used"] and deeper[2]["backend"] == "open3d"


def test_poisson_rejects_bad_input():
    points, normals = sphere_points(100, seed=9)
    with pytest.raises(InputError, match="at least"):
        screened_poisson(points[:5], normals[:5])
    with pytest.raises(InputError, match="normals"):
        screened_poisson(points, None, PoissonConfig(normals="scan"))
    with pytest.raises(InputError, match="backend"):
        screened_poisson(points, normals, PoissonConfig(backend="cgal"))
    bad = points.copy()
    bad[3, 1] = np.inf
    with pytest.raises(InputError, match="non-finite"):
        screened_poisson(bad, normals)
    with pytest.raises(InputError, match="outlier ratio"):
        screened_poisson(points, normals, PoissonConfig(outlier_ratio=0.5))


def test_every_config_field_has_help_text():
    from recon.cli.options import field_help

    help_text = field_help(PoissonConfig)
    assert set(help_text) == {f.name for f in fields(PoissonConfig)}
    assert all(len(text) > 10 for text in help_text.values())


# ------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def scan_file(tmp_path):
    from recon import io

    points, normals = sphere_points(3_000, seed=10)
    path = tmp_path / "sphere.ply"
    io.save_point_cloud(path, points + [1.0, 2.0, 3.0], normals)
    return path


def test_baseline_poisson_writes_a_run_folder(scan_file, tmp_path):
    from recon.cli.main import cli
    from recon.io import load_mesh

    run = tmp_path / "run"
    args = [
        "baseline",
        "poisson",
        str(scan_file),
        "-o",
        str(run),
        "--depth",
        str(DEPTH),
        "--backend",
        "open3d",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert {"mesh.ply", "config.json", "meta.json", "DONE"} <= {p.name for p in run.iterdir()}
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == "poisson" and config["poisson"]["depth"] == DEPTH
    assert "0 isolated scan points dropped" in result.output
    meta = json.loads((run / "meta.json").read_text())
    assert meta["seconds"] > 0 and "versions" in meta
    isolated = meta["info"]["isolated_points"]
    assert (isolated["dropped"], isolated["ratio"], isolated["neighbors"]) == (0, 5.0, 16)
    mesh = load_mesh(run / "mesh.ply")
    error = _radial_errors(mesh.vertices, mesh.faces, center=(1.0, 2.0, 3.0))
    assert error.mean() < MAX_MEAN_RADIAL_ERROR

    again = CliRunner().invoke(cli, args)
    assert isinstance(again.exception, RunDirError)
    assert CliRunner().invoke(cli, [*args, "--force"]).exit_code == 0


def test_baseline_lists_its_methods():
    from recon.cli.main import cli

    result = CliRunner().invoke(cli, ["baseline", "--help"])
    assert result.exit_code == 0 and "poisson" in result.output
    result = CliRunner().invoke(cli, ["baseline", "poisson", "--help"])
    assert "Maximum octree depth" in result.output and "--trim" in result.output
    assert "--outlier-ratio" in result.output
