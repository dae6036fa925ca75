"""recon report: aggregation from the files on disk, tables, the HTML page (rendered in chromium)."""

from __future__ import annotations

import base64
import csv
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import trimesh
from click.testing import CliRunner
from conftest import assert_png_shows_something

from recon.atomic import write_json, write_text
from recon.errors import InputError
from recon.evaluation.plan import METHODS as METHOD_NAMES
from recon.evaluation.report import (
    collect_runs,
    markdown_table,
    mean_std_text,
    summarize,
    write_report,
)
from recon.evaluation.report_html import decimated, render_thumbnail
from recon.io import save_mesh

SCANS = {"ball": "clean", "egg": "clean", "bean": "noisy"}
METHODS = ("poisson", "levelset", "atlasnet-25")
DIAGONAL = 2.0
SURFACE_CHECKS = {
    ("ball", "levelset"): {"suspect": True, "reasons": ["a sheet far from the scan"]},
    ("egg", "levelset"): {"suspect": False, "reasons": []},
}
"""The levelset fits' surface checks; bean's levelset run predates the check (no entry in its meta.json)."""
HEADER = "| method | Chamfer L1 | Chamfer L2 | F@1% | normal consistency | fit time (s) | meshes |"


def _write_run(bench: Path, scan: str, method: str, variant: str, l1: float, l2: float) -> None:
    """A finished run folder whose eval.json holds the given Chamfer values (×1000 of the diagonal), with
    F-score 0.5, normal consistency 0.9, a fit of 1 s and the surface check of :data:`SURFACE_CHECKS`."""
    run = bench / "runs" / scan / method
    gt = bench / "gt" / f"{scan}.ply"
    write_json(run / "task.json", {"scan_id": scan, "method": method, "variant": variant, "gt": str(gt)})
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.5 + 0.01 * len(method))
    save_mesh(run / "mesh.ply", sphere.vertices, sphere.faces, force=True)
    metrics = {
        "chamfer_l1": l1 * DIAGONAL / 1000,
        "chamfer_l2": l2 * DIAGONAL**2 / 1e6,
        "fscore": 0.5,
        "normal_consistency": 0.9,
        "n_samples": 1000,
        "x1000_diag": {"chamfer_l1": l1, "chamfer_l2": l2},
    }
    definitions = {"chamfer_l1": "(accuracy + completeness) / 2", "chamfer_l2": "squared, halved"}
    write_json(
        run / "eval.json",
        {
            "variant": variant,
            "metrics": metrics,
            "definitions": definitions,
            "seconds": {"fit": 1.0, "eval": 0.1},
        },
    )
    if (scan, method) in SURFACE_CHECKS:
        write_json(run / "meta.json", {"method": method, "surface_check": SURFACE_CHECKS[scan, method]})
    write_text(run / "DONE", "{}\n")


@pytest.fixture
def bench(tmp_path) -> tuple[Path, dict]:
    """Three scans x three methods with random Chamfer values, and one failed task."""
    bench = tmp_path / "bench"
    rng = np.random.default_rng(3)
    values = {}
    for scan, variant in SCANS.items():
        sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
        save_mesh(bench / "gt" / f"{scan}.ply", sphere.vertices, sphere.faces)
        for method in METHODS:
            if (scan, method) == ("bean", "atlasnet-25"):
                run = bench / "runs" / scan / method
                write_json(run / "task.json", {"variant": variant, "gt": str(bench / "gt" / f"{scan}.ply")})
                write_text(run / "ERROR", "ground truth not found: /nowhere.ply\n")
                continue
            values[scan, method] = (rng.uniform(5, 20), rng.uniform(20, 400))
            _write_run(bench, scan, method, variant, *values[scan, method])
    write_json(bench / "batch.json", {"settings": {"preset": "tiny", "seed": 0}})
    return bench, values


