"""``recon lipschitz sdf`` as a library call: a 1-Lipschitz distance field of a scan, in a run folder.

The scan is subsampled and normalized as the fit does, a :class:`LipschitzImplicit` learns |F| ≈ distance
to the scan (:func:`fit_distance_field`), its zero set is meshed, and the guarantee |F(x)| ≤ dist(x, {F = 0})
is checked on random points. The run folder holds config.json (scan, settings, seed, package versions in
meta.json), normalization.json, sdf.json (losses, residuals, the check) and mesh.ply in the scan's frame,
then DONE.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from recon.errors import InputError
from recon.lipschitz.implicit import DistanceFitConfig, check_distance_bound, fit_distance_field
from recon.run import RunFolder, environment_metadata


@dataclass
class DistanceRunConfig:
    """A distance-field run: the fit and what surrounds it."""

    fit: DistanceFitConfig = field(default_factory=DistanceFitConfig)
    """The network and its training (seed included)."""
    max_points: int = 20_000
    """Scan points used (a random subset fixed by the seed when the scan has more)."""
    resolution: int = 128
    """Marching-cubes grid for the mesh and the distance check."""


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

    seed = config.fit.seed
    points, _ = load_point_set(scan, seed=seed)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"{scan} is not a 3-D point set")
    if len(points) > config.max_points:
        points = points[np.random.default_rng(seed).choice(len(points), config.max_points, replace=False)]
    normalization = Normalization.fit(points)
    work = normalization.to_work(points).astype(np.float32)
    run = RunFolder.create(run_dir, force=force)
    run.write_json("config.json", {"method": "lipschitz-sdf", "scan": scan, "lipschitz-sdf": asdict(config)})
    run.write_json("meta.json", environment_metadata(device="cpu", seed=seed))
    run.write_json("normalization.json", normalization.to_dict())

    model, losses = fit_distance_field(work, config.fit)
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
