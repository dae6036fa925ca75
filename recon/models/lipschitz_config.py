"""Configuration of the 1-Lipschitz implicit network (recon.lipschitz.implicit.LipschitzImplicit).

It lives with the core's model configurations so that a fit's config can name and save it without loading
the Lipschitz module; the network itself is built through recon.models.registry.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LipschitzImplicitConfig:
    """Architecture of a 1-Lipschitz implicit network R³ → R."""

    depth: int = 4
    """Hidden layers."""
    width: int = 128
    """Units per hidden layer (a multiple of group_size)."""
    group_size: int = 2
    """GroupSort group size (2 = MaxMin)."""
    bjorck_iters: int = 15
    """Björck iterations per forward pass."""
    init_radius: float = 0.5
    """Radius of the sphere the blend starts from (working units)."""
    init_blend: float = 0.1
    """Initial weight s of the MLP in the blend (the sphere has 1 − s)."""
