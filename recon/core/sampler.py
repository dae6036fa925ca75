"""The random part of a level-set fit: what each optimizer step is computed on.

Per step, in a fixed order of draws (so a seed gives the same batches): a batch of scan points, zero-level-set
samples (fresh seeds moved onto F = 0 by generalized Newton, or a pool carried across steps and refreshed in
part), general level-set samples around the scan (from fixed pools whose nearest scan points are found once,
or fresh), and anchor samples far from the scan carrying the start's signed distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recon.core.config import FitConfig
from recon.core.levelset import bounded_newton_step, gaussian_seeds, project_to_zero_level_set, uniform_seeds
from recon.core.losses import NearestScanPoint


@dataclass
class StepBatch:
    """What one optimizer step is computed on."""

    scan_indices: torch.Tensor
    """(b,) long: the scan points of the data (and normal) term."""
    zero: torch.Tensor
    """(m, 3) zero-level-set samples, already moved by this step's Newton steps."""
    general: torch.Tensor
    """(k, 3) general level-set samples."""
    general_nearest: torch.Tensor | None
    """(k,) long: their nearest scan points when known in advance (pooled samples), else None."""
    anchor: torch.Tensor
    """(a, 4) anchor samples: x, y, z and the start's estimate (a = 0 without an anchor)."""


