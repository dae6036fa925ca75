"""Attacks, boundary sampling, the sample network on the margin, and boundary geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import train_digits_mlp
from torch import nn

from recon.core.levelset import sample_network
from recon.errors import ConfigError
from recon.robust import attacks as atk
from recon.robust.boundary import (
    BoundarySearch,
    MarginFunction,
    find_boundary_points,
    levelset_margin_loss,
    margin,
    regula_falsi,
)
from recon.robust.evaluate import AttackConfig, evaluate_robustness
from recon.robust.geometry import normal_section_curvatures, principal_curvature_range


@pytest.fixture(autouse=True, scope="module")
def one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def digits_model():
    """A standard MLP trained for a few epochs on digits, and 100 test images."""
    return train_digits_mlp(seed=0, epochs=8, test_limit=100)


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(dim=1) == y).float().mean().item()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_attacks_stay_in_the_ball_and_reduce_accuracy(digits_model, norm):
    model, x, y = digits_model
    eps = 0.1 if norm == "linf" else 0.5
    gen = torch.Generator().manual_seed(0)
    clean = _accuracy(model, x, y)
    assert clean > 0.85
    adversarial = {
        "fgsm": atk.fgsm(model, x, y, eps, norm),
        "pgd": atk.pgd(model, x, y, eps, norm=norm, steps=10, generator=gen),
        "pgd-margin": atk.pgd(model, x, y, eps, norm=norm, loss="margin", steps=10, generator=gen),
        "apgd": atk.apgd(model, x, y, eps, norm=norm, steps=10, generator=gen),
        "apgd-t": atk.apgd_targeted(model, x, y, eps, norm=norm, n_targets=3, steps=10, generator=gen),
        "pgd-t": atk.pgd_targeted(model, x, y, eps, norm=norm, n_targets=3, steps=10, generator=gen),
        "square": atk.square(model, x, y, eps, norm=norm, queries=300, generator=gen),
        "deepfool": atk.deepfool_attack(model, x, eps, norm=norm),
        "universal": (
            x + atk.universal_perturbation(model, x[:30], eps, norm=norm, passes=1, generator=gen)
        ).clamp(0, 1),
    }
    for name, x_adv in adversarial.items():
        delta = (x_adv - x).reshape(len(x), -1)
        size = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
        assert float(size.max()) <= eps * (1 + 1e-5), name
        assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0, name
        # a universal perturbation is one image for all inputs: weaker, but it must still fool some
        assert _accuracy(model, x_adv, y) < clean - (0.0 if name == "universal" else 0.05), name
    # iterative attacks beat the single step
    assert _accuracy(model, adversarial["pgd"], y) <= _accuracy(model, adversarial["fgsm"], y)


def test_apgd_at_least_as_strong_as_pgd_on_the_same_budget(digits_model):
    model, x, y = digits_model
    report = evaluate_robustness(
        model, x, y, AttackConfig(eps=0.05, attacks=("pgd", "apgd"), steps=20, apgd_steps=20, seed=1)
    )
    assert report.per_attack["pgd"] < report.clean
    # APGD runs CE and DLR; one PGD-sized run each, so compare against PGD with one restart per loss
    assert report.per_attack["apgd"] <= report.per_attack["pgd"]
    assert report.worst_case <= min(report.per_attack.values())


def test_apgd_checkpoints_follow_the_schedule():
    points = atk.apgd_checkpoints(100)
    assert points == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    assert points[-1] <= 100 and all(b - a >= 6 for a, b in zip(points[1:], points[2:], strict=False))


def test_deepfool_finds_the_exact_distance_of_an_affine_classifier():
    torch.manual_seed(0)
    w, b = torch.randn(2, 6, dtype=torch.float64), torch.randn(2, dtype=torch.float64)
    model = lambda x: x.reshape(len(x), -1) @ w.T + b  # noqa: E731
    x = torch.rand(5, 1, 2, 3, dtype=torch.float64)
    logits = model(x)
    k0 = logits.argmax(dim=1)
    gap = (logits[:, 0] - logits[:, 1]).abs()
    dw = w[0] - w[1]
    for norm, dual in (("l2", dw.norm()), ("linf", dw.abs().sum())):
        result = atk.deepfool(model, x, norm=norm, clip=False, candidates=2)
        r = result.perturbation.reshape(5, -1)
        length = r.norm(dim=1) if norm == "l2" else r.abs().amax(dim=1)
        assert result.iterations.max() == 1 and bool(result.fooled.all())
        # one linearization is exact: the distance gap/‖w‖_q, times 1 + overshoot (+1e-4 in the L2 numerator)
        torch.testing.assert_close(length, 1.02 * gap / dual, atol=1.1e-4 / dual.item(), rtol=1e-9)
        assert bool((model(x + result.perturbation).argmax(dim=1) != k0).all())


def test_regula_falsi_finds_known_roots():
    c = torch.tensor([0.5, 2.0, 10.0], dtype=torch.float64)
    fn = lambda t: t**3 + t - c  # noqa: E731 - monotone, one real root per row
    lo, hi = torch.zeros(3, dtype=torch.float64), torch.full((3,), 3.0, dtype=torch.float64)
    t, f_t = regula_falsi(fn, lo, hi, fn(lo), fn(hi), iters=60, tol=1e-12)
    expected = torch.tensor([_real_root([1.0, 0.0, 1.0, -float(v)]) for v in c], dtype=torch.float64)
    torch.testing.assert_close(t, expected, atol=1e-9, rtol=0)
    assert float(f_t.abs().max()) <= 1e-9
    # a linear function is solved exactly by the first secant
    line = lambda t: 2.0 * t - 0.3  # noqa: E731
    t1, _ = regula_falsi(line, lo[:1], hi[:1], line(lo[:1]), line(hi[:1]), iters=1)
    torch.testing.assert_close(t1, torch.tensor([0.15], dtype=torch.float64))


def _real_root(coefficients: list[float]) -> float:
    roots = np.roots(coefficients)
    return float(roots[np.abs(roots.imag) < 1e-9].real[0])


def test_boundary_points_lie_on_the_boundary_inside_the_box(digits_model):
    model, x, y = digits_model
    search = BoundarySearch(eps_correct=0.2, eps_wrong=0.25, eps_base=0.15, step=0.03, iters=10)
    samples = find_boundary_points(model, x, y, search, torch.Generator().manual_seed(0))
    assert len(samples.index) > len(x) // 2
    fn = MarginFunction(model, y[samples.index], (1, 8, 8))
    with torch.no_grad():
        values = fn(samples.points)
    assert float(values.abs().max()) < 1e-3
    torch.testing.assert_close(values, samples.levels)
    distance = (samples.points - x.reshape(len(x), -1)[samples.index]).abs().amax(dim=1)
    radius = torch.where(samples.correct, search.eps_correct, search.eps_wrong)
    assert bool((distance <= radius + 1e-6).all())
    assert float(samples.points.min()) >= 0.0 and float(samples.points.max()) <= 1.0


class _SmoothNet(nn.Module):
    """A tiny softplus classifier on (n, 1, 2, 2) images, in float64 for finite differences."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.Softplus(), nn.Linear(16, 3)).double()

    def forward(self, x):
        # spread [0, 1]⁴ over the units' active range so that all three classes occur
        return self.net(8.0 * (x - 0.5))


