"""The decision boundary as a level set: margin function, boundary sampling, sample-network loss.

The boundary of a classifier f at a labelled point (x, y) is the zero level set of the margin

    F(x) = f_r(x) − f_y(x),    r = argmax_{j ≠ y} f_j(x)   (runner-up, recomputed at every evaluation),

so F < 0 ⇔ x is classified correctly. Boundary points are found as in Atzmon et al. (2019): signed-gradient
PGD inside a per-example L∞ box (or normalized-gradient PGD in an L2 ball) drives F across zero, then regula
falsi on the segment back to x finds the root. The points then pass through the sample network of
:mod:`recon.core.levelset` (on flattened images, since that module works on (n, d) points), and the losses move the
boundary away from correct points: :func:`levelset_margin_loss` (robustness, replaces cross-entropy) and
:func:`large_margin_loss` (the geometric SVM, added to cross-entropy).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from recon.core.levelset import sample_network, value_and_gradient


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """F = f_r − f_y : (n,) for logits (n, k) and labels (n,); negative ⇔ correctly classified."""
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.masked_fill(nn.functional.one_hot(labels, logits.shape[1]).bool(), -math.inf)
    return others.max(dim=1).values - true


class MarginFunction(nn.Module):
    """F(x) = f_r(x) − f_y(x) of a classifier as a module mapping flattened images (n, d) to (n,).

    Parameters
    ----------
    classifier : module mapping (n, C, H, W) images to (n, k) logits
    labels : (n,) int64
        The class y of each row; the module is bound to one batch.
    image_shape : (C, H, W)
    """

    def __init__(self, classifier: nn.Module, labels: torch.Tensor, image_shape: tuple[int, ...]):
        super().__init__()
        self.classifier = classifier
        self.labels = labels
        self.image_shape = tuple(image_shape)

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(flat.reshape(-1, *self.image_shape))
        return margin(logits, self.labels)


def regula_falsi(
    fn: Callable[[torch.Tensor], torch.Tensor],
    lo: torch.Tensor,
    hi: torch.Tensor,
    f_lo: torch.Tensor,
    f_hi: torch.Tensor,
    *,
    iters: int,
    tol: float = 1e-5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Roots of a batch of scalar functions bracketed by [lo, hi], by the Illinois variant of regula falsi.

    Plain regula falsi keeps one end fixed for a convex function and converges slowly; halving the stale
    end's value (Illinois) restores superlinear convergence within the same iteration budget.

    Parameters
    ----------
    fn : maps t : (n,) to f(t) : (n,) (one function per row)
    lo, hi : (n,) float
        Bracket ends with opposite signs of ``f_lo`` and ``f_hi``.
    iters : int
        Maximum number of evaluations of ``fn``.
    tol : float
        Stop once every |f(t)| ≤ tol.

    Returns
    -------
    t : (n,) the last estimate per row
    f_t : (n,) f at t
    """
    lo, hi, f_lo, f_hi = lo.clone(), hi.clone(), f_lo.clone(), f_hi.clone()
    t = torch.where(f_lo.abs() <= f_hi.abs(), lo, hi)
    f_t = torch.minimum(f_lo.abs(), f_hi.abs()) * torch.where(
        f_lo.abs() <= f_hi.abs(), f_lo.sign(), f_hi.sign()
    )
    side = torch.zeros_like(lo)  # +1 if hi was kept last time, −1 if lo was kept
    for _ in range(iters):
        if bool((f_t.abs() <= tol).all()):
            break
        denominator = f_hi - f_lo
        t = torch.where(denominator != 0, (lo * f_hi - hi * f_lo) / denominator, 0.5 * (lo + hi))
        f_t = fn(t)
        same_as_lo = torch.sign(f_t) == torch.sign(f_lo)
        lo = torch.where(same_as_lo, t, lo)
        f_lo = torch.where(same_as_lo, f_t, f_lo)
        hi = torch.where(same_as_lo, hi, t)
        f_hi = torch.where(same_as_lo, f_hi, f_t)
        f_hi = torch.where(same_as_lo & (side > 0), 0.5 * f_hi, f_hi)
        f_lo = torch.where(~same_as_lo & (side < 0), 0.5 * f_lo, f_lo)
        side = torch.where(same_as_lo, torch.ones_like(side), -torch.ones_like(side))
    return t, f_t


@dataclass
class BoundarySamples:
    """Points on the decision boundary of a batch, with what the sample network needs.

    Attributes
    ----------
    points : (m, d) float
        Boundary points p (flattened images).
    levels : (m,) float
        F(p; θ0), |levels| < the acceptance threshold.
    grads : (m, d) float
        ∇ₓF(p; θ0).
    index : (m,) int64
        Row of the batch each point belongs to.
    correct : (m,) bool
        Whether that batch example was classified correctly (F(x) < 0).
    """

    points: torch.Tensor
    levels: torch.Tensor
    grads: torch.Tensor
    index: torch.Tensor
    correct: torch.Tensor


