"""A small numpy software renderer: z-buffered triangles with Gouraud-Lambert shading, splatted points.

It needs no OpenGL, so screenshots and thumbnails work on any machine; Open3D's renderer is preferred
when an offscreen context exists (see :mod:`recon.viewer.render`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recon.viewer.camera import Camera
from recon.viewer.geometry import Geometry

AMBIENT = 0.3
LIGHT_CAMERA = np.array([-0.35, -0.55, -1.0]) / np.linalg.norm([-0.35, -0.55, -1.0])
"""Light direction in camera coordinates: from behind the viewer, slightly up and to the left."""
WIRE_COLOR = np.array([0.12, 0.12, 0.15])
WIRE_HALF_WIDTH = 0.6
"""Half the drawn edge width, in supersampled pixels."""
POINT_DEPTH_BIAS = 0.004
"""Points are pulled towards the camera by this fraction of the scene depth, so that scan points and
level-set samples lying on a mesh are not hidden by it."""
MAX_FRAGMENTS = 500_000
"""Candidate pixels processed at once; bounds memory whatever the mesh size."""
MAX_POINTS = 250_000
"""Larger point sets are drawn through an evenly strided subset: beyond this, points overdraw each other
at screenshot sizes and only cost time."""
SUPERSAMPLE = 2


def rasterize(
    geometries: Sequence[Geometry], camera: Camera, *, background: Sequence[float] = (1.0, 1.0, 1.0)
) -> np.ndarray:
    """Render ``geometries`` seen by ``camera`` into an (height, width, 3) uint8 image.

    Rendering happens at :data:`SUPERSAMPLE` times the resolution and is box-filtered down, which
    antialiases edges and thin points.
    """
    cam = camera.scaled(SUPERSAMPLE)
    buf = _Buffers(cam.width, cam.height, background)
    depth_range = _scene_depth_range(geometries, cam)
    for g in geometries:
        if g.is_mesh:
            _draw_mesh(buf, g, cam)
        else:
            _draw_points(buf, g, cam, depth_range)
    image = buf.color.reshape(cam.height, cam.width, 3)
    image = image.reshape(camera.height, SUPERSAMPLE, camera.width, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


class _Buffers:
    """Flat depth and colour buffers of one image; fragments are merged in by depth test."""

    def __init__(self, width: int, height: int, background: Sequence[float]):
        self.width, self.height = width, height
        self.depth = np.full(width * height, np.inf)
        self.color = np.tile(np.asarray(background, dtype=np.float64), (width * height, 1))

    def merge(self, pixel: np.ndarray, depth: np.ndarray, color: np.ndarray) -> None:
        """Keep, per pixel, the nearest of the new fragments if it is nearer than what is stored."""
        if len(pixel) == 0:
            return
        order = np.lexsort((depth, pixel))
        pixel, depth = pixel[order], depth[order]
        first = np.ones(len(pixel), dtype=bool)
        first[1:] = pixel[1:] != pixel[:-1]
        pixel, depth, idx = pixel[first], depth[first], order[first]
        nearer = depth < self.depth[pixel]
        self.depth[pixel[nearer]] = depth[nearer]
        self.color[pixel[nearer]] = color[idx[nearer]]


def _scene_depth_range(geometries: Sequence[Geometry], cam: Camera) -> tuple[float, float]:
    depths = np.concatenate([cam.to_camera(g.vertices)[:, 2] for g in geometries if len(g.vertices)])
    depths = depths[np.isfinite(depths)]
    if len(depths) == 0:
        return 0.0, 1.0
    return float(depths.min()), float(depths.max())


def _lambert(normals: np.ndarray | None, cam: Camera) -> np.ndarray | None:
    """(n,) two-sided diffuse shade factors, or None without normals."""
    if normals is None:
        return None
    n_cam = normals @ cam.rotation().T
    return AMBIENT + (1.0 - AMBIENT) * np.abs(n_cam @ LIGHT_CAMERA)


def _draw_mesh(buf: _Buffers, g: Geometry, cam: Camera) -> None:
    uv, z = cam.project(g.vertices)
    shade = _lambert(g.normals, cam)
    vert_color = g.colors * shade[:, None] if shade is not None else g.colors
    faces = g.faces[(z[g.faces] > 1e-9).all(axis=1) & np.isfinite(uv[g.faces]).all(axis=(1, 2))]
    tri = uv[faces]
    x0 = np.clip(np.ceil(tri[:, :, 0].min(axis=1)), 0, buf.width).astype(np.int64)
    x1 = np.clip(np.floor(tri[:, :, 0].max(axis=1)), -1, buf.width - 1).astype(np.int64)
    y0 = np.clip(np.ceil(tri[:, :, 1].min(axis=1)), 0, buf.height).astype(np.int64)
    y1 = np.clip(np.floor(tri[:, :, 1].max(axis=1)), -1, buf.height - 1).astype(np.int64)
    span_x, span_y = x1 - x0 + 1, y1 - y0 + 1
    keep = (span_x > 0) & (span_y > 0)
    faces, tri, x0, y0, span_x, span_y = (
        faces[keep],
        tri[keep],
        x0[keep],
        y0[keep],
        span_x[keep],
        span_y[keep],
    )
    counts = span_x * span_y
    for sel in _chunks(counts):
        _draw_triangles(
            buf, g, faces[sel], tri[sel], x0[sel], y0[sel], span_x[sel], counts[sel], z, vert_color
        )


def _chunks(counts: np.ndarray) -> list[slice]:
    """Consecutive slices of triangles whose candidate pixels add up to at most MAX_FRAGMENTS each."""
    bounds = [0]
    total = np.cumsum(counts)
    while bounds[-1] < len(counts):
        start_total = total[bounds[-1] - 1] if bounds[-1] > 0 else 0
        end = int(np.searchsorted(total, start_total + MAX_FRAGMENTS, side="right"))
        bounds.append(max(end, bounds[-1] + 1))
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _draw_triangles(buf, g, faces, tri, x0, y0, span_x, counts, z, vert_color) -> None:
    """Test every pixel of each triangle's bounding box with edge functions; merge the covered ones."""
    owner = np.repeat(np.arange(len(faces)), counts)
    local = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
    px = x0[owner] + local % span_x[owner]
    py = y0[owner] + local // span_x[owner]
    a, b, c = tri[owner, 0], tri[owner, 1], tri[owner, 2]
    area = _edge(a, b, c[:, 0], c[:, 1])
    ok = np.abs(area) > 1e-12
    w0 = _edge(b, c, px, py) / np.where(ok, area, 1.0)
    w1 = _edge(c, a, px, py) / np.where(ok, area, 1.0)
    w2 = 1.0 - w0 - w1
    inside = ok & (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
    owner, px, py, w = owner[inside], px[inside], py[inside], np.stack([w0, w1, w2], 1)[inside]
    f = faces[owner]
    # 1/z is affine in screen space, so interpolating it gives the true depth of the surface
    depth = 1.0 / (w * (1.0 / z[f])).sum(axis=1)
    color = (w[:, :, None] * vert_color[f]).sum(axis=1)
    if g.wireframe:
        color[_near_edge(w, tri[owner], area[inside])] = WIRE_COLOR
    buf.merge(py * buf.width + px, depth, color)


def _edge(p: np.ndarray, q: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Twice the signed area of triangle (p, q, (x, y)), vectorized over rows."""
    return (q[:, 0] - p[:, 0]) * (y - p[:, 1]) - (q[:, 1] - p[:, 1]) * (x - p[:, 0])


def _near_edge(w: np.ndarray, tri: np.ndarray, area: np.ndarray) -> np.ndarray:
    """(k,) mask of fragments within WIRE_HALF_WIDTH pixels of a triangle edge."""
    # distance to the edge opposite vertex i is w_i times the height over that edge
    opposite = np.stack([tri[:, 2] - tri[:, 1], tri[:, 0] - tri[:, 2], tri[:, 1] - tri[:, 0]], axis=1)
    heights = np.abs(area)[:, None] / np.maximum(np.linalg.norm(opposite, axis=2), 1e-12)
    return (w * heights).min(axis=1) < WIRE_HALF_WIDTH


def _draw_points(buf: _Buffers, g: Geometry, cam: Camera, depth_range: tuple[float, float]) -> None:
    keep = np.linspace(0, len(g.vertices) - 1, min(len(g.vertices), MAX_POINTS)).astype(np.int64)
    uv, z = cam.project(g.vertices[keep])
    visible = (z > 1e-9) & np.isfinite(uv).all(axis=1)
    near, far = depth_range
    shade = _lambert(None if g.normals is None else g.normals[keep], cam)
    if shade is None:
        # without normals, fade with depth so that a bare scan still reads as 3D
        shade = 1.0 - 0.45 * (z - near) / max(far - near, 1e-12)
    color = (g.colors[keep] * shade[:, None])[visible]
    uv, z = uv[visible], z[visible] - POINT_DEPTH_BIAS * max(far - near, 1e-12)
    side = max(1, int(round(g.point_size * SUPERSAMPLE)))
    offsets = np.arange(side) - (side - 1) / 2.0
    ox, oy = (o.ravel() for o in np.meshgrid(offsets, offsets))
    step = max(1, MAX_FRAGMENTS // (side * side))
    for start in range(0, len(uv), step):
        chunk = slice(start, start + step)
        px = np.round(uv[chunk, None, 0] + ox[None]).astype(np.int64).ravel()
        py = np.round(uv[chunk, None, 1] + oy[None]).astype(np.int64).ravel()
        inside = (px >= 0) & (px < buf.width) & (py >= 0) & (py < buf.height)
        point = np.repeat(np.arange(start, start + len(uv[chunk])), side * side)[inside]
        buf.merge(py[inside] * buf.width + px[inside], z[point], color[point])
