"""Decision-boundary geometry: DeepFool robustness ratio ρ and curvature along normal sections.

At a point z of a level set {F = c} with unit normal n = ∇F/‖∇F‖, the normal section along a unit tangent
u (u ⟂ n) is the plane curve cut by span{n, u}; its curvature is

    κ(u) = uᵀ ∇²F(z) u / ‖∇F(z)‖,

positive where the set {F < c} is locally convex (F = ‖x‖ − R gives κ = 1/R in every tangent direction).
The extreme κ over u are the principal curvatures: the extreme eigenvalues of P ∇²F P / ‖∇F‖, P = I − nnᵀ.
ReLU classifiers have ∇²F = 0 almost everywhere, so Hessian-vector products are central differences of
gradients at a finite length h: the curvature of the boundary seen at that scale (Moosavi-Dezfooli et al.).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recon.core.levelset import value_and_gradient
from recon.errors import ConfigError
from recon.robust.attacks import deepfool
from recon.robust.boundary import margin, regula_falsi
from recon.robust.data import check_seed


class PairMargin(nn.Module):
    """F(x) = f_t(x) − f_l(x) for a fixed class pair per row, on flattened images (n, d) → (n,)."""

    def __init__(self, classifier: nn.Module, source: torch.Tensor, target: torch.Tensor, image_shape):
        super().__init__()
        self.classifier, self.source, self.target = classifier, source, target
        self.image_shape = tuple(image_shape)

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(flat.reshape(-1, *self.image_shape))
        rows = torch.arange(len(flat), device=flat.device)
        return logits[rows, self.target] - logits[rows, self.source]


def hessian_vector_product(
    fn: nn.Module, points: torch.Tensor, vectors: torch.Tensor, h: float
) -> torch.Tensor:
    """∇²F(p)·v ≈ (∇F(p + h v̂) − ∇F(p − h v̂))/(2h)·‖v‖ for (n, d) points and vectors."""
    length = vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
    unit = vectors / length
    _, plus = value_and_gradient(fn, points + h * unit)
    _, minus = value_and_gradient(fn, points - h * unit)
    return (plus - minus) / (2.0 * h) * length


def normal_section_curvatures(
    fn: nn.Module, points: torch.Tensor, directions: torch.Tensor, h: float
) -> torch.Tensor:
    """κ(u) = uᵀ∇²F u/‖∇F‖ : (n,) at (n, d) level-set points along (n, d) directions (made unit tangents)."""
    _, grad = value_and_gradient(fn, points)
    grad_norm = grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
    normal = grad / grad_norm
    tangent = directions - (directions * normal).sum(dim=1, keepdim=True) * normal
    tangent = tangent / tangent.norm(dim=1, keepdim=True).clamp_min(1e-12)
    hv = hessian_vector_product(fn, points, tangent, h)
    return (tangent * hv).sum(dim=1) / grad_norm.squeeze(1)


def principal_curvature_range(fn: nn.Module, point: torch.Tensor, h: float) -> tuple[float, float]:
    """(smallest, largest) principal curvature at one (d,) level-set point, d ≥ 4.

    Lanczos on the (d − 1)-dimensional tangent-space operator QᵀHQ/‖∇F‖, Q the tangent columns of the
    Householder reflection that maps the last axis to the normal (P∇²FP itself has a spurious 0 along n).
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    _, grad = value_and_gradient(fn, point[None])
    grad_norm = grad.norm().clamp_min(1e-12)
    normal = (grad / grad_norm)[0]
    dim = point.numel()
    axis = torch.zeros_like(normal)
    axis[-1] = 1.0 if float(normal[-1]) < 0 else -1.0
    w = normal - axis
    w = w / w.norm().clamp_min(1e-12)

    def reflect(v: torch.Tensor) -> torch.Tensor:
        return v - 2.0 * (v @ w) * w

    def apply(v: np.ndarray) -> np.ndarray:
        tangent = torch.zeros_like(normal)
        tangent[:-1] = torch.as_tensor(np.asarray(v).reshape(-1), dtype=point.dtype, device=point.device)
        u = reflect(tangent)
        hv = hessian_vector_product(fn, point[None], u[None], h)[0]
        return (reflect(hv)[:-1] / grad_norm).double().cpu().numpy()

    operator = LinearOperator((dim - 1, dim - 1), matvec=apply, dtype=np.float64)
    values = eigsh(operator, k=2, which="BE", tol=1e-4, return_eigenvectors=False, v0=np.ones(dim - 1))
    return float(values.min()), float(values.max())


