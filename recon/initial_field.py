"""A quick classical estimate of the scan's signed distance, distilled into the network before the fit.

From a sphere, the level-set loss needs thousands of steps to carry the zero set to the data (DESIGN.md
§3). A signed distance estimate from the oriented scan is cheap to compute and cheap to regress — plain
first-order steps on fixed samples, no Newton moves, no double backward — so the level-set loss starts
next to the data and spends its steps on detail.

The estimate at a query q:
- magnitude: the distance to the nearest scan point (a KD-tree);
- sign near the scan: the side of the tangent planes of the nearest scan points (mean of n·(q − x));
- sign away from it: the point-cloud generalized winding number (Barill et al. 2018) over a subsample,
  w(q) = Σ a_i n_i·(x_i − q) / (4π‖x_i − q‖³), inside where w > ½. Unlike the local planes it closes holes
  and stays right inside concavities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree


@dataclass
class InitialFieldConfig:
    """How the signed distance estimate is sampled and distilled."""

    samples: int = 60_000
    """Fixed training samples (plus the scan points themselves, on the zero level)."""
    sigmas: tuple[float, ...] = (0.005, 0.02, 0.08)
    """Std of the Gaussian offsets around scan points (working units); a fifth of the samples are uniform."""
    winding_points: int = 2_000
    """Scan points (a random subset) the winding number sums over."""
    plane_neighbors: int = 8
    """Nearest scan points whose tangent planes vote on the sign near the scan."""
    steps: int = 150
    """Adam steps of the regression."""
    batch: int = 4_096
    """Samples per regression step."""
    lr: float = 3e-3
    """Adam learning rate of the regression."""


def winding_numbers(
    queries: np.ndarray, points: np.ndarray, normals: np.ndarray, areas: np.ndarray, chunk: int = 1024
) -> np.ndarray:
    """Point-cloud generalized winding number (m,) at (m, 3) queries of oriented (n, 3) points with (n,) areas."""
    p = torch.as_tensor(points, dtype=torch.float32)
    n = torch.as_tensor(normals, dtype=torch.float32)
    a = torch.as_tensor(areas, dtype=torch.float32)
    out = []
    for block in torch.split(torch.as_tensor(queries, dtype=torch.float32), chunk):
        diff = p[None, :, :] - block[:, None, :]
        dist = diff.norm(dim=2).clamp_min(1e-6)
        out.append(((diff * n[None]).sum(dim=2) * a[None] / dist**3).sum(dim=1) / (4.0 * math.pi))
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)


def point_areas(points: np.ndarray, k: int = 8) -> np.ndarray:
    """(n,) area each of (n, 3) surface samples stands for: 1/density, from the disc holding k neighbours."""
    k = min(k, len(points) - 1)
    distances, _ = cKDTree(points).query(points, k=k + 1)
    radius = distances[:, -1]
    return math.pi * radius * radius / k


def signed_distance_estimate(
    queries: np.ndarray,
    points: np.ndarray,
    normals: np.ndarray,
    tree: cKDTree,
    config: InitialFieldConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """Estimated signed distance (m,) (negative inside) at (m, 3) queries of an oriented (n, 3) scan."""
    k = min(config.plane_neighbors, len(points))
    distances, nearest = tree.query(queries, k=k)
    distances = distances.reshape(len(queries), k)
    nearest = nearest.reshape(len(queries), k)
    inside = (
        np.einsum("mkj,mkj->mk", queries[:, None, :] - points[nearest], normals[nearest]).mean(axis=1) < 0
    )
    subset = rng.choice(len(points), size=min(config.winding_points, len(points)), replace=False)
    areas = point_areas(points[subset])
    # Tangent planes are trusted within a few subsample spacings, where the winding sum is too coarse.
    far = distances[:, 0] >= 3.0 * math.sqrt(float(areas.mean()) / math.pi)
    inside[far] = winding_numbers(queries[far], points[subset], normals[subset], areas) > 0.5
    return np.where(inside, -distances[:, 0], distances[:, 0])


def training_samples(points: np.ndarray, config: InitialFieldConfig, bound: float, rng: np.random.Generator):
    """(m, 3) samples: Gaussian offsets around scan points at each sigma, and a uniform fifth in the box."""
    n_uniform = config.samples // 5
    per_sigma = (config.samples - n_uniform) // max(len(config.sigmas), 1)
    sets = [
        points[rng.integers(len(points), size=per_sigma)] + rng.normal(scale=s, size=(per_sigma, 3))
        for s in config.sigmas
    ]
    sets.append(rng.uniform(-bound, bound, size=(n_uniform, 3)))
    return np.concatenate(sets)


def distill_signed_distance(
    model: torch.nn.Module,
    points: np.ndarray,
    normals: np.ndarray,
    tree: cKDTree,
    config: InitialFieldConfig,
    *,
    bound: float,
    seed: int,
    device: torch.device,
) -> float:
    """Regress ``model`` onto the scan's signed distance estimate; returns the final mean |F − s|.

    Parameters
    ----------
    model : F: (b, 3) → (b,)
    points, normals : (n, 3) float
        Scan points (working frame) and their outward unit normals.
    tree : cKDTree over ``points``
    """
    rng = np.random.default_rng(seed)
    queries = training_samples(points, config, bound, rng)
    targets = signed_distance_estimate(queries, points, normals, tree, config, rng)
    x = torch.as_tensor(np.concatenate([queries, points]), dtype=torch.float32, device=device)
    y = torch.as_tensor(np.concatenate([targets, np.zeros(len(points))]), dtype=torch.float32, device=device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    error = torch.zeros(())
    for _ in range(config.steps):
        idx = torch.randint(len(x), (config.batch,), generator=generator).to(device)
        error = (model(x[idx]) - y[idx]).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        error.backward()
        optimizer.step()
    return float(error.detach())
