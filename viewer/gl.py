"""Open3D drawing: offscreen capture through the legacy Visualizer (EGL without a display) and windows.

Open3D's legacy ``Visualizer(visible=False)`` falls back to an EGL offscreen context when there is no
display, which works with Mesa's software drivers; the newer Filament renderer would need Vulkan.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence

import numpy as np

from recon.errors import ReconError
from recon.viewer.camera import Camera
from recon.viewer.geometry import Geometry, union_bounds

OPEN3D_ZOOM_RANGE = (0.02, 2.0)
"""The zoom factors Open3D's legacy ViewControl accepts (it clamps to them)."""


class RenderError(ReconError):
    """An image could not be rendered (no offscreen context, or the renderer failed)."""


def has_display() -> bool:
    """Whether a window can be opened: always on macOS and Windows, with X11 or Wayland on Linux."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def render_open3d(
    scenes: Sequence[Sequence[Geometry]],
    cameras: Sequence[Camera],
    *,
    background: Sequence[float] = (1.0, 1.0, 1.0),
) -> list[list[np.ndarray]]:
    """Render every scene from every camera offscreen; images[i][j] is scene i seen by camera j.

    All cameras must share one image size. Raises :class:`RenderError` when Open3D cannot create an
    offscreen context or returns blank frames.
    """
    o3d = _import_open3d()
    width, height = cameras[0].width, cameras[0].height
    vis = o3d.visualization.Visualizer()
    with _quiet_stderr():
        created = vis.create_window(visible=False, width=width, height=height)
    if not created:
        raise RenderError("Open3D could not create an offscreen OpenGL context")
    try:
        images = []
        for geometries in scenes:
            vis.clear_geometries()
            for g in geometries:
                vis.add_geometry(to_open3d(g), reset_bounding_box=True)
            _apply_style(vis, geometries, background)
            images.append([_capture(vis, cam, o3d) for cam in cameras])
    finally:
        vis.destroy_window()
    if all(_is_blank(im, background) for row in images for im in row):
        raise RenderError("Open3D rendered blank images")
    return images


def show_window(
    geometries: Sequence[Geometry],
    camera: Camera,
    *,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    title: str = "recon view",
) -> None:
    """Open an interactive Open3D window (blocks until it is closed) that starts at ``camera``'s view.

    The window's view control starts with the camera's direction and image up, so the shape stands as
    in a screenshot of the same view. Open3D's own keys apply: W toggles the wireframe, + and - change
    the point size, H lists the rest.
    """
    if not has_display():
        raise RenderError("no display to open a window; pass --screenshot out.png to render offscreen")
    o3d = _import_open3d()
    vis = o3d.visualization.Visualizer()
    with _quiet_stderr():
        opened = vis.create_window(window_name=title, width=camera.width, height=camera.height)
    if not opened:
        raise RenderError("Open3D could not open a window on this display")
    try:
        for g in geometries:
            vis.add_geometry(to_open3d(g), reset_bounding_box=True)
        _apply_style(vis, geometries, background)
        set_view_control(vis, camera, union_bounds(geometries))
        vis.run()
    finally:
        vis.destroy_window()


def to_open3d(g: Geometry):
    """The Open3D legacy geometry (TriangleMesh or PointCloud) of a :class:`Geometry`."""
    o3d = _import_open3d()
    vec3 = o3d.utility.Vector3dVector
    if g.is_mesh:
        mesh = o3d.geometry.TriangleMesh(
            vec3(g.vertices), o3d.utility.Vector3iVector(g.faces.astype(np.int32))
        )
        mesh.vertex_colors = vec3(g.colors)
        mesh.vertex_normals = vec3(g.normals)
        # the legacy renderer draws a mesh unlit unless it also has triangle normals
        mesh.compute_triangle_normals()
        return mesh
    cloud = o3d.geometry.PointCloud(vec3(g.vertices))
    cloud.colors = vec3(g.colors)
    if g.normals is not None:
        cloud.normals = vec3(g.normals)
    return cloud


def _apply_style(vis, geometries: Sequence[Geometry], background: Sequence[float]) -> None:
    opt = vis.get_render_option()
    opt.background_color = np.asarray(background, dtype=np.float64)
    opt.mesh_show_back_face = True
    opt.mesh_show_wireframe = any(g.wireframe for g in geometries if g.is_mesh)
    opt.point_size = max([g.point_size for g in geometries if not g.is_mesh], default=2.0)


def set_view_control(vis, camera: Camera, bounds: np.ndarray) -> None:
    """Aim the view control of Open3D visualizer ``vis`` like ``camera``, showing as much around the target.

    Unlike a pinhole conversion this works whatever size the window manager gives the window: Open3D
    places the eye itself, at the distance where its own field of view (vertical) spans the same height
    at the target as ``camera`` does.

    Parameters
    ----------
    bounds : (2, 3) float
        Box of everything added to ``vis`` (Open3D's zoom is relative to its largest extent).
    """
    control = vis.get_view_control()
    control.set_lookat(camera.target)
    control.set_front(camera.eye - camera.target)  # Open3D's front points from the target to the eye
    control.set_up(camera.up)
    half_height = np.linalg.norm(camera.eye - camera.target) * camera.height / (2.0 * camera.focal)
    extent = float(np.ptp(np.asarray(bounds, dtype=np.float64), axis=0).max())
    control.set_zoom(float(np.clip(half_height / max(extent, 1e-12), *OPEN3D_ZOOM_RANGE)))


def _set_camera(vis, camera: Camera, o3d) -> None:
    params = o3d.camera.PinholeCameraParameters()
    k = camera.intrinsic()
    params.intrinsic.set_intrinsics(camera.width, camera.height, k[0, 0], k[1, 1], k[0, 2], k[1, 2])
    params.extrinsic = camera.extrinsic()
    if not vis.get_view_control().convert_from_pinhole_camera_parameters(params, allow_arbitrary=True):
        raise RenderError("Open3D refused the camera parameters")


def _capture(vis, camera: Camera, o3d) -> np.ndarray:
    _set_camera(vis, camera, o3d)
    vis.poll_events()
    vis.update_renderer()
    frame = np.asarray(vis.capture_screen_float_buffer(do_render=True))
    if frame.shape[:2] != (camera.height, camera.width):
        raise RenderError(f"Open3D returned a {frame.shape[1]}x{frame.shape[0]} frame")
    return np.clip(np.round(frame * 255.0), 0, 255).astype(np.uint8)


def _is_blank(image: np.ndarray, background: Sequence[float]) -> bool:
    bg = np.round(np.asarray(background) * 255.0)
    return bool((np.abs(image.astype(np.float64) - bg).max(axis=2) <= 2).all())


def _import_open3d():
    try:
        import open3d as o3d
    except ImportError as exc:  # pragma: no cover - open3d is a dependency, but may fail to load
        raise RenderError(f"open3d is not usable here ({exc})") from exc
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    return o3d


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the C-level stderr: GLFW probing for Wayland/X11 prints noise before EGL takes over."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