@dataclass(frozen=True)
class BoundarySearch:
    """Settings of the PGD + regula falsi boundary search (reference MNIST values in brackets).

    eps_correct : L∞ box radius around correctly classified points [0.4]
    eps_wrong : box radius around misclassified points [0.5]
    eps_base : reference radius that scales the step of correct points [0.3]
    step : signed-gradient step of misclassified points; correct ones take step·eps_correct/eps_base [0.01]
    iters : PGD steps, and the regula falsi budget [40]
    accept : keep boundary points with |F| below this [0.1]
    norm : 'linf' (box, signed-gradient steps) [reference] or 'l2' (ball, normalized-gradient steps); the
        radii and steps are measured in this norm
    """

    eps_correct: float = 0.4
    eps_wrong: float = 0.5
    eps_base: float = 0.3
    step: float = 0.01
    iters: int = 40
    accept: float = 0.1
    norm: str = "linf"


def find_boundary_points(
    classifier: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    search: BoundarySearch,
    generator: torch.Generator | None = None,
) -> BoundarySamples:
    """Boundary points near each image: PGD across F = 0 inside the box, then regula falsi back to x.

    Parameters
    ----------
    images : (n, C, H, W) float in [0, 1]
    labels : (n,) int64

    Returns the samples of the examples whose PGD crossed the boundary and whose root has |F| < accept.
    """
    shape = tuple(images.shape[1:])
    fn = MarginFunction(classifier, labels, shape)
    x = images.detach().reshape(len(images), -1)
    with torch.no_grad():
        f_x = fn(x)
    correct = f_x < 0
    x_adv = _pgd_across(fn, x, correct, search, generator)
    with torch.no_grad():
        f_adv = fn(x_adv)
    crossed = (f_adv >= 0) == correct
    rows = torch.nonzero(crossed).squeeze(1)
    roots = _roots_on_segments(
        classifier, labels[rows], shape, x_adv[rows], x[rows], f_adv[rows], f_x[rows], search
    )
    values, grads = value_and_gradient(MarginFunction(classifier, labels[rows], shape), roots)
    keep = values.abs() < search.accept
    return BoundarySamples(
        points=roots[keep],
        levels=values[keep],
        grads=grads[keep],
        index=rows[keep],
        correct=correct[rows][keep],
    )


def find_correct_boundary_points(
    classifier: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    search: BoundarySearch,
    generator: torch.Generator | None = None,
) -> BoundarySamples:
    """:func:`find_boundary_points` of the correctly classified images only; ``index`` rows the whole batch.

    Parameters
    ----------
    images : (n, C, H, W) float in [0, 1]
    labels : (n,) int64
    """
    with torch.no_grad():
        rows = torch.nonzero(classifier(images).argmax(dim=1) == labels).squeeze(1)
    if len(rows) == 0:
        d = images[0].numel() if len(images) else 0
        empty = images.new_zeros((0, d))
        none = torch.zeros(0, dtype=torch.int64, device=images.device)
        return BoundarySamples(empty, empty[:, 0], empty, none, none.bool())
    samples = find_boundary_points(classifier, images[rows], labels[rows], search, generator)
    return replace(samples, index=rows[samples.index])


