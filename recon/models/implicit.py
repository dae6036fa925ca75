"""Implicit networks F: R³ → R whose zero level set is the reconstructed surface (negative inside)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from recon.models.encodings import DenseGridEncoding


@dataclass
class ImplicitConfig:
    """Architecture of the implicit MLP."""

    depth: int = 8
    """Number of hidden layers."""
    width: int = 512
    """Units per hidden layer (including the 3 raw-xyz inputs when xyz is concatenated)."""
    activation: str = "relu"
    """'relu' (the reference) or 'softplus' (IGR: Softplus with beta = softplus_beta)."""
    softplus_beta: float = 100.0
    """Sharpness of the Softplus activation."""
    skip: str = "all"
    """Where raw xyz re-enters: 'all' hidden layers (reference), 'middle' (IGR, scaled by 1/√2), 'none'."""
    init_radius: float = 0.5
    """Radius of the sphere the geometric initialization starts from, in working units."""
    init_gain: float = 2.0
    """F ≈ gain·(‖x‖ − radius) at initialization; the reference uses 2 (F ≈ 2‖x‖ − 1)."""
    encoding_frequencies: int = 0
    """Fourier-feature octaves added to the raw xyz input (0 = raw xyz only, as in the reference)."""
    grid_resolutions: tuple[int, ...] = ()
    """Resolutions of multi-resolution dense feature grids fed to the first layer (empty = none)."""
    grid_features: int = 2
    """Feature channels per grid level."""
    grid_bound: float = 1.2
    """Half-side of the cube the feature grids cover (working units)."""


class ImplicitMLP(nn.Module):
    """MLP with geometric (sphere) initialization and raw-xyz skip connections.

    With ``skip='all'`` every hidden layer l ≥ 1 sees [h_{l-1}, x] (the reference decoder: 3 → 509, then
    512 → 509, ..., then 512 → 1 for width 512). With ``skip='middle'`` x re-enters once at the middle
    layer and the concatenation is scaled by 1/√2 (IGR/SAL).
    """

    def __init__(self, config: ImplicitConfig | None = None):
        super().__init__()
        self.config = config = config or ImplicitConfig()
        if config.depth < 1 or config.width < 8:
            raise ValueError("depth must be >= 1 and width >= 8")
        self.in_dim = 3 * (1 + 2 * config.encoding_frequencies)
        self.grid = None
        if config.grid_resolutions:
            self.grid = DenseGridEncoding(
                tuple(config.grid_resolutions), config.grid_features, config.grid_bound
            )
        first_in = self.in_dim + (self.grid.out_dim if self.grid is not None else 0)
        self.skip_layers = self._skip_layers(config)
        layers = []
        for layer in range(config.depth):
            feeds_skip = (layer + 1) in self.skip_layers
            out_dim = config.width - self.in_dim if feeds_skip else config.width
            in_dim = first_in if layer == 0 else config.width
            layers.append(nn.Linear(in_dim, out_dim))
        self.hidden = nn.ModuleList(layers)
        self.output = nn.Linear(config.width, 1)
        if config.activation == "relu":
            self.act: nn.Module = nn.ReLU()
        elif config.activation == "softplus":
            self.act = nn.Softplus(beta=config.softplus_beta)
        else:
            raise ValueError(f"unknown activation {config.activation!r} (use relu or softplus)")
        self._geometric_init()

    @staticmethod
    def _skip_layers(config: ImplicitConfig) -> set[int]:
        if config.skip == "all":
            return set(range(1, config.depth))
        if config.skip == "middle":
            return {config.depth // 2} if config.depth >= 2 else set()
        if config.skip == "none":
            return set()
        raise ValueError(f"unknown skip {config.skip!r} (use all, middle or none)")

    def _geometric_init(self) -> None:
        """Start from F(x) ≈ gain·(‖x‖ − radius) (SAL/CNL sphere initialization)."""
        cfg = self.config
        for layer in self.hidden:
            nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0) / math.sqrt(layer.out_features))
            nn.init.zeros_(layer.bias)
            if cfg.encoding_frequencies and layer is self.hidden[0]:
                # Fourier features start silent so the initial field is still the sphere.
                nn.init.zeros_(layer.weight[:, 3 : self.in_dim])
        for layer_index in self.skip_layers:
            layer = self.hidden[layer_index]
            if cfg.encoding_frequencies:
                nn.init.zeros_(layer.weight[:, -(self.in_dim - 3) :])
        mean = cfg.init_gain * math.sqrt(math.pi) / math.sqrt(cfg.width)
        nn.init.normal_(self.output.weight, mean, 1e-4)
        nn.init.constant_(self.output.bias, -cfg.init_gain * cfg.init_radius)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 3) → (n, in_dim): raw xyz followed by sin/cos features at octave frequencies."""
        octaves = self.config.encoding_frequencies
        if not octaves:
            return x
        freqs = (2.0 ** torch.arange(octaves, device=x.device, dtype=x.dtype)) * math.pi
        angles = (x[:, None, :] * freqs[None, :, None]).reshape(x.shape[0], -1)
        return torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Values F(x) : (n,) for points x : (n, 3)."""
        code = self.encode(x)
        h = code if self.grid is None else torch.cat([code, self.grid(x)], dim=1)
        middle_scale = 1.0 / math.sqrt(2.0) if self.config.skip == "middle" else 1.0
        for index, layer in enumerate(self.hidden):
            if index in self.skip_layers:
                h = torch.cat([h, code], dim=1) * middle_scale
            h = self.act(layer(h))
        return self.output(h).squeeze(1)
