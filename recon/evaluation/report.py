"""Records, summaries and tables of a benchmark folder, from the files ``recon batch`` left on disk.

:func:`write_report` reads every ``BENCH_DIR/runs/<scan>/<method>/`` folder and writes into BENCH_DIR::

    results.csv        long: scan, variant, method, metric, value, suspect (one row per number)
    results_wide.csv   one row per (variant, method): n, failed, suspect, and mean/std of every metric
    summary.json       the same aggregates as nested JSON, with the metric definitions and the failures
    table.md           the paper-shaped table per variant: method | Chamfer L1 | Chamfer L2 | F@1% |
                       normal consistency | fit time | meshes ("n, suspect k[, lobe j][, tear t]"), mean ± std
    report.html        one self-contained page: tables, plots and thumbnails embedded as PNG, and an
                       interactive three.js view of each mesh (:mod:`recon.evaluation.report_html`)

Tables aggregate per-scan values as mean ± sample standard deviation (n − 1) over the scans a method
finished; Chamfer values are ×1000 of the ground-truth bounding-box diagonal.

A mesh is *suspect* when the fit's surface check flagged it (``meta.json`` → ``surface_check.suspect``;
runs without a check, such as baselines and older fits, count as not suspect). Means include suspect
meshes; every table says how many there are beside them, and the per-scan tables mark them.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon.atomic import read_json_object_or_empty, write_json, write_text
from recon.errors import InputError
from recon.evaluation.claims import task_status
from recon.evaluation.plan import METHODS

ALL = "all"
"""Name of the aggregate over every variant."""
TABLE_COLUMNS = (
    ("chamfer_l1_x1000", "Chamfer L1", 2),
    ("chamfer_l2_x1000", "Chamfer L2", 2),
    ("fscore", "F@1%", 3),
    ("normal_consistency", "normal consistency", 3),
    ("fit_seconds", "fit time (s)", 1),
)
"""(metric, column heading, decimals) of the summary tables."""
WIDE_METRICS = (
    "chamfer_l1_x1000",
    "chamfer_l2_x1000",
    "accuracy_x1000",
    "completeness_x1000",
    "hausdorff_x1000",
    "fscore",
    "normal_consistency",
    "scan_to_pred_x1000",
    "fit_seconds",
)
_NOT_METRICS = {"n_samples", "n_pred", "n_gt", "n_scan", "seed"}
_METHOD_ORDER = (
    "atlasnet-sphere",
    "atlasnet-patch",
    "atlasnet-25",
    "levelset",
    "levelset-trimmed",
    "poisson",
    "poisson-best",
)


@dataclass
class RunRecord:
    """One task folder as found on disk."""

    scan_id: str
    method: str
    variant: str
    status: str
    """'finished', 'failed', 'pending' or 'no-gt' (finished without ground truth)."""
    run_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    """Flat numbers: raw metrics, ``<name>_x1000`` scaled ones, fit_seconds and eval_seconds."""
    error: str = ""
    definitions: dict | None = None
    suspect: bool | None = None
    """The fit's surface check flagged the mesh; None when the run has no check (baselines, older fits)."""
    suspect_reasons: list[str] = field(default_factory=list)
    lobe: bool = False
    """The fit kept a mesh with a lobe beyond the scan's closure (``surface_check.has_lobe``: its reseeds
    did not free it of one); counted beside suspect meshes, not as one."""
    tear: bool = False
    """The fit kept a mesh torn away from part of its scan (``surface_check.has_tear``; no reseed freed it
    of the tear); counted like a lobe."""


@dataclass
class Report:
    """What :func:`write_report` wrote."""

    paths: dict[str, Path]
    markdown: str
    records: list[RunRecord]
    notes: list[str]
    """Parts that were skipped (thumbnails, 3D views) and why."""


# ---------------------------------------------------------------------------------------------- reading
def collect_runs(bench_dir: str | os.PathLike) -> list[RunRecord]:
    """Every ``runs/<scan>/<method>`` folder of ``bench_dir``, sorted by variant, scan and method.

    Raises
    ------
    InputError
        ``bench_dir`` has no ``runs`` folder (it is not a benchmark folder).
    """
    runs = Path(bench_dir) / "runs"
    if not runs.is_dir():
        raise InputError(f"{bench_dir} has no runs/ folder: run `recon batch DATASET -o {bench_dir}` first")
    records = [
        _record(run_dir)
        for scan_dir in sorted(p for p in runs.iterdir() if p.is_dir())
        for run_dir in sorted(p for p in scan_dir.iterdir() if p.is_dir())
    ]
    return sorted(records, key=lambda r: (r.variant, r.scan_id, method_rank(r.method)))


