"""Figures of the robustness module (matplotlib, Agg backend; nothing is shown on screen)."""

from __future__ import annotations

from pathlib import Path

from recon.atomic import atomic_path
from recon.robust.geometry import CrossSection


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_cross_sections(sections: list[CrossSection], path: str | Path, title: str = "") -> None:
    """A PNG with one row per image: the margin F on the (normal, random) and the (random, random) planes.

    Blue is the predicted class (F < 0), red another class; the black curve is the boundary F = 0. Both
    panels of a row share the color scale and the axes, so the boundary's distance along the adversarial
    normal can be compared with its distance along random directions.
    """
    from matplotlib.colors import TwoSlopeNorm

    plt = _pyplot()
    figure, axes = plt.subplots(
        len(sections), 2, figsize=(8.0, 3.2 * len(sections)), squeeze=False, layout="constrained"
    )
    for row, section in zip(axes, sections, strict=True):
        bound = max(abs(section.adversarial).max(), abs(section.random).max(), 1e-6)
        norm = TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound)
        lo, hi = float(section.grid[0]), float(section.grid[-1])
        panels = (
            (section.adversarial, "adversarial normal n", "normal × random"),
            (section.random, "random v", "random × random"),
        )
        for ax, (values, xlabel, name) in zip(row, panels, strict=True):
            image = ax.imshow(
                values, origin="lower", extent=(lo, hi, lo, hi), cmap="RdBu_r", norm=norm, aspect="equal"
            )
            if values.min() < 0 < values.max():
                ax.contour(section.grid, section.grid, values, levels=[0.0], colors="black", linewidths=1.5)
            ax.plot([0.0], [0.0], marker="o", color="black", markersize=4)
            ax.set_xlabel(f"{xlabel} (L2)")
            ax.set_ylabel("random u (L2)")
            ax.set_title(f"class {section.label}, ‖r‖₂={section.distance:.2f}: {name}", fontsize=9)
        row[0].axvline(section.distance, color="gray", linestyle=":", linewidth=1)
        figure.colorbar(image, ax=list(row), shrink=0.8, label="margin F")
    if title:
        figure.suptitle(title)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=90)
    plt.close(figure)
