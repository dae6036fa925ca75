"""Lipschitz layers, bounds, certificates, Wasserstein estimation and 1-Lipschitz implicit surfaces."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import sphere_points
from scipy.stats import norm as normal_dist
from torch import nn

from recon.lipschitz.certify import certified_radius, logit_margins, multiclass_hinge
from recon.lipschitz.implicit import (
    DistanceFitConfig,
    LipschitzImplicit,
    LipschitzImplicitConfig,
    check_distance_bound,
    fit_distance_field,
)
from recon.lipschitz.layers import (
    BjorckLinear,
    GroupSort,
    LInfLinear,
    MaxMin,
    SpectralNormLinear,
    bjorck_orthonormalize,
    project_rows_l1_ball,
)
from recon.lipschitz.network import (
    LipschitzMLP,
    MLPConfig,
    empirical_lipschitz,
    frozen,
    gradient_norms_through_layers,
    local_lipschitz,
    module_lipschitz_bound,
)
from recon.lipschitz.wasserstein import CriticConfig, exact_w1, exact_w1_1d, fit_critic, gaussian_w1

REL_TOL = 1e-5
"""Float32 evaluation may exceed a float64 bound by rounding only."""


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny matrices: one thread avoids contention on the shared 2-core machine (≈30× faster here).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------ activations
@pytest.mark.parametrize("group_size", [2, 3, 6])
def test_groupsort_sorts_within_groups_and_preserves_gradient_norm(group_size):
    x = torch.randn(5, 12, dtype=torch.float64, requires_grad=True)
    y = GroupSort(group_size)(x)
    groups_in = x.detach().reshape(5, -1, group_size)
    groups_out = y.detach().reshape(5, -1, group_size)
    assert torch.equal(groups_out, groups_in.sort(dim=-1).values)
    assert (groups_out.diff(dim=-1) >= 0).all()
    g = torch.randn(5, 12, dtype=torch.float64)
    (vjp,) = torch.autograd.grad(y, x, g)
    assert torch.allclose(vjp.norm(dim=1), g.norm(dim=1))


def test_maxmin_is_groupsort_of_two_and_rejects_bad_widths():
    x = torch.randn(4, 6)
    assert torch.equal(
        MaxMin()(x),
        torch.stack([x[:, 0::2].minimum(x[:, 1::2]), x[:, 0::2].maximum(x[:, 1::2])], 2).reshape(4, 6),
    )
    with pytest.raises(ValueError):
        GroupSort(4)(x)


# ------------------------------------------------------------------------------------------------ Björck
@pytest.mark.parametrize("shape", [(16, 16), (24, 10), (10, 24)])
def test_bjorck_converges_to_orthonormal(shape):
    w = torch.randn(*shape, dtype=torch.float64)
    s = torch.linalg.svdvals(bjorck_orthonormalize(w, iters=30))
    assert torch.allclose(s, torch.ones_like(s), atol=1e-6)


@pytest.mark.parametrize("iters", [0, 1, 3, 8])
def test_bjorck_never_exceeds_one_even_before_convergence(iters):
    # Ill-conditioned input: singular values from 1e-3 to 1e2.
    u, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64))
    w = u @ torch.diag(torch.logspace(-3, 2, 12, dtype=torch.float64)) @ v.T
    s = torch.linalg.svdvals(bjorck_orthonormalize(w, iters=iters))
    assert s.max() <= 1 + 1e-12


def test_bjorck_gram_orientation_does_not_change_result():
    w = torch.randn(7, 13, dtype=torch.float64)
    a = bjorck_orthonormalize(w, iters=5)
    b = bjorck_orthonormalize(w.T, iters=5).T
    assert torch.allclose(a, b, atol=1e-12)


def test_bjorck_backpropagates_through_the_iterations():
    w = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: bjorck_orthonormalize(m, iters=4), (w,))


def test_bjorck_layer_bound_is_exact_operator_norm():
    layer = BjorckLinear(20, 30, iters=3)
    w = layer.effective_weight().detach().double().numpy()
    assert layer.lipschitz_bound("l2") == pytest.approx(np.linalg.norm(w, 2), rel=1e-12)
    assert layer.lipschitz_bound("linf") == pytest.approx(np.abs(w).sum(axis=1).max(), rel=1e-12)


# ------------------------------------------------------------------------------------------------ L∞ and spectral
def _l1_projection_by_bisection(row: np.ndarray) -> np.ndarray:
    if np.abs(row).sum() <= 1:
        return row
    lo, hi = 0.0, np.abs(row).max()
    for _ in range(200):
        tau = 0.5 * (lo + hi)
        lo, hi = (tau, hi) if np.maximum(np.abs(row) - tau, 0).sum() > 1 else (lo, tau)
    return np.sign(row) * np.maximum(np.abs(row) - 0.5 * (lo + hi), 0)


def test_l1_ball_projection_matches_bisection(rng):
    w = rng.normal(size=(40, 9)) * rng.uniform(0.02, 2.0, size=(40, 1))
    projected = project_rows_l1_ball(torch.from_numpy(w)).numpy()
    expected = np.stack([_l1_projection_by_bisection(row) for row in w])
    assert np.allclose(projected, expected, atol=1e-10)
    assert (np.abs(projected).sum(axis=1) <= 1 + 1e-12).all()
    inside = np.abs(w).sum(axis=1) <= 1
    assert inside.any() and np.array_equal(projected[inside], w[inside])


def test_linf_layer_bound_at_most_one():
    layer = LInfLinear(32, 16)
    with torch.no_grad():
        layer.weight.mul_(50.0)
    assert layer.lipschitz_bound("linf") <= 1 + 1e-6


def test_spectral_layer_bound_reports_the_true_norm():
    layer = SpectralNormLinear(30, 20)
    w = layer.effective_weight().detach().double().numpy()
    assert layer.lipschitz_bound("l2") == pytest.approx(np.linalg.norm(w, 2), rel=1e-12)
    # 10 initial power iterations: σ̂ ≤ σ, so the normalized weight is at or slightly above 1.
    assert 1 - 1e-6 <= layer.lipschitz_bound("l2") < 1.2


# ------------------------------------------------------------------------------------------------ network bound
def test_network_bound_is_product_of_layer_norms():
    scaled = nn.Linear(6, 6, bias=False)
    with torch.no_grad():
        scaled.weight.copy_(3.0 * torch.eye(6))
    net = nn.Sequential(BjorckLinear(4, 6, iters=2), nn.ReLU(), scaled, GroupSort(2), LInfLinear(6, 2))
    expected = 1.0
    # The constrained layers' forward uses their effective weight, the plain Linear its own.
    for w in (net[0].effective_weight(), net[2].weight, net[4].effective_weight()):
        expected *= np.linalg.norm(w.detach().double().numpy(), 2)
    assert module_lipschitz_bound(net, "l2") == pytest.approx(expected, rel=1e-12)
    with pytest.raises(TypeError):
        module_lipschitz_bound(nn.Sequential(nn.Tanh()))


CONFIGS = [
    MLPConfig(in_dim=5, widths=(16, 16), out_dim=3, layer="bjorck", activation="groupsort", bjorck_iters=4),
    MLPConfig(in_dim=5, widths=(16, 16), out_dim=3, layer="linf", activation="groupsort"),
    MLPConfig(in_dim=5, widths=(16, 16), out_dim=1, layer="spectral", activation="relu"),
    MLPConfig(in_dim=5, widths=(18,), out_dim=2, layer="bjorck", activation="groupsort", group_size=3),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.layer}-{c.activation}-{c.out_dim}")
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_empirical_lipschitz_never_exceeds_bound(config, norm):
    net = LipschitzMLP(config)
    # A few training steps so the weights are not at their initialization.
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    x = torch.randn(64, 5)
    for _ in range(10):
        loss = (net(x) ** 2).sum(dim=1).mean() - net(x).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    bound = module_lipschitz_bound(net, norm)
    found = empirical_lipschitz(net, x, norm, steps=20)
    assert 0 < found.value <= bound * (1 + REL_TOL)


def test_empirical_check_is_tight_on_a_linear_map_and_catches_a_false_bound():
    linear = nn.Linear(4, 3)
    found = empirical_lipschitz(linear, torch.randn(8, 4), "l2", steps=5)
    assert found.max_grad_data == pytest.approx(module_lipschitz_bound(linear, "l2"), rel=1e-5)

    class ClaimsOne(nn.Sequential):
        def lipschitz_bound(self, norm):
            return 1.0

        def frozen_copy(self):
            return self

    liar = ClaimsOne(BjorckLinear(4, 4), GroupSort(2), nn.Linear(4, 1))
    with torch.no_grad():
        liar[2].weight.fill_(2.0)
    assert empirical_lipschitz(liar, torch.randn(16, 4), "l2", steps=10).value > module_lipschitz_bound(liar)


def test_local_lipschitz_of_scalar_output_is_dual_gradient_norm():
    net = LipschitzMLP(MLPConfig(in_dim=6, widths=(8,), out_dim=1)).eval()
    x = torch.randn(10, 6, requires_grad=True)
    (grad,) = torch.autograd.grad(net(x).sum(), x)
    assert torch.allclose(local_lipschitz(net, x, "l2"), grad.norm(dim=1), atol=1e-6)
    assert torch.allclose(local_lipschitz(net, x, "linf"), grad.abs().sum(dim=1), atol=1e-6)


def test_frozen_copy_is_the_same_function_with_the_same_bound():
    net = LipschitzMLP(MLPConfig(in_dim=3, widths=(8, 8), out_dim=2, bjorck_iters=5)).eval()
    plain = frozen(net)
    x = torch.randn(20, 3)
    assert torch.allclose(net(x), plain(x), atol=1e-6)
    assert not any(p.requires_grad for p in plain.parameters())
    assert module_lipschitz_bound(plain) == pytest.approx(module_lipschitz_bound(net), rel=1e-9)


def test_relu_loses_gradient_norm_through_layers_groupsort_keeps_it():
    x = torch.linspace(-1, 1, 101)[:, None]
    norms = {}
    for activation in ("relu", "groupsort"):
        net = LipschitzMLP(MLPConfig(in_dim=1, widths=(32, 32), out_dim=1, activation=activation))
        optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
        for _ in range(150):
            loss = ((net(x).squeeze(1) - x.squeeze(1).abs()) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        norms[activation] = gradient_norms_through_layers(net, x)
    assert norms["groupsort"][-1] == pytest.approx(1.0, abs=1e-5)  # output layer: a unit row
    assert min(norms["groupsort"]) > 0.95
    assert norms["relu"][0] < 0.9 < norms["groupsort"][0]


# ------------------------------------------------------------------------------------------------ certificates
def test_multiclass_hinge_matches_torch():
    logits, labels = torch.randn(30, 7), torch.randint(0, 7, (30,))
    for margin in (0.3, 1.0, 2.5):
        assert torch.allclose(
            multiclass_hinge(logits, labels, margin), F.multi_margin_loss(logits, labels, margin=margin)
        )


def test_l2_certificate_equals_exact_boundary_distance_for_orthonormal_linear_classifier():
    q, _ = torch.linalg.qr(torch.randn(8, 4, dtype=torch.float64))
    w = q.T  # (4 classes, 8 features), orthonormal rows: L = 1 and ‖w_y − w_j‖ = √2
    x = torch.randn(50, 8, dtype=torch.float64)
    logits = x @ w.T
    labels = logits.argmax(1)
    radius = certified_radius(logits, labels, lipschitz=1.0, norm="l2")
    distances = torch.stack(
        [
            (logits.gather(1, labels[:, None]).squeeze(1) - logits[:, j]) / (w[labels] - w[j]).norm(dim=1)
            for j in range(4)
        ],
        1,
    )
    distances[torch.arange(50), labels] = math.inf
    assert torch.allclose(radius, distances.min(dim=1).values, atol=1e-12)


def test_certified_radius_zero_when_misclassified_and_linf_uses_2L():
    logits = torch.tensor([[2.0, 0.5, 0.0], [0.0, 1.0, 0.2]])
    labels = torch.tensor([0, 0])
    assert logit_margins(logits, labels).tolist() == pytest.approx([1.5, -1.0])
    assert certified_radius(logits, labels, 2.0, "linf").tolist() == pytest.approx([1.5 / 4, 0.0])
    assert certified_radius(logits, labels, 2.0, "l2").tolist() == pytest.approx(
        [1.5 / (2 * math.sqrt(2)), 0.0]
    )


# ------------------------------------------------------------------------------------------------ Wasserstein
def test_exact_w1_matches_brute_force_and_sorting(rng):
    a, b = rng.normal(size=(6, 2)), rng.normal(size=(6, 2)) + 1.0
    brute = min(np.linalg.norm(a - b[list(p)], axis=1).mean() for p in itertools.permutations(range(6)))
    assert exact_w1(a, b) == pytest.approx(brute, rel=1e-12)
    a1, b1 = rng.normal(size=(40, 1)), rng.exponential(size=(40, 1))
    assert exact_w1(a1, b1) == pytest.approx(exact_w1_1d(a1, b1), rel=1e-12)


def test_gaussian_w1_closed_form_matches_quantile_integral():
    u = (np.arange(200_000) + 0.5) / 200_000
    for shift, sa, sb in [(0.7, 1.0, 2.0), (-1.5, 0.5, 0.2), (0.0, 1.0, 3.0)]:
        integral = np.abs(normal_dist.ppf(u, 0, sa) - normal_dist.ppf(u, shift, sb)).mean()
        assert gaussian_w1(1, shift, sa, sb) == pytest.approx(integral, rel=1e-3)
    assert gaussian_w1(3, 2.0, 1.0, 1.0) == 2.0


def test_kr_critic_lower_bounds_exact_w1_and_gets_close(rng):
    a = rng.normal(size=(400, 2))
    b = a + np.array([0.6, -0.3])  # translated copy: W1 = ‖t‖ exactly
    critic, estimate = fit_critic(a, b, CriticConfig(widths=(32, 32), steps=150, batch=256, lr=0.01))
    w1 = float(np.hypot(0.6, 0.3))
    assert estimate.lipschitz_bound <= 1 + 1e-5
    assert estimate.estimate <= w1 + 1e-6
    assert estimate.estimate > 0.9 * w1


# ------------------------------------------------------------------------------------------------ implicit surfaces
def test_lipschitz_implicit_starts_as_a_sphere_with_bound_one():
    model = LipschitzImplicit(LipschitzImplicitConfig(depth=2, width=16, init_radius=0.5)).eval()
    with torch.no_grad():
        values = model(torch.tensor([[0.0, 0.0, 0.0], [1.2, 0.0, 0.0]]))
    assert values[0] < 0 < values[1]
    assert module_lipschitz_bound(model) <= 1 + 1e-6
    with pytest.raises(ValueError):
        model.lipschitz_bound("linf")


@pytest.fixture(scope="module")
def trained_sphere_field():
    torch.set_num_threads(1)
    points, _ = sphere_points(1500, radius=0.6, seed=1)
    config = DistanceFitConfig(
        model=LipschitzImplicitConfig(depth=2, width=32, bjorck_iters=10), steps=80, batch=256, lr=0.01
    )
    model, losses = fit_distance_field(points, config)
    return model, losses


def test_trained_field_lower_bounds_distance_to_its_zero_set(trained_sphere_field):
    model, losses = trained_sphere_field
    assert losses[-1] < 0.5 * losses[0]
    check = check_distance_bound(model, n_queries=4000, resolution=40)
    assert check.holds, check
    assert check.lipschitz_bound <= 1 + 1e-6
    assert check.zero_residual < 1e-4
    assert 0.5 < check.tightness_near_median <= 1 + 1e-6


def test_distance_check_catches_a_field_that_is_not_1_lipschitz(trained_sphere_field):
    model, _ = trained_sphere_field

    class Steeper(nn.Module):
        def forward(self, x):
            return 3.0 * model(x)

        def lipschitz_bound(self, norm="l2"):
            return 1.0  # a false claim the check must expose

        def frozen_copy(self):
            return self

    check = check_distance_bound(Steeper(), n_queries=2000, resolution=40)
    assert not check.holds and check.max_violation > 0.05


def test_exact_sdf_is_tight():
    class Sphere(nn.Module):
        def forward(self, x):
            return x.norm(dim=1) - 0.5

        def lipschitz_bound(self, norm="l2"):
            return 1.0

        def frozen_copy(self):
            return self

    check = check_distance_bound(Sphere(), n_queries=3000, resolution=48)
    assert check.holds
    assert check.tightness_median == pytest.approx(1.0, abs=0.02)


# ------------------------------------------------------------------------------------------------ CLI
def _run(args: list[str]) -> int:
    from recon.cli.main import main

    try:
        main(["lipschitz", *args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_wasserstein_writes_result_and_refuses_overwrite(tmp_path, capsys):
    args = ["wasserstein", "gauss:dim=1,shift=1,n=300", "gauss:dim=1,n=300", "-o", str(tmp_path)]
    args += ["--steps", "60", "--subset", "100", "--n-subsets", "2"]
    assert _run(args) == 0
    result = json.loads((tmp_path / "wasserstein.json").read_text())
    assert result["known_w1"] == 1.0
    assert (tmp_path / "wasserstein.png").stat().st_size > 0
    for row in result["subsets"]:
        assert row["kr"] <= row["exact"] + 1e-9
    assert _run(args) == 2
    assert "exists" in capsys.readouterr().err
    assert _run(["wasserstein", "gauss:dim=x", "gauss", "-o", str(tmp_path / "b")]) == 2


def test_cli_train_certify_certified_never_exceeds_empirical(tmp_path, capsys):
    run = tmp_path / "run"
    train = ["train", "digits", "-o", str(run), "--widths", "32,32", "--epochs", "3", "--limit", "400"]
    assert _run(train) == 0
    certify = ["certify", str(run), "--limit", "80", "--eps", "0.05,0.3,0.8", "--attack-steps", "5",
               "--attack-queries", "300"]  # fmt: skip
    assert _run(certify) == 0
    result = json.loads((run / "certify-l2.json").read_text())
    assert result["empirical_lipschitz_l2"]["value"] <= result["bounds"]["l2"] * (1 + REL_TOL)
    for row in result["results"]:
        assert row["violations"] == 0
        assert row["certified"] <= row["empirical"] <= row["clean"]
    assert result["results"][0]["certified"] > 0
    assert _run(["certify", str(tmp_path / "missing")]) == 2


def test_a_lipschitz_fit_through_the_pipeline_records_its_guarantee(tmp_path):
    """model_type='lipschitz' reaches the fitter through the model registry, and the network's own report
    (the distance bound) lands in the run folder."""
    import json

    from conftest import sphere_points

    from recon.core.config import tiny_preset
    from recon.core.reconstruct import fit_scan
    from recon.io import save_point_cloud

    points, normals = sphere_points(2000, 0.6, seed=5)
    save_point_cloud(tmp_path / "scan.ply", points, normals)
    config = tiny_preset().with_(
        model=LipschitzImplicitConfig(depth=2, width=32, bjorck_iters=5),
        init="sphere",
        anchor_weight=0.0,
        steps=30,
        resolution=32,
    )
    fit_scan(tmp_path / "scan.ply", tmp_path / "run", config, thumbnail=False)
    report = json.loads((tmp_path / "run" / "lipschitz_check.json").read_text())
    assert report["holds"] is True
    assert "lipschitz guarantee holds=True" in (tmp_path / "run" / "log").read_text()


def test_sdf_command_writes_a_run_folder_in_the_scans_frame(tmp_path):
    from click.testing import CliRunner

    from recon.cli.lipschitz import lipschitz
    from recon.io import load_mesh, save_point_cloud

    points, normals = sphere_points(2_000, 0.5, seed=4)
    scan = save_point_cloud(tmp_path / "ball.ply", points * 3.0 + [10.0, -2.0, 5.0], normals)
    run = tmp_path / "run"
    args = [
        "sdf",
        str(scan),
        "-o",
        str(run),
        "--steps",
        "60",
        "--width",
        "32",
        "--depth",
        "2",
        "--resolution",
        "32",
    ]
    result = CliRunner().invoke(lipschitz, args)
    assert result.exit_code == 0, result.output
    for name in ("config.json", "meta.json", "normalization.json", "sdf.json", "mesh.ply", "DONE"):
        assert (run / name).is_file(), name
    written = json.loads((run / "sdf.json").read_text())
    assert written["check"]["holds"] and written["n_faces"] > 0
    assert json.loads((run / "config.json").read_text())["lipschitz-sdf"]["fit"]["steps"] == 60
    mesh = load_mesh(run / "mesh.ply")
    assert np.linalg.norm(mesh.vertices.mean(axis=0) - [10.0, -2.0, 5.0]) < 0.5  # the scan's frame
    again = CliRunner().invoke(lipschitz, args)
    assert again.exit_code != 0 and "--force" in str(again.exception)
