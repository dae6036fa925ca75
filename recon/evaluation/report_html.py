"""The ``report.html`` of a benchmark folder, as :func:`recon.evaluation.report.write_report` writes it.

One self-contained page, nothing fetched: the summary and per-scan tables; matplotlib plots and mesh
thumbnails embedded as PNG (thumbnails rendered by recon.viewer, cached in ``BENCH_DIR/report_assets``);
a three.js view of each mesh (trimesh's viewer embedded once, the meshes as GLB).
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from recon.atomic import atomic_path, read_json_object_or_empty
from recon.evaluation.plan import METHODS
from recon.evaluation.report import (
    ALL,
    TABLE_COLUMNS,
    RunRecord,
    definition_lines,
    mean_std_text,
    meshes_text,
    method_rank,
)

CHAMFERS = (("chamfer_l1_x1000", "Chamfer L1"), ("chamfer_l2_x1000", "Chamfer L2"))
"""The metrics of the per-scan table and the plots."""
_THUMB_FACES = 6_000
_SUSPECT_MARK = "⚠ suspect"
_LOBE_MARK = "◌ lobe"
_TEAR_MARK = "✂ tear"


_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:8px 0 16px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0} td.num{text-align:right;font-variant-numeric:tabular-nums}
.failed{color:#b00020} .muted{color:#777;font-size:90%} img.plot{max-width:100%}
td.suspect{background:#fff3cd}td.lobe{background:#eef3ff}td.tear{background:#f3eeff}
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


def html_page(
    bench: Path,
    summary: dict,
    records: list[RunRecord],
    interactive: bool,
    max_view_faces: int,
    notes: list[str],
    say: Callable[[str], None],
) -> str:
    """The page of ``bench``: ``summary`` is :func:`~recon.evaluation.report.summarize` of ``records``;
    parts skipped are appended to ``notes``; ``say`` is called with a short line as each part is done."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>recon report: {_e(bench.resolve().name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Reconstruction benchmark: {_e(bench.resolve().name)}</h1>",
        f"<p class='muted'>{_e(str(bench.resolve()))} — generated {time.strftime('%Y-%m-%d %H:%M:%S')}; "
        f"{sum(r.status == 'finished' for r in records)} finished, "
        f"{sum(r.status == 'failed' for r in records)} failed, "
        f"{sum(r.status == 'pending' for r in records)} pending tasks.</p>",
        "<h2>Summary</h2>",
        "".join(f"<p>{_e(line.removeprefix('- '))}</p>" for line in definition_lines(records) if line),
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
    settings = read_json_object_or_empty(bench / "batch.json").get("settings")
    if not settings:
        return ""
    items = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in settings.items())
    return f"<h3>Batch settings</h3><table>{items}</table>"


def _per_scan_table(records: list[RunRecord]) -> str:
    methods = sorted({r.method for r in records}, key=method_rank)
    by_key = {(r.scan_id, r.method): r for r in records}
    scans = list(dict.fromkeys((r.scan_id, r.variant) for r in records))
    head = "".join(f"<th>{_e(METHODS.get(m, m))}</th>" for m in methods)
    rows = []
    for scan_id, variant in scans:
        cells = "".join(_scan_cell(by_key.get((scan_id, m))) for m in methods)
        rows.append(f"<tr><td>{_e(scan_id)}</td><td>{_e(variant)}</td>{cells}</tr>")
    return (
        "<p class='muted'>Chamfer L1 / Chamfer L2, ×1000 of the GT bounding-box diagonal; "
        f"{_SUSPECT_MARK} marks a mesh the fit's surface check flagged as suspect (hover for why), "
        f"{_LOBE_MARK} one kept with a lobe beyond the scan's closure that no reseed freed it of, "
        f"{_TEAR_MARK} one kept torn away from part of its scan.</p>"
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
        if record.lobe:
            why = "kept with a lobe beyond the scan's closure (surface_check.has_lobe in meta.json)"
            return f"<td class='num lobe' title='{_e(why)}'>{l1:.2f} / {l2:.2f} {_LOBE_MARK}</td>"
        if record.tear:
            why = "kept torn away from part of its scan (surface_check.has_tear in meta.json)"
            return f"<td class='num tear' title='{_e(why)}'>{l1:.2f} / {l2:.2f} {_TEAR_MARK}</td>"
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
    methods = sorted({r.method for r in finished}, key=method_rank)
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
    methods = sorted({r.method for r in finished}, key=method_rank)
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
    methods = sorted({r.method for r in records}, key=method_rank)
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
            gt = read_json_object_or_empty(record.run_dir / "task.json").get("gt")
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
    with atomic_path(cache) as tmp:
        tmp.write_bytes(png)
    return png


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
