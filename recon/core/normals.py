"""Normals for point clouds that have none: estimation, consistent orientation, outward flip.

Screened Poisson and the fit's starting field need oriented normals. Open3D estimates unoriented normals
by local PCA quickly, but its consistent-tangent-plane orientation (a minimum spanning tree over a k-NN
graph) is slow and can stall on large or duplicated clouds, so it runs on a bounded subsample (one point
per voxel: deterministic, no seed) and the orientation is carried to every point by its nearest oriented
neighbours. The global sign is the one under which the cloud's generalized winding number (recon.core.winding)
encloses a volume.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from recon.core.winding import DipoleTree, point_areas
from recon.errors import InputError

#: Most points that go through Open3D's tangent-plane orientation; the rest follow their neighbours.
MAX_ORIENT_POINTS = 20_000
#: Cells along the longest side of the cloud for the winding-number orientation check.
WINDING_CELLS = 48
#: Points at which the winding number decides the global sign of an estimated orientation.
WINDING_PROBES = 2_000
#: Points whose neighbourhoods measure the orientation consistency of given normals (±0.5 % at 2σ).
CONSISTENCY_PROBES = 5_000
#: Below this orientation consistency a scan's own normals are treated as unoriented. Measured on the 24
#: benchmark scans (the points a fit uses): 0.933–1.000 for their scanner normals (clean, noisy and
#: one-sided), 0.497–0.502 for the same normals with random signs.
MIN_CONSISTENCY = 0.8
#: Above this share of a scan lying in patches whose normals point against the rest of their smooth surface,
#: a scan's own normals are treated as wrongly oriented. Measured on the points a fit uses of the 24
#: benchmark scans: 0.000–0.013 for their scanner normals (clean, noisy and one-sided; 0 for the real range
#: scan face000); 0.167–0.497 for the same normals flipped in random cells of a 2×2×2 or 5×5×5 grid, and
#: 0.100–0.466 with one side of a random plane flipped (20–50 % of the scan).
MAX_FLIPPED_SHARE = 0.05
# The flipped-patch graph: neighbours per probe, largest |offset · normal| / |offset| for two probes to lie
# on one smooth sheet (larger offsets along the normal join the two sides of a thin part or a knife edge),
# least |n_i · n_j| for an edge to say anything about the sign, and least probes in a component.
_VOXEL_GROWTH = 1.2
_SHEET_NEIGHBOURS = 10
_SHEET_MAX_OFFSET = 0.3
_SHEET_MIN_ALIGNMENT = 0.8
_SHEET_MIN_PROBES = 20
_BACK_TO_BACK = 0.05
# Neighbours that average a probe's normal before the graph (noisy scanner normals flip single points).
_DENOISE_NEIGHBOURS = 20
# Neighbours that vote on a point's orientation when it is carried over from the subsample.
_VOTERS = 4
ORIENT_MODES = ("auto", "tangent_plane", "viewpoint")


def estimate_normals(
    points: np.ndarray,
    k: int = 20,
    orient: str = "auto",
    viewpoint: np.ndarray | None = None,
) -> np.ndarray:
    """Estimate oriented unit normals of a point cloud.

    Parameters
    ----------
    points : (n, 3) float
    k : int
        Neighbours for the local plane fit and for the orientation graph.
    orient : {'auto', 'tangent_plane', 'viewpoint'}
        ``'viewpoint'`` turns every normal towards ``viewpoint`` (the scanner position of a range scan);
        ``'tangent_plane'`` propagates one orientation over the k-NN graph and picks the global sign
        under which the cloud's winding number encloses a volume; ``'auto'`` is
        ``'viewpoint'`` when a viewpoint is given, else ``'tangent_plane'``.
    viewpoint : (3,) float, optional

    Returns
    -------
    (n, 3) float64
        Unit normals; the same for the same points, whatever the seed of the caller.
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
    return orient_normals(points, np.asarray(cloud.normals), k)


