"""Tables, plots and thumbnails of a benchmark folder, aggregated from the files ``recon batch`` left on disk.

:func:`write_report` reads every ``BENCH_DIR/runs/<scan>/<method>/`` folder and writes into BENCH_DIR::

    results.csv        long: scan, variant, method, metric, value, suspect (one row per number)
    results_wide.csv   one row per (variant, method): n, failed, suspect, and mean/std of every metric
    summary.json       the same aggregates as nested JSON, with the metric definitions and the failures
    table.md           the paper-shaped table per variant: method | Chamfer L1 | Chamfer L2 | F@1% |
                       normal consistency | fit time | meshes ("n, suspect k"), mean ± std
    report.html        one self-contained page: tables, plots and thumbnails embedded as PNG, and an
                       interactive three.js view of each mesh (trimesh's viewer, one shared copy)

Tables aggregate per-scan values as mean ± sample standard deviation (n − 1) over the scans a method
finished; Chamfer values are ×1000 of the ground-truth bounding-box diagonal.

A mesh is *suspect* when the fit's surface check flagged it (``meta.json`` → ``surface_check.suspect``;
runs without a check, such as baselines and older fits, count as not suspect). Means include suspect
meshes; every table says how many there are beside them, and the per-scan tables mark them.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon.atomic import read_json, write_json, write_text
from recon.errors import InputError
from recon.evaluation.batch import METHODS, task_status

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
CHAMFERS = (("chamfer_l1_x1000", "Chamfer L1"), ("chamfer_l2_x1000", "Chamfer L2"))
"""The metrics of the per-scan table and the plots."""
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
_THUMB_FACES = 6_000
_SUSPECT_MARK = "⚠ suspect"


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
    return sorted(records, key=lambda r: (r.variant, r.scan_id, _method_rank(r.method)))


def _record(run_dir: Path) -> RunRecord:
    scan_id, method = run_dir.parent.name, run_dir.name
    task = _read_or_empty(run_dir / "task.json")
    variant = str(task.get("variant") or "")
    status = task_status(run_dir)
    if status == "failed":
        error = (run_dir / "ERROR").read_text(errors="replace").strip()
        return RunRecord(scan_id, method, variant, "failed", run_dir, error=error)
    if status == "pending":
        return RunRecord(scan_id, method, variant, "pending", run_dir)
    evaluation = _read_or_empty(run_dir / "eval.json")
    if not evaluation:
        return RunRecord(scan_id, method, variant, "failed", run_dir, error="eval.json is unreadable")
    variant = str(evaluation.get("variant") or variant)
    suspect, reasons = surface_check(run_dir)
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
    )


def surface_check(run_dir: Path) -> tuple[bool | None, list[str]]:
    """Whether the fit's surface check (``meta.json`` → ``surface_check``) flagged the mesh, and why.

    None when the run has no such check (baselines, fits from before the check).
    """
    check = _read_or_empty(run_dir / "meta.json").get("surface_check")
    if not isinstance(check, dict) or not isinstance(check.get("suspect"), bool):
        return None, []
    return check["suspect"], [str(reason) for reason in check.get("reasons") or []]


def _read_or_empty(path: Path) -> dict:
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


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


def _method_rank(method: str) -> tuple[int, str]:
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
        methods = sorted({r.method for r in members}, key=_method_rank)
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
        "metrics": metrics,
    }


def meshes_text(method_summary: dict) -> str:
    """'3, suspect 1': the meshes a mean is over and how many of them are suspect ('–': none checked)."""
    suspect = method_summary["suspect"] if method_summary["surface_checked"] else "–"
    return f"{method_summary['n']}, suspect {suspect}"


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
    lines = [f"# {title}", "", *_definition_lines(records), ""]
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
    failed = [r for r in records if r.status == "failed"]
    if failed:
        lines += [f"## Failed tasks ({len(failed)})", ""]
        lines += [f"- {r.scan_id} / {r.method}: {r.error}" for r in failed]
        lines.append("")
    return "\n".join(lines)


def _definition_lines(records: list[RunRecord]) -> list[str]:
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
    notes: list[str] = []
    page = _html_page(bench, summary, records, interactive, max_view_faces, notes, say)
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
        "batch": _read_or_empty(bench / "batch.json").get("settings"),
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


# ---------------------------------------------------------------------------------------------- HTML
_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:8px 0 16px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0} td.num{text-align:right;font-variant-numeric:tabular-nums}
.failed{color:#b00020} .muted{color:#777;font-size:90%} img.plot{max-width:100%}
td.suspect{background:#fff3cd}
img.thumb{width:160px;height:160px;object-fit:contain;background:#fafafa}
iframe.view{width:640px;height:480px;border:1px solid #ccc;display:block}
"""

