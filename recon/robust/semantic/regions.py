"""Robust-region finding around an initial point (Hamdi & Ghanem): Naive, OIR_B and OIR_W.

A region is an axis-aligned box D = [a, b] in the n-dimensional semantic space. With r = b − a, R = diag(r)⁻¹,
|D| = Π r and the corner bit matrix M ∈ {0,1}^{n×2ⁿ} (M[i, c] = 1 when corner c takes b_i; M̄ = 1 − M), the
integral of f over D is approximated by the trapezoidal rule on the corners, ∫_D f ≈ (|D|/2ⁿ) Σ f_D. Every
step moves a and b against the reference code's closed-form gradients (lr 0.1, α 0.05, β 0.0009, reg 0.1):

* **naive** maximizes the area-weighted integral with a size penalty:
  ∇a = 2(|D|/2ⁿ) R M̄ f_D − reg·r,  ∇b = −2(|D|/2ⁿ) R M f_D + reg·r.
* **oir_b** (black box) minimizes ∫_{C∖D} f − ∫_D f, C = [a − αr/2, b + αr/2] the outer box:
  ∇a = 2(|D|/2ⁿ) R (2 M̄ f_D − M_Cc f_C),  ∇b = 2(|D|/2ⁿ) R (−2 M f_D + M_C f_C).
* **oir_w** (white box) minimizes the outer/inner ratio with the outer frame replaced by a first-order
  expansion in the gradients G_D of f at the corners:
  ∇a = (|D|/2ⁿ)[R M_Dc f_D + β diag(M̄ G_D) + β R s_c],  ∇b = (|D|/2ⁿ)[−R M_D f_D + β diag(M G_D) + β R s].

After every step the box is clipped to the domain and kept at least ``min_width`` wide. All problems of a
batch (several shapes × initial points) advance together, so one call of the score function per step
evaluates every corner of every box.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

METHODS = ("naive", "oir_b", "oir_w")
INITIAL_POINTS = ((130.0, 30.0), (50.0, 20.0), (200.0, 15.0), (310.0, 50.0))
"""The reference's initial (azimuth, elevation) points in degrees."""

ScoreFn = Callable[[torch.Tensor], torch.Tensor]
"""(P, m, n) points → (P, m) scores."""
ScoreGradFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""(P, m, n) points → (P, m) scores and (P, m, n) gradients."""


@dataclass(frozen=True)
class RegionConfig:
    """Settings of the region finders; defaults are the reference's (``test_optimization``)."""

    lr: float = 0.1
    alpha: float = 0.05
    """Outer box margin: C = [a − αr/2, b + αr/2]."""
    beta: float = 0.0009
    """OIR_W: weight of the first-order outer-frame term."""
    reg: float = 0.1
    """Naive: size penalty."""
    steps: int = 800
    init_halfwidth: float = 1e-5
    """Initial box: [θ0 − h, θ0 + h]."""
    min_width: float = 1e-5

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RegionResult:
    """Boxes found for P problems in n dimensions.

    Attributes
    ----------
    method : str
    lower, upper : (P, n) float64
        Final box corners a and b.
    trace_lower, trace_upper : (T + 1, P, n) float64
        Box corners before every step and after the last.
    loss : (T, P) float64
        The method's objective at every step (for naive/oir_b the trapezoidal loss, for oir_w the
        outer/inner ratio (1+α)ⁿ Σf_C / Σf_D − 1).
    """

    method: str
    lower: np.ndarray
    upper: np.ndarray
    trace_lower: np.ndarray
    trace_upper: np.ndarray
    loss: np.ndarray

    def volumes(self) -> np.ndarray:
        """(P,) box volumes Π (b − a)."""
        return np.prod(self.upper - self.lower, axis=1)


def corner_bits(n: int) -> torch.Tensor:
    """M: (n, 2ⁿ) float64, M[i, c] = bit i of c (1: corner c takes the upper bound in dimension i)."""
    codes = torch.arange(2**n)
    return ((codes[None, :] >> torch.arange(n)[:, None]) & 1).double()


