"""How much a fit's quality depends on its seed and on the machine's arithmetic (thread count).

Fits every chosen benchmark scan with and without its normals, for each seed and each torch thread count
(one `recon fit` process per fit, so the thread count is the process's own), evaluates CD-L1 against the
ground truth and reports per scan min / median / max and the max/min ratio. Results are appended to
``OUT/rows.jsonl`` as they come, so an interrupted run resumes where it stopped (`--resume` is implied:
finished (scan, normals, seed, threads, label) rows are skipped).

    python bench/bench_spread.py --bench /tmp/recon-bench --out bench/out/spread --label after \
        [--scans head_partial,man_partial,...] [--seeds 0,1,2] [--threads 1,2] [--markdown bench/spread/results.md]

``--arith avx2`` runs the draws with another machine's arithmetic (torch, MKL and OpenBLAS on their AVX2
code paths, same packages); the rows carry ``"arith": "avx2"`` and count as further draws of their label.

Chamfer is ×1000 of the GT bounding-box diagonal, 100k area-uniform samples per surface, seed 0
(recon.core.metrics). A fit whose self-check (recon.core.surface_check) flags it as suspect, or that is refused, counts as a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RECON = [sys.executable, "-m", "recon.cli.main"]
TARGET_RATIO = 1.15
DEFAULT_SCANS = (
    "head_clean,head_partial,man_partial,bunny_partial,cow_noisy,camel_noisy,fandisk_partial,armadillo_clean"
)


def stripped_scan(scan: Path, cache: Path) -> Path:
    """The scan as x y z only (normals and every other attribute dropped), written once into ``cache``."""
    from recon.io import load_scan, save_point_cloud

    out = cache / f"{scan.stem}_nonormals.ply"
    if not out.exists():
        cache.mkdir(parents=True, exist_ok=True)
        save_point_cloud(out, load_scan(scan).points)
    return out


ARITHMETIC = {
    "native": {},
    # What a machine without AVX-512 computes: torch's own kernels, MKL's and numpy's OpenBLAS each take
    # their AVX2 code path. Thread counts alone barely move the arithmetic here (1 and 2 threads gave the
    # same mesh on 46 of 48 bench fits), so this is the draw that stands for "another machine".
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "OPENBLAS_CORETYPE": "Haswell"},
}
"""Environment of each ``--arith`` draw."""


def run_dir_of(out: Path, row: dict) -> Path:
    """The run folder of one draw (scan, normals, seed, threads, label and, when not native, arith)."""
    arith = row.get("arith", "native")
    suffix = "" if arith == "native" else f"-{arith}"
    name = f"{row['scan']}-{row['normals']}-s{row['seed']}-t{row['threads']}{suffix}"
    return out / "runs" / row["label"] / name


def fit_once(
    scan: Path, run_dir: Path, seed: int, threads: int, extra: list[str], arith: str = "native"
) -> tuple[int, float, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads)) | ARITHMETIC[arith]
    if run_dir.exists():
        shutil.rmtree(run_dir)
    start = time.perf_counter()
    proc = subprocess.run(
        [*RECON, "fit", str(scan), "-o", str(run_dir), "--seed", str(seed), "--quiet", *extra],
        env=env,
        capture_output=True,
        text=True,
    )
    return proc.returncode, time.perf_counter() - start, (proc.stderr.strip().splitlines() or [""])[-1]


def chamfer_l1(mesh_path: Path, gt_path: Path, prefix: str = "") -> dict:
    """CD-L1 (×1000 diag), F@1 % and normal consistency of one mesh; keys start with ``prefix``."""
    from recon.core.metrics import evaluate_reconstruction
    from recon.io import load_mesh

    if not mesh_path.exists():
        return {}
    result = evaluate_reconstruction(load_mesh(mesh_path), load_mesh(gt_path))
    scaled = result["x1000_diag"]
    values = {
        "cd_l1": scaled["chamfer_l1"],
        "fscore": result.get("fscore"),
        "nc": result.get("normal_consistency"),
    }
    return {prefix + key: value for key, value in values.items()}


def load_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run(args) -> list[dict]:
    bench, out = Path(args.bench), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    rows = load_rows(rows_path)
    done = {
        (r["scan"], r["normals"], r["seed"], r["threads"], r["label"], r.get("arith", "native")) for r in rows
    }
    manifest = {line.split(",")[0]: line for line in (bench / "manifest.csv").read_text().splitlines()[1:]}
    extra = args.fit_args.split() if args.fit_args else []
    for scan_id in args.scans.split(","):
        if scan_id not in manifest:
            raise SystemExit(f"{scan_id} is not in {bench / 'manifest.csv'}")
        scan = bench / "scans" / f"{scan_id}.ply"
        gt = bench / "gt" / f"{scan_id.rsplit('_', 1)[0]}.ply"
        for normals in args.normals.split(","):
            source = scan if normals == "yes" else stripped_scan(scan, out / "nonormals")
            for threads in [int(t) for t in args.threads.split(",")]:
                for seed in [int(s) for s in args.seeds.split(",")]:
                    key = (scan_id, normals, seed, threads, args.label, args.arith)
                    if key in done:
                        continue
                    row = {
                        "scan": scan_id,
                        "normals": normals,
                        "seed": seed,
                        "threads": threads,
                        "label": args.label,
                    } | ({} if args.arith == "native" else {"arith": args.arith})
                    run_dir = run_dir_of(out, row)
                    rc, wall, last = fit_once(source, run_dir, seed, threads, extra, args.arith)
                    row |= {"rc": rc, "wall_s": round(wall, 2)}
                    if rc == 0:
                        row |= chamfer_l1(run_dir / "mesh.ply", gt)
                        row |= chamfer_l1(run_dir / "mesh_trimmed.ply", gt, prefix="trimmed_")
                        check = _check_of(run_dir)
                        row["suspect"] = bool(check and check.get("suspect"))
                        row |= _attempts_of(check)
                    else:
                        row |= {"cd_l1": None, "suspect": True, "error": last}
                        row |= chamfer_l1(run_dir / "mesh_suspect.ply", gt, prefix="suspect_")
                    rows.append(row)
                    with rows_path.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)
                    if not args.keep_runs and run_dir.exists():
                        for heavy in ("checkpoints", "scan_points.npz"):
                            shutil.rmtree(run_dir / heavy, ignore_errors=True)
                            (run_dir / heavy).unlink(missing_ok=True) if (run_dir / heavy).is_file() else None
    return rows


def _attempts_of(check: dict | None) -> dict:
    """How many starts the fit tried and the one it kept (a repaired fit tried more than one)."""
    check = check or {}
    return {
        "attempts": len(check.get("attempts", [])) or None,
        "start_orientation": check.get("start_orientation"),
    }


def _backfill_attempts(rows: list[dict], out: Path) -> None:
    """Rows written before ``attempts`` was recorded take it from their run folder's meta.json, if kept."""
    for r in rows:
        if "attempts" not in r:
            run_dir = run_dir_of(out, r)
            r |= _attempts_of(_check_of(run_dir)) if (run_dir / "meta.json").exists() else {}


