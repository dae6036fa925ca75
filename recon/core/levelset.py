"""Zero-level-set sampling (generalized Newton) and the sample network p(θ).

The sample network is the paper's "fixed linear layer": for a point p on the level c = F(p; θ0),

    p(θ) = p − (F(p; θ) − c) · g / ‖g‖²,    g = ∇ₓF(p; θ0),

where p, c and g are constants (detached). Only F(p; θ) carries gradient, so p(θ0) = p and
∂p/∂θ = −g/‖g‖² · ∂F/∂θ: the level-set point moves with the parameters to first order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MIN_GRAD_SQ = 1e-6
"""Floor on ‖∇F‖² in every Newton/sample-network division (the reference value): no NaN where ∇F ≈ 0."""


def value_and_gradient(model: torch.nn.Module, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """F(p) : (n,) and ∇ₓF(p) : (n, 3), both detached, for points : (n, 3)."""
    with torch.enable_grad():
        p = points.detach().requires_grad_(True)
        values = model(p)
        (grads,) = torch.autograd.grad(values.sum(), p)
    return values.detach(), grads.detach()


@dataclass
class Projection:
    """Result of :func:`project_to_zero_level_set`.

    Attributes
    ----------
    points : (n, 3) float
        Projected points.
    values : (n,) float
        F at the projected points (c in the sample network).
    grads : (n, 3) float
        ∇ₓF at the projected points.
    converged : (n,) bool
        |F| ≤ tol at the returned points.
    steps : int
        Newton steps taken.
    """

    points: torch.Tensor
    values: torch.Tensor
    grads: torch.Tensor
    converged: torch.Tensor
    steps: int


def newton_step(points: torch.Tensor, values: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """One generalized-Newton move p − F(p)·∇F/max(‖∇F‖², MIN_GRAD_SQ) for (n, 3) points."""
    grad_sq = (grads * grads).sum(dim=1).clamp_min(MIN_GRAD_SQ)
    return points - (values / grad_sq)[:, None] * grads


def bounded_newton_step(
    points: torch.Tensor, values: torch.Tensor, grads: torch.Tensor, max_move: float | None
) -> torch.Tensor:
    """A Newton move of (n, 3) points whose length is capped at ``max_move`` (None = uncapped).

    Far from the surface ‖∇F‖ may be tiny and the plain move huge; the cap damps it.
    """
    moved = newton_step(points, values, grads)
    if max_move is None:
        return moved
    delta = moved - points
    length = delta.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return points + delta * (max_move / length).clamp(max=1.0)


def project_to_zero_level_set(
    model: torch.nn.Module,
    points: torch.Tensor,
    *,
    max_steps: int = 10,
    tol: float = 1e-5,
    max_move: float | None = None,
    check_every: int = 1,
) -> Projection:
    """Move (n, 3) points onto F = 0 with per-point generalized Newton steps.

    Converged points (|F| ≤ tol) stop moving; the others take up to ``max_steps`` steps. ``max_move``
    bounds the length of one step.
    Checking convergence needs a host synchronisation; ``check_every`` > 1 checks less often (points
    that converge in between keep taking steps, which leaves them on the zero set).
    """
    p = points.detach()
    values, grads = value_and_gradient(model, p)
    active = values.abs() > tol
    steps = 0
    for steps in range(1, max_steps + 1):  # noqa: B007 - steps is reported
        p = torch.where(active[:, None], bounded_newton_step(p, values, grads, max_move), p)
        values, grads = value_and_gradient(model, p)
        active = values.abs() > tol
        if steps % check_every == 0 and not bool(active.any()):
            break
    else:
        steps = max_steps
    return Projection(points=p, values=values, grads=grads, converged=~active, steps=steps)


def sample_network(
    model: torch.nn.Module,
    points: torch.Tensor,
    levels: torch.Tensor,
    grads: torch.Tensor,
    values: torch.Tensor | None = None,
) -> torch.Tensor:
    """p(θ) : (n, 3) = p − (F(p; θ) − c)·g/‖g‖², differentiable in θ only.

    Parameters
    ----------
    points : (n, 3) float
        Level-set points p (treated as constants).
    levels : (n,) float
        c = F(p; θ0) (constant).
    grads : (n, 3) float
        g = ∇ₓF(p; θ0) (constant).
    values : (n,) float, optional
        F(p; θ) with its graph in θ, when a pass shared with other terms already computed it; else
        ``model(p)`` is evaluated here.
    """
    p, c, g = points.detach(), levels.detach(), grads.detach()
    grad_sq = (g * g).sum(dim=1).clamp_min(MIN_GRAD_SQ)
    f = model(p) if values is None else values
    return p - ((f - c) / grad_sq)[:, None] * g


def gaussian_seeds(
    centers: torch.Tensor, sigma: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(n, 3) points centers + N(0, sigma² I)."""
    noise = torch.randn(centers.shape, generator=generator, device="cpu", dtype=centers.dtype)
    return centers + sigma * noise.to(centers.device)


def uniform_seeds(
    n: int, bound: float, *, device: torch.device | str = "cpu", generator: torch.Generator | None = None
) -> torch.Tensor:
    """(n, 3) points uniform in [-bound, bound]³."""
    u = torch.rand((n, 3), generator=generator, device="cpu")
    return ((2.0 * u - 1.0) * bound).to(device)
