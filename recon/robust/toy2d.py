"""A 2-D picture of the geometric SVM: two interleaved half moons, few training points, two boundaries.

Cross-entropy alone stops moving the boundary once the few training points are classified confidently, so it
often passes close to some of them; the large-margin method (:func:`recon.robust.train.large_margin_objective`)
pushes it away from every correct point up to the margin, like an SVM. Points live in [0, 1]² so that the
boundary search of the image classifiers (which clips to [0, 1]) applies unchanged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from recon.atomic import atomic_path
from recon.errors import ConfigError, InputError
from recon.robust.data import check_seed
from recon.robust.train import auto_margin, large_margin_objective, margin_boundary_search

TOY_METHODS = ("standard", "margin")


def two_moons(per_class: int, noise: float = 0.08, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved half circles with Gaussian noise, scaled uniformly into [0.1, 0.9] × [0.3, 0.7].

    Returns
    -------
    points : (2·per_class, 2) float32 in [0, 1]
    labels : (2·per_class,) int64, class 0 on the upper moon
    """
    rng = np.random.default_rng(seed)
    angles = rng.uniform(0.0, math.pi, size=(2, per_class))
    upper = np.stack([np.cos(angles[0]), np.sin(angles[0])], axis=1)
    lower = np.stack([1.0 - np.cos(angles[1]), 0.5 - np.sin(angles[1])], axis=1)
    points = np.concatenate([upper, lower]) + rng.normal(0.0, noise, size=(2 * per_class, 2))
    # The moons span x ∈ [−1, 2], y ∈ [−0.5, 1] before the noise: map that box, unstretched, into the middle
    # of [0.1, 0.9]².
    points = np.array([0.1, 0.3]) + 0.8 * (points - np.array([-1.0, -0.5])) / 3.0
    labels = np.repeat(np.arange(2), per_class)
    return torch.from_numpy(points.clip(0.0, 1.0).astype(np.float32)), torch.from_numpy(labels)


def toy_classifier(hidden: int = 64, seed: int = 0) -> nn.Sequential:
    """A 2 → hidden → hidden → 2 ReLU network with seeded initialization."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2)
        )


@dataclass(frozen=True)
class ToyConfig:
    """The 2-D toy: data, network and both trainings (full batch, Adam). The default margin is half the median
    distance from a training point to the nearest point of the other moon."""

    per_class: int = 8
    """Training points per moon (scarce on purpose)."""
    test_per_class: int = 500
    """Test points per moon."""
    noise: float = 0.08
    """Std of the Gaussian noise added to the moons."""
    steps: int = 600
    """Adam steps of each training."""
    lr: float = 5e-3
    """Adam learning rate."""
    hidden: int = 64
    """Width of both hidden layers."""
    margin: float | None = None
    """L2 margin (default from the data)."""
    margin_weight: float = 1.0
    """Weight of the margin hinge next to the cross-entropy."""
    iters: int = 10
    """Boundary-search PGD and regula falsi iterations."""
    seed: int = 0
    """Seed of the points, the initialization and the boundary search."""

    def validate(self) -> None:
        """Raise ConfigError for settings no toy can use."""
        if min(self.per_class, self.test_per_class, self.steps, self.hidden, self.iters) < 1:
            raise ConfigError("the toy needs at least one point per class, one step, unit and iteration")
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise ConfigError(f"--noise must be >= 0, got {self.noise}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"the learning rate must be positive, got {self.lr}")
        if self.margin is not None and not (math.isfinite(self.margin) and self.margin > 0):
            raise ConfigError(f"--margin must be positive, got {self.margin}")
        if not (math.isfinite(self.margin_weight) and self.margin_weight >= 0):
            raise ConfigError(f"--margin-weight must be >= 0, got {self.margin_weight}")
        check_seed(self.seed)


def train_toy(
    points: torch.Tensor, labels: torch.Tensor, method: str, config: ToyConfig, margin: float
) -> nn.Sequential:
    """A toy classifier trained full-batch with cross-entropy ('standard') or the large-margin objective."""
    if method not in TOY_METHODS:
        raise InputError(f"unknown toy method {method!r}; choose one of {', '.join(TOY_METHODS)}")
    model = toy_classifier(config.hidden, config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    search = margin_boundary_search(margin, "l2", iters=config.iters)
    for _ in range(config.steps):
        if method == "standard":
            loss = functional.cross_entropy(model(points), labels)
        else:
            loss, _ = large_margin_objective(
                model,
                points,
                labels,
                margin=margin,
                norm="l2",
                weight=config.margin_weight,
                search=search,
                generator=generator,
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def margin_grid(model: nn.Module, resolution: int = 301) -> tuple[np.ndarray, np.ndarray]:
    """The logit difference f_1 − f_0 on a regular grid over [0, 1]².

    Returns
    -------
    axis : (resolution,) float, the grid coordinates of both axes
    values : (resolution, resolution) float, values[i, j] at (x = axis[j], y = axis[i])
    """
    axis = np.linspace(0.0, 1.0, resolution)
    xx, yy = np.meshgrid(axis, axis)
    grid = torch.from_numpy(np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32))
    with torch.no_grad():
        logits = model(grid)
    return axis, (logits[:, 1] - logits[:, 0]).reshape(resolution, resolution).numpy()


def boundary_distances_2d(model: nn.Module, points: torch.Tensor, resolution: int = 401) -> np.ndarray:
    """(n,) L2 distance from each point to the decision boundary, brute force on a grid over [0, 1]².

    The boundary is the zero contour of f_1 − f_0 (marching squares on the grid); a point's distance is the
    smallest distance to a contour vertex, accurate to about one grid cell (1/(resolution − 1)). Points with no
    boundary inside the square get +inf.
    """
    from skimage.measure import find_contours

    axis, values = margin_grid(model, resolution)
    contours = find_contours(values, 0.0)
    if not contours:
        return np.full(len(points), np.inf)
    # find_contours returns (row, col) = (y, x) positions in grid units.
    vertices = np.concatenate(contours)[:, ::-1] * (axis[1] - axis[0])
    diff = points.numpy()[:, None, :].astype(np.float64) - vertices[None]
    return np.sqrt((diff**2).sum(axis=2)).min(axis=1)


def margin_gap(distances: np.ndarray, margin: float) -> float:
    """Mean shortfall max(0, margin − d) of (n,) boundary distances: 0 once every point clears the margin."""
    return float(np.maximum(0.0, margin - distances).mean())


@dataclass
class ToyResult:
    """What the toy figure shows, per method: test accuracy and the training points' boundary distances."""

    margin: float
    test_accuracy: dict[str, float] = field(default_factory=dict)
    min_distance: dict[str, float] = field(default_factory=dict)
    mean_distance: dict[str, float] = field(default_factory=dict)
    margin_gap: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def run_toy(config: ToyConfig, image: str | Path | None = None, *, force: bool = False) -> ToyResult:
    """Train both methods on the same scarce two-moons sample; optionally draw both boundaries into ``image``.

    The test accuracy is on a separate, larger two-moons sample (seed + 1); distances are those of the
    correctly classified training points, measured by :func:`boundary_distances_2d`.
    """
    if image is not None and Path(image).exists() and not force:
        raise InputError(f"{image} exists; pass --force to overwrite it")
    config.validate()
    points, labels = two_moons(config.per_class, config.noise, config.seed)
    test_points, test_labels = two_moons(config.test_per_class, config.noise, config.seed + 1)
    margin = config.margin or auto_margin(points, labels, "l2")
    result, models = ToyResult(margin=margin), {}
    for method in TOY_METHODS:
        model = train_toy(points, labels, method, config, margin)
        with torch.no_grad():
            result.test_accuracy[method] = (model(test_points).argmax(1) == test_labels).float().mean().item()
            correct = model(points).argmax(1) == labels
        distances = boundary_distances_2d(model, points[correct])
        result.min_distance[method] = float(distances.min()) if len(distances) else math.nan
        result.mean_distance[method] = float(distances.mean()) if len(distances) else math.nan
        result.margin_gap[method] = margin_gap(distances, margin)
        models[method] = model
    if image is not None:
        plot_toy(models, points, labels, test_points, test_labels, result, image)
    return result


