"""Normals for point clouds that have none: estimation, consistent orientation, outward flip.

Screened Poisson needs oriented normals. Open3D estimates unoriented normals by local PCA quickly, but its
consistent-tangent-plane orientation (a minimum spanning tree over a k-NN graph) is slow and can stall on
large or duplicated clouds, so it runs on a bounded random subsample and the orientation is carried to
every point by its nearest oriented neighbours.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from recon.errors import InputError

#: Most points that go through Open3D's tangent-plane orientation; the rest follow their neighbours.
MAX_ORIENT_POINTS = 20_000
# Neighbours that vote on a point's orientation when it is carried over from the subsample.
_VOTERS = 4
ORIENT_MODES = ("auto", "tangent_plane", "viewpoint")


def estimate_normals(
    points: np.ndarray,
    k: int = 20,
    orient: str = "auto",
    viewpoint: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Estimate oriented unit normals of a point cloud.

    Parameters
    ----------
    points : (n, 3) float
    k : int
        Neighbours for the local plane fit and for the orientation graph.
    orient : {'auto', 'tangent_plane', 'viewpoint'}
        ``'viewpoint'`` turns every normal towards ``viewpoint`` (the scanner position of a range scan);
        ``'tangent_plane'`` propagates one orientation over the k-NN graph and then flips the whole set
        outward; ``'auto'`` is ``'viewpoint'`` when a viewpoint is given, else ``'tangent_plane'``.
    viewpoint : (3,) float, optional
    seed : int
        Fixes the subsample used for orientation on large clouds.

    Returns
    -------
    (n, 3) float64
        Unit normals.
    """
    if orient not in ORIENT_MODES:
        raise InputError(f"unknown normal orientation {orient!r}; choose one of {', '.join(ORIENT_MODES)}")
    if orient == "auto":
        orient = "tangent_plane" if viewpoint is None else "viewpoint"
    if orient == "viewpoint" and viewpoint is None:
        raise InputError("orient='viewpoint' needs a viewpoint")
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 3:
        raise InputError(f"normal estimation needs at least 3 points of shape (n, 3), got {points.shape}")
    k = max(3, min(k, len(points) - 1))

    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=k))
    if orient == "viewpoint":
        cloud.orient_normals_towards_camera_location(np.asarray(viewpoint, dtype=np.float64))
        return _unit(np.asarray(cloud.normals))
    normals = _orient_tangent_plane(points, np.asarray(cloud.normals), k, seed)
    return orient_outward(points, normals)


def orient_outward(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Flip all normals if most of them point inward.

    Uses the divergence theorem: over a closed surface, ∫ (x - c)·n dA = 3 × volume > 0 for outward normals.
    The sample mean of (x - c)·n estimates it for a roughly even sampling; a partial scan (one side of an
    object) still gives the sign of its visible side.

    Parameters
    ----------
    points : (n, 3) float
    normals : (n, 3) float
        Consistently oriented normals (up to one global sign).

    Returns
    -------
    (n, 3) float64
        ``normals`` or ``-normals``.
    """
    points = np.asarray(points, dtype=np.float64)
    normals = np.asarray(normals, dtype=np.float64)
    flux = np.sum((points - points.mean(axis=0)) * normals, axis=1).mean()
    return -normals if flux < 0 else normals


def _orient_tangent_plane(points: np.ndarray, normals: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Consistently orient ``normals`` (n, 3) over the cloud via a bounded Open3D orientation."""
    import open3d as o3d

    n = len(points)
    subset = np.arange(n)
    if n > MAX_ORIENT_POINTS:
        subset = np.sort(np.random.default_rng(seed).choice(n, size=MAX_ORIENT_POINTS, replace=False))
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points[subset]))
    cloud.normals = o3d.utility.Vector3dVector(normals[subset])
    cloud.orient_normals_consistent_tangent_plane(min(k, len(subset) - 1))
    oriented = np.asarray(cloud.normals)
    if len(subset) == n:
        return _unit(oriented)
    _, nearest = cKDTree(points[subset]).query(points, k=_VOTERS, workers=-1)
    votes = np.einsum("nkj,nj->n", oriented[nearest], normals)
    return _unit(np.where(votes[:, None] < 0, -normals, normals))


def _unit(vectors: np.ndarray) -> np.ndarray:
    length = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(length, 1e-12)
