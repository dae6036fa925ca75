"""Lipschitz building blocks: GroupSort activations and norm-constrained linear layers.

Every constrained layer computes an *effective* weight in its forward pass and can report the exact
operator norm of that weight (:meth:`lipschitz_bound`), in the ℓ2 norm (largest singular value, from an
SVD in float64) or the ℓ∞ norm (largest row ℓ1 norm). The certificate of a network is the product of
these numbers, never the value a layer was *meant* to have: finite Björck iterations and power
iterations are approximations, and the certificate must not depend on them having converged.
"""

from __future__ import annotations

import abc
import math

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("l2", "linf")
"""Input/output norms a bound can be stated in."""


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r} (use l2 or linf)")


def operator_norm(weight: torch.Tensor, norm: str = "l2") -> float:
    """Exact operator norm of an (out, in) matrix: σ_max for ``l2``, max row ℓ1 norm for ``linf``."""
    _check_norm(norm)
    w = weight.detach().double()
    if norm == "l2":
        return float(torch.linalg.matrix_norm(w, ord=2))
    return float(w.abs().sum(dim=1).max())


class GroupSort(nn.Module):
    """Sort the features of (n, C) inputs in ascending order inside consecutive groups of ``group_size``.

    A permutation of its input at every point, hence 1-Lipschitz in every ℓp norm and gradient-norm
    preserving (‖Jᵀg‖ = ‖g‖), unlike ReLU. ``group_size = 2`` is MaxMin; ``group_size = C`` is FullSort.
    """

    def __init__(self, group_size: int = 2):
        super().__init__()
        if group_size < 1:
            raise ValueError("group_size must be >= 1")
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, channels = x.shape
        if channels % self.group_size:
            raise ValueError(f"{channels} features do not split into groups of {self.group_size}")
        grouped = x.reshape(n, channels // self.group_size, self.group_size)
        return grouped.sort(dim=-1).values.reshape(n, channels)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


class MaxMin(GroupSort):
    """GroupSort with groups of two: each pair (a, b) becomes (min, max)."""

    def __init__(self):
        super().__init__(group_size=2)

    def extra_repr(self) -> str:
        return ""


def bjorck_orthonormalize(weight: torch.Tensor, iters: int = 20, beta: float = 0.5) -> torch.Tensor:
    """Order-1 Björck iterations W ← (1 + β)W − β W WᵀW from a safely pre-scaled (out, in) matrix.

    The matrix is first divided by its Frobenius norm (≥ σ_max), so every singular value starts in
    (0, 1]; σ ↦ (1 + β)σ − βσ³ maps [0, 1] into [0, 1] for β ≤ 0.5, so σ_max ≤ 1 holds after any number
    of iterations (up to rounding) and the singular values approach 1. Differentiable: gradients flow
    through every iteration. The smaller Gram matrix is used (WᵀW or WWᵀ), which gives the same result.
    """
    if not 0.0 < beta <= 0.5:
        raise ValueError("beta must be in (0, 0.5]")
    w = weight / weight.norm().clamp_min(1e-12)
    tall = w.shape[0] >= w.shape[1]
    for _ in range(iters):
        w = (1.0 + beta) * w - beta * (w @ (w.T @ w) if tall else (w @ w.T) @ w)
    return w


class _ConstrainedLinear(nn.Module, abc.ABC):
    """An affine layer x ↦ W̃x + b whose effective weight W̃ is computed from a free parameter."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.orthogonal_(self.weight)

    @abc.abstractmethod
    def effective_weight(self) -> torch.Tensor:
        """The (out, in) weight ``forward`` uses, computed from the free parameter."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)

    @torch.no_grad()
    def lipschitz_bound(self, norm: str = "l2") -> float:
        """Exact operator norm of the effective weight used by ``forward`` (in eval mode)."""
        return operator_norm(self.effective_weight(), norm)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )


class BjorckLinear(_ConstrainedLinear):
    """Linear layer with a Björck-orthonormalized weight (ℓ2 operator norm ≤ 1), recomputed each forward.

    Parameters
    ----------
    in_features, out_features : int
    iters : int
        Björck iterations (order 1, β = ``beta``); backpropagation goes through all of them.
    beta : float
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, iters: int = 20, beta: float = 0.5
    ):
        super().__init__(in_features, out_features, bias)
        self.iters = iters
        self.beta = beta

    def effective_weight(self) -> torch.Tensor:
        return bjorck_orthonormalize(self.weight, self.iters, self.beta)


def project_rows_l1_ball(weight: torch.Tensor, radius: float = 1.0) -> torch.Tensor:
    """Euclidean projection of each row of an (out, in) matrix onto the ℓ1 ball of ``radius``.

    Sort-based algorithm: with u = |w| sorted descending and S_k its partial sums, the threshold is
    τ = (S_ρ − r)/ρ for the largest ρ with u_ρ > (S_ρ − r)/ρ; rows already inside the ball are kept.
    Piecewise linear, so it is differentiable almost everywhere and can sit inside ``forward``.
    """
    magnitude = weight.abs()
    inside = magnitude.sum(dim=1, keepdim=True) <= radius
    u = magnitude.sort(dim=1, descending=True).values
    ks = torch.arange(1, weight.shape[1] + 1, device=weight.device, dtype=weight.dtype)
    thresholds = (u.cumsum(dim=1) - radius) / ks
    rho = (u > thresholds).sum(dim=1, keepdim=True).clamp_min(1)
    tau = thresholds.gather(1, rho - 1).clamp_min(0.0)
    projected = weight.sign() * (magnitude - tau).clamp_min(0.0)
    return torch.where(inside, weight, projected)


class LInfLinear(_ConstrainedLinear):
    """Linear layer whose rows are projected onto the unit ℓ1 ball in ``forward``: ‖W̃‖_{∞→∞} ≤ 1."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        with torch.no_grad():
            # Start inside the ball with a useful scale rather than on a corner of it.
            self.weight.mul_(1.0 / math.sqrt(in_features))

    def effective_weight(self) -> torch.Tensor:
        return project_rows_l1_ball(self.weight)


class SpectralNormLinear(_ConstrainedLinear):
    """Baseline: W̃ = W / σ̂ with σ̂ from power iteration (one step per training forward, as in GANs).

    σ̂ underestimates σ_max until the iteration has converged, so ‖W̃‖₂ may slightly exceed 1; the exact
    :meth:`lipschitz_bound` reports what it really is.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, power_iters: int = 1):
        super().__init__(in_features, out_features, bias)
        self.power_iters = power_iters
        generator = torch.Generator().manual_seed(0)
        u = torch.randn(out_features, generator=generator)
        self.register_buffer("u", u / u.norm())
        self.register_buffer("v", torch.zeros(in_features))
        self._power_iteration(10)

    @torch.no_grad()
    def _power_iteration(self, iters: int) -> None:
        w = self.weight.detach()
        u = self.u
        for _ in range(iters):
            v = F.normalize(w.T @ u, dim=0, eps=1e-12)
            u = F.normalize(w @ v, dim=0, eps=1e-12)
        self.u.copy_(u)
        self.v.copy_(v)

    def effective_weight(self) -> torch.Tensor:
        # Clones: a later training forward updates u and v in place while this graph still needs them.
        sigma = torch.dot(self.u.clone(), self.weight @ self.v.clone())
        return self.weight / sigma.clamp_min(1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._power_iteration(self.power_iters)
        return super().forward(x)


LAYERS: dict[str, type[_ConstrainedLinear]] = {
    "bjorck": BjorckLinear,
    "linf": LInfLinear,
    "spectral": SpectralNormLinear,
}
"""Constrained linear layer types by name."""