def test_sample_network_matches_finite_differences_for_the_margin():
    model = _SmoothNet()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, 2, 2, dtype=torch.float64, generator=gen)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    search = BoundarySearch(eps_correct=1.0, eps_wrong=1.0, eps_base=1.0, step=0.1, iters=30, accept=1e-4)
    samples = find_boundary_points(model, x, y, search, gen)
    assert len(samples.index) >= 5
    fn = MarginFunction(model, y[samples.index], (1, 2, 2))
    params = list(model.parameters())
    direction = [torch.randn(p.shape, dtype=p.dtype, generator=gen) for p in params]

    def moved(t: float) -> torch.Tensor:
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(t * d)
        out = sample_network(fn, samples.points, samples.levels, samples.grads)
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.sub_(t * d)
        return out

    p0 = sample_network(fn, samples.points, samples.levels, samples.grads)
    torch.testing.assert_close(p0, samples.points, atol=1e-12, rtol=0)
    # directional derivative in θ by autograd vs central differences
    rows = []
    for i in range(p0.shape[0]):
        for j in range(p0.shape[1]):
            grads = torch.autograd.grad(p0[i, j], params, retain_graph=True)
            rows.append(sum((g * d).sum() for g, d in zip(grads, direction, strict=True)))
    analytic = torch.stack(rows).reshape(p0.shape)
    h = 1e-6
    fd = (moved(h) - moved(-h)) / (2 * h)
    torch.testing.assert_close(analytic, fd, atol=1e-6, rtol=1e-5)
    # first order: the moved point stays on the level set, the fixed one does not
    t = 1e-5
    with torch.no_grad():
        drift_fixed = (
            (_margin_after(model, params, direction, t, fn, samples.points) - samples.levels).abs().max()
        )
        drift_moved = (_margin_after(model, params, direction, t, fn, moved(t)) - samples.levels).abs().max()
    assert drift_moved < 0.05 * drift_fixed


def _margin_after(model, params, direction, t, fn, points):
    for p, d in zip(params, direction, strict=True):
        p.add_(t * d)
    values = fn(points)
    for p, d in zip(params, direction, strict=True):
        p.sub_(t * d)
    return values


