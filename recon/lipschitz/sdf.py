"""``recon lipschitz sdf`` as a library call: a 1-Lipschitz distance field of a scan, in a run folder.

The scan is subsampled and normalized as the fit does, a :class:`LipschitzImplicit` learns |F| ≈ distance
to the scan (:func:`fit_distance_field`), its zero set is meshed, and the guarantee |F(x)| ≤ dist(x, {F = 0})
is checked on random points. The run folder holds config.json (scan, settings, seed, package versions in
meta.json), normalization.json, sdf.json (losses, residuals, the check) and mesh.ply in the scan's frame,
then DONE.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from recon.errors import ConfigError, InputError
from recon.lipschitz.implicit import (
    DistanceFitConfig,
    LipschitzImplicitConfig,
    check_distance_bound,
    fit_distance_field,
)
from recon.run import RunFolder, environment_metadata


@dataclass(frozen=True)
class DistanceRunConfig:
    """A distance-field run (``recon lipschitz sdf``): the network, its training and what surrounds it."""

    steps: int = 800
    """Adam steps."""
    width: int = 128
    """Hidden width of the 1-Lipschitz network."""
    depth: int = 4
    """Hidden layers of the 1-Lipschitz network."""
    max_points: int = 20_000
    """Scan points used (a random subset fixed by the seed when the scan has more)."""
    lr: float = 5e-3
    """Adam learning rate."""
    resolution: int = 128
    """Marching-cubes grid for the mesh and the check."""
    seed: int = 0
    """Seed of the subset, the initialization, the samples and the check."""

    def validate(self) -> None:
        """Raise ConfigError for settings no distance field can be fitted with."""
        if min(self.steps, self.depth) < 1 or self.width < 2 or self.max_points < 16 or self.resolution < 8:
            raise ConfigError(
                "steps and depth must be at least 1, width 2, max_points 16 and resolution 8, got "
                f"{self.steps}, {self.depth}, {self.width}, {self.max_points}, {self.resolution}"
            )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a finite positive number, got {self.lr}")

    def fit(self) -> DistanceFitConfig:
        """The training these settings ask for (DistanceFitConfig's defaults otherwise)."""
        model = LipschitzImplicitConfig(depth=self.depth, width=self.width)
        return DistanceFitConfig(model=model, steps=self.steps, lr=self.lr, seed=self.seed)


def distance_field_run(
    scan: str, run_dir: str | Path, config: DistanceRunConfig, *, force: bool = False
) -> dict:
    """Fit, mesh and check a 1-Lipschitz distance field of ``scan`` (a file or ``example:NAME``) into
    ``run_dir``; returns the content of sdf.json. Nothing is written when the scan cannot be read."""
    from recon.core.extract import extract_mesh
    from recon.core.normalize import Normalization
    from recon.io import save_mesh
    from recon.lipschitz.experiments import load_point_set
    from recon.models.field import numpy_field

    config.validate()
    seed = config.seed
    points, _ = load_point_set(scan, seed=seed)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"{scan} is not a 3-D point set")
    if len(points) > config.max_points:
        points = points[np.random.default_rng(seed).choice(len(points), config.max_points, replace=False)]
    normalization = Normalization.fit(points)
    work = normalization.to_work(points).astype(np.float32)
    run = RunFolder.create(run_dir, force=force)
    settings = asdict(config) | {"fit": asdict(config.fit())}
    run.write_json("config.json", {"method": "lipschitz-sdf", "scan": scan, "lipschitz-sdf": settings})
    run.write_json("meta.json", environment_metadata(device="cpu", seed=seed))
    run.write_json("normalization.json", normalization.to_dict())

    model, losses = fit_distance_field(work, config.fit())
    check = check_distance_bound(model, resolution=config.resolution, seed=seed)
    vertices, faces = extract_mesh(numpy_field(model), resolution=config.resolution, bound=1.2)
    with torch.no_grad():
        on_scan = model(torch.from_numpy(work)).abs()
    result = {
        "scan": scan,
        "final_loss": losses[-1],
        "scan_residual_mean": float(on_scan.mean()),
        "scan_residual_max": float(on_scan.max()),
        "check": asdict(check) | {"holds": check.holds},
        "n_faces": len(faces),
        "units": "working frame (scan centred, scaled to half-extent 0.9)",
    }
    run.write_json("sdf.json", result)
    if len(faces):
        save_mesh(run.mesh_path, normalization.to_scan(vertices), faces=faces, force=True)
    run.mark_done({"method": "lipschitz-sdf", "holds": check.holds, "n_faces": len(faces)})
    return result