def _expected(values: dict, method: str, scans) -> tuple[np.ndarray, np.ndarray]:
    l1 = np.array([values[s, method][0] for s in scans if (s, method) in values])
    l2 = np.array([values[s, method][1] for s in scans if (s, method) in values])
    return l1, l2


def test_summary_is_mean_and_sample_std_per_variant(bench):
    bench, values = bench
    summary = summarize(collect_runs(bench))
    assert list(summary) == ["all", "clean", "noisy"]
    groups = {"all": list(SCANS), "clean": ["ball", "egg"], "noisy": ["bean"]}
    for variant, scans in groups.items():
        for method in METHODS:
            l1, l2 = _expected(values, method, scans)
            if len(l1) == 0:
                assert summary[variant][method]["n"] == 0 and summary[variant][method]["failed"] == 1
                continue
            stats = summary[variant][method]["metrics"]
            assert stats["chamfer_l1_x1000"]["mean"] == pytest.approx(l1.mean())
            assert stats["chamfer_l2_x1000"]["mean"] == pytest.approx(l2.mean())
            if len(l1) > 1:
                assert stats["chamfer_l1_x1000"]["std"] == pytest.approx(np.std(l1, ddof=1))
            else:
                assert stats["chamfer_l1_x1000"]["std"] is None
    assert summary["all"]["atlasnet-25"]["failed"] == 1


