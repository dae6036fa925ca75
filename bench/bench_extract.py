"""Coarse-to-fine marching cubes: time, field evaluations and peak memory per resolution.

Each case runs in a fresh subprocess so that its peak resident memory (``ru_maxrss``) is its own.
Fields: the signed distance to a sphere of radius 0.7 (numpy), and a 4×128 Softplus MLP in torch
(float32, ``torch.no_grad``, chunked), initialised like the fitting code's sphere init so its zero set
is a closed surface near radius 0.7, with a random perturbation so that it is not exactly a sphere.

    .venv/bin/python bench/bench_extract.py [--resolutions 128 256 512] [--margins 1.0] [--dense]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def sphere_sdf(points: np.ndarray) -> np.ndarray:
    return (np.linalg.norm(points, axis=1) - 0.7).astype(np.float32)


def mlp_field(seed: int = 0):
    """4×128 Softplus MLP whose zero set is a wobbly closed surface around radius 0.7."""
    import torch

    torch.manual_seed(seed)
    width, depth = 128, 4
    layers: list[torch.nn.Module] = []
    d_in = 3
    for _ in range(depth):
        linear = torch.nn.Linear(d_in, width)
        torch.nn.init.normal_(linear.weight, 0.0, np.sqrt(2.0) / np.sqrt(width))
        torch.nn.init.zeros_(linear.bias)
        layers += [linear, torch.nn.Softplus(beta=100)]
        d_in = width
    last = torch.nn.Linear(width, 1)
    torch.nn.init.normal_(last.weight, np.sqrt(np.pi) / np.sqrt(width), 1e-4)
    torch.nn.init.constant_(last.bias, -0.7)
    model = torch.nn.Sequential(*layers, last).eval()
    with torch.no_grad():
        for layer in layers[::2][1:]:
            layer.weight.add_(0.05 * torch.randn_like(layer.weight))

    def field(points: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(points)).squeeze(1).numpy()

    return field


def run_case(field_name: str, resolution: int, margin: float, dense: bool) -> dict:
    from recon.core.extract import dense_grid_values, extract_mesh
    from recon.core.mesh_ops import mesh_report

    field = sphere_sdf if field_name == "sphere" else mlp_field()
    vertices, faces, stats = extract_mesh(
        field, resolution=resolution, refine_margin=margin, chunk=65536, return_stats=True
    )
    report = mesh_report(vertices, faces)
    result = {
        "field": field_name,
        "resolution": resolution,
        "margin": margin,
        "seconds": stats.seconds,
        "seconds_field": stats.seconds_field,
        "evaluations": stats.n_field_evaluations,
        "fraction": stats.evaluation_fraction,
        "closure_cells": stats.n_closure_cells,
        "faces": report["n_faces"],
        "watertight": report["watertight"],
        "euler": report["euler_characteristic"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if dense:
        start = time.perf_counter()
        dense_grid_values(field, resolution, 1.2)
        result["dense_seconds"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--fields", nargs="+", default=["sphere", "mlp"], choices=["sphere", "mlp"])
    parser.add_argument("--margins", type=float, nargs="+", default=[0.5])
    parser.add_argument("--dense", action="store_true", help="also time dense evaluation (slow)")
    parser.add_argument("--case", nargs=3, metavar=("FIELD", "RES", "MARGIN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        name, res, margin = args.case
        print(json.dumps(run_case(name, int(res), float(margin), args.dense)))
        return

    header = (
        "| field | res | margin | seconds | field s | evaluations | % of dense | closure | faces "
        "| watertight | χ | peak RSS MB |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in args.fields:
        for res in args.resolutions:
            for margin in args.margins:
                command = [sys.executable, __file__, "--case", name, str(res), str(margin)]
                if args.dense:
                    command.append("--dense")
                out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                print(
                    f"| {name} | {res} | {margin:g} | {r['seconds']:.2f} | {r['seconds_field']:.2f} "
                    f"| {r['evaluations']:,} | {100 * r['fraction']:.2f} | {r['closure_cells']} "
                    f"| {r['faces']:,} | {r['watertight']} | {r['euler']} | {r['peak_rss_mb']:.0f} |"
                    + (f" dense {r['dense_seconds']:.1f} s" if "dense_seconds" in r else "")
                )


if __name__ == "__main__":
    main()
