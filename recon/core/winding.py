"""The generalized winding number of an oriented point cloud (Barill et al. 2018), summed fast.

w(q) = Σ_i a_i n_i·(x_i − q) / (4π‖x_i − q‖³) over points x_i with outward normals n_i standing for areas
a_i: about 1 inside a closed surface, 0 outside, and across an open one it jumps by 1, so {w > ½} closes
holes like a soap film. The fit's starting field takes its sign from it, and orientation checks use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree


def winding_numbers(
    queries: np.ndarray, centers: np.ndarray, dipoles: np.ndarray, chunk: int = 2048
) -> np.ndarray:
    """Generalized winding number (m,) at (m, 3) queries of (k, 3) point dipoles at (k, 3) centres.

    A dipole is area × outward normal of the surface piece it stands for (Barill et al. 2018):
    w(q) = Σ d_k·(c_k − q) / (4π‖c_k − q‖³); 1 inside a closed surface, 0 outside, ½ on it.
    """
    c = torch.as_tensor(centers, dtype=torch.float32)
    d = torch.as_tensor(dipoles, dtype=torch.float32)
    out = []
    for block in torch.split(torch.as_tensor(queries, dtype=torch.float32), chunk):
        diff = c[None, :, :] - block[:, None, :]
        dist = diff.norm(dim=2).clamp_min(1e-6)
        out.append(((diff * d[None]).sum(dim=2) / dist**3).sum(dim=1) / (4.0 * math.pi))
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)


def point_areas(points: np.ndarray, k: int = 8, tree: cKDTree | None = None) -> np.ndarray:
    """(n,) area each of (n, 3) surface samples stands for: 1/density, from the disc holding k neighbours.

    ``tree`` is a cKDTree over ``points`` when the caller already has one.
    """
    k = min(k, len(points) - 1)
    distances, _ = (tree or cKDTree(points)).query(points, k=k + 1, workers=-1)
    radius = distances[:, -1]
    return math.pi * radius * radius / k


@dataclass
class DipoleTree:
    """The scan's dipoles (area × outward normal) summed per cell at two scales, for a fast winding number.

    Fine cells of side ``cell`` stand for their points; coarse cells (``coarse_factor`` fine cells a side)
    stand for the fine cells in them. A query sums the coarse cells whose centroid is farther than
    ``near`` coarse sides, and the fine cells of the nearer coarse cells: a two-level Barnes–Hut sum that
    uses *every* scan point, deterministically (a random subset made the start, and with it the caps
    over holes, change from seed to seed), at a cost close to that of a few thousand points.
    """

    cell: float
    coarse_factor: int
    near: float
    fine_centers: np.ndarray
    fine_dipoles: np.ndarray
    fine_start: np.ndarray
    """(k_coarse,) first row of each coarse cell's fine cells (fine cells are sorted by coarse cell)."""
    fine_count: np.ndarray
    coarse_centers: np.ndarray
    coarse_dipoles: np.ndarray

    @classmethod
    def build(
        cls, points: np.ndarray, dipoles: np.ndarray, cell: float, coarse_factor: int = 4, near: float = 2.5
    ) -> DipoleTree:
        """From (n, 3) points and their (n, 3) dipoles."""
        fine_keys, fine_of = _cells(np.floor(points / cell).astype(np.int64))
        fine_centers, fine_dipoles = _cell_sums(fine_of, len(fine_keys), points, dipoles)
        _, coarse_of = _cells(np.floor_divide(fine_keys, coarse_factor))
        n_coarse = int(coarse_of.max()) + 1
        coarse_centers, coarse_dipoles = _cell_sums(coarse_of, n_coarse, fine_centers, fine_dipoles)
        order = np.argsort(coarse_of, kind="stable")
        count = np.bincount(coarse_of, minlength=n_coarse)
        start = np.concatenate([[0], np.cumsum(count)[:-1]])
        return cls(
            cell,
            coarse_factor,
            near,
            fine_centers[order],
            fine_dipoles[order],
            start,
            count,
            coarse_centers,
            coarse_dipoles,
        )

    def winding_numbers(self, queries: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """(m,) winding number at (m, 3) queries farther than about one fine cell from every scan point."""
        radius = self.near * self.cell * self.coarse_factor
        tree = cKDTree(self.coarse_centers)
        out = [
            self._block(q, radius, tree) for q in np.array_split(queries, max(1, -(-len(queries) // chunk)))
        ]
        return np.concatenate(out) if out else np.zeros(0)

    def _block(self, queries: np.ndarray, radius: float, tree: cKDTree) -> np.ndarray:
        c = torch.as_tensor(self.coarse_centers, dtype=torch.float32)
        d = torch.as_tensor(self.coarse_dipoles, dtype=torch.float32)
        q = torch.as_tensor(queries, dtype=torch.float32)
        diff = c[None, :, :] - q[:, None, :]
        dist = diff.norm(dim=2).clamp_min(1e-6)
        far_terms = torch.where(dist >= radius, (diff * d[None]).sum(dim=2) / dist**3, 0.0)
        value = far_terms.sum(dim=1).double().numpy()
        # Coarse cells within the radius: the exact same partition as the mask above, by the same distance.
        near_lists = tree.query_ball_point(queries, radius * (1 - 1e-6), return_sorted=False)
        counts = np.fromiter(map(len, near_lists), dtype=np.int64, count=len(near_lists))
        if counts.sum():
            coarse = np.concatenate([np.asarray(x, dtype=np.int64) for x in near_lists if x])
            rows = np.repeat(np.arange(len(queries)), counts)
            per = self.fine_count[coarse]
            rows = np.repeat(rows, per)
            first = np.repeat(self.fine_start[coarse] - (np.cumsum(per) - per), per)
            fine = first + np.arange(len(rows))
            gap = self.fine_centers[fine] - queries[rows]
            dist3 = np.maximum(np.linalg.norm(gap, axis=1), 1e-6) ** 3
            terms = np.einsum("ij,ij->i", gap, self.fine_dipoles[fine]) / dist3
            value += np.bincount(rows, weights=terms, minlength=len(queries))
        return value / (4.0 * math.pi)


def _cells(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of (n, 3) integer ``keys`` and, for each input row, the index of its key."""
    unique, cell_of = np.unique(keys, axis=0, return_inverse=True)
    return unique, cell_of.reshape(-1)


def _cell_sums(cell_of: np.ndarray, k: int, points: np.ndarray, dipoles: np.ndarray):
    """Per cell: the centroid weighted by dipole magnitude (k, 3) and the dipole sum (k, 3)."""
    weight = np.linalg.norm(dipoles, axis=1) + 1e-30
    total = np.bincount(cell_of, weights=weight, minlength=k)
    centers = np.stack(
        [np.bincount(cell_of, weights=weight * points[:, j], minlength=k) for j in range(3)], 1
    )
    sums = np.stack([np.bincount(cell_of, weights=dipoles[:, j], minlength=k) for j in range(3)], 1)
    return centers / total[:, None], sums
