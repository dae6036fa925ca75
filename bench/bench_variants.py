"""Fit-config variants side by side: every variant on every scan and seed, in one process, one after another.

    python bench/bench_variants.py --bench /tmp/recon-bench --out bench/out/fit_time \
        --variants bench/fit_time/variants.json --scans cow_noisy,fandisk_partial --seeds 0,1,2 [--normals no]
    python bench/bench_variants.py --out bench/out/fit_time --table-only --markdown bench/fit_time/results.md

A variant is a name and the FitConfig fields it replaces in the default (fast) preset, e.g.
``{"half": {"batch_points": 2000}}`` (``"model": {...}`` replaces fields of the network block). For each scan
and seed the variants run back to back, so their wall times share the machine's load; read ratios. Each fit
is ``recon.core.reconstruct.fit_scan`` (what ``recon fit`` runs, without the thumbnail); wall = that call.
CD-L1 ×1000 of the GT diagonal (recon.core.metrics, 100k samples, seed 0) of mesh.ply and mesh_trimmed.ply;
"best" = the better of the two per draw. Rows go to OUT/rows.jsonl as they finish; a rerun skips finished
(variant, scan, seed, normals) rows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path


def fitted_config(overrides: dict, seed: int):
    from recon.core.config import fast_preset

    overrides = dict(overrides)
    model = overrides.pop("model", None)
    config = fast_preset().with_(seed=seed, **overrides)
    return config.with_(model=replace(config.model, **model)) if model else config


def scan_metrics(mesh_path: Path, gt_path: Path) -> dict | None:
    from recon.core.metrics import evaluate_reconstruction
    from recon.io import load_mesh

    if not mesh_path.exists():
        return None
    result = evaluate_reconstruction(load_mesh(mesh_path), load_mesh(gt_path))
    return {
        "cd": result["x1000_diag"]["chamfer_l1"],
        "f": result.get("fscore"),
        "nc": result.get("normal_consistency"),
    }


def source_scan(bench: Path, scan_id: str, normals: str, cache: Path) -> Path:
    from recon.io import load_scan, save_point_cloud

    scan = bench / "scans" / f"{scan_id}.ply"
    if normals == "yes":
        return scan
    stripped = cache / f"{scan_id}-nonormals.ply"
    if not stripped.exists():
        stripped.parent.mkdir(parents=True, exist_ok=True)
        save_point_cloud(stripped, load_scan(scan).points)
    return stripped


def run(args) -> None:
    from recon.core.reconstruct import fit_scan

    bench, out = Path(args.bench), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = json.loads(Path(args.variants).read_text())
    rows_path = out / "rows.jsonl"
    done = {(r["variant"], r["scan"], r["seed"], r["normals"]) for r in load_rows(rows_path)}
    for scan_id in args.scans.split(","):
        gt = bench / "gt" / f"{scan_id.rsplit('_', 1)[0]}.ply"
        source = source_scan(bench, scan_id, args.normals, out / "nonormals")
        for seed in [int(s) for s in args.seeds.split(",")]:
            for name, overrides in variants.items():
                if (name, scan_id, seed, args.normals) in done:
                    continue
                run_dir = out / "runs" / f"{name}-{scan_id}-{args.normals}-s{seed}"
                shutil.rmtree(run_dir, ignore_errors=True)
                started = time.perf_counter()
                try:
                    result, error = (
                        fit_scan(source, run_dir, fitted_config(overrides, seed), thumbnail=False),
                        None,
                    )
                except Exception as exc:  # a refused fit is a result of the variant, kept as such
                    result, error = None, str(exc)
                row = {
                    "variant": name,
                    "scan": scan_id,
                    "seed": seed,
                    "normals": args.normals,
                    "wall": round(time.perf_counter() - started, 1),
                    "error": error,
                    "suspect": bool(result and result.surface_check and result.surface_check.get("suspect")),
                    "mesh": scan_metrics(run_dir / "mesh.ply", gt),
                    "trim": scan_metrics(run_dir / "mesh_trimmed.ply", gt),
                }
                with rows_path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
                shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def load_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def best_cd(row: dict) -> float | None:
    values = [m["cd"] for m in (row.get("mesh"), row.get("trim")) if m]
    return min(values) if values else None


def table(rows: list[dict]) -> str:
    groups = defaultdict(list)
    for r in rows:
        groups[(r["scan"], r["normals"], r["variant"])].append(r)
    lines = [
        "| scan | normals | variant | draws | best CD-L1 mean | worst | worst vs first variant | wall mean s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    first_worst = {}
    order = {
        key[2]: i for i, key in reversed(list(enumerate(groups)))
    }  # variants in order of first appearance
    for (scan, normals, variant), group in sorted(
        groups.items(), key=lambda g: (g[0][0], g[0][1], order[g[0][2]])
    ):
        values = [best_cd(r) for r in group]
        failed = sum(v is None or r["suspect"] for v, r in zip(values, group, strict=True))
        ok = [v for v in values if v is not None]
        worst = max(ok) if ok else float("nan")
        base = first_worst.setdefault((scan, normals), worst)
        lines.append(
            f"| {scan} | {normals} | {variant} | {len(group)}{f' ({failed} failed)' if failed else ''} | "
            f"{statistics.mean(ok):.3f} | {worst:.3f} | {worst / base:.3f} | "
            f"{statistics.mean(r['wall'] for r in group):.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bench", default="/tmp/recon-bench")
    parser.add_argument("--out", required=True)
    parser.add_argument("--variants")
    parser.add_argument("--scans", default="")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--normals", default="yes", choices=["yes", "no"])
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--markdown")
    args = parser.parse_args()
    if not args.table_only:
        if not args.variants or not args.scans:
            parser.error("--variants and --scans are needed unless --table-only")
        run(args)
    text = table(load_rows(Path(args.out) / "rows.jsonl"))
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)


if __name__ == "__main__":
    main()