_SCRIPT = """
function openView(id){
  const box=document.getElementById('view-'+id); if(box.firstChild){box.innerHTML='';return;}
  const tpl=new TextDecoder().decode(Uint8Array.from(atob(
    document.getElementById('viewer-template').textContent.trim()),c=>c.charCodeAt(0)));
  const glb=document.getElementById('glb-'+id).textContent.trim();
  const frame=document.createElement('iframe'); frame.className='view';
  frame.srcdoc=tpl.split('$B64GLTF').join(glb); box.appendChild(frame);
}
window.addEventListener('load',()=>{
  const imgs=[...document.images];
  document.body.dataset.imagesLoaded=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;
  document.body.dataset.imagesTotal=imgs.length;
});
"""


def _html_page(bench, summary, records, interactive, max_view_faces, notes, say) -> str:
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>recon report: {_e(bench.resolve().name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Reconstruction benchmark: {_e(bench.resolve().name)}</h1>",
        f"<p class='muted'>{_e(str(bench.resolve()))} — generated {time.strftime('%Y-%m-%d %H:%M:%S')}; "
        f"{sum(r.status == 'finished' for r in records)} finished, "
        f"{sum(r.status == 'failed' for r in records)} failed, "
        f"{sum(r.status == 'pending' for r in records)} pending tasks.</p>",
        "<h2>Summary</h2>",
        "".join(f"<p>{_e(line.removeprefix('- '))}</p>" for line in _definition_lines(records) if line),
        _summary_tables(summary),
        _settings_html(bench),
        "<h2>Per scan</h2>",
        _per_scan_table(records),
    ]
    finished = [r for r in records if r.status == "finished"]
    if finished:
        parts += ["<h2>Plots</h2>", _plots_html(finished)]
        say("plots")
    parts += ["<h2>Meshes</h2>", _gallery_html(bench, records, notes)]
    say("thumbnails")
    if interactive:
        parts.append(_views_html(records, max_view_faces, notes))
        say("3D views")
    parts += _failures_html(records)
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "\n".join(parts)


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _summary_tables(summary: dict) -> str:
    head = "".join(f"<th>{_e(label)}</th>" for _, label, _ in TABLE_COLUMNS)
    out = []
    for variant, methods in summary.items():
        title = "All scans" if variant == ALL else f"Variant {variant}"
        rows = "".join(
            f"<tr><td>{_e(s['name'])}</td>"
            + "".join(
                f"<td class='num'>{_e(mean_std_text(s['metrics'].get(m), digits))}</td>"
                for m, _, digits in TABLE_COLUMNS
            )
            + f"<td class='num'>{_e(meshes_text(s))}</td><td class='num'>{s['failed']}</td></tr>"
            for s in methods.values()
        )
        out.append(
            f"<h3>{_e(title)}</h3><table class='summary' id='summary-{_e(variant)}'><tr><th>method</th>"
            f"{head}<th>meshes</th><th>failed</th></tr>{rows}</table>"
        )
    return "".join(out)


def _settings_html(bench: Path) -> str:
    settings = _read_or_empty(bench / "batch.json").get("settings")
    if not settings:
        return ""
    items = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in settings.items())
    return f"<h3>Batch settings</h3><table>{items}</table>"


