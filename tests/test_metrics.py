"""recon.core.metrics and `recon eval`: brute force, symmetry, analytic spheres, sampling floor."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import trimesh
from click.testing import CliRunner
from conftest import sphere_points
from scipy.spatial.distance import cdist

from recon.cli.main import cli
from recon.core.metrics import evaluate_reconstruction, sample_surface
from recon.errors import InputError, ReconError
from recon.evaluation.report import flat_metrics


def _noisy_sphere(n, seed, noise=0.05):
    points, normals = sphere_points(n, seed=seed)
    r = np.random.default_rng(seed + 100)
    return points + noise * r.normal(size=points.shape), normals + 0.3 * r.normal(size=points.shape)


def _unit(v):
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_matches_brute_force_on_small_sets():
    pred, pred_n = _noisy_sphere(300, seed=1)
    gt, gt_n = _noisy_sphere(400, seed=2)
    scan = _noisy_sphere(150, seed=3)[0]
    tau = 0.04
    res = evaluate_reconstruction((pred, pred_n), (gt, gt_n), scan_points=scan, fscore_tau=tau)

    d = cdist(pred, gt)
    d_pred, d_gt = d.min(axis=1), d.min(axis=0)
    l1 = cdist(pred, gt, metric="cityblock")
    assert res["accuracy"] == pytest.approx(d_pred.mean(), rel=1e-12)
    assert res["completeness"] == pytest.approx(d_gt.mean(), rel=1e-12)
    assert res["chamfer_l1"] == pytest.approx((d_pred.mean() + d_gt.mean()) / 2, rel=1e-12)
    assert res["chamfer_l2"] == pytest.approx(((d_pred**2).mean() + (d_gt**2).mean()) / 2, rel=1e-12)
    assert res["chamfer_norm_l1"] == pytest.approx((l1.min(axis=1).mean() + l1.min(axis=0).mean()) / 2)
    assert res["chamfer_norm_l2"] == pytest.approx(res["chamfer_l1"])
    assert res["hausdorff"] == pytest.approx(max(d_pred.max(), d_gt.max()))
    precision, recall = (d_pred < tau).mean(), (d_gt < tau).mean()
    assert res["precision"] == pytest.approx(precision)
    assert res["recall"] == pytest.approx(recall)
    assert res["fscore"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert res["scan_to_pred"] == pytest.approx(cdist(scan, pred).min(axis=1).mean())

    dots_pred = np.sum(_unit(pred_n) * _unit(gt_n)[d.argmin(axis=1)], axis=1)
    dots_gt = np.sum(_unit(gt_n) * _unit(pred_n)[d.argmin(axis=0)], axis=1)
    assert res["normal_consistency"] == pytest.approx((np.abs(dots_pred).mean() + np.abs(dots_gt).mean()) / 2)
    assert res["normal_consistency_oriented"] == pytest.approx((dots_pred.mean() + dots_gt.mean()) / 2)


def test_lengths_are_also_reported_per_mille_of_the_gt_diagonal():
    pred, gt = _noisy_sphere(200, seed=1)[0], _noisy_sphere(200, seed=2)[0] * 3.0
    res = evaluate_reconstruction(pred, gt)
    diagonal = np.linalg.norm(gt.max(axis=0) - gt.min(axis=0))
    assert res["gt_bbox_diagonal"] == pytest.approx(diagonal)
    assert res["tau"] == pytest.approx(0.01 * diagonal)
    assert res["x1000_diag"]["chamfer_l1"] == pytest.approx(res["chamfer_l1"] * 1000 / diagonal)
    assert res["x1000_diag"]["hausdorff"] == pytest.approx(res["hausdorff"] * 1000 / diagonal)
    assert res["x1000_diag"]["chamfer_l2"] == pytest.approx(res["chamfer_l2"] * (1000 / diagonal) ** 2)
    for key in ("chamfer_l1", "chamfer_l2", "chamfer_norm_l1", "fscore", "normal_consistency", "units"):
        assert key in res["definitions"]
    assert str(res["n_samples"]) in res["definitions"]["sampling"]


def test_swapping_pred_and_gt_swaps_accuracy_and_completeness():
    a, an = _noisy_sphere(300, seed=4)
    b, bn = _noisy_sphere(500, seed=5, noise=0.1)
    ab = evaluate_reconstruction((a, an), (b, bn), fscore_tau=0.05)
    ba = evaluate_reconstruction((b, bn), (a, an), fscore_tau=0.05)
    assert ab["accuracy"] == pytest.approx(ba["completeness"])
    assert ab["completeness"] == pytest.approx(ba["accuracy"])
    assert ab["precision"] == pytest.approx(ba["recall"])
    for key in ("chamfer_l1", "chamfer_l2", "chamfer_norm_l1", "hausdorff", "fscore", "normal_consistency"):
        assert ab[key] == pytest.approx(ba[key]), key
    assert ab["accuracy"] != pytest.approx(ab["completeness"])


def test_identical_point_sets_score_perfectly():
    points, normals = sphere_points(1000, seed=6)
    res = evaluate_reconstruction((points, normals), (points, normals), scan_points=points)
    for key in ("accuracy", "completeness", "chamfer_l1", "chamfer_l2", "chamfer_norm_l1", "hausdorff"):
        assert res[key] == 0.0, key
    assert res["scan_to_pred"] == 0.0
    assert res["fscore"] == res["precision"] == res["recall"] == 1.0
    assert res["normal_consistency"] == pytest.approx(1.0)
    assert res["normal_consistency_oriented"] == pytest.approx(1.0)
    assert res["norm_ratio"] is None


def test_flipped_normals_keep_consistency_but_not_its_oriented_version():
    points, normals = sphere_points(500, seed=7)
    res = evaluate_reconstruction((points, normals), (points, -normals))
    assert res["normal_consistency"] == pytest.approx(1.0)
    assert res["normal_consistency_oriented"] == pytest.approx(-1.0)


def test_concentric_spheres_give_the_radius_gap():
    # Samples exactly on two spheres, a gap g apart: a nearest distance is sqrt(g² + s²) with s the in-surface
    # offset to the nearest sample, E[s²] = 1 / (π ρ) for a uniform sample of density ρ. So Chamfer-L2 is
    # g² + E[s²] (up to the curvature), and Chamfer-L1 lies between g and sqrt(g² + E[s²]).
    n, gap = 20_000, 0.1
    inner = sphere_points(n, radius=1.0, seed=8)[0]
    outer = sphere_points(n, radius=1.0 + gap, seed=9)[0]
    res = evaluate_reconstruction(inner, outer, n_samples=n)
    offset_sq = 0.5 * sum(4 * np.pi * r**2 / (np.pi * n) for r in (1.0, 1.0 + gap))
    assert gap < res["chamfer_l1"] < 1.002 * np.sqrt(gap**2 + offset_sq)
    assert res["chamfer_l2"] == pytest.approx(gap**2 + offset_sq, rel=0.005)
    # The largest offset of n samples is about sqrt(ln(n) E[s²]); allow twice that.
    assert gap < res["hausdorff"] < np.sqrt(gap**2 + 2 * np.log(n) * offset_sq)
    assert res["recall"] == 0.0 and res["fscore"] == 0.0  # τ = 1% of 2.2·√3 < gap


def test_mesh_against_its_own_dense_sampling_is_at_the_sampling_floor():
    mesh = trimesh.creation.icosphere(subdivisions=4)
    n = 20_000
    dense = sample_surface(mesh.vertices, mesh.faces, 200_000, seed=123)
    res = evaluate_reconstruction(mesh, dense, n_samples=n)
    # Nearest-neighbour distance to a uniform sample of density ρ on a surface averages 1 / (2 √ρ).
    floor = 0.5 * np.sqrt(mesh.area / n)
    assert res["n_pred"] == res["n_gt"] == n
    assert 0.8 * floor < res["chamfer_l1"] < 1.2 * floor
    assert res["normal_consistency"] > 0.99


def test_norm_reading_ratio_lies_between_one_and_sqrt3():
    pred, gt = _noisy_sphere(500, seed=10)[0], _noisy_sphere(700, seed=11, noise=0.2)[0]
    res = evaluate_reconstruction(pred, gt)
    assert 1.0 <= res["norm_ratio"] <= np.sqrt(3)
    assert res["norm_ratio"] == pytest.approx(res["chamfer_norm_l1"] / res["chamfer_norm_l2"])


def test_sample_surface_is_area_uniform_on_the_surface_and_reproducible():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 0, 1], [0, 2, 1]], float)
    faces = np.array([[0, 1, 2], [3, 4, 5]])  # areas 0.5 and 3: 1/7 and 6/7 of the samples
    points, normals = sample_surface(vertices, faces, 70_000, seed=1)
    on_first = points[:, 2] == 0
    assert on_first.mean() == pytest.approx(1 / 7, abs=0.005)
    assert np.all(points[on_first].sum(axis=1) <= 1 + 1e-12)
    np.testing.assert_allclose(points[~on_first, 2], 1.0)
    second = points[~on_first]
    assert np.all(second[:, 0] / 3 + second[:, 1] / 2 <= 1 + 1e-12)
    np.testing.assert_allclose(normals, np.tile([0, 0, 1.0], (len(points), 1)))
    again, _ = sample_surface(vertices, faces, 70_000, seed=1)
    np.testing.assert_array_equal(points, again)
    # Uniform within a triangle: the mean of the samples is the centroid.
    np.testing.assert_allclose(points[on_first].mean(axis=0), [1 / 3, 1 / 3, 0], atol=0.01)


def test_larger_point_sets_are_subsampled_reproducibly():
    big = sphere_points(5_000, seed=12)[0]
    first = evaluate_reconstruction(big, big, n_samples=1_000, seed=3)
    assert first["n_pred"] == first["n_gt"] == 1_000
    assert first["chamfer_l1"] > 0
    assert evaluate_reconstruction(big, big, n_samples=1_000, seed=3)["chamfer_l1"] == first["chamfer_l1"]


@pytest.mark.parametrize(
    "pred",
    [
        np.array([[0, 0, np.nan]] * 4),
        np.zeros((0, 3)),
        np.zeros((5, 2)),
        trimesh.Trimesh(np.zeros((3, 3)), [[0, 1, 2]], process=False),
    ],
    ids=["nan", "empty", "2d", "zero-area"],
)
def test_bad_inputs_raise_input_errors(pred):
    gt = sphere_points(100)[0]
    with pytest.raises(InputError):
        evaluate_reconstruction(pred, gt)


# ---------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def mesh_files(tmp_path):
    gt = trimesh.creation.icosphere(subdivisions=3)
    pred = trimesh.creation.icosphere(subdivisions=3, radius=1.05)
    gt.export(tmp_path / "gt.ply")
    pred.export(tmp_path / "pred.ply")
    return tmp_path / "pred.ply", tmp_path / "gt.ply", pred, gt


def test_eval_cli_prints_both_units_and_writes_definitions(mesh_files, tmp_path):
    pred_path, gt_path, pred, gt = mesh_files
    out = tmp_path / "eval.json"
    args = ["eval", str(pred_path), str(gt_path), "--n-samples", "3000", "--json", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "Chamfer-L1" in result.output and "x1000 diag" in result.output
    written = json.loads(out.read_text())
    expected = evaluate_reconstruction(pred, gt, n_samples=3000, seed=0)
    # The shape recon batch writes: metrics under "metrics", definitions beside them.
    assert written["metrics"]["chamfer_l1"] == pytest.approx(expected["chamfer_l1"], rel=1e-5)  # float32 PLY
    assert "chamfer_l2" in written["definitions"] and "definitions" not in written["metrics"]
    assert flat_metrics(written)["chamfer_l1_x1000"] == pytest.approx(
        written["metrics"]["x1000_diag"]["chamfer_l1"]
    )
    assert written["inputs"]["gt"] == str(gt_path)

    again = CliRunner().invoke(cli, args)
    assert isinstance(again.exception, ReconError) and "--force" in str(again.exception)
    assert CliRunner().invoke(cli, [*args, "--force"]).exit_code == 0


def test_eval_cli_takes_a_run_folder_and_writes_its_eval_json(mesh_files, tmp_path):
    pred_path, gt_path, _, _ = mesh_files
    run = tmp_path / "run"
    run.mkdir()
    pred_path.rename(run / "mesh.ply")
    result = CliRunner().invoke(cli, ["eval", str(run), str(gt_path), "--n-samples", "2000"])
    assert result.exit_code == 0, result.output
    assert "chamfer_l1" in json.loads((run / "eval.json").read_text())["metrics"]

    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["eval", str(empty), str(gt_path)])
    assert isinstance(result.exception, ReconError) and "mesh.ply" in str(result.exception)


def test_eval_cli_error_is_one_line_and_exit_2(mesh_files, tmp_path):
    pred_path, gt_path, _, _ = mesh_files
    out = tmp_path / "taken.json"
    out.write_text("{}")
    code = "from recon.cli.main import main; main()"
    args = [sys.executable, "-c", code, "eval", str(pred_path), str(gt_path), "--json", str(out)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error:")
    assert out.read_text() == "{}"


def test_morton_order_interleaves_bits_and_only_permutes_the_samples():
    from recon.core.metrics import _in_morton_order, _morton_codes

    rng = np.random.default_rng(0)
    cells = rng.integers(0, 1 << 21, size=(200, 3))
    expected = [
        sum(((int(c[axis]) >> bit) & 1) << (3 * bit + axis) for bit in range(21) for axis in range(3))
        for c in cells
    ]
    assert [int(v) for v in _morton_codes(cells)] == expected

    points = rng.uniform(-1, 1, size=(5000, 3))
    normals = _unit(rng.normal(size=points.shape))
    ordered, ordered_normals = _in_morton_order(points, normals)
    original = {tuple(p) + tuple(n) for p, n in zip(points, normals, strict=True)}
    assert {tuple(p) + tuple(n) for p, n in zip(ordered, ordered_normals, strict=True)} == original
    step = np.linalg.norm(np.diff(ordered, axis=0), axis=1).mean()
    assert step < 0.2 * np.linalg.norm(np.diff(points, axis=0), axis=1).mean()
