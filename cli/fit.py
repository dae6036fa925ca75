"""``recon fit`` and ``recon extract``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from recon.cli.options import FiniteFloatRange
from recon.device import DEVICE_NAMES
from recon.errors import ReconError
from recon.models.registry import MODELS


class _Progress:
    """A bar with the loss on a terminal, plain periodic lines otherwise, nothing with --quiet."""

    def __init__(self, total: int, start_step: int, log_every: int, quiet: bool):
        self.total, self.log_every, self.quiet = total, log_every, quiet
        self.bar = None
        self.started = time.perf_counter()
        if not quiet and sys.stderr.isatty():
            self.bar = click.progressbar(length=total, label="fitting", file=sys.stderr, show_pos=True)
            self.bar.__enter__()
            self.bar.update(start_step)

    def __call__(self, log) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.label = f"fitting (loss {log.loss:.4f})"
            self.bar.update(1)
        elif log.step % self.log_every == 0 or log.step == self.total:
            elapsed = time.perf_counter() - self.started
            click.echo(f"step {log.step}/{self.total}  loss {log.loss:.5f}  {elapsed:.1f}s", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@click.command()
@click.argument("scan", required=False, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    "run_dir",
    type=click.Path(path_type=Path),
    help="Run folder to create (default runs/<scan>-<time>).",
)
@click.option(
    "--preset",
    type=click.Choice(["fast", "paper", "tiny"]),
    default="fast",
    show_default=True,
    help="fast: CPU-sized; paper: the reference settings (GPU); tiny: seconds, for smoke tests.",
)
@click.option(
    "--model",
    "model_type",
    type=click.Choice(list(MODELS)),
    default="mlp",
    show_default=True,
    help="mlp: the preset's implicit MLP; lipschitz: a 1-Lipschitz GroupSort/Björck network (|F| ≤ distance).",
)
@click.option("--device", type=click.Choice(DEVICE_NAMES), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random choice.")
@click.option("--steps", type=click.IntRange(min=1), help="Override the preset's number of optimizer steps.")
@click.option(
    "--resolution", type=click.IntRange(16, 2048), help="Override the preset's marching-cubes resolution."
)
@click.option(
    "--resume", "resume_dir", type=click.Path(path_type=Path), help="Continue an interrupted run folder."
)
@click.option(
    "--example",
    type=str,
    help="Fit a real scan that ships with the dependencies: face, bunny, cow, airplane.",
)
@click.option(
    "--on-suspect",
    type=click.Choice(["repair", "refuse", "warn"]),
    help="When the mesh fails its check against the scan: refit from the other starts, then refuse (repair); "
    "refuse at once; or keep it, marked suspect (warn). Default: the preset's (fast and paper: repair).",
)
@click.option(
    "--closure-winding",
    type=FiniteFloatRange(0, 1, min_open=True, max_open=True),
    help="Winding number at which holes and unseen sides are closed (signed-distance start: fast, tiny). "
    "Default 0.5, the soap film over a hole's rim; about 0.35 bulges them, better for round objects seen "
    "from one side (a head, an animal), worse for thin ones (a body seen from the front, a CAD part).",
)
@click.option(
    "--no-trim", is_flag=True, help="Do not write mesh_trimmed.ply (the mesh without unsupported surface)."
)
@click.option("--force", is_flag=True, help="Overwrite an existing non-empty run folder.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def fit(
    scan,
    run_dir,
    preset,
    model_type,
    device,
    seed,
    steps,
    resolution,
    resume_dir,
    example,
    on_suspect,
    closure_winding,
    no_trim,
    force,
    quiet,
):
    """Fit a neural level set to SCAN and write a watertight mesh in the scan's own frame."""
    from recon.core.config import PRESETS
    from recon.core.reconstruct import fit_scan, resume_run

    if resume_dir is not None:
        if scan is not None or example is not None:
            raise click.UsageError("--resume takes the run folder only, not a scan")
        result = _run_with_progress(lambda p: resume_run(resume_dir, progress=p), resume_dir, quiet)
        _report(result, quiet)
        return
    if (scan is None) == (example is None):
        raise click.UsageError("give exactly one of SCAN or --example NAME")
    if example is not None:
        from recon.examples import example_path

        scan = example_path(example)
    config = PRESETS[preset]().with_(device=device, seed=seed, model_type=model_type, trim=not no_trim)
    if steps is not None:
        config = config.with_(steps=steps)
    if resolution is not None:
        config = config.with_(resolution=resolution)
    if on_suspect is not None:
        config = config.with_(on_suspect=on_suspect)
    if closure_winding is not None:
        config = config.with_(closure_winding=closure_winding)
    if run_dir is None:
        run_dir = Path("runs") / f"{Path(scan).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not quiet:
        click.echo(f"fitting {scan} -> {run_dir} (preset {preset}, {config.optimizer.steps} steps)", err=True)
    result = _run_with_progress(
        lambda p: fit_scan(scan, run_dir, config, force=force, progress=p),
        run_dir,
        quiet,
        total=config.optimizer.steps,
    )
    _report(result, quiet)


def _run_with_progress(job, run_dir, quiet, total=None):
    from recon.core.reconstruct import load_config
    from recon.run import RunFolder

    if total is None:
        config = load_config(RunFolder.open(run_dir))
        total, log_every = config.optimizer.steps, config.log_every
    else:
        log_every = max(total // 20, 1)
    progress = _Progress(total, 0, log_every, quiet)
    try:
        return job(progress)
    except KeyboardInterrupt:
        progress.close()
        if not RunFolder(run_dir).checkpoint_path.exists():
            raise ReconError(f"interrupted while setting up {run_dir}; nothing was kept") from None
        raise ReconError(f"interrupted; continue with: recon fit --resume {run_dir}") from None
    finally:
        progress.close()


def _report(result, quiet):
    from recon.core.reconstruct import check_summary

    report = result.mesh_report or {}
    if not quiet:
        click.echo(
            f"done: {result.steps} steps in {result.train_seconds:.1f}s; mesh {report.get('n_vertices')} vertices, "
            f"{report.get('n_faces')} faces, watertight={report.get('watertight')}",
            err=True,
        )
        if result.surface_check is not None:
            click.echo(f"check against the scan: {check_summary(result.surface_check)}", err=True)
    click.echo(str(result.mesh_path))


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--resolution", type=click.IntRange(16, 2048), help="Grid points per axis (default: the run's)."
)
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Mesh file to write (default RUN/mesh_<res>.ply)."
)
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def extract(run_dir, resolution, output, force):
    """Re-mesh the fitted model in RUN_DIR (mesh in the scan's frame)."""
    from recon.core.reconstruct import extract_run

    path, report = extract_run(run_dir, resolution=resolution, output=output, force=force)
    click.echo(
        f"{report['n_vertices']} vertices, {report['n_faces']} faces, watertight={report['watertight']}, "
        f"{report['seconds']}s",
        err=True,
    )
    click.echo(str(path))