def _check_of(run_dir: Path) -> dict | None:
    meta = run_dir / "meta.json"
    if not meta.exists():
        return None
    return json.loads(meta.read_text()).get("surface_check")


def summary_table(rows: list[dict], labels: list[str]) -> str:
    """Markdown: per scan and normals, min / median / max CD-L1 and max/min for each label side by side."""
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for r in rows:
        groups.setdefault((r["scan"], r["normals"]), {}).setdefault(r["label"], []).append(r)
    head = (
        "| scan | normals | "
        + " | ".join(
            f"{lab}: n | min | median | max | max/min | failed | repaired | wall median s" for lab in labels
        )
        + " |"
    )
    sep = "|" + "---|" * (2 + 8 * len(labels))
    lines = [head, sep]
    for (scan, normals), by_label in sorted(groups.items()):
        cells = [scan, normals]
        for lab in labels:
            rs = by_label.get(lab, [])
            ok = [r["cd_l1"] for r in rs if r.get("cd_l1") is not None]
            failed = sum(1 for r in rs if r.get("suspect") or r["rc"] != 0)
            repaired = sum(1 for r in rs if (r.get("attempts") or 1) > 1 and not r.get("suspect"))
            if not ok:
                cells += [str(len(rs)), "–", "–", "–", "–", str(failed), str(repaired), "–"]
                continue
            ratio = max(ok) / min(ok)
            mark = "" if ratio <= TARGET_RATIO and not failed else " ✗"
            walls = [r["wall_s"] for r in rs]
            cells += [
                str(len(rs)),
                f"{min(ok):.2f}",
                f"{statistics.median(ok):.2f}",
                f"{max(ok):.2f}",
                f"{ratio:.2f}{mark}",
                str(failed),
                str(repaired),
                f"{statistics.median(walls):.1f}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    for lab in labels:
        ratios = []
        for by_label in groups.values():
            ok = [r["cd_l1"] for r in by_label.get(lab, []) if r.get("cd_l1") is not None]
            if len(ok) > 1:
                ratios.append(max(ok) / min(ok))
        if ratios:
            met = sum(1 for x in ratios if x <= TARGET_RATIO)
            lines.append(
                f"\n- **{lab}**: max/min ≤ {TARGET_RATIO} on {met}/{len(ratios)} (scan, normals) groups; "
                f"worst ratio {max(ratios):.2f}, geometric mean {float(np.exp(np.mean(np.log(ratios)))):.2f}"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bench", default="/tmp/recon-bench")
    parser.add_argument("--out", default="bench/out/spread")
    parser.add_argument("--label", default="current", help="name of this code state (before, after, ...)")
    parser.add_argument("--scans", default=DEFAULT_SCANS)
    parser.add_argument("--normals", default="yes,no")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", default="2")
    parser.add_argument("--fit-args", default="", help="extra arguments for recon fit")
    parser.add_argument(
        "--arith",
        choices=sorted(ARITHMETIC),
        default="native",
        help="the arithmetic of the draw: native, or avx2 (another machine's code paths, same packages)",
    )
    parser.add_argument("--keep-runs", action="store_true")
    parser.add_argument("--markdown", default=None, help="write the summary table here")
    parser.add_argument("--table-only", action="store_true", help="print the table of existing rows")
    parser.add_argument(
        "--labels",
        help="the labels the table shows, in order (default: every label); LABEL:yes or LABEL:no keeps "
        "only that label's draws with or without normals",
    )
    args = parser.parse_args()
    rows = load_rows(Path(args.out) / "rows.jsonl") if args.table_only else run(args)
    _backfill_attempts(rows, Path(args.out))
    labels = args.labels.split(",") if args.labels else list(dict.fromkeys(r["label"] for r in rows))
    # LABEL:NORMALS keeps only that label's rows with (yes) or without (no) normals.
    only = dict(lab.split(":", 1) for lab in labels if ":" in lab)
    labels = [lab.split(":", 1)[0] for lab in labels]
    rows = [r for r in rows if only.get(r["label"], r["normals"]) == r["normals"]]
    table = summary_table(rows, labels)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table)


if __name__ == "__main__":
    main()
