"""Calibrate the surface check on real fits — every correct fit passes, every broken one is caught.

Runs recon.core.surface_check on every mesh the spread benchmark (bench/bench_spread.py) left in
``OUT/runs/<label>/<scan>-<normals>-s<seed>-t<threads>/mesh.ply`` and compares its verdict with the truth:
a fit is *broken* when its CD-L1 to the ground truth exceeds ``--broken-ratio`` × the best CD-L1 any fit of
the same scan reached (before or after the fix, with or without normals). Prints the confusion table.

    python bench/bench_surface_check.py --out bench/out/spread [--markdown bench/surface_check/results.md]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np


def working_scan(scan_path: Path, run: Path) -> np.ndarray:
    """The scan points the fit used, in its working frame (same subsample and filter as the fit)."""
    from recon.core.config import FitConfig
    from recon.core.reconstruct import prepare_points
    from recon.io import load_scan

    config = FitConfig.from_dict(json.loads((run / "config.json").read_text()))
    points, _, _ = prepare_points(load_scan(scan_path).points, None, config)
    return points


def main() -> None:
    from recon.core.normalize import Normalization
    from recon.core.surface_check import check_surface
    from recon.io import load_mesh

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="bench/out/spread")
    parser.add_argument("--bench", default="/tmp/recon-bench")
    parser.add_argument("--broken-ratio", type=float, default=2.0)
    parser.add_argument("--markdown")
    args = parser.parse_args()
    out = Path(args.out)
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines() if line.strip()]
    best = {}
    for r in rows:
        if r.get("cd_l1"):
            best[r["scan"]] = min(best.get(r["scan"], np.inf), r["cd_l1"])
    table, lines = Counter(), []
    for r in rows:
        run = out / "runs" / r["label"] / f"{r['scan']}-{r['normals']}-s{r['seed']}-t{r['threads']}"
        if not r.get("cd_l1") or not (run / "mesh.ply").exists():
            continue
        scan = Path(args.bench) / "scans" / f"{r['scan']}.ply"
        normalization = Normalization.from_dict(json.loads((run / "normalization.json").read_text()))
        mesh = load_mesh(run / "mesh.ply")
        vertices = normalization.to_work(np.asarray(mesh.vertices))
        check = check_surface(vertices, np.asarray(mesh.faces), working_scan(scan, run), domain_bound=1.2)
        broken = r["cd_l1"] > args.broken_ratio * best[r["scan"]]
        table[(broken, check.suspect)] += 1
        lines.append(
            f"| {r['label']} | {r['scan']} | {r['normals']} | {r['seed']} | {r['threads']} | {r['cd_l1']:.2f} | "
            f"{'yes' if broken else 'no'} | {'yes' if check.suspect else 'no'} | {'; '.join(check.reasons) or '–'} |"
        )
        print(lines[-1], flush=True)
    head = [
        f"Broken = CD-L1 > {args.broken_ratio} × the best fit of the same scan. Suspect = the check's verdict.",
        "",
        "| | suspect | not suspect |",
        "|---|---|---|",
        f"| broken | {table[(True, True)]} | {table[(True, False)]} |",
        f"| correct | {table[(False, True)]} | {table[(False, False)]} |",
        "",
        "| label | scan | normals | seed | threads | CD-L1 | broken | suspect | reasons |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    text = "\n".join(head + lines) + "\n"
    print("\n".join(head[:6]))
    if args.markdown:
        Path(args.markdown).write_text(text)


if __name__ == "__main__":
    main()
