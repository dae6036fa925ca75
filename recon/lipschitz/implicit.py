"""1-Lipschitz implicit surfaces: |F(x)| is a lower bound on the distance from x to the zero set.

If F is continuous with Lipschitz constant L ≤ 1 then for any z with F(z) = 0,
|F(x)| = |F(x) − F(z)| ≤ L‖x − z‖, hence |F(x)| ≤ dist(x, {F = 0}): a sphere-tracing step of |F(x)|
never crosses the surface. This holds for *every* such network, trained or not; training with a
distance loss makes the bound tight (|F| close to the true distance).

The network is a convex blend of a sphere and a GroupSort/Björck MLP,

    F(x) = (1 − s)·(√(‖x‖² + ε²) − r) + s·N(x),    s = sigmoid(a) learnable,

so it starts as a sphere of radius r (negative inside, like the geometric initialization of the
reconstruction MLP) and is (1 − s) + s·Lip(N) ≤ 1 Lipschitz throughout training.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from recon.core.levelset import project_to_zero_level_set
from recon.core.losses import NearestScanPoint, data_term
from recon.lipschitz.network import LipschitzMLP, MLPConfig, frozen, module_lipschitz_bound
from recon.models.lipschitz_config import LipschitzImplicitConfig

RADIAL_EPS = 1e-3
"""ε in √(‖x‖² + ε²): a smooth norm at the origin whose gradient norm stays below 1."""


class LipschitzImplicit(nn.Module):
    """1-Lipschitz implicit network: forward (n, 3) points → (n,) values, negative inside."""

    def __init__(self, config: LipschitzImplicitConfig | None = None):
        super().__init__()
        self.config = config = config or LipschitzImplicitConfig()
        if config.depth < 1 or not 0.0 < config.init_blend < 1.0:
            raise ValueError("depth must be >= 1 and init_blend in (0, 1)")
        self.mlp = LipschitzMLP(
            MLPConfig(
                in_dim=3,
                widths=(config.width,) * config.depth,
                out_dim=1,
                layer="bjorck",
                activation="groupsort",
                group_size=config.group_size,
                bjorck_iters=config.bjorck_iters,
            )
        )
        self.blend_logit = nn.Parameter(torch.tensor(math.log(config.init_blend / (1.0 - config.init_blend))))
        self.radius = nn.Parameter(torch.tensor(float(config.init_radius)))

    def fit_report(self, seed: int = 0) -> tuple[str, dict, str]:
        """After a fit: test |F(x)| ≤ dist(x, zero set) on random points (the run folder's lipschitz_check.json)."""
        check = check_distance_bound(self, resolution=128, n_queries=20_000, seed=seed)
        summary = f"lipschitz guarantee holds={check.holds} max_violation={check.max_violation:.2e}"
        return "lipschitz_check", asdict(check) | {"holds": check.holds}, summary

    def blend(self) -> torch.Tensor:
        """Weight s of the MLP in the blend."""
        return torch.sigmoid(self.blend_logit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.blend()
        radial = torch.sqrt((x * x).sum(dim=1) + RADIAL_EPS**2) - self.radius
        return (1.0 - s) * radial + s * self.mlp(x).squeeze(1)

    @torch.no_grad()
    def lipschitz_bound(self, norm: str = "l2") -> float:
        """(1 − s)·1 + s·Lip(MLP) in ℓ2 (the radial part is 1-Lipschitz in ℓ2 only)."""
        if norm != "l2":
            raise ValueError("the implicit network is bounded in the l2 norm only")
        s = float(self.blend())
        return (1.0 - s) + s * module_lipschitz_bound(self.mlp, "l2")

    def frozen_copy(self) -> LipschitzImplicit:
        """A copy whose MLP holds plain linear layers with the current effective weights."""
        copied = copy.deepcopy(self)
        copied.mlp = frozen(self.mlp)
        return copied.requires_grad_(False).eval()


@dataclass
class DistanceFitConfig:
    """Training of a 1-Lipschitz implicit network on a point set (own loop, used by tests/experiments)."""

    model: LipschitzImplicitConfig = field(default_factory=LipschitzImplicitConfig)
    steps: int = 300
    """Adam steps."""
    batch: int = 1024
    """Surface points per step (also the number of near-surface queries per σ)."""
    sigmas: tuple[float, ...] = (0.02, 0.1, 0.3)
    """Std of the Gaussian offsets of off-surface queries around surface points."""
    uniform: int = 512
    """Uniform queries in the box [−bound, bound]³ per step."""
    bound: float = 1.1
    lr: float = 2e-3
    data_weight: float = 3.0
    """Weight of the data term mean |F(x)| over surface points."""
    seed: int = 0


def distance_loss(
    model: nn.Module,
    surface: torch.Tensor,
    queries: torch.Tensor,
    nearest: NearestScanPoint,
    data_weight: float,
) -> torch.Tensor:
    """mean_q | |F(q)| − d(q, X) | + λ·mean_x |F(x)|: regress |F| to the unsigned distance to the points."""
    distance = nearest.distances(queries).detach()
    fit = (model(queries).abs() - distance).abs().mean()
    return fit + data_weight * data_term(model(surface))


def fit_distance_field(
    points: np.ndarray, config: DistanceFitConfig | None = None
) -> tuple[LipschitzImplicit, list[float]]:
    """Train a :class:`LipschitzImplicit` so that |F| approximates the distance to (n, 3) ``points``.

    Returns the model (eval mode) and the loss every step.
    """
    config = config or DistanceFitConfig()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    surface_all = torch.as_tensor(np.asarray(points), dtype=torch.float32)
    nearest = NearestScanPoint(surface_all)
    model = LipschitzImplicit(config.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    losses = []
    for _ in range(config.steps):
        surface = surface_all[torch.randint(len(surface_all), (config.batch,), generator=generator)]
        offsets = [
            surface + sigma * torch.randn(surface.shape, generator=generator) for sigma in config.sigmas
        ]
        box = (torch.rand(config.uniform, 3, generator=generator) * 2 - 1) * config.bound
        loss = distance_loss(model, surface, torch.cat([*offsets, box]), nearest, config.data_weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return model.eval(), losses


@dataclass
class DistanceBoundCheck:
    """Check of |F(x)| ≤ dist(x, {F = 0}) on random points, against a dense sampling of the zero set."""

    lipschitz_bound: float
    """Certified bound L of F."""
    n_zero_points: int
    """Zero-set samples (marching-cubes vertices moved onto F = 0 by Newton steps)."""
    zero_residual: float
    """max |F| over those samples (what the check allows on top of L·distance)."""
    n_queries: int
    max_violation: float
    """max over queries of |F(q)| − (L·dist(q, Z) + residual); ≤ 0 when the guarantee holds."""
    n_violations: int
    """Queries with a violation above ``tolerance``."""
    tolerance: float
    tightness_median: float
    """Median |F(q)| / dist(q, Z) over the queries (1 = |F| is the exact distance)."""
    tightness_near_median: float
    """The same over queries within 0.1 of the zero set."""

    @property
    def holds(self) -> bool:
        return self.n_violations == 0


def zero_set_samples(
    model: nn.Module, resolution: int = 96, bound: float = 1.2, newton_steps: int = 5
) -> np.ndarray:
    """(k, 3) points on {F = 0}: marching-cubes vertices of F refined by generalized Newton steps."""
    from recon.core.extract import extract_mesh
    from recon.models.field import numpy_field

    vertices, _ = extract_mesh(numpy_field(model), resolution=resolution, bound=bound)
    if len(vertices) == 0:
        return np.zeros((0, 3))
    projected = project_to_zero_level_set(
        model, torch.as_tensor(vertices, dtype=torch.float32), max_steps=newton_steps, tol=1e-7
    )
    return projected.points.detach().double().numpy()


def check_distance_bound(
    model: nn.Module,
    *,
    n_queries: int = 20_000,
    resolution: int = 96,
    bound: float = 1.2,
    tolerance: float = 1e-5,
    seed: int = 0,
    zero_points: np.ndarray | None = None,
) -> DistanceBoundCheck:
    """Check |F(q)| ≤ L·dist(q, Z) + max_Z |F| on random queries q in [−bound, bound]³.

    Z is sampled densely (:func:`zero_set_samples` unless ``zero_points`` is given). Since Z's samples
    lie on the zero set, dist(q, Z) ≥ dist(q, {F = 0}) and the checked inequality is implied by the
    guarantee; a single query above it (beyond float ``tolerance``) disproves the bound.
    """
    lipschitz = module_lipschitz_bound(model, "l2")
    model = frozen(model).cpu()
    z = (
        zero_set_samples(model, resolution, bound)
        if zero_points is None
        else np.asarray(zero_points, dtype=np.float64)
    )
    if len(z) == 0:
        raise ValueError("the network has no zero level set inside the box")
    with torch.no_grad():
        residual = float(model(torch.as_tensor(z, dtype=torch.float32)).abs().max())
        q = np.random.default_rng(seed).uniform(-bound, bound, (n_queries, 3))
        values = model(torch.as_tensor(q, dtype=torch.float32)).abs().double().numpy()
    dist, _ = cKDTree(z).query(q, workers=-1)
    excess = values - (lipschitz * dist + residual)
    ratio = values / np.maximum(dist, 1e-12)
    near = dist < 0.1
    return DistanceBoundCheck(
        lipschitz_bound=lipschitz,
        n_zero_points=len(z),
        zero_residual=residual,
        n_queries=n_queries,
        max_violation=float(excess.max()),
        n_violations=int((excess > tolerance).sum()),
        tolerance=tolerance,
        tightness_median=float(np.median(ratio)),
        tightness_near_median=float(np.median(ratio[near])) if near.any() else float("nan"),
    )