def box_corners(lower: torch.Tensor, upper: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """(P, 2ⁿ, n) corners of the boxes [lower, upper] ((P, n) each), ordered like the columns of ``bits``."""
    return lower[:, None, :] + bits.T[None] * (upper - lower)[:, None, :]


def trapezoid_integral(f_corners: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """(P,) trapezoidal estimate (|D|/2ⁿ) Σ f_D of ∫_D f, from (P, 2ⁿ) corner values."""
    return torch.prod(upper - lower, dim=1) / f_corners.shape[1] * f_corners.sum(dim=1)


def clip_boxes(
    lower: torch.Tensor,
    upper: torch.Tensor,
    domain_lower: torch.Tensor,
    domain_upper: torch.Tensor,
    min_width: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes clipped to the domain and at least ``min_width`` wide (shrunk from the top at the domain's end)."""
    lower = torch.minimum(torch.maximum(lower, domain_lower), domain_upper - min_width)
    upper = torch.minimum(torch.maximum(upper, lower + min_width), domain_upper)
    return lower, upper


def find_regions(
    method: str,
    initial: torch.Tensor | np.ndarray,
    domain_lower,
    domain_upper,
    score: ScoreFn,
    score_grad: ScoreGradFn | None = None,
    config: RegionConfig = RegionConfig(),
) -> RegionResult:
    """Grow a robust box around each initial point.

    Parameters
    ----------
    method : {'naive', 'oir_b', 'oir_w'}
    initial : (P, n) float
        Initial points θ0, one per problem.
    domain_lower, domain_upper : (n,) float
        The semantic domain.
    score : ScoreFn
        f at (P, m, n) points → (P, m); problem p's points are scored by problem p's function.
    score_grad : ScoreGradFn, optional
        f and ∇f; required by 'oir_w'.
    config : RegionConfig

    Returns
    -------
    RegionResult
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "oir_w" and score_grad is None:
        raise ValueError("oir_w needs the gradient of the score (score_grad)")
    theta0 = torch.as_tensor(initial, dtype=torch.float64)
    dom_lo = torch.as_tensor(domain_lower, dtype=torch.float64)
    dom_hi = torch.as_tensor(domain_upper, dtype=torch.float64)
    n = theta0.shape[1]
    bits = corner_bits(n)
    lower, upper = clip_boxes(
        theta0 - config.init_halfwidth, theta0 + config.init_halfwidth, dom_lo, dom_hi, config.min_width
    )
    step = {"naive": _naive_step, "oir_b": _oir_b_step, "oir_w": _oir_w_step}[method]
    trace_lo, trace_hi, losses = [lower], [upper], []
    for _ in range(config.steps):
        grad_lo, grad_hi, loss = step(lower, upper, bits, score, score_grad, config)
        lower, upper = clip_boxes(
            lower - config.lr * grad_lo, upper - config.lr * grad_hi, dom_lo, dom_hi, config.min_width
        )
        trace_lo.append(lower)
        trace_hi.append(upper)
        losses.append(loss)
    return RegionResult(
        method=method,
        lower=lower.numpy(),
        upper=upper.numpy(),
        trace_lower=torch.stack(trace_lo).numpy(),
        trace_upper=torch.stack(trace_hi).numpy(),
        loss=torch.stack(losses).numpy() if losses else np.zeros((0, len(theta0))),
    )


def _outer_box(lower, upper, alpha: float):
    half = 0.5 * alpha * (upper - lower)
    return lower - half, upper + half


def _outer_masks(bits: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """M_Cc and M_C: how the outer corners' values enter the gradients of a and b."""
    n = bits.shape[0]
    grow = (1.0 + alpha) ** (n - 1)
    bits_c = 1.0 - bits
    return (
        grow * ((1.0 + 0.5 * alpha) * bits_c + 0.5 * alpha * bits),
        grow * ((1.0 + 0.5 * alpha) * bits + 0.5 * alpha * bits_c),
    )


def _naive_step(lower, upper, bits, score, score_grad, config):
    r = upper - lower
    size = torch.prod(r, dim=1, keepdim=True) / bits.shape[1]  # |D|/2ⁿ
    f_d = score(box_corners(lower, upper, bits)).double()  # (P, 2ⁿ)
    grad_lo = 2.0 * size * ((1.0 - bits) @ f_d.T).T / r - config.reg * r
    grad_hi = 2.0 * size * (-(bits @ f_d.T).T) / r + config.reg * r
    loss = -size[:, 0] * f_d.sum(1) + config.reg * r.norm(dim=1)
    return grad_lo, grad_hi, loss


def _oir_b_step(lower, upper, bits, score, score_grad, config):
    r = upper - lower
    size = torch.prod(r, dim=1, keepdim=True) / bits.shape[1]
    outer_lo, outer_hi = _outer_box(lower, upper, config.alpha)
    corners = torch.cat([box_corners(lower, upper, bits), box_corners(outer_lo, outer_hi, bits)], dim=1)
    values = score(corners).double()
    f_d, f_c = values.split(bits.shape[1], dim=1)
    m_cc, m_c = _outer_masks(bits, config.alpha)
    grad_lo = 2.0 * size * (2.0 * ((1.0 - bits) @ f_d.T) - m_cc @ f_c.T).T / r
    grad_hi = 2.0 * size * (-2.0 * (bits @ f_d.T) + m_c @ f_c.T).T / r
    n = bits.shape[0]
    loss = size[:, 0] * ((1.0 + config.alpha) ** n * f_c.sum(1) - 2.0 * f_d.sum(1))
    return grad_lo, grad_hi, loss


def _oir_w_step(lower, upper, bits, score, score_grad, config):
    n, corners_n = bits.shape
    r = upper - lower
    size = torch.prod(r, dim=1, keepdim=True) / corners_n
    f_d, g_d = score_grad(box_corners(lower, upper, bits))
    f_d, g_d = f_d.double(), g_d.double()  # (P, 2ⁿ), (P, 2ⁿ, n)
    outer_lo, outer_hi = _outer_box(lower, upper, config.alpha)
    f_c = score(box_corners(outer_lo, outer_hi, bits)).double()  # only for the logged ratio
    bits_c = 1.0 - bits
    shrink = 2.0 - (2 * n - 1) * config.beta
    m_dc = shrink * bits_c - config.beta * bits
    m_d = shrink * bits - config.beta * bits_c
    diag_lo = torch.einsum("kc,pck->pk", bits_c, g_d)  # diag(M̄ G_D)
    diag_hi = torch.einsum("kc,pck->pk", bits, g_d)  # diag(M G_D)
    s_c, s = _cross_terms(bits, g_d, r)
    grad_lo = size * ((m_dc @ f_d.T).T / r + config.beta * diag_lo + config.beta * s_c / r)
    grad_hi = size * (-(m_d @ f_d.T).T / r + config.beta * diag_hi + config.beta * s / r)
    loss = (1.0 + config.alpha) ** n * f_c.sum(1) / f_d.sum(1).clamp_min(1e-12) - 1.0
    return grad_lo, grad_hi, loss


def _cross_terms(bits: torch.Tensor, g_d: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """s_c[k] = Σ_{i≠k} r_i ((M̄_i − M_i) ⊙ M̄_k)·G_D[:, i] and s[k] = Σ_{i≠k} r_i ((M_i − M̄_i) ⊙ M_k)·G_D[:, i]."""
    bits_c = 1.0 - bits
    sign = bits_c - bits  # (n, 2ⁿ): M̄_i − M_i
    off = 1.0 - torch.eye(bits.shape[0], dtype=bits.dtype)  # i ≠ k
    # term[p, k, i] = Σ_c sign[i, c] · mask[k, c] · G[p, c, i]
    term_c = torch.einsum("ic,kc,pci->pki", sign, bits_c, g_d)
    term = torch.einsum("ic,kc,pci->pki", -sign, bits, g_d)
    return (term_c * off * r[:, None, :]).sum(-1), (term * off * r[:, None, :]).sum(-1)


def box_iou(lower_a: np.ndarray, upper_a: np.ndarray, lower_b: np.ndarray, upper_b: np.ndarray) -> np.ndarray:
    """(P,) intersection-over-union of paired boxes ((P, n) corners each)."""
    inter = np.prod(np.clip(np.minimum(upper_a, upper_b) - np.maximum(lower_a, lower_b), 0.0, None), axis=1)
    union = np.prod(upper_a - lower_a, axis=1) + np.prod(upper_b - lower_b, axis=1) - inter
    return inter / np.maximum(union, 1e-300)


def domain_volume(domain_lower, domain_upper) -> float:
    """Volume of the semantic domain (36,000 deg² for azimuth × elevation)."""
    return float(math.prod(float(h) - float(l) for l, h in zip(domain_lower, domain_upper, strict=True)))
