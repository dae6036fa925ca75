"""A quick classical estimate of the scan's signed distance, distilled into the network before the fit.

From a sphere, the level-set loss needs thousands of steps to carry the zero set to the data (the
reference schedule runs 50,000). A signed distance estimate from the oriented scan is cheap to compute and cheap to regress — plain
first-order steps on fixed samples, no Newton moves, no double backward — so the level-set loss starts
next to the data and spends its steps on detail.

The estimate at a query q, with d(q) the distance to the nearest scan point (a KD-tree):
- near the scan (within ``plane_cells`` cells): ±d, the sign from the side of the tangent planes of the
  nearest scan points (mean of n·(q − x));
- away from it: d·(1 − 2w), w the generalized winding number of all scan points (recon.core.winding), inside
  where w > ½. Unlike the local planes it closes holes and stays right inside concavities, and unlike ±d
  it is continuous across the cap that closes a hole.
No random choice enters the estimate: two seeds distil the same target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from recon.core.adam import Adam
from recon.core.winding import DipoleTree, point_areas


@dataclass
class InitialFieldConfig:
    """How the signed distance estimate is sampled and distilled."""

    samples: int = 60_000
    """Fixed training samples (plus the scan points themselves, on the zero level)."""
    sigmas: tuple[float, ...] = (0.005, 0.02, 0.08)
    """Std of the Gaussian offsets around scan points (working units); a fifth of the samples are uniform."""
    winding_cells: int = 96
    """Cells along the scan's longest side in which the scan's dipoles are summed for the winding number."""
    closure_winding: float = 0.5
    """Winding number at which the estimate closes surface the scan does not show (see module notes)."""
    plane_cells: float = 2.0
    """Queries nearer to the scan than this many cells take their sign from the nearest tangent planes."""
    plane_neighbors: int = 8
    """Nearest scan points whose tangent planes vote on the sign near the scan."""
    steps: int = 150
    """Adam steps of the regression."""
    batch: int = 4_096
    """Samples per regression step."""
    lr: float = 3e-3
    """Adam learning rate of the regression."""


def signed_distance_estimate(
    queries: np.ndarray,
    points: np.ndarray,
    normals: np.ndarray,
    tree: cKDTree,
    config: InitialFieldConfig,
    dipoles: DipoleTree | None = None,
) -> np.ndarray:
    """Estimated signed distance (m,) (negative inside) at (m, 3) queries of an oriented (n, 3) scan.

    Deterministic: no random choice, every scan point takes part. ``dipoles`` is the scan's
    :func:`scan_dipoles` when the caller already has it.
    """
    k = min(config.plane_neighbors, len(points))
    distances, nearest = tree.query(queries, k=k, workers=-1)
    distances = distances.reshape(len(queries), k)
    nearest = nearest.reshape(len(queries), k)
    inside = (
        np.einsum("mkj,mkj->mk", queries[:, None, :] - points[nearest], normals[nearest]).mean(axis=1) < 0
    )
    if dipoles is None:
        dipoles = scan_dipoles(points, normals, tree, config)
    cell = dipoles.cell
    # Tangent planes are trusted only within a cell or two of the scan: beyond a hole's rim they extend
    # the wall outward and would grow a tube; there the (now accurate) winding number decides.
    far = distances[:, 0] >= config.plane_cells * cell
    distance = distances[:, 0]
    signed = np.where(inside, -distance, distance)
    # Away from the scan the estimate is d·(1 − 2w), not ±d: the same sign, but continuous across a cap
    # over a hole, where ±d jumps by twice the hole's radius and a smooth network would place its zero
    # anywhere along the jump (a cap that balloons into a tube, by a different length for every seed).
    winding = dipoles.winding_numbers(queries[far])
    signed[far] = distance[far] * closure_ramp(winding, config.closure_winding)
    return signed


def scan_dipoles(
    points: np.ndarray, normals: np.ndarray, tree: cKDTree, config: InitialFieldConfig
) -> DipoleTree:
    """The (n, 3) scan's dipoles (area × outward (n, 3) normal) in cells of 1/``winding_cells`` of its extent."""
    cell = float(np.ptp(points, axis=0).max()) / config.winding_cells
    return DipoleTree.build(points, normals * point_areas(points, tree=tree)[:, None], cell)


def closure_ramp(winding: np.ndarray, closure: float) -> np.ndarray:
    """(m,) factor in [−1, 1] of the distance away from the scan: +1 at w ≤ 0, 0 at w = closure, −1 at w ≥ 1.

    Linear on each side of ``closure`` (0 < closure < 1); for closure = ½ it is 1 − 2w.
    """
    below = (closure - winding) / closure
    above = (closure - winding) / (1.0 - closure)
    return np.clip(np.where(winding < closure, below, above), -1.0, 1.0)


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


def signed_distance_samples(
    points: np.ndarray,
    normals: np.ndarray,
    tree: cKDTree,
    config: InitialFieldConfig,
    *,
    bound: float,
    seed: int,
    dipoles: DipoleTree | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(m, 3) training samples (the seed only places them) and their (m,) signed distance estimates."""
    queries = training_samples(points, config, bound, np.random.default_rng(seed))
    return queries, signed_distance_estimate(queries, points, normals, tree, config, dipoles)


def distill_signed_distance(
    model: torch.nn.Module,
    queries: np.ndarray,
    targets: np.ndarray,
    points: np.ndarray,
    config: InitialFieldConfig,
    *,
    seed: int,
    device: torch.device,
) -> float:
    """Regress ``model`` onto signed distance estimates; returns the final mean |F − s|.

    Parameters
    ----------
    model : F: (b, 3) → (b,)
    queries : (m, 3) float
        Samples (working frame), with their estimates ``targets`` (m,).
    points : (n, 3) float
        Scan points (working frame), regressed onto 0.
    """
    x = torch.as_tensor(np.concatenate([queries, points]), dtype=torch.float32, device=device)
    y = torch.as_tensor(np.concatenate([targets, np.zeros(len(points))]), dtype=torch.float32, device=device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = Adam(model.parameters(), lr=config.lr)
    error = torch.zeros(())
    for _ in range(config.steps):
        idx = torch.randint(len(x), (config.batch,), generator=generator).to(device)
        error = (model(x[idx]) - y[idx]).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        error.backward()
        optimizer.step()
    return float(error.detach())