def default_curvature_step(dim: int) -> float:
    """h = √d·(pixel range)/512·10, the finite-difference length of the reference curvature code."""
    return math.sqrt(dim) / 512.0 * 10.0


@dataclass(frozen=True)
class GeometryConfig:
    """Settings of ``recon robust geometry``: the boundary measurements and the cross-section plots."""

    n_images: int = 200
    """Test images loaded; the correctly classified ones are measured."""
    directions: int = 8
    """Random tangent directions per boundary point."""
    principal_points: int = 5
    """Boundary points at which the principal curvature range is computed (Lanczos)."""
    h: float | None = None
    """Finite-difference length (default √d/512·10)."""
    seed: int = 0
    """Seed of the random directions."""
    points: int = 4
    """Images drawn by --plot: the first correctly classified ones."""
    extent: float = 3.0
    """Plot half-width in multiples of each image's DeepFool distance."""
    resolution: int = 61
    """Grid points per plot axis."""

    def validate(self) -> None:
        """Raise ConfigError for settings no measurement can use."""
        if min(self.n_images, self.directions) < 1 or self.principal_points < 0:
            raise ConfigError("--n and --directions must be positive, --principal-points at least 0")
        if self.resolution < 2:
            raise ConfigError(f"the plot resolution must be at least 2, got {self.resolution}")
        if self.h is not None and not (math.isfinite(self.h) and self.h > 0):
            raise ConfigError(f"--h must be positive, got {self.h}")
        if not 1 <= self.points <= 12:
            raise ConfigError(f"--points must be within 1..12, got {self.points}")
        if not (math.isfinite(self.extent) and self.extent > 0):
            raise ConfigError(f"--extent must be positive, got {self.extent}")
        check_seed(self.seed)