class LevelSetSampler:
    """Owns the fit's generator, the carried zero-level-set pool, the general pools and the anchor samples.

    Parameters
    ----------
    points : (n, 3) float tensor
        Scan points in the working frame, on the fit's device.
    nearest : NearestScanPoint
        Nearest-scan-point search over ``points`` (shared with the loss).
    config : FitConfig
    """

    def __init__(self, points: torch.Tensor, nearest: NearestScanPoint, config: FitConfig):
        self.points = points
        self.nearest = nearest
        self.config = config
        self.device = points.device
        self.generator = torch.Generator().manual_seed(config.seed)
        self.pool: torch.Tensor | None = None
        """(m, 3) zero-level-set samples carried to the next step (warm start), or None."""
        self._general_pools: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.anchor = torch.zeros(0, 4, device=self.device)
        """(a, 4) anchor samples far from the scan: x, y, z and the start's signed distance estimate."""
        self.anchor_reach = config.start.anchor_distance
        """Distance from the scan beyond which the anchor holds the field (set with the anchor)."""

    def draw(self, model: torch.nn.Module) -> StepBatch:
        """The next step's batch; ``model`` moves the zero-level-set samples onto its zero set."""
        scan_indices = self._randint(len(self.points), self.config.sampling.batch_points)
        zero = self._zero_level_samples(model)
        general, general_nearest = self._general_samples()
        return StepBatch(scan_indices, zero, general, general_nearest, self._anchor_batch())

    def carry(self, zero: torch.Tensor, levels: torch.Tensor, grads: torch.Tensor) -> None:
        """Keep this step's (m, 3) zero-level-set samples for the next, moved once by their (m,) F and (m, 3) ∇F.

        The Newton move reuses the step's own forward pass, so a carried sample costs no extra network pass.
        """
        sampling = self.config.sampling
        if not sampling.warm_start:
            return
        if sampling.newton_steps >= 1:
            self.pool = self.bounded(bounded_newton_step(zero, levels, grads, max_move=sampling.seed_bound))
        else:
            self.pool = zero.detach()

    @property
    def general_pools(self) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """Per sigma: (general_pool, 3) fixed samples and their (general_pool,) nearest scan point indices;
        None without pools. Built on first use, after the start has set the anchor: only samples within
        the level-set reach need their true nearest point, and most of the wide pool lies beyond it."""
        if self._general_pools is None and self.config.sampling.general_pool:
            self._general_pools = self._build_general_pools()
        return self._general_pools

    @general_pools.setter
    def general_pools(self, pools: list[tuple[torch.Tensor, torch.Tensor]] | None) -> None:
        self._general_pools = pools

    def set_anchor(self, anchor: torch.Tensor, reach: float) -> None:
        """Hold the field at (a, 4) ``anchor`` samples, all farther than ``reach`` from the scan."""
        self.anchor, self.anchor_reach = anchor, float(reach)

    def levelset_reach(self) -> float | None:
        """Samples farther than this from the scan leave the level-set term to the anchor (None: all stay)."""
        return self.anchor_reach if len(self.anchor) else None

    def bounded(self, p: torch.Tensor) -> torch.Tensor:
        """(m, 3) samples clamped into the meshing box."""
        # Newton moves from flat regions can fly far away.
        bound = self.config.mesh.extract_bound
        return p.clamp(-bound, bound)

    def _randint(self, high: int, n: int) -> torch.Tensor:
        return torch.randint(high, (n,), generator=self.generator).to(self.device)

    def _fresh_zero_seeds(self, n: int) -> torch.Tensor:
        sampling = self.config.sampling
        n_uniform = int(round(n * sampling.uniform_fraction))
        near = self.points[self._randint(len(self.points), n - n_uniform)]
        near = gaussian_seeds(near, sampling.seed_sigma, self.generator)
        box = uniform_seeds(n_uniform, sampling.seed_bound, device=self.device, generator=self.generator)
        return torch.cat([near, box])

    def _zero_level_samples(self, model: torch.nn.Module) -> torch.Tensor:
        """(m, 3) zero-level-set samples for this step, before the final evaluation.

        Fresh seeds take ``newton_steps`` Newton moves here. A warm pool already took its last move at the
        end of the previous step (``carry``), so it takes ``newton_steps − 1`` more, and the seeds that
        refresh it join unprojected: every sample still takes one Newton move per step it lives, without a
        second pass through the network.
        """
        sampling = self.config.sampling
        moves = sampling.newton_steps
        if sampling.warm_start and self.pool is not None:
            n_new = int(round(sampling.zero_samples * sampling.refresh_fraction))
            keep = self.pool[n_new:] if n_new else self.pool
            p = torch.cat([keep, self._fresh_zero_seeds(n_new)]) if n_new else keep
            moves -= 1
        else:
            p = self._fresh_zero_seeds(sampling.zero_samples)
            if sampling.warm_start:
                moves -= 1
        if moves <= 0:
            return p
        projection = project_to_zero_level_set(
            model, p, max_steps=moves, tol=sampling.newton_tol, max_move=sampling.seed_bound
        )
        return self.bounded(projection.points)

    def _build_general_pools(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        sampling = self.config.sampling
        generator = torch.Generator().manual_seed(self.config.seed + 1)
        reach = self.levelset_reach()
        pools = []
        for sigma in sampling.general_sigmas:
            idx = torch.randint(len(self.points), (sampling.general_pool,), generator=generator)
            samples = gaussian_seeds(self.points[idx.to(self.device)], sigma, generator)
            pools.append((samples, self.nearest.indices(samples, within=reach)))
        return pools

    def _general_samples(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(m, 3) general level-set samples, and their nearest scan point indices when known in advance."""
        sampling = self.config.sampling
        if self.general_pools is not None:
            samples, nearest = [], []
            for pool, near in self.general_pools:
                pick = self._randint(len(pool), sampling.general_samples)
                samples.append(pool[pick])
                nearest.append(near[pick])
            return torch.cat(samples), torch.cat(nearest)
        sets = []
        for sigma in sampling.general_sigmas:
            centers = self.points[self._randint(len(self.points), sampling.general_samples)]
            sets.append(gaussian_seeds(centers, sigma, self.generator))
        return (torch.cat(sets) if sets else self.points[:0]), None

    def _anchor_batch(self) -> torch.Tensor:
        """(a, 4) anchor samples for this step (none without an anchor)."""
        if not len(self.anchor):
            return self.anchor
        return self.anchor[self._randint(len(self.anchor), self.config.start.anchor_samples)]

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.get_state(),
            "pool": self.pool.cpu() if self.pool is not None else torch.zeros(0, 3),
            "anchor": self.anchor.cpu(),
            "anchor_reach": self.anchor_reach,
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        pool = state["pool"]
        self.pool = pool.to(self.device) if len(pool) else None
        self.anchor = state.get("anchor", torch.zeros(0, 4)).to(self.device)
        # Checkpoints written before the reach depended on the start's orientation used anchor_distance.
        self.anchor_reach = float(state.get("anchor_reach", self.config.start.anchor_distance))