def _record(run_dir: Path) -> RunRecord:
    scan_id, method = run_dir.parent.name, run_dir.name
    task = read_json_object_or_empty(run_dir / "task.json")
    variant = str(task.get("variant") or "")
    status = task_status(run_dir)
    if status == "failed":
        error = (run_dir / "ERROR").read_text(errors="replace").strip()
        return RunRecord(scan_id, method, variant, "failed", run_dir, error=error)
    if status == "pending":
        return RunRecord(scan_id, method, variant, "pending", run_dir)
    evaluation = read_json_object_or_empty(run_dir / "eval.json")
    if not evaluation:
        return RunRecord(scan_id, method, variant, "failed", run_dir, error="eval.json is unreadable")
    variant = str(evaluation.get("variant") or variant)
    suspect, reasons, lobe, tear = surface_check(run_dir)
    if evaluation.get("metrics") is None:
        return RunRecord(
            scan_id,
            method,
            variant,
            "no-gt",
            run_dir,
            error=evaluation.get("note", ""),
            suspect=suspect,
            suspect_reasons=reasons,
            lobe=lobe,
            tear=tear,
        )
    return RunRecord(
        scan_id,
        method,
        variant,
        "finished",
        run_dir,
        metrics=flat_metrics(evaluation),
        definitions=evaluation.get("definitions"),
        suspect=suspect,
        suspect_reasons=reasons,
        lobe=lobe,
        tear=tear,
    )


def surface_check(run_dir: Path) -> tuple[bool | None, list[str], bool, bool]:
    """Whether the fit's surface check (``meta.json`` → ``surface_check``) flagged the mesh, why, and
    whether the fit kept it with a lobe, and with a tear.

    Suspect is None when the run has no such check (baselines, fits from before the check).
    """
    check = read_json_object_or_empty(run_dir / "meta.json").get("surface_check")
    if not isinstance(check, dict) or not isinstance(check.get("suspect"), bool):
        return None, [], False, False
    reasons = [str(reason) for reason in check.get("reasons") or []]
    return check["suspect"], reasons, check.get("has_lobe") is True, check.get("has_tear") is True


def flat_metrics(evaluation: dict) -> dict[str, float]:
    """The numbers of an eval.json: raw metrics, ``<name>_x1000`` (×1000 of the GT diagonal), seconds."""
    metrics = evaluation["metrics"]
    flat = {
        key: float(value) for key, value in metrics.items() if _is_number(value) and key not in _NOT_METRICS
    }
    flat |= {f"{key}_x1000": float(v) for key, v in metrics.get("x1000_diag", {}).items() if _is_number(v)}
    flat |= {f"{key}_seconds": float(v) for key, v in evaluation.get("seconds", {}).items() if _is_number(v)}
    return flat


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def method_rank(method: str) -> tuple[int, str]:
    """Sort key of a method: the paper's order, then unknown methods by name."""
    return (_METHOD_ORDER.index(method) if method in _METHOD_ORDER else len(_METHOD_ORDER), method)


# ---------------------------------------------------------------------------------------------- tables
LONG_COLUMNS = ["scan", "variant", "method", "metric", "value", "suspect"]


def long_rows(records: list[RunRecord]) -> list[dict]:
    """One row per number: scan, variant, method, metric, value, suspect (true, false or empty: no check)."""
    return [
        {
            "scan": r.scan_id,
            "variant": r.variant,
            "method": r.method,
            "metric": name,
            "value": value,
            "suspect": "" if r.suspect is None else str(r.suspect).lower(),
        }
        for r in records
        if r.status == "finished"
        for name, value in sorted(r.metrics.items())
    ]


def summarize(records: list[RunRecord]) -> dict[str, dict[str, dict]]:
    """``{variant: {method: {"n", "failed", "pending", "suspect", "surface_checked", "metrics": {metric:
    {mean, std, n}}}}}``, plus variant 'all'. ``suspect`` counts the finished meshes the fit's surface check
    flagged, ``surface_checked`` those that have a check at all.

    ``std`` is the sample standard deviation (n − 1); None for a single scan.
    """
    variants = sorted({r.variant for r in records})
    groups = {ALL: records} | (
        {v or "(none)": [r for r in records if r.variant == v] for v in variants} if len(variants) > 1 else {}
    )
    summary = {}
    for variant, members in groups.items():
        methods = sorted({r.method for r in members}, key=method_rank)
        summary[variant] = {m: _method_summary([r for r in members if r.method == m]) for m in methods}
    return summary


