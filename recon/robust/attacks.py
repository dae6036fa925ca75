"""Adversarial attacks in pixel units (images in [0, 1]) under an L∞ or L2 budget ε.

Every attack returns adversarial images inside the ε-ball around x and inside [0, 1]; robust accuracy is
the accuracy on them. All randomness comes from an explicit CPU ``torch.Generator``.

FGSM / FGM: one signed (L∞) or normalized (L2) gradient step of the cross-entropy.
PGD: projected gradient ascent from a random start on the cross-entropy or the margin f_r − f_y, keeping
    per example the iterate with the largest margin (an iterate that fools the model is never lost).
APGD: the step-size-adaptive PGD of Croce & Hein (2020) with momentum and checkpoints, on the
    cross-entropy and on the DLR loss (AutoAttack's lesson: fixed-step PGD on one loss overstates robustness).
APGD-T: APGD on the targeted DLR loss towards each of the top runner-up classes in turn (AutoAttack's
    standard composition: 9 targets, 100 iterations, 1 restart each).
PGD-T: PGD on the targeted margin f_t − f_y from x and from random starts, towards each top runner-up
    class t in turn.
Square: the score-based random search of Andriushchenko et al. (2020), AutoAttack's gradient-free member
    (5,000 queries): it needs only the logits, so a model whose gradients are useless (masked, shattered,
    zero) cannot hide from it the way it hides from every gradient attack above.
DeepFool: minimal perturbation by iterated linearization (L2 or L∞), projected onto the ε-ball.
Universal: one perturbation v for all inputs, accumulated from DeepFool steps (Moosavi-Dezfooli et al. 2017).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.nn import functional

from recon.robust.boundary import margin

NORMS = ("linf", "l2")
ATTACKS = ("fgsm", "pgd", "pgd-margin", "apgd", "apgd-t", "pgd-t", "square", "deepfool", "universal")


# --------------------------------------------------------------------------- norms and projections
def _flat_norm(v: torch.Tensor, norm: str) -> torch.Tensor:
    """(n,) L∞ or L2 norm of each row of (n, ...) tensors."""
    flat = v.reshape(len(v), -1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)


def _per_row(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(n,) values reshaped to broadcast against (n, ...) tensors."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """The point of the ε-ball around x (and of [0, 1]) nearest to x_adv in the L∞ case; for L2 the ball
    projection followed by clipping (clipping only shrinks the perturbation, so it stays in the ball)."""
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        length = _flat_norm(delta, "l2").clamp_min(1e-12)
        delta = delta * _per_row((eps / length).clamp(max=1.0), delta)
    return (x + delta).clamp(0.0, 1.0)


def _ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """sign(g) for L∞, g/‖g‖₂ for L2: the steepest-ascent unit step."""
    if norm == "linf":
        return grad.sign()
    return grad / _per_row(_flat_norm(grad, "l2").clamp_min(1e-12), grad)


def _random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """x plus a perturbation uniform in the L∞ box, or uniform in the L2 ball."""
    if norm == "linf":
        noise = (2.0 * torch.rand(x.shape, generator=generator) - 1.0) * eps
    else:
        direction = torch.randn(x.shape, generator=generator)
        direction = direction / _per_row(_flat_norm(direction, "l2"), direction)
        dim = direction[0].numel()
        radius = eps * torch.rand(len(x), generator=generator) ** (1.0 / dim)
        noise = direction * _per_row(radius, direction)
    return (x + noise.to(x.device)).clamp(0.0, 1.0)


# --------------------------------------------------------------------------- losses
def attack_loss(
    logits: torch.Tensor, labels: torch.Tensor, loss: str, targets: torch.Tensor | None = None
) -> torch.Tensor:
    """(n,) per-example loss an attacker maximizes: 'xent', 'margin' (f_r − f_y) or 'dlr'.

    DLR (Croce & Hein 2020) is the margin divided by z_π1 − z_π3 (sorted logits), invariant to logit scale.
    With ``targets`` (n,) the targeted versions: −CE towards t, f_t − f_y, and the targeted DLR
    (f_t − f_y)/(z_π1 − ½(z_π3 + z_π4)) of AutoAttack's APGD-T.
    """
    if loss not in ("xent", "margin", "dlr"):
        raise ValueError(f"unknown attack loss {loss!r}")
    if loss == "xent":
        if targets is None:
            return functional.cross_entropy(logits, labels, reduction="none")
        return -functional.cross_entropy(logits, targets, reduction="none")
    gap = margin(logits, labels) if targets is None else target_margin(logits, labels, targets)
    if loss == "margin":
        return gap
    return gap / _dlr_scale(logits, targeted=targets is not None)


def target_margin(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """f_t − f_y : (n,) for logits (n, k), labels and targets (n,); positive ⇒ misclassified."""
    return (logits.gather(1, targets[:, None]) - logits.gather(1, labels[:, None])).squeeze(1)


def _dlr_scale(logits: torch.Tensor, targeted: bool) -> torch.Tensor:
    """(n,) DLR denominator: z_π1 − z_π3, or z_π1 − ½(z_π3 + z_π4) when targeted (sorted logits z_π).

    Missing ranks fall back to the smallest logit; with two classes the ratio would be ±1 everywhere (no
    gradient), so the denominator is 1 and DLR is the margin.
    """
    classes = logits.shape[1]
    if classes == 2:
        return torch.ones(len(logits), dtype=logits.dtype, device=logits.device)
    ordered = logits.sort(dim=1, descending=True).values
    low = ordered[:, 2]
    if targeted:
        low = 0.5 * (low + ordered[:, min(3, classes - 1)])
    return ordered[:, 0] - low + 1e-12


def _loss_and_grad(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, loss: str, targets: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-example loss (n,), its input gradient (n, ...) and the logits (n, k), all detached."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        values = attack_loss(logits, labels, loss, targets)
        (grad,) = torch.autograd.grad(values.sum(), x)
    return values.detach(), grad.detach(), logits.detach()


# --------------------------------------------------------------------------- attacks
def fgsm(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, eps: float, norm: str = "linf"
) -> torch.Tensor:
    """One ε step along the sign (L∞) or the normalized gradient (L2) of the cross-entropy."""
    _, grad, _ = _loss_and_grad(model, x, labels, "xent")
    return project(x + eps * _ascent_direction(grad, norm), x, eps, norm)


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    *,
    norm: str = "linf",
    loss: str = "xent",
    steps: int = 40,
    step_size: float | None = None,
    restarts: int = 1,
    random_start: bool = True,
    clean_first: bool = False,
    targets: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient ascent on ``loss``; returns the largest-margin iterate over steps and restarts.

    ``step_size`` defaults to 2.5·ε/steps (Madry et al.), so the iterates can cross the whole ball. Restarts
    begin at random points of the ball (``random_start``), except the first one at x itself when
    ``clean_first``. With ``targets`` (n,) the loss is the targeted one (:func:`attack_loss`) and the margin
    that picks the returned iterate is f_t − f_y.
    """
    step_size = 2.5 * eps / steps if step_size is None else step_size
    best, best_margin = x.clone(), torch.full((len(x),), -math.inf, device=x.device)
    for restart in range(restarts):
        noisy = random_start and not (clean_first and restart == 0)
        x_adv = _random_start(x, eps, norm, generator) if noisy else x.clone()
        for _ in range(steps):
            _, grad, logits = _loss_and_grad(model, x_adv, labels, loss, targets)
            best, best_margin = _keep_larger(best, best_margin, x_adv, _margin_of(logits, labels, targets))
            x_adv = project(x_adv + step_size * _ascent_direction(grad, norm), x, eps, norm)
        with torch.no_grad():
            final = _margin_of(model(x_adv), labels, targets)
        best, best_margin = _keep_larger(best, best_margin, x_adv, final)
    return best


