"""Figures of semantic robustness: maps, and robust regions drawn on them (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.atomic import atomic_path
from recon.robust.semantic.maps import SemanticMaps

METHOD_COLORS = {"naive": "tab:orange", "oir_b": "tab:cyan", "oir_w": "tab:red"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110)
    _pyplot().close(figure)


def plot_map_1d(
    maps: SemanticMaps, path: str | Path, title: str = "", intervals: dict[str, np.ndarray] | None = None
) -> None:
    """f over azimuth at the 1D map's elevation; ``intervals`` maps a method to (K, 2) [a, b] rows."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7.0, 3.0), layout="constrained")
    axis.plot(maps.azimuths_1d, maps.map_1d, color="k", lw=1.2)
    for row, (method, boxes) in enumerate((intervals or {}).items()):
        for k, (a, b) in enumerate(boxes):
            level = -0.04 - 0.04 * row
            axis.plot([a, b], [level, level], color=METHOD_COLORS.get(method, "gray"), lw=3,
                      label=method if k == 0 else None)  # fmt: skip
    axis.set_xlim(0, 360)
    axis.set_ylim(-0.05 - 0.04 * len(intervals or {}), 1.02)
    axis.set_xlabel("azimuth (°)")
    axis.set_ylabel("p(true class)")
    axis.set_title(title or f"elevation {maps.elevation_1d:g}°", fontsize=9)
    if intervals:
        axis.legend(fontsize=7, loc="upper right")
    _save(figure, path)


def plot_map_2d(
    maps: SemanticMaps,
    path: str | Path,
    title: str = "",
    boxes: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    initial: np.ndarray | None = None,
    verified: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> None:
    """The 2D map as an image; ``boxes`` (solid) and ``verified`` (dashed) map a method to (lower, upper)
    arrays of shape (K, 2)."""
    from matplotlib.patches import Rectangle

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7.5, 3.2), layout="constrained")
    step_az = float(maps.azimuths_2d[1] - maps.azimuths_2d[0])
    step_el = float(maps.elevations_2d[1] - maps.elevations_2d[0])
    extent = (
        maps.azimuths_2d[0] - step_az / 2, maps.azimuths_2d[-1] + step_az / 2,
        maps.elevations_2d[0] - step_el / 2, maps.elevations_2d[-1] + step_el / 2,
    )  # fmt: skip
    image = axis.imshow(
        maps.map_2d, origin="lower", extent=extent, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0
    )
    figure.colorbar(image, ax=axis, label="p(true class)")
    drawn = [(boxes or {}, "-", ""), (verified or {}, "--", " verified")]
    for sets, style, suffix in drawn:
        for method, (lower, upper) in sets.items():
            color = METHOD_COLORS.get(method, "white")
            for k, (lo, hi) in enumerate(zip(lower, upper, strict=True)):
                axis.add_patch(
                    Rectangle(lo, hi[0] - lo[0], hi[1] - lo[1], fill=False, ec=color, lw=1.5, ls=style,
                              label=method + suffix if k == 0 else None)
                )  # fmt: skip
    if initial is not None:
        axis.plot(initial[:, 0], initial[:, 1], "w+", ms=8, mew=2)
    axis.set_xlim(0, 360)
    axis.set_ylim(-10, 90)
    axis.set_xlabel("azimuth (°)")
    axis.set_ylabel("elevation (°)")
    axis.set_title(title, fontsize=9)
    if boxes:
        axis.legend(fontsize=7, loc="upper right", framealpha=0.6)
    _save(figure, path)
