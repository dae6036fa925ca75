"""The refinement lever (recon.core.refine) measured on the same fits, before and after.

Takes the run folders a `bench_spread.py --label before` run left (fitted without refinement, mesh.ply and
mesh_trimmed.py kept), and for each one moves the mesh onto the scan exactly as the pipeline does
(`prepare_points` of the run's own config: the same subset, the same isolated-point filter, the same working
frame), re-derives the trimmed mesh from the refined one, and scores all four meshes against the ground truth.
Same fit, same seed: the only difference between the columns is the refinement.

    python bench/bench_refine.py --bench /tmp/recon-bench --runs bench/out/refine-default/runs/before \
        --out bench/out/refine-default/refine.jsonl --markdown bench/refine/results.md

CD-L1 ×1000 of the GT diagonal (recon.core.metrics, 100k samples per surface, seed 0), F@1 %, normal
consistency; per scan the mean and the worst of the seeds, and the ratio after / before of the worst seed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def score(vertices: np.ndarray, faces: np.ndarray, gt) -> dict:
    import trimesh

    from recon.core.metrics import evaluate_reconstruction

    result = evaluate_reconstruction(trimesh.Trimesh(vertices, faces, process=False), gt)
    return {
        "cd_l1": result["x1000_diag"]["chamfer_l1"],
        "fscore": result.get("fscore"),
        "nc": result.get("normal_consistency"),
    }


def refine_run(run_dir: Path, bench: Path, neighbours: int) -> dict:
    """Scores of one run folder's meshes before and after refinement (and the refinement's own report)."""
    from recon.core.config import FitConfig
    from recon.core.normalize import Normalization
    from recon.core.reconstruct import prepare_points
    from recon.core.refine import refine_to_scan
    from recon.core.trim import trim_unsupported
    from recon.io import load_mesh, load_scan

    scan_id, normals, seed, threads = run_dir.name.rsplit("-", 3)
    config = FitConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    scan = load_scan(bench / "scans" / f"{scan_id}.ply")
    work, _, normalization = prepare_points(scan.points, scan.normals, config)
    saved = Normalization.from_dict(json.loads((run_dir / "normalization.json").read_text()))
    if not np.allclose(saved.center, normalization.center) or not np.isclose(
        saved.scale, normalization.scale
    ):
        raise SystemExit(f"{run_dir}: the points prepared here are not the fit's (normalization differs)")
    gt = load_mesh(bench / "gt" / f"{scan_id.rsplit('_', 1)[0]}.ply")
    mesh = load_mesh(run_dir / "mesh.ply")
    start = time.perf_counter()
    refined, report = refine_to_scan(normalization.to_work(mesh.vertices), mesh.faces, work, neighbours)
    seconds = time.perf_counter() - start
    trimmed_v, trimmed_f, _ = trim_unsupported(refined, mesh.faces, work)
    row = {"scan": scan_id, "normals": normals, "seed": int(seed[1:]), "refine_seconds": round(seconds, 3)}
    row |= {"refine": report}
    row |= {f"before_{k}": v for k, v in score(mesh.vertices, mesh.faces, gt).items()}
    before_trimmed = load_mesh(run_dir / "mesh_trimmed.ply")
    row |= {
        f"before_trimmed_{k}": v for k, v in score(before_trimmed.vertices, before_trimmed.faces, gt).items()
    }
    row |= {f"after_{k}": v for k, v in score(normalization.to_scan(refined), mesh.faces, gt).items()}
    row |= {
        f"after_trimmed_{k}": v for k, v in score(normalization.to_scan(trimmed_v), trimmed_f, gt).items()
    }
    return row


def _columns(group: list[dict]):
    return lambda key: [row[key] for row in group]


def table(rows: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["scan"], row["normals"]), []).append(row)
    lines = [
        "| scan | normals | seeds | mesh before: mean | worst | after: mean | worst | worst after/before "
        "| trimmed before: worst | after: worst | ratio | F@1% worst before → after | refine s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ratios = []
    for (scan, normals), group in sorted(groups.items()):
        col = _columns(group)
        worst_b, worst_a = max(col("before_cd_l1")), max(col("after_cd_l1"))
        trim_b, trim_a = max(col("before_trimmed_cd_l1")), max(col("after_trimmed_cd_l1"))
        best_b = min(worst_b, trim_b)
        best_a = min(worst_a, trim_a)
        ratios.append(best_a / best_b)
        lines.append(
            f"| {scan} | {normals} | {len(group)} | {statistics.mean(col('before_cd_l1')):.3f} | {worst_b:.3f} "
            f"| {statistics.mean(col('after_cd_l1')):.3f} | {worst_a:.3f} | {worst_a / worst_b:.3f} "
            f"| {trim_b:.3f} | {trim_a:.3f} | {trim_a / trim_b:.3f} "
            f"| {min(col('before_fscore')):.3f} → {min(col('after_fscore')):.3f} "
            f"| {max(col('refine_seconds')):.2f} |"
        )
    if ratios:
        geo = float(np.exp(np.mean(np.log(ratios))))
        lines.append("")
        lines.append(
            f"Better of mesh / trimmed, worst seed, after / before: {min(ratios):.3f} … {max(ratios):.3f} "
            f"(geometric mean {geo:.3f}); better on {sum(r < 1 for r in ratios)} of {len(ratios)}."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bench", required=True, help="benchmark folder (scans/, gt/)")
    parser.add_argument("--runs", required=True, nargs="+", help="folders of bench_spread run folders")
    parser.add_argument("--out", required=True, help="rows (jsonl), appended; finished runs are skipped")
    parser.add_argument("--neighbours", type=int, default=16)
    parser.add_argument("--markdown")
    args = parser.parse_args()
    out = Path(args.out)
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    done = {(r["scan"], r["normals"], r["seed"]) for r in rows}
    for runs in args.runs:
        for run_dir in sorted(Path(runs).iterdir()):
            if not (run_dir / "DONE").exists() or not (run_dir / "mesh_trimmed.ply").exists():
                continue
            scan_id, normals, seed, _ = run_dir.name.rsplit("-", 3)
            if (scan_id, normals, int(seed[1:])) in done:
                continue
            row = refine_run(run_dir, Path(args.bench), args.neighbours)
            rows.append(row)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(scan_id, normals, seed, row["before_cd_l1"], "→", row["after_cd_l1"], flush=True)
    text = table(rows)
    print(text)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(text)


if __name__ == "__main__":
    main()
