"""Depth noise thicker than the point spacing, detected by the winding number and smoothed away for the start.

A scan whose depth noise is comparable to its point spacing is a slab rather than a sheet: the disc that
holds a point's k nearest neighbours grows (the neighbours spread through the slab's depth), so each point
stands for more than its real area, and the scan's winding number jumps by 1.3–1.7 instead of 1 across it
(measured with the start's normals on the benchmark's scans: clean 0.8–1.04, one-sided 1.0–1.19, noisy
1.21–1.74, one-sided with 0.5 % of the diagonal of noise 1.3–1.7). With the start's closure at w = ½, holes
and unseen sides then close too far out: a dome behind a body seen from the front, a bulging belly. Plane
fits over a few neighbours also turn up to a fifth of the estimated normals the wrong way there.
Projecting every point onto the plane of a wide neighbourhood, twice, brings both back (jump 0.9–1.0,
estimated normals 97–99.6 % on the right side). Only scans whose jump, or whose noise measured directly,
says so are smoothed: on clean and one-sided scans such wide planes flatten thin parts and features
(CD-L1 1.2–1.6× worse when always on, `bench/smooth/`).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

from recon.core.winding import DipoleTree

JUMP_PROBES = 2_000
"""Scan points (an even stride) at which the jump of the winding number is measured."""
JUMP_OFFSET_CELLS = 2.5
"""Probes sit this many winding-number cells to either side of the scan along its normals."""
NOISE_NEIGHBORS = 64
"""Neighbourhood of the noise measure: wide enough that a well-sampled scanner's noise is resolved in it."""
NOISE_PROBES = 5_000
UNRESOLVED_NOISE = 0.6
"""Median √(λ_min/λ_max) of 64-neighbour covariances above which the noise is thicker than the neighbourhood
(benchmark scans: clean 0.04–0.13, noisy and one-sided scanner presets 0.19–0.50, 0.5 % of the diagonal of
Gaussian noise 0.69–0.75). There the estimated normals are too poor (a fifth on the wrong side) for the
jump to show the inflated areas (1.08 on a body scanned from the front), so this decides alone."""
SMOOTHING_NEIGHBORS = 96
SMOOTHING_PASSES = 2


def winding_jump(dipoles: DipoleTree, points: np.ndarray, normals: np.ndarray) -> float:
    """Median jump of the winding number of ``dipoles`` across the oriented (n, 3) scan they stand for.

    w is read at an even stride of scan points moved ``JUMP_OFFSET_CELLS`` of the dipoles' cells against and
    along their (n, 3) normals: about 1 for a well-sampled sheet, 1.5–2 when depth noise thicker than the
    spacing inflates the point areas. Deterministic.
    """
    if len(points) < 8:
        return 1.0
    probes = np.arange(0, len(points), max(1, len(points) // JUMP_PROBES))
    offset = JUMP_OFFSET_CELLS * dipoles.cell * np.asarray(normals, dtype=np.float64)[probes]
    inside = dipoles.winding_numbers(points[probes] - offset)
    outside = dipoles.winding_numbers(points[probes] + offset)
    return float(np.median(inside - outside))


def unresolved_noise(points: np.ndarray) -> float:
    """Median √(λ_min/λ_max) of the covariance of 64 neighbours around an even stride of (n, 3) points.

    About σ/r for noise σ over neighbourhoods of radius r: near 0 on a sheet, about 0.8 in a slab thicker than
    the neighbourhood.
    """
    points = np.asarray(points, dtype=np.float64)
    if len(points) <= NOISE_NEIGHBORS:
        return 0.0
    eigenvalues = neighborhood_scatter(points)
    return float(
        np.median(np.sqrt(np.maximum(eigenvalues[:, 0], 0.0) / np.maximum(eigenvalues[:, 2], 1e-300)))
    )


def neighborhood_scatter(
    points: np.ndarray, probes: int = NOISE_PROBES, k: int = NOISE_NEIGHBORS
) -> np.ndarray:
    """(m, 3) ascending eigenvalues of the scatter matrix (sum, not mean) of the k nearest of the (n, 3)
    points around each of m ≈ ``probes`` points taken at an even stride (n > k)."""
    sample = points[:: max(1, len(points) // probes)]
    _, neighbors = cKDTree(points).query(sample, k=k, workers=-1)
    groups = points[neighbors]
    centered = groups - groups.mean(axis=1, keepdims=True)
    return np.linalg.eigvalsh(np.einsum("mki,mkj->mij", centered, centered))


def smoothed_points(points: np.ndarray, passes: int = SMOOTHING_PASSES, k: int = SMOOTHING_NEIGHBORS):
    """(n, 3) points each projected onto the least-squares plane of its k nearest neighbours, ``passes`` times.

    The neighbour lists are found once (a pass moves points by a fraction of the noise, which changes few
    of them); each pass sums the neighbours' first and second moments with one sparse product.
    """
    points = np.asarray(points, dtype=np.float64)
    n, k = len(points), min(k, len(points))
    if k < 4:
        return points.copy()
    _, neighbors = cKDTree(points).query(points, k=k, workers=-1)
    average = sparse.csr_matrix(
        (np.full(n * k, 1.0 / k), neighbors.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n)
    )
    upper = np.triu_indices(3)
    for _ in range(passes):
        mean = average @ points
        second = average @ (points[:, :, None] * points[:, None, :])[:, upper[0], upper[1]]
        covariance = np.empty((n, 3, 3))
        covariance[:, upper[0], upper[1]] = second
        covariance[:, upper[1], upper[0]] = second
        covariance -= mean[:, :, None] * mean[:, None, :]
        normals = np.linalg.eigh(covariance)[1][:, :, 0]
        points = points - np.einsum("ij,ij->i", points - mean, normals)[:, None] * normals
    return points
