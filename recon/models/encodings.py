"""Input encodings for implicit networks."""

from __future__ import annotations

import torch
from torch import nn


class DenseGridEncoding(nn.Module):
    """Multi-resolution dense feature grids, trilinearly interpolated.

    Level l stores a (C, R_l, R_l, R_l) grid over the cube [-bound, bound]³. Interpolation is written
    with gathers instead of ``grid_sample`` so that it is differentiable to any order in x (the normal
    term needs ∇ₓF inside the loss). Features start near zero, so the network it feeds starts from its
    own (geometric) initialization.

    Parameters
    ----------
    resolutions : sequence of int
        Grid points per axis of each level.
    features : int
        Channels C per level.
    bound : float
        Half-side of the covered cube; points outside are clamped to its faces.
    """

    def __init__(self, resolutions: tuple[int, ...], features: int = 2, bound: float = 1.2, init_scale=1e-4):
        super().__init__()
        self.resolutions = tuple(int(r) for r in resolutions)
        self.features = features
        self.bound = bound
        self.grids = nn.ParameterList(
            nn.Parameter(init_scale * (2 * torch.rand(r * r * r, features) - 1)) for r in self.resolutions
        )

    @property
    def out_dim(self) -> int:
        return self.features * len(self.resolutions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 3) points → (n, out_dim) features."""
        unit = ((x / self.bound).clamp(-1.0, 1.0) + 1.0) * 0.5  # [0, 1]
        return torch.cat(
            [self._level(unit, r, g) for r, g in zip(self.resolutions, self.grids, strict=True)], dim=1
        )

    @staticmethod
    def _level(unit: torch.Tensor, r: int, grid: torch.Tensor) -> torch.Tensor:
        pos = unit * (r - 1)
        base = pos.detach().floor().clamp(0, r - 2)
        frac = pos - base  # carries the gradient in x
        i = base.long()
        out = 0.0
        for dx in (0, 1):
            wx = frac[:, 0] if dx else 1.0 - frac[:, 0]
            for dy in (0, 1):
                wy = frac[:, 1] if dy else 1.0 - frac[:, 1]
                for dz in (0, 1):
                    wz = frac[:, 2] if dz else 1.0 - frac[:, 2]
                    index = ((i[:, 0] + dx) * r + (i[:, 1] + dy)) * r + (i[:, 2] + dz)
                    out = out + (wx * wy * wz)[:, None] * grid[index]
        return out