def _margin_of(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    return margin(logits, labels) if targets is None else target_margin(logits, labels, targets)


def _keep_larger(
    best: torch.Tensor, best_value: torch.Tensor, candidate: torch.Tensor, value: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    better = value > best_value
    return torch.where(_per_row(better, best), candidate, best), torch.where(better, value, best_value)


def apgd_checkpoints(steps: int) -> list[int]:
    """Iterations at which APGD may halve its step (AutoAttack's integer schedule).

    The first interval is 22% of the steps; each next one is 3% shorter, but at least 6%.
    """
    interval = max(int(0.22 * steps), 1)
    shrink, shortest = max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    points = [0]
    while points[-1] + interval <= steps:
        points.append(points[-1] + interval)
        interval = max(interval - shrink, shortest)
    return points


def apgd(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    *,
    norm: str = "linf",
    loss: str = "xent",
    steps: int = 100,
    rho: float = 0.75,
    momentum: float = 0.75,
    targets: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Auto-PGD (Croce & Hein 2020): step 2ε halved at checkpoints where progress stalled, with momentum.

    At checkpoint w_j the step of an example is halved (and it restarts from its best point) when the loss
    increased in at most ρ·(w_j − w_{j−1}) of the steps since w_{j−1}, or when neither the step nor the
    best loss changed over that interval. Returns the best iterate by loss, or any iterate that fools.
    With ``targets`` (n,) the loss is the targeted one (:func:`attack_loss`; 'dlr': APGD-T's loss).
    """
    checkpoints = apgd_checkpoints(steps)
    step = torch.full((len(x),), 2.0 * eps, device=x.device)
    x_prev = x_cur = _random_start(x, eps, norm, generator)
    value, grad, logits = _loss_and_grad(model, x_cur, labels, loss, targets)
    best_x, best_value, best_grad = x_cur.clone(), value.clone(), grad.clone()
    fooled_x, fooled_margin = x_cur.clone(), margin(logits, labels)
    increases = torch.zeros(len(x), device=x.device)
    best_at_checkpoint, step_reduced = (
        best_value.clone(),
        torch.ones(len(x), dtype=torch.bool, device=x.device),
    )
    last_checkpoint = 0
    for k in range(steps):
        z = project(x_cur + _per_row(step, x) * _ascent_direction(grad, norm), x, eps, norm)
        if k == 0:
            x_next = z
        else:
            x_next = project(x_cur + momentum * (z - x_cur) + (1 - momentum) * (x_cur - x_prev), x, eps, norm)
        new_value, new_grad, logits = _loss_and_grad(model, x_next, labels, loss, targets)
        fooled_x, fooled_margin = _keep_larger(fooled_x, fooled_margin, x_next, margin(logits, labels))
        increases += (new_value > value).float()
        improved = new_value > best_value
        best_x = torch.where(_per_row(improved, x), x_next, best_x)
        best_grad = torch.where(_per_row(improved, x), new_grad, best_grad)
        best_value = torch.where(improved, new_value, best_value)
        x_prev, x_cur, value, grad = x_cur, x_next, new_value, new_grad
        if k + 1 in checkpoints and k + 1 > last_checkpoint:
            interval = k + 1 - last_checkpoint
            stalled = increases <= rho * interval
            stuck = ~step_reduced & (best_at_checkpoint >= best_value)
            reduce = stalled | stuck
            step = torch.where(reduce, step / 2.0, step)
            restart = _per_row(reduce, x)
            x_cur = torch.where(restart, best_x, x_cur)
            x_prev = torch.where(restart, best_x, x_prev)
            grad = torch.where(restart, best_grad, grad)
            value = torch.where(reduce, best_value, value)
            step_reduced, best_at_checkpoint = reduce, best_value.clone()
            increases.zero_()
            last_checkpoint = k + 1
    with torch.no_grad():
        best_margin = margin(model(best_x), labels)
    return torch.where(_per_row(fooled_margin > best_margin, x), fooled_x, best_x)


def runner_up_classes(logits: torch.Tensor, labels: torch.Tensor, count: int) -> torch.Tensor:
    """(n, m) the m = min(count, k − 1) classes other than the label with the highest logits, best first."""
    others = logits.masked_fill(functional.one_hot(labels, logits.shape[1]).bool(), -math.inf)
    return others.argsort(dim=1, descending=True, stable=True)[:, : min(count, logits.shape[1] - 1)]


def _over_runner_ups(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    n_targets: int,
    attack: Callable[..., torch.Tensor],
) -> torch.Tensor:
    """Adversarial (n, ...) images: ``attack(x, labels, targets=t)`` towards each runner-up class t of the
    clean logits in turn, on the examples still classified correctly; per example the result with the
    largest margin f_r − f_y (x itself for an example misclassified from the start)."""
    with torch.no_grad():
        logits = model(x)
    best, best_margin = x.clone(), margin(logits, labels)
    robust = logits.argmax(dim=1) == labels
    for targets in runner_up_classes(logits, labels, n_targets).T:
        rows = torch.nonzero(robust).squeeze(1)
        if len(rows) == 0:
            break
        adversarial = attack(x[rows], labels[rows], targets=targets[rows])
        with torch.no_grad():
            logits = model(adversarial)
        better = margin(logits, labels[rows]) > best_margin[rows]
        best[rows[better]] = adversarial[better]
        best_margin[rows[better]] = margin(logits[better], labels[rows[better]])
        robust[rows] = logits.argmax(dim=1) == labels[rows]
    return best


def apgd_targeted(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    *,
    norm: str = "linf",
    n_targets: int = 9,
    steps: int = 100,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """APGD-T (AutoAttack): APGD on the targeted DLR loss towards each of the ``n_targets`` runner-up
    classes of the clean logits (highest first), each run on the examples no earlier target fooled."""
    attack = partial(apgd, model, eps=eps, norm=norm, loss="dlr", steps=steps, generator=generator)
    return _over_runner_ups(model, x, labels, n_targets, attack)


def pgd_targeted(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    *,
    norm: str = "linf",
    n_targets: int = 9,
    steps: int = 100,
    step_size: float | None = None,
    restarts: int = 2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Targeted margin PGD: for each of the ``n_targets`` runner-up classes t of the clean logits (highest
    first), PGD maximizing f_t − f_y on the examples not yet fooled, from x and then from ``restarts`` − 1
    random points of the ball.

    The start at x matters in L2: from a random start the fixed step 2.5·ε/steps ends a few percent short
    of the best point on the sphere (the tangential error shrinks by ε/(ε + step) per step on it).
    """
    attack = partial(
        pgd,
        model,
        eps=eps,
        norm=norm,
        loss="margin",
        steps=steps,
        step_size=step_size,
        restarts=restarts,
        clean_first=True,
        generator=generator,
    )
    return _over_runner_ups(model, x, labels, n_targets, attack)


SQUARE_HALVINGS = (10, 50, 200, 500, 1_000, 2_000, 4_000, 6_000, 8_000)
"""Square halves the share of the image it changes after these ten-thousandths of its query budget."""


def square_fraction(p_init: float, query: int, queries: int) -> float:
    """Share p of the pixels one Square update changes at ``query`` of ``queries``: ``p_init`` halved each
    time the query passes one of :data:`SQUARE_HALVINGS` (in ten-thousandths of the budget)."""
    position = int(query / queries * 10_000)
    return p_init / 2 ** sum(position > mark for mark in SQUARE_HALVINGS)


def square(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    *,
    norm: str = "linf",
    queries: int = 5_000,
    p_init: float = 0.8,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Square attack (Andriushchenko et al. 2020): random search over square patches of the image.

    Each query changes one random s×s window (the same window for every example, side s from
    :func:`square_fraction`) of the best image found so far, and keeps the change for the examples whose
    margin f_r − f_y grew; an example stops once it is misclassified. L∞: the window is set to x ± ε, one
    random sign per channel, starting from vertical stripes of ±ε. L2: the perturbation's mass inside the
    window and inside a second random window is redrawn into the first as a centred pseudo-Gaussian bump
    of random sign, and the whole perturbation is rescaled onto the sphere ‖δ‖₂ = ε. Images of any shape
    (n, ...) are searched as (n, C, H, W), flat ones as (n, 1, 1, d). Only forward passes, no gradients.

    Returns adversarial (n, ...) images inside the ε-ball and [0, 1]; the start counts as the first query.
    """
    images = x.reshape(len(x), 1, 1, -1) if x.dim() < 4 else x
    with torch.no_grad():
        if norm == "linf":
            best = _square_linf(model, images, labels, eps, queries, p_init, x.shape, generator)
        else:
            best = _square_l2(model, images, labels, eps, queries, p_init, x.shape, generator)
    return best.reshape(x.shape)


def _square_margins(model, shape) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda images, labels: margin(model(images.reshape(-1, *shape[1:])), labels)


def _random_signs(shape: tuple[int, ...], generator, like: torch.Tensor) -> torch.Tensor:
    signs = torch.randint(0, 2, shape, generator=generator).to(like.device, like.dtype)
    return 2.0 * signs - 1.0


def _window(height: int, width: int, side: int, generator) -> tuple[slice, slice]:
    """A random side×side window (clipped to a 1-pixel-high image's width) of a height×width image."""
    rows, cols = min(side, height), min(side, width)
    top = int(torch.randint(0, height - rows + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - cols + 1, (1,), generator=generator))
    return slice(top, top + rows), slice(left, left + cols)


def _square_side(p: float, height: int, width: int, smallest: int) -> int:
    """Window side covering a share p of the image: at least ``smallest``, below the image's shorter
    side when there is room (a window as large as the image would redraw all of it at once)."""
    side = max(int(round(math.sqrt(p * height * width))), smallest)
    if height == 1:
        return max(min(int(round(p * width)), width - 1), 1)
    return max(min(side, min(height, width) - 1), 1)


def _square_linf(model, x, labels, eps, queries, p_init, shape, generator) -> torch.Tensor:
    n, channels, height, width = x.shape
    margins = _square_margins(model, shape)
    best = (x + eps * _random_signs((n, channels, 1, width), generator, x)).clamp(0.0, 1.0)
    best_margin = margins(best, labels)
    for query in range(1, queries):
        rows = torch.nonzero(best_margin <= 0).squeeze(1)
        if len(rows) == 0:
            break
        side = _square_side(square_fraction(p_init, query, queries), height, width, 1)
        hs, ws = _window(height, width, side, generator)
        base, current = x[rows][:, :, hs, ws], best[rows][:, :, hs, ws]
        window = (base + eps * _random_signs((len(rows), channels, 1, 1), generator, x)).clamp(0.0, 1.0)
        # A draw equal to the window already there would waste the query: take the opposite signs.
        same = ((window - current).abs().amax(dim=(1, 2, 3)) < 1e-7)[:, None, None, None]
        window = torch.where(same, (2.0 * base - window).clamp(0.0, 1.0), window)
        candidate = best[rows].clone()
        candidate[:, :, hs, ws] = window  # within ε of x and in [0, 1] by construction
        value = margins(candidate, labels[rows])
        better = value > best_margin[rows]
        best[rows[better]] = candidate[better]
        best_margin[rows[better]] = value[better]
    return best


def square_bump(side: int) -> torch.Tensor:
    """(side, side) L2-unit pattern of L2-Square: concentric squares weighted 1/(k+1)² summed from the
    centre outwards, positive in the top half and negative in the bottom half."""

    def rings(rows: int, cols: int) -> torch.Tensor:
        i = (torch.arange(rows) - (rows - 1) / 2).abs()[:, None]
        j = (torch.arange(cols) - (cols - 1) / 2).abs()[None, :]
        ring = torch.maximum(i, j).floor().long()
        levels = torch.arange(max(rows, cols))
        weight = (1.0 / (levels + 1.0) ** 2).flip(0).cumsum(0).flip(0)
        pattern = weight[ring]
        return pattern / pattern.norm()

    top = side // 2
    bump = torch.cat([rings(top, side), -rings(side - top, side)]) if top else rings(side, side)
    return bump / bump.norm()


def _square_l2_start(x: torch.Tensor, generator) -> torch.Tensor:
    """(n, C, H, W) unscaled start of L2-Square: a grid of bumps of side H // 5 (flat images: constant runs
    of a fifth of their length), one random sign per example, channel and tile."""
    n, channels, height, width = x.shape
    tile_h = max(height // 5, 1)
    tile_w = tile_h if height > 1 else max(width // 5, 1)
    bump = (square_bump(tile_h) if height > 1 else torch.ones(1, tile_w)).to(x)
    delta = torch.zeros_like(x)
    for top in range(0, height - tile_h + 1, tile_h):
        for left in range(0, width - tile_w + 1, tile_w):
            signs = _random_signs((n, channels, 1, 1), generator, x)
            delta[:, :, top : top + tile_h, left : left + tile_w] += bump * signs
    return delta


def _square_l2(model, x, labels, eps, queries, p_init, shape, generator) -> torch.Tensor:
    _, channels, height, width = x.shape
    margins = _square_margins(model, shape)
    delta = _square_l2_start(x, generator)
    best = (x + eps * delta / _per_row(_flat_norm(delta, "l2").clamp_min(1e-12), delta)).clamp(0.0, 1.0)
    best_margin = margins(best, labels)
    for query in range(1, queries):
        rows = torch.nonzero(best_margin <= 0).squeeze(1)
        if len(rows) == 0:
            break
        side = _square_side(square_fraction(p_init, query, queries), height, width, 3 if height > 3 else 1)
        first, second = _window(height, width, side, generator), _window(height, width, side, generator)
        base, current = x[rows], best[rows]
        delta = current - base
        in_both = torch.zeros_like(delta)
        in_both[:, :, first[0], first[1]] = 1.0
        in_both[:, :, second[0], second[1]] = 1.0
        # The mass the two windows hold, plus what the ball still allows, is redrawn into the first window.
        spare = (eps**2 - _flat_norm(delta, "l2") ** 2).clamp_min(0.0)
        held = (delta * in_both).pow(2).sum(dim=(2, 3), keepdim=True)
        old = delta[:, :, first[0], first[1]]
        old = old / old.pow(2).sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(1e-12)
        rows_in, cols_in = old.shape[2], old.shape[3]
        bump = (square_bump(rows_in) if rows_in == cols_in else torch.ones(rows_in, cols_in)).to(x)
        new = bump * _random_signs((len(rows), channels, 1, 1), generator, x) + old
        new = new / new.pow(2).sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(1e-12)
        new = new * (_per_row(spare, delta) / channels + held).sqrt()
        delta[:, :, second[0], second[1]] = 0.0
        delta[:, :, first[0], first[1]] = new
        length = _per_row(_flat_norm(delta, "l2").clamp_min(1e-12), delta)
        candidate = (base + eps * delta / length).clamp(0.0, 1.0)
        value = margins(candidate, labels[rows])
        better = value > best_margin[rows]
        best[rows[better]] = candidate[better]
        best_margin[rows[better]] = value[better]
    return best


def _candidate_gradients(
    model: nn.Module, x: torch.Tensor, classes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits f_c (n, m) and input gradients ∇f_c (n, m, d) of m candidate classes per example."""
    n, m = classes.shape
    with torch.enable_grad():
        rep = x.detach().repeat_interleave(m, dim=0).requires_grad_(True)
        logits = model(rep)
        chosen = logits.gather(1, classes.reshape(-1, 1)).squeeze(1)
        (grad,) = torch.autograd.grad(chosen.sum(), rep)
    return chosen.detach().reshape(n, m), grad.detach().reshape(n, m, -1)


@dataclass
class DeepFoolResult:
    """Minimal perturbations found by DeepFool.

    perturbation : (n, C, H, W) float, r = x_adv − x
    fooled : (n,) bool, whether x + r changes the prediction
    iterations : (n,) int64
    """

    perturbation: torch.Tensor
    fooled: torch.Tensor
    iterations: torch.Tensor


def deepfool(
    model: nn.Module,
    x: torch.Tensor,
    *,
    norm: str = "l2",
    candidates: int = 10,
    overshoot: float = 0.02,
    max_iter: int = 50,
    clip: bool = True,
) -> DeepFoolResult:
    """DeepFool (Moosavi-Dezfooli et al. 2016) from the predicted class towards the nearest linearized boundary.

    Among the ``candidates`` top-scoring classes k ≠ k0, step to the boundary of the class minimizing
    |f_k − f_k0| / ‖∇f_k − ∇f_k0‖_q (q the dual norm); the accumulated step is scaled by 1 + overshoot.
    With ``clip`` the iterates stay in [0, 1] (images); without it the search is pure geometry of f.
    """
    with torch.no_grad():
        logits = model(x)
    m = min(candidates, logits.shape[1])
    classes = logits.argsort(dim=1, descending=True)[:, :m]
    original = classes[:, 0]
    total = torch.zeros_like(x.reshape(len(x), -1))
    iterations = torch.zeros(len(x), dtype=torch.int64, device=x.device)
    x_adv = x.clone()
    for _ in range(max_iter):
        with torch.no_grad():
            active = model(x_adv).argmax(dim=1) == original
        if not bool(active.any()):
            break
        values, grads = _candidate_gradients(model, x_adv[active], classes[active])
        w = grads[:, 1:] - grads[:, :1]
        f = values[:, 1:] - values[:, :1]
        dual = w.abs().sum(dim=2) if norm == "linf" else w.norm(dim=2)
        distance = f.abs() / dual.clamp_min(1e-12)
        best = distance.argmin(dim=1)
        w_best = w[torch.arange(len(best)), best]
        f_best = f[torch.arange(len(best)), best].abs()
        if norm == "linf":
            step = (
                _per_row(f_best / dual[torch.arange(len(best)), best].clamp_min(1e-12), w_best)
                * w_best.sign()
            )
        else:
            step = _per_row((f_best + 1e-4) / (w_best.norm(dim=1) ** 2).clamp_min(1e-12), w_best) * w_best
        total[active] += step
        iterations[active] += 1
        moved = x + (1 + overshoot) * total.reshape(x.shape)
        x_adv = moved.clamp(0.0, 1.0) if clip else moved
    with torch.no_grad():
        fooled = model(x_adv).argmax(dim=1) != original
    return DeepFoolResult(perturbation=x_adv - x, fooled=fooled, iterations=iterations)


def deepfool_attack(
    model: nn.Module, x: torch.Tensor, eps: float, *, norm: str = "linf", max_iter: int = 50
) -> torch.Tensor:
    """DeepFool's minimal perturbation projected onto the ε-ball (robust if it needs more than ε)."""
    result = deepfool(model, x, norm=norm, max_iter=max_iter)
    return project(x + result.perturbation, x, eps, norm)


def universal_perturbation(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    *,
    norm: str = "linf",
    delta: float = 0.2,
    passes: int = 5,
    deepfool_iter: int = 10,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One perturbation v : (C, H, W) with ‖v‖ ≤ ε fooling as many of the (n, C, H, W) images as it can.

    Passes over the shuffled images; for each one that x + v does not fool, add DeepFool's step from x + v
    (only if DeepFool converged) and project v back onto the ε-ball. Stops once the fooling rate on these
    images reaches 1 − δ, or after ``passes`` passes.
    """
    v = torch.zeros_like(x[:1])
    with torch.no_grad():
        clean = model(x).argmax(dim=1)
    for _ in range(passes):
        for i in torch.randperm(len(x), generator=generator).tolist():
            xi = (x[i : i + 1] + v).clamp(0.0, 1.0)
            with torch.no_grad():
                if model(xi).argmax(dim=1).item() != clean[i].item():
                    continue
            step = deepfool(model, xi, norm=norm, max_iter=deepfool_iter)
            if bool(step.fooled.item()):
                v = project_perturbation(v + step.perturbation, eps, norm)
        with torch.no_grad():
            fooling_rate = (model((x + v).clamp(0.0, 1.0)).argmax(dim=1) != clean).float().mean().item()
        if fooling_rate >= 1.0 - delta:
            break
    return v[0]


def project_perturbation(v: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """v : (n, ...) projected onto the ε-ball of ``norm`` (no pixel-range clipping)."""
    if norm == "linf":
        return v.clamp(-eps, eps)
    return v * _per_row((eps / _flat_norm(v, "l2").clamp_min(1e-12)).clamp(max=1.0), v)
