"""Sphere tracing: analytic sphere, a trained 1-Lipschitz network against its mesh, and ``recon render``."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import torus_points

from recon.cli.render import render
from recon.core.config import PRESETS
from recon.core.fit import LevelSetFitter
from recon.core.normalize import Normalization
from recon.errors import InputError, RunDirError
from recon.evaluation.sphere_trace import box_interval, camera_rays, render_run, sphere_trace, unit_normals
from recon.run import RunFolder
from recon.viewer.camera import frame_view

RADIUS = 0.6


def sphere_sdf(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points, axis=1) - RADIUS


def sphere_rays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rays from a sphere of radius 2 aimed at random points of the box [-0.8, 0.8]³ (hits and misses)."""
    rng = np.random.default_rng(seed)
    origins = rng.normal(size=(n, 3))
    origins *= 2.0 / np.linalg.norm(origins, axis=1, keepdims=True)
    directions = rng.uniform(-0.8, 0.8, (n, 3)) - origins
    return origins, directions / np.linalg.norm(directions, axis=1, keepdims=True)


def first_sphere_hit(origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Exact first intersection t with the sphere (inf on a miss)."""
    b = (origins * directions).sum(axis=1)
    disc = b * b - ((origins * origins).sum(axis=1) - RADIUS**2)
    return np.where(disc >= 0, -b - np.sqrt(np.maximum(disc, 0.0)), np.inf)


def test_sphere_hits_lie_on_the_surface_and_never_overshoot():
    origins, directions = sphere_rays(3000)
    eps = 1e-5
    result = sphere_trace(sphere_sdf, origins, directions, 1.0, eps=eps, max_steps=500, far=5.0, record=True)
    exact = first_sphere_hit(origins, directions)
    assert np.abs(sphere_sdf(result.points[result.hit])).max() < eps
    # rays that clearly hit (not grazing) are all found, at the first intersection
    with np.errstate(invalid="ignore"):
        cos = -np.einsum("ij,ij->i", directions, origins + exact[:, None] * directions) / RADIUS
    clear = np.isfinite(exact) & (cos > 0.05)
    assert result.hit[clear].all()
    assert not result.hit[~np.isfinite(exact)].any()
    assert np.all(result.depth[result.hit] <= exact[result.hit] + 1e-9)
    assert np.all(exact[clear] - result.depth[clear] < 2 * eps / cos[clear])
    # no march position ever passes the first intersection: F stays ≥ 0 along every ray
    path = result.path
    marched = ~np.isnan(path)
    assert np.all(path[marched] <= np.broadcast_to(exact, path.shape)[marched] + 1e-9)
    points = origins[None] + np.nan_to_num(path)[..., None] * directions[None]
    assert sphere_sdf(points[marched]).min() >= -1e-12


def test_too_small_lipschitz_constant_overshoots():
    """The overshoot check above can fail: underestimating L (steps 2.5× too long) crosses the surface."""
    origins, directions = sphere_rays(500)
    exact = first_sphere_hit(origins, directions)
    result = sphere_trace(sphere_sdf, origins, directions, 0.4, eps=1e-5, far=5.0, record=True)
    beyond = np.nan_to_num(result.path, nan=-np.inf) > exact[None] + 1e-6
    assert beyond.any()


def test_sphere_normals_and_box_interval():
    model = lambda x: x.norm(dim=1) - RADIUS  # noqa: E731
    points = np.random.default_rng(1).normal(size=(100, 3))
    points *= RADIUS / np.linalg.norm(points, axis=1, keepdims=True)
    np.testing.assert_allclose(unit_normals(model, points), points / RADIUS, atol=1e-5)
    origins = np.array([[0.0, 0.0, 5.0], [3.0, 3.0, 5.0]])
    directions = np.array([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    near, far = box_interval(origins, directions, 1.0)
    np.testing.assert_allclose([near[0], far[0]], [4.0, 6.0])
    assert near[1] > far[1]


def test_camera_rays_pass_through_their_pixels():
    camera = frame_view(np.array([[-1.0, -1, -1], [1, 1, 1]]), "iso", (24, 16))
    origins, directions = camera_rays(camera)
    uv, depth = camera.project(origins + 3.0 * directions)
    u, v = np.meshgrid(np.arange(24), np.arange(16))
    np.testing.assert_allclose(uv, np.stack([u.ravel(), v.ravel()], axis=1), atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0)
    assert np.all(depth > 0)


@pytest.fixture(scope="module")
def trained_lipschitz():
    from recon.lipschitz.implicit import DistanceFitConfig, LipschitzImplicitConfig, fit_distance_field

    torch.manual_seed(0)
    config = DistanceFitConfig(
        model=LipschitzImplicitConfig(depth=2, width=32, bjorck_iters=10), steps=300, batch=512, uniform=256
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small network trains several times faster on one thread
    try:
        model, _ = fit_distance_field(torus_points(2000), config)
    finally:
        torch.set_num_threads(threads)
    return model.frozen_copy()


def test_trained_lipschitz_trace_agrees_with_extracted_mesh(trained_lipschitz):
    import open3d as o3d

    from recon.core.extract import extract_mesh
    from recon.models.field import numpy_field

    model = trained_lipschitz
    lipschitz = model.lipschitz_bound("l2")
    assert lipschitz <= 1.0 + 1e-4
    field = numpy_field(model)
    resolution, bound = 64, 1.2
    voxel = 2 * bound / (resolution - 1)
    vertices, faces = extract_mesh(field, resolution=resolution, bound=bound)
    assert len(faces) > 0
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32))
    )

    camera = frame_view(np.full((2, 3), [[-0.8], [0.8]]), "iso", (64, 64))
    origins, directions = camera_rays(camera)
    near, far = box_interval(origins, directions, bound)
    result = sphere_trace(
        field, origins, directions, lipschitz, eps=1e-4, max_steps=400, near=near, far=far, record=True
    )
    rays = o3d.core.Tensor(np.hstack([origins, directions]).astype(np.float32))
    cast = scene.cast_rays(rays)
    mesh_t = cast["t_hit"].numpy().astype(np.float64)
    mesh_normal = cast["primitive_normals"].numpy()
    mesh_hit = np.isfinite(mesh_t)
    assert mesh_hit.mean() > 0.05
    assert (result.hit == mesh_hit).mean() > 0.98
    # away from grazing rays, the first-hit depth matches the mesh within a voxel
    facing = mesh_hit & result.hit & (np.abs(np.einsum("ij,ij->i", mesh_normal, directions)) > 0.3)
    assert facing.sum() > 100
    assert np.abs(result.depth[facing] - mesh_t[facing]).max() < voxel
    # no overshoot: no march position goes past the mesh surface, and F never turns negative
    marched = ~np.isnan(result.path)
    limit = np.where(mesh_hit, mesh_t + voxel, np.inf)
    assert np.all(result.path[marched] <= np.broadcast_to(limit, result.path.shape)[marched])
    points = origins[None] + np.nan_to_num(result.path)[..., None] * directions[None]
    assert field(points[marched]).min() > -1e-5


def make_run(tmp_path, model_type: str, points: np.ndarray | None = None):
    """An untrained (sphere-initialized) run folder of ``points`` (default: a torus), as ``recon fit``
    lays it out."""
    config = PRESETS["tiny"]().with_(model_type=model_type, device="cpu")
    if model_type == "lipschitz":
        config = config.with_(model=replace(config.model, depth=2, width=32, bjorck_iters=5))
    points = (torus_points(400) if points is None else points).astype(np.float32)
    run = RunFolder.create(tmp_path / model_type)
    run.write_json("config.json", config.to_dict())
    run.write_json("normalization.json", Normalization.identity().to_dict())
    np.savez(run.path / "scan_points.npz", points=points)
    run.save_checkpoint(LevelSetFitter(points, None, config).state_dict())
    return run.path


def test_cli_renders_lipschitz_run_and_refuses_overwrite(tmp_path):
    from PIL import Image

    run_dir = make_run(tmp_path, "lipschitz")
    runner = CliRunner()
    args = [str(run_dir), "--views", "front,iso", "--size", "32"]
    result = runner.invoke(render, args)
    assert result.exit_code == 0, result.output
    assert "certified L" in result.output
    image = np.asarray(Image.open(run_dir / "render.png"))
    assert image.shape == (64, 64, 3)
    # the sphere-initialized surface is in view: some pixels are not background
    assert (image != 255).any(axis=-1).mean() > 0.05
    again = runner.invoke(render, args)
    assert isinstance(again.exception, RunDirError)
    assert runner.invoke(render, [*args, "--force"]).exit_code == 0
    starved = runner.invoke(render, [*args, "--force", "--max-steps", "1"])
    assert "ran out of steps" in starved.output


def test_cli_refuses_mlp_unless_unsafe(tmp_path):
    run_dir = make_run(tmp_path, "mlp")
    runner = CliRunner()
    args = [str(run_dir), "--views", "side", "--size", "24"]
    refused = runner.invoke(render, args)
    assert isinstance(refused.exception, InputError)
    assert "--unsafe" in str(refused.exception)
    assert not (run_dir / "render.png").exists()
    result = runner.invoke(render, [*args, "--unsafe"])
    assert result.exit_code == 0, result.output
    assert "UNSAFE" in result.output
    assert (run_dir / "render.png").exists()


def test_render_frames_the_scan_by_its_up_axis(tmp_path):
    flat = make_run(tmp_path / "flat", "lipschitz")
    tall = make_run(tmp_path / "tall", "lipschitz", torus_points(400) * [0.4, 0.4, 3.0])
    assert render_run(flat, ["front"], size=16)[1]["up"] == [0.0, 1.0, 0.0]
    assert render_run(tall, ["front"], size=16)[1]["up"] == [0.0, 0.0, 1.0]
    assert render_run(tall, ["front"], size=16, up="-x")[1]["up"] == [-1.0, 0.0, 0.0]
