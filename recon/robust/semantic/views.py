"""The semantic domain and the viewpoint priors training renders are drawn from.

Viewpoints are (azimuth, elevation) in degrees over the domain azimuth 0–360°, elevation −10–90° (Hamdi &
Ghanem; volume 36,000 deg²). Two priors:

* **uniform**: uniform over the domain.
* **canonical**: how people photograph objects. With probability 1 − ``CANONICAL_FLOOR`` (0.9) the azimuth is
  drawn from a mixture of wrapped normals (σ = 12°) centred on the side views 90° and 270° (weight 0.2 each)
  and the three-quarter views 45°, 135°, 225° and 315° (0.15 each), and the elevation uniformly from 0–30°;
  with probability 0.1 the viewpoint is uniform over the whole domain, so front, back and top views still
  occur. Azimuth 0/180 looks along the object's z axis, which the side/three-quarter modes assume to be its
  front–back axis (true of the cow, whose maps are highest at 90° and 270°); the modes are symmetric under
  az → 180 − az and az → az + 180, so which end faces the camera at azimuth 0 does not matter.

Azimuth marginal of the canonical prior (1/deg):
p(az) = 0.9 Σ_k w_k φ_σ(wrap(az − μ_k)) + 0.1/360, wrap into (−180, 180], φ_σ the normal density.
"""

from __future__ import annotations

import math

import numpy as np
import torch

DOMAIN_LOWER = (0.0, -10.0)
DOMAIN_UPPER = (360.0, 90.0)
"""The semantic domain: azimuth 0–360°, elevation −10–90°."""
PRIORS = ("canonical", "uniform")
CANONICAL_AZIMUTHS = (45.0, 90.0, 135.0, 225.0, 270.0, 315.0)
"""Three-quarter and side views (degrees)."""
CANONICAL_WEIGHTS = (0.15, 0.2, 0.15, 0.15, 0.2, 0.15)
CANONICAL_AZIMUTH_STD = 12.0
CANONICAL_ELEVATION = (0.0, 30.0)
"""Elevation range (degrees) of the canonical part, drawn uniformly."""
CANONICAL_FLOOR = 0.1
"""Share of canonical-prior views drawn uniformly from the whole domain."""


def uniform_viewpoints(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 2) (azimuth, elevation) uniform in the semantic domain, degrees."""
    lower, upper = torch.tensor(DOMAIN_LOWER), torch.tensor(DOMAIN_UPPER)
    return lower + (upper - lower) * torch.rand(n, 2, generator=generator)


def canonical_viewpoints(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 2) (azimuth, elevation) from the canonical prior (module docstring), degrees."""
    mode = torch.multinomial(torch.tensor(CANONICAL_WEIGHTS), n, replacement=True, generator=generator)
    azimuth = torch.tensor(CANONICAL_AZIMUTHS)[mode] + CANONICAL_AZIMUTH_STD * torch.randn(
        n, generator=generator
    )
    low, high = CANONICAL_ELEVATION
    elevation = low + (high - low) * torch.rand(n, generator=generator)
    canonical = torch.stack([azimuth.remainder(360.0), elevation], dim=1)
    floor = torch.rand(n, generator=generator) < CANONICAL_FLOOR
    return torch.where(floor[:, None], uniform_viewpoints(n, generator), canonical)


def sample_viewpoints(n: int, generator: torch.Generator, prior: str) -> torch.Tensor:
    """(n, 2) viewpoints in degrees from ``prior`` ('canonical' or 'uniform')."""
    if prior == "canonical":
        return canonical_viewpoints(n, generator)
    if prior == "uniform":
        return uniform_viewpoints(n, generator)
    raise ValueError(f"unknown viewpoint prior {prior!r}; choose one of {', '.join(PRIORS)}")


def canonical_azimuth_density(azimuth: np.ndarray) -> np.ndarray:
    """The canonical prior's azimuth marginal (1/deg) at azimuths in degrees (module docstring)."""
    offset = (
        np.asarray(azimuth, dtype=float)[..., None] - np.array(CANONICAL_AZIMUTHS) + 180.0
    ) % 360.0 - 180.0
    normal = np.exp(-0.5 * (offset / CANONICAL_AZIMUTH_STD) ** 2) / (
        CANONICAL_AZIMUTH_STD * math.sqrt(2 * math.pi)
    )
    return (1.0 - CANONICAL_FLOOR) * normal @ np.array(CANONICAL_WEIGHTS) + CANONICAL_FLOOR / 360.0


def prior_record(prior: str) -> dict:
    """What a run folder records about its viewpoint prior."""
    if prior == "uniform":
        return {"name": "uniform", "domain": [DOMAIN_LOWER, DOMAIN_UPPER]}
    return {
        "name": "canonical",
        "azimuth_modes": CANONICAL_AZIMUTHS,
        "azimuth_weights": CANONICAL_WEIGHTS,
        "azimuth_std": CANONICAL_AZIMUTH_STD,
        "elevation_range": CANONICAL_ELEVATION,
        "uniform_share": CANONICAL_FLOOR,
        "domain": [DOMAIN_LOWER, DOMAIN_UPPER],
    }
