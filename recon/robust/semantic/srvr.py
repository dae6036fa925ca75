"""Semantic Robustness Volume Ratio: mean found-region volume over shapes and initial points divided by the
volume of the semantic space, per classifier and region finder.

Regions are found on the unaugmented base meshes (the training ones and/or the held-out ones), from the
reference's four initial points. In 2D the space is azimuth 0–360° × elevation −10–90° (36,000 deg²); in 1D
it is azimuth 0–360° at a fixed elevation (360°).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from recon.errors import InputError
from recon.robust.semantic.classifier import DOMAIN_LOWER, DOMAIN_UPPER, LoadedClassifier, ViewScore
from recon.robust.semantic.maps import SemanticMaps
from recon.robust.semantic.regions import (
    INITIAL_POINTS,
    METHODS,
    RegionConfig,
    RegionResult,
    box_iou,
    domain_volume,
    find_regions,
)
from recon.robust.semantic.shapes import ShapeInstance, class_of, make_instance, split_bases


def evaluation_shapes(selection: str, classes: list[str], points: int, seed: int) -> list[ShapeInstance]:
    """Unaugmented base meshes: 'train', 'heldout', 'all', or a comma-separated list of base mesh names."""
    train, heldout = split_bases(classes)
    chosen = {"train": train, "heldout": heldout, "all": train + heldout}.get(selection)
    if chosen is None:
        names = [s.strip() for s in selection.split(",") if s.strip()]
        if not names:
            raise InputError("no shape given")
        chosen = []
        for name in names:
            cls = class_of(name)
            if cls not in classes:
                raise InputError(f"shape {name!r} is of class {cls!r}, which this classifier does not know")
            chosen.append((name, classes.index(cls)))
    return [make_instance(name, label, 0, points, seed, None) for name, label in chosen]


@dataclass
class RegionRun:
    """Regions of every (shape, initial point) problem, for each method.

    Attributes
    ----------
    shapes : list of str
    initial : (K, n) float
        Initial points; problem p is shape p // K, initial point p % K.
    dims : int
        2: (azimuth, elevation); 1: azimuth at ``elevation``.
    results : dict method → RegionResult
    seconds : dict method → float
    """

    shapes: list[str]
    initial: np.ndarray
    dims: int
    elevation: float
    results: dict[str, RegionResult] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def domain(self) -> tuple[np.ndarray, np.ndarray]:
        lower, upper = np.array(DOMAIN_LOWER), np.array(DOMAIN_UPPER)
        return (lower[:1], upper[:1]) if self.dims == 1 else (lower, upper)

    def ratios(self, method: str) -> np.ndarray:
        """(P,) region volume / semantic-space volume."""
        return self.results[method].volumes() / domain_volume(*self.domain)


def _scores_in(dims: int, elevation: float, score: ViewScore):
    """The score and score-with-gradient callables in a 1D (azimuth) or 2D space."""
    if dims == 2:
        return score, score.with_grad

    def lift(theta: torch.Tensor) -> torch.Tensor:
        return torch.cat([theta, torch.full_like(theta, elevation)], dim=-1)

    def value(theta):
        return score(lift(theta))

    def value_grad(theta):
        f, g = score.with_grad(lift(theta))
        return f, g[..., :1]

    return value, value_grad


def find_shape_regions(
    classifier: LoadedClassifier,
    shapes: list[ShapeInstance],
    *,
    methods: tuple[str, ...] = METHODS,
    initial: np.ndarray | None = None,
    config: RegionConfig = RegionConfig(),
    dims: int = 2,
    elevation: float = 35.0,
) -> RegionRun:
    """Run every region finder from every initial point on every shape, all problems batched together."""
    if dims not in (1, 2):
        raise InputError(f"--dims must be 1 or 2, got {dims}")
    initial = np.asarray(INITIAL_POINTS if initial is None else initial, dtype=float)
    if initial.ndim != 2 or initial.shape[1] != 2:
        raise InputError("initial points must be (azimuth, elevation) pairs")
    initial = initial[:, :dims]
    repeated = [s for s in shapes for _ in range(len(initial))]
    score = ViewScore(classifier, repeated)
    value, value_grad = _scores_in(dims, elevation, score)
    run = RegionRun(shapes=[s.name for s in shapes], initial=initial, dims=dims, elevation=elevation)
    theta0 = torch.from_numpy(np.tile(initial, (len(shapes), 1)))
    lower, upper = run.domain
    for method in methods:
        tic = time.perf_counter()
        run.results[method] = find_regions(method, theta0, lower, upper, value, value_grad, config)
        run.seconds[method] = time.perf_counter() - tic
    return run


def srvr_row(run: RegionRun) -> dict:
    """Mean and median volume ratio per method, and the mean pairwise IoU of the methods' boxes."""
    row = {}
    for method in run.results:
        ratios = run.ratios(method)
        row[method] = {
            "srvr": float(ratios.mean()),
            "median": float(np.median(ratios)),
            "seconds": run.seconds[method],
        }
    methods = list(run.results)
    row["iou"] = {
        f"{a}|{b}": float(
            box_iou(
                run.results[a].lower, run.results[a].upper, run.results[b].lower, run.results[b].upper
            ).mean()
        )
        for i, a in enumerate(methods)
        for b in methods[i + 1 :]
    }
    return row


def low_score_share(maps: SemanticMaps, lower: np.ndarray, upper: np.ndarray) -> float | None:
    """Share of the 2D map's grid views inside the box [lower, upper] ((2,) each) where f < 0.5.

    The finders only evaluate f at box corners, so a box can span a valley of low scores; this measures how
    much of a found "robust" box is not robust on the map. None when no grid view falls inside the box.
    """
    az, el = maps.azimuths_2d, maps.elevations_2d
    inside = maps.map_2d[np.ix_((el >= lower[1]) & (el <= upper[1]), (az >= lower[0]) & (az <= upper[0]))]
    return float((inside < 0.5).mean()) if inside.size else None


def srvr_table(rows: list[dict], methods: tuple[str, ...] = METHODS) -> str:
    """A Markdown table: one row per classifier, SRVR (mean, median) per method, accuracy and map score.

    Each row dict holds 'name', 'arch', 'heldout_acc', 'val_acc', 'map_mean', 'map_ge_half' and the
    :func:`srvr_row` entries, optionally with a 'low_share' per method (mean :func:`low_score_share`).
    """
    head = ["classifier", "val acc", "held-out acc", "map mean f", "map f≥0.5"]
    head += [f"SRVR {m} mean (median) [f<0.5 in box]" for m in methods]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [
            f"{row['name']} ({row['arch']})",
            _pct(row.get("val_acc")),
            _pct(row.get("heldout_acc")),
            f"{row['map_mean']:.3f}" if row.get("map_mean") is not None else "–",
            _pct(row.get("map_ge_half")),
        ]
        cells += [_srvr_cell(row.get(m)) for m in methods]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _srvr_cell(entry: dict | None) -> str:
    if entry is None:
        return "–"
    low = f" [{_pct(entry['low_share'])}]" if "low_share" in entry else ""
    return f"{100 * entry['srvr']:.2f}% ({100 * entry['median']:.2f}%){low}"


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"
