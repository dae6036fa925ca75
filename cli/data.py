"""``recon data``: real meshes to fetch, virtual scans, benchmark sets and dataset manifests."""

from __future__ import annotations

import time
from pathlib import Path

import click

from recon.errors import ReconError


@click.group("data")
def data() -> None:
    """Prepare datasets: real meshes, virtual FAUST-like scans, FAUST layouts, manifests."""


@data.command("sources", short_help="List fetchable meshes and whether they are cached.")
def sources_cmd() -> None:
    """List the meshes and scans that can be fetched, and whether they are cached."""
    from recon.data.sources import CATALOG, DEFAULT_BENCHMARK, cache_dir, is_fetched, origin_dir

    click.echo(f"cache: {cache_dir()} (set RECON_CACHE to move it)")
    fetched = {s.origin: is_fetched(s.origin) for s in CATALOG}
    for origin, ok in fetched.items():
        where = origin_dir(origin) if ok or origin != "pymeshlab" else "pymeshlab not installed"
        click.echo(f"source {origin:<10} {'cached' if ok else 'not fetched':<12} {where}")
    click.echo("")
    click.echo(f"{'name':<13} {'source':<10} {'kind':<5} {'cached':<7} {'default':<8} description")
    for s in CATALOG:
        default = "yes" if s.name in DEFAULT_BENCHMARK else ""
        cached = "yes" if fetched[s.origin] else "no"
        click.echo(f"{s.name:<13} {s.origin:<10} {s.kind:<5} {cached:<7} {default:<8} {s.description}")
    click.echo("any other CGAL data-set mesh: cgal:<file>, e.g. cgal:bull.off")


@data.command("fetch", short_help="Fetch real meshes into the cache.")
@click.argument("names", nargs=-1)
@click.option("--all", "fetch_all", is_flag=True, help="Fetch every source.")
def fetch_cmd(names: tuple[str, ...], fetch_all: bool) -> None:
    """Fetch sources or meshes (NAME: a mesh of `recon data sources` or a source name) into the cache.

    With no NAME, fetch what the default benchmark needs.
    """
    from recon.data.sources import DEFAULT_BENCHMARK, ORIGINS, fetch_origin, mesh_source, source_path

    if fetch_all:
        origins = list(ORIGINS)
    else:
        wanted = names or DEFAULT_BENCHMARK
        origins = list(dict.fromkeys(n if n in ORIGINS else mesh_source(n).origin for n in wanted))
    for origin in origins:
        started = time.perf_counter()
        folder = fetch_origin(origin)
        click.echo(f"{origin}: {folder} ({time.perf_counter() - started:.1f} s)")
    for name in names:
        if name not in ORIGINS:
            source_path(mesh_source(name), fetch=False)


@data.command("build-bench", short_help="Build the benchmark: virtual scans of real meshes.")
@click.option(
    "-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder."
)
@click.option(
    "--variants",
    default="clean,noisy,partial",
    show_default=True,
    help="Scanner presets, comma-separated (clean, noisy, partial, handheld).",
)
@click.option(
    "--meshes",
    default=None,
    help="Meshes, comma-separated, or a set: default (the default benchmark set), open (ground truth open "
    "at a neck or base).",
)
@click.option(
    "--seed", default=0, show_default=True, type=int, help="Benchmark seed (each scan derives its own)."
)
@click.option(
    "--n-points", default=100_000, show_default=True, type=click.IntRange(min=1), help="Points per scan."
)
@click.option(
    "--nonormals",
    is_flag=True,
    help="Also write every scan as x y z only (<id>-nonormals): the fit and the baselines without normals.",
)
@click.option("--force", is_flag=True, help="Overwrite existing benchmark files.")
@click.option("--quiet", is_flag=True, help="Print only the summary.")
def build_bench_cmd(out_dir, variants, meshes, seed, n_points, nonormals, force, quiet) -> None:
    """Scan real meshes with the virtual range scanner and write scans, ground truth and a manifest."""
    from recon.data.benchmark import build_benchmark
    from recon.data.sources import DEFAULT_BENCHMARK, MESH_SETS

    started = time.perf_counter()
    entries = build_benchmark(
        out_dir,
        meshes=(MESH_SETS.get(meshes) or _split(meshes)) if meshes else DEFAULT_BENCHMARK,
        variants=_split(variants),
        seed=seed,
        n_points=n_points,
        force=force,
        progress=None if quiet else click.echo,
        nonormals=nonormals,
    )
    for e in entries:
        click.echo(f"{e['id']:<24} {e['n_points']:>8} points  gt: {'yes' if e['gt'] else 'no'}")
    took = time.perf_counter() - started
    click.echo(f"wrote {len(entries)} scans and {Path(out_dir) / 'manifest.csv'} in {took:.1f} s")