@dataclass
class GeometryReport:
    """Boundary geometry of a classifier on n correctly classified images.

    deepfool_ratio : ρ = mean ‖r‖₂/‖x‖₂ of the minimal (unclipped) L2 DeepFool perturbations
    deepfool_median_l2 : median ‖r‖₂
    curvature : statistics of κ(u) along random tangent directions at the boundary points
    principal : mean smallest and largest principal curvature (Lanczos) over the first points
    h : finite-difference length
    """

    n: int
    deepfool_ratio: float
    deepfool_median_l2: float
    curvature: dict
    principal: dict
    h: float
    boundary_points: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def boundary_geometry(
    classifier: nn.Module, images: torch.Tensor, config: GeometryConfig = GeometryConfig()
) -> GeometryReport:
    """DeepFool ratio ρ and normal-section curvatures of the boundary between each image's class and the
    class DeepFool reaches, at the boundary point on the segment x → x + r (regula falsi).

    ``images`` are (n, C, H, W) float in [0, 1]; ``config`` gives the random tangent directions per boundary
    point, the number of points at which the principal curvature range is computed (Lanczos), h and the seed.
    """
    config.validate()
    classifier.eval()
    shape = tuple(images.shape[1:])
    dim = math.prod(shape)
    h = default_curvature_step(dim) if config.h is None else config.h
    result = deepfool(classifier, images, norm="l2", clip=False)
    flat = images.reshape(len(images), -1)
    r = result.perturbation.reshape(len(images), -1)
    fooled = result.fooled
    ratio = (r.norm(dim=1)[fooled] / flat.norm(dim=1)[fooled].clamp_min(1e-12)).mean().item()
    with torch.no_grad():
        source = classifier(images).argmax(dim=1)
        target = classifier(result.perturbation + images).argmax(dim=1)
    rows = torch.nonzero(fooled).squeeze(1)
    fn = PairMargin(classifier, source[rows], target[rows], shape)
    start, end = flat[rows], flat[rows] + r[rows]
    with torch.no_grad():
        f_start, f_end = fn(start), fn(end)

    def along(t: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return fn(start + t[:, None] * (end - start))

    t, _ = regula_falsi(along, torch.zeros_like(f_start), torch.ones_like(f_start), f_start, f_end, iters=30)
    points = start + t[:, None] * (end - start)
    generator = torch.Generator().manual_seed(config.seed)
    kappas = []
    for _ in range(config.directions):
        u = torch.randn(points.shape, generator=generator).to(points.device)
        kappas.append(normal_section_curvatures(fn, points, u, h))
    kappa = torch.cat(kappas) if kappas else torch.zeros(0)
    ranges = [
        principal_curvature_range(
            PairMargin(classifier, source[rows[i : i + 1]], target[rows[i : i + 1]], shape), points[i], h
        )
        for i in range(min(config.principal_points, len(rows)))
    ]
    return GeometryReport(
        n=len(images),
        deepfool_ratio=ratio,
        deepfool_median_l2=r.norm(dim=1)[fooled].median().item() if len(rows) else float("nan"),
        curvature=_summary(kappa),
        principal={
            "points": len(ranges),
            "min_mean": float(np.mean([lo for lo, _ in ranges])) if ranges else None,
            "max_mean": float(np.mean([hi for _, hi in ranges])) if ranges else None,
        },
        h=h,
        boundary_points=len(rows),
    )


def _summary(values: torch.Tensor) -> dict:
    if len(values) == 0:
        return {"count": 0}
    v = values.double()
    return {
        "count": len(v),
        "mean": v.mean().item(),
        "mean_abs": v.abs().mean().item(),
        "std": v.std().item() if len(v) > 1 else 0.0,
        "min": v.min().item(),
        "max": v.max().item(),
    }


@dataclass
class CrossSection:
    """The decision margin F = max_{r≠y} f_r − f_y (y the predicted class) on two planes through an image x.

    grid : (g,) float, coordinates along both plane axes (L2 pixel units; 0 is x)
    adversarial : (g, g) float, F(x + a·n + b·u) at [b, a]; n the unit DeepFool direction (the normal of the
        nearest boundary), u a random unit direction orthogonal to n
    random : (g, g) float, F(x + a·v + b·u) at [b, a]; v a second random unit direction orthogonal to u
    distance : ‖r‖₂ of the (unclipped) L2 DeepFool perturbation: the boundary's distance along n plus
        DeepFool's 2% overshoot
    label : the class y predicted at x
    """

    grid: np.ndarray
    adversarial: np.ndarray
    random: np.ndarray
    distance: float
    label: int


def normal_cross_sections(
    classifier: nn.Module, images: torch.Tensor, config: GeometryConfig = GeometryConfig()
) -> list[CrossSection]:
    """Cross-sections of the decision boundary around each (C, H, W) image of ``images`` (float in [0, 1])
    along adversarial and random directions: square planes of half-width ``config.extent`` times the image's
    DeepFool distance ‖r‖₂, ``config.resolution`` grid points per axis.

    Images DeepFool cannot move across the boundary are skipped. The planes leave [0, 1]: they show the
    geometry of the function f, as the unclipped DeepFool does.
    """
    config.validate()
    classifier.eval()
    result = deepfool(classifier, images, norm="l2", clip=False)
    generator = torch.Generator().manual_seed(config.seed)
    extent, resolution = config.extent, config.resolution
    sections = []
    for i in torch.nonzero(result.fooled).squeeze(1).tolist():
        x = images[i].reshape(-1)
        r = result.perturbation[i].reshape(-1)
        distance = float(r.norm())
        n = r / distance
        u = _orthonormal(torch.randn(x.shape, generator=generator).to(x), [n])
        v = _orthonormal(torch.randn(x.shape, generator=generator).to(x), [u])
        with torch.no_grad():
            label = classifier(images[i : i + 1]).argmax(dim=1)
        grid = torch.linspace(-extent * distance, extent * distance, resolution, dtype=x.dtype)
        sections.append(
            CrossSection(
                grid=grid.cpu().numpy(),
                adversarial=_plane_margin(classifier, images[i], label, n, u, grid),
                random=_plane_margin(classifier, images[i], label, v, u, grid),
                distance=distance,
                label=int(label),
            )
        )
    return sections


def _orthonormal(w: torch.Tensor, basis: list[torch.Tensor]) -> torch.Tensor:
    """w made orthogonal to the unit vectors of ``basis`` (Gram–Schmidt) and normalized; (d,) → (d,)."""
    for b in basis:
        w = w - (w @ b) * b
    return w / w.norm()


def _plane_margin(
    classifier: nn.Module,
    image: torch.Tensor,
    label: torch.Tensor,
    horizontal: torch.Tensor,
    vertical: torch.Tensor,
    grid: torch.Tensor,
) -> np.ndarray:
    """(g, g) margin F at image + a·horizontal + b·vertical, rows b and columns a over the (g,) grid."""
    b, a = torch.meshgrid(grid, grid, indexing="ij")
    offsets = a.reshape(-1, 1) * horizontal + b.reshape(-1, 1) * vertical
    points = image.reshape(1, -1) + offsets.to(image)
    values = []
    with torch.no_grad():
        for chunk in points.split(1024):
            logits = classifier(chunk.reshape(-1, *image.shape))
            values.append(margin(logits, label.expand(len(chunk))))
    return torch.cat(values).reshape(len(grid), len(grid)).cpu().numpy()
