"""AtlasNet-style charts: K small MLPs f_k mapping a 2-D template (unit square or unit sphere) into R³.

The template is where the surface is parametrized: points sampled on the unit square [0,1]² (patches) or
on the unit sphere S² (one deformed sphere) are pushed through their chart's MLP. A mesh comes from the
template's own connectivity (a regular grid per square, an icosphere for the sphere) mapped through the
charts, so it is open wherever the template is, and different charts may overlap or leave gaps.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

TEMPLATES = ("sphere", "square")
# Dimension of a template point: (u, v) on the square, a unit vector (x, y, z) on the sphere.
TEMPLATE_DIMS = {"square": 2, "sphere": 3}


class ChartMLPs(nn.Module):
    """K independent point-wise MLPs evaluated together with batched matrix products.

    Each chart is ``(template dim [+ code]) → hidden[0] → ... → hidden[-1] → 3`` with ReLU between layers
    and a linear output (no tanh: the working frame may reach slightly beyond (-1, 1)). The original's
    BatchNorm is left out: it normalizes over a batch of shapes' points, and with one shape it would only
    couple the points of one step's random template sample to each other, making the map depend on the
    sample rather than on the template point alone (and train and eval behave differently).

    Parameters
    ----------
    n_charts : int
        Number of charts K.
    template_dim : int
        2 for square templates, 3 for the sphere.
    hidden : sequence of int
        Hidden widths; the original decoder uses (1026, 513, 256).
    code_size : int
        Length of an optional learned per-shape code concatenated to every template point (0: none).
        With a single shape a constant code adds no expressiveness over the first layer's bias; it exists
        to mirror the original's conditioning.
    generator : torch.Generator, optional
        Fixes the initial weights.
    """

    def __init__(
        self,
        n_charts: int,
        template_dim: int,
        hidden: tuple[int, ...] = (1026, 513, 256),
        code_size: int = 0,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.n_charts, self.template_dim, self.code_size = n_charts, template_dim, code_size
        self.code = nn.Parameter(torch.randn(n_charts, code_size, generator=generator) * 0.01)
        widths = (template_dim + code_size, *hidden, 3)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            # nn.Linear's default initialization, drawn per chart.
            bound = 1.0 / math.sqrt(fan_in)
            weight = torch.empty(n_charts, fan_in, fan_out).uniform_(-bound, bound, generator=generator)
            bias = torch.empty(n_charts, 1, fan_out).uniform_(-bound, bound, generator=generator)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(bias))

    def forward(self, template_points: torch.Tensor) -> torch.Tensor:
        """Map template points through their charts.

        Parameters
        ----------
        template_points : (K, n, template_dim) float
            Points of chart k's template in row k.

        Returns
        -------
        (K, n, 3) float
            Their images in R³.
        """
        k, n, _ = template_points.shape
        x = template_points
        if self.code_size:
            x = torch.cat([x, self.code[:, None, :].expand(k, n, self.code_size)], dim=2)
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(bias, x, weight)
            if i < last:
                x = torch.relu(x)
        return x


def sample_template(
    template: str, n_charts: int, n_per_chart: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Uniform random points on each chart's template.

    Returns
    -------
    (n_charts, n_per_chart, template_dim) float32
        Uniform in [0,1]² for 'square'; uniform on the unit sphere (normalized Gaussians) for 'sphere'.
    """
    if template == "square":
        return torch.rand(n_charts, n_per_chart, 2, generator=generator)
    if template == "sphere":
        g = torch.randn(n_charts, n_per_chart, 3, generator=generator)
        return g / g.norm(dim=2, keepdim=True).clamp_min(1e-12)
    raise ValueError(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")


def grid_side(n_charts: int, target_vertices: int) -> int:
    """Vertices per side s of each chart's s×s grid so that n_charts·s² is closest to the target (s ≥ 2)."""
    return max(2, round(math.sqrt(target_vertices / n_charts)))


def square_grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    """A regular triangulated grid of the unit square.

    Parameters
    ----------
    side : int
        Vertices per side (≥ 2).

    Returns
    -------
    uv : (side², 2) float64
        Grid vertices, row-major (vertex i·side + j at u = i/(side-1), v = j/(side-1)).
    faces : (2·(side-1)², 3) int64
        Two counter-clockwise triangles per cell (seen from +w in (u, v, w)).
    """
    ticks = np.linspace(0.0, 1.0, side)
    u, v = np.meshgrid(ticks, ticks, indexing="ij")
    uv = np.stack([u.ravel(), v.ravel()], axis=1)
    index = np.arange(side * side).reshape(side, side)
    a, b = index[:-1, :-1].ravel(), index[1:, :-1].ravel()
    c, d = index[1:, 1:].ravel(), index[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], axis=1), np.stack([a, c, d], axis=1)])
    return uv, faces.astype(np.int64)


def icosphere_subdivisions(target_vertices: int) -> int:
    """Subdivision level whose icosphere vertex count 10·4^s + 2 is closest to the target (0..7)."""
    counts = [10 * 4**s + 2 for s in range(8)]
    return int(np.argmin([abs(c - target_vertices) for c in counts]))


def unit_icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (10·4^s + 2, 3) on the unit sphere and outward-wound faces (20·4^s, 3) of an icosphere."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    return np.asarray(sphere.vertices, dtype=np.float64), np.asarray(sphere.faces, dtype=np.int64)


def template_mesh(template: str, n_charts: int, target_vertices: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Each chart's template mesh, sized so that all charts together have about ``target_vertices``.

    Returns
    -------
    points : (n_charts, m, template_dim) float64
        Template vertices of every chart (the same template repeated).
    faces : (n_charts·f, 3) int64
        Triangles indexing the flattened (n_charts·m) vertices: chart k's copy is offset by k·m.
    layout : dict
        How the template was built ('grid_side' or 'icosphere_subdivisions').
    """
    if template == "square":
        side = grid_side(n_charts, target_vertices)
        vertices, faces = square_grid(side)
        layout = {"grid_side": side}
    elif template == "sphere":
        subdivisions = icosphere_subdivisions(target_vertices / n_charts)
        vertices, faces = unit_icosphere(subdivisions)
        layout = {"icosphere_subdivisions": subdivisions}
    else:
        raise ValueError(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")
    m = len(vertices)
    offsets = (np.arange(n_charts) * m)[:, None, None]
    all_faces = (faces[None] + offsets).reshape(-1, 3)
    return np.broadcast_to(vertices, (n_charts, *vertices.shape)).copy(), all_faces, layout
