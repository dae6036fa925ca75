"""recon.core.trim: removing the surface a scan does not support, on a hemisphere scan of a closed sphere."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from conftest import sphere_points

from recon.core.mesh_ops import face_areas
from recon.core.trim import boundary_loop_count, scan_spacing, trim_unsupported
from recon.errors import InputError

# 20k points on a hemisphere: spacing ≈ 0.027, so the default threshold is ≈ 0.08; the icosphere's edges
# are ≈ 0.04. The rim of the trimmed mesh lies within threshold + one edge below the scan's rim (z = 0).
N_SCAN = 20_000
SUBDIVISIONS = 5


def _sphere_mesh() -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=SUBDIVISIONS)


def _hemisphere_scan(n: int = N_SCAN, seed: int = 0) -> np.ndarray:
    points, _ = sphere_points(2 * n + 1000, seed=seed)
    return points[points[:, 2] >= 0][:n]


def _boundary_vertices(faces: np.ndarray) -> np.ndarray:
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    return np.unique(unique[counts == 1])


def _longest_edge(mesh: trimesh.Trimesh) -> float:
    return float(mesh.edges_unique_length.max())


def test_hemisphere_scan_trims_the_closed_sphere_to_one_rim_at_the_equator():
    mesh = _sphere_mesh()
    vertices, faces, info = trim_unsupported(mesh.vertices, mesh.faces, _hemisphere_scan())
    tolerance = info["threshold"] + _longest_edge(mesh)
    assert tolerance < 0.15
    assert info["boundary_loops"] == boundary_loop_count(faces) == 1
    rim = vertices[_boundary_vertices(faces)]
    assert rim[:, 2].min() > -tolerance and rim[:, 2].max() < _longest_edge(mesh)
    centroids = vertices[faces].mean(axis=1)
    assert centroids[:, 2].min() > -tolerance
    # The scanned half is untouched: every face above the equator is kept.
    upper = (mesh.vertices[mesh.faces].mean(axis=1)[:, 2] > 0).sum()
    assert (centroids[:, 2] > 0).sum() == upper
    assert info["faces_removed"] == len(mesh.faces) - len(faces) > 0.4 * len(mesh.faces)
    removed_area = 1 - face_areas(vertices, faces).sum() / mesh.area
    assert info["area_share_removed"] == pytest.approx(removed_area)
    assert 0.4 < info["area_share_removed"] < 0.5


def test_full_sphere_scan_loses_nothing():
    mesh = _sphere_mesh()
    points, _ = sphere_points(N_SCAN, seed=1)
    vertices, faces, info = trim_unsupported(mesh.vertices, mesh.faces, points)
    np.testing.assert_array_equal(faces, mesh.faces)
    np.testing.assert_array_equal(vertices, mesh.vertices)
    assert info["faces_removed"] == 0 and info["area_share_removed"] == 0.0
    assert info["boundary_loops"] == 0


def test_the_rule_is_the_same_in_any_frame():
    mesh = _sphere_mesh()
    scan = _hemisphere_scan(5_000)
    _, faces, info = trim_unsupported(mesh.vertices, mesh.faces, scan)
    scale, shift = 37.0, np.array([100.0, -5.0, 2.0])
    _, moved_faces, moved = trim_unsupported(mesh.vertices * scale + shift, mesh.faces, scan * scale + shift)
    np.testing.assert_array_equal(moved_faces, faces)
    assert moved["threshold"] == pytest.approx(scale * info["threshold"])
    assert scan_spacing(scan * scale + shift) == pytest.approx(scale * scan_spacing(scan))


def test_small_supported_leftovers_are_removed_unless_asked_not_to():
    big = _sphere_mesh()
    small = trimesh.creation.icosphere(subdivisions=2, radius=0.05)
    small.vertices += [5.0, 0.0, 0.0]
    mesh = trimesh.util.concatenate([big, small])
    scan = np.concatenate([sphere_points(N_SCAN, seed=2)[0], small.vertices])
    _, faces, info = trim_unsupported(mesh.vertices, mesh.faces, scan)
    assert len(faces) == len(big.faces)
    assert info["components_removed"] == 1 and info["faces_in_small_components"] == len(small.faces)
    assert info["faces_unsupported"] == 0
    _, faces, info = trim_unsupported(mesh.vertices, mesh.faces, scan, min_component_share=0)
    assert len(faces) == len(mesh.faces) and info["components_removed"] == 0


def test_a_mesh_nowhere_near_the_scan_trims_to_an_empty_mesh():
    mesh = _sphere_mesh()
    vertices, faces, info = trim_unsupported(mesh.vertices + [10.0, 0.0, 0.0], mesh.faces, _hemisphere_scan())
    assert vertices.shape == (0, 3) and faces.shape == (0, 3)
    assert info["faces_out"] == 0 and info["area_share_removed"] == 1.0 and info["boundary_loops"] == 0
    vertices, faces, info = trim_unsupported(np.zeros((0, 3)), np.zeros((0, 3), int), _hemisphere_scan())
    assert vertices.shape == (0, 3) and faces.shape == (0, 3) and info["area_share_removed"] == 0.0


def test_bad_input_is_an_input_error():
    mesh = _sphere_mesh()
    with pytest.raises(InputError, match="at least 2"):
        trim_unsupported(mesh.vertices, mesh.faces, np.zeros((1, 3)))
    with pytest.raises(InputError, match="duplicates"):
        trim_unsupported(mesh.vertices, mesh.faces, np.zeros((50, 3)))
    with pytest.raises(InputError, match="spacing_factor"):
        trim_unsupported(mesh.vertices, mesh.faces, _hemisphere_scan(100), spacing_factor=0)
