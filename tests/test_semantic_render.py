"""The splatting renderer: camera geometry, silhouettes against analytic disks, gradients, invariance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import sphere_points

from recon.robust.semantic.classifier import LoadedClassifier, SemanticTrainConfig, ViewScore, build_model
from recon.robust.semantic.maps import grid_scores
from recon.robust.semantic.render import (
    RenderConfig,
    camera_rotation,
    eye_positions,
    quadratic_bspline,
    render_views,
)
from recon.robust.semantic.shapes import ShapeInstance


def _tensor(a):
    return torch.as_tensor(a, dtype=torch.float64)


def revolution_points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) points and normals on a vase-like surface of revolution about +y (radius 0.3 + 0.2 sin(3y))."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(-0.8, 0.8, n)
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    rho = 0.3 + 0.2 * np.sin(3.0 * y)
    drho = 0.6 * np.cos(3.0 * y)
    points = np.stack([rho * np.cos(phi), y, rho * np.sin(phi)], axis=1)
    normals = np.stack([np.cos(phi), -drho, np.sin(phi)], axis=1)
    return points, normals / np.linalg.norm(normals, axis=1, keepdims=True)


def test_camera_rotation_is_proper_and_puts_the_eye_on_the_optical_axis():
    angles = _tensor([[0.0, 0.0], [130.0, 30.0], [310.0, 50.0], [200.0, 90.0], [45.0, -10.0]])
    rotation = camera_rotation(angles)
    eye = eye_positions(angles, 2.732)
    eye_cam = (rotation @ eye[..., None])[..., 0]
    torch.testing.assert_close(eye_cam, _tensor([[0.0, 0.0, -2.732]]).expand(5, 3), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        rotation @ rotation.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(5, 3, 3)
    )
    assert torch.allclose(torch.linalg.det(rotation), torch.ones(5, dtype=torch.float64))


def test_bspline_is_a_partition_of_unity():
    x = torch.linspace(-3.0, 3.0, 101, dtype=torch.float64)
    total = sum(quadratic_bspline(x - k) for k in range(-6, 7))
    torch.testing.assert_close(total, torch.ones_like(x))


@pytest.mark.parametrize("angles", [(0.0, 0.0), (73.0, 41.0)])
def test_sphere_silhouette_matches_the_perspective_disk(angles):
    radius, config = 0.8, RenderConfig(size=64, mode="silhouette")
    points, normals = sphere_points(40_000, radius=radius, seed=1)
    image = render_views(_tensor(points), _tensor(normals), _tensor([angles]), config)[0, 0]
    # The silhouette of a sphere seen from distance d is a disk of angular radius asin(ρ/d); splatting
    # widens it by less than the kernel's reach (1.5 px).
    half_width = math.tan(math.asin(radius / config.distance)) / math.tan(math.radians(config.half_fov_deg))
    expected_px = half_width * config.size / 2
    covered = image > 0.5
    assert expected_px - 0.5 < math.sqrt(float(covered.sum()) / math.pi) < expected_px + 1.5
    rows, cols = torch.nonzero(covered, as_tuple=True)
    centre = (config.size - 1) / 2
    assert abs(float(rows.double().mean()) - centre) < 0.3 and abs(float(cols.double().mean()) - centre) < 0.3


def test_image_gradient_matches_finite_differences():
    points, normals = revolution_points(1500, seed=2)
    points[:, 0] *= 1.6  # break the symmetry so azimuth matters
    weights = torch.from_numpy(np.random.default_rng(3).normal(size=(1, 1, 24, 24)))
    config = RenderConfig(size=24, mode="shaded")

    def objective(angles: torch.Tensor) -> torch.Tensor:
        return (render_views(_tensor(points), _tensor(normals), angles, config) * weights).sum()

    theta = _tensor([[37.0, 23.0]]).requires_grad_(True)
    (grad,) = torch.autograd.grad(objective(theta), theta)
    h = 1e-4
    numeric = torch.stack(
        [
            (objective(theta.detach() + h * e) - objective(theta.detach() - h * e)) / (2 * h)
            for e in torch.eye(2, dtype=torch.float64)[:, None, :]
        ]
    )
    assert grad.abs().max() > 1e-2  # the image really depends on the viewpoint
    torch.testing.assert_close(grad[0], numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("size", [16, 64])
def test_samples_far_off_the_image_change_nothing(size):
    points, normals = sphere_points(2000, radius=0.7, seed=6)
    far = np.array([[-30.0, 30.0, 0.5], [30.0, -30.0, 0.5], [-30.0, -30.0, 0.5], [30.0, 30.0, 0.5]])
    angles = _tensor([[0.0, 0.0], [0.0, 0.0]])
    config = RenderConfig(size=size, splat_px=size / 32)
    alone = render_views(_tensor(points), _tensor(normals), angles, config)
    both = render_views(
        _tensor(np.concatenate([points, far])),
        _tensor(np.concatenate([normals, np.ones_like(far)])),
        angles,
        config,
    )
    assert alone.sum() > 0
    torch.testing.assert_close(both, alone, rtol=0, atol=1e-12)


def test_surface_of_revolution_looks_the_same_from_every_azimuth():
    points, normals = revolution_points(20_000, seed=4)
    azimuths = torch.arange(0.0, 360.0, 30.0, dtype=torch.float64)
    angles = torch.stack([azimuths, torch.full_like(azimuths, 25.0)], dim=1)
    images = render_views(_tensor(points), _tensor(normals), angles, RenderConfig(size=48))
    spread = (images - images.mean(0)).abs().mean()
    stretched = points * np.array([1.8, 1.0, 0.6])
    control = render_views(_tensor(stretched), _tensor(normals), angles, RenderConfig(size=48))
    control_spread = (control - control.mean(0)).abs().mean()
    assert spread < 0.1 * control_spread


def test_semantic_map_of_a_sphere_is_flat():
    torch.manual_seed(0)
    points, normals = sphere_points(6000, radius=0.7, seed=5)
    model = build_model("cnn", 32, 3, mean=0.2, std=0.3).eval()
    classifier = LoadedClassifier(
        model=model,
        classes=["a", "b", "c"],
        render=RenderConfig(size=32),
        config=SemanticTrainConfig(),
        run_dir=None,
    )
    shape = ShapeInstance(points.astype(np.float32), normals.astype(np.float32), label=1, name="sphere")
    values = grid_scores(
        ViewScore(classifier, [shape]), np.arange(0.0, 360.0, 20.0), np.array([-10.0, 35.0, 89.0])
    )
    assert values.shape == (1, 3, 18)
    assert np.ptp(values) < 0.02 * values.mean()
