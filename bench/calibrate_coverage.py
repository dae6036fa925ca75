"""How well does the check's coverage separate broken fits from correct ones, and does a noise-aware
tolerance separate them better? Offline, on finished run folders: no fit is run.

For each run folder (``RUNS/*/*`` or ``RUNS/*``, with mesh.ply, config.json and meta.json) the scan is
prepared as the fit prepared it (subset, isolated points dropped) and measured against the run's mesh:

- ``within_1pct``: share of 20,000 scan points within 1 % of the scan's diagonal from the mesh (what the
  check's ``min_scan_within_1pct`` reads);
- ``noise``: the scan's noise scale, median over 5,000 probes of √λ_min of their 64-neighbour covariance,
  in diagonals (a slab of depth noise σ gives about σ);
- ``within_tol``: share within max(1 %, K × noise) (K = ``--noise-factor``);
- ``uncovered_patches``: share of the points beyond 1 % whose 16 nearest neighbours (in the subset) are
  at least 90 % beyond 1 % too (the check's ``scan_uncovered_patches``, with its default settings).

A run is *broken* when its CD-L1 (from ``--rows``, bench_spread/bench_broken_inputs rows) exceeds
``--broken-ratio`` × the best CD-L1 of the same scan in those rows (or ``--reference`` rows).

    python bench/calibrate_coverage.py --rows bench/out/full/rows.jsonl --runs bench/out/full/runs/eb62f49 \
        --out bench/out/coverage.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def noise_scale(points: np.ndarray) -> float:
    """Median √λ_min of the 64-neighbour covariance at an even stride of (n, 3) points (points' units)."""
    from recon.core.smoothing import NOISE_NEIGHBORS, neighborhood_scatter

    eigenvalues = neighborhood_scatter(points) / NOISE_NEIGHBORS
    return float(np.median(np.sqrt(np.maximum(eigenvalues[:, 0], 0.0))))


def prepared_distances(run: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The run's scan prepared as its fit prepared it (n, 3), 20,000 of those points (seed 0) (m, 3), their
    distances to the run's mesh.ply in diagonals (m,) (resolved up to 0.05), and the scan's diagonal."""
    from recon.core.config import FitConfig
    from recon.core.reconstruct import prepare_points
    from recon.core.surface_check import distance_to_mesh
    from recon.io import load_mesh, load_scan

    resolved = json.loads((run / "config.json").read_text())
    config = FitConfig.from_dict(resolved)
    cloud = load_scan(resolved["scan"])
    work, _, normalization = prepare_points(cloud.points, None, config)
    points = normalization.to_scan(work)
    mesh = load_mesh(run / "mesh.ply")
    diagonal = float(np.linalg.norm(np.ptp(points, axis=0)))
    subset = points[np.random.default_rng(0).choice(len(points), min(20_000, len(points)), replace=False)]
    to_mesh = distance_to_mesh(subset, np.asarray(mesh.vertices), np.asarray(mesh.faces), cap=0.05 * diagonal)
    return points, subset, to_mesh / diagonal, diagonal


def measure(run: Path, noise_factor: float) -> dict:
    from recon.core.surface_check import SurfaceCheckConfig, uncovered_patch_share

    points, subset, to_mesh, diagonal = prepared_distances(run)
    noise = noise_scale(points) / diagonal
    tolerance = max(0.01, noise_factor * noise)
    far = to_mesh > 0.01
    patches = SurfaceCheckConfig()
    return {
        "within_1pct": float(np.mean(~far)),
        "noise": noise,
        "tolerance": tolerance,
        "within_tol": float(np.mean(to_mesh <= tolerance)),
        "uncovered_patches": uncovered_patch_share(
            subset, far, patches.patch_neighbors, patches.patch_far_share
        ),
    }


def _scan_of(row: dict) -> str:
    """The scan a row fitted: bench_spread and bench_broken_inputs say ``scan``, the no-normals family ``input``."""
    return row.get("scan") or row["input"]


def _run_name(row: dict) -> str:
    """The run folder's name under ``--runs`` for a row of bench_spread, bench_broken_inputs or the family."""
    if "corruption" in row:
        return f"{row['scan']}-{row['corruption']}"
    if "input" in row:
        return f"{row['input']}-s{row['seed']}"
    return f"{row['scan']}-{row['normals']}-s{row['seed']}-t{row['threads']}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", required=True, help="rows.jsonl naming the runs and their CD-L1")
    parser.add_argument("--runs", required=True, help="folder of the rows' run folders")
    parser.add_argument("--reference", help="rows.jsonl whose best CD-L1 per scan defines 'broken'")
    parser.add_argument("--out", required=True)
    parser.add_argument("--noise-factor", type=float, default=4.0)
    parser.add_argument("--broken-ratio", type=float, default=2.0)
    args = parser.parse_args()
    rows = [json.loads(x) for x in Path(args.rows).read_text().splitlines() if x.strip()]
    reference = rows + (
        [json.loads(x) for x in Path(args.reference).read_text().splitlines() if x.strip()]
        if args.reference
        else []
    )
    best: dict[str, float] = {}
    for r in reference:
        if r.get("cd_l1") is not None:
            best[_scan_of(r)] = min(best.get(_scan_of(r), np.inf), r["cd_l1"])
    with Path(args.out).open("w") as out:
        for r in rows:
            name = _run_name(r)
            run = Path(args.runs) / name
            if r.get("cd_l1") is None or not (run / "mesh.ply").exists():
                continue
            broken = r["cd_l1"] > args.broken_ratio * best[_scan_of(r)]
            record = {"run": name, "cd_l1": r["cd_l1"], "broken": broken}
            record |= measure(run, args.noise_factor)
            out.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