def test_markdown_table_is_shaped_like_the_paper(bench):
    bench, values = bench
    report = write_report(bench, interactive=False)
    table = (bench / "table.md").read_text()
    assert table == report.markdown
    section = table.split("## All scans")[1].split("##")[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert rows[0] == HEADER and rows[1] == "|---|---|---|---|---|---|---|"
    names = [row.split("|")[1].strip() for row in rows[2:]]
    assert names == ["AtlasNet-25 patches", "level-set loss (ours)", "screened Poisson"]
    l1, l2 = _expected(values, "levelset", SCANS)
    expected = (
        f"| level-set loss (ours) | {l1.mean():.2f} ± {l1.std(ddof=1):.2f} | "
        f"{l2.mean():.2f} ± {l2.std(ddof=1):.2f} | 0.500 ± 0.000 | 0.900 ± 0.000 | 1.0 ± 0.0 | 3, suspect 1 |"
    )
    assert expected in rows
    # Baselines have no surface check: their suspect count is unknown, not zero.
    assert rows[4].endswith("| 3, suspect – |") and rows[2].endswith("| 2, suspect – |")
    clean = table.split("## Variant `clean`")[1].split("##")[0]
    noisy = table.split("## Variant `noisy`")[1].split("##")[0]
    assert "| 2, suspect 1 |" in clean and "(n=1)" in noisy
    assert "| 1, suspect – |" in noisy  # bean's fit predates the surface check
    assert "## Suspect meshes (1)\n\n- ball / levelset: a sheet far from the scan" in table
    assert "bean / atlasnet-25: ground truth not found" in table
    assert "×1000 of the ground-truth bounding-box diagonal" in table


def test_new_methods_have_names_and_their_place_in_the_tables(tmp_path):
    order = ["atlasnet-25", "levelset", "levelset-trimmed", "poisson", "poisson-best"]
    for method in reversed(order):
        _write_run(tmp_path, "ball", method, "clean", 10.0, 100.0)
    records = collect_runs(tmp_path)
    table = markdown_table(summarize(records), records)
    rows = [line for line in table.split("## All scans")[1].splitlines() if line.startswith("| ")][1:]
    assert [row.split("|")[1].strip() for row in rows] == [METHOD_NAMES[m] for m in order]
    assert "oracle anchor" in table and "poisson_configs.json" in table
    assert "no ground truth used" in table and "fit time and surface check are the levelset fit's" in table


def test_csv_files(bench):
    bench, values = bench
    write_report(bench, interactive=False)
    with open(bench / "results.csv") as f:
        long = list(csv.DictReader(f))
    assert {(r["scan"], r["method"]) for r in long} == set(values)
    l1 = {(r["scan"], r["method"]): float(r["value"]) for r in long if r["metric"] == "chamfer_l1_x1000"}
    assert l1 == pytest.approx({key: v[0] for key, v in values.items()})
    assert {r["metric"] for r in long} >= {"chamfer_l1", "chamfer_l2_x1000", "fscore", "fit_seconds"}
    assert "n_samples" not in {r["metric"] for r in long}
    suspect = {(r["scan"], r["method"]): r["suspect"] for r in long}
    assert suspect["ball", "levelset"] == "true" and suspect["egg", "levelset"] == "false"
    assert suspect["bean", "levelset"] == suspect["ball", "poisson"] == ""
    with open(bench / "results_wide.csv") as f:
        wide = list(csv.DictReader(f))
    assert {(r["variant"], r["method"]) for r in wide} == {
        (v, m) for v in ("all", "clean", "noisy") for m in METHODS
    }
    poisson = next(r for r in wide if (r["variant"], r["method"]) == ("all", "poisson"))
    assert float(poisson["chamfer_l2_x1000_mean"]) == pytest.approx(
        _expected(values, "poisson", SCANS)[1].mean()
    )
    levelset = next(r for r in wide if (r["variant"], r["method"]) == ("all", "levelset"))
    assert (levelset["n"], levelset["suspect"], levelset["surface_checked"]) == ("3", "1", "2")
    assert float(levelset["normal_consistency_mean"]) == pytest.approx(0.9)
    assert (poisson["suspect"], poisson["surface_checked"]) == ("0", "0")


def test_html_page_embeds_tables_plots_thumbnails_and_views(bench):
    bench, values = bench
    write_report(bench, interactive=True)
    page = (bench / "report.html").read_text()
    assert "<table class='summary' id='summary-all'>" in page and "id='per-scan'" in page
    summary = page.split("id='summary-all'>")[1].split("</table>")[0]
    assert "<th>F@1%</th><th>normal consistency</th><th>fit time (s)</th><th>meshes</th>" in summary
    assert "<td class='num'>3, suspect 1</td>" in summary
    per_scan = page.split("id='per-scan'>")[1].split("</table>")[0]
    assert per_scan.count("class='num suspect'") == 1
    assert "title='suspect: a sheet far from the scan'" in per_scan
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    # 2 plots, then a GT thumbnail per scan and one per finished run.
    assert len(images) == 2 + len(SCANS) + len(values)
    for img in images:
        assert_png_shows_something(base64.b64decode(img))
    assert page.count("<script type='application/octet-stream' id='glb-") == len(values)
    template = re.search(r"id='viewer-template'>([^<]+)<", page).group(1)
    assert "$B64GLTF" in base64.b64decode(template).decode()
    assert "src='http" not in page and 'src="http' not in page


def test_report_refuses_a_folder_without_runs(tmp_path):
    with pytest.raises(InputError, match="recon batch"):
        write_report(tmp_path)


def test_mean_std_text():
    assert mean_std_text({"mean": 1.234, "std": 0.5, "n": 3}) == "1.23 ± 0.50"
    assert mean_std_text({"mean": 1.234, "std": None, "n": 1}) == "1.23 (n=1)"
    assert mean_std_text(None) == "–"


def test_decimated_mesh_keeps_the_shape():
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=1.0)
    vertices, faces = decimated(sphere.vertices, sphere.faces, 2000)
    assert 0 < len(faces) <= 2000
    np.testing.assert_allclose(np.linalg.norm(vertices, axis=1), 1.0, atol=0.02)
    pixels = assert_png_shows_something(render_thumbnail(vertices, faces, size=120), min_share=0.2)
    # A sphere seen from any side: the drawn pixels are a disc about the image's centre.
    rows, cols = np.nonzero(np.abs(pixels - pixels[0, 0]).max(axis=2) > 16)
    assert abs(rows.mean() / pixels.shape[0] - 0.5) < 0.1 and abs(cols.mean() / pixels.shape[1] - 0.5) < 0.1


