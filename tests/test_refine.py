"""Moving a mesh onto the scan (recon.core.refine): analytic surfaces, unsupported caps, thin walls."""

from __future__ import annotations

import numpy as np
from conftest import sphere_points

from recon.core.extract import extract_mesh
from recon.core.mesh_ops import mesh_report
from recon.core.refine import _without_folds, refine_to_scan, vertex_normals


def _sphere_mesh(radius: float, resolution: int = 48) -> tuple[np.ndarray, np.ndarray]:
    return extract_mesh(lambda p: np.linalg.norm(p, axis=1) - radius, resolution=resolution, bound=1.0)


def test_vertex_normals_of_a_sphere_point_outward():
    vertices, faces = _sphere_mesh(0.5)
    normals = vertex_normals(vertices, faces)
    radial = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    assert np.einsum("ij,ij->i", normals, radial).min() > 0.99


def test_a_sphere_fitted_too_large_lands_on_its_scan():
    points, _ = sphere_points(20_000, 0.5, seed=1)
    vertices, faces = _sphere_mesh(0.51)
    refined, report = refine_to_scan(vertices, faces, points)
    before = np.abs(np.linalg.norm(vertices, axis=1) - 0.5)
    after = np.abs(np.linalg.norm(refined, axis=1) - 0.5)
    assert before.mean() > 0.009
    # What remains is the chord of the local planes (r²/2R at the neighbourhood's radius), not the offset.
    assert after.mean() < 0.1 * before.mean()
    assert report["moved_share"] > 0.99
    assert mesh_report(refined, faces)["watertight"]


def test_a_move_that_would_turn_triangles_over_is_undone():
    """A flat fan whose centre would be pushed sideways past its rim: the corners of the triangles it would
    turn over stay, the rest of the rim moves."""
    ring = [(np.cos(a), np.sin(a), 0.0) for a in np.linspace(0, 2 * np.pi, 6, endpoint=False)]
    vertices = np.array([(0.0, 0.0, 0.0), *ring])
    faces = np.array([(0, 1 + i, 1 + (i + 1) % 6) for i in range(6)])
    normals = np.tile([0.0, 0.0, 1.0], (7, 1))
    normals[0] = (1.0, 0.0, 0.0)  # a badly tilted normal: its move crosses the rim
    move = np.array([2.0] + [0.01] * 6)
    refined, kept = _without_folds(vertices, faces, normals, move)

    def face_normals(v):
        return np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])

    assert (np.einsum("ij,ij->i", face_normals(vertices), face_normals(refined)) > 0).all()
    np.testing.assert_array_equal(refined[0], vertices[0])
    moved = np.linalg.norm(refined - vertices, axis=1) > 0
    assert 1 <= kept < 7 and moved.sum() == 7 - kept
    np.testing.assert_allclose(refined[moved], vertices[moved] + 0.01 * normals[moved])


def test_a_cap_over_a_hole_stays_where_it_was():
    points, _ = sphere_points(20_000, 0.5, seed=2)
    points = points[points[:, 2] < 0.3]  # a hole at the top: the cap above z = 0.3 has no scan support
    vertices, faces = _sphere_mesh(0.51)
    refined, _ = refine_to_scan(vertices, faces, points)
    moved = np.linalg.norm(refined - vertices, axis=1)
    spacing = np.sqrt(4 * np.pi * 0.25 / len(points))
    far = vertices[:, 2] > 0.3 + 6 * spacing
    assert far.sum() > 50 and moved[far].max() == 0.0
    near = vertices[:, 2] < 0.2
    assert np.median(moved[near]) > 0.005


def test_the_two_walls_of_a_thin_plate_stay_apart():
    """Scan points of both walls lie within each vertex's neighbourhood; only its own wall may count."""
    rng = np.random.default_rng(3)
    half = 0.003  # the plate is 0.006 thick, less than the distance to a wall point's 16th neighbour
    xy = rng.uniform(-0.25, 0.25, size=(20_000, 2))
    sides = np.where(rng.random(len(xy)) < 0.5, -half, half)
    points = np.column_stack([xy, sides])
    box = np.array([0.25, 0.25, 2 * half])  # the mesh: the plate twice as thick

    def box_sdf(p):
        q = np.abs(p) - box
        return np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)

    vertices, faces = extract_mesh(box_sdf, resolution=96, bound=0.35)
    refined, _ = refine_to_scan(vertices, faces, points)
    inner = (np.abs(vertices[:, :2]) < 0.2).all(axis=1) & (np.abs(vertices[:, 2]) > 0.5 * half)
    assert inner.sum() > 200
    before = np.abs(vertices[inner, 2])
    after = np.abs(refined[inner, 2])
    assert np.median(np.abs(before - half)) > 0.5 * half
    assert np.median(np.abs(after - half)) < 0.2 * half  # each wall lands on its own scan, not on z = 0