def _method_summary(records: list[RunRecord]) -> dict:
    finished = [r for r in records if r.status == "finished"]
    names = sorted({name for r in finished for name in r.metrics})
    metrics = {}
    for name in names:
        values = np.array([r.metrics[name] for r in finished if name in r.metrics])
        std = float(values.std(ddof=1)) if len(values) > 1 else None
        metrics[name] = {"mean": float(values.mean()), "std": std, "n": len(values)}
    return {
        "name": METHODS.get(records[0].method, records[0].method),
        "n": len(finished),
        "failed": sum(r.status == "failed" for r in records),
        "pending": sum(r.status == "pending" for r in records),
        "suspect": sum(r.suspect is True for r in finished),
        "surface_checked": sum(r.suspect is not None for r in finished),
        "lobes": sum(r.lobe for r in finished),
        "tears": sum(r.tear for r in finished),
        "metrics": metrics,
    }


def meshes_text(method_summary: dict) -> str:
    """'3, suspect 1': the meshes a mean is over and how many of them are suspect ('–': none checked),
    then ', lobe k' when k of them were kept with a lobe beyond the closure and ', tear t' with a tear."""
    suspect = method_summary["suspect"] if method_summary["surface_checked"] else "–"
    lobes, tears = method_summary.get("lobes", 0), method_summary.get("tears", 0)
    return (
        f"{method_summary['n']}, suspect {suspect}"
        + (f", lobe {lobes}" if lobes else "")
        + (f", tear {tears}" if tears else "")
    )


def mean_std_text(stats: dict | None, digits: int = 2) -> str:
    """'12.34 ± 0.56', '12.34 (n=1)' for one scan, '–' for none."""
    if not stats:
        return "–"
    if stats["std"] is None:
        return f"{stats['mean']:.{digits}f} (n=1)"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def wide_rows(summary: dict) -> list[dict]:
    """One row per (variant, method): n, failed, pending, suspect, surface_checked and mean/std of
    :data:`WIDE_METRICS`."""
    rows = []
    for variant, methods in summary.items():
        for method, s in methods.items():
            row = {
                "variant": variant,
                "method": method,
                "name": s["name"],
                "n": s["n"],
                "failed": s["failed"],
            }
            row |= {"pending": s["pending"], "suspect": s["suspect"], "surface_checked": s["surface_checked"]}
            row["lobes"], row["tears"] = s["lobes"], s.get("tears", 0)
            for metric in WIDE_METRICS:
                stats = s["metrics"].get(metric)
                row[f"{metric}_mean"] = "" if stats is None else stats["mean"]
                row[f"{metric}_std"] = "" if stats is None or stats["std"] is None else stats["std"]
            rows.append(row)
    return rows


MARKDOWN_HEADER = (
    "| method | " + " | ".join(label for _, label, _ in TABLE_COLUMNS) + " | meshes |",
    "|---" * (len(TABLE_COLUMNS) + 2) + "|",
)


def markdown_table(summary: dict, records: list[RunRecord], title: str = "Reconstruction benchmark") -> str:
    """The paper-shaped table (method | the :data:`TABLE_COLUMNS` | meshes) for all scans and each variant."""
    lines = [f"# {title}", "", *definition_lines(records), ""]
    for variant, methods in summary.items():
        heading = "All scans" if variant == ALL else f"Variant `{variant}`"
        lines += [f"## {heading}", "", *MARKDOWN_HEADER]
        for s in methods.values():
            cells = [mean_std_text(s["metrics"].get(m), digits) for m, _, digits in TABLE_COLUMNS]
            lines.append(f"| {s['name']} | {' | '.join(cells)} | {meshes_text(s)} |")
        counts = ", ".join(
            f"{s['name']} {s['n']}" + (f" ({s['failed']} failed)" if s["failed"] else "")
            for s in methods.values()
        )
        lines += ["", f"Scans per method: {counts}.", ""]
    suspect = [r for r in records if r.suspect]
    if suspect:
        lines += [f"## Suspect meshes ({len(suspect)})", ""]
        lines += [
            f"- {r.scan_id} / {r.method}: {'; '.join(r.suspect_reasons) or 'no reason given'}"
            for r in suspect
        ]
        lines.append("")
    lobed = [r for r in records if r.lobe]
    if lobed:
        lines += [f"## Meshes kept with a lobe beyond the closure ({len(lobed)})", ""]
        lines += [f"- {r.scan_id} / {r.method}" for r in lobed]
        lines.append("")
    torn = [r for r in records if r.tear]
    if torn:
        lines += [f"## Meshes kept with a tear ({len(torn)})", ""]
        lines += [f"- {r.scan_id} / {r.method}" for r in torn]
        lines.append("")
    failed = [r for r in records if r.status == "failed"]
    if failed:
        lines += [f"## Failed tasks ({len(failed)})", ""]
        lines += [f"- {r.scan_id} / {r.method}: {r.error}" for r in failed]
        lines.append("")
    return "\n".join(lines)


