"""Pieces every format module shares: the raw reader result and the tolerances of the I/O layer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from recon.errors import InputError


@dataclass(frozen=True)
class Tolerances:
    """Every threshold the I/O layer uses, in one documented place.

    Attributes
    ----------
    max_abs_coordinate : float
        Coordinates larger than this in magnitude are taken to be a unit or format mistake.
    identical_rel : float
        Points whose bounding box is smaller than ``identical_rel * max(1, max|x|)`` count as one point.
    zero_normal : float
        Normals shorter than this cannot be normalised; the file's normals are then not used.
    """

    max_abs_coordinate: float = 1e12
    identical_rel: float = 1e-12
    zero_normal: float = 1e-12


TOL = Tolerances()


class RawGeometry(NamedTuple):
    """What a format reader returns, before cleaning and validation.

    Attributes
    ----------
    points : (n, 3) float
        Vertex or point coordinates, any float dtype.
    normals : (n, 3) float or None
        Per-point normals as stored in the file (not necessarily unit length).
    faces : (m, 3) int or None
        Triangles indexing ``points``; polygons are already fan-triangulated.
    """

    points: np.ndarray
    normals: np.ndarray | None = None
    faces: np.ndarray | None = None


def fail(path: str | Path, problem: str) -> InputError:
    """An InputError whose one-line message names the file and the problem."""
    return InputError(f"{path}: {problem}")


def fan_triangulate(polygons: np.ndarray) -> np.ndarray:
    """Triangles of the polygons ``polygons`` (m, k) int, split as fans around their first corner.

    Returns
    -------
    (m * (k - 2), 3) int64
    """
    polygons = np.asarray(polygons, dtype=np.int64)
    k = polygons.shape[1]
    if k == 3:
        return polygons
    fans = [polygons[:, [0, i, i + 1]] for i in range(1, k - 1)]
    return np.stack(fans, axis=1).reshape(-1, 3)


def triangles_from_ragged(polygons: list[np.ndarray]) -> np.ndarray:
    """Fan triangles (t, 3) int64 of polygons with varying corner counts, grouped by corner count."""
    by_size: dict[int, list[np.ndarray]] = {}
    for polygon in polygons:
        by_size.setdefault(len(polygon), []).append(polygon)
    triangles = [fan_triangulate(np.array(group)) for size, group in sorted(by_size.items()) if size >= 3]
    if not triangles:
        return np.empty((0, 3), dtype=np.int64)
    return np.concatenate(triangles)
