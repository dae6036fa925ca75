"""The no-normals family: open / closed GT × one-sided / all-around scan × clean / noisy, x y z only.

Every input is a benchmark scan with its normals stripped (``noisy``: the one-sided scans also get Gaussian
noise of 0.5 % of the diagonal, as ``bench_broken_inputs.py``'s ``noisy-xyz``; the all-around noisy scans
are the benchmark's own ``*_noisy``). Each is fitted with the default preset for every seed, twice:

- ``repair`` (the default): a mesh that fails its check against the scan is refitted from the other
  starts, and refused (exit 3) when none passes;
- ``warn``: the first start's mesh is returned, marked suspect when the check fails: what a fit without
  the repair path returns. Only run for the inputs where some ``repair`` fit needed more than one start
  (elsewhere both give the same mesh), unless ``--warn-all``.

Per cell: CD-L1 (×1000 of the GT diagonal) and F@1 % of mesh.ply (mean and worst seed), fits whose first
start was caught, repaired, refused, fits whose first mesh had a lobe beyond the closure and how many of
those a reseed freed of it, and the wall time of the two checks (normals test + surface check) from
meta.json.

    python bench/bench_no_normals_family.py --bench /tmp/recon-bench --out bench/out/family \
        --seeds 0,1,2 --markdown bench/surface_check/no_normals_family.md

Rows are appended to ``OUT/rows.jsonl`` as they come; an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_broken_inputs import corrupted  # noqa: E402
from bench_spread import chamfer_l1, fit_once, load_rows  # noqa: E402

FAMILY = (
    # (ground truth, scan, noise, benchmark scan id, added noise)
    ("closed", "all-around", "clean", "man_clean", False),
    ("closed", "all-around", "clean", "armadillo_clean", False),
    ("closed", "all-around", "noisy", "cow_noisy", False),
    ("closed", "all-around", "noisy", "man_noisy", False),
    ("closed", "one-sided", "clean", "man_partial", False),
    ("closed", "one-sided", "clean", "fandisk_partial", False),
    ("closed", "one-sided", "noisy", "man_partial", True),
    ("closed", "one-sided", "noisy", "fandisk_partial", True),
    ("open", "all-around", "clean", "head_clean", False),
    ("open", "all-around", "noisy", "head_noisy", False),
    ("open", "one-sided", "clean", "head_partial", False),
    ("open", "one-sided", "noisy", "head_partial", True),
)


def family_input(bench: Path, out: Path, scan_id: str, noisy: bool) -> Path:
    """The scan as x y z only (plus 0.5 % noise when ``noisy``), written once under ``out/inputs``."""
    from recon.io import load_scan, save_point_cloud

    path = out / "inputs" / f"{scan_id}{'-noisy' if noisy else ''}.ply"
    if not path.exists():
        points = load_scan(bench / "scans" / f"{scan_id}.ply").points
        if noisy:
            points, _ = corrupted(points, None, "noisy-xyz", seed=0)
        save_point_cloud(path, points, None)
    return path


def check_seconds(meta: dict) -> float | None:
    """Seconds of the kept mesh's surface check plus the scan-normals test (none without normals)."""
    check = (meta.get("surface_check") or {}).get("seconds")
    if check is None:
        return None
    return round(check + ((meta.get("scan_normals") or {}).get("seconds") or 0.0), 3)


def fit_row(args, source: Path, gt: Path, cell: tuple, seed: int, mode: str) -> dict:
    gt_kind, sides, noise, scan_id, added = cell
    name = f"{scan_id}{'-noisy' if added else ''}"
    run_dir = Path(args.out) / "runs" / mode / f"{name}-s{seed}"
    rc, wall, last = fit_once(source, run_dir, seed, 2, ["--on-suspect", mode])
    meta_path = run_dir / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    check = meta.get("surface_check") or {}
    attempts = check.get("attempts") or []
    row = {
        "input": name,
        "gt": gt_kind,
        "sides": sides,
        "noise": noise,
        "seed": seed,
        "mode": mode,
        "rc": rc,
        "wall_s": round(wall, 1),
        "attempts": len(attempts) or 1,
        "first_suspect": bool(attempts[0]["suspect"]) if attempts else bool(check.get("suspect")),
        "first_lobe": bool(attempts[0].get("has_lobe")) if attempts else False,
        "lobe_kept": bool(check.get("has_lobe")),
        "suspect": bool(check.get("suspect")) if rc == 0 else True,
        "check_seconds": check_seconds(meta),
    }
    if rc == 0:
        row |= chamfer_l1(run_dir / "mesh.ply", gt)
    else:
        row["error"] = last
    return row


