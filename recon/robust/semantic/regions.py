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
batch (several shapes × initial points) and all finders advance together, so one call of the score function
per step (and one of its gradient, for OIR_W) evaluates every corner of every box.

**The check.** The corner rule judges a box by its 2ⁿ corners only, so a box can grow across a valley of
failing views narrower than one step of a face. Each found box is therefore checked on a grid of its interior
(spacing at most ``check_step`` per dimension, faces included): it *passes* when every grid view scores at
least ``check_threshold``. A box that fails is shrunk on the same grid lines (:func:`shrink_on_grid`) until
no failing grid view is left inside; this *verified* box is the found box where the check passed. The check
only sees valleys wider than the grid step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from recon.errors import ConfigError

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
    """Step size of the box corners."""
    alpha: float = 0.05
    """Outer box margin: C = [a − αr/2, b + αr/2]."""
    beta: float = 0.0009
    """OIR_W: weight of the first-order outer-frame term."""
    reg: float = 0.1
    """Naive: size penalty."""
    steps: int = 800
    """Steps of each region finder."""
    init_halfwidth: float = 1e-5
    """Initial box: [θ0 − h, θ0 + h]."""
    min_width: float = 1e-5
    """Smallest box width (degrees)."""
    check_step: float = 3.0
    """Grid step (degrees) of the check of each found box."""
    check_threshold: float = 0.5
    """Score every grid view of a verified box reaches."""

    def validate(self) -> None:
        """Raise ConfigError for settings no finder can use."""
        weights = {"alpha": self.alpha, "beta": self.beta, "reg": self.reg}
        if not all(math.isfinite(v) and v >= 0 for v in weights.values()):
            raise ConfigError(f"alpha, beta and reg must be finite and >= 0, got {weights}")
        if not all(math.isfinite(v) and v > 0 for v in (self.lr, self.init_halfwidth, self.min_width)):
            raise ConfigError("lr, the initial half-width and the minimum width must be positive")
        if self.steps < 1:
            raise ConfigError(f"--steps must be positive, got {self.steps}")
        if not (math.isfinite(self.check_step) and self.check_step > 0):
            raise ConfigError(f"--check-step must be positive, got {self.check_step}")
        if not (math.isfinite(self.check_threshold) and 0.0 <= self.check_threshold <= 1.0):
            raise ConfigError(f"--check-threshold must be within 0..1, got {self.check_threshold}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BoxCheck:
    """The grid check of P boxes in n dimensions (module docstring).

    Attributes
    ----------
    passed : (P,) bool
        Every grid view of the found box scores at least the threshold.
    min_score : (P,) float
        Lowest score on the found box's grid.
    low_share : (P,) float
        Share of the found box's grid views below the threshold.
    views : (P,) int
        Grid views scored per box.
    lower, upper : (P, n) float
        The verified boxes: the found box where it passed, else the box shrunk on its grid lines until no grid
        view inside fails (lower = upper at the grid point nearest θ0 when that one fails).
    """

    passed: np.ndarray
    min_score: np.ndarray
    low_share: np.ndarray
    views: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def volumes(self) -> np.ndarray:
        """(P,) verified box volumes."""
        return np.prod(self.upper - self.lower, axis=1)


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
    check : BoxCheck
        The grid check of the final boxes and the verified boxes.
    """

    method: str
    lower: np.ndarray
    upper: np.ndarray
    trace_lower: np.ndarray
    trace_upper: np.ndarray
    loss: np.ndarray
    check: BoxCheck

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
    """Grow a robust box around each initial point with one finder, then check it (:func:`find_all_regions`
    with one method)."""
    return find_all_regions((method,), initial, domain_lower, domain_upper, score, score_grad, config)[method]


def find_all_regions(
    methods: tuple[str, ...],
    initial: torch.Tensor | np.ndarray,
    domain_lower,
    domain_upper,
    score: ScoreFn,
    score_grad: ScoreGradFn | None = None,
    config: RegionConfig = RegionConfig(),
) -> dict[str, RegionResult]:
    """Grow a robust box around each initial point with each finder, all finders in lockstep, and check the
    found boxes on a grid (:func:`check_boxes`).

    Every step scores the corners of every box of every finder with one call of ``score`` and, for oir_w, one
    call of ``score_grad``; the checks of all finders' boxes are one more call.

    Parameters
    ----------
    methods : names from METHODS
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
    dict method → RegionResult
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method {unknown or methods!r}; choose from {', '.join(METHODS)}")
    if "oir_w" in methods and score_grad is None:
        raise ValueError("oir_w needs the gradient of the score (score_grad)")
    config.validate()
    theta0 = torch.as_tensor(initial, dtype=torch.float64)
    dom_lo = torch.as_tensor(domain_lower, dtype=torch.float64)
    dom_hi = torch.as_tensor(domain_upper, dtype=torch.float64)
    bits = corner_bits(theta0.shape[1])
    start = clip_boxes(
        theta0 - config.init_halfwidth, theta0 + config.init_halfwidth, dom_lo, dom_hi, config.min_width
    )
    boxes = dict.fromkeys(methods, start)
    traces = {m: ([start[0]], [start[1]], []) for m in methods}
    for _ in range(config.steps):
        queries = {m: _queries(m, *boxes[m], bits, config.alpha) for m in methods}
        values = _score_together(score, [plain for plain, _ in queries.values()])
        needs_grad = [m for m in methods if queries[m][1] is not None]
        grads = dict.fromkeys(methods, (None, None))
        if needs_grad:
            f, g = score_grad(torch.cat([queries[m][1] for m in needs_grad], dim=1))
            sizes = [queries[m][1].shape[1] for m in needs_grad]
            pairs = zip(f.double().split(sizes, 1), g.double().split(sizes, 1), strict=True)
            grads |= dict(zip(needs_grad, pairs, strict=True))
        for m, f in zip(methods, values, strict=True):
            grad_lo, grad_hi, loss = _UPDATES[m](*boxes[m], bits, f, *grads[m], config)
            lower, upper = boxes[m]
            boxes[m] = clip_boxes(
                lower - config.lr * grad_lo, upper - config.lr * grad_hi, dom_lo, dom_hi, config.min_width
            )
            traces[m][0].append(boxes[m][0])
            traces[m][1].append(boxes[m][1])
            traces[m][2].append(loss)
    checks = check_boxes(
        score, [boxes[m] for m in methods], theta0, config.check_step, config.check_threshold
    )
    return {
        m: RegionResult(
            method=m,
            lower=boxes[m][0].numpy(),
            upper=boxes[m][1].numpy(),
            trace_lower=torch.stack(traces[m][0]).numpy(),
            trace_upper=torch.stack(traces[m][1]).numpy(),
            loss=torch.stack(traces[m][2]).numpy(),
            check=check,
        )
        for m, check in zip(methods, checks, strict=True)
    }


def _score_together(score: ScoreFn, point_sets: list[torch.Tensor]) -> list[torch.Tensor]:
    """Score (P, m_k, n) point sets with one call → (P, m_k) float64 values per set."""
    values = score(torch.cat(point_sets, dim=1)).double()
    return list(values.split([points.shape[1] for points in point_sets], dim=1))


def _queries(method: str, lower, upper, bits, alpha: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(P, m, n) points a step of ``method`` scores, and (P, 2ⁿ, n) points it scores with gradient (or None)."""
    inner = box_corners(lower, upper, bits)
    if method == "naive":
        return inner, None
    outer = box_corners(*_outer_box(lower, upper, alpha), bits)
    if method == "oir_b":
        return torch.cat([inner, outer], dim=1), None
    return outer, inner  # oir_w: ∇f at the inner corners; the outer ones only for the logged ratio


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


def _naive_update(lower, upper, bits, f_d, f_grad, g_grad, config):
    r = upper - lower
    size = torch.prod(r, dim=1, keepdim=True) / bits.shape[1]  # |D|/2ⁿ
    grad_lo = 2.0 * size * ((1.0 - bits) @ f_d.T).T / r - config.reg * r
    grad_hi = 2.0 * size * (-(bits @ f_d.T).T) / r + config.reg * r
    loss = -size[:, 0] * f_d.sum(1) + config.reg * r.norm(dim=1)
    return grad_lo, grad_hi, loss


def _oir_b_update(lower, upper, bits, values, f_grad, g_grad, config):
    r = upper - lower
    size = torch.prod(r, dim=1, keepdim=True) / bits.shape[1]
    f_d, f_c = values.split(bits.shape[1], dim=1)
    m_cc, m_c = _outer_masks(bits, config.alpha)
    grad_lo = 2.0 * size * (2.0 * ((1.0 - bits) @ f_d.T) - m_cc @ f_c.T).T / r
    grad_hi = 2.0 * size * (-2.0 * (bits @ f_d.T) + m_c @ f_c.T).T / r
    n = bits.shape[0]
    loss = size[:, 0] * ((1.0 + config.alpha) ** n * f_c.sum(1) - 2.0 * f_d.sum(1))
    return grad_lo, grad_hi, loss


def _oir_w_update(lower, upper, bits, f_c, f_d, g_d, config):
    """f_c: (P, 2ⁿ) outer-corner values; f_d, g_d: (P, 2ⁿ) inner-corner values and (P, 2ⁿ, n) gradients."""
    n, corners_n = bits.shape
    r = upper - lower
    size = torch.prod(r, dim=1, keepdim=True) / corners_n
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


_UPDATES = {"naive": _naive_update, "oir_b": _oir_b_update, "oir_w": _oir_w_update}
"""method → (lower, upper, bits, values, values with gradient, gradients, config) → (∇a, ∇b, loss)."""


def _cross_terms(bits: torch.Tensor, g_d: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """s_c[k] = Σ_{i≠k} r_i ((M̄_i − M_i) ⊙ M̄_k)·G_D[:, i] and s[k] = Σ_{i≠k} r_i ((M_i − M̄_i) ⊙ M_k)·G_D[:, i]."""
    bits_c = 1.0 - bits
    sign = bits_c - bits  # (n, 2ⁿ): M̄_i − M_i
    off = 1.0 - torch.eye(bits.shape[0], dtype=bits.dtype)  # i ≠ k
    # term[p, k, i] = Σ_c sign[i, c] · mask[k, c] · G[p, c, i]
    term_c = torch.einsum("ic,kc,pci->pki", sign, bits_c, g_d)
    term = torch.einsum("ic,kc,pci->pki", -sign, bits, g_d)
    return (term_c * off * r[:, None, :]).sum(-1), (term * off * r[:, None, :]).sum(-1)


def box_grid(lower: np.ndarray, upper: np.ndarray, step: float) -> list[np.ndarray]:
    """Grid lines of the box [lower, upper] ((n,) each), at most ``step`` apart: per dimension both faces and
    the multiples of ``step`` between them. Overlapping boxes share their inner lines, so checking nested
    boxes costs little more than checking the largest."""
    return [
        np.concatenate([[lo], step * np.arange(math.floor(lo / step) + 1, math.ceil(hi / step)), [hi]])
        for lo, hi in zip(lower.tolist(), upper.tolist(), strict=True)
    ]


def check_boxes(
    score: ScoreFn,
    box_sets: list[tuple[torch.Tensor, torch.Tensor]],
    anchor: torch.Tensor,
    step: float,
    threshold: float,
) -> list[BoxCheck]:
    """Check K sets of P boxes on their grids (:func:`box_grid`) with one call of ``score``, each distinct
    view of a problem scored once.

    Parameters
    ----------
    score : ScoreFn
    box_sets : K pairs of (P, n) lower and upper corners; box p of every set belongs to problem p
    anchor : (P, n)
        The point each shrinking box keeps (the initial point θ0).
    step, threshold : float
        Grid step and the score every grid view of a verified box reaches.

    Returns
    -------
    list of K BoxCheck
    """
    problems, n = anchor.shape
    grids = [[box_grid(lo[p].numpy(), hi[p].numpy(), step) for lo, hi in box_sets] for p in range(problems)]
    views, inverse = [], []
    for per_problem in grids:
        points = [np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, n) for axes in per_problem]
        unique, index = np.unique(np.concatenate(points), axis=0, return_inverse=True)
        views.append(unique)
        inverse.append(np.split(index.reshape(-1), np.cumsum([len(x) for x in points])[:-1]))
    longest = max(len(v) for v in views)
    # every problem scores the same number of views, so the short ones repeat a view
    padded = np.stack([np.concatenate([v, np.repeat(v[:1], longest - len(v), axis=0)]) for v in views])
    values = score(torch.from_numpy(padded)).double().numpy()
    checks = []
    for k in range(len(box_sets)):
        rows = []
        for p in range(problems):
            axes = grids[p][k]
            grid_values = values[p, inverse[p][k]].reshape([len(axis) for axis in axes])
            failing = grid_values < threshold
            lower, upper = shrink_on_grid(axes, failing, anchor[p].numpy())
            rows.append((not failing.any(), grid_values.min(), failing.mean(), failing.size, lower, upper))
        passed, low, share, count, lower, upper = (np.array(column) for column in zip(*rows, strict=True))
        checks.append(BoxCheck(passed, low, share, count, lower, upper))
    return checks


def shrink_on_grid(
    axes: list[np.ndarray], failing: np.ndarray, anchor: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The largest-found sub-box on the grid lines ``axes`` with no failing grid point, around ``anchor``.

    Greedy: while a failing grid point is inside, the one nearest the anchor is cut off by moving one face to
    the grid line next to it (on the anchor's side), the face that keeps the most volume. The grid point
    nearest the anchor stays inside; if it fails itself, the box is that point.

    Parameters
    ----------
    axes : n arrays (G_i,)
        Increasing grid lines per dimension.
    failing : (G_1, …, G_n) bool
    anchor : (n,) float

    Returns
    -------
    lower, upper : (n,) float
    """
    centre = np.array([int(np.abs(axis - a).argmin()) for axis, a in zip(axes, anchor, strict=True)])
    lo, hi = np.zeros(len(axes), dtype=int), np.array([len(axis) - 1 for axis in axes])
    if failing[tuple(centre)]:
        lo, hi = centre, centre
    while not failing[tuple(centre)]:
        bad = np.argwhere(failing[tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))]) + lo
        if len(bad) == 0:
            break
        coords = np.stack([axis[bad[:, i]] for i, axis in enumerate(axes)], axis=1)
        nearest = bad[np.argmin(((coords - anchor) ** 2).sum(axis=1))]
        best = None
        for i in np.flatnonzero(nearest != centre):
            new_lo, new_hi = lo.copy(), hi.copy()
            if nearest[i] > centre[i]:
                new_hi[i] = nearest[i] - 1
            else:
                new_lo[i] = nearest[i] + 1
            kept = (
                math.prod(axis[b] - axis[a] for axis, a, b in zip(axes, new_lo, new_hi, strict=True)),
                math.prod(new_hi - new_lo + 1),
            )
            if best is None or kept > best[0]:
                best = (kept, new_lo, new_hi)
        lo, hi = best[1], best[2]
    return (
        np.array([axis[a] for axis, a in zip(axes, lo, strict=True)]),
        np.array([axis[b] for axis, b in zip(axes, hi, strict=True)]),
    )


def box_iou(lower_a: np.ndarray, upper_a: np.ndarray, lower_b: np.ndarray, upper_b: np.ndarray) -> np.ndarray:
    """(P,) intersection-over-union of paired boxes ((P, n) corners each)."""
    inter = np.prod(np.clip(np.minimum(upper_a, upper_b) - np.maximum(lower_a, lower_b), 0.0, None), axis=1)
    union = np.prod(upper_a - lower_a, axis=1) + np.prod(upper_b - lower_b, axis=1) - inter
    return inter / np.maximum(union, 1e-300)


def domain_volume(domain_lower, domain_upper) -> float:
    """Volume of the semantic domain (36,000 deg² for azimuth × elevation)."""
    return float(math.prod(float(h) - float(l) for l, h in zip(domain_lower, domain_upper, strict=True)))
