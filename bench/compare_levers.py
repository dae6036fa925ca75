"""Levers side by side: per scan, mean and worst of the seeds' CD-L1 for each (rows file, label, normals).

Each column is ``NAME=ROWS:LABEL:NORMALS`` (bench_spread rows, the run label, 'yes' or 'no'); a draw scores
the better of mesh.ply and mesh_trimmed.ply, as the benchmark does; a refused fit (non-zero exit) is
counted and shown, never averaged. The cell is "mean / worst" over the seeds present (or the draws
``--seeds`` / ``--threads`` / ``--arith`` pick, so that every column compares the same draws), ×1000
diagonal.

    python bench/compare_levers.py --scans airplane_clean,camel_noisy \\
        --column "with normals=bench/out/full/rows.jsonl:eb62f49:yes" \\
        --column "unsigned=bench/out/lever-estn/rows.jsonl:estn03u:no" --markdown out.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from compare_poisson_best import level_set_draws


def cell(rows: list[dict], scan: str, label: str, normals: str) -> str:
    """'mean / worst' of the draws' better mesh, with the refused fits counted; '–' without draws."""
    scores = [d["cd"] for d in level_set_draws(rows, scan, normals, label)]
    refused = sum(
        1
        for r in rows
        if (r["scan"], r["normals"], r["label"]) == (scan, normals, label) and r.get("rc", 0) != 0
    )
    if not scores and not refused:
        return "–"
    text = f"{sum(scores) / len(scores):.2f} / {max(scores):.2f}" if scores else "none"
    return text + (f" ({refused} refused)" if refused else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", required=True)
    parser.add_argument("--column", action="append", required=True, help="NAME=ROWS:LABEL:NORMALS")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--seeds", help="only these seeds, e.g. 0,1,2 (default: every draw)")
    parser.add_argument("--threads", type=int, help="only draws with this thread count (default: every draw)")
    parser.add_argument(
        "--arith",
        help="only draws with this arithmetic (native, avx2; bench_spread.py --arith; default: every draw)",
    )
    args = parser.parse_args()
    seeds = None if args.seeds is None else {int(s) for s in args.seeds.split(",")}
    columns = []
    cache: dict[str, list[dict]] = {}
    for spec in args.column:
        name, rest = spec.split("=", 1)
        path, label, normals = rest.rsplit(":", 2)
        if path not in cache:
            rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
            cache[path] = [
                r
                for r in rows
                if (seeds is None or r["seed"] in seeds)
                and (args.threads is None or r["threads"] == args.threads)
                and (args.arith is None or r.get("arith", "native") == args.arith)
            ]
        columns.append((name, cache[path], label, normals))
    lines = [
        "| scan | " + " | ".join(name for name, *_ in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for scan in args.scans.split(","):
        cells = [cell(rows, scan, label, normals) for _, rows, label, normals in columns]
        lines.append(f"| {scan} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if args.markdown:
        args.markdown.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