def run(args) -> list[dict]:
    bench, out = Path(args.bench), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    rows = load_rows(rows_path)
    done = {(r["input"], r["seed"], r["mode"]) for r in rows}
    seeds = [int(s) for s in args.seeds.split(",")]
    for mode in ("repair", "warn"):
        for cell in FAMILY:
            scan_id, added = cell[3], cell[4]
            name = f"{scan_id}{'-noisy' if added else ''}"
            if args.inputs and name not in args.inputs.split(","):
                continue
            if mode == "warn" and not args.warn_all:
                repaired = [
                    r for r in rows if r["input"] == name and r["mode"] == "repair" and r["attempts"] > 1
                ]
                if not repaired and not any(r["input"] == name and r["rc"] != 0 for r in rows):
                    continue
            source = family_input(bench, out, scan_id, added)
            gt = bench / "gt" / f"{scan_id.rsplit('_', 1)[0]}.ply"
            for seed in seeds:
                if (name, seed, mode) in done:
                    continue
                row = fit_row(args, source, gt, cell, seed, mode)
                rows.append(row)
                with rows_path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    return rows


def _mean_worst(values: list[float], worst=max) -> str:
    return f"{statistics.mean(values):.2f} / {worst(values):.2f}" if values else "–"


def table(rows: list[dict]) -> str:
    lines = [
        "| GT | scan | noise | input | seeds | CD-L1 mean / worst | F@1 % mean / worst | first start caught "
        "| repaired | refused | lobe on first mesh / freed | warn (no repair): CD-L1 mean / worst "
        "| check s (median) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    caught = repaired = refused = total = 0
    seconds_all = []
    for gt_kind, sides, noise, scan_id, added in FAMILY:
        name = f"{scan_id}{'-noisy' if added else ''}"
        fits = [r for r in rows if r["input"] == name and r["mode"] == "repair"]
        if not fits:
            continue
        warned = [r for r in rows if r["input"] == name and r["mode"] == "warn"]
        ok = [r for r in fits if r["rc"] == 0]
        n_caught = sum(r["first_suspect"] or r["rc"] != 0 for r in fits)
        n_repaired = sum(r["rc"] == 0 and r["first_suspect"] and not r["suspect"] for r in fits)
        lobes = [r for r in fits if r.get("first_lobe")]
        lobe_text = f"{len(lobes)} / {sum(not r.get('lobe_kept') for r in lobes)}"
        n_refused = sum(r["rc"] != 0 for r in fits)
        seconds = [r["check_seconds"] for r in fits if r.get("check_seconds") is not None]
        seconds_all += seconds
        caught, repaired, refused, total = (
            caught + n_caught,
            repaired + n_repaired,
            refused + n_refused,
            total + len(fits),
        )
        warn_cd = [r["cd_l1"] for r in warned if r.get("cd_l1") is not None]
        lines.append(
            f"| {gt_kind} | {sides} | {noise} | {name} | {len(fits)} "
            f"| {_mean_worst([r['cd_l1'] for r in ok])} | {_mean_worst([r['fscore'] for r in ok], min)} "
            f"| {n_caught} | {n_repaired} | {n_refused} | {lobe_text} "
            f"| {_mean_worst(warn_cd) if warned else 'same mesh'} "
            f"| {statistics.median(seconds):.2f} |"
            if seconds
            else f"| {gt_kind} | {sides} | {noise} | {name} | {len(fits)} | – | – | {n_caught} | {n_repaired} "
            f"| {n_refused} | {lobe_text} | – | – |"
        )
    if total:
        lines.append(
            f"\n{total} fits: first start caught {caught}, repaired {repaired}, refused {refused}; checks "
            f"median {statistics.median(seconds_all):.2f} s, max {max(seconds_all):.2f} s per fit."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bench", default="/tmp/recon-bench")
    parser.add_argument("--out", default="bench/out/family")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--inputs", default=None, help="comma-separated input names (default: the family)")
    parser.add_argument("--warn-all", action="store_true", help="also fit every input without the repair")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    args = parser.parse_args()
    rows = load_rows(Path(args.out) / "rows.jsonl") if args.table_only else run(args)
    text = table(rows)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)


if __name__ == "__main__":
    main()
