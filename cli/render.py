"""``recon render``: sphere-trace a fitted run's surface into normal-shaded and depth images."""

from __future__ import annotations

from pathlib import Path

import click

from recon.cli.options import POSITIVE
from recon.errors import InputError

VIEW_CHOICES = ("front", "back", "side", "left", "top", "bottom", "iso")


def _views(text: str) -> list[str]:
    views = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in views if v not in VIEW_CHOICES]
    if unknown or not views:
        raise InputError(
            f"--views must be a comma-separated subset of {','.join(VIEW_CHOICES)}, got {text!r}"
        )
    return views


@click.command("render")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="PNG to write (default RUN_DIR/render.png)."
)
@click.option("--views", default="front,side,top,iso", show_default=True, help="Comma-separated views.")
@click.option(
    "--size", default=256, show_default=True, type=click.IntRange(16, 2048), help="Pixels per side."
)
@click.option(
    "--eps",
    default=1e-4,
    show_default=True,
    type=POSITIVE,
    help="Hit threshold on |F|.",
)
@click.option(
    "--max-steps", default=256, show_default=True, type=click.IntRange(min=1), help="Steps per ray."
)
@click.option(
    "--unsafe",
    is_flag=True,
    help="Trace an ordinary MLP (no Lipschitz bound) with L estimated from sampled gradients.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing output image.")
def render(
    run_dir: str,
    output: str | None,
    views: str,
    size: int,
    eps: float,
    max_steps: int,
    unsafe: bool,
    force: bool,
) -> None:
    """Sphere-trace the fitted surface of RUN_DIR from the chosen views: a row of normal shadings over a
    row of depth maps. With a 1-Lipschitz model (fit --model lipschitz) the march provably never steps
    through the surface; an ordinary MLP is refused unless --unsafe."""
    from recon.errors import RunDirError
    from recon.evaluation.sphere_trace import UNSAFE_SAFETY, render_run, save_render

    chosen = _views(views)
    path = Path(output) if output else Path(run_dir) / "render.png"
    if path.exists() and not force:
        raise RunDirError(f"{path} exists; pass --force to overwrite it")
    image, summary = render_run(run_dir, chosen, size=size, unsafe=unsafe, eps=eps, max_steps=max_steps)
    save_render(image, path, force=force)
    if summary["certified"]:
        click.echo(f"{summary['model_type']} model: certified L = {summary['lipschitz']:.4f}, steps are safe")
    else:
        click.echo(
            f"UNSAFE: {summary['model_type']} model has no Lipschitz bound; marched with estimated "
            f"L = {summary['lipschitz']:.3f} ({UNSAFE_SAFETY:g} x max sampled |grad F|), overshoot is possible"
        )
    for view, stats in summary["views"].items():
        click.echo(
            f"  {view:<7} hits {stats['hit_fraction']:.1%} of pixels, mean {stats['mean_steps']} steps, "
            f"max {stats['max_steps_used']}"
        )
        if stats["out_of_steps"]:
            click.echo(
                f"  {view:<7} {stats['out_of_steps']} rays ran out of steps (shown as background); "
                "raise --max-steps"
            )
    click.echo(f"wrote {path}")
