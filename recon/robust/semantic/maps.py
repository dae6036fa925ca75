"""Network Semantic Maps: the true-class score over azimuth (1D) and azimuth × elevation (2D).

Grids follow the reference: 2D azimuth 0–357° step 3 (120 values) × elevation −10–89° step 3 (34 values);
1D azimuth 0–358° step 2 at elevation 35°.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recon.atomic import atomic_path, write_json
from recon.errors import ConfigError, RunDirError

AZIMUTHS_2D = np.arange(0.0, 360.0, 3.0)
ELEVATIONS_2D = np.arange(-10.0, 90.0, 3.0)
AZIMUTHS_1D = np.arange(0.0, 360.0, 2.0)
ELEVATION_1D = 35.0
MAP_FILES = ("map1d.npy", "map2d.npy", "map.json", "map1d.png", "map2d.png")


@dataclass(frozen=True)
class MapConfig:
    """Settings of ``recon robust semantic map``."""

    shapes: str = "train"
    """train | heldout | all | comma-separated base meshes (e.g. cow,man)."""
    elevation: float = ELEVATION_1D
    """Elevation of the 1D map."""

    def validate(self) -> None:
        """Raise ConfigError for settings no map can use."""
        if not self.shapes.strip():
            raise ConfigError("no shape given")
        if not (math.isfinite(self.elevation) and -90.0 <= self.elevation <= 90.0):
            raise ConfigError(f"--elevation must be within -90..90, got {self.elevation}")


@dataclass
class SemanticMaps:
    """The maps of one shape.

    Attributes
    ----------
    azimuths_1d : (A1,) float
    elevation_1d : float
    map_1d : (A1,) float
        f(az, elevation_1d).
    azimuths_2d : (A,) float
    elevations_2d : (E,) float
    map_2d : (E, A) float
        f(az, el), rows are elevations.
    """

    azimuths_1d: np.ndarray
    elevation_1d: float
    map_1d: np.ndarray
    azimuths_2d: np.ndarray
    elevations_2d: np.ndarray
    map_2d: np.ndarray

    def summary(self) -> dict:
        """Mean score and fraction of viewpoints with f ≥ 0.5 on the 2D map."""
        return {"mean": float(self.map_2d.mean()), "fraction_ge_0.5": float((self.map_2d >= 0.5).mean())}


def grid_scores(score, azimuths: np.ndarray, elevations: np.ndarray) -> np.ndarray:
    """f on the grid azimuths × elevations for every problem group of ``score``.

    Parameters
    ----------
    score : callable
        (P, m, 2) angles → (P, m) scores (e.g. :class:`recon.robust.semantic.classifier.ViewScore`).
    azimuths : (A,) float
    elevations : (E,) float

    Returns
    -------
    (P, E, A) float
    """
    el, az = np.meshgrid(elevations, azimuths, indexing="ij")
    angles = torch.from_numpy(np.stack([az.ravel(), el.ravel()], axis=1)).float()
    groups = len(score.labels)
    values = score(angles[None].expand(groups, -1, -1).contiguous())
    return values.numpy().reshape(groups, len(elevations), len(azimuths))


def semantic_maps(score, config: MapConfig = MapConfig()) -> list[SemanticMaps]:
    """The 1D (at ``config.elevation``) and 2D maps of every shape of ``score`` (one :class:`SemanticMaps` per
    problem group)."""
    config.validate()
    one = grid_scores(score, AZIMUTHS_1D, np.array([config.elevation]))[:, 0]
    two = grid_scores(score, AZIMUTHS_2D, ELEVATIONS_2D)
    return [
        SemanticMaps(AZIMUTHS_1D, float(config.elevation), one[p], AZIMUTHS_2D, ELEVATIONS_2D, two[p])
        for p in range(len(two))
    ]


def save_maps(folder: str | Path, maps: SemanticMaps, meta: dict, *, force: bool = False) -> Path:
    """Write map1d.npy, map2d.npy and map.json (axes + ``meta``) into ``folder``; refuse to overwrite."""
    folder = Path(folder)
    if not force and any((folder / name).exists() for name in MAP_FILES):
        raise RunDirError(f"{folder} already holds maps; pass --force to overwrite them")
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in (("map1d.npy", maps.map_1d), ("map2d.npy", maps.map_2d)):
        with atomic_path(folder / name) as tmp:
            np.save(tmp, np.asarray(array, dtype=np.float32))
    write_json(
        folder / "map.json",
        {
            **meta,
            "azimuths_1d": maps.azimuths_1d.tolist(),
            "elevation_1d": maps.elevation_1d,
            "azimuths_2d": maps.azimuths_2d.tolist(),
            "elevations_2d": maps.elevations_2d.tolist(),
            "map_2d_rows": "elevations",
            **maps.summary(),
        },
    )
    return folder


def load_maps(folder: str | Path) -> SemanticMaps:
    """The maps :func:`save_maps` wrote into ``folder``."""
    from recon.atomic import read_json

    folder = Path(folder)
    if not (folder / "map.json").exists():
        raise RunDirError(f"{folder} holds no maps (no map.json)")
    meta = read_json(folder / "map.json")
    return SemanticMaps(
        azimuths_1d=np.asarray(meta["azimuths_1d"]),
        elevation_1d=float(meta["elevation_1d"]),
        map_1d=np.load(folder / "map1d.npy"),
        azimuths_2d=np.asarray(meta["azimuths_2d"]),
        elevations_2d=np.asarray(meta["elevations_2d"]),
        map_2d=np.load(folder / "map2d.npy"),
    )
