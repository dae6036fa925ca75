"""Semantic Robustness Volume Ratio: mean found-region volume over shapes and initial points divided by the
volume of the semantic space, per classifier and region finder.

Regions are found on the unaugmented base meshes (the training ones and/or the held-out ones), from the
reference's four initial points. In 2D the space is azimuth 0–360° × elevation −10–90° (36,000 deg²); in 1D
it is azimuth 0–360° at a fixed elevation (360°).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from recon.errors import ConfigError, InputError
from recon.robust.semantic.classifier import LoadedClassifier, ViewScore
from recon.robust.semantic.regions import (
    INITIAL_POINTS,
    METHODS,
    RegionConfig,
    RegionResult,
    box_iou,
    domain_volume,
    find_all_regions,
)
from recon.robust.semantic.shapes import ShapeInstance, class_of, make_instance, split_bases
from recon.robust.semantic.views import DOMAIN_LOWER, DOMAIN_UPPER


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


@dataclass(frozen=True)
class RegionSearchConfig:
    """Settings of ``recon robust semantic regions`` and ``srvr``: where the region finders start, which run,
    in which space, and the finders' own settings."""

    shapes: str = "train"
    """train | heldout | all | comma-separated base meshes (e.g. cow,man)."""
    initial: tuple[tuple[float, ...], ...] = INITIAL_POINTS
    """Initial AZ,EL (repeatable); default the reference's four."""
    methods: tuple[str, ...] = METHODS
    """naive,oir_b,oir_w or all."""
    dims: int = 2
    """1: azimuth only."""
    elevation: float = 35.0
    """Elevation when --dims 1."""
    finder: RegionConfig = field(default_factory=RegionConfig)
    """Steps and weights of the region finders."""

    def validate(self) -> None:
        """Raise ConfigError for settings no search can use."""
        if not self.shapes.strip():
            raise ConfigError("no shape given")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)} or all")
        if not self.methods:
            raise ConfigError("no method given")
        if not self.initial:
            raise ConfigError("no initial point given")
        for point in self.initial:
            text = ",".join(f"{v:g}" for v in point)
            if len(point) != 2:
                raise ConfigError(f"--init expects AZ,EL in degrees, got {text!r}")
            if not (
                DOMAIN_LOWER[0] <= point[0] <= DOMAIN_UPPER[0]
                and DOMAIN_LOWER[1] <= point[1] <= DOMAIN_UPPER[1]
            ):
                raise ConfigError(f"--init {text} is outside azimuth 0–360, elevation −10–90")
        if self.dims not in (1, 2):
            raise ConfigError(f"--dims must be 1 or 2, got {self.dims}")
        if not (math.isfinite(self.elevation) and -90.0 <= self.elevation <= 90.0):
            raise ConfigError(f"--elevation must be within -90..90, got {self.elevation}")
        self.finder.validate()


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
    seconds : float
        Wall time of all finders (run in lockstep) and their checks.
    """

    shapes: list[str]
    initial: np.ndarray
    dims: int
    elevation: float
    results: dict[str, RegionResult] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def domain(self) -> tuple[np.ndarray, np.ndarray]:
        lower, upper = np.array(DOMAIN_LOWER), np.array(DOMAIN_UPPER)
        return (lower[:1], upper[:1]) if self.dims == 1 else (lower, upper)

    def ratios(self, method: str) -> np.ndarray:
        """(P,) found region volume / semantic-space volume."""
        return self.results[method].volumes() / domain_volume(*self.domain)

    def verified_ratios(self, method: str) -> np.ndarray:
        """(P,) verified region volume (the found box, shrunk until its grid check passes) / space volume."""
        return self.results[method].check.volumes() / domain_volume(*self.domain)


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
    config: RegionSearchConfig = RegionSearchConfig(),
) -> RegionRun:
    """Run every region finder from every initial point on every shape, all problems and finders batched
    together, and check the found boxes."""
    config.validate()
    dims, elevation = config.dims, config.elevation
    initial = np.asarray(config.initial, dtype=float)[:, :dims]
    repeated = [s for s in shapes for _ in range(len(initial))]
    score = ViewScore(classifier, repeated)
    value, value_grad = _scores_in(dims, elevation, score)
    run = RegionRun(shapes=[s.name for s in shapes], initial=initial, dims=dims, elevation=elevation)
    theta0 = torch.from_numpy(np.tile(initial, (len(shapes), 1)))
    lower, upper = run.domain
    tic = time.perf_counter()
    run.results = find_all_regions(config.methods, theta0, lower, upper, value, value_grad, config.finder)
    run.seconds = time.perf_counter() - tic
    return run


def srvr_row(run: RegionRun) -> dict:
    """Per method: mean and median volume ratio of the found and of the verified boxes, the share of found
    boxes that pass the grid check and the mean share of their grid views below the threshold; the mean
    pairwise IoU of the methods' found boxes; the finders' wall time."""
    row: dict = {"seconds": run.seconds}
    for method, result in run.results.items():
        ratios, verified = run.ratios(method), run.verified_ratios(method)
        row[method] = {
            "srvr": float(ratios.mean()),
            "median": float(np.median(ratios)),
            "verified_srvr": float(verified.mean()),
            "verified_median": float(np.median(verified)),
            "passed": float(result.check.passed.mean()),
            "low_share": float(result.check.low_share.mean()),
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


def srvr_table(rows: list[dict], methods: tuple[str, ...] = METHODS) -> str:
    """A Markdown table: one row per classifier; per method SRVR of the found boxes (mean (median) [share of
    their grid views below the check threshold]) and of the verified boxes (mean (median) [share of found
    boxes that passed the check]).

    Each row dict holds 'name', 'arch', 'prior', 'heldout_acc', 'val_acc', 'map_mean', 'map_ge_half' and the
    :func:`srvr_row` entries.
    """
    head = ["classifier (arch, views)", "val acc", "held-out acc", "map mean f", "map f≥0.5"]
    for m in methods:
        head += [f"SRVR {m} found [views < t]", f"SRVR {m} verified [boxes passing]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [
            f"{row['name']} ({row['arch']}, {row['prior']})",
            _pct(row.get("val_acc")),
            _pct(row.get("heldout_acc")),
            f"{row['map_mean']:.3f}" if row.get("map_mean") is not None else "–",
            _pct(row.get("map_ge_half")),
        ]
        for m in methods:
            entry = row.get(m)
            if entry is None:
                cells += ["–", "–"]
                continue
            cells.append(
                f"{100 * entry['srvr']:.2f}% ({100 * entry['median']:.2f}%) [{_pct(entry['low_share'])}]"
            )
            cells.append(
                f"{100 * entry['verified_srvr']:.2f}% ({100 * entry['verified_median']:.2f}%) "
                f"[{_pct(entry['passed'])}]"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"
