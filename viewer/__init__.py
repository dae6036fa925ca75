"""Open3D viewing and headless screenshots (imported as ``recon.viewer``).

Importing this package does not import Open3D; the renderers load it when they are used.
"""

from recon.viewer.camera import (
    DEFAULT_VIEWS,
    UP_CHOICES,
    VIEWS,
    Camera,
    frame_view,
    guess_up_axis,
    resolve_up,
    up_frame,
)
from recon.viewer.colors import COLORMAPS, ColorLegend, colormap, error_colors, normal_colors
from recon.viewer.geometry import Geometry, as_geometry, make_geometry, union_bounds
from recon.viewer.gl import RenderError, has_display
from recon.viewer.render import render_rows, render_views, save_image, save_thumbnail

__all__ = [
    "COLORMAPS",
    "DEFAULT_VIEWS",
    "UP_CHOICES",
    "VIEWS",
    "Camera",
    "ColorLegend",
    "Geometry",
    "RenderError",
    "as_geometry",
    "colormap",
    "error_colors",
    "frame_view",
    "guess_up_axis",
    "has_display",
    "make_geometry",
    "normal_colors",
    "render_rows",
    "render_views",
    "resolve_up",
    "save_image",
    "save_thumbnail",
    "union_bounds",
    "up_frame",
]
