"""Isolated scan points: the stray returns a scanner leaves in empty space.

An outlier far from the surface pulls the zero level set towards itself (the data term wants F = 0
there), which grows spurious sheets. Such points are recognisable by their sparse neighbourhood: their
mean distance to the k nearest scan points is many times the scan's typical point spacing, while a
scanner's density varies smoothly and by a few times at most over the real surface.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def isolated_point_mask(points: np.ndarray, *, neighbors: int = 16, ratio: float = 5.0) -> np.ndarray:
    """True for points whose mean k-nearest-neighbour distance exceeds ``ratio`` × the scan's median.

    Parameters
    ----------
    points : (n, 3) float
    neighbors : int
        k, the neighbours each point's spacing is averaged over.
    ratio : float
        Multiple of the median spacing above which a point counts as isolated.

    Returns
    -------
    (n,) bool
    """
    if neighbors < 1 or ratio <= 1.0:
        raise ValueError("neighbors must be >= 1 and ratio > 1")
    n = len(points)
    if n <= neighbors:
        return np.zeros(n, dtype=bool)
    distances, _ = cKDTree(points).query(points, k=neighbors + 1)
    spacing = distances[:, 1:].mean(axis=1)
    typical = float(np.median(spacing))
    if typical <= 0.0:
        # More than half the points are duplicates; spacing says nothing about isolation.
        return np.zeros(n, dtype=bool)
    return spacing > ratio * typical
