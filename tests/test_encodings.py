"""Dense multi-resolution grid encoding: exact on linear fields, differentiable to second order."""

import torch

from recon.models.encodings import DenseGridEncoding
from recon.models.implicit import ImplicitConfig, ImplicitMLP


def test_trilinear_interpolation_reproduces_a_linear_field():
    encoding = DenseGridEncoding((5, 9), features=1, bound=1.0).double()
    a = torch.tensor([0.3, -1.2, 0.7], dtype=torch.float64)
    with torch.no_grad():
        for r, grid in zip(encoding.resolutions, encoding.grids, strict=True):
            axis = torch.linspace(-1.0, 1.0, r, dtype=torch.float64)
            xs, ys, zs = torch.meshgrid(axis, axis, axis, indexing="ij")
            grid.copy_((a[0] * xs + a[1] * ys + a[2] * zs).reshape(-1, 1))
    x = 2 * torch.rand(200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) - 1
    expected = (x @ a)[:, None].expand(-1, 2)
    assert torch.allclose(encoding(x), expected, atol=1e-12)


def test_grid_model_starts_as_a_sphere_and_has_second_derivatives():
    torch.manual_seed(0)
    model = ImplicitMLP(
        ImplicitConfig(depth=2, width=64, activation="softplus", skip="none", grid_resolutions=(8, 16))
    )
    d = torch.randn(500, 3)
    d = d / d.norm(dim=1, keepdim=True)
    with torch.no_grad():
        assert (model(0.1 * d) < 0).all() and (model(1.0 * d) > 0).all()
    x = torch.randn(20, 3, requires_grad=True)
    (g,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    g.norm(dim=1).sum().backward()
    assert model.grid.grids[1].grad is not None and torch.isfinite(model.grid.grids[1].grad).all()
