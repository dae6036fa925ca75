"""Moving the extracted mesh onto the scan where the scan supports it.

The fitted network is smooth at the scale of its capacity: near the scan its zero set sits a fraction of a
point spacing off the points and rounds detail the points still show (on a clean scan of the cow, 1.3 ‰ of
the diagonal from the true surface where screened Poisson at depth 10 is at 1.0 ‰). Each mesh vertex near
the scan is moved along its normal onto the plane of its nearest scan points (a weighted local fit, moving
least squares of degree one); vertices away from the scan (caps over holes and unseen sides) stay where the
network put them, with a linear fade in between so no step appears at the edge of the supported surface.

Neighbours come only from the vertex's own side of a thin part: a scan point counts for a vertex when the
mesh normal at that point (its nearest vertex's) agrees with the vertex's normal, so the two walls of a thin
plate are not pulled onto their mid-surface. Topology is unchanged (a watertight mesh stays watertight), and
a vertex whose move would turn one of its triangles over stays where it was.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.spatial import cKDTree

from recon.core.trim import scan_spacing

SAME_SIDE_COS = 0.5
"""A scan point counts for a vertex when their mesh normals are within 60° of each other."""
FULL_SUPPORT_SPACINGS = 2.0
"""Vertices within this many point spacings of the scan move fully; the move fades to none at twice it."""
MAX_MOVE_SPACINGS = 3.0
"""No vertex moves farther than this many point spacings (a larger offset is not a detail but a cap)."""
FOLD_PASSES = 4
"""Passes that undo the moves of vertices whose triangles would turn over."""
MIN_NEIGHBOURS = 4
"""A vertex with fewer same-side neighbours than this stays where it is (no plane to fit)."""


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(v, 3) unit area-weighted vertex normals of a (v, 3) / (f, 3) mesh (zero for unused vertices)."""
    v = np.asarray(vertices, dtype=np.float64)
    face_normals = _face_normals(v, faces)
    normals = np.zeros_like(v)
    for corner in range(3):
        np.add.at(normals, faces[:, corner], face_normals)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return np.divide(normals, length, out=np.zeros_like(normals), where=length > 0)


def refine_to_scan(
    vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, neighbours: int = 16
) -> tuple[np.ndarray, dict]:
    """Vertices (v, 3) float64 moved onto the local planes of the (n, 3) scan ``points``, and a report.

    ``neighbours`` scan points per vertex enter each plane fit (Gaussian weights at the scale of the k-th
    neighbour). The report holds the spacing, the share of vertices moved and the median / 95th percentile
    of the moves in point spacings.
    """
    v = np.asarray(vertices, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    normals = vertex_normals(v, faces)
    spacing = scan_spacing(points)
    k = min(neighbours, len(points))
    distances, nearest = cKDTree(points).query(v, k=k, workers=-1)
    distances, nearest = distances.reshape(len(v), k), nearest.reshape(len(v), k)
    support = np.clip(2.0 - distances[:, 0] / (FULL_SUPPORT_SPACINGS * spacing), 0.0, 1.0)
    active = np.flatnonzero(support > 0)
    move = np.zeros(len(v))
    if len(active):
        # The mesh normal at each scan point: its nearest vertex's.
        point_normals = normals[cKDTree(v).query(points, workers=-1)[1]]
        move[active] = _plane_offsets(
            v[active], normals[active], points, point_normals, distances[active], nearest[active], spacing
        )
    move = _ring_average(move, faces, len(v)) * support
    refined, kept_still = _without_folds(v, faces, normals, move)
    moved = np.abs(move[move != 0]) / spacing
    report = {
        "neighbours": k,
        "spacing": float(spacing),
        "moved_share": float(np.count_nonzero(move) / max(len(v), 1)),
        "median_move_spacings": float(np.median(moved)) if len(moved) else 0.0,
        "p95_move_spacings": float(np.percentile(moved, 95)) if len(moved) else 0.0,
        "vertices_kept_against_folds": kept_still,
    }
    return refined, report


def _without_folds(
    v: np.ndarray, faces: np.ndarray, normals: np.ndarray, move: np.ndarray
) -> tuple[np.ndarray, int]:
    """(v, 3) vertices moved by ``move`` along ``normals``, except the corners of triangles the moves would
    turn over (their moves are undone, a few times over as undoing one can fold a neighbour), and how many
    vertices were kept where they were."""
    before = _face_normals(v, faces)
    move = move.copy()
    kept = np.zeros(len(v), dtype=bool)
    for _ in range(FOLD_PASSES):
        refined = v + move[:, None] * normals
        folded = np.einsum("fj,fj->f", _face_normals(refined, faces), before) <= 0
        corners = np.unique(faces[folded & (np.abs(move[faces]).max(axis=1) > 0)])
        if not len(corners):
            break
        move[corners] = 0.0
        kept[corners] = True
    return v + move[:, None] * normals, int(kept.sum())


def _face_normals(v: np.ndarray, faces: np.ndarray) -> np.ndarray:
    return np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])


def _plane_offsets(
    v: np.ndarray,
    n: np.ndarray,
    points: np.ndarray,
    point_normals: np.ndarray,
    distances: np.ndarray,
    nearest: np.ndarray,
    spacing: float,
) -> np.ndarray:
    """(m,) signed moves along the (m, 3) normals ``n`` that put the (m, 3) vertices ``v`` on the weighted
    plane of their same-side neighbours (zero where fewer than MIN_NEIGHBOURS remain)."""
    scale = np.maximum(distances[:, -1:], spacing)
    same_side = np.einsum("mkj,mj->mk", point_normals[nearest], n) > SAME_SIDE_COS
    weights = np.exp(-((distances / scale) ** 2)) * same_side
    total = weights.sum(axis=1)
    usable = (same_side.sum(axis=1) >= MIN_NEIGHBOURS) & (total > 0)
    weights = weights / np.where(total > 0, total, 1.0)[:, None]
    neighbourhood = points[nearest]
    centre = np.einsum("mk,mkj->mj", weights, neighbourhood)
    offsets = neighbourhood - centre[:, None, :]
    covariance = np.einsum("mk,mki,mkj->mij", weights, offsets, offsets)
    plane_normal = np.linalg.eigh(covariance)[1][:, :, 0]
    plane_normal *= np.where(np.einsum("mj,mj->m", plane_normal, n) < 0, -1.0, 1.0)[:, None]
    # Along the vertex normal to the plane; a plane tilted far from the normal gives no reliable offset.
    cosine = np.einsum("mj,mj->m", plane_normal, n)
    usable &= cosine > SAME_SIDE_COS
    offset = np.einsum("mj,mj->m", centre - v, plane_normal) / np.maximum(cosine, SAME_SIDE_COS)
    limit = MAX_MOVE_SPACINGS * spacing
    return np.where(usable, np.clip(offset, -limit, limit), 0.0)


def _ring_average(values: np.ndarray, faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """(v,) mean of each vertex's value and its 1-ring neighbours' (smooths the moves so no triangle folds)."""
    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 1], faces[:, 2], faces[:, 0]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0], faces[:, 0], faces[:, 1], faces[:, 2]])
    adjacency = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_vertices, n_vertices)).tocsr()
    adjacency.data[:] = 1.0  # an edge shared by two faces counts once
    sums = adjacency @ values + values
    counts = np.asarray(adjacency.sum(axis=1)).ravel() + 1.0
    return sums / counts
