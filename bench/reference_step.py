"""A straightforward implementation of one training step of the reference method (Atzmon et al. 2019,
the sample-network level-set loss as in its 2020 code release).

This is the yardstick for the ``paper`` preset's step time: the same math written the
obvious way, with none of the levers the library uses.

- 10,000 scan points per step (the batch), data term mean |F(x)|.
- 4,000 seeds = batch points + N(0, 0.1²) and 1,000 uniform seeds in [-1.1, 1.1]³, moved by up to 10
  generalized-Newton steps ``p ← p − F(p)∇F(p)/max(‖∇F(p)‖², 1e-6)`` from fresh seeds every step, with a
  convergence check (a host synchronisation) after each one.
- General level-set samples: 5,000 batch points + N(0, 0.01²) and 5,000 + N(0, 0.2²).
- A separate first-order pass gives c = F(p; θ0) and g = ∇ₓF(p; θ0) of all 15,000 samples, then a second
  forward pass the sample network p(θ) = p − (F(p; θ) − c)·g/‖g‖².
- d(p(θ)) = min over a dense ``torch.cdist`` matrix (15,000 × 10,000) to the batch (not the whole scan).
- loss = mean |d(p(θ)) − |c|| + 3·mean |F(x)|; Adam, lr 1e-4; ``loss.item()`` at the end (a host sync).

The level-set term is back-propagated in two stages (distance matrix → sample points, then sample points →
parameters) only so that the distance work, forward and backward, can be timed on its own; the gradient is
the same as one ``backward`` through the whole graph.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from recon.core.levelset import newton_step, sample_network, value_and_gradient


@dataclass
class ReferenceConfig:
    """Sizes and constants of the reference step (the values of the authors' 2020 code)."""

    batch_points: int = 10_000
    near_seeds: int = 4_000
    uniform_seeds: int = 1_000
    seed_sigma: float = 0.1
    seed_bound: float = 1.1
    general_sigmas: tuple[float, ...] = (0.01, 0.2)
    general_samples: int = 5_000
    newton_steps: int = 10
    newton_tol: float = 1e-5
    data_weight: float = 3.0
    lr: float = 1e-4


@dataclass
class PartTimes:
    """Seconds spent in each part of one step.

    Attributes
    ----------
    newton : float
        Seeding and the Newton projection (including its host synchronisations).
    distances : float
        Nearest distances: here the dense distance matrix, its row minimum and the backward pass through them.
    forward_backward : float
        Everything else: the c/g pass, the sample-network and data forward passes, the backward pass into
        the parameters, and the Adam update.
    total : float
    """

    newton: float
    distances: float
    forward_backward: float
    total: float


@dataclass
class ReferenceTimes:
    """Wall-clock and CPU (``time.process_time``) seconds of one step, its loss and Newton steps taken."""

    wall: PartTimes
    cpu: PartTimes
    loss: float
    newton_steps: int


def _now() -> np.ndarray:
    """(wall, process CPU) seconds."""
    return np.array([time.perf_counter(), time.process_time()])


class ReferenceStep:
    """Owns the network's optimizer and RNG; :meth:`step` runs one reference training step.

    Parameters
    ----------
    points : (n, 3) float tensor
        Scan points in the working frame.
    model : torch.nn.Module
        F: (m, 3) → (m,), e.g. ``recon.models.implicit.ImplicitMLP`` with the reference architecture.
    config : ReferenceConfig
    seed : int
    """

    def __init__(
        self,
        points: torch.Tensor,
        model: torch.nn.Module,
        config: ReferenceConfig | None = None,
        seed: int = 0,
    ):
        self.points = points
        self.model = model
        self.config = config or ReferenceConfig()
        self.optimizer = torch.optim.Adam(model.parameters(), lr=self.config.lr)
        self.generator = torch.Generator().manual_seed(seed)

    def _pick(self, source: torch.Tensor, n: int) -> torch.Tensor:
        return source[torch.randint(len(source), (n,), generator=self.generator)]

    def _noisy(self, centers: torch.Tensor, sigma: float) -> torch.Tensor:
        return centers + sigma * torch.randn(centers.shape, generator=self.generator)

    def zero_level_samples(self, batch: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(5000, 3) fresh seeds projected by Newton onto F = 0, and the number of Newton steps taken."""
        cfg = self.config
        near = self._noisy(self._pick(batch, cfg.near_seeds), cfg.seed_sigma)
        box = (2.0 * torch.rand((cfg.uniform_seeds, 3), generator=self.generator) - 1.0) * cfg.seed_bound
        p = torch.cat([near, box])
        taken = 0
        for taken in range(1, cfg.newton_steps + 1):  # noqa: B007 - reported
            values, grads = value_and_gradient(self.model, p)
            if bool((values.abs() < cfg.newton_tol).all()):  # host synchronisation every Newton step
                taken -= 1
                break
            p = newton_step(p, values, grads)
        return p.detach(), taken

    def general_samples(self, batch: torch.Tensor) -> torch.Tensor:
        """(5000 · len(general_sigmas), 3) batch points + N(0, σ²) for each σ."""
        cfg = self.config
        return torch.cat([self._noisy(self._pick(batch, cfg.general_samples), s) for s in cfg.general_sigmas])

    def step(self) -> ReferenceTimes:
        """One optimizer step; returns where its time went."""
        cfg = self.config
        start = _now()
        batch = self._pick(self.points, cfg.batch_points)
        zero, taken = self.zero_level_samples(batch)
        samples = torch.cat([zero, self.general_samples(batch)])
        t_newton = _now()

        levels, grads = value_and_gradient(self.model, samples)
        moved = sample_network(self.model, samples, levels, grads)
        data = self.model(batch).abs().mean()
        t_forward = _now()

        free = moved.detach().requires_grad_(True)
        nearest = torch.cdist(free, batch).min(dim=1).values
        levelset = (nearest - levels.abs()).abs().mean()
        levelset.backward()
        t_distances = _now()

        self.optimizer.zero_grad(set_to_none=True)
        ((moved * free.grad).sum() + cfg.data_weight * data).backward()
        self.optimizer.step()
        loss = levelset.item() + cfg.data_weight * data.item()  # host synchronisation per step
        end = _now()
        parts = [
            PartTimes(*values)
            for values in zip(
                t_newton - start,
                t_distances - t_forward,
                (t_forward - t_newton) + (end - t_distances),
                end - start,
                strict=True,
            )
        ]
        return ReferenceTimes(wall=parts[0], cpu=parts[1], loss=loss, newton_steps=taken)
