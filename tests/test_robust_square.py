"""The Square attack: schedule, bounds, determinism, and what it finds on models whose gradients say nothing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recon.robust import attacks as atk
from recon.robust.evaluate import AttackConfig, evaluate_robustness


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    yield


class _GradientFreeLinear(nn.Module):
    """Exact linear logits W·x + b whose input gradient is zero: every gradient attack is blind here."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight, self.bias = weight, bias

    def forward(self, x):
        flat = x.reshape(len(x), -1)
        return (flat.detach() + 0.0 * flat) @ self.weight.T + self.bias


def _linear_case(shape=(1, 6, 6), classes=4, n=60, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dim = torch.Size(shape).numel()
    weight = torch.randn(classes, dim, generator=gen, dtype=torch.float64)
    x = 0.1 + 0.8 * torch.rand(n, *shape, generator=gen, dtype=torch.float64)
    bias = torch.zeros(classes, dtype=torch.float64)
    model = _GradientFreeLinear(weight, bias)
    with torch.no_grad():
        labels = model(x).argmax(dim=1)
    return model, x, labels, weight


def _best_linf_margin(x, labels, weight, eps):
    """(n,) the largest f_r − f_y over the L∞ ball ∩ [0, 1] of a linear model: per pixel the end of its
    interval that the coefficient prefers, per runner-up r the best of these sums."""
    flat = x.reshape(len(x), -1)
    low, high = (flat - eps).clamp(0, 1) - flat, (flat + eps).clamp(0, 1) - flat
    best = torch.full((len(x),), -torch.inf, dtype=x.dtype)
    for r in range(weight.shape[0]):
        c = weight[r] - weight[labels]
        gain = torch.where(c > 0, c * high, c * low).sum(dim=1)
        value = (c * flat).sum(dim=1) + gain
        best = torch.where(labels == r, best, torch.maximum(best, value))
    return best


def test_square_fraction_follows_the_halving_schedule():
    assert atk.square_fraction(0.8, 0, 10_000) == 0.8
    assert atk.square_fraction(0.8, 10, 10_000) == 0.8
    assert atk.square_fraction(0.8, 11, 10_000) == 0.4
    assert atk.square_fraction(0.8, 500, 10_000) == 0.8 / 8
    assert atk.square_fraction(0.8, 501, 10_000) == 0.8 / 16
    assert atk.square_fraction(0.8, 9_999, 10_000) == 0.8 / 512
    # the schedule is relative to the budget: 5,000 queries halve at 5, 25, 100, ...
    assert atk.square_fraction(0.8, 6, 5_000) == 0.4


def test_square_bump_is_a_unit_bump_of_opposite_halves():
    bump = atk.square_bump(7)
    assert bump.shape == (7, 7)
    assert float(bump.norm()) == pytest.approx(1.0)
    assert bool((bump[:3] > 0).all()) and bool((bump[3:] < 0).all())
    # heaviest at the middle of each half, falling off towards its border
    assert float(bump[1, 3]) > float(bump[1, 0]) and float(bump[1, 3]) > float(bump[0, 3])


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("shape", [(1, 6, 6), (3, 5, 5), (24,)])
def test_square_stays_in_the_ball_and_is_deterministic(norm, shape):
    model, x, labels, _ = _linear_case(shape=shape, n=20)
    eps = 0.05 if norm == "linf" else 0.3
    runs = [atk.square(model, x, labels, eps, norm=norm, queries=200, generator=torch.Generator().manual_seed(3))
            for _ in range(2)]  # fmt: skip
    assert torch.equal(runs[0], runs[1])
    delta = (runs[0] - x).reshape(len(x), -1)
    size = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= eps * (1 + 1e-9)
    assert float(runs[0].min()) >= 0.0 and float(runs[0].max()) <= 1.0
    assert runs[0].shape == x.shape


def test_square_finds_the_exact_linf_answer_of_a_linear_model_that_gradients_cannot_see():
    """On a linear model with zero input gradients, Square (coordinate-wise random search) fools exactly
    the images whose best vertex of the ball fools; APGD, blind, fools almost none of them."""
    model, x, labels, weight = _linear_case()
    eps = 0.06
    best = _best_linf_margin(x, labels, weight, eps)
    foolable = best > 1e-6
    assert 10 <= int(foolable.sum()) <= len(x) - 10  # a split that can go either way
    adversarial = atk.square(model, x, labels, eps, queries=3_000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fooled = model(adversarial).argmax(dim=1) != labels
    clear = best.abs() > 0.05 * best.abs().median()  # leave the near-ties out of the exact comparison
    assert torch.equal(fooled[clear], foolable[clear])
    blind = atk.apgd(model, x, labels, eps, loss="dlr", steps=100, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        blind_fooled = model(blind).argmax(dim=1) != labels
    assert int(blind_fooled.sum()) < int(fooled.sum()) // 2


def test_square_l2_fools_what_the_ball_allows_and_nothing_more():
    """L2 on a linear model: images whose best point of the ball (ε along the margin's gradient, away
    from the pixel box's faces) fools by a clear gap are fooled; those that no point of the ball fools
    are not."""
    model, x, labels, weight = _linear_case(n=80, seed=1)
    eps = 0.25
    flat = x.reshape(len(x), -1)
    best = torch.full((len(x),), -torch.inf, dtype=x.dtype)
    for r in range(weight.shape[0]):
        c = weight[r] - weight[labels]
        best = torch.where(labels == r, best, torch.maximum(best, (c * flat).sum(1) + eps * c.norm(dim=1)))
    adversarial = atk.square(
        model, x, labels, eps, norm="l2", queries=3_000, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        fooled = model(adversarial).argmax(dim=1) != labels
    scale = weight.norm(dim=1).mean() * eps
    easy, impossible = best > 0.5 * scale, best < 0
    assert int(easy.sum()) >= 5 and int(impossible.sum()) >= 5
    assert bool(fooled[easy].all())
    assert not bool(fooled[impossible].any())


def test_attack_all_includes_square_and_it_catches_a_gradient_masked_model():
    model, x, labels, weight = _linear_case(n=40)
    eps = 0.06
    report = evaluate_robustness(
        model,
        x,
        labels,
        AttackConfig(eps=eps, attacks=("apgd", "square"), apgd_steps=20, square_queries=3_000),
    )
    assert "square" in atk.ATTACKS and set(report.per_attack) == {"apgd", "square"}
    foolable = _best_linf_margin(x, labels, weight, eps) > 1e-6
    assert report.per_attack["square"] < report.per_attack["apgd"]
    assert report.worst_case <= 1.0 - float(foolable.float().mean()) + 0.05
