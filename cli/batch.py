"""`recon batch DATASET -o BENCH_DIR`: fit and evaluate every scan of a dataset with several methods."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from recon.cli.options import FiniteFloatRange
from recon.core.metrics import DEFAULT_SAMPLES
from recon.device import DEVICE_NAMES
from recon.evaluation.plan import DEFAULT_METHODS, METHODS, BatchSettings


def _methods(ctx, param, value: str) -> tuple[str, ...]:
    methods = tuple(m.strip() for m in value.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise click.BadParameter(
            f"unknown method(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(METHODS)}"
        )
    return methods


def _depths(ctx, param, value: str) -> tuple[int, ...]:
    try:
        depths = tuple(int(d) for d in value.split(",") if d.strip())
    except ValueError:
        depths = ()
    if not depths or not all(1 <= d <= 16 for d in depths):
        raise click.BadParameter(f"expected comma-separated octree depths within 1..16, got {value!r}")
    return depths


@click.command()
@click.argument("dataset", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    "bench_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Benchmark folder: runs/<scan>/<method>/ per task; rerunning on it does only what is missing.",
)
@click.option(
    "--methods",
    default=",".join(DEFAULT_METHODS),
    show_default=True,
    callback=_methods,
    help=f"Comma-separated methods: {', '.join(METHODS)}. poisson-best is an oracle (it picks the best of "
    "its configurations by the ground truth); levelset-trimmed evaluates the levelset run's mesh_trimmed.ply.",
)
@click.option(
    "--preset",
    type=click.Choice(["fast", "paper", "tiny"]),
    default="fast",
    show_default=True,
    help="Levelset preset (fast: CPU-sized; paper: reference settings, GPU; tiny: smoke tests).",
)
@click.option("--steps", type=click.IntRange(min=1), help="Override the levelset preset's optimizer steps.")
@click.option("--atlasnet-steps", type=click.IntRange(min=1), help="Override the AtlasNet optimizer steps.")
@click.option(
    "--poisson-depth", type=click.IntRange(1, 16), help="Override the screened-Poisson octree depth."
)
@click.option(
    "--poisson-trim",
    type=FiniteFloatRange(0, 1, max_open=True),
    help="Override the screened-Poisson density trim quantile (default 0: keep every vertex).",
)
@click.option(
    "--poisson-best-depths",
    default=",".join(str(d) for d in BatchSettings.poisson_best_depths),
    show_default=True,
    callback=_depths,
    help="Octree depths poisson-best tries with each backend (pymeshlab, open3d) and trim (0, 0.02).",
)
@click.option(
    "--eval-samples",
    type=click.IntRange(min=1000),
    default=DEFAULT_SAMPLES,
    show_default=True,
    help="Points sampled on each surface for the metrics.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of fits and evaluation samples.")
@click.option("--device", type=click.Choice(DEVICE_NAMES), default="auto", show_default=True)
@click.option(
    "--executor",
    type=click.Choice(["local", "dask"]),
    default="local",
    show_default=True,
    help="local: one spawned process per task; dask: a Dask cluster (--scheduler) or a local one.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Dask scheduler, e.g. tcp://10.0.0.5:8786; workers must see DATASET and BENCH_DIR at the same paths.",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Tasks at a time (local processes or local Dask workers); each fit already uses every core.",
)
@click.option("--skip-failed", is_flag=True, help="Leave tasks that failed before alone instead of retrying.")
@click.option("--no-thumbnails", is_flag=True, help="Do not render thumbnail.png into run folders.")
@click.option("--force", is_flag=True, help="Redo every task, even finished ones, and accept new settings.")
@click.option("--quiet", is_flag=True, help="Only the final summary line.")
def batch(
    dataset,
    bench_dir,
    methods,
    preset,
    steps,
    atlasnet_steps,
    poisson_depth,
    poisson_trim,
    poisson_best_depths,
    eval_samples,
    seed,
    device,
    executor,
    scheduler,
    jobs,
    skip_failed,
    no_thumbnails,
    force,
    quiet,
):
    """Run every (scan, method) task of DATASET into BENCH_DIR and evaluate it against its ground truth.

    DATASET is a manifest (.csv/.json), a folder made by `recon data build-bench`, a FAUST root or a folder
    of scans (ground truth matched by name in its gt/ subfolder). Each task writes
    BENCH_DIR/runs/<scan>/<method>/ with mesh.ply, eval.json and DONE, or ERROR when it fails; the batch
    goes on. Summarize with `recon report BENCH_DIR`.
    """
    from recon.evaluation.batch import run_batch

    if scheduler is not None and executor != "dask":
        raise click.UsageError("--scheduler needs --executor dask")
    settings = BatchSettings(
        preset=preset,
        steps=steps,
        atlasnet_steps=atlasnet_steps,
        poisson_depth=poisson_depth,
        poisson_trim=poisson_trim,
        poisson_best_depths=poisson_best_depths,
        seed=seed,
        device=device,
        eval_samples=eval_samples,
        thumbnails=not no_thumbnails,
    )
    started = time.perf_counter()
    counter = {"n": 0}

    def progress(result) -> None:
        counter["n"] += 1
        if quiet:
            return
        detail = f": {result.message}" if result.message else ""
        click.echo(
            f"[{counter['n']}] {result.scan_id} / {result.method}: {result.status} "
            f"({result.seconds:.1f}s){detail}",
            err=True,
        )

    results = run_batch(
        dataset,
        bench_dir,
        methods,
        settings,
        executor=executor,
        jobs=jobs,
        scheduler=scheduler,
        retry_failed=not skip_failed,
        force=force,
        progress=progress,
    )
    counts = {
        s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed", "busy", "cancelled")
    }
    listed = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    click.echo(
        f"{len(results)} tasks in {time.perf_counter() - started:.1f}s: {listed}; results in {bench_dir}"
    )
    if counts["failed"]:
        click.echo(
            f"failed tasks have an ERROR file (and error.txt) in {bench_dir / 'runs'}/<scan>/<method>/",
            err=True,
        )
        sys.exit(1)
