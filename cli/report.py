"""`recon report BENCH_DIR`: tables, plots and thumbnails of a batch folder."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("bench_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--interactive/--no-interactive",
    default=True,
    show_default=True,
    help="Embed a three.js view of every mesh in report.html.",
)
@click.option(
    "--max-view-faces",
    type=click.IntRange(min=100),
    default=20_000,
    show_default=True,
    help="Decimate meshes of the interactive views to at most this many faces.",
)
@click.option("--quiet", is_flag=True, help="Do not print the Markdown table.")
def report(bench_dir, interactive, max_view_faces, quiet):
    """Aggregate BENCH_DIR: results.csv, results_wide.csv, summary.json, table.md and report.html.

    Prints the Markdown table: per method Chamfer L1 and L2 (×1000 of the GT diagonal), F@1%, normal
    consistency and fit time as mean ± std, and the meshes each mean is over ("n, suspect k": how many of
    them the fit's surface check flagged).
    """
    from recon.evaluation.report import write_report

    result = write_report(bench_dir, interactive=interactive, max_view_faces=max_view_faces)
    if not quiet:
        click.echo(result.markdown)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {', '.join(str(p) for p in result.paths.values())}", err=True)
