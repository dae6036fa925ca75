"""Mesh and normal clean-up shared by all readers: duplicate and unreferenced vertices, vertex normals.

The array functions (:func:`drop_degenerate_faces`, :func:`drop_unreferenced`) also serve recon.core, which
may import io but not the other way round.
"""

from __future__ import annotations

import logging

import numpy as np

from recon.io.common import TOL, RawGeometry

log = logging.getLogger(__name__)


def merge_duplicate_vertices(geometry: RawGeometry) -> RawGeometry:
    """The mesh with exactly coincident vertices merged into their first occurrence.

    Faces are re-indexed; file normals of merged vertices are summed (normalised later). Vertex order
    follows the first occurrence of each position, so a mesh without duplicates comes back unchanged.
    """
    points, normals, faces = geometry
    order = np.lexsort(points.T[::-1])
    sorted_points = points[order]
    starts = np.ones(len(points), dtype=bool)
    starts[1:] = np.any(sorted_points[1:] != sorted_points[:-1], axis=1)
    if starts.all():
        return geometry
    group_of_sorted = np.cumsum(starts) - 1
    group = np.empty(len(points), dtype=np.int64)
    group[order] = group_of_sorted
    first = np.full(group_of_sorted[-1] + 1, len(points), dtype=np.int64)
    np.minimum.at(first, group, np.arange(len(points)))
    keep_order = np.argsort(first)
    new_index = np.empty_like(keep_order)
    new_index[keep_order] = np.arange(len(keep_order))
    remap = new_index[group]
    merged_normals = None
    if normals is not None:
        merged_normals = np.zeros((len(keep_order), 3))
        for c in range(3):
            merged_normals[:, c] = np.bincount(remap, weights=normals[:, c], minlength=len(keep_order))
    return RawGeometry(points[first[keep_order]], merged_normals, remap[faces])


def drop_degenerate_faces(faces: np.ndarray) -> np.ndarray:
    """Faces (m', 3) of ``faces`` (m, 3) that use three distinct vertices."""
    distinct = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    return faces[distinct]


def drop_unreferenced(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows (v', ...) of ``vertices`` (v, ...) that ``faces`` (m, 3) uses, in their order, and the faces
    (m, 3) int64 re-indexed to them."""
    used = np.zeros(len(vertices), dtype=bool)
    used[faces.ravel()] = True
    new_index = np.cumsum(used, dtype=np.int64) - 1
    return vertices[used], new_index[faces]


def drop_unreferenced_vertices(geometry: RawGeometry) -> RawGeometry:
    """The mesh without vertices that no face uses; faces are re-indexed."""
    points, normals, faces = geometry
    kept, new_faces = drop_unreferenced(np.arange(len(points)), faces)
    if len(kept) == len(points):
        return geometry
    return RawGeometry(points[kept], None if normals is None else normals[kept], new_faces)


def unit_normals_or_none(normals: np.ndarray | None, source: str) -> np.ndarray | None:
    """``normals`` (n, 3) scaled to unit length, or None when any of them is zero-length or not finite.

    A file whose normals are partly missing is treated as having none: a scan with a few arbitrary
    normals is worse than a scan without normals, which every consumer knows how to handle.
    """
    if normals is None:
        return None
    with np.errstate(over="ignore", invalid="ignore"):  # absurd values become inf and are refused
        normals = np.asarray(normals, dtype=np.float64)
        length = np.linalg.norm(normals, axis=1)
    bad = ~(np.isfinite(length) & (length > TOL.zero_normal))
    if bad.any():
        log.warning(
            "%s: %d of %d normals are zero-length or not finite; ignoring the file's normals",
            source,
            int(bad.sum()),
            len(normals),
        )
        return None
    return normals / length[:, None]


def area_weighted_vertex_normals(points: np.ndarray, faces: np.ndarray) -> np.ndarray | None:
    """Unit vertex normals (n, 3): the area-weighted sum of the incident faces' normals.

    The face normals follow each face's winding (counter-clockwise seen from outside gives outward
    normals). A vertex whose incident faces cancel or have no area takes the normal of the nearest
    vertex that has one. None when no face has any area.
    """
    corners = points[faces]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    sums = np.zeros((len(points), 3))
    flat = faces.ravel()
    for c in range(3):
        sums[:, c] = np.bincount(flat, weights=np.repeat(face_normals[:, c], 3), minlength=len(points))
    length = np.linalg.norm(sums, axis=1)
    if not length.size or length.max() == 0:
        return None
    valid = length > TOL.zero_normal * length.max()
    normals = np.zeros_like(sums)
    normals[valid] = sums[valid] / length[valid, None]
    if not valid.all():
        from scipy.spatial import cKDTree

        _, nearest = cKDTree(points[valid]).query(points[~valid])
        normals[~valid] = normals[valid][nearest]
    return normals