def _per_scan_table(records: list[RunRecord]) -> str:
    methods = sorted({r.method for r in records}, key=_method_rank)
    by_key = {(r.scan_id, r.method): r for r in records}
    scans = list(dict.fromkeys((r.scan_id, r.variant) for r in records))
    head = "".join(f"<th>{_e(METHODS.get(m, m))}</th>" for m in methods)
    rows = []
    for scan_id, variant in scans:
        cells = "".join(_scan_cell(by_key.get((scan_id, m))) for m in methods)
        rows.append(f"<tr><td>{_e(scan_id)}</td><td>{_e(variant)}</td>{cells}</tr>")
    return (
        "<p class='muted'>Chamfer L1 / Chamfer L2, ×1000 of the GT bounding-box diagonal; "
        f"{_SUSPECT_MARK} marks a mesh the fit's surface check flagged as suspect (hover for why).</p>"
        f"<table id='per-scan'><tr><th>scan</th><th>variant</th>{head}</tr>{''.join(rows)}</table>"
    )


def _scan_cell(record: RunRecord | None) -> str:
    if record is None:
        return "<td class='muted'>–</td>"
    if record.status == "finished":
        l1, l2 = (record.metrics.get(m, float("nan")) for m, _ in CHAMFERS)
        if record.suspect:
            why = "suspect: " + ("; ".join(record.suspect_reasons) or "no reason given")
            return f"<td class='num suspect' title='{_e(why)}'>{l1:.2f} / {l2:.2f} {_SUSPECT_MARK}</td>"
        return f"<td class='num'>{l1:.2f} / {l2:.2f}</td>"
    if record.status == "failed":
        return f"<td class='failed' title='{_e(record.error)}'>failed</td>"
    return f"<td class='muted'>{_e(record.status)}</td>"


def _plots_html(finished: list[RunRecord]) -> str:
    return (
        f"<h3>Per-scan errors</h3><img class='plot' alt='per-scan bars' src='{_png_uri(_bars_figure(finished))}'>"
        f"<h3>Error distributions</h3><img class='plot' alt='error distributions' "
        f"src='{_png_uri(_distribution_figure(finished))}'>"
    )


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png_uri(figure) -> str:
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _bars_figure(finished: list[RunRecord]):
    plt = _pyplot()
    methods = sorted({r.method for r in finished}, key=_method_rank)
    scans = list(dict.fromkeys(r.scan_id for r in finished))
    values = {(r.scan_id, r.method): r.metrics for r in finished}
    width = min(18.0, 3.0 + 0.35 * len(scans) * len(methods))
    figure, axes = plt.subplots(2, 1, figsize=(width, 6.5), sharex=True)
    x = np.arange(len(scans))
    step = 0.8 / len(methods)
    for axis, (metric, label) in zip(axes, CHAMFERS, strict=True):
        for i, method in enumerate(methods):
            heights = [values.get((s, method), {}).get(metric, np.nan) for s in scans]
            axis.bar(
                x + (i - (len(methods) - 1) / 2) * step, heights, step, label=METHODS.get(method, method)
            )
        axis.set_ylabel(f"{label} (×1000 diag)")
        axis.grid(axis="y", alpha=0.3)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncols=min(len(methods), 5))
    axes[1].set_xticks(
        x, scans, rotation=45 if len(scans) > 6 else 0, ha="right" if len(scans) > 6 else "center"
    )
    figure.tight_layout()
    return figure


