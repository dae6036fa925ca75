"""Trimming a watertight reconstruction back to the part of the surface the scan supports.

A closed reconstruction of an open scan (a range scan, a body scan missing its soles and crown) spans every
hole with surface the scanner never saw. :func:`trim_unsupported` removes that surface using the scan
alone, never the ground truth, and in whatever frame the mesh and the scan share.

The rule
--------
``spacing`` is the scan's typical point spacing, measured as :mod:`recon.core.outliers` measures it: the median
over scan points of the mean distance to their 16 nearest neighbours. It scales with the scan's units, so
the rule is the same in the scan frame and in the working frame. A face is *unsupported* when its centroid
and all three of its vertices lie farther than ``threshold = spacing_factor × spacing`` from every scan
point. Requiring all four points, not only the centroid, keeps every face that touches supported surface:
faces straddling the rim of a hole stay, so trimming never eats into the scanned part, whatever the mesh's
resolution relative to the scan. The default factor 3 sits above the largest gap of a uniformly random
sampling of 10⁵ points, ≈1.3 × spacing, with room for a ~5× drop in local density (a sphere sampled 8×
more densely at one pole than at the other loses no face); what is left of a spanned hole is a skirt about
``threshold`` wide beyond the scan's rim.

After that, connected components (faces sharing a vertex) holding less than ``min_component_share`` of the
remaining area are removed: scraps of spurious sheets that pass near a stray point.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from recon.core.mesh_ops import face_areas, vertex_components
from recon.errors import InputError
from recon.io.cleanup import drop_unreferenced

SPACING_NEIGHBORS = 16
"""Neighbours the scan's spacing is averaged over (as in recon.core.outliers)."""
DEFAULT_SPACING_FACTOR = 3.0
DEFAULT_MIN_COMPONENT_SHARE = 0.01


def trim_unsupported(
    vertices: np.ndarray,
    faces: np.ndarray,
    scan_points: np.ndarray,
    *,
    spacing_factor: float = DEFAULT_SPACING_FACTOR,
    min_component_share: float = DEFAULT_MIN_COMPONENT_SHARE,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Remove the faces no scan point supports, then the small components left over (see module notes).

    Parameters
    ----------
    vertices : (v, 3) float
    faces : (f, 3) int
    scan_points : (n, 3) float
        The scan, in the same frame as ``vertices``; n ≥ 2.
    spacing_factor : float
        Threshold distance as a multiple of the scan's typical spacing; > 0.
    min_component_share : float
        Components under this share of the area left after the distance test are removed; 0 keeps all.

    Returns
    -------
    vertices : (v', 3) float64
        Only the vertices the kept faces use; (0, 3) when nothing is kept.
    faces : (f', 3) int64
        Reindexed into the returned vertices; (0, 3) when nothing is kept.
    info : dict
        ``spacing``, ``threshold``, ``faces_removed`` (``faces_unsupported`` + ``faces_in_small_components``),
        ``components_removed``, ``area_share_removed`` (of the input area) and ``boundary_loops`` of the
        result, with the settings and the rule in words.
    """
    if not spacing_factor > 0 or not 0 <= min_component_share < 1:
        raise InputError(
            f"trimming needs spacing_factor > 0 and min_component_share in [0, 1), got {spacing_factor} "
            f"and {min_component_share}"
        )
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    spacing = scan_spacing(scan_points)
    threshold = spacing_factor * spacing
    supported = _supported_faces(
        vertices, faces, cKDTree(np.asarray(scan_points, dtype=np.float64)), threshold
    )
    areas = face_areas(vertices, faces)
    small, n_small = _small_components(faces, areas, supported, min_component_share)
    keep = supported & ~small
    out_vertices, out_faces = drop_unreferenced(vertices, faces[keep])
    total = float(areas.sum())
    info = {
        "rule": (
            "a face is removed when its centroid and all its vertices are farther than threshold = "
            "spacing_factor x spacing from every scan point (spacing: median over scan points of the mean "
            f"distance to their {SPACING_NEIGHBORS} nearest neighbours); then components under "
            "min_component_share of the remaining area are removed"
        ),
        "spacing_factor": spacing_factor,
        "min_component_share": min_component_share,
        "spacing": spacing,
        "threshold": threshold,
        "faces_in": len(faces),
        "faces_unsupported": int((~supported).sum()),
        "faces_in_small_components": int(small.sum()),
        "faces_removed": int((~keep).sum()),
        "faces_out": len(out_faces),
        "components_removed": n_small,
        "area_share_removed": float(areas[~keep].sum() / total) if total > 0 else 0.0,
        "boundary_loops": boundary_loop_count(out_faces),
    }
    return out_vertices, out_faces, info


def scan_spacing(points: np.ndarray) -> float:
    """The scan's typical spacing: median over points of the mean distance to their 16 nearest neighbours.

    Parameters
    ----------
    points : (n, 3) float, n ≥ 2

    Raises
    ------
    InputError
        Fewer than two points, non-finite coordinates, or more than half the points duplicated.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 2:
        raise InputError(f"trimming needs at least 2 scan points of shape (n, 3), got {points.shape}")
    if not np.isfinite(points).all():
        raise InputError("scan points have non-finite coordinates")
    k = min(SPACING_NEIGHBORS, len(points) - 1)
    distances, _ = cKDTree(points).query(points, k=k + 1, workers=-1)
    spacing = float(np.median(distances[:, 1:].mean(axis=1)))
    if spacing <= 0:
        raise InputError("the scan's typical point spacing is zero (most points are duplicates)")
    return spacing


def boundary_loop_count(faces: np.ndarray) -> int:
    """Number of connected chains of boundary edges (edges of exactly one face) of a (f, 3) mesh.

    For a manifold mesh this is its number of boundary loops (holes); 0 for a closed mesh.
    """
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    boundary = unique[counts == 1]
    if len(boundary) == 0:
        return 0
    nodes, local = np.unique(boundary, return_inverse=True)
    local = local.reshape(-1, 2)
    graph = coo_matrix((np.ones(len(local)), (local[:, 0], local[:, 1])), shape=(len(nodes), len(nodes)))
    return int(connected_components(graph, directed=False)[0])


def _supported_faces(vertices: np.ndarray, faces: np.ndarray, tree: cKDTree, threshold: float) -> np.ndarray:
    """(f,) bool: the centroid or a vertex of the face lies within ``threshold`` of a scan point."""
    near_vertex = np.isfinite(tree.query(vertices, distance_upper_bound=threshold, workers=-1)[0])
    centroids = vertices[faces].mean(axis=1)
    near_centroid = np.isfinite(tree.query(centroids, distance_upper_bound=threshold, workers=-1)[0])
    return near_centroid | near_vertex[faces].any(axis=1)


def _small_components(
    faces: np.ndarray, areas: np.ndarray, supported: np.ndarray, min_share: float
) -> tuple[np.ndarray, int]:
    """(f,) bool of the supported faces whose component (faces sharing a vertex) holds less than
    ``min_share`` of the supported area, and the number of such components."""
    small = np.zeros(len(faces), dtype=bool)
    if min_share == 0 or not supported.any():
        return small, 0
    kept = faces[supported]
    labels = vertex_components(int(kept.max()) + 1, kept)[1]
    face_labels = labels[kept[:, 0]]
    component_area = np.bincount(face_labels, weights=areas[supported])
    too_small = component_area < min_share * component_area.sum()
    small[supported] = too_small[face_labels]
    return small, int(np.count_nonzero(too_small[np.unique(face_labels)]))
