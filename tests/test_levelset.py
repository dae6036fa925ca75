"""Generalized Newton projection and the sample network, against analytic cases and finite differences."""

import math

import pytest
import torch
from torch import nn

from recon.core.levelset import (
    MIN_GRAD_SQ,
    project_to_zero_level_set,
    sample_network,
    value_and_gradient,
)
from recon.models.implicit import ImplicitConfig, ImplicitMLP


class SphereSDF(nn.Module):
    """F(x) = ‖x − center‖ − radius with learnable center and radius."""

    def __init__(self, radius=0.7, center=(0.1, -0.2, 0.05), dtype=torch.float64):
        super().__init__()
        self.radius = nn.Parameter(torch.tensor(radius, dtype=dtype))
        self.center = nn.Parameter(torch.tensor(center, dtype=dtype))

    def forward(self, x):
        return (x - self.center).norm(dim=1) - self.radius


class Ellipsoid(nn.Module):
    """A non-distance implicit: F(x) = x²/a² + y²/b² + z²/c² − 1 (gradient norm varies)."""

    def forward(self, x):
        return (x[:, 0] / 0.9) ** 2 + (x[:, 1] / 0.5) ** 2 + (x[:, 2] / 0.3) ** 2 - 1.0


def test_newton_lands_on_sphere():
    model = SphereSDF()
    p = torch.randn(500, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    proj = project_to_zero_level_set(model, p, max_steps=10, tol=1e-10)
    dist = (proj.points - model.center.detach()).norm(dim=1)
    assert torch.allclose(dist, torch.full_like(dist, 0.7), atol=1e-9)
    assert proj.converged.all()
    assert proj.steps <= 3  # an exact SDF converges in one step, up to rounding


def test_newton_lands_on_ellipsoid_zero_set():
    model = Ellipsoid()
    p = 0.8 * torch.randn(2000, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    proj = project_to_zero_level_set(model, p, max_steps=30, tol=1e-9)
    values = model(proj.points)
    assert values.abs().max() < 1e-8
    assert proj.converged.all()


def test_newton_is_finite_where_gradient_vanishes():
    model = SphereSDF(center=(0.0, 0.0, 0.0))
    # the centre of a sphere SDF has an undefined gradient; autograd gives 0 there
    p = torch.zeros(4, 3, dtype=torch.float64)
    proj = project_to_zero_level_set(model, p, max_steps=5, tol=1e-9, max_move=1.0)
    assert torch.isfinite(proj.points).all()
    assert torch.isfinite(proj.values).all()


def test_newton_converged_points_do_not_move():
    model = SphereSDF(center=(0.0, 0.0, 0.0))
    on = torch.tensor([[0.7, 0.0, 0.0], [0.0, -0.7, 0.0]], dtype=torch.float64)
    proj = project_to_zero_level_set(model, on, max_steps=5, tol=1e-6)
    assert torch.equal(proj.points, on)
    assert proj.steps == 1


def test_sample_network_is_identity_at_theta0():
    torch.manual_seed(0)
    model = ImplicitMLP(ImplicitConfig(depth=3, width=32, activation="softplus")).double()
    p = torch.randn(64, 3, dtype=torch.float64)
    c, g = value_and_gradient(model, p)
    moved = sample_network(model, p, c, g)
    assert torch.allclose(moved, p, atol=1e-12)


def test_sample_network_derivative_matches_formula_and_finite_differences():
    """∂p/∂θ = −g/‖g‖² · ∂F/∂θ, checked against central differences in float64."""
    torch.manual_seed(0)
    model = ImplicitMLP(ImplicitConfig(depth=2, width=16, activation="softplus", softplus_beta=10)).double()
    p = torch.randn(5, 3, dtype=torch.float64)
    c, g = value_and_gradient(model, p)
    param = model.output.bias
    weights = torch.randn(5, 3, dtype=torch.float64)

    def objective():
        return (sample_network(model, p, c, g) * weights).sum()

    (analytic,) = torch.autograd.grad(objective(), param)
    # formula: dF/db = 1 for the output bias
    unit = g / (g * g).sum(dim=1, keepdim=True).clamp_min(MIN_GRAD_SQ)
    formula = -(unit * weights).sum()
    assert torch.allclose(analytic, formula.reshape(analytic.shape), rtol=1e-10)

    h = 1e-6
    with torch.no_grad():
        param += h
        up = objective()
        param -= 2 * h
        down = objective()
        param += h
    numeric = (up - down) / (2 * h)
    assert math.isclose(float(analytic), float(numeric), rel_tol=1e-6, abs_tol=1e-9)


def test_sample_network_gradient_all_parameters_finite_differences():
    torch.manual_seed(3)
    model = ImplicitMLP(ImplicitConfig(depth=2, width=12, activation="softplus", softplus_beta=5)).double()
    p = torch.randn(7, 3, dtype=torch.float64)
    c, g = value_and_gradient(model, p)
    w = model.hidden[0].weight

    def objective():
        return sample_network(model, p, c, g).pow(2).sum()

    (analytic,) = torch.autograd.grad(objective(), w)
    h = 1e-6
    for index in [(0, 0), (3, 1), (7, 2)]:
        with torch.no_grad():
            w[index] += h
            up = objective()
            w[index] -= 2 * h
            down = objective()
            w[index] += h
        assert float(analytic[index]) == pytest.approx(float((up - down) / (2 * h)), rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("activation,skip", [("relu", "all"), ("softplus", "middle"), ("softplus", "none")])
def test_geometric_init_is_a_sphere(activation, skip):
    torch.manual_seed(0)
    cfg = ImplicitConfig(depth=4, width=256, activation=activation, skip=skip, init_radius=0.5, init_gain=1.0)
    model = ImplicitMLP(cfg)
    d = torch.randn(2000, 3)
    d = d / d.norm(dim=1, keepdim=True)
    with torch.no_grad():
        inside = model(0.1 * d)
        outside = model(1.0 * d)
        near = model(0.5 * d)
    assert (inside < 0).float().mean() > 0.95
    assert (outside > 0).float().mean() > 0.95
    if skip != "all":
        assert near.abs().mean() < 0.15
    # with xyz fed unscaled into every layer (the reference) the slope grows with depth, so the initial
    # sphere is smaller than init_radius but still a closed, star-shaped zero set around the origin


def test_reference_init_zero_set_is_star_shaped():
    torch.manual_seed(0)
    model = ImplicitMLP(ImplicitConfig())
    d = torch.randn(500, 3)
    d = d / d.norm(dim=1, keepdim=True)
    radii = torch.linspace(0.0, 1.1, 23)
    with torch.no_grad():
        values = torch.stack([model(r * d) for r in radii])  # (23, 500)
    assert (values[0] < 0).all() and (values[-1] > 0).all()
    assert (values.diff(dim=0) > 0).float().mean() > 0.99  # increasing along every ray


def test_reference_architecture_shapes():
    model = ImplicitMLP(ImplicitConfig())  # 8 x 512, xyz into every hidden layer
    assert model.hidden[0].in_features == 3 and model.hidden[0].out_features == 509
    assert all(layer.in_features == 512 for layer in model.hidden[1:])
    assert model.hidden[-1].out_features == 512
    assert model.output.in_features == 512
    n_params = sum(p.numel() for p in model.parameters())
    assert 1.7e6 < n_params < 1.95e6  # the reference decoder has ≈1.83 M parameters
