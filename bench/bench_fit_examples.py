"""Fit the embedded real examples with `recon fit` (a preset) and screened Poisson, side by side.

Each (example, method) runs in its own process so wall time and peak memory are its own. Chamfer is
measured against the source mesh with `recon.core.metrics.evaluate_reconstruction` (100k samples, seed 0),
×1000 of the GT bounding-box diagonal. For the range scan `face` the "GT" is the scan's own
open triangulation: the watertight reconstruction also closes the unseen back, which accuracy counts as
error, so read completeness and scan→reconstruction for that row.

    python bench/bench_fit_examples.py [--examples face,bunny,cow,airplane] [--preset fast] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def run_one(example: str, method: str, preset: str, out: Path) -> dict:
    import numpy as np

    from recon.core.metrics import evaluate_reconstruction
    from recon.examples import example_path
    from recon.io import load_mesh, load_scan

    scan_path = example_path(example)
    cloud = load_scan(scan_path)
    start = time.perf_counter()
    info: dict = {}
    if method == "levelset":
        from recon.core.config import PRESETS
        from recon.core.reconstruct import fit_scan

        result = fit_scan(
            scan_path, out / f"{example}-{preset}", PRESETS[preset](), force=True, thumbnail=False
        )
        pred = load_mesh(result.mesh_path)
        info = {"steps": result.steps, "train_seconds": round(result.train_seconds, 1)}
    else:
        import trimesh

        from recon.baselines.poisson import PoissonConfig, screened_poisson

        vertices, faces, _ = screened_poisson(cloud.points, cloud.normals, PoissonConfig(depth=9))
        pred = trimesh.Trimesh(vertices, faces, process=False)
    seconds = time.perf_counter() - start
    metrics = evaluate_reconstruction(pred, load_mesh(scan_path), scan_points=cloud.points, n_samples=100_000)
    scaled = metrics["x1000_diag"]
    return {
        "example": example,
        "method": method if method != "levelset" else f"levelset-{preset}",
        "points": len(cloud.points),
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "chamfer_l1": round(scaled["chamfer_l1"], 3),
        "chamfer_l2": round(scaled["chamfer_l2"], 3),
        "accuracy": round(scaled["accuracy"], 3),
        "completeness": round(scaled["completeness"], 3),
        "scan_to_pred": round(scaled.get("scan_to_pred", float(np.nan)), 3),
        **info,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", default="face,bunny,cow,airplane")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--out", type=Path, default=Path("bench/out/fit_examples"))
    parser.add_argument("--one", nargs=2, metavar=("EXAMPLE", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], args.preset, args.out)))
        return
    rows = []
    for example in args.examples.split(","):
        for method in ("poisson", "levelset"):
            cmd = [
                sys.executable,
                __file__,
                "--one",
                example,
                method,
                "--preset",
                args.preset,
                "--out",
                str(args.out),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{example} {method} failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr)
    header = (
        "| example | method | points | wall s | peak MB | steps | CD-L1 | CD-L2 | acc | comp | scan→pred |"
    )
    print(header)
    print("|---" * 11 + "|")
    for r in rows:
        print(
            f"| {r['example']} | {r['method']} | {r['points']} | {r['seconds']} | {r['peak_rss_mb']} | "
            f"{r.get('steps', '')} | {r['chamfer_l1']} | {r['chamfer_l2']} | {r['accuracy']} | "
            f"{r['completeness']} | {r['scan_to_pred']} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
