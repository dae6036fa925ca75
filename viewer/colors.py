"""Colour maps for per-vertex scalars (distance errors) and normals, and the matching colour bar."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

COLORMAPS = ("viridis", "inferno", "plasma", "magma")
DEFAULT_PERCENTILE = 95.0
"""Without an explicit ``vmax``, the scale saturates at this percentile so that a few outliers do not
wash out the rest."""


@dataclass(frozen=True)
class ColorLegend:
    """How scalars were mapped to colours: ``vmin`` → the colour map's first colour, ``vmax`` → its last.

    Attributes
    ----------
    vmin, vmax : float
        Ends of the scale; values above ``vmax`` take the last colour.
    cmap : str
        Name of the colour map (one of :data:`COLORMAPS`).
    label : str
        What the values are, with units (shown under the colour bar).
    """

    vmin: float
    vmax: float
    cmap: str
    label: str = "distance"

    def ticks(self, count: int = 5) -> np.ndarray:
        """(count,) evenly spaced values from vmin to vmax."""
        return np.linspace(self.vmin, self.vmax, count)


def colormap(values: np.ndarray, cmap: str = "viridis") -> np.ndarray:
    """(n, 3) RGB in [0, 1] for (n,) ``values`` in [0, 1] (clipped), interpolated in a 256-entry table."""
    table = colormap_table(cmap)
    x = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0) * (len(table) - 1)
    lo = np.floor(x).astype(np.int64)
    hi = np.minimum(lo + 1, len(table) - 1)
    t = (x - lo)[..., None]
    return table[lo] * (1.0 - t) + table[hi] * t


@functools.cache
def colormap_table(cmap: str) -> np.ndarray:
    """(256, 3) RGB table of a named colour map (the matplotlib tables that trimesh ships)."""
    if cmap not in COLORMAPS:
        raise ValueError(f"unknown colour map {cmap!r}; choose from {', '.join(COLORMAPS)}")
    from trimesh.resources import get_json

    table = np.asarray(get_json("color_map.json.gzip")[cmap], dtype=np.float64)[:, :3]
    return table / 255.0 if table.max() > 1.0 else table


def error_colors(
    distances: np.ndarray, *, vmax: float | None = None, cmap: str = "viridis", label: str = "distance"
) -> tuple[np.ndarray, ColorLegend]:
    """Colours for non-negative distances on a 0 → ``vmax`` scale, and the legend that explains them.

    Parameters
    ----------
    distances : (n,) float
        Non-finite values count as off the scale (they take the last colour).
    vmax : float or None
        Distance that saturates the scale; None takes the 95th percentile of the finite distances.
    cmap : str
        One of :data:`COLORMAPS`.

    Returns
    -------
    colors : (n, 3) float
        RGB in [0, 1].
    legend : ColorLegend
    """
    d = np.asarray(distances, dtype=np.float64).ravel()
    if vmax is None:
        finite = d[np.isfinite(d)]
        vmax = float(np.percentile(finite, DEFAULT_PERCENTILE)) if len(finite) else 1.0
    if not (np.isfinite(vmax) and vmax > 0):
        vmax = 1.0
    scaled = np.where(np.isfinite(d), d / vmax, 1.0)
    return colormap(scaled, cmap), ColorLegend(0.0, float(vmax), cmap, label)


def normal_colors(normals: np.ndarray) -> np.ndarray:
    """(n, 3) RGB = (normal + 1) / 2 for (n, 3) unit normals (the usual normal-map colouring)."""
    return np.clip((np.asarray(normals, dtype=np.float64) + 1.0) / 2.0, 0.0, 1.0)
