"""Unsigned distances from points to a point set or to a triangle surface, for error colouring."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recon.viewer.geometry import Geometry


def distance_to_points(query: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(n,) distance from each of (n, 3) ``query`` to its nearest neighbour in (m, 3) ``points``."""
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(np.asarray(points, dtype=np.float64)).query(np.asarray(query, dtype=np.float64))
    return dist


def distance_to_surface(query: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(n,) exact distance from each of (n, 3) ``query`` to the triangles (m, 3) over (k, 3) ``vertices``."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(vertices, dtype=np.float32)),
        o3d.core.Tensor(np.asarray(faces, dtype=np.uint32)),
    )
    result = scene.compute_distance(o3d.core.Tensor(np.asarray(query, dtype=np.float32)))
    return result.numpy().astype(np.float64)


def distance_to_geometries(query: np.ndarray, references: Sequence[Geometry]) -> np.ndarray:
    """(n,) distance from (n, 3) ``query`` to the nearest of ``references`` (surfaces or point sets)."""
    if not references:
        raise ValueError("no reference geometry to measure distances to")
    per_reference = [
        distance_to_surface(query, g.vertices, g.faces)
        if g.is_mesh
        else distance_to_points(query, g.vertices)
        for g in references
    ]
    return np.min(per_reference, axis=0)
