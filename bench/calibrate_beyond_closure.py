"""Where does surface invented beyond the scan's closure separate lobes from correct fits? Offline, on
finished run folders: no fit is run.

For each run of ``--rows`` whose folder under ``--runs`` holds mesh.ply, config.json and meta.json, the
scan is prepared as the fit prepared it, the start's winding number is rebuilt as a resumed fit rebuilds
it (``LevelSetFitter.scan_winding``: the start's orientation and smoothing from meta.json), and
the shipped check (recon.core.surface_check.check_surface) measures the mesh with it. Reported per run:
the share of the mesh area invented (farther than 5 point spacings from the scan), the share invented
beyond the closure (winding number below ``closure_margin``; the check's ``beyond_closure`` criterion),
the same with the winding number above 1 − margin (not a criterion: listed to show why), CD-L1 and its
ratio to the best run of the same scan and normals setting in the rows.

    python bench/calibrate_beyond_closure.py --rows bench/out/full/rows.jsonl \
        --runs bench/out/full/runs/fcf8eba --label fcf8eba --out bench/out/beyond_closure.jsonl
    python bench/calibrate_beyond_closure.py --table bench/out/beyond_closure.jsonl \
        --markdown bench/surface_check/beyond_closure.md

Results append to ``--out`` and finished runs are skipped, so an interrupted pass resumes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from calibrate_coverage import _run_name, _scan_of


def measure(run: Path) -> dict:
    """The shipped check of ``run``'s mesh with the start's winding number, plus the near-1 share."""
    from recon.core.config import FitConfig
    from recon.core.fit import LevelSetFitter
    from recon.core.reconstruct import prepare_points
    from recon.core.surface_check import SurfaceCheckConfig, check_surface
    from recon.io import load_mesh, load_scan

    resolved = json.loads((run / "config.json").read_text())
    meta = json.loads((run / "meta.json").read_text())
    check = meta.get("surface_check") or {}
    orientation = check.get("start_orientation", "estimated")
    config = FitConfig.from_dict(resolved)
    cloud = load_scan(resolved["scan"])
    scan_normals = cloud.normals if orientation == "scan" else None
    work, normals, normalization = prepare_points(cloud.points, scan_normals, config)
    fitter = LevelSetFitter(work, normals, config, initialize=False, start_orientation=orientation)
    fitter.start_smoothed = bool(check.get("start_smoothed", False))
    mesh = load_mesh(run / "mesh.ply")
    vertices = normalization.to_work(np.asarray(mesh.vertices))
    faces = np.asarray(mesh.faces)
    winding = fitter.scan_winding()  # a fit has the dipoles from its start: time the check only

    def checked(winding):
        return check_surface(
            vertices, faces, work, domain_bound=config.mesh.extract_bound, seed=config.seed, winding=winding
        )

    start = time.perf_counter()
    shipped = checked(winding)
    seconds = time.perf_counter() - start
    margin = SurfaceCheckConfig().closure_margin
    # The same share with the winding number mirrored about ½: the surface invented where it is near 1.
    inside = checked(lambda q: 1.0 - winding(q)).invented_beyond_closure_share
    return {
        "invented": shipped.invented_area_share,
        "beyond_closure": shipped.invented_beyond_closure_share,
        "near_one": inside,
        "margin": margin,
        "suspect": shipped.suspect,
        "failed": shipped.failed,
        "check_seconds": seconds,
    }


def measure_runs(rows_path: str, runs: str, label: str | None, out: str) -> None:
    rows = [json.loads(x) for x in Path(rows_path).read_text().splitlines() if x.strip()]
    if label:
        rows = [r for r in rows if r.get("label") == label]
    best: dict[tuple, float] = {}
    for r in rows:
        key = (_scan_of(r), r.get("normals"))
        if r.get("cd_l1") is not None:
            best[key] = min(best.get(key, np.inf), r["cd_l1"])
    out_path = Path(out)
    done = set()
    if out_path.exists():
        done = {json.loads(x)["folder"] for x in out_path.read_text().splitlines() if x.strip()}
    with out_path.open("a") as sink:
        for r in rows:
            run = Path(runs) / _run_name(r)
            if r.get("cd_l1") is None or str(run) in done or not (run / "mesh.ply").exists():
                continue
            record = {
                "folder": str(run),
                "run": _run_name(r),
                "set": label or Path(runs).name,
                "cd_l1": r["cd_l1"],
                "cd_ratio": r["cd_l1"] / best[(_scan_of(r), r.get("normals"))],
            } | measure(run)
            sink.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)


def table(records_path: str, markdown: str, threshold: float) -> None:
    from recon.core.surface_check import CRITERIA

    records = [json.loads(x) for x in Path(records_path).read_text().splitlines() if x.strip()]
    records.sort(key=lambda r: -r["beyond_closure"])
    above = [r for r in records if r["beyond_closure"] > threshold]
    below = [r for r in records if r["beyond_closure"] <= threshold]
    seconds = np.array([r["check_seconds"] for r in records])
    lines = [
        f"{len(records)} fitted meshes, measured offline by the shipped check with the start's winding number",
        "(`python bench/calibrate_beyond_closure.py --table ...`; runs listed in the rows the table was made",
        "from). *beyond closure*: share of the mesh area farther than 5 scan point spacings from every scan",
        f"point where the scan's winding number is below {records[0]['margin'] if records else 0.1} (the check's",
        f"`invented_beyond_closure_share`; a *lobe* above {threshold}); *near 1*: the same where it is above",
        "1 − margin (not a criterion); CD-L1 ratio: to the best run of the same scan and normals setting.",
        "",
        "| set | run | beyond closure | near 1 | invented | CD-L1 | ratio to best seed | suspect criteria |",
        "|---|---|---|---|---|---|---|---|",
    ]
    shown = records[:30]
    for r in shown:
        others = ", ".join(f for f in r["failed"] if f in CRITERIA) or "–"
        lines.append(
            f"| {r['set']} | {r['run']} | {r['beyond_closure']:.4f} | {r['near_one']:.4f} | "
            f"{r['invented']:.3f} | {r['cd_l1']:.2f} | {r['cd_ratio']:.2f} | {others} |"
        )
    lines += [
        "",
        f"(the {len(shown)} with the most surface beyond the closure; all {len(records)} in the jsonl)",
        "",
        f"- above {threshold}: "
        + (", ".join(f"{r['run']} ({r['set']}, ratio {r['cd_ratio']:.2f})" for r in above) or "none"),
        f"- at or below: {len(below)} runs, largest share "
        + (f"{max(r['beyond_closure'] for r in below):.4f}" if below else "–")
        + "; their CD-L1 ratio to the best seed at most "
        + (f"{max(r['cd_ratio'] for r in below):.2f}" if below else "–"),
        f"- the check's wall time with the winding number: median {np.median(seconds):.2f} s, "
        f"max {seconds.max():.2f} s (one thread, beside fits and tests on 2 cores: an upper bound)",
    ]
    Path(markdown).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", help="rows.jsonl naming the runs and their CD-L1")
    parser.add_argument("--runs", help="folder of the rows' run folders")
    parser.add_argument("--label", help="only rows of this label")
    parser.add_argument("--out", help="jsonl the measurements append to")
    parser.add_argument("--table", help="jsonl to summarize instead of measuring")
    parser.add_argument("--markdown", help="write the summary here (with --table)")
    args = parser.parse_args()
    from recon.core.surface_check import SurfaceCheckConfig

    if args.table:
        table(args.table, args.markdown, SurfaceCheckConfig().max_beyond_closure_share)
    else:
        measure_runs(args.rows, args.runs, args.label, args.out)


if __name__ == "__main__":
    main()
