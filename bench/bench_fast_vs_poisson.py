"""`recon fit` (default preset) against screened Poisson on the virtual-scan benchmark.

Runs (or reuses) one `recon batch` over the benchmark set with the methods levelset and poisson, then
prints, per scan, both Chamfer-L1 values, their ratio and both fit times, and checks the targets:
fit ≤ 60 s wall; Chamfer-L1 ≤ Poisson on noisy and partial scans, ≤ 1.2 × Poisson on clean ones.

    python bench/bench_fast_vs_poisson.py [--bench /tmp/recon-bench] [--out bench/out/fast-vs-poisson]
                                          [--scans man,cow,...] [--markdown bench/fast_vs_poisson.md]

The benchmark set is built first when missing (`recon data build-bench`). Chamfer is ×1000 of the GT
bounding-box diagonal, 100k samples, seed 0 (recon.core.metrics). Fit seconds are wall time of the task's fit
(load, fit, mesh, write), so run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import time
from pathlib import Path

RECON = [sys.executable, "-m", "recon.cli.main"]
TIME_LIMIT_S = 60.0
CLEAN_RATIO = 1.2


def ensure_benchmark(bench: Path) -> None:
    if not (bench / "manifest.csv").exists():
        subprocess.run([*RECON, "data", "build-bench", "-o", str(bench), "--quiet"], check=True)


def subset_manifest(bench: Path, scans: list[str] | None, out: Path) -> Path:
    """The benchmark manifest, restricted to the source meshes named in ``scans`` (all when None)."""
    manifest = bench / "manifest.csv"
    if not scans:
        return manifest
    with manifest.open() as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if r["id"].rsplit("_", 1)[0] in scans]
    if not keep:
        raise SystemExit(f"none of {scans} is in {manifest}")
    for row in keep:
        for key in ("scan", "gt"):
            row[key] = str((bench / row[key]).resolve())
    out.mkdir(parents=True, exist_ok=True)
    path = out / "manifest.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(keep[0]))
        writer.writeheader()
        writer.writerows(keep)
    return path


def comparison_rows(out: Path) -> list[dict]:
    from recon.evaluation.report import collect_runs

    by_scan: dict[str, dict] = {}
    for record in collect_runs(out):
        if record.status != "finished" or record.method not in {"levelset", "poisson"}:
            continue
        row = by_scan.setdefault(record.scan_id, {"scan": record.scan_id, "variant": record.variant})
        row[f"{record.method}_cd"] = record.metrics["chamfer_l1_x1000"]
        row[f"{record.method}_s"] = record.metrics["fit_seconds"]
    rows = [r for r in by_scan.values() if "levelset_cd" in r and "poisson_cd" in r]
    for row in rows:
        row["ratio"] = row["levelset_cd"] / row["poisson_cd"]
        limit = CLEAN_RATIO if row["variant"] == "clean" else 1.0
        row["quality_ok"] = row["ratio"] <= limit
        row["time_ok"] = row["levelset_s"] <= TIME_LIMIT_S
    return sorted(rows, key=lambda r: (r["variant"], r["scan"]))


def add_filtered_poisson(rows: list[dict], bench: Path) -> None:
    """Poisson on the scan after the fast preset's isolated-point filter: is the win only the filter?"""
    import trimesh

    from recon.baselines.poisson import PoissonConfig, screened_poisson
    from recon.core.config import fast_preset
    from recon.core.metrics import evaluate_reconstruction
    from recon.core.outliers import isolated_point_mask
    from recon.io import load_mesh, load_scan

    preset = fast_preset()
    with (bench / "manifest.csv").open() as f:
        entries = {r["id"]: r for r in csv.DictReader(f)}
    for row in rows:
        entry = entries.get(row["scan"])
        if entry is None:
            continue
        cloud = load_scan(bench / entry["scan"])
        keep = ~isolated_point_mask(
            cloud.points, neighbors=preset.data.outlier_neighbors, ratio=preset.data.outlier_ratio
        )
        normals = cloud.normals[keep] if cloud.normals is not None else None
        vertices, faces, _ = screened_poisson(cloud.points[keep], normals, PoissonConfig())
        metrics = evaluate_reconstruction(
            trimesh.Trimesh(vertices, faces, process=False), load_mesh(bench / entry["gt"]), n_samples=100_000
        )
        row["poisson_filtered_cd"] = metrics["x1000_diag"]["chamfer_l1"]


def markdown(rows: list[dict]) -> str:
    lines = [
        "| scan | variant | level set CD-L1 | Poisson CD-L1 | ratio | target | level set fit s | Poisson fit s "
        "| Poisson on filtered points CD-L1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = f"≤ {CLEAN_RATIO}" if r["variant"] == "clean" else "≤ 1"
        filtered = f"{r['poisson_filtered_cd']:.2f}" if "poisson_filtered_cd" in r else ""
        lines.append(
            f"| {r['scan']} | {r['variant']} | {r['levelset_cd']:.2f} | {r['poisson_cd']:.2f} | "
            f"{r['ratio']:.2f}{'' if r['quality_ok'] else ' ✗'} | {target} | "
            f"{r['levelset_s']:.1f}{'' if r['time_ok'] else ' ✗'} | {r['poisson_s']:.1f} | {filtered} |"
        )
    if rows:
        times = [r["levelset_s"] for r in rows]
        lines += [
            "",
            f"- quality target met on {sum(r['quality_ok'] for r in rows)}/{len(rows)} scans; "
            f"geometric mean of the ratios {statistics.geometric_mean([r['ratio'] for r in rows]):.2f}",
            f"- fit ≤ {TIME_LIMIT_S:.0f} s on {sum(r['time_ok'] for r in rows)}/{len(rows)} scans; level-set fit "
            f"median {statistics.median(times):.1f} s, max {max(times):.1f} s",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, default=Path("/tmp/recon-bench"))
    parser.add_argument("--out", type=Path, default=Path("bench/out/fast-vs-poisson"))
    parser.add_argument("--scans", help="Comma-separated source meshes (default: all of the benchmark).")
    parser.add_argument("--markdown", type=Path, help="Also write the table to this file.")
    parser.add_argument("--report-only", action="store_true", help="Only tabulate what --out holds.")
    parser.add_argument(
        "--filtered-poisson",
        action="store_true",
        help="Also run Poisson on the points left by the fast preset's isolated-point filter (not timed).",
    )
    args = parser.parse_args()
    if not args.report_only:
        ensure_benchmark(args.bench)
        manifest = subset_manifest(args.bench, args.scans.split(",") if args.scans else None, args.out)
        start = time.perf_counter()
        subprocess.run(
            [
                *RECON,
                "batch",
                str(manifest),
                "-o",
                str(args.out),
                "--methods",
                "levelset,poisson",
                "--no-thumbnails",
            ],
            check=True,
        )
        print(f"batch wall time {time.perf_counter() - start:.0f} s")
    rows = comparison_rows(args.out)
    if args.filtered_poisson:
        add_filtered_poisson(rows, args.bench)
    table = markdown(rows)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")


if __name__ == "__main__":
    main()
