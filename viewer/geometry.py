"""What the viewer draws: a mesh or a point set with per-vertex colours, independent of any renderer."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

MESH_COLOR = (0.72, 0.76, 0.84)
SCAN_COLOR = (0.93, 0.55, 0.18)
OVERLAY_COLOR = (0.86, 0.10, 0.12)
PALETTE = (MESH_COLOR, (0.55, 0.80, 0.60), (0.85, 0.70, 0.85), (0.90, 0.85, 0.55))
"""Colours of successive meshes shown together."""


@dataclass(frozen=True)
class Geometry:
    """A triangle mesh (``faces`` given) or a point set (``faces`` None).

    Attributes
    ----------
    vertices : (n, 3) float
        Vertex or point positions.
    faces : (m, 3) int or None
        Triangles as vertex indices.
    colors : (n, 3) float
        RGB in [0, 1] per vertex.
    normals : (n, 3) float or None
        Unit normals per vertex; meshes get them computed, point sets may lack them.
    point_size : float
        Side of a drawn point in output pixels.
    wireframe : bool
        Draw triangle edges over the surface.
    name : str
        Shown as a label in screenshots.
    """

    vertices: np.ndarray
    faces: np.ndarray | None
    colors: np.ndarray
    normals: np.ndarray | None = None
    point_size: float = 2.0
    wireframe: bool = False
    name: str = ""

    @property
    def is_mesh(self) -> bool:
        return self.faces is not None and len(self.faces) > 0

    def with_colors(self, colors: np.ndarray) -> Geometry:
        """Copy with new (n, 3) or (3,) colours."""
        return replace(self, colors=_per_vertex(colors, len(self.vertices)))

    def with_style(self, *, point_size: float | None = None, wireframe: bool | None = None) -> Geometry:
        """Copy with another point size and/or wireframe flag (None keeps the current one)."""
        return replace(
            self,
            point_size=self.point_size if point_size is None else float(point_size),
            wireframe=self.wireframe if wireframe is None else bool(wireframe),
        )


def make_geometry(
    vertices: np.ndarray,
    faces: np.ndarray | None = None,
    *,
    colors: np.ndarray | Sequence[float] | None = None,
    normals: np.ndarray | None = None,
    name: str = "",
) -> Geometry:
    """Validated :class:`Geometry`; meshes get area-weighted vertex normals, colours default by kind.

    Parameters
    ----------
    vertices : (n, 3) float
    faces : (m, 3) int or None
    colors : (n, 3) or (3,) float in [0, 1], or None
    normals : (n, 3) float or None
    """
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    if faces is not None:
        faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
        if len(faces) == 0:
            faces = None
        elif faces.min() < 0 or faces.max() >= len(vertices):
            raise ValueError("faces index vertices that do not exist")
    if faces is not None:
        from recon.io.cleanup import area_weighted_vertex_normals

        normals = area_weighted_vertex_normals(vertices, faces)
        normals = np.zeros_like(vertices) if normals is None else normals  # no face has any area
    elif normals is not None:
        normals = _unit_rows(np.asarray(normals, dtype=np.float64).reshape(-1, 3))
    if colors is None:
        colors = MESH_COLOR if faces is not None else SCAN_COLOR
    return Geometry(vertices, faces, _per_vertex(colors, len(vertices)), normals, name=name)


def as_geometry(obj: object, *, name: str = "") -> Geometry:
    """Convert a :class:`Geometry`, trimesh mesh or point cloud, ``recon.io`` PointCloud or (n, 3) array."""
    if isinstance(obj, Geometry):
        return obj
    if hasattr(obj, "faces") and hasattr(obj, "vertices"):
        return make_geometry(obj.vertices, obj.faces, name=name)
    if hasattr(obj, "points"):
        return make_geometry(
            obj.points, getattr(obj, "faces", None), normals=getattr(obj, "normals", None), name=name
        )
    if hasattr(obj, "vertices"):
        return make_geometry(obj.vertices, name=name)
    return make_geometry(np.asarray(obj), name=name)


def union_bounds(geometries: Iterable[Geometry]) -> np.ndarray:
    """(2, 3) lower and upper corners of the box around every finite vertex of ``geometries``."""
    boxes = []
    for g in geometries:
        v = g.vertices[np.isfinite(g.vertices).all(axis=1)]
        if len(v):
            boxes.append(np.stack([v.min(axis=0), v.max(axis=0)]))
    if not boxes:
        raise ValueError("nothing to frame: every geometry is empty")
    boxes = np.stack(boxes)
    return np.stack([boxes[:, 0].min(axis=0), boxes[:, 1].max(axis=0)])


def _unit_rows(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)


def _per_vertex(colors: np.ndarray | Sequence[float], n: int) -> np.ndarray:
    c = np.asarray(colors, dtype=np.float64)
    if c.shape == (3,):
        c = np.broadcast_to(c, (n, 3)).copy()
    if c.shape != (n, 3):
        raise ValueError(f"colors must be (3,) or ({n}, 3), got {c.shape}")
    return np.clip(c, 0.0, 1.0)
