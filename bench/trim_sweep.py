"""How wide should the trimmed mesh's skirt be? Offline, on finished run folders: no fit is run.

For each run folder ``RUNS/{scan}-{normals}-s{seed}-t{threads}`` (bench_spread's layout) the watertight
``mesh.ply`` is trimmed again with recon.core.trim at several ``spacing_factor`` values (the default is 3),
and, with ``--continuation``, by a variant that also keeps unsupported faces within ``--reach`` spacings
whose normal stays within ``--angle`` degrees of the nearest supported face's (the smooth continuation of
the scanned surface past its rim, without the flat lid a closure turns into). Each mesh is scored against
the ground truth as the benchmark scores (recon.core.metrics, CD-L1 ×1000 diagonal). The scan is prepared
as the fit prepares it (isolated points dropped; the bench scans are below the fit's point cap).

    python bench/trim_sweep.py --bench /tmp/recon-bench --runs bench/out/full/runs/eb62f49 \
        --out bench/out/trim_sweep.jsonl --seeds 0 --continuation
    python bench/trim_sweep.py --out bench/out/trim_sweep.jsonl --table-only --markdown bench/full/trim_sweep.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

FACTORS = (3.0, 5.0, 7.0, 10.0, 14.0)


def continuation_trim(
    vertices: np.ndarray, faces: np.ndarray, scan: np.ndarray, *, reach: float, angle: float
) -> np.ndarray:
    """(f',) indices of the faces kept: supported at the default factor, or within ``reach`` spacings and
    turned less than ``angle`` degrees from the nearest supported face; then only components holding
    supported faces and at least 1 % of the kept area."""
    from scipy.spatial import cKDTree

    from recon.core.mesh_ops import face_areas, vertex_components
    from recon.core.trim import DEFAULT_SPACING_FACTOR, _supported_faces, scan_spacing

    spacing = scan_spacing(scan)
    tree = cKDTree(scan)
    supported = _supported_faces(vertices, faces, tree, DEFAULT_SPACING_FACTOR * spacing)
    within_reach = _supported_faces(vertices, faces, tree, reach * spacing)
    corners = vertices[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-30
    centroids = corners.mean(axis=1)
    candidates = np.flatnonzero(within_reach & ~supported)
    nearest = cKDTree(centroids[supported]).query(centroids[candidates])[1]
    turned_little = (normals[candidates] * normals[supported][nearest]).sum(axis=1) > np.cos(
        np.radians(angle)
    )
    keep = supported.copy()
    keep[candidates[turned_little]] = True

    areas = face_areas(vertices, faces)
    kept = np.flatnonzero(keep)
    labels = vertex_components(len(vertices), faces[kept])[1][faces[kept][:, 0]]
    has_supported = np.bincount(labels, weights=supported[kept].astype(float)) > 0
    area = np.bincount(labels, weights=areas[kept])
    large = area >= 0.01 * area[has_supported].sum()
    return kept[has_supported[labels] & large[labels]]


def measure(run: Path, bench: Path, args) -> dict:
    import trimesh

    from recon.core.metrics import evaluate_reconstruction
    from recon.core.outliers import isolated_point_mask
    from recon.core.trim import trim_unsupported
    from recon.io import load_mesh

    scan_id, normals, seed, _ = run.name.rsplit("-", 3)
    gt = load_mesh(bench / "gt" / f"{scan_id.rsplit('_', 1)[0]}.ply")
    scan = np.asarray(trimesh.load(bench / "scans" / f"{scan_id}.ply", process=False).vertices, dtype=float)
    scan = scan[~isolated_point_mask(scan)]
    mesh = load_mesh(run / "mesh.ply")
    vertices, faces = np.asarray(mesh.vertices, dtype=float), np.asarray(mesh.faces)

    def score(v, f) -> float:
        result = evaluate_reconstruction(trimesh.Trimesh(v, f, process=False), gt)
        return result["x1000_diag"]["chamfer_l1"]

    row = {"scan": scan_id, "normals": normals, "seed": int(seed[1:]), "watertight": score(vertices, faces)}
    for factor in FACTORS:
        v, f, _ = trim_unsupported(vertices, faces, scan, spacing_factor=factor)
        row[f"factor {factor:g}"] = score(v, f)
    if args.continuation:
        kept = continuation_trim(vertices, faces, scan, reach=args.reach, angle=args.angle)
        row[f"continuation {args.reach:g}/{args.angle:g}°"] = score(vertices, faces[kept])
    return row


def table(rows: list[dict]) -> str:
    keys = [k for k in rows[0] if k not in ("scan", "normals", "seed")]
    lines = [
        "| scan | normals | seed | " + " | ".join(keys) + " |",
        "|---|---|---|" + "---|" * len(keys),
    ]
    for row in sorted(rows, key=lambda r: (r["scan"], r["normals"], r["seed"])):
        best = min(row[k] for k in keys)
        cells = [f"**{row[k]:.2f}**" if row[k] == best else f"{row[k]:.2f}" for k in keys]
        lines.append(f"| {row['scan']} | {row['normals']} | {row['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", type=Path, help="a recon data build-bench folder (scans/, gt/)")
    parser.add_argument("--runs", type=Path, action="append", default=[], help="bench_spread run folders")
    parser.add_argument("--out", type=Path, required=True, help="rows (JSON lines), appended; resumes")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--normals", default="yes")
    parser.add_argument("--continuation", action="store_true")
    parser.add_argument("--reach", type=float, default=12.0, help="spacings (continuation variant)")
    parser.add_argument("--angle", type=float, default=30.0, help="degrees (continuation variant)")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()

    rows = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.exists() else []
    if not args.table_only:
        done = {(r["scan"], r["normals"], r["seed"]) for r in rows}
        seeds = {f"s{s}" for s in args.seeds.split(",")}
        normals = set(args.normals.split(","))
        for runs in args.runs:
            for run in sorted(p for p in runs.iterdir() if (p / "mesh.ply").exists()):
                scan_id, norm, seed, _ = run.name.rsplit("-", 3)
                if seed not in seeds or norm not in normals or (scan_id, norm, int(seed[1:])) in done:
                    continue
                row = measure(run, args.bench, args)
                rows.append(row)
                with args.out.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}))
    text = table(rows) if rows else "no rows\n"
    if args.markdown:
        args.markdown.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
