"""Viewer: framing, software rasterizer pixel checks, error colouring, thumbnails and ``recon view``.

Default tests use the numpy rasterizer, which works everywhere; tests marked ``render`` drive Open3D's
offscreen renderer (EGL) and check that it frames the scene exactly like the rasterizer.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import trimesh

from recon.cli.main import main
from recon.errors import ReconError
from recon.viewer import (
    UP_CHOICES,
    ColorLegend,
    colormap,
    error_colors,
    frame_view,
    guess_up_axis,
    make_geometry,
    render_rows,
    render_views,
    save_image,
    save_thumbnail,
    up_frame,
)
from recon.viewer import render as render_module
from recon.viewer.camera import ELEVATION_DEGREES, UP_AXES
from recon.viewer.render import LEGEND_HEIGHT
from recon.viewer.scene import RECONSTRUCTION, SCAN, ViewItem, color_errors

SOFT = "software"
WHITE = np.array([255, 255, 255])
# published matplotlib viridis end and mid colours (#440154, #21918c, #fde725)
VIRIDIS_0, VIRIDIS_HALF, VIRIDIS_1 = (
    np.array(c) / 255.0 for c in ((68, 1, 84), (33, 145, 140), (253, 231, 37))
)


def foreground(image: np.ndarray) -> np.ndarray:
    """(h, w) mask of pixels that differ visibly from the white background."""
    return np.abs(image.astype(int) - WHITE).max(axis=2) > 24


def colored(image: np.ndarray, channel: int) -> np.ndarray:
    """(h, w) mask of pixels whose ``channel`` clearly dominates the other two."""
    im = image.astype(int)
    others = np.delete(im, channel, axis=2).max(axis=2)
    return im[..., channel] > others + 40


def sphere_mesh(radius=1.0, center=(0.0, 0.0, 0.0), color=None, subdivisions=3):
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return make_geometry(m.vertices + np.asarray(center), m.faces, colors=color)


def cylinder(axis: str, radius: float = 0.3, height: float = 2.0) -> trimesh.Trimesh:
    """A closed cylinder along world axis ``axis`` ("x", "y" or "z"), centred at the origin."""
    m = trimesh.creation.cylinder(radius=radius, height=height, sections=48)
    return m.apply_transform(trimesh.geometry.align_vectors([0, 0, 1], UP_AXES["+" + axis]))


def shape_extent(tile: np.ndarray) -> tuple[int, int]:
    """(height, width) of the box around the pixels of a mesh drawn in the default (bluish) colour.

    Labels are grey, with equal red and green even where antialiased, so they do not count.
    """
    mask = foreground(tile) & (tile[..., 1].astype(int) > tile[..., 0])
    rows, cols = np.nonzero(mask)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


# --- colours -----------------------------------------------------------------------------------------


def test_error_colors_map_distances_onto_the_scale():
    colors, legend = error_colors(np.array([0.0, 0.5, 1.0, 3.0, np.nan]), vmax=1.0)
    np.testing.assert_allclose(colors[0], VIRIDIS_0, atol=2 / 255)
    np.testing.assert_allclose(colors[1], VIRIDIS_HALF, atol=3 / 255)
    for saturated in colors[2:]:
        np.testing.assert_allclose(saturated, VIRIDIS_1, atol=2 / 255)
    assert (legend.vmin, legend.vmax, legend.cmap) == (0.0, 1.0, "viridis")


def test_error_colors_default_scale_ends_at_the_95th_percentile():
    d = np.random.default_rng(0).exponential(size=1000)
    colors, legend = error_colors(d)
    assert legend.vmax == pytest.approx(np.percentile(d, 95))
    # viridis gets brighter along the scale, so brightness must follow distance
    order = np.argsort(d)
    brightness = (colors[order] * [0.299, 0.587, 0.114]).sum(axis=1)
    assert (np.diff(brightness) >= -1e-9).all()


def test_colormap_clips_and_interpolates_between_table_entries():
    lo, hi = colormap(np.array([-1.0, 2.0]), "magma")
    np.testing.assert_allclose(lo, colormap(np.array([0.0]), "magma")[0])
    np.testing.assert_allclose(hi, colormap(np.array([1.0]), "magma")[0])
    a, b, mid = colormap(np.array([100 / 255, 101 / 255, 100.5 / 255]))
    np.testing.assert_allclose(mid, (a + b) / 2)
    with pytest.raises(ValueError, match="unknown colour map"):
        colormap(np.zeros(1), "jet")


def test_error_colouring_of_a_known_distance_field():
    # reconstruction: the square z = 0; scan: points above it at height 0.04 * (x + 1) in [0, 0.08]
    grid = trimesh.creation.box(extents=(2.0, 2.0, 1e-9))
    plane = ViewItem(make_geometry(grid.vertices, grid.faces), RECONSTRUCTION, "plane")
    rng = np.random.default_rng(1)
    xy = rng.uniform(-0.95, 0.95, size=(400, 2))
    height = 0.04 * (xy[:, 0] + 1.0)
    scan_points = np.column_stack([xy, height])
    scan = ViewItem(make_geometry(scan_points), SCAN, "scan")

    (plane_out, scan_out), legend, summaries = color_errors([plane, scan], vmax=0.1)
    assert legend.vmax == 0.1
    # scan → surface distance is the height, so the colour is the colour map at height / vmax
    np.testing.assert_allclose(scan_out.geometry.colors, colormap(height / 0.1), atol=1e-3)
    # reconstruction vertices → nearest scan point, checked by brute force
    brute = np.linalg.norm(plane.geometry.vertices[:, None] - scan_points[None], axis=2).min(axis=1)
    np.testing.assert_allclose(plane_out.geometry.colors, colormap(brute / 0.1), atol=1e-6)
    assert summaries[1].max == pytest.approx(height.max(), abs=1e-6)


def test_error_colouring_needs_two_sides():
    mesh = sphere_mesh()
    with pytest.raises(ReconError, match="--against"):
        color_errors([ViewItem(mesh, RECONSTRUCTION, "m")])


# --- framing and rasterizing ---------------------------------------------------------------------------


def test_sphere_silhouette_matches_its_perspective_projection():
    radius, size = 1.0, (120, 100)
    sphere = sphere_mesh(radius, subdivisions=4)
    image = render_views([sphere], views=("front",), size=size, backend=SOFT)
    assert image.shape == (100, 120, 3)
    mask = foreground(image)
    cam = frame_view(np.array([[-radius] * 3, [radius] * 3]), "front", size)
    distance = np.linalg.norm(cam.eye - cam.target)
    pixel_radius = cam.focal * radius / np.sqrt(distance**2 - radius**2)
    assert mask.sum() == pytest.approx(np.pi * pixel_radius**2, rel=0.04)
    rows, cols = np.nonzero(mask)
    assert cols.mean() == pytest.approx((size[0] - 1) / 2, abs=0.5)
    assert rows.mean() == pytest.approx((size[1] - 1) / 2, abs=0.5)


def test_objects_appear_where_expected_in_each_view():
    red = sphere_mesh(0.4, (-1.0, 0.0, 0.0), color=(1.0, 0.0, 0.0))
    blue = sphere_mesh(0.4, (1.0, 0.0, 0.0), color=(0.0, 0.0, 1.0))
    green = sphere_mesh(0.4, (0.0, 0.0, 1.0), color=(0.0, 1.0, 0.0))
    w = h = 90
    front, side, top = (
        render_views([blue, green, red], views=(v,), size=(w, h), backend=SOFT)
        for v in ("front", "side", "top")
    )

    def center(image, channel):
        rows, cols = np.nonzero(colored(image, channel))
        assert len(rows) > 20
        return rows.mean(), cols.mean()

    # front (eye on +z, y up): red left, blue right; green is nearest, in the middle
    assert center(front, 0)[1] < w / 2 - 10 < w / 2 + 10 < center(front, 2)[1]
    assert colored(front, 1)[h // 2, w // 2]
    # top (eye on +y, looking down, -z up): +z lies at the bottom
    assert center(top, 1)[0] > h / 2 + 10
    assert center(top, 0)[1] < w / 2 - 10 < w / 2 + 10 < center(top, 2)[1]
    # side (eye on +x): blue hides most of red although red is drawn last; +z lies to the left
    assert colored(side, 0).sum() < 0.2 * colored(side, 2).sum()
    assert center(side, 1)[1] < center(side, 2)[1] - 20


def test_tiles_share_one_deterministic_framing():
    torus = trimesh.creation.torus(0.6, 0.25)
    geometry = make_geometry(torus.vertices, torus.faces)
    a = render_views([geometry], size=(64, 48), backend=SOFT)
    b = render_views([geometry], size=(64, 48), backend=SOFT)
    assert a.shape == (48, 4 * 64, 3)
    np.testing.assert_array_equal(a, b)
    for k in range(4):
        assert foreground(a[:, 64 * k : 64 * (k + 1)]).mean() > 0.05
    # rows are framed by the union box: the small sphere row is drawn at the torus' scale
    small = sphere_mesh(0.1)
    grid = render_rows([[geometry], [small]], views=("front",), size=(64, 64), backend=SOFT)
    alone = render_views([small], views=("front",), size=(64, 64), backend=SOFT)
    assert foreground(grid[64:]).sum() < 0.2 * foreground(alone).sum()


def test_points_splat_to_the_same_silhouette_as_the_mesh():
    g = np.random.default_rng(2).normal(size=(20000, 3))
    cloud = make_geometry(g / np.linalg.norm(g, axis=1, keepdims=True))
    mesh_mask = foreground(
        render_views([sphere_mesh(subdivisions=4)], views=("iso",), size=(80, 80), backend=SOFT)
    )
    cloud_mask = foreground(render_views([cloud], views=("iso",), size=(80, 80), backend=SOFT))
    assert (mesh_mask & cloud_mask).sum() / (mesh_mask | cloud_mask).sum() > 0.8
    assert cloud_mask.sum() == pytest.approx(mesh_mask.sum(), rel=0.15)


def test_points_on_a_surface_stay_visible_over_it():
    sphere = sphere_mesh(subdivisions=4)
    overlay = make_geometry(sphere.vertices[::7], colors=(1.0, 0.0, 0.0))
    image = render_views([sphere, overlay], views=("front",), size=(80, 80), backend=SOFT)
    assert colored(image, 0).sum() > 200


def test_wireframe_draws_edges():
    coarse = sphere_mesh(subdivisions=1)
    plain = render_views([coarse], views=("front",), size=(100, 100), backend=SOFT)
    wire = render_views([coarse.with_style(wireframe=True)], views=("front",), size=(100, 100), backend=SOFT)
    dark = (plain.max(axis=2) < 80).sum(), (wire.max(axis=2) < 80).sum()
    assert dark[1] > dark[0] + 200
    np.testing.assert_array_equal(foreground(plain), foreground(wire))


def test_colour_bar_spans_the_colour_map():
    legend = ColorLegend(0.0, 0.5, "viridis", "distance to scan")
    image = render_views([sphere_mesh()], views=("front", "iso"), size=(300, 60), legend=legend, backend=SOFT)
    assert image.shape == (60 + LEGEND_HEIGHT, 600, 3)
    bar = image[60 + 14, :, :].astype(float) / 255
    colored_cols = np.nonzero(np.abs(bar - 1).max(axis=1) > 0.1)[0]
    np.testing.assert_allclose(bar[colored_cols[0]], VIRIDIS_0, atol=0.03)
    np.testing.assert_allclose(bar[colored_cols[-1]], VIRIDIS_1, atol=0.03)


# --- up axis -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (cylinder("z"), "+z"),
        (cylinder("y"), "+y"),
        (cylinder("x"), "+y"),  # lying along x in a y-up file
        (trimesh.creation.box(extents=(1.0, 1.0, 1.0)), "+y"),
        (trimesh.creation.box(extents=(1.0, 1.0, 1.25)), "+y"),  # not elongated enough
        (trimesh.creation.box(extents=(1.0, 0.6, 1.4)), "+z"),
    ],
)
def test_guess_up_axis_of_analytic_shapes(shape, expected):
    np.testing.assert_array_equal(guess_up_axis(shape.vertices), UP_AXES[expected])


def test_guess_up_axis_ignores_stray_points():
    rng = np.random.default_rng(4)
    body = rng.uniform([-0.2, -0.2, -1.0], [0.2, 0.2, 1.0], size=(5000, 3))
    strays = rng.uniform(-10, 10, size=(20, 3))
    np.testing.assert_array_equal(guess_up_axis(np.concatenate([body, strays])), UP_AXES["+z"])
    np.testing.assert_array_equal(guess_up_axis(np.full((3, 3), np.nan)), UP_AXES["+y"])


@pytest.mark.parametrize("name", list(UP_AXES))
def test_up_frame_is_a_rotation_that_keeps_y_up(name):
    frame = up_frame(UP_AXES[name])
    np.testing.assert_allclose(frame @ frame.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(frame) == pytest.approx(1.0)
    np.testing.assert_array_equal(frame[:, 1], UP_AXES[name])


def test_front_of_a_z_up_shape_is_horizontal_and_elevated_is_25_degrees_up():
    bounds = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(up_frame(UP_AXES["+y"]), np.eye(3))
    front = frame_view(bounds, "front", (64, 64), up=UP_AXES["+z"])
    np.testing.assert_allclose(front.eye / np.linalg.norm(front.eye), [0.0, -1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(front.up, [0.0, 0.0, 1.0], atol=1e-12)
    high = frame_view(bounds, "elevated", (64, 64), up=UP_AXES["+z"])
    toward_eye = high.eye / np.linalg.norm(high.eye)
    assert np.degrees(np.arcsin(toward_eye[2])) == pytest.approx(ELEVATION_DEGREES)
    assert toward_eye[0] == pytest.approx(0.0, abs=1e-12) and high.up[2] > 0.9


def test_thumbnail_of_a_z_up_cylinder_stands(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("RECON_RENDER_BACKEND", SOFT)
    tall = cylinder("z")
    out = save_thumbnail(tall.vertices, tall.faces, tmp_path / "thumbnail.png", size=(96, 96))
    height, width = shape_extent(np.asarray(Image.open(out)))
    assert height > 2 * width


# --- files -------------------------------------------------------------------------------------------


def test_save_thumbnail_writes_an_image_and_never_raises(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("RECON_RENDER_BACKEND", SOFT)
    sphere = trimesh.creation.icosphere(3)
    out = save_thumbnail(sphere.vertices, sphere.faces, tmp_path / "thumbnail.png", size=(96, 64))
    assert out == tmp_path / "thumbnail.png"
    image = np.asarray(Image.open(out))
    assert image.shape == (64, 96, 3) and foreground(image).mean() > 0.1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thumbnail.png"]
    assert save_thumbnail(np.zeros((0, 3)), np.zeros((0, 3), int), tmp_path / "empty.png") is None

    def broken(*args, **kwargs):
        raise RuntimeError("no renderer")

    monkeypatch.setattr(render_module, "render_views", broken)
    assert save_thumbnail(sphere.vertices, sphere.faces, tmp_path / "broken.png") is None
    assert not (tmp_path / "broken.png").exists()


def test_save_image_refuses_to_overwrite(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    path = save_image(image, tmp_path / "a.png")
    with pytest.raises(ReconError, match="--force"):
        save_image(image, path)
    save_image(image, path, force=True)


# --- recon view ----------------------------------------------------------------------------------------


@pytest.fixture
def run_folder(tmp_path):
    """A run folder whose mesh is a sphere of radius 1.05 fitted to a unit-sphere scan, with samples."""
    g = np.random.default_rng(3).normal(size=(20000, 3))
    scan = g / np.linalg.norm(g, axis=1, keepdims=True)
    trimesh.PointCloud(scan).export(tmp_path / "scan.ply")
    run = tmp_path / "run"
    run.mkdir()
    trimesh.creation.icosphere(3, radius=1.05).export(run / "mesh.ply")
    (run / "config.json").write_text(json.dumps({"scan": str(tmp_path / "scan.ply")}))
    np.savez(run / "samples.npz", points=scan[:200] * 1.02)
    return run


def run_cli(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_view_screenshot_of_a_run_folder_with_error_colours(run_folder, tmp_path, capsys):
    from PIL import Image

    shot = tmp_path / "shot.png"
    args = [
        "view",
        str(run_folder),
        "--color",
        "error",
        "--vmax",
        "0.1",
        "--overlay",
        str(run_folder / "samples.npz"),
        "--size",
        "80x60",
        "--views",
        "front,iso",
        "--renderer",
        SOFT,
        "--screenshot",
        str(shot),
    ]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    mean = float(re.search(r"mesh.ply -> scan.ply: mean ([0-9.]+)", out).group(1))
    assert mean == pytest.approx(0.05, abs=0.01)
    image = np.asarray(Image.open(shot))
    assert image.shape[1:] == (2 * 80, 3) and image.shape[0] >= 2 * 60 + LEGEND_HEIGHT
    # every vertex of the mesh is 0.05 from the scan: half way along the scale
    mesh_tile = image[:60, :80].astype(float) / 255
    assert colored(image[:60, :80], 0).sum() > 5  # the red overlay samples
    middle = np.abs(mesh_tile - VIRIDIS_HALF).max(axis=2) < 0.35
    assert middle.sum() > 0.5 * foreground(image[:60, :80]).sum()

    code, _, err = run_cli(args, capsys)
    assert code == 2 and "--force" in err and err.count("\n") == 1


def test_view_without_display_explains_how_to_get_a_picture(run_folder, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    code, _, err = run_cli(["view", str(run_folder)], capsys)
    assert code == 2 and "--screenshot" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["missing.ply"], "no such file"),
        (["--color", "error"], "--against"),
    ],
)
def test_view_reports_user_errors_in_one_line(tmp_path, capsys, extra, message):
    mesh = tmp_path / "mesh.ply"
    trimesh.creation.icosphere(1).export(mesh)
    args = ["view", str(mesh), *[str(tmp_path / e) if e.endswith(".ply") else e for e in extra]]
    code, _, err = run_cli([*args, "--screenshot", str(tmp_path / "x.png"), "--renderer", SOFT], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("up", "pose"), [("auto", "standing"), ("+z", "standing"), ("+x", "lying"), ("+y", "end on")]
)
def test_view_shows_a_z_up_cylinder_by_its_up_axis(tmp_path, capsys, up, pose):
    from PIL import Image

    mesh = tmp_path / "tall.ply"
    cylinder("z").export(mesh)
    shot = tmp_path / "shot.png"
    args = ["view", str(mesh), "--up", up, "--views", "front,elevated", "--size", "120x120"]
    code, out, err = run_cli([*args, "--renderer", SOFT, "--screenshot", str(shot)], capsys)
    assert code == 0, err
    assert ("up axis: +z" in out) == (up == "auto")
    image = np.asarray(Image.open(shot))
    # height / width of the cylinder in the front and elevated tiles
    aspects = [np.divide(*shape_extent(image[:, k * 120 : (k + 1) * 120])) for k in (0, 1)]
    if pose == "standing":
        assert min(aspects) > 1.5
    elif pose == "lying":
        assert max(aspects) < 1 / 1.5
    else:  # the old framing: the front view looks down the cylinder's axis
        assert aspects[0] == pytest.approx(1.0, abs=0.1)


def test_view_rejects_an_unknown_up_axis_in_one_line(tmp_path, capsys):
    from recon.cli.view import UP_CHOICES as CLI_UP_CHOICES

    assert CLI_UP_CHOICES == UP_CHOICES
    mesh = tmp_path / "mesh.ply"
    trimesh.creation.icosphere(1).export(mesh)
    shot = tmp_path / "x.png"
    code, _, err = run_cli(["view", str(mesh), "--up", "z", "--screenshot", str(shot)], capsys)
    assert code == 2 and "--up" in err and "+z" in err and err.count("\n") == 1
    assert not shot.exists()


def test_view_window_starts_from_the_front_above_with_the_up_axis_up(tmp_path, capsys, monkeypatch):
    shown = {}
    monkeypatch.setattr("recon.viewer.gl.has_display", lambda: True)
    monkeypatch.setattr(
        "recon.viewer.gl.show_window", lambda geometries, camera, **kw: shown.update(camera=camera)
    )
    mesh = tmp_path / "tall.ply"
    cylinder("z").export(mesh)
    code, _, err = run_cli(["view", str(mesh)], capsys)
    assert code == 0, err
    camera = shown["camera"]
    toward_eye = (camera.eye - camera.target) / np.linalg.norm(camera.eye - camera.target)
    assert np.degrees(np.arcsin(toward_eye[2])) == pytest.approx(ELEVATION_DEGREES)
    assert camera.up[2] > 0.9


# --- Open3D offscreen --------------------------------------------------------------------------------


@pytest.mark.render
def test_open3d_offscreen_frames_like_the_rasterizer():
    scene = [sphere_mesh(0.5, (0.5, 0.0, 0.0)), sphere_mesh(0.3, (-0.6, 0.2, 0.0))]
    # a black background: Open3D's specular highlights are close to white
    kwargs = {"views": ("front", "iso"), "size": (120, 90), "background": (0.0, 0.0, 0.0)}
    gl = render_views(scene, backend="open3d", **kwargs)
    soft = render_views(scene, backend=SOFT, **kwargs)
    a, b = gl.max(axis=2) > 30, soft.max(axis=2) > 30
    assert a.mean() > 0.1
    assert (a & b).sum() / (a | b).sum() > 0.95


@pytest.mark.render
def test_window_view_control_matches_the_camera():
    import open3d as o3d

    from recon.viewer.gl import _quiet_stderr, set_view_control, to_open3d

    tall = cylinder("z")
    geometry = make_geometry(tall.vertices, tall.faces)
    bounds = np.array(tall.bounds)
    camera = frame_view(bounds, "elevated", (160, 120), up=UP_AXES["+z"])
    vis = o3d.visualization.Visualizer()
    with _quiet_stderr():
        assert vis.create_window(visible=False, width=160, height=120)
    try:
        vis.add_geometry(to_open3d(geometry))
        set_view_control(vis, camera, bounds)
        params = vis.get_view_control().convert_to_pinhole_camera_parameters()
    finally:
        vis.destroy_window()
    rotation = params.extrinsic[:3, :3]
    np.testing.assert_allclose(rotation, camera.rotation(), atol=1e-6)
    eye = -rotation.T @ params.extrinsic[:3, 3]
    # the same height is visible at the target, whatever Open3D's own field of view
    half_height = lambda distance, focal: distance * 60 / focal  # noqa: E731
    assert half_height(np.linalg.norm(eye - camera.target), params.intrinsic.intrinsic_matrix[1, 1]) == (
        pytest.approx(half_height(np.linalg.norm(camera.eye - camera.target), camera.focal), rel=1e-3)
    )
