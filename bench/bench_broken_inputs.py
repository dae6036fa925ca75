"""Scans made wrong on purpose — is every wrong surface caught, repaired or refused?

Each chosen benchmark scan is corrupted in one of these ways and fitted with the default preset (one
``recon fit`` process, 2 threads, seed 0), then scored against its ground truth:

- ``patch-flipped``: the scan's own normals, flipped in random spatial patches (cells of a 3×3×3 grid
  over the scan's bounding box, each flipped with probability ½; at least one cell flipped and one kept);
- ``random-signs``: the scan's own normals with random signs (a plane fit saved without orientation);
- ``outliers-xyz``: x y z only, plus 20 % extra points drawn uniformly in the bounding box grown by 10 %;
- ``noisy-xyz`` (one-sided scans only): x y z only, Gaussian noise of 0.5 % of the diagonal on every point,
  the one-sided × noisy cell of the no-normals family that the benchmark's own scans do not have.

A fit's outcome, against the clean fit of the same scan (``--reference``: the spread benchmark's rows,
same normals setting, seed 0, 2 threads):

- ``good``: exit 0, not suspect, CD-L1 ≤ ``--broken-ratio`` × the reference (``repaired`` when the check
  failed first and a refit from another start passed);
- ``caught``: the check flagged it (exit 3, refused; or suspect under ``--on-suspect warn``);
- ``silent``: exit 0, not suspect, CD-L1 above the ratio: a wrong surface returned as a good one.

    python bench/bench_broken_inputs.py --bench /tmp/recon-bench --out bench/out/broken \
        --reference bench/spread/rows.jsonl [--markdown bench/surface_check/broken_inputs.md]

Rows are appended to ``OUT/rows.jsonl`` as they come; an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_spread import chamfer_l1, fit_once, load_rows  # noqa: E402

DEFAULT_SCANS = (
    "man_partial,head_partial,camel_partial,bunny_partial,fandisk_partial,airplane_partial,"
    "armadillo_noisy,cow_noisy,head_clean,fandisk_clean"
)
CORRUPTIONS = ("patch-flipped", "random-signs", "outliers-xyz", "noisy-xyz")
OUTLIER_SHARE = 0.2
NOISE_SHARE = 0.005


def corrupted(points: np.ndarray, normals: np.ndarray | None, kind: str, seed: int):
    """(points, normals or None) of the scan corrupted as ``kind`` says (module docstring)."""
    rng = np.random.default_rng(seed)
    low, high = points.min(axis=0), points.max(axis=0)
    if kind == "patch-flipped":
        cell = np.clip(((points - low) / (high - low + 1e-12) * 3).astype(int), 0, 2)
        cell_id = cell[:, 0] * 9 + cell[:, 1] * 3 + cell[:, 2]
        occupied = np.unique(cell_id)
        flipped = occupied[rng.random(len(occupied)) < 0.5]
        if len(flipped) in (0, len(occupied)):
            flipped = occupied[: max(1, len(occupied) // 2)]
        sign = np.where(np.isin(cell_id, flipped), -1.0, 1.0)
        return points, normals * sign[:, None]
    if kind == "random-signs":
        return points, normals * np.where(rng.random(len(points)) < 0.5, -1.0, 1.0)[:, None]
    if kind == "outliers-xyz":
        margin = 0.1 * (high - low)
        extra = rng.uniform(low - margin, high + margin, size=(int(OUTLIER_SHARE * len(points)), 3))
        return np.concatenate([points, extra]), None
    if kind == "noisy-xyz":
        diagonal = float(np.linalg.norm(high - low))
        return points + rng.normal(scale=NOISE_SHARE * diagonal, size=points.shape), None
    raise ValueError(f"unknown corruption {kind!r}")


def outcome(row: dict, reference: float | None, ratio: float) -> str:
    if row["rc"] != 0 or row.get("suspect"):
        return "caught"
    if reference is None or row.get("cd_l1") is None:
        return "unscored"
    if row["cd_l1"] > ratio * reference:
        return "silent"
    repaired = (row.get("attempts") or 1) > 1 or row.get("normals_dropped")
    return "repaired" if repaired else "good"


def run(args) -> list[dict]:
    from recon.io import load_scan, save_point_cloud

    bench, out = Path(args.bench), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    rows = load_rows(rows_path)
    done = {(r["scan"], r["corruption"], r.get("label", "")) for r in rows}
    extra = ["--on-suspect", args.on_suspect]
    for scan_id in args.scans.split(","):
        scan = load_scan(bench / "scans" / f"{scan_id}.ply")
        gt = bench / "gt" / f"{scan_id.rsplit('_', 1)[0]}.ply"
        for kind in args.corruptions.split(","):
            if kind == "noisy-xyz" and not scan_id.endswith("_partial"):
                continue
            if (scan_id, kind, args.label) in done:
                continue
            if kind in ("patch-flipped", "random-signs") and scan.normals is None:
                continue
            points, normals = corrupted(scan.points, scan.normals, kind, seed=args.corruption_seed)
            source = save_point_cloud(out / "inputs" / f"{scan_id}-{kind}.ply", points, normals, force=True)
            run_dir = out / "runs" / args.label / f"{scan_id}-{kind}"
            rc, wall, last = fit_once(source, run_dir, seed=0, threads=2, extra=extra)
            row = {"scan": scan_id, "corruption": kind, "label": args.label}
            row["normals"] = "yes" if normals is not None else "no"
            row |= {"rc": rc, "wall_s": round(wall, 2)}
            meta = run_dir / "meta.json"
            meta = json.loads(meta.read_text()) if meta.exists() else {}
            check = meta.get("surface_check", {})
            row["normals_dropped"] = meta.get("scan_normals", {}).get("dropped")
            row["attempts"] = len(check.get("attempts", [])) or None
            row["start_orientation"] = check.get("start_orientation")
            if rc == 0:
                row |= chamfer_l1(run_dir / "mesh.ply", gt)
                row["suspect"] = bool(check.get("suspect"))
                row["reasons"] = check.get("reasons", [])
            else:
                row |= {"cd_l1": None, "suspect": True, "error": last}
                row |= chamfer_l1(run_dir / "mesh_suspect.ply", gt, prefix="suspect_")
            rows.append(row)
            with rows_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    return rows


POISSON_CONFIGS = (("pymeshlab", 8, 0.02), ("pymeshlab", 9, 0.02), ("pymeshlab", 10, 0.02))
"""Screened Poisson configurations tried on every corrupted input (the ones poisson-best picked for the
clean scans: pymeshlab, depth 8–10, 2 % density trimming; filtered points, the file's normals or, without
them, estimated and oriented ones)."""


def poisson_on_inputs(out: Path, bench: Path, kinds: list[str]) -> dict[tuple[str, str], dict]:
    """(scan, corruption) → the best of POISSON_CONFIGS by CD-L1 (an oracle, as poisson-best), run once."""
    import subprocess

    from bench_spread import RECON

    path = out / "poisson.jsonl"
    best: dict[tuple[str, str], dict] = {}
    rows = load_rows(path)
    done = {(r["scan"], r["corruption"], r["backend"], r["depth"], r["trim"]) for r in rows}
    for source in sorted((out / "inputs").glob("*.ply")):
        scan_id, kind = next(
            (source.stem[: -len(k) - 1], k) for k in CORRUPTIONS if source.stem.endswith("-" + k)
        )
        if kind not in kinds:
            continue
        gt = bench / "gt" / f"{scan_id.rsplit('_', 1)[0]}.ply"
        for backend, depth, trim in POISSON_CONFIGS:
            if (scan_id, kind, backend, depth, trim) in done:
                continue
            run_dir = out / "poisson" / f"{scan_id}-{kind}-{backend}-d{depth}-t{trim}"
            cmd = [*RECON, "baseline", "poisson", str(source), "-o", str(run_dir), "--force"]
            cmd += ["--backend", backend, "--depth", str(depth), "--trim", str(trim)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            row = {"scan": scan_id, "corruption": kind, "backend": backend, "depth": depth, "trim": trim}
            row |= {"rc": proc.returncode} | (
                chamfer_l1(run_dir / "mesh.ply", gt) if proc.returncode == 0 else {}
            )
            rows.append(row)
            with path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    for r in rows:
        key = (r["scan"], r["corruption"])
        if r.get("cd_l1") is not None and (key not in best or r["cd_l1"] < best[key]["cd_l1"]):
            best[key] = r
    return best


def references(path: Path) -> dict[tuple[str, str], float]:
    """(scan, normals) → CD-L1 of the clean fit (seed 0, 2 threads, the latest label in the file)."""
    refs = {}
    for r in load_rows(path):
        if r["seed"] == 0 and r["threads"] == 2 and r.get("cd_l1") is not None and r["label"] == "after":
            refs[(r["scan"], r["normals"])] = r["cd_l1"]
    return refs


def table(rows: list[dict], refs: dict, ratio: float, poisson: dict | None = None) -> str:
    lines = [
        f"Outcome against the clean fit of the same scan (broken = CD-L1 > {ratio} × clean). CD-L1 ×1000 of "
        "the GT diagonal.",
        "",
        "| label | scan | corruption | normals | normals dropped | exit | attempts | start | clean CD-L1 | CD-L1 | ratio | outcome | "
        "Poisson on the same input | CD-L1 / Poisson | reasons / error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    counts: dict[str, int] = {}
    for r in sorted(rows, key=lambda r: (r["corruption"], r["scan"], r.get("label", ""))):
        ref = refs.get((r["scan"], r["normals"]))
        kind = outcome(r, ref, ratio)
        label = r.get("label", "")
        counts[(label, kind)] = counts.get((label, kind), 0) + 1
        cd = r.get("cd_l1") if r.get("cd_l1") is not None else r.get("suspect_cd_l1")
        ratio_text = f"{cd / ref:.2f}" if cd is not None and ref else "–"
        why = "; ".join(r.get("reasons") or []) or r.get("error", "") or "–"
        lines.append(
            f"| {label or '–'} | {r['scan']} | {r['corruption']} | {r['normals']} | {r.get('normals_dropped') or '–'} | "
            f"{r['rc']} | {r.get('attempts') or '–'} | "
            f"{r.get('start_orientation') or '–'} | {ref if ref is None else f'{ref:.2f}'} | "
            f"{'–' if cd is None else f'{cd:.2f}'} | {ratio_text} | {kind} | {_poisson_cells(poisson, r, cd)} | {why} |"
        )
    for label in sorted({lab for lab, _ in counts}):
        text = ", ".join(f"{kind} {n}" for (lab, kind), n in sorted(counts.items()) if lab == label)
        lines += ["", f"Counts{f' ({label})' if label else ''}: {text}"]
    return "\n".join(lines) + "\n"


def _poisson_cells(poisson: dict | None, row: dict, cd: float | None) -> str:
    best = (poisson or {}).get((row["scan"], row["corruption"]))
    if not best:
        return "– | –"
    name = f"{best['backend']} d{best['depth']} trim {best['trim']}"
    share = "–" if cd is None else f"{cd / best['cd_l1']:.2f}"
    return f"{best['cd_l1']:.2f} ({name}) | {share}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bench", default="/tmp/recon-bench")
    parser.add_argument("--out", default="bench/out/broken")
    parser.add_argument("--reference", default="bench/spread/rows.jsonl")
    parser.add_argument("--scans", default=DEFAULT_SCANS)
    parser.add_argument("--corruptions", default=",".join(CORRUPTIONS))
    parser.add_argument("--corruption-seed", type=int, default=0)
    parser.add_argument("--label", default="", help="name of this code state (before, after, ...)")
    parser.add_argument("--on-suspect", default="repair", choices=["repair", "refuse", "warn"])
    parser.add_argument("--broken-ratio", type=float, default=2.0)
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument(
        "--poisson", default="", help="comma list of corruptions to also reconstruct with POISSON_CONFIGS"
    )
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    args = parser.parse_args()
    rows = load_rows(Path(args.out) / "rows.jsonl") if args.table_only else run(args)
    kinds = [k for k in args.poisson.split(",") if k]
    poisson = poisson_on_inputs(Path(args.out), Path(args.bench), kinds) if kinds else None
    text = table(rows, references(Path(args.reference)), args.broken_ratio, poisson)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)


if __name__ == "__main__":
    main()