def test_levelset_loss_zero_graph_without_samples_and_hinge_values(digits_model):
    model, x, y = digits_model
    search = BoundarySearch(eps_correct=0.2, eps_wrong=0.25, eps_base=0.15, step=0.03, iters=10)
    samples = find_boundary_points(model, x, y, search, torch.Generator().manual_seed(0))
    loss = levelset_margin_loss(model, x, y, samples, eps_correct=0.2, eps_wrong=0.25)
    # at θ0, p(θ0) = p, so the loss is the hinge of the found distances
    k = samples.grads.abs().argmax(dim=1, keepdim=True)
    d = (x.reshape(len(x), -1)[samples.index].gather(1, k) - samples.points.gather(1, k)).abs().squeeze(1)
    expected = torch.where(samples.correct, torch.relu(0.2 - d), 0.25 + d).sum() / len(x)
    torch.testing.assert_close(loss.detach(), expected)
    empty = type(samples)(
        *(v[:0] for v in (samples.points, samples.levels, samples.grads, samples.index, samples.correct))
    )
    zero = levelset_margin_loss(model, x, y, empty, eps_correct=0.2, eps_wrong=0.25)
    assert float(zero.detach()) == 0.0 and zero.requires_grad


def test_margin_is_runner_up_minus_true():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 4.0]])
    torch.testing.assert_close(margin(logits, torch.tensor([0, 2])), torch.tensor([-1.0, 1.0]))


class _Sphere(nn.Module):
    def __init__(self, radius):
        super().__init__()
        self.radius = radius

    def forward(self, p):
        return p.norm(dim=1) - self.radius


def test_curvature_of_a_sphere_and_an_ellipsoid():
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(6, 7, dtype=torch.float64, generator=gen)
    p = 2.0 * p / p.norm(dim=1, keepdim=True)
    kappa = normal_section_curvatures(
        _Sphere(2.0), p, torch.randn(6, 7, dtype=torch.float64, generator=gen), 1e-4
    )
    torch.testing.assert_close(kappa, torch.full((6,), 0.5, dtype=torch.float64), atol=1e-6, rtol=0)
    lo, hi = principal_curvature_range(_Sphere(2.0), p[0], 1e-4)
    assert abs(lo - 0.5) < 1e-6 and abs(hi - 0.5) < 1e-6
    # F = Σ c_i x_i² − 1 at e_0 (c_0 = 1): ∇F = 2e_0, ∇²F = 2 diag(c), tangent curvatures c_1..c_4
    scales = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64)
    ellipsoid = lambda q: (scales * q**2).sum(dim=1) - 1.0  # noqa: E731
    point = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    lo, hi = principal_curvature_range(ellipsoid, point, 1e-4)
    assert abs(lo - 2.0) < 1e-6 and abs(hi - 5.0) < 1e-6


