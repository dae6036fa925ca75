"""Tiled screenshots and thumbnails: several fixed views of the same scene, framed by its bounding box.

Rendering prefers Open3D's offscreen renderer and falls back to the numpy rasterizer of
:mod:`recon.viewer.raster`, so an image is always produced. ``backend`` (or the environment variable
``RECON_RENDER_BACKEND``) forces one: ``"open3d"``, ``"software"`` or ``"auto"``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from recon.atomic import atomic_path
from recon.errors import ReconError
from recon.viewer.camera import DEFAULT_VIEWS, Camera, frame_view, resolve_up
from recon.viewer.colors import ColorLegend, colormap
from recon.viewer.geometry import Geometry, as_geometry, make_geometry, union_bounds
from recon.viewer.gl import RenderError, render_open3d
from recon.viewer.raster import rasterize

BACKENDS = ("auto", "open3d", "software")
LABEL_COLOR = (60, 60, 70)
LEGEND_HEIGHT = 58
"""Height of the colour bar band with a one-line label."""
LABEL_LINE = 15


def render_views(
    geometries: Sequence[object],
    *,
    views: Sequence[str] = DEFAULT_VIEWS,
    size: tuple[int, int] = (400, 400),
    background: Sequence[float] = (1.0, 1.0, 1.0),
    legend: ColorLegend | None = None,
    backend: str | None = None,
    up: str | Sequence[float] = "auto",
) -> np.ndarray:
    """One row of tiles, one per view, of all ``geometries`` drawn together.

    Parameters
    ----------
    geometries : sequence
        :class:`Geometry` objects, trimesh meshes or point clouds, ``recon.io`` PointClouds or (n, 3)
        point arrays.
    views : sequence of str
        Names from :data:`recon.viewer.camera.VIEWS`.
    size : (width, height)
        Size of each tile in pixels.
    background : (3,) float
        RGB in [0, 1].
    legend : ColorLegend or None
        Adds a colour bar under the tiles.
    up : str or (3,) float
        The scene's up axis, shown up in the image: a name from
        :data:`recon.viewer.camera.UP_CHOICES` ("auto" guesses it from all the vertices) or a direction.

    Returns
    -------
    image : (height, width * len(views), 3) uint8
        (Taller by the colour bar when ``legend`` is given.)
    """
    return render_rows(
        [geometries], views=views, size=size, background=background, legend=legend, backend=backend, up=up
    )


def render_rows(
    rows: Sequence[Sequence[object]],
    *,
    views: Sequence[str] = DEFAULT_VIEWS,
    size: tuple[int, int] = (400, 400),
    background: Sequence[float] = (1.0, 1.0, 1.0),
    legend: ColorLegend | None = None,
    row_labels: Sequence[str] | None = None,
    view_labels: bool = False,
    backend: str | None = None,
    up: str | Sequence[float] = "auto",
) -> np.ndarray:
    """A grid of tiles: one row per scene in ``rows``, one column per view, all with the same cameras.

    The cameras frame the union bounding box of every scene, with one up axis for all (``up``, as in
    :func:`render_views`), so rows can be compared pixel for pixel.

    Returns
    -------
    image : (height * len(rows) [+ colour bar], width * len(views), 3) uint8
    """
    scenes = [[as_geometry(g) for g in row] for row in rows]
    if not scenes or not views:
        raise ValueError("nothing to render: no scenes or no views")
    everything = [g for row in scenes for g in row]
    bounds = union_bounds(everything)
    up_axis = resolve_up(up, np.concatenate([g.vertices for g in everything]))
    cameras = [frame_view(bounds, view, size, up=up_axis) for view in views]
    tiles = render_tiles(scenes, cameras, background=background, backend=backend)
    image = np.concatenate([np.concatenate(row, axis=1) for row in tiles], axis=0)
    if row_labels or view_labels:
        image = _draw_labels(image, size, views if view_labels else (), row_labels or ())
    if legend is not None:
        image = np.concatenate([image, colorbar_image(legend, image.shape[1], background)], axis=0)
    return image


def render_tiles(
    scenes: Sequence[Sequence[Geometry]],
    cameras: Sequence[Camera],
    *,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    backend: str | None = None,
) -> list[list[np.ndarray]]:
    """images[i][j]: scene i seen by camera j, each (height, width, 3) uint8, by the chosen backend."""
    backend = backend or os.environ.get("RECON_RENDER_BACKEND") or "auto"
    if backend not in BACKENDS:
        raise ReconError(f"unknown render backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend != "software":
        try:
            return render_open3d(scenes, cameras, background=background)
        except (RenderError, RuntimeError, OSError) as exc:
            if backend == "open3d":
                raise RenderError(f"Open3D offscreen rendering failed: {exc}") from exc
    return [[rasterize(scene, cam, background=background) for cam in cameras] for scene in scenes]


def save_image(image: np.ndarray, path: str | os.PathLike, *, force: bool = False) -> Path:
    """Write an (h, w, 3) uint8 image atomically (format from the suffix); refuse to overwrite unless forced."""
    from PIL import Image

    path = Path(path)
    if path.exists() and not force:
        raise ReconError(f"{path} exists; pass --force to overwrite it")
    if path.is_dir():
        raise ReconError(f"{path} is a folder; give an image file name such as out.png")
    try:
        with atomic_path(path) as tmp:
            Image.fromarray(np.ascontiguousarray(image)).save(tmp)
    except ValueError as exc:  # PIL: unknown extension
        raise ReconError(f"cannot write {path.name}: {exc}; use .png or .jpg") from exc
    return path


def save_thumbnail(
    vertices: np.ndarray,
    faces: np.ndarray,
    path: str | os.PathLike,
    *,
    size: tuple[int, int] = (320, 320),
    views: Sequence[str] = ("elevated",),
    up: str | Sequence[float] = "auto",
) -> Path | None:
    """Render a mesh from ``views`` side by side into an image of ``size`` and write it atomically.

    The default view looks at the mesh from the front and a little above, its up axis (``up``, guessed by
    :func:`recon.viewer.camera.guess_up_axis` unless given) pointing up in the image.

    Parameters
    ----------
    vertices : (n, 3) float
    faces : (m, 3) int
    size : (width, height)
        Size of the whole image; each view gets an equal share of the width.
    up : str or (3,) float
        As in :func:`render_views`.

    Returns
    -------
    path : Path or None
        None when the mesh or the rendering failed; a thumbnail is never worth failing a run for.
    """
    try:
        tile = (max(1, int(size[0]) // len(views)), int(size[1]))
        image = render_views([make_geometry(vertices, faces)], views=views, size=tile, up=up)
        return save_image(image, path, force=True)
    except Exception:  # documented: the caller logs a missing thumbnail, the run goes on
        return None


def colorbar_image(
    legend: ColorLegend, width: int, background: Sequence[float] = (1.0, 1.0, 1.0)
) -> np.ndarray:
    """(h, width, 3) uint8 band: the colour scale of ``legend``, its tick values and its label (wrapped)."""
    from PIL import Image, ImageDraw

    font = _font()
    pad = max(12, width // 20)
    bar_w = max(width - 2 * pad, 2)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = _wrap(legend.label, lambda text: measure.textlength(text, font=font), width - 8)
    height = LEGEND_HEIGHT + LABEL_LINE * (len(lines) - 1)
    band = np.tile(np.round(np.asarray(background) * 255).astype(np.uint8), (height, width, 1))
    ramp = colormap(np.linspace(0, 1, bar_w), legend.cmap)
    band[6:22, pad : pad + bar_w] = np.round(ramp * 255).astype(np.uint8)
    img = Image.fromarray(band)
    draw = ImageDraw.Draw(img)
    ticks = legend.ticks(5 if width >= 480 else 3)
    for i, value in enumerate(ticks):
        x = pad + (bar_w - 1) * (value - legend.vmin) / (legend.vmax - legend.vmin)
        draw.line([(x, 22), (x, 26)], fill=LABEL_COLOR)
        text = (">= " if i == len(ticks) - 1 else "") + f"{value:.3g}"
        anchor = "la" if i == 0 else ("ra" if i == len(ticks) - 1 else "ma")
        draw.text((x, 27), text, fill=LABEL_COLOR, font=font, anchor=anchor)
    for k, line in enumerate(lines):
        draw.text((width / 2, 42 + LABEL_LINE * k), line, fill=LABEL_COLOR, font=font, anchor="ma")
    return np.asarray(img)


def _wrap(text: str, length, max_width: float) -> list[str]:
    """Greedy word wrap of ``text`` into lines whose measured ``length`` fits ``max_width``."""
    lines: list[str] = []
    for word in text.split():
        if lines and length(f"{lines[-1]} {word}") <= max_width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def _draw_labels(
    image: np.ndarray, size: tuple[int, int], views: Sequence[str], row_labels: Sequence[str]
) -> np.ndarray:
    from PIL import Image, ImageDraw

    img = Image.fromarray(image)
    draw = ImageDraw.Draw(img)
    font = _font()
    width, height = size
    for j, view in enumerate(views):
        draw.text((j * width + 6, height - 6), view, fill=LABEL_COLOR, font=font, anchor="ld")
    for i, label in enumerate(row_labels):
        draw.text((6, i * height + 5), label, fill=LABEL_COLOR, font=font)
    return np.asarray(img)


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=13)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()