def _pgd_across(
    fn: MarginFunction,
    x: torch.Tensor,
    correct: torch.Tensor,
    search: BoundarySearch,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """(n, d) points in each example's box (or ball) where PGD ascended F (correct points) or descended it."""
    if search.norm not in ("linf", "l2"):
        raise ValueError(f"unknown boundary-search norm {search.norm!r}; use linf or l2")
    eps = torch.where(correct, search.eps_correct, search.eps_wrong)[:, None]
    step = torch.where(correct, search.step * search.eps_correct / search.eps_base, search.step)[:, None]
    direction = torch.where(correct, 1.0, -1.0)[:, None]
    x_adv = _random_start(x, eps, search.norm, generator)
    for _ in range(search.iters):
        _, grad = value_and_gradient(fn, x_adv)
        x_adv = _project(x_adv + step * _unit_step(direction * grad, search.norm), x, eps, search.norm)
    return x_adv


def _unit_step(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest ascent direction of unit length in the norm: sign(g) (L∞) or g/‖g‖₂ (L2), per row of (n, d)."""
    if norm == "linf":
        return torch.sign(grad)
    return grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """(n, d) points of the radius-eps (n, 1) box or ball around x nearest to x_adv, clipped to [0, 1]."""
    if norm == "linf":
        return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
    delta = x_adv - x
    delta = delta * (eps / delta.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
    return (x + delta).clamp(0.0, 1.0)


def _random_start(
    x: torch.Tensor, eps: torch.Tensor, norm: str, generator: torch.Generator | None
) -> torch.Tensor:
    """x plus noise uniform in the (n, 1) radius-eps box (L∞, the reference) or of uniform radius in the ball."""
    if norm == "linf":
        noise = 2.0 * torch.rand(x.shape, generator=generator, device="cpu") - 1.0
    else:
        noise = torch.randn(x.shape, generator=generator, device="cpu")
        radius = torch.rand((len(x), 1), generator=generator, device="cpu")
        noise = radius * noise / noise.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (x + eps * noise.to(x.device)).clamp(0.0, 1.0)


def _roots_on_segments(
    classifier: nn.Module,
    labels: torch.Tensor,
    shape: tuple[int, ...],
    start: torch.Tensor,
    end: torch.Tensor,
    f_start: torch.Tensor,
    f_end: torch.Tensor,
    search: BoundarySearch,
) -> torch.Tensor:
    """(m, d) roots of F on the segments start + t(end − start), t ∈ [0, 1]."""
    if len(labels) == 0:
        return start
    fn = MarginFunction(classifier, labels, shape)

    def along(t: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return fn(start + t[:, None] * (end - start))

    zeros, ones = torch.zeros_like(f_start), torch.ones_like(f_start)
    t, _ = regula_falsi(along, zeros, ones, f_start, f_end, iters=search.iters)
    return start + t[:, None] * (end - start)


def levelset_margin_loss(
    classifier: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    samples: BoundarySamples,
    *,
    eps_correct: float,
    eps_wrong: float,
    correct_weight: float = 1.0,
) -> torch.Tensor:
    """The level-set margin loss (Atzmon et al. 2019), averaged over the batch of n images.

    With p(θ) the sample network of each boundary point and k = argmax_j |g_j| the coordinate along which
    p(θ) moves most, d = |x_k − p_k(θ)| is the (L∞-flavoured) distance from x to its boundary point:

        correct x:  w · max(0, ε_c − d)    (push the boundary at least ε_c away)
        wrong x:        max(0, ε_w + d)    (always active: pull the boundary across x)

    The loss is 0 (with a graph to θ) when no boundary point was found.
    """
    if len(samples.index) == 0:
        return _zero_with_graph(classifier)
    distance = sample_distances(classifier, images, labels, samples, "star")
    hinge = torch.where(
        samples.correct,
        correct_weight * torch.relu(eps_correct - distance),
        torch.relu(eps_wrong + distance),
    )
    return hinge.sum() / len(images)


DISTANCES = ("l2", "linf", "star")


def sample_distances(
    classifier: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    samples: BoundarySamples,
    norm: str,
) -> torch.Tensor:
    """(m,) distances from each sample's image x to its boundary point p(θ) moved by the sample network.

    At the parameters θ0 the samples were found with, p(θ0) = p, so the values are the distances to the
    sampled boundary points; their gradient in θ is the first-order motion of the boundary along ∇ₓF.

    Parameters
    ----------
    images : (n, C, H, W) float
    labels : (n,) int64
    samples : boundary samples of that batch (``samples.index`` rows ``images``)
    norm : 'l2' (‖x − p‖₂), 'linf' (‖x − p‖_∞) or 'star' (|x_k − p_k| with k = argmax_j |∇ₓF_j|, the
        reference's L∞-flavoured distance along the coordinate where p(θ) moves most)
    """
    if norm not in DISTANCES:
        raise ValueError(f"unknown distance {norm!r}; choose one of {', '.join(DISTANCES)}")
    shape = tuple(images.shape[1:])
    fn = MarginFunction(classifier, labels[samples.index], shape)
    moved = sample_network(fn, samples.points, samples.levels, samples.grads)
    x = images.reshape(len(images), -1)[samples.index]
    if norm == "star":
        k = samples.grads.abs().argmax(dim=1, keepdim=True)
        return (x.gather(1, k) - moved.gather(1, k)).abs().squeeze(1)
    if norm == "l2":
        return (x - moved).norm(dim=1)
    return (x - moved).abs().amax(dim=1)


def large_margin_loss(
    classifier: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    samples: BoundarySamples,
    *,
    margin: float,
    norm: str = "l2",
) -> torch.Tensor:
    """The geometric-SVM margin term: Σ max(0, margin − d) over correct samples, divided by the batch size n.

    d is the ``norm`` distance (:func:`sample_distances`) from a correctly classified x to its boundary
    sample; misclassified examples and examples without a sample contribute 0 (cross-entropy, added by the
    caller, handles them). The loss is 0 with a graph to θ when there is nothing to push.
    """
    correct = samples.correct
    if not bool(correct.any()):
        return _zero_with_graph(classifier)
    kept = BoundarySamples(*(getattr(samples, f)[correct] for f in BoundarySamples.__dataclass_fields__))
    distance = sample_distances(classifier, images, labels, kept, norm)
    return torch.relu(margin - distance).sum() / len(images)


def _zero_with_graph(classifier: nn.Module) -> torch.Tensor:
    return 0.0 * sum(p.sum() for p in classifier.parameters())