def _linear_classifier():
    """A float64 linear classifier f(x) = Wx + b of (n, 1, 2, 3) images into 4 classes, and 5 images in the
    middle of the pixel box with a unique nearest other class t* in both norms.

    For t ≠ y the L∞ (L2) distance from x to {f_t = f_y} is (f_y − f_t)(x)/‖w_t − w_y‖₁ (‖·‖₂); t*'s is below
    1/1.1 of the next one. Class 2's weights are scaled up, so for the first 3 images t* is not the runner-up
    (the class of the second largest logit): an attack aiming at the runner-up alone misses them.

    Returns model, x (5, 1, 2, 3), y (5,), w_t − w_y (5, 4, 6), {norm: (d* (5,), t* (5,))}.
    """
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 4)).double()
    with torch.no_grad():
        model[1].weight.mul_(torch.tensor([1.0, 1.0, 6.0, 0.5], dtype=torch.float64)[:, None])
    x = 0.45 + 0.1 * torch.rand(400, 1, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(dim=1)
    own = nn.functional.one_hot(y, 4).bool()
    runner_up = logits.masked_fill(own, -np.inf).argmax(dim=1)
    weights = model[1].weight.detach()
    difference = weights[None] - weights[y][:, None]
    gap = logits.gather(1, y[:, None]) - logits  # (n, 4): f_y − f_t
    nearest, usable, beyond_runner_up = (
        {},
        torch.ones(len(x), dtype=torch.bool),
        torch.ones(len(x), dtype=torch.bool),
    )
    for norm, dual in (("linf", 1), ("l2", 2)):
        d, order = (
            (gap / difference.norm(p=dual, dim=2).clamp_min(1e-300)).masked_fill(own, np.inf).sort(dim=1)
        )
        usable &= (d[:, 0] > 0.02) & (d[:, 0] < 0.3) & (d[:, 1] > 1.1 * d[:, 0])
        beyond_runner_up &= order[:, 0] != runner_up
        nearest[norm] = (d[:, 0], order[:, 0])
    rows = torch.cat(
        [torch.nonzero(usable & beyond_runner_up)[:3, 0], torch.nonzero(usable & ~beyond_runner_up)[:2, 0]]
    )
    assert len(rows) == 5
    return model, x[rows], y[rows], difference[rows], {k: (d[rows], t[rows]) for k, (d, t) in nearest.items()}


@pytest.mark.parametrize(("norm", "clean_first"), [("linf", False), ("linf", True), ("l2", True)])
def test_targeted_margin_pgd_reaches_the_closed_form_optimum_of_a_linear_classifier(norm, clean_first):
    """max of f_t − f_y = (f_t − f_y)(x) + (w_t − w_y)·δ over the ε-ball is reached at δ = ε·sign(w_t − w_y)
    (L∞) or ε·(w_t − w_y)/‖w_t − w_y‖₂ (L2), for both wrong classes t, whether y is fooled or not.

    (From random starts alone, L2 PGD's fixed step ends a few percent short: hence its start at x.)
    """
    model, x, y, difference, _ = _linear_classifier()
    eps = 0.08  # every pixel is farther than ε from 0 and 1: the ε-ball alone binds
    for shift in (1, 2, 3):
        t = (y + shift) % 4
        w = difference[torch.arange(len(y)), t]  # (n, 6)
        direction = w.sign() if norm == "linf" else w / w.norm(dim=1, keepdim=True)
        generator = torch.Generator().manual_seed(shift)
        adversarial = atk.pgd(
            model,
            x,
            y,
            eps,
            norm=norm,
            loss="margin",
            steps=100,
            restarts=2,
            clean_first=clean_first,
            targets=t,
            generator=generator,
        )
        torch.testing.assert_close(adversarial, x + eps * direction.reshape(x.shape), atol=1e-12, rtol=0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_targeted_attacks_find_the_closed_form_nearest_class_of_a_linear_classifier(norm):
    """With ε = 1.02·d* APGD-T and PGD-T (default strength) move each image into its nearest class t*, i.e.
    into the small cap of the ε-ball around the minimal adversarial example; with 0.98·d* they stay in
    class y (the closed form proves that no adversarial example exists there)."""
    model, x, y, _, nearest = _linear_classifier()
    distance, target = nearest[norm]
    for name, attack in (("apgd-t", atk.apgd_targeted), ("pgd-t", atk.pgd_targeted)):
        for i in range(len(y)):
            for factor, expected in ((1.02, target[i]), (0.98, y[i])):
                eps = factor * float(distance[i])
                image, generator = x[i : i + 1], torch.Generator().manual_seed(i)
                adversarial = attack(model, image, y[i : i + 1], eps, norm=norm, generator=generator)
                delta = (adversarial - image).reshape(-1)
                size = delta.abs().max() if norm == "linf" else delta.norm()
                assert float(size) <= eps * (1 + 1e-9)
                with torch.no_grad():
                    assert int(model(adversarial).argmax()) == int(expected), (name, i, factor)


def test_targeted_losses_and_runner_ups_by_hand():
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0, -1.0]])
    y, t = torch.tensor([0]), torch.tensor([3])
    assert atk.runner_up_classes(logits, y, 9).tolist() == [[2, 1, 3, 4]]
    assert atk.runner_up_classes(logits, torch.tensor([2]), 2).tolist() == [[0, 1]]
    assert atk.attack_loss(logits, y, "margin", t).item() == -3.0
    # sorted logits 3, 2, 1, 0, -1: (f_t − f_y)/(z_π1 − (z_π3 + z_π4)/2) = −3/2.5
    assert atk.attack_loss(logits, y, "dlr", t).item() == pytest.approx(-1.2)
    # targeted cross-entropy: −CE towards t, i.e. log p_t
    assert atk.attack_loss(logits, y, "xent", t).item() == pytest.approx(logits.log_softmax(1)[0, 3].item())
    # three classes: the missing fourth rank is the third; two classes: DLR is the margin
    assert atk.attack_loss(logits[:, :3], y, "dlr", torch.tensor([1])).item() == pytest.approx(-2.0 / 2.0)
    assert atk.attack_loss(logits[:, :2], y, "dlr").item() == -2.0


@pytest.mark.parametrize("change", [{"targets": 0}, {"targeted_steps": 0}, {"targeted_restarts": 0},
                                    {"seed": -1}, {"seed": 2**32}, {"square_queries": 0},
                                    {"square_p_init": 0.0}, {"square_p_init": 1.5},
                                    {"square_p_init": float("nan")}])  # fmt: skip
def test_attack_config_refuses_what_its_options_refuse(change):
    with pytest.raises(ConfigError):
        AttackConfig(eps=0.1, **change).validate()
