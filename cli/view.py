"""``recon view``: look at scans, meshes and run folders, or render them to an image without a display."""

from __future__ import annotations

from pathlib import Path

import click

from recon.cli.options import POSITIVE, FiniteFloatRange
from recon.errors import ConfigError, ReconError

COLOR_MODES = ("default", "error", "normals")
UP_CHOICES = ("auto", "+x", "-x", "+y", "-y", "+z", "-z")
"""The names of :data:`recon.viewer.camera.UP_CHOICES`, spelled out so that ``--help`` imports no numpy."""


def _parse_size(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT such as 400x400, got {value!r}") from None
    if not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise click.BadParameter("each side must be between 16 and 4096 pixels")
    return width, height


def _parse_views(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    from recon.viewer.camera import VIEWS

    views = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [v for v in views if v not in VIEWS]
    if unknown or not views:
        raise click.BadParameter(
            f"unknown view {', '.join(unknown) or '(none)'}; choose from {', '.join(VIEWS)}"
        )
    return views


def _parse_up(ctx: click.Context, param: click.Parameter, value: str) -> str:
    # a ConfigError, not click's BadParameter: the CLI prints it as one line instead of a usage block
    if value not in UP_CHOICES:
        raise ConfigError(f"--up must be one of {', '.join(UP_CHOICES)}; got {value!r}")
    return value


@click.command("view")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--screenshot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Render offscreen to this image (PNG) instead of opening a window: one row per input, one column per view.",
)
@click.option(
    "--color",
    "color_mode",
    type=click.Choice(COLOR_MODES),
    default="default",
    show_default=True,
    help="error: reconstructions by their distance to the scan (or --against), scans by their distance "
    "to the reconstruction; normals: normal map.",
)
@click.option(
    "--against",
    type=click.Path(path_type=Path),
    help="Ground-truth mesh or scan to compare reconstructions with (shown as an extra row).",
)
@click.option(
    "--vmax", type=POSITIVE, help="Distance at the end of the error scale [default: 1% of the bbox diagonal]."
)
@click.option(
    "--cmap",
    type=click.Choice(("viridis", "inferno", "plasma", "magma")),
    default="viridis",
    show_default=True,
)
@click.option(
    "--point-size",
    type=FiniteFloatRange(0.5, 50),
    default=2.0,
    show_default=True,
    help="Point size in pixels.",
)
@click.option("--wireframe", is_flag=True, help="Draw triangle edges (W toggles it in the window).")
@click.option(
    "--overlay",
    "overlays",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Points to draw on top, in red: a run's samples.npz, an .npy, or any scan. Repeatable.",
)
@click.option(
    "--size", default="400x400", show_default=True, callback=_parse_size, help="Size of each view, WxH."
)
@click.option(
    "--views",
    default="front,side,top,iso",
    show_default=True,
    callback=_parse_views,
    help="Views in a screenshot, comma-separated (front back side left top bottom iso elevated); "
    "elevated is the front seen from 25 degrees above.",
)
@click.option(
    "--up",
    default="auto",
    show_default=True,
    callback=_parse_up,
    metavar="[" + "|".join(UP_CHOICES) + "]",
    help="The scene axis shown pointing up. auto: +z when the shape is over 1.3 times taller along z "
    "than along x and y, else +y (the FAUST/OBJ/PLY convention).",
)
@click.option(
    "--renderer",
    type=click.Choice(("auto", "open3d", "software")),
    help="Offscreen renderer [default: auto, or $RECON_RENDER_BACKEND]: Open3D (EGL) when it works, "
    "else the built-in software rasterizer.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing screenshot.")
def view(
    paths: tuple[Path, ...],
    screenshot: Path | None,
    color_mode: str,
    against: Path | None,
    vmax: float | None,
    cmap: str,
    point_size: float,
    wireframe: bool,
    overlays: tuple[Path, ...],
    size: tuple[int, int],
    views: tuple[str, ...],
    up: str,
    renderer: str | None,
    force: bool,
) -> None:
    """View scans, meshes and run folders (a run folder shows its mesh and its input scan).

    Without a display, pass --screenshot out.png to get a picture instead of a window.
    """
    from recon.viewer.gl import has_display

    if screenshot is None and not has_display():
        raise ReconError(
            "no display to open a window here; add --screenshot out.png to render an image offscreen "
            "(or connect with ssh -X, or run under xvfb-run)"
        )
    if screenshot is not None and screenshot.exists() and not force:
        raise ReconError(f"{screenshot} exists; pass --force to overwrite it")

    from recon.viewer import scene

    items, notes = scene.load_items(paths)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    against_item = scene.load_item(against) if against is not None else None
    overlay_geoms = [scene.load_points(p) for p in overlays]

    legend = None
    if color_mode == "error":
        items, legend, summaries = scene.color_errors(items, against_item, vmax=vmax, cmap=cmap)
        _echo_errors(summaries, legend.vmax)
    else:
        items = items + ([against_item] if against_item is not None else [])
        items = scene.color_normals(items) if color_mode == "normals" else scene.color_default(items)
    items = [
        scene.ViewItem(i.geometry.with_style(point_size=point_size, wireframe=wireframe), i.role, i.label)
        for i in items
    ]
    overlay_geoms = [g.with_style(point_size=point_size) for g in overlay_geoms]
    up_axis = _up_axis(up, items)

    if screenshot is not None:
        _write_screenshot(items, overlay_geoms, screenshot, views, size, legend, renderer, force, up_axis)
    else:
        _open_window(items, overlay_geoms, size, up_axis)


def _up_axis(up: str, items):
    """(3,) up axis of the shown items (overlays do not vote); says which axis "auto" chose."""
    import numpy as np

    from recon.viewer.camera import UP_AXES, resolve_up

    axis = resolve_up(up, np.concatenate([item.geometry.vertices for item in items]))
    if up == "auto":
        name = next(k for k, v in UP_AXES.items() if np.allclose(v, axis))
        click.echo(f"up axis: {name} (guessed from the shape; --up overrides)")
    return axis


def _write_screenshot(items, overlays, out, views, size, legend, renderer, force, up_axis) -> None:
    from recon.viewer.render import render_rows, save_image

    image = render_rows(
        [[item.geometry, *overlays] for item in items],
        views=views,
        size=size,
        legend=legend,
        row_labels=[item.label for item in items],
        view_labels=True,
        backend=renderer,
        up=up_axis,
    )
    save_image(image, out, force=force)
    click.echo(f"wrote {out} ({image.shape[1]}x{image.shape[0]}: {len(items)} row(s) x {len(views)} view(s))")


def _open_window(items, overlays, size, up_axis) -> None:
    from recon.viewer.camera import frame_view
    from recon.viewer.geometry import union_bounds
    from recon.viewer.gl import show_window

    geometries = [item.geometry for item in items] + list(overlays)
    window = (max(size[0], 960), max(size[1], 720))
    camera = frame_view(union_bounds(geometries), "elevated", window, up=up_axis)
    click.echo("keys: W wireframe, +/- point size, B back faces, H all keys; close the window to quit")
    show_window(geometries, camera, title="recon view: " + ", ".join(i.label for i in items))


def _echo_errors(summaries, vmax: float) -> None:
    click.echo(f"error colour scale: 0 -> {vmax:.4g} (scene units)")
    for s in summaries:
        click.echo(
            f"  {s.label} -> {s.reference}: mean {s.mean:.4g}, p95 {s.p95:.4g}, max {s.max:.4g}, "
            f"{100 * s.above_scale:.1f}% beyond the scale"
        )
