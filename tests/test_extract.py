"""Coarse-to-fine marching cubes against analytic shapes and against dense marching cubes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
from skimage.measure import marching_cubes

from recon.core.extract import dense_grid_values, extract_mesh
from recon.core.mesh_ops import keep_largest_component, mesh_report
from recon.errors import ReconError

BOUND = 1.2


def sphere_sdf(radius: float = 0.7, center=(0.0, 0.0, 0.0)):
    c = np.asarray(center, dtype=np.float32)

    def field(points: np.ndarray) -> np.ndarray:
        return (np.linalg.norm(points - c, axis=1) - radius).astype(np.float32)

    return field


def torus_sdf(major: float = 0.6, minor: float = 0.25):
    def field(points: np.ndarray) -> np.ndarray:
        ring = np.hypot(points[:, 0], points[:, 1]) - major
        return (np.hypot(ring, points[:, 2]) - minor).astype(np.float32)

    return field


def union(*fields):
    def field(points: np.ndarray) -> np.ndarray:
        return np.min([f(points) for f in fields], axis=0)

    return field


def wobbly_sdf(points: np.ndarray) -> np.ndarray:
    """A star-shaped blob: a sphere whose radius varies with direction."""
    x, y, z = points.T
    r = np.linalg.norm(points, axis=1)
    return (r - 0.6 - 0.12 * np.sin(3 * x) * np.cos(4 * y) * np.sin(2 * z + 0.3)).astype(np.float32)


def torch_mlp_field(seed: int = 0):
    """|x| - 0.6 plus a small random tanh MLP: a closed, non-analytic zero set."""
    import torch

    torch.manual_seed(seed)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(3, 32),
        torch.nn.Tanh(),
        torch.nn.Linear(32, 32),
        torch.nn.Tanh(),
        torch.nn.Linear(32, 1),
    )

    def field(points: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(points)
            out = x.norm(dim=1) - 0.6 + 0.15 * torch.tanh(mlp(x)[:, 0])
        return out.numpy()

    return field


def dense_mesh(field, resolution: int, level: float = 0.0):
    """Reference: scikit-image marching cubes on the full grid, in the working frame."""
    values = dense_grid_values(field, resolution, BOUND)
    spacing = (2 * BOUND / (resolution - 1),) * 3
    vertices, faces, _, _ = marching_cubes(values, level, spacing=spacing)
    return vertices.astype(np.float64) - BOUND, faces


def canonical_faces(faces: np.ndarray) -> np.ndarray:
    """Faces rotated to start at their smallest index (winding kept), rows sorted."""
    start = np.argmin(faces, axis=1)
    rotated = faces[np.arange(len(faces))[:, None], (start[:, None] + np.arange(3)) % 3]
    return rotated[np.lexsort(rotated.T[::-1])]


def assert_same_mesh(vertices, faces, ref_vertices, ref_faces, resolution: int):
    voxel = 2 * BOUND / (resolution - 1)
    assert vertices.shape == ref_vertices.shape and faces.shape == ref_faces.shape
    distance, match = cKDTree(ref_vertices).query(vertices)
    assert distance.max() < 1e-4 * voxel
    assert len(np.unique(match)) == len(vertices)
    np.testing.assert_array_equal(canonical_faces(match[faces]), canonical_faces(ref_faces))


def face_normals(vertices, faces):
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return np.cross(b - a, c - a)


def test_sphere_area_volume_topology_and_outward_normals():
    radius = 0.7
    vertices, faces = extract_mesh(sphere_sdf(radius), resolution=128)
    assert vertices.dtype == np.float64 and faces.dtype == np.int64
    report = mesh_report(vertices, faces)
    assert report["watertight"] and report["is_manifold"] and report["winding_consistent"]
    assert report["euler_characteristic"] == 2
    assert report["n_components"] == 1
    assert report["area"] == pytest.approx(4 * np.pi * radius**2, rel=0.02)
    assert report["volume"] == pytest.approx(4 / 3 * np.pi * radius**3, rel=0.02)
    centroids = vertices[faces].mean(axis=1)
    assert (np.einsum("ij,ij->i", face_normals(vertices, faces), centroids) > 0).all()
    np.testing.assert_allclose(np.linalg.norm(vertices, axis=1), radius, atol=0.01)


def test_torus_has_genus_one():
    vertices, faces = extract_mesh(torus_sdf(), resolution=96)
    report = mesh_report(vertices, faces)
    assert report["watertight"] and report["is_manifold"]
    assert report["euler_characteristic"] == 0
    assert report["n_components"] == 1
    assert report["volume"] == pytest.approx(2 * np.pi**2 * 0.6 * 0.25**2, rel=0.02)


@pytest.mark.parametrize("block_size", [8, 32])
def test_analytic_field_matches_dense_marching_cubes(block_size):
    resolution = 96
    vertices, faces, stats = extract_mesh(
        wobbly_sdf, resolution=resolution, block_size=block_size, return_stats=True
    )
    assert_same_mesh(vertices, faces, *dense_mesh(wobbly_sdf, resolution), resolution)
    assert stats.n_blocks > 1
    assert stats.n_field_evaluations < 0.25 * resolution**3
    assert mesh_report(vertices, faces)["watertight"]


@pytest.mark.parametrize("resolution", [64, 95])
def test_torch_mlp_matches_dense_marching_cubes(resolution):
    field = torch_mlp_field()
    vertices, faces = extract_mesh(field, resolution=resolution, block_size=16)
    assert_same_mesh(vertices, faces, *dense_mesh(field, resolution), resolution)
    report = mesh_report(vertices, faces)
    assert report["watertight"] and report["euler_characteristic"] == 2


def test_nonzero_level_matches_dense():
    resolution = 64
    vertices, faces = extract_mesh(wobbly_sdf, resolution=resolution, level=0.15)
    assert_same_mesh(vertices, faces, *dense_mesh(wobbly_sdf, resolution, level=0.15), resolution)


def test_closure_traces_a_thin_tube_the_coarse_levels_miss():
    resolution = 128
    voxel = 2 * BOUND / (resolution - 1)

    # The axis passes between the lines of the stride-2 lattice, so no coarse level sees the tube.
    axis_y, axis_z = -BOUND + 65.1 * voxel, -BOUND + 64.9 * voxel

    def tube(points: np.ndarray) -> np.ndarray:
        radial = np.hypot(points[:, 1] - axis_y, points[:, 2] - axis_z)
        along = np.maximum(points[:, 0] - 1.0, 0.4 - points[:, 0])
        return np.maximum(radial - 1.3 * voxel, along).astype(np.float32)

    field = union(sphere_sdf(0.5), tube)
    vertices, faces, stats = extract_mesh(field, resolution=resolution, refine_margin=0.0, return_stats=True)
    assert stats.n_closure_cells > 0
    assert_same_mesh(vertices, faces, *dense_mesh(field, resolution), resolution)
    assert mesh_report(vertices, faces)["n_components"] == 1


def test_margin_band_finds_a_small_isolated_blob():
    resolution = 129  # 128 cells: coarse stride 4, the blob sits in the middle of a coarse cell
    voxel = 2 * BOUND / (resolution - 1)
    center = -BOUND + voxel * np.array([66.0, 66.0, 102.0])
    field = union(sphere_sdf(0.5), sphere_sdf(2.5 * voxel, center))
    without_band = extract_mesh(field, resolution=resolution, refine_margin=0.0)
    assert mesh_report(*without_band)["n_components"] == 1
    vertices, faces = extract_mesh(field, resolution=resolution, refine_margin=0.5)
    assert mesh_report(vertices, faces)["n_components"] == 2
    assert_same_mesh(vertices, faces, *dense_mesh(field, resolution), resolution)


@pytest.mark.parametrize("value", [1.0, -1.0])
def test_field_without_surface_gives_empty_arrays(value):
    vertices, faces, stats = extract_mesh(
        lambda p: np.full(len(p), value, dtype=np.float32), resolution=128, return_stats=True
    )
    assert vertices.shape == (0, 3) and vertices.dtype == np.float64
    assert faces.shape == (0, 3) and faces.dtype == np.int64
    assert stats.n_field_evaluations < 128**3 / 50
    assert mesh_report(vertices, faces)["n_faces"] == 0


def test_every_point_is_evaluated_once_and_counted():
    seen = []

    def field(points: np.ndarray) -> np.ndarray:
        assert points.dtype == np.float32 and points.shape[1] == 3 and len(points) <= 1000
        seen.append(points.copy())
        return sphere_sdf(0.6)(points)

    _, _, stats = extract_mesh(field, resolution=64, chunk=1000, return_stats=True)
    points = np.concatenate(seen)
    assert len(points) == stats.n_field_evaluations == sum(stats.level_evaluations)
    assert len(np.unique(points, axis=0)) == len(points)
    assert np.abs(points).max() <= BOUND + 1e-6


def test_dense_grid_values_matches_brute_force():
    field = torus_sdf()
    values = dense_grid_values(field, 7, BOUND, chunk=5)
    axis = np.linspace(-BOUND, BOUND, 7)
    expected = np.array(
        [[[field(np.array([[x, y, z]], np.float32))[0] for z in axis] for y in axis] for x in axis]
    )
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-6)


def test_keep_largest_component_removes_a_small_second_sphere():
    field = union(sphere_sdf(0.5, (-0.4, 0, 0)), sphere_sdf(0.15, (0.6, 0.3, 0)))
    vertices, faces = extract_mesh(field, resolution=96)
    assert mesh_report(vertices, faces)["n_components"] == 2
    big_v, big_f = keep_largest_component(vertices, faces)
    report = mesh_report(big_v, big_f)
    assert report["n_components"] == 1 and report["watertight"]
    assert report["area"] == pytest.approx(4 * np.pi * 0.5**2, rel=0.02)
    assert np.linalg.norm(big_v - [-0.4, 0, 0], axis=1).max() < 0.52
    assert big_f.max() == len(big_v) - 1


def test_mesh_report_on_hand_made_meshes():
    tetra_v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    tetra_f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    report = mesh_report(tetra_v, tetra_f)
    assert report["watertight"] and report["winding_consistent"] and report["is_manifold"]
    assert report["euler_characteristic"] == 2 and report["n_components"] == 1
    assert report["volume"] == pytest.approx(1 / 6)
    assert report["area"] == pytest.approx(1.5 + np.sqrt(3) / 2)

    open_report = mesh_report(tetra_v, tetra_f[:3])
    assert not open_report["watertight"] and open_report["volume"] is None
    assert open_report["n_boundary_edges"] == 3

    flipped = tetra_f.copy()
    flipped[0] = flipped[0, ::-1]
    assert not mesh_report(tetra_v, flipped)["winding_consistent"]

    fan_v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], dtype=float)
    fan_f = np.array([[0, 1, 2], [0, 1, 3], [0, 1, 4]])
    assert not mesh_report(fan_v, fan_f)["is_manifold"]


@pytest.mark.parametrize(
    "options",
    [{"resolution": 1}, {"bound": 0.0}, {"coarse_resolution": 1}, {"chunk": 0}, {"refine_margin": -1.0}],
)
def test_bad_options_raise_recon_error(options):
    with pytest.raises(ReconError):
        extract_mesh(sphere_sdf(), **options)


def test_non_finite_field_raises_recon_error():
    def field(points: np.ndarray) -> np.ndarray:
        out = sphere_sdf()(points)
        out[0] = np.nan
        return out

    with pytest.raises(ReconError, match="not finite"):
        extract_mesh(field, resolution=32)


def test_parents_whose_predicted_children_miss_get_all_children(monkeypatch):
    import recon.core.extract as extract

    # A prediction that never sees a sign change leaves only the fallback to reach the fine level.
    monkeypatch.setattr(extract, "_CHILD_WEIGHTS", np.zeros_like(extract._CHILD_WEIGHTS))
    resolution = 64
    vertices, faces = extract_mesh(wobbly_sdf, resolution=resolution, refine_margin=0.0)
    assert_same_mesh(vertices, faces, *dense_mesh(wobbly_sdf, resolution), resolution)