def plot_toy(
    models: dict[str, nn.Module],
    points: torch.Tensor,
    labels: torch.Tensor,
    test_points: torch.Tensor,
    test_labels: torch.Tensor,
    result: ToyResult,
    path: str | Path,
) -> None:
    """A PNG with one panel per method: class regions, the boundary (black), the margin band (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 4.6), layout="constrained")
    for ax, (method, model) in zip(np.atleast_1d(axes), models.items(), strict=True):
        axis, values = margin_grid(model)
        bound = max(float(np.abs(values).max()), 1e-6)
        ax.imshow(
            np.clip(values / bound, -1, 1),
            origin="lower",
            extent=(0, 1, 0, 1),
            cmap="RdBu_r",
            vmin=-1.5,
            vmax=1.5,
            alpha=0.6,
        )
        ax.contour(axis, axis, values, levels=[0.0], colors="black", linewidths=2.0)
        _draw_margin_band(ax, axis, values, result.margin)
        for label, color in ((0, "tab:blue"), (1, "tab:red")):
            test = test_points[test_labels == label].numpy()
            ax.scatter(test[:, 0], test[:, 1], s=3, color=color, alpha=0.25, linewidths=0)
            train = points[labels == label].numpy()
            ax.scatter(train[:, 0], train[:, 1], s=60, color=color, edgecolors="black", linewidths=1.2)
        ax.set_title(
            f"{method}: test acc {100 * result.test_accuracy[method]:.1f}%\n"
            f"train→boundary L2: min {result.min_distance[method]:.3f}, mean {result.mean_distance[method]:.3f}",
            fontsize=10,
        )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
    figure.suptitle(
        f"two moons, {len(labels) // 2} training points per class; dashed: margin {result.margin:.3f} "
        "around the boundary"
    )
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


def _draw_margin_band(ax, axis: np.ndarray, values: np.ndarray, margin: float) -> None:
    """Dashed curves at L2 distance ``margin`` from the boundary (the band the margin term keeps clear)."""
    from scipy.ndimage import distance_transform_edt

    cell = axis[1] - axis[0]
    positive = values > 0
    # Distance of each grid cell to the other side: a signed distance to the boundary, in [0, 1]² units.
    signed = np.where(positive, distance_transform_edt(positive), -distance_transform_edt(~positive)) * cell
    if np.abs(signed).max() > margin:
        ax.contour(
            axis, axis, signed, levels=[-margin, margin], colors="black", linestyles="--", linewidths=1
        )
