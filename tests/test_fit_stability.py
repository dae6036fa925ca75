"""One scan, one quality: caps over holes, scans without normals, seeds and thread counts.

Distances are in units of the scan's bounding-box diagonal; surfaces are compared by a symmetric Chamfer
distance on 20k area-uniform samples (mean of both one-sided means).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import sphere_points, torus_points
from scipy.spatial import cKDTree

from recon.core.config import fast_preset, tiny_preset
from recon.core.reconstruct import fit_scan
from recon.io import load_mesh, save_point_cloud


def chamfer(a, b, n: int = 20_000) -> float:
    """Symmetric mean nearest-sample distance between two meshes."""
    pa, pb = a.sample(n, seed=0), b.sample(n, seed=1)
    return 0.5 * (cKDTree(pb).query(pa)[0].mean() + cKDTree(pa).query(pb)[0].mean())


def fit_mesh(path, run_dir, seed: int = 0, threads: int | None = None, **overrides):
    config = tiny_preset().with_(seed=seed, device="cpu", **overrides)
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        result = fit_scan(path, run_dir, config, thumbnail=False)
    finally:
        torch.set_num_threads(before)
    return load_mesh(result.mesh_path), result


def half_scanned_open_cylinder() -> np.ndarray:
    """x y z of the visible half of a tube open at both ends, seen from -y: one-sided, open, no normals."""
    rng = np.random.default_rng(21)
    angle, z = rng.uniform(np.pi, 2 * np.pi, 3000), rng.uniform(-0.5, 0.5, 3000)
    points = np.stack([0.35 * np.cos(angle), 0.35 * np.sin(angle), z], axis=1)
    return points + rng.normal(scale=0.002, size=points.shape)


def test_seeds_and_thread_counts_give_the_same_surface(tmp_path):
    # Before the start became deterministic, the start's sign came from a random 2,000-point subset and caps over holes
    # from a jump in the start's target, so seeds (and the machine's arithmetic) moved the surface. Measured
    # on this case: largest pairwise distance 0.0248 of the diagonal before, 0.0145 after.
    scan = half_scanned_open_cylinder()
    path = tmp_path / "scan.ply"
    save_point_cloud(path, scan)
    diagonal = np.linalg.norm(np.ptp(scan, axis=0))
    draws = [(0, 2), (1, 2), (2, 2), (0, 1)]
    meshes = [
        fit_mesh(path, tmp_path / f"s{seed}t{threads}", seed, threads, steps=150, resolution=48)[0]
        for seed, threads in draws
    ]
    spread = max(chamfer(a, b) for i, a in enumerate(meshes) for b in meshes[i + 1 :]) / diagonal
    assert spread < 0.018, f"surfaces of different seeds/threads differ by {spread:.4f} of the diagonal"


def test_watertight_cap_over_a_hole_stays_between_the_sphere_and_the_flat_disc(tmp_path):
    # A sphere scanned all around but for a cap of 35° half-angle. The smallest surface closing the hole is
    # the flat disc at height 0.6·cos 35° = 0.49; the missing sphere cap rises to 0.6. The mesh's cap must
    # stay between the two (with 0.025 of slack): no lobe above the sphere, no dent below the disc.
    radius, half_angle = 0.6, np.radians(35)
    points, normals = sphere_points(6000, radius, seed=22)
    keep = points[:, 2] < radius * np.cos(half_angle)
    path = tmp_path / "holed.ply"
    save_point_cloud(path, points[keep], normals[keep])
    mesh, result = fit_mesh(path, tmp_path / "run", steps=200, resolution=64)
    disc = radius * np.cos(half_angle)
    rim = radius * np.sin(half_angle)
    over_hole = np.linalg.norm(mesh.vertices[:, :2], axis=1) < 0.7 * rim
    top = mesh.vertices[over_hole & (mesh.vertices[:, 2] > 0)]
    assert len(top) > 10
    assert top[:, 2].max() < radius + 0.025 and top[:, 2].min() > disc - 0.025
    assert result.mesh_report["watertight"]


def test_torus_without_normals_matches_the_torus_with_them(tmp_path):
    major, minor = 0.6, 0.25
    points = torus_points(6000, major, minor, seed=23)
    ring = np.stack([points[:, 0], points[:, 1], np.zeros(len(points))], axis=1)
    ring = major * ring / np.linalg.norm(ring, axis=1, keepdims=True)
    normals = (points - ring) / np.linalg.norm(points - ring, axis=1, keepdims=True)
    save_point_cloud(tmp_path / "with.ply", points, normals)
    save_point_cloud(tmp_path / "without.ply", points)
    with_normals, _ = fit_mesh(tmp_path / "with.ply", tmp_path / "a", steps=200, resolution=64)
    without, result = fit_mesh(tmp_path / "without.ply", tmp_path / "b", steps=200, resolution=64)
    assert result.mesh_report["euler_characteristic"] == 0  # a torus, not a sphere or a box
    exact = np.abs(
        np.hypot(np.linalg.norm(without.vertices[:, :2], axis=1) - major, without.vertices[:, 2]) - minor
    )
    assert np.median(exact) < 0.01
    assert chamfer(with_normals, without) < 0.01


def saddle_with_normals_in_another_frame(tmp_path):
    """A one-sided open saddle patch whose normals were written in another axis convention (x y z -> y z x):
    smooth and consistently signed, so they pass both orientation tests, but wrong, and the start from
    them gives a surface that misses much of the scan (suspect on 1 and 2 threads, seeds 0 and 1; the
    other permutation, z x y, passed on 2 threads at seed 0)."""
    rng = np.random.default_rng(16)
    x, y = rng.uniform(-0.5, 0.5, (2, 4000))
    points = np.stack([x, 0.8 * (x * x - y * y), y], axis=1)
    normals = np.stack([1.6 * x, -np.ones_like(x), -1.6 * y], axis=1)[:, [1, 2, 0]]
    path = tmp_path / "saddle.ply"
    save_point_cloud(path, points, normals / np.linalg.norm(normals, axis=1, keepdims=True))
    return path


def test_a_failed_start_is_repaired_from_estimated_normals(tmp_path):
    path = saddle_with_normals_in_another_frame(tmp_path)
    _, result = fit_mesh(
        path, tmp_path / "run", steps=150, resolution=48, on_suspect="repair", normal_weight=0.0
    )
    attempts = result.surface_check["attempts"]
    assert attempts[0]["start_orientation"] == "scan" and attempts[0]["suspect"]
    assert result.surface_check["start_orientation"] != "scan" and not result.surface_check["suspect"]
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["surface_check"] == result.surface_check
    assert result.surface_check["scan_within_1pct"] > 0.8


def test_a_failed_start_is_refused_with_one_error_and_no_mesh(tmp_path):
    from recon.errors import FitRefusedError

    path = saddle_with_normals_in_another_frame(tmp_path)
    with pytest.raises(FitRefusedError, match="failed its check"):
        fit_mesh(path, tmp_path / "run", steps=150, resolution=48, on_suspect="refuse", normal_weight=0.0)
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["surface_check"]["suspect"]
    assert not (tmp_path / "run" / "mesh.ply").exists() and (tmp_path / "run" / "mesh_suspect.ply").exists()
    assert not (tmp_path / "run" / "DONE").exists()


def lobes_on_first_attempts(monkeypatch, shares: list[float]):
    """Make the check report a lobe with these shares of surface beyond the closure on the first meshes."""
    import recon.core.surface_check as surface_check

    real = surface_check.check_surface
    windings = []

    def check_surface(*args, **kwargs):
        result = real(*args, **kwargs)
        windings.append(kwargs["winding"])
        if len(windings) <= len(shares):
            result.invented_beyond_closure_share, result.has_lobe = shares[len(windings) - 1], True
        return result

    monkeypatch.setattr(surface_check, "check_surface", check_surface)
    return windings


def test_a_lobe_is_repaired_by_the_same_start_with_the_next_seed(tmp_path, monkeypatch):
    windings = lobes_on_first_attempts(monkeypatch, [0.05])
    save_point_cloud(tmp_path / "torus.ply", torus_points(3000, seed=24))
    _, result = fit_mesh(
        tmp_path / "torus.ply", tmp_path / "run", steps=60, resolution=40, on_suspect="repair"
    )
    attempts = result.surface_check["attempts"]
    assert [(a["start_orientation"], a["seed"], a["has_lobe"]) for a in attempts] == [
        ("estimated", 0, True),
        ("estimated", 1, False),
    ]
    assert result.surface_check["seed"] == 1 and not result.surface_check["has_lobe"]
    assert all(winding is not None for winding in windings)
    # The check of a real fit reads the start's winding number: the repaired torus has nothing beyond it.
    assert result.surface_check["invented_beyond_closure_share"] < 0.005


def test_a_tear_is_repaired_by_the_same_start_with_the_next_seed(tmp_path, monkeypatch):
    import recon.core.surface_check as surface_check

    real, calls = surface_check.check_surface, []

    def check_surface(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(result)
        if len(calls) == 1:
            result.scan_torn_patches, result.has_tear = 0.011, True
        return result

    monkeypatch.setattr(surface_check, "check_surface", check_surface)
    save_point_cloud(tmp_path / "torus.ply", torus_points(3000, seed=24))
    _, result = fit_mesh(
        tmp_path / "torus.ply", tmp_path / "run", steps=30, resolution=32, on_suspect="repair"
    )
    attempts = result.surface_check["attempts"]
    assert [(a["seed"], a["has_tear"]) for a in attempts] == [(0, True), (1, False)]
    assert result.surface_check["seed"] == 1 and not result.surface_check["has_tear"]
    log = (tmp_path / "run" / "log").read_text()
    first = next(line for line in log.splitlines() if "surface check (estimated start, seed 0)" in line)
    assert "ok, but it" in first and "tore away from part of the scan" in first
    assert "tore away from part of the scan; refitting from the estimated start, seed 1" in log


def test_a_lobe_on_every_seed_keeps_the_least_one_and_its_checkpoint(tmp_path, monkeypatch):
    from recon.core.reconstruct import LOBE_RESEEDS
    from recon.run import RunFolder

    lobes_on_first_attempts(monkeypatch, [0.05, 0.03, 0.04][: LOBE_RESEEDS + 1])
    save_point_cloud(tmp_path / "torus.ply", torus_points(3000, seed=24))
    _, result = fit_mesh(
        tmp_path / "torus.ply", tmp_path / "run", steps=30, resolution=32, on_suspect="repair"
    )
    check = result.surface_check
    assert [a["seed"] for a in check["attempts"]] == [0, 1, 2]
    assert check["seed"] == 1 and check["has_lobe"] and not check["suspect"]
    assert (tmp_path / "run" / "mesh.ply").exists()
    assert RunFolder.open(tmp_path / "run").load_checkpoint()["start_seed"] == 1


def test_a_restored_fit_rebuilds_the_start_winding_number_exactly(tmp_path):
    """The check after a resume reads the same inside/outside as the check of the uninterrupted fit."""
    from recon.core.fit import LevelSetFitter

    points = torus_points(3000, seed=25).astype(np.float32)
    config = tiny_preset().with_(steps=10, device="cpu")
    started = LevelSetFitter(points, None, config)
    restored = LevelSetFitter(points, None, config, initialize=False)
    restored.load_state_dict(started.state_dict())
    queries = np.random.default_rng(0).uniform(-1, 1, (500, 3))
    assert np.array_equal(started.scan_winding()(queries), restored.scan_winding()(queries))
    inside = started.scan_winding()(np.array([[0.6, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert inside[0] > 0.9 and abs(inside[1]) < 0.1  # in the tube, in the hole


def _scan_residuals(config, steps: int) -> list[float]:
    """Mean |F| on a sphere scan at the start and after each of the first ``steps`` optimizer steps."""
    from recon.core.fit import LevelSetFitter
    from recon.core.reconstruct import prepare_points

    points, normals = sphere_points(3000, radius=0.5, seed=0)
    work_points, work_normals, _ = prepare_points(points, normals, config)
    fitter = LevelSetFitter(work_points, work_normals, config)
    residuals = []
    for step in range(steps + 1):
        if step:
            fitter.train_step()
        with torch.no_grad():
            residuals.append(float(fitter.model(fitter.points).abs().mean()))
    return residuals


def test_the_first_steps_keep_the_start_surface():
    """A fresh Adam moves every weight by about the full rate in its first step: without the warm-up the
    fast preset's first step multiplies the start's residual on the scan (measured: 0.023 → 0.49), and what
    regrows far from the data is the seed's. With it no early step moves the surface off the scan."""
    config = fast_preset().with_(
        seed=0, device="cpu", init_samples=10_000, init_steps=50, general_pool=10_000
    )
    assert config.optimizer.lr_warmup_steps > 0
    warmed = _scan_residuals(config, 5)
    assert max(warmed[1:]) <= 1.5 * warmed[0]
    cold = _scan_residuals(config.with_(lr_warmup_steps=0), 5)
    assert cold[0] == warmed[0]  # the same start
    assert max(cold[1:]) > 5 * warmed[0]  # what the warm-up prevents


def test_the_warm_up_ramps_the_rate_linearly_into_the_schedule():
    from recon.core.fit import LevelSetFitter

    points, normals = sphere_points(500, radius=0.5, seed=0)
    config = tiny_preset().with_(seed=0, device="cpu", steps=100, lr=1e-3, lr_warmup_steps=10)
    fitter = LevelSetFitter(points.astype(np.float32), normals.astype(np.float32), config)
    cold = LevelSetFitter(
        points.astype(np.float32), normals.astype(np.float32), config.with_(lr_warmup_steps=0)
    )
    assert fitter.learning_rate(0) == pytest.approx(0.1 * cold.learning_rate(0))
    assert fitter.learning_rate(4) == pytest.approx(0.5 * cold.learning_rate(4))
    for step in (9, 10, 50, 99):
        assert fitter.learning_rate(step) == cold.learning_rate(step)