def test_cli_report_prints_the_table(bench):
    from recon.cli.report import report

    bench, _ = bench
    result = CliRunner().invoke(report, [str(bench), "--no-interactive"])
    assert result.exit_code == 0, result.output
    assert HEADER in result.output
    assert (bench / "report.html").is_file() and (bench / "summary.json").is_file()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.render
@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")
def test_html_renders_in_headless_chromium(bench, tmp_path):
    import matplotlib.image

    bench, values = bench
    write_report(bench, interactive=True)
    url = (bench / "report.html").resolve().as_uri()
    dom = _chromium(tmp_path, "--dump-dom", url).stdout
    loaded = re.search(r'data-images-loaded="(\d+)" data-images-total="(\d+)"', dom)
    assert loaded, "the page's load script did not run"
    assert int(loaded.group(1)) == int(loaded.group(2)) == 2 + len(SCANS) + len(values)
    assert '<table class="summary" id="summary-all">' in dom
    shot = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1600", url)
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (1600, 1200)
    assert pixels.std() > 0.05 and (pixels.mean(axis=2) < 0.5).mean() > 0.005


@pytest.mark.render
@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)")
def test_interactive_view_draws_the_mesh(bench, tmp_path):
    import matplotlib.image

    bench, _ = bench
    write_report(bench, interactive=True)
    page = (bench / "report.html").read_text()
    template = base64.b64decode(re.search(r"id='viewer-template'>([^<]+)<", page).group(1)).decode()
    glb = re.search(r"id='glb-0'>([^<]+)<", page).group(1)
    # What the page's button puts into its iframe, opened on its own (WebGL through SwiftShader).
    view = tmp_path / "view.html"
    view.write_text(template.replace("$B64GLTF", glb))
    shot = tmp_path / "view.png"
    _chromium(
        tmp_path,
        "--enable-unsafe-swiftshader",
        "--virtual-time-budget=5000",
        f"--screenshot={shot}",
        "--window-size=600,500",
        view.as_uri(),
    )
    grey = matplotlib.image.imread(shot)[..., :3].mean(axis=2)
    centre = grey[150:350, 200:400]
    assert (centre < 0.8).mean() > 0.5, "the mesh was not drawn in the middle of the view"
    assert (grey[:20] > 0.95).mean() > 0.9, "the background should stay white"


@pytest.mark.parametrize(
    "flaw, heading, column",
    [
        ({"has_lobe": True, "invented_beyond_closure_share": 0.03}, "a lobe beyond the closure", "lobe"),
        ({"has_tear": True, "scan_torn_patches": 0.011}, "a tear", "tear"),
    ],
)
def test_a_mesh_kept_with_a_lobe_or_a_tear_is_counted_beside_the_suspect_ones(bench, flaw, heading, column):
    bench, _ = bench
    check = SURFACE_CHECKS["egg", "levelset"] | flaw
    write_json(
        bench / "runs" / "egg" / "levelset" / "meta.json", {"method": "levelset", "surface_check": check}
    )
    table = write_report(bench, interactive=False).markdown
    assert f"| 3, suspect 1, {column} 1 |" in table.split("## All scans")[1].split("##")[0]
    assert f"## Meshes kept with {heading} (1)\n\n- egg / levelset" in table
    with open(bench / "results_wide.csv") as f:
        wide = {(r["variant"], r["method"]): r for r in csv.DictReader(f)}
    other = {"lobe": "tears", "tear": "lobes"}[column]
    assert wide["all", "levelset"][f"{column}s"] == "1" and wide["all", "levelset"][other] == "0"
    assert wide["all", "poisson"][f"{column}s"] == "0"
    write_report(bench, interactive=True)
    per_scan = (bench / "report.html").read_text().split("id='per-scan'>")[1].split("</table>")[0]
    assert per_scan.count(f"class='num {column}'") == 1 and per_scan.count("class='num suspect'") == 1