def definition_lines(records: list[RunRecord]) -> list[str]:
    """What the tables' numbers mean, as Markdown lines: units, aggregation, then per metric and method."""
    definitions = next((r.definitions for r in records if r.definitions), None) or {}
    lines = [
        "Chamfer distances are ×1000 of the ground-truth bounding-box diagonal (Chamfer L2: squared "
        "distances / diagonal² × 1000²); F@1% is the F-score at 1% of that diagonal; fit time is wall "
        "seconds. Each cell is the mean ± sample standard deviation (n − 1) over the scans the method "
        "finished; 'meshes' gives that number and how many of those meshes the fit's surface check flagged "
        "as suspect (– : no check recorded); means include suspect meshes.",
        "",
    ]
    for key in (
        "chamfer_l1",
        "chamfer_l2",
        "accuracy",
        "completeness",
        "fscore",
        "normal_consistency",
        "sampling",
    ):
        if key in definitions:
            lines.append(f"- {key}: {definitions[key]}")
    methods = {r.method for r in records}
    if any(m.startswith("atlasnet") for m in methods):
        lines.append(
            "- AtlasNet meshes are the charts' template connectivity: open, possibly overlapping, "
            "not watertight."
        )
    if "poisson-best" in methods:
        lines.append(
            f"- {METHODS['poisson-best']} is an oracle anchor: per scan it keeps the best by Chamfer L1 "
            "against the ground truth of {PyMeshLab, Open3D} × octree depths × density trim {0, 2 %} "
            "(every configuration's metrics are in its poisson_configs.json); its fit time is the chosen "
            "configuration's (shared preparation + its solve)."
        )
    if "levelset-trimmed" in methods:
        lines.append(
            f"- {METHODS['levelset-trimmed']}: the levelset mesh with the faces no scan point supports "
            "removed (recon.core.trim: farther than a multiple of the scan's point spacing; no ground truth "
            "used); not refitted: its fit time and surface check are the levelset fit's."
        )
    return lines


# ---------------------------------------------------------------------------------------------- the report
def write_report(
    bench_dir: str | os.PathLike,
    *,
    interactive: bool = True,
    max_view_faces: int = 20_000,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Aggregate ``bench_dir`` and write results.csv, results_wide.csv, summary.json, table.md, report.html.

    Parameters
    ----------
    interactive : bool
        Embed a three.js view of every mesh (one shared copy of the viewer; each mesh decimated to at most
        ``max_view_faces`` faces).
    progress : callable, optional
        Called with a short line as each part is done.

    Returns
    -------
    Report
    """
    say = progress or (lambda _line: None)
    bench = Path(bench_dir)
    records = collect_runs(bench)
    summary = summarize(records)
    markdown = markdown_table(summary, records, title=f"Reconstruction benchmark: {bench.resolve().name}")
    paths = {
        "results.csv": bench / "results.csv",
        "results_wide.csv": bench / "results_wide.csv",
        "summary.json": bench / "summary.json",
        "table.md": bench / "table.md",
        "report.html": bench / "report.html",
    }
    _write_csv(paths["results.csv"], long_rows(records), LONG_COLUMNS)
    wide = wide_rows(summary)
    _write_csv(paths["results_wide.csv"], wide, list(wide[0]) if wide else ["variant", "method"])
    write_json(paths["summary.json"], _summary_json(bench, summary, records))
    write_text(paths["table.md"], markdown)
    say(f"tables: {len(records)} run folders")
    from recon.evaluation.report_html import html_page  # it imports this module

    notes: list[str] = []
    page = html_page(bench, summary, records, interactive, max_view_faces, notes, say)
    write_text(paths["report.html"], page)
    return Report(paths=paths, markdown=markdown, records=records, notes=notes)


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def _summary_json(bench: Path, summary: dict, records: list[RunRecord]) -> dict:
    definitions = next((r.definitions for r in records if r.definitions), None)
    return {
        "format": "recon-summary/1",
        "bench_dir": str(bench.resolve()),
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "aggregation": "mean and sample standard deviation (n - 1) over the scans a method finished",
        "units": "*_x1000: x1000 of the GT bounding-box diagonal (chamfer_l2_x1000: /diagonal^2 x 1000^2)",
        "batch": read_json_object_or_empty(bench / "batch.json").get("settings"),
        "definitions": definitions,
        "variants": summary,
        "failed": [
            {"scan": r.scan_id, "method": r.method, "error": r.error} for r in records if r.status == "failed"
        ],
        "pending": [{"scan": r.scan_id, "method": r.method} for r in records if r.status == "pending"],
        "suspect": [
            {"scan": r.scan_id, "method": r.method, "reasons": r.suspect_reasons}
            for r in records
            if r.suspect
        ],
        "no_ground_truth": [{"scan": r.scan_id, "method": r.method} for r in records if r.status == "no-gt"],
    }