def _distribution_figure(finished: list[RunRecord]):
    plt = _pyplot()
    methods = sorted({r.method for r in finished}, key=_method_rank)
    figure, axes = plt.subplots(1, 2, figsize=(min(14.0, 4.0 + 1.6 * len(methods)), 4.2))
    jitter = np.random.default_rng(0)
    for axis, (metric, label) in zip(axes, CHAMFERS, strict=True):
        data = [
            [r.metrics[metric] for r in finished if r.method == m and metric in r.metrics] for m in methods
        ]
        axis.boxplot(data, showmeans=True)
        for i, values in enumerate(data, start=1):
            axis.plot(i + jitter.uniform(-0.12, 0.12, len(values)), values, "o", alpha=0.6, markersize=4)
        axis.set_xticks(
            range(1, len(methods) + 1), [METHODS.get(m, m) for m in methods], rotation=20, ha="right"
        )
        axis.set_ylabel(f"{label} (×1000 diag)")
        axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def _gallery_html(bench: Path, records: list[RunRecord], notes: list[str]) -> str:
    methods = sorted({r.method for r in records}, key=_method_rank)
    by_key = {(r.scan_id, r.method): r for r in records}
    scans = list(dict.fromkeys(r.scan_id for r in records))
    head = "<th>scan</th><th>ground truth</th>" + "".join(
        f"<th>{_e(METHODS.get(m, m))}</th>" for m in methods
    )
    rows = []
    for scan_id in scans:
        gt_path = _gt_path(records, scan_id)
        cells = [_thumb_cell(_gt_thumbnail(bench, scan_id, gt_path, notes), "ground truth")]
        for method in methods:
            record = by_key.get((scan_id, method))
            if record is None or record.status not in ("finished", "no-gt"):
                status = "–" if record is None else record.status
                cells.append(f"<td class='{'failed' if status == 'failed' else 'muted'}'>{_e(status)}</td>")
                continue
            caption = (
                f"CL1 {record.metrics.get('chamfer_l1_x1000', float('nan')):.2f}"
                if record.status == "finished"
                else "no ground truth"
            ) + (f" {_SUSPECT_MARK}" if record.suspect else "")
            cells.append(_thumb_cell(_run_thumbnail(record, notes), caption))
        rows.append(f"<tr><td>{_e(scan_id)}</td>{''.join(cells)}</tr>")
    return f"<table id='gallery'><tr>{head}</tr>{''.join(rows)}</table>"


def _thumb_cell(png: bytes | None, caption: str) -> str:
    if png is None:
        return f"<td class='muted'>no thumbnail<br>{_e(caption)}</td>"
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    return f"<td><img class='thumb' alt='{_e(caption)}' src='{uri}'><br>{_e(caption)}</td>"


def _gt_path(records: list[RunRecord], scan_id: str) -> Path | None:
    for record in records:
        if record.scan_id == scan_id:
            gt = _read_or_empty(record.run_dir / "task.json").get("gt")
            if gt:
                return Path(gt)
    return None


def _run_thumbnail(record: RunRecord, notes: list[str]) -> bytes | None:
    existing = record.run_dir / "thumbnail.png"
    if existing.is_file():
        return existing.read_bytes()
    cache = record.run_dir.parents[2] / "report_assets" / f"{record.scan_id}_{record.method}.png"
    return _cached_thumbnail(record.run_dir / "mesh.ply", cache, notes)


def _gt_thumbnail(bench: Path, scan_id: str, gt_path: Path | None, notes: list[str]) -> bytes | None:
    if gt_path is None or not gt_path.is_file():
        return None
    return _cached_thumbnail(gt_path, bench / "report_assets" / f"{scan_id}_gt.png", notes)


def _cached_thumbnail(mesh_path: Path, cache: Path, notes: list[str]) -> bytes | None:
    """A PNG of ``mesh_path``, rendered once into ``cache`` (re-rendered when the mesh is newer)."""
    if cache.is_file() and cache.stat().st_mtime >= mesh_path.stat().st_mtime:
        return cache.read_bytes()
    try:
        vertices, faces = _load_faces(mesh_path)
        png = render_thumbnail(vertices, faces)
    except Exception as exc:  # noqa: BLE001 - a thumbnail is a convenience, never fatal
        notes.append(f"no thumbnail for {mesh_path}: {type(exc).__name__}: {exc}")
        return None
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(cache, png)
    return png


def write_bytes_atomic(path: Path, data: bytes) -> None:
    from recon.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _load_faces(mesh_path: Path) -> tuple[np.ndarray, np.ndarray]:
    from recon.io import load_mesh

    mesh = load_mesh(mesh_path)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