@data.command("scan", short_help="Virtual-scan one mesh file.")
@click.argument("mesh", type=click.Path())
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Output .ply.")
@click.option(
    "--preset", default="clean", show_default=True, help="Scanner preset: clean, noisy, partial or handheld."
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--n-points", default=100_000, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--views", default=None, type=click.IntRange(min=1), help="Number of views (default: the preset's)."
)
@click.option("--up", default="y", show_default=True, type=click.Choice(["x", "y", "z"]), help="Up axis.")
@click.option("--force", is_flag=True, help="Overwrite OUT.")
def scan_cmd(mesh, out_path, preset, seed, n_points, views, up, force) -> None:
    """Scan one MESH file with the virtual range scanner (in the mesh's own frame)."""
    from recon.data.benchmark import scan_file
    from recon.data.scanner import scanner_preset

    overrides = {"seed": seed, "n_points": n_points, "up": tuple(float(a == up) for a in "xyz")}
    if views is not None:
        overrides["n_views"] = views
    config = scanner_preset(preset, **overrides)
    scan = scan_file(mesh, out_path, config, force=force)
    click.echo(
        f"{out_path}: {len(scan.points)} points from {config.n_views} views ({int(scan.outlier.sum())} outliers)"
    )


@data.command("faust", short_help="List (and index) a FAUST layout.")
@click.argument("root", type=click.Path(file_okay=False))
@click.option("--write-manifest", is_flag=True, help="Write manifest.csv/json in the MPI-FAUST folder.")
@click.option("--force", is_flag=True, help="Overwrite an existing manifest.")
def faust_cmd(root, write_manifest, force) -> None:
    """List the scans and registrations of a FAUST layout (MPI-FAUST/training/scans/tr_scan_NNN.ply, ...)."""
    from recon.data.manifest import faust_entries, write_faust_manifest

    if write_manifest:
        csv_path, entries = write_faust_manifest(root, force=force)
    else:
        entries = faust_entries(root)
    for split in ("training", "test"):
        rows = [e for e in entries if e["variant"] == split]
        with_gt = sum(e["gt"] is not None for e in rows)
        click.echo(f"{split}: {len(rows)} scans, {with_gt} with registrations")
    for e in entries:
        click.echo(f"  {e['id']:<16} {e['n_points'] or '?':>8} points  {e['gt'].name if e['gt'] else '-'}")
    if write_manifest:
        click.echo(f"wrote {csv_path}")


@data.command("index", short_help="Write a manifest for a folder of scans.")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--units", default="", help="Units of the scans (written to the manifest).")
@click.option("--force", is_flag=True, help="Overwrite an existing manifest.")
def index_cmd(folder, units, force) -> None:
    """Write FOLDER/manifest.csv for the scans in FOLDER/scans (or FOLDER) with ground truth from FOLDER/gt."""
    from recon.data.manifest import folder_entries, write_manifest

    base = Path(folder)
    scans = base / "scans" if (base / "scans").is_dir() else base
    gt = base / "gt" if (base / "gt").is_dir() else None
    entries = folder_entries(scans, gt, units=units)
    csv_path, _ = write_manifest(base, entries, force=force)
    with_gt = sum(e["gt"] is not None for e in entries)
    click.echo(f"wrote {csv_path}: {len(entries)} scans, {with_gt} with ground truth")


def _split(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ReconError(f"empty list {text!r}")
    return items
