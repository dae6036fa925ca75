"""Wasserstein-1 distance between point sets: Kantorovich–Rubinstein dual with a 1-Lipschitz critic,
and the exact value by optimal assignment on subsets small enough to solve.

KR duality: W1(μ, ν) = sup_{Lip(f) ≤ 1} E_μ f − E_ν f. Any critic with certified bound L gives the lower
bound (E_μ f − E_ν f)/L; on the very points it is evaluated on, this can never exceed the exact W1 of
those two empirical measures (each matched pair contributes f(a) − f(b) ≤ L‖a − b‖).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist
from scipy.stats import norm as normal_dist

from recon.lipschitz.network import LipschitzMLP, MLPConfig, module_lipschitz_bound


def exact_w1(a: np.ndarray, b: np.ndarray) -> float:
    """Exact W1 between two equal-size uniform point sets (m, d) by optimal assignment (Euclidean cost)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"exact W1 needs equal-size sets of the same dimension, got {a.shape} and {b.shape}")
    cost = cdist(a, b)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def exact_w1_1d(a: np.ndarray, b: np.ndarray) -> float:
    """Exact W1 between two equal-size 1-D samples (m,) or (m, 1): mean |sorted(a) − sorted(b)|."""
    a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
    if a.shape != b.shape:
        raise ValueError("exact 1-D W1 needs equal-size samples")
    return float(np.abs(a - b).mean())


def gaussian_w1(dim: int, shift: float, std_a: float, std_b: float) -> float:
    """Exact W1 between N(0, std_a² I) and N(shift·e₁, std_b² I).

    Known in closed form for equal standard deviations (a translation: W1 = |shift|) and in 1-D
    (W1 = E|shift + (std_b − std_a) Z|, the folded-normal mean).
    """
    if math.isclose(std_a, std_b):
        return abs(shift)
    if dim != 1:
        raise ValueError("the closed form needs dim = 1 or equal standard deviations")
    mu, tau = abs(shift), abs(std_b - std_a)
    return float(
        tau * math.sqrt(2.0 / math.pi) * math.exp(-(mu**2) / (2 * tau**2))
        + mu * (1 - 2 * normal_dist.cdf(-mu / tau))
    )


@dataclass
class CriticConfig:
    """Critic network and training for the KR dual."""

    widths: tuple[int, ...] = (128, 128)
    """Hidden widths of the GroupSort/Björck critic."""
    group_size: int = 2
    """GroupSort group size."""
    bjorck_iters: int = 20
    """Björck iterations per forward pass."""
    steps: int = 1500
    """Adam steps."""
    batch: int = 512
    """Points per set per step."""
    lr: float = 5e-3
    """Adam learning rate (decays by cosine to 5% of it)."""
    seed: int = 0


@dataclass
class W1Estimate:
    """Result of a KR dual estimate."""

    estimate: float
    """(mean f(A) − mean f(B)) / L on all points: a certified lower bound for these two empirical sets."""
    raw: float
    """mean f(A) − mean f(B) before the division by L."""
    lipschitz_bound: float
    """Certified ℓ2 Lipschitz bound L of the trained critic (≈ 1)."""
    history: list[float] = field(default_factory=list)
    """Batch objective (mean f(A) − mean f(B)) every 10 steps."""


def _scale(a: np.ndarray, b: np.ndarray) -> float:
    """A length that makes both sets O(1): the critic's optimizer then needs no tuning per data set."""
    both = np.concatenate([a, b])
    return float(np.linalg.norm(both - both.mean(axis=0), axis=1).max()) or 1.0


def fit_critic(
    a: np.ndarray, b: np.ndarray, config: CriticConfig | None = None
) -> tuple[torch.nn.Module, W1Estimate]:
    """Train a 1-Lipschitz critic to maximize E_A f − E_B f on point sets (n, d) and (m, d).

    Coordinates are divided by one common length s before training (and f scaled back by s), which
    keeps the critic exactly 1-Lipschitz in the original units.

    Returns
    -------
    critic : callable (k, d) float tensor -> (k,)
        The trained potential in the original units.
    estimate : W1Estimate
    """
    config = config or CriticConfig()
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError("point sets must be (n, d) and (m, d) arrays of the same dimension d")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    s = _scale(a, b)
    center = np.concatenate([a, b]).mean(axis=0)
    ta = torch.from_numpy((a - center) / s)
    tb = torch.from_numpy((b - center) / s)
    net = LipschitzMLP(
        MLPConfig(
            in_dim=a.shape[1],
            widths=config.widths,
            out_dim=1,
            layer="bjorck",
            activation="groupsort",
            group_size=config.group_size,
            bjorck_iters=config.bjorck_iters,
        )
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps, eta_min=0.05 * config.lr)
    history = []
    for step in range(config.steps):
        batch_a = ta[torch.randint(len(ta), (config.batch,), generator=generator)]
        batch_b = tb[torch.randint(len(tb), (config.batch,), generator=generator)]
        gap = net(batch_a).mean() - net(batch_b).mean()
        optimizer.zero_grad()
        (-gap).backward()
        optimizer.step()
        schedule.step()
        if step % 10 == 0:
            history.append(float(gap.detach()) * s)
    net.eval()
    bound = module_lipschitz_bound(net, "l2")
    center_t = torch.from_numpy(center)

    def critic(x: torch.Tensor) -> torch.Tensor:
        return s * net((x.float() - center_t) / s).squeeze(1)

    with torch.no_grad():
        raw = float(critic(torch.from_numpy(a)).double().mean() - critic(torch.from_numpy(b)).double().mean())
    return critic, W1Estimate(estimate=raw / bound, raw=raw, lipschitz_bound=bound, history=history)


def critic_gap(critic, a: np.ndarray, b: np.ndarray, lipschitz_bound: float) -> float:
    """(mean f(a) − mean f(b)) / L for a trained critic on (m, d) sets: a lower bound on their W1."""
    with torch.no_grad():
        fa = critic(torch.as_tensor(np.asarray(a, dtype=np.float32))).double().mean()
        fb = critic(torch.as_tensor(np.asarray(b, dtype=np.float32))).double().mean()
    return float(fa - fb) / lipschitz_bound
