"""The level set (3 seeds, from bench_spread.py rows) against poisson-best (from a recon batch).

    recon batch SUBSET_MANIFEST -o bench/out/poisson-best --methods poisson-best
    python bench/compare_poisson_best.py --spread bench/out/spread --poisson bench/out/poisson-best \
        --label after --markdown bench/poisson_best/results.md

``--label-no`` takes the x y z only rows from another run (a lever that only changes fits without normals).

Per scan and normals: poisson-best's CD-L1 / F@1 % / NC (its chosen configuration) and seconds (shared
preparation + the chosen solve, as its run folder records them), and the level set's mean and worst seed of
the better of mesh.ply and mesh_trimmed.ply per draw (CD-L1), with F and NC of that mesh, the worst seed of
each mesh on its own, and the median `recon fit` process wall; ratio = level-set worst / poisson-best.
CD-L1 ×1000 of the GT diagonal. A summary under the table counts the rows at or below poisson-best and
gives the median and maximum fit wall over every draw.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def level_set_draws(rows: list[dict], scan: str, normals: str, label: str) -> list[dict]:
    """Per draw, the better of the watertight and the trimmed mesh by CD-L1, with its F and NC."""
    out = []
    for r in _draw_rows(rows, scan, normals, label):
        trimmed = r.get("trimmed_cd_l1")
        if trimmed is not None and trimmed < r["cd_l1"]:
            out.append({"cd": trimmed, "f": r["trimmed_fscore"], "nc": r["trimmed_nc"], "mesh": "trimmed"})
        else:
            out.append({"cd": r["cd_l1"], "f": r["fscore"], "nc": r["nc"], "mesh": "watertight"})
    return out


def _draw_rows(rows: list[dict], scan: str, normals: str, label: str) -> list[dict]:
    return [
        r
        for r in rows
        if (r["scan"], r["normals"], r["label"]) == (scan, normals, label) and r.get("cd_l1") is not None
    ]


def _seconds(value) -> str:
    return "–" if value is None else f"{float(value):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spread", default="bench/out/spread")
    parser.add_argument("--poisson", default="bench/out/poisson-best")
    parser.add_argument("--label", default="after")
    parser.add_argument(
        "--label-no", help="label of the x y z only rows when they are another run's (default --label)"
    )
    parser.add_argument("--markdown")
    args = parser.parse_args()
    rows = [json.loads(x) for x in (Path(args.spread) / "rows.jsonl").read_text().splitlines() if x.strip()]
    lines = [
        "| scan | normals | poisson-best config | PB CD-L1 | PB F@1% | PB NC | PB s | LS mean CD-L1 | LS worst CD-L1 |"
        " LS worst F@1% | LS worst NC | worst / PB | meshes | LS worst watertight / trimmed | LS wall median s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ratios, walls = [], []
    for run in sorted((Path(args.poisson) / "runs").glob("*/poisson-best")):
        if not (run / "eval.json").exists():
            continue
        scan_id = run.parent.name
        scan, normals = (
            scan_id.removesuffix("-nonormals"),
            "no" if scan_id.endswith("-nonormals") else "yes",
        )
        evaluation = json.loads((run / "eval.json").read_text())["metrics"]
        chosen = json.loads((run / "config.json").read_text()).get("poisson-best", {})
        label = args.label_no if normals == "no" and args.label_no else args.label
        draws = level_set_draws(rows, scan, normals, label)
        if not draws:
            continue
        worst = max(draws, key=lambda d: d["cd"])
        pb = evaluation["x1000_diag"]["chamfer_l1"]
        pb_seconds = json.loads((run / "meta.json").read_text()).get("seconds")
        config = f"{chosen.get('backend')} d{chosen.get('depth')} trim {chosen.get('density_trim_quantile')}"
        own = _draw_rows(rows, scan, normals, label)
        watertight = max(r["cd_l1"] for r in own)
        trimmed = max((r.get("trimmed_cd_l1") or float("nan")) for r in own)
        wall = statistics.median(r["wall_s"] for r in own)
        ratios.append(worst["cd"] / pb)
        walls += [r["wall_s"] for r in own]
        lines.append(
            f"| {scan} | {normals} | {config} | {pb:.2f} | {evaluation['fscore']:.3f} | "
            f"{evaluation['normal_consistency']:.3f} | {_seconds(pb_seconds)} | "
            f"{sum(d['cd'] for d in draws) / len(draws):.2f} | "
            f"{worst['cd']:.2f} | {min(d['f'] for d in draws):.3f} | {min(d['nc'] for d in draws):.3f} | "
            f"{worst['cd'] / pb:.2f} | {', '.join(sorted({d['mesh'] for d in draws}))} | "
            f"{watertight:.2f} / {trimmed:.2f} | {wall:.1f} |"
        )
    if ratios:
        lines.append("")
        lines.append(
            f"Worst seed at or below poisson-best on {sum(r <= 1.0 for r in ratios)} of {len(ratios)} "
            f"(scan, normals) rows; geometric mean of worst / PB "
            f"{statistics.geometric_mean(ratios):.2f}; fit wall over {len(walls)} draws: median "
            f"{statistics.median(walls):.1f} s, max {max(walls):.1f} s."
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)


if __name__ == "__main__":
    main()
