"""Levers side by side: per scan, mean and worst of the seeds' CD-L1 for each (rows file, label, normals).

Each column is ``NAME=ROWS:LABEL:NORMALS`` (bench_spread rows, the run label, 'yes' or 'no'); a draw scores
the better of mesh.ply and mesh_trimmed.ply, as the benchmark does; a refused fit (non-zero exit) is
counted and shown, never averaged. The cell is "mean / worst" over the seeds present, ×1000 diagonal.

    python bench/compare_levers.py --scans airplane_clean,camel_noisy \\
        --column "with normals=bench/out/full/rows.jsonl:eb62f49:yes" \\
        --column "unsigned=bench/out/lever-estn/rows.jsonl:estn03u:no" --markdown out.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def draws(rows: list[dict], scan: str, label: str, normals: str) -> list[dict]:
    picked = [r for r in rows if r["scan"] == scan and r["label"] == label and r["normals"] == normals]
    by_seed = {(r["seed"], r.get("threads")): r for r in picked}  # a rerun row replaces the earlier one
    return list(by_seed.values())


def best_of_meshes(row: dict) -> float | None:
    values = [row.get(key) for key in ("cd_l1", "trimmed_cd_l1")]
    values = [v for v in values if v is not None]
    return min(values) if row.get("rc", 0) == 0 and values else None


def cell(found: list[dict]) -> tuple[str, float | None]:
    if not found:
        return "–", None
    scores = [best_of_meshes(r) for r in found]
    ok = [s for s in scores if s is not None]
    refused = len(scores) - len(ok)
    text = f"{sum(ok) / len(ok):.2f} / {max(ok):.2f}" if ok else "none"
    if refused:
        text += f" ({refused} refused)"
    return text, (max(ok) if ok and not refused else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", required=True)
    parser.add_argument("--column", action="append", required=True, help="NAME=ROWS:LABEL:NORMALS")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    columns = []
    cache: dict[str, list[dict]] = {}
    for spec in args.column:
        name, rest = spec.split("=", 1)
        path, label, normals = rest.rsplit(":", 2)
        if path not in cache:
            cache[path] = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
        columns.append((name, cache[path], label, normals))
    lines = [
        "| scan | " + " | ".join(name for name, *_ in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for scan in args.scans.split(","):
        cells = [cell(draws(rows, scan, label, normals))[0] for _, rows, label, normals in columns]
        lines.append(f"| {scan} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if args.markdown:
        args.markdown.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
