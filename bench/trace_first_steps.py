"""Where two seeds' fits part ways: the zero set's distance to the ground truth over the first steps.

For each seed, the fit of one benchmark scan is stepped in process and its zero set is meshed (128³, no
refinement onto the scan) at the chosen steps; each mesh is scored by CD-L1 (×1000 of the GT diagonal, 30k
samples per surface) against the ground truth, and by its distance to the first seed's mesh at the same
step. Run it with and without the warm-up to see what the first Adam steps do to the start:

    python bench/trace_first_steps.py --bench /tmp/recon-bench --scan head_clean --seeds 0,4 \
        --steps 0,1,5,25,100 --warmup 0,50 --markdown bench/full/first_steps.md

Step 0 is the start (the distilled signed-distance estimate).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree

from recon.core.config import fast_preset
from recon.core.fit import LevelSetFitter
from recon.core.metrics import evaluate_reconstruction
from recon.core.reconstruct import _usable_scan_normals, prepare_points, working_mesh
from recon.io import load_scan

SAMPLES = 30_000


def trace(
    scan_path: Path, gt: trimesh.Trimesh, seed: int, steps: list[int], warmup: int
) -> dict[int, trimesh.Trimesh]:
    """Meshes (scan frame) of the fit's zero set at each of ``steps``."""
    config = fast_preset().with_(seed=seed, lr_warmup_steps=warmup, refine_neighbors=0)
    cloud = load_scan(scan_path)
    points, normals, normalization = prepare_points(cloud.points, cloud.normals, config)
    normals, _ = _usable_scan_normals(points, normals)
    fitter = LevelSetFitter(points, normals, config)
    meshes = {}
    for step in steps:
        while fitter.step < step:
            fitter.train_step()
        vertices, faces, _ = working_mesh(fitter, 128)
        meshes[step] = trimesh.Trimesh(normalization.to_scan(vertices), faces, process=False)
    return meshes


def _mesh_distance(a: trimesh.Trimesh, b: trimesh.Trimesh, diagonal: float) -> float:
    pa, pb = a.sample(SAMPLES, seed=0), b.sample(SAMPLES, seed=1)
    return 500.0 * (cKDTree(pb).query(pa)[0].mean() + cKDTree(pa).query(pb)[0].mean()) / diagonal


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bench", type=Path, default=Path("/tmp/recon-bench"))
    parser.add_argument("--scan", default="head_clean")
    parser.add_argument("--seeds", default="0,4")
    parser.add_argument("--steps", default="0,1,5,25,100,400")
    parser.add_argument("--warmup", default="0,50", help="warm-up lengths to compare")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = {
        r[0]: r for r in (line.split(",") for line in (args.bench / "manifest.csv").read_text().splitlines())
    }
    scan_path, gt = (
        args.bench / rows[args.scan][1],
        trimesh.load(args.bench / rows[args.scan][2], process=False),
    )
    diagonal = float(np.linalg.norm(gt.bounds[1] - gt.bounds[0]))
    seeds = [int(s) for s in args.seeds.split(",")]
    steps = [int(s) for s in args.steps.split(",")]
    lines = [
        f"| warm-up | seed | {' | '.join(f'step {s}' for s in steps)} |",
        "|---|---|" + "---|" * len(steps),
    ]
    for warmup in (int(w) for w in args.warmup.split(",")):
        traces = {seed: trace(scan_path, gt, seed, steps, warmup) for seed in seeds}
        for seed in seeds:
            cells = []
            for step in steps:
                mesh = traces[seed][step]
                cd = evaluate_reconstruction(mesh, gt, n_samples=SAMPLES)["x1000_diag"]["chamfer_l1"]
                apart = _mesh_distance(mesh, traces[seeds[0]][step], diagonal) if seed != seeds[0] else None
                cells.append(f"{cd:.2f}" + (f" ({apart:.2f})" if apart is not None else ""))
            lines.append(f"| {warmup} | {seed} | {' | '.join(cells)} |")
            print(json.dumps({"warmup": warmup, "seed": seed, "cells": cells}), flush=True)
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        args.markdown.write_text(
            f"CD-L1 of the zero set to the ground truth (‰ of the diagonal, 128³, no refinement), `{args.scan}`; "
            f"in brackets the distance to seed {seeds[0]}'s zero set at the same step.\n\n{table}\n"
        )


if __name__ == "__main__":
    main()
