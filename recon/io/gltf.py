"""glTF binary (``.glb``) through trimesh: every mesh in the scene, with its transform, as one mesh."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.io.common import RawGeometry, fail


def read_glb(path: Path) -> RawGeometry:
    """Vertices and faces of all meshes in a ``.glb`` scene, in world coordinates."""
    import trimesh

    mesh = trimesh.load(path, file_type="glb", force="mesh", process=False)
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise fail(path, "glTF file holds no triangle mesh")
    return RawGeometry(np.asarray(mesh.vertices), None, np.asarray(mesh.faces, dtype=np.int64))


def write_glb(path: Path, points: np.ndarray, normals: np.ndarray | None, faces: np.ndarray | None) -> None:
    """Write a single-mesh ``.glb`` (with vertex normals when given)."""
    import trimesh

    mesh = trimesh.Trimesh(points, faces, vertex_normals=normals, process=False)
    path.write_bytes(mesh.export(file_type="glb", include_normals=normals is not None))