def orientation_consistency(
    points: np.ndarray,
    normals: np.ndarray,
    k: int = 8,
    *,
    probes: np.ndarray | None = None,
    tree: cKDTree | None = None,
) -> float:
    """Share of neighbouring normals that agree in sign: about 1 for an oriented cloud, ½ for unoriented.

    Over up to CONSISTENCY_PROBES points of an even subsample, each with its k nearest neighbours in the whole
    cloud: the mean of [n_i · n_j > 0]. A consistently oriented scan scores near 1 (below only along sharp
    edges and sheets thinner than the point spacing); normals of arbitrary sign (a plane fit without
    orientation) score ½, whatever their global sign. Locally consistent but patch-wise flipped normals are
    not detected here.

    Parameters
    ----------
    points : (n, 3) float
    normals : (n, 3) float
    k : int
        Neighbours per probe.
    probes, tree : optional
        ``voxel_subsample(points, CONSISTENCY_PROBES)`` and ``cKDTree(points)``, when the caller has them.
    """
    points = np.asarray(points, dtype=np.float64)
    normals = np.asarray(normals, dtype=np.float64)
    k = max(1, min(k, len(points) - 1))
    probes = voxel_subsample(points, CONSISTENCY_PROBES) if probes is None else probes
    tree = cKDTree(points) if tree is None else tree
    _, neighbours = tree.query(points[probes], k=k + 1, workers=-1)
    dots = np.einsum("pkj,pj->pk", normals[neighbours[:, 1:]], normals[probes])
    return float(np.mean(dots > 0))


def flipped_share(
    points: np.ndarray,
    normals: np.ndarray,
    *,
    probes: np.ndarray | None = None,
    tree: cKDTree | None = None,
) -> float:
    """Share of the scan lying in patches whose normals point against the rest of their smooth surface.

    Catches what :func:`orientation_consistency` cannot: normals consistent within patches but flipped patch
    by patch (scans merged from views oriented apart, a propagation that jumped across a gap). Over an even
    subsample, each probe's normal is first averaged over its neighbours (the principal direction of their
    normals, signed as most of those on its own sheet point), so that single flipped or noisy normals do not
    count. Probes on one smooth sheet (neighbours whose offset lies in both tangent planes and whose normals
    are near-parallel or near-antiparallel) form a signed graph; per connected component, the sign pattern
    that agrees best with it is the smallest eigenvector of the signed Laplacian (a pattern of flipped
    patches makes it exactly ±1). The smaller side of that pattern counts as flipped, but only where it
    explains away at least half of the component's disagreeing edges: noise disagrees in ways no sign
    pattern removes.

    Parameters
    ----------
    points : (n, 3) float
    normals : (n, 3) float
    probes, tree : optional
        ``voxel_subsample(points, CONSISTENCY_PROBES)`` and ``cKDTree(points)``, when the caller has them.

    Returns
    -------
    float
        0 for consistently oriented normals; up to ½ when half of the surface is flipped.
    """
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components

    points = np.asarray(points, dtype=np.float64)
    normals = _unit(np.asarray(normals, dtype=np.float64))
    if len(points) <= _SHEET_NEIGHBOURS:
        return 0.0
    probes = voxel_subsample(points, CONSISTENCY_PROBES) if probes is None else probes
    smooth = _majority_principal_normals(points, normals, probes, cKDTree(points) if tree is None else tree)
    at = points[probes]
    k = min(_SHEET_NEIGHBOURS, len(probes) - 1)
    _, neighbours = cKDTree(at).query(at, k=k + 1)
    i = np.repeat(np.arange(len(probes)), k)
    j = neighbours[:, 1:].ravel()
    offset = at[j] - at[i]
    length = np.linalg.norm(offset, axis=1) + 1e-300
    along_i = np.einsum("ij,ij->i", offset, smooth[i]) / length
    along_j = np.einsum("ij,ij->i", offset, smooth[j]) / length
    alignment = np.einsum("ij,ij->i", smooth[i], smooth[j])
    # Two probes each behind the other (the two sides of a thin part, the two faces of a knife edge) point
    # apart by right: only neighbours in one tangent plane can show a wall between flipped patches.
    back_to_back = (alignment < 0) & (along_i < -_BACK_TO_BACK) & (along_j > _BACK_TO_BACK)
    in_plane = (np.abs(along_i) < _SHEET_MAX_OFFSET) & (np.abs(along_j) < _SHEET_MAX_OFFSET)
    sheet = in_plane & ~back_to_back & (np.abs(alignment) > _SHEET_MIN_ALIGNMENT)
    i, j, alignment = i[sheet], j[sheet], alignment[sheet]
    # Both directions of each edge, a pair found from both ends kept once.
    pairs = np.unique(np.stack([np.minimum(i, j), np.maximum(i, j)], axis=1), axis=0, return_index=True)[1]
    i, j, alignment = i[pairs], j[pairs], alignment[pairs]
    size = len(probes)
    signed = sparse.coo_matrix((np.r_[alignment, alignment], (np.r_[i, j], np.r_[j, i])), shape=(size, size))
    signed = signed.tocsr()
    _, component = connected_components(abs(signed), directed=False)
    flipped = 0
    for label in np.unique(component):
        members = np.flatnonzero(component == label)
        if len(members) >= _SHEET_MIN_PROBES:
            flipped += _flipped_in_component(signed[members][:, members])
    return flipped / size