def render_thumbnail(vertices: np.ndarray, faces: np.ndarray, size: int = 240) -> bytes:
    """A shaded PNG of a mesh seen from the front and a little above, standing on its own up axis: the
    viewer's renderer (recon.viewer), as the run folders' thumbnails.

    Parameters
    ----------
    vertices : (n, 3) float
    faces : (m, 3) int
        Decimated to about 6,000 faces first.
    """
    from PIL import Image

    from recon.viewer import make_geometry, render_views

    vertices, faces = decimated(vertices, faces, _THUMB_FACES)
    image = render_views([make_geometry(vertices, faces)], views=("elevated",), size=(size, size))
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def decimated(vertices: np.ndarray, faces: np.ndarray, max_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """The mesh simplified by quadric edge collapse to at most ``max_faces`` faces (as is when smaller).

    Returns
    -------
    vertices : (v, 3) float64
    faces : (f, 3) int64, f ≤ max_faces
    """
    if len(faces) <= max_faces:
        return np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64)
    import open3d as o3d

    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.asarray(vertices, dtype=np.float64)),
        o3d.utility.Vector3iVector(np.asarray(faces, dtype=np.int32)),
    )
    simple = mesh.simplify_quadric_decimation(target_number_of_triangles=max_faces)
    return np.asarray(simple.vertices), np.asarray(simple.triangles, dtype=np.int64)


def _views_html(records: list[RunRecord], max_faces: int, notes: list[str]) -> str:
    """A button per mesh that opens trimesh's three.js viewer in an iframe (viewer embedded once)."""
    template = _viewer_template()
    if template is None:
        notes.append("interactive 3D views skipped: trimesh's three.js viewer is unavailable")
        return ""
    blocks, buttons = [], []
    for i, record in enumerate(r for r in records if r.status in ("finished", "no-gt")):
        try:
            vertices, faces = decimated(*_load_faces(record.run_dir / "mesh.ply"), max_faces)
            glb = _glb_base64(vertices, faces)
        except Exception as exc:  # noqa: BLE001 - one unreadable mesh loses its view only
            notes.append(f"no 3D view of {record.scan_id}/{record.method}: {type(exc).__name__}: {exc}")
            continue
        label = f"{record.scan_id} / {METHODS.get(record.method, record.method)}"
        blocks.append(f"<script type='application/octet-stream' id='glb-{i}'>{glb}</script>")
        buttons.append(
            f"<div><button onclick='openView({i})'>{_e(label)}</button><div id='view-{i}'></div></div>"
        )
    encoded = base64.b64encode(template.encode()).decode()
    return (
        "<h2>Interactive views</h2><p class='muted'>three.js (via trimesh); click to open or close; meshes "
        f"decimated to at most {max_faces} faces.</p>"
        f"<script type='application/octet-stream' id='viewer-template'>{encoded}</script>"
        + "".join(blocks)
        + "".join(buttons)
    )


def _viewer_template() -> str | None:
    """trimesh's self-contained three.js page with the ``$B64GLTF`` placeholder where the scene goes."""
    try:
        import trimesh
        from trimesh.viewer.notebook import scene_to_html
    except ImportError:
        return None
    scene = trimesh.Scene(trimesh.creation.box())
    page = scene_to_html(scene)
    encoded = base64.b64encode(scene.export(file_type="glb")).decode()
    if encoded not in page:
        return None
    return page.replace(encoded, "$B64GLTF")


def _glb_base64(vertices: np.ndarray, faces: np.ndarray) -> str:
    import trimesh

    scene = trimesh.Scene(trimesh.Trimesh(vertices, faces, process=False))
    _ = scene.camera  # creating the camera puts a camera node into the GLB, which the viewer reads
    return base64.b64encode(scene.export(file_type="glb")).decode()


def _failures_html(records: list[RunRecord]) -> list[str]:
    failed = [r for r in records if r.status == "failed"]
    if not failed:
        return []
    items = "".join(
        f"<li><b>{_e(r.scan_id)} / {_e(r.method)}</b>: <span class='failed'>{_e(r.error)}</span> "
        f"<span class='muted'>({_e(r.run_dir / 'error.txt')})</span></li>"
        for r in failed
    )
    return [f"<h2>Failed tasks ({len(failed)})</h2><ul id='failures'>{items}</ul>"]
