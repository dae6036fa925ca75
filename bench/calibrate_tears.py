"""How deep must an uncovered patch of the scan be before it is a tear (the surface torn away from a part of the
scan) rather than noise? Offline, on finished run folders: no fit is run.

For each run folder the scan is prepared as the fit prepared it (isolated points dropped, recon's subset) and
20,000 of its points (seed 0) are measured against the run's mesh.ply. For each depth t in DEPTHS the share of
those points farther than t × the diagonal from the mesh whose 16 nearest measured neighbours are at least
90 % that far too is recorded (the check's uncovered-patch rule, recon.core.surface_check, at depth t).
Each fit's CD-L1 is compared with the best fit of the same scan in the same set: within 1.15× it is *good*,
beyond 1.2× *worse*.

    python bench/calibrate_tears.py --cache bench/out/tears.jsonl --markdown bench/surface_check/tears.md \
        --set "full bench=bench/out/full/rows.jsonl" --set "no-normals family=bench/out/family-a43/rows.jsonl" \
        --set "open set=bench/out/open/rows.jsonl"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_spread import run_dir_of  # noqa: E402
from calibrate_coverage import prepared_distances  # noqa: E402

DEPTHS = (0.01, 0.015, 0.02, 0.03)
GOOD, WORSE = 1.15, 1.2


def measure(run: Path) -> dict:
    from recon.core.surface_check import SurfaceCheckConfig, uncovered_patch_share

    _, subset, distance, _ = prepared_distances(run)
    rule = SurfaceCheckConfig()
    return {
        f"p{depth}": uncovered_patch_share(
            subset, distance > depth, rule.patch_neighbors, rule.patch_far_share
        )
        for depth in DEPTHS
    }


def fits_of(name: str, rows_path: Path) -> list[dict]:
    """(set, group, cd_l1, run folder, label) of every measured fit in a rows file (copies skipped)."""
    out = []
    for line in rows_path.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if row.get("cd_l1") is None:
            continue
        if "measured_as" in row:  # a draw measured under another label: its folder, or a copy to skip
            if not (rows_path.parent / "runs" / row["measured_as"]).is_dir():
                continue
            row = row | {"label": row["measured_as"]}
        if "input" in row:  # the no-normals family: runs/<mode>/<input>-s<seed>
            group = f"{row['input']} ({row['sides']}, {row['noise']})"
            run = rows_path.parent / "runs" / row["mode"] / f"{row['input']}-s{row['seed']}"
        else:
            group = f"{row['scan']} ({'normals' if row['normals'] == 'yes' else 'x y z'})"
            run = run_dir_of(rows_path.parent, row)
        draw = f"s{row['seed']} t{row.get('threads', '')} {row.get('arith', '')}".strip()
        out.append({"set": name, "group": group, "cd_l1": row["cd_l1"], "run": run, "draw": draw})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--set", action="append", required=True, help="NAME=ROWS.jsonl (runs beside it)")
    parser.add_argument("--cache", type=Path, required=True, help="measurements by run folder (resumable)")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument(
        "--only-cached", action="store_true", help="tabulate what is measured, measure nothing"
    )
    args = parser.parse_args()
    cache = {}
    if args.cache.exists():
        cache = {r["run"]: r for r in map(json.loads, args.cache.read_text().splitlines())}
    fits = [f for spec in args.set for f in fits_of(*spec.split("=", 1)[0:1], Path(spec.split("=", 1)[1]))]
    best: dict[tuple[str, str], float] = {}
    for f in fits:
        best[f["set"], f["group"]] = min(best.get((f["set"], f["group"]), np.inf), f["cd_l1"])
    with args.cache.open("a") as out:
        for f in fits:
            key = f["key"] = str(f["run"])
            if key in cache or args.only_cached or not (f["run"] / "mesh.ply").exists():
                continue
            cache[key] = {"run": key} | measure(f["run"])
            out.write(json.dumps(cache[key]) + "\n")
            out.flush()
    for f in fits:
        f["key"] = str(f["run"])
    measured = [
        f | cache[f["key"]] | {"ratio": f["cd_l1"] / best[f["set"], f["group"]]}
        for f in fits
        if f["key"] in cache
    ]
    good = [f for f in measured if f["ratio"] <= GOOD]
    worse = [f for f in measured if f["ratio"] > WORSE]
    lines = [
        f"{len(measured)} fits measured: {len(good)} within {GOOD}× of their scan's best in the same set, "
        f"{len(worse)} beyond {WORSE}×.",
        "",
        "| depth (× diagonal) | good fits: max | good: 99th percentile | worse fits above the good max |",
        "|---|---|---|---|",
    ]
    for depth in DEPTHS:
        values = sorted(f[f"p{depth}"] for f in good)
        top = values[-1]
        above = sum(f[f"p{depth}"] > top for f in worse)
        lines.append(
            f"| {depth} | {top:.4f} | {values[int(0.99 * (len(values) - 1))]:.4f} | {above} of {len(worse)} |"
        )
    lines += ["", "Fits with the most of their scan in patches beyond 3 % of the diagonal:", "",
              "| set | scan | draw | CD-L1 | × best | " + " | ".join(f"beyond {d}" for d in DEPTHS) + " |",
              "|---|---|---|---|---|" + "---|" * len(DEPTHS)]  # fmt: skip
    for f in sorted(measured, key=lambda f: -f["p0.03"])[:12]:
        lines.append(
            f"| {f['set']} | {f['group']} | {f['draw']} | {f['cd_l1']:.2f} | {f['ratio']:.2f} | "
            + " | ".join(f"{f[f'p{d}']:.4f}" for d in DEPTHS)
            + " |"
        )
    lines += ["", f"Fits beyond {WORSE}× of their scan's best (what they lose is mostly not a tear):", "",
              "| set | scan | draw | CD-L1 | × best | beyond 0.03 |", "|---|---|---|---|---|---|"]  # fmt: skip
    for f in sorted(worse, key=lambda f: -f["ratio"]):
        lines.append(
            f"| {f['set']} | {f['group']} | {f['draw']} | {f['cd_l1']:.2f} | {f['ratio']:.2f} | {f['p0.03']:.4f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