def _majority_principal_normals(
    points: np.ndarray, normals: np.ndarray, probes: np.ndarray, tree: cKDTree
) -> np.ndarray:
    """(len(probes), 3) unit normals: the principal direction of each probe's neighbours' normals, signed as
    most of the neighbours on its own sheet point (a neighbour offset along that direction lies across a
    thin part, whose normals point the other way by right)."""
    k = min(_DENOISE_NEIGHBOURS, len(points))
    _, neighbours = tree.query(points[probes], k=k, workers=-1)
    neighbours = neighbours.reshape(len(probes), k)
    around = normals[neighbours]
    _, vectors = np.linalg.eigh(np.einsum("pki,pkj->pij", around, around))
    principal = vectors[:, :, -1]
    offset = points[neighbours] - points[probes][:, None, :]
    along = np.abs(np.einsum("pki,pi->pk", offset, principal))
    same_sheet = along <= _SHEET_MAX_OFFSET * np.linalg.norm(offset, axis=2)  # the probe itself included
    votes = np.einsum("pki,pi->pk", around, principal)
    return principal * np.where(np.sum(votes * same_sheet, axis=1) < 0, -1.0, 1.0)[:, None]


def _flipped_in_component(signed) -> int:
    """Probes on the smaller side of the best sign pattern of one connected (m, m) signed graph, or 0 when
    that pattern removes less than half of the graph's disagreeing edges."""
    from scipy import sparse
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

    size = signed.shape[0]
    degree = np.asarray(abs(signed).sum(axis=1)).ravel()
    # The smallest eigenvector of L = D − W is the largest of 2·max(D)·I − L, which ARPACK finds fast;
    # the start vector of ones (the given signs) keeps it deterministic.
    shifted = sparse.diags(2 * degree.max() - degree) + signed
    try:
        _, vectors = eigsh(shifted, k=1, which="LA", v0=np.ones(size), tol=1e-6, maxiter=20 * size)
    except ArpackNoConvergence as partial:
        if not len(partial.eigenvectors):
            return 0
        vectors = partial.eigenvectors
    pattern = np.where(vectors[:, 0] < 0, -1.0, 1.0)
    rows, cols = signed.nonzero()
    weight = np.asarray(signed[rows, cols]).ravel()
    disagreeing = np.abs(weight[weight < 0]).sum()
    left = np.abs(weight[pattern[rows] * pattern[cols] * weight < 0]).sum()
    if disagreeing == 0 or left >= 0.5 * disagreeing:
        return 0
    return int(min(np.sum(pattern > 0), np.sum(pattern < 0)))


def orient_normals(points: np.ndarray, normals: np.ndarray, k: int = 20) -> np.ndarray:
    """Consistently orient (n, 3) normals of arbitrary sign: a spanning tree over the cloud, then the global
    sign under which the cloud's winding number encloses a volume (as :func:`estimate_normals`).

    Returns
    -------
    (n, 3) float64
        ``normals`` with some signs flipped.
    """
    points = np.asarray(points, dtype=np.float64)
    normals = _unit(np.asarray(normals, dtype=np.float64))
    k = max(3, min(k, len(points) - 1))
    oriented = _orient_tangent_plane(points, normals, voxel_subsample(points, MAX_ORIENT_POINTS), k)
    return outward_by_winding(points, oriented, voxel_subsample(points, WINDING_PROBES))


def voxel_subsample(points: np.ndarray, max_points: int) -> np.ndarray:
    """Sorted indices of at most ``max_points`` of the (n, 3) points, one per cell of an even grid.

    Deterministic (the first point of each cell in the cloud's order) and even over the surface, unlike a
    random subset, which both depends on a seed and leaves gaps that the spanning tree hops across.
    """
    n = len(points)
    if n <= max_points:
        return np.arange(n)
    extent = float(np.ptp(points, axis=0).max()) or 1.0
    low = points.min(axis=0)

    def firsts(level: int) -> np.ndarray:
        cell = extent / 256
        for _ in range(level):  # repeated products, bit for bit the sizes of a level-by-level search
            cell *= _VOXEL_GROWTH
        keys = np.floor((points - low) / cell).astype(np.int64)
        span = keys.max(axis=0) + 1
        # One integer per cell: a 1-D unique is an order of magnitude faster than unique rows.
        packed = (keys[:, 0] * span[1] + keys[:, 1]) * span[2] + keys[:, 2]
        return np.unique(packed, return_index=True)[1]

    # The grid coarsens by _VOXEL_GROWTH per level until it holds at most max_points cells. A surface's
    # cell count falls about as the square of the cell size, so the first level is guessed from level 0
    # and then walked to, instead of trying every level on the way.
    counts: dict[int, np.ndarray] = {0: firsts(0)}
    ratio = len(counts[0]) / max_points
    level = max(0, int(np.log(max(ratio, 1.0)) / (2.0 * np.log(_VOXEL_GROWTH))) - 1)
    while level > 0:
        counts.setdefault(level, firsts(level))
        if len(counts[level]) <= max_points:
            level -= 1  # fits: the first level that fits may lie lower
        else:
            break
    while True:
        first = counts.setdefault(level, firsts(level))
        if len(first) <= max_points:
            return np.sort(first)
        level += 1


def outward_by_winding(points: np.ndarray, normals: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """The global sign of a consistent orientation that makes the cloud enclose a volume.

    At each probe point x the winding number w of the whole cloud is read a cell and a half in front of
    and behind the surface. Around an outward-oriented surface w ranges over [0, 1] (about 1 behind, 0 in
    front), around an inward one over [−1, 0]: the sign of the mean of w(x − δn) + w(x + δn) decides.
    Unlike the flux test of :func:`orient_outward` it holds for a one-sided scan of a concave or saddle-
    shaped open surface too, where the scan's centroid says nothing about which side is inside.

    Parameters
    ----------
    points : (n, 3) float
    normals : (n, 3) float
        Unit normals, consistent up to one global sign.
    probes : (p,) int
        Indices of the points the winding number is read at.

    Returns
    -------
    (n, 3) float64
        ``normals`` or ``-normals``.
    """
    points = np.asarray(points, dtype=np.float64)
    normals = np.asarray(normals, dtype=np.float64)
    if len(points) < 8:
        return orient_outward(points, normals)
    cell = (float(np.ptp(points, axis=0).max()) or 1.0) / WINDING_CELLS
    tree = DipoleTree.build(points, normals * point_areas(points)[:, None], cell)
    x, n = points[probes], normals[probes]
    balance = tree.winding_numbers(x - 1.5 * cell * n) + tree.winding_numbers(x + 1.5 * cell * n)
    return -normals if balance.mean() < 0 else normals


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


def _orient_tangent_plane(points: np.ndarray, normals: np.ndarray, subset: np.ndarray, k: int) -> np.ndarray:
    """Consistently orient ``normals`` (n, 3) by Open3D's spanning tree over ``points[subset]``."""
    import open3d as o3d

    n = len(points)
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
