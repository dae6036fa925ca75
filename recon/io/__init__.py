"""Read scans and meshes, write meshes and point clouds: one dispatcher on the file extension.

Each format lives in its own module (:mod:`recon.io.ply`, :mod:`recon.io.obj`, ...) with a reader that
returns raw arrays; this module validates them, cleans meshes and derives normals, so every format gives
the same guarantees. Any failure a file can cause is an :class:`~recon.errors.InputError` with a one-line
message naming the file. Thresholds live in :data:`recon.io.common.TOL`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.atomic import atomic_path
from recon.errors import InputError, ReconError, RunDirError
from recon.io import gltf, npy, obj, off, pcd, ply, pts, stl, xyz
from recon.io.cleanup import (
    area_weighted_vertex_normals,
    drop_degenerate_faces,
    drop_unreferenced_vertices,
    merge_duplicate_vertices,
    unit_normals_or_none,
)
from recon.io.common import TOL, RawGeometry, fail
from recon.io.faust import faust_registration_path, faust_scan_paths

__all__ = [
    "MESH_FORMATS",
    "POINT_FORMATS",
    "POINT_WRITE_FORMATS",
    "TOL",
    "PointCloud",
    "check_points",
    "faust_registration_path",
    "faust_scan_paths",
    "is_colinear",
    "is_planar",
    "load_mesh",
    "load_scan",
    "save_mesh",
    "save_point_cloud",
]

log = logging.getLogger(__name__)

_READERS: dict[str, Callable[[Path], RawGeometry]] = {
    ".ply": ply.read_ply,
    ".obj": obj.read_obj,
    ".off": off.read_off,
    ".stl": stl.read_stl,
    ".glb": gltf.read_glb,
    ".xyz": xyz.read_xyz,
    ".xyzn": xyz.read_xyz,
    ".xyzrgb": xyz.read_xyz,
    ".pts": pts.read_pts,
    ".npy": npy.read_npy,
    ".npz": npy.read_npz,
    ".pcd": pcd.read_pcd,
}
_MESH_WRITERS = {
    ".ply": ply.write_ply,
    ".obj": obj.write_obj,
    ".off": off.write_off,
    ".stl": stl.write_stl,
    ".glb": gltf.write_glb,
}
_POINT_WRITERS = {
    ".ply": ply.write_ply,
    ".xyz": xyz.write_xyz,
    ".pts": xyz.write_xyz,
    ".npy": npy.write_npy,
    ".npz": npy.write_npz,
    ".pcd": pcd.write_pcd,
}

POINT_FORMATS: tuple[str, ...] = tuple(_READERS)
"""Extensions :func:`load_scan` reads (meshes included: their vertices are the points)."""
MESH_FORMATS: tuple[str, ...] = tuple(_MESH_WRITERS)
"""Extensions :func:`save_mesh` writes."""
POINT_WRITE_FORMATS: tuple[str, ...] = tuple(_POINT_WRITERS)
"""Extensions :func:`save_point_cloud` writes."""


@dataclass
class PointCloud:
    """A scan as read from a file.

    Attributes
    ----------
    points : (n, 3) float64
        Coordinates in the scan's own frame and units.
    normals : (n, 3) float64 or None
        Unit normals: the file's, or for a mesh without them area-weighted vertex normals.
    faces : (m, 3) int64 or None
        Triangles when the file was a mesh (its vertices are ``points``), else None.
    source : str
        The path the scan came from.
    """

    points: np.ndarray
    normals: np.ndarray | None
    faces: np.ndarray | None
    source: str


def load_scan(path: str | os.PathLike, *, min_points: int = 16) -> PointCloud:
    """Read a point cloud or mesh in any of :data:`POINT_FORMATS` and validate it.

    Meshes: exactly coincident vertices are merged, faces using a vertex twice are dropped and so are
    vertices no face uses (a mesh whose faces all collapse stays a point cloud). Normals are the file's
    when every one of them is usable (otherwise none, or for a mesh the area-weighted vertex normals of
    its faces, following their winding).

    Raises
    ------
    InputError
        Missing, empty, unknown or corrupt file; non-finite or absurd coordinates; fewer than
        ``min_points`` points; all points identical.
    """
    path = _readable_file(path)
    geometry = _read(path)
    points = check_points(geometry.points, min_points=min_points, name=str(path))
    normals = _normals_of_shape(geometry.normals, points.shape, path)
    faces = None if geometry.faces is None else _checked_faces(geometry.faces, len(points), path)
    if faces is not None:
        points, normals, faces = _tidy_mesh(RawGeometry(points, normals, faces))
        points = check_points(points, min_points=min_points, name=str(path))
    normals = unit_normals_or_none(normals, str(path))
    if normals is None and faces is not None:
        normals = area_weighted_vertex_normals(points, faces)
    return PointCloud(points=points, normals=normals, faces=faces, source=str(path))


def load_mesh(path: str | os.PathLike):
    """A ground-truth mesh as a ``trimesh.Trimesh`` (cleaned as in :func:`load_scan`).

    Raises
    ------
    InputError
        As :func:`load_scan`, and when the file has no faces.
    """
    import trimesh

    scan = load_scan(path, min_points=3)
    if scan.faces is None:
        raise InputError(
            f"{scan.source}: has no faces; a mesh is needed (PLY, OBJ, OFF, STL or GLB with faces)"
        )
    return trimesh.Trimesh(scan.points, scan.faces, vertex_normals=scan.normals, process=False)


def save_mesh(
    path: str | os.PathLike,
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    vertex_normals: np.ndarray | None = None,
    force: bool = False,
) -> Path:
    """Write a triangle mesh atomically as binary PLY, OBJ, OFF, binary STL or GLB (by extension).

    Parameters
    ----------
    vertices : (n, 3) float
        float32 coordinates are stored as 32-bit floats, anything else as 64-bit.
    faces : (m, 3) int
    vertex_normals : (n, 3) float, optional
        Stored by PLY, OBJ and GLB.
    force : bool
        Overwrite an existing file.

    Raises
    ------
    RunDirError
        The file exists and ``force`` is False.
    InputError
        Unsupported extension, or the path is a directory.
    ValueError
        Arrays of the wrong shape, non-finite values, or faces addressing missing vertices.
    """
    path = _writable_path(path, _MESH_WRITERS, force)
    points = _finite_vectors(vertices, "vertices")
    problem = _face_problem(faces, len(points))
    if problem:
        raise ValueError(problem)
    faces = np.asarray(faces, dtype=np.int64)
    normals = (
        None if vertex_normals is None else _finite_vectors(vertex_normals, "vertex_normals", len(points))
    )
    with atomic_path(path) as tmp:
        _MESH_WRITERS[path.suffix.lower()](tmp, points, normals, faces)
    return path


def save_point_cloud(
    path: str | os.PathLike, points: np.ndarray, normals: np.ndarray | None = None, *, force: bool = False
) -> Path:
    """Write points (and normals) atomically as PLY, XYZ, PTS, NPY, NPZ or PCD (by extension).

    Parameters
    ----------
    points : (n, 3) float
    normals : (n, 3) float, optional
    force : bool
        Overwrite an existing file.

    Raises
    ------
    RunDirError
        The file exists and ``force`` is False.
    InputError
        Unsupported extension, or the path is a directory.
    ValueError
        Arrays of the wrong shape or non-finite values.
    """
    path = _writable_path(path, _POINT_WRITERS, force)
    points = _finite_vectors(points, "points")
    normals = None if normals is None else _finite_vectors(normals, "normals", len(points))
    with atomic_path(path) as tmp:
        _POINT_WRITERS[path.suffix.lower()](tmp, points, normals, None)
    return path


def check_points(points, *, min_points: int = 16, name: str = "scan") -> np.ndarray:
    """The points as a float64 (n, 3) array, or an InputError saying why they cannot be a scan.

    Refuses non-numeric or mis-shaped input, NaN or infinite coordinates, fewer than ``min_points``
    points, coordinates beyond ``TOL.max_abs_coordinate`` and point sets that are a single point.
    """
    try:
        with np.errstate(invalid="ignore"):  # signalling NaNs in float32 files; reported below
            array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name}: points are not numeric") from None
    if array.ndim != 2 or array.shape[1] != 3:
        raise InputError(f"{name}: expected an (n, 3) array of points, got shape {array.shape}")
    n = len(array)
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InputError(
            f"{name}: {len(bad)} of {n} points have NaN or infinite coordinates (first: point {bad[0]})"
        )
    if n < min_points:
        raise InputError(f"{name}: only {n} points; at least {min_points} are needed")
    if n == 0:
        return array
    biggest = float(max(array.max(), -array.min()))  # no |array| temporary: scans can be 5M points
    if biggest > TOL.max_abs_coordinate:
        raise InputError(
            f"{name}: coordinates reach {biggest:.3g}, beyond {TOL.max_abs_coordinate:.0e}; "
            "wrong units or a corrupt file?"
        )
    if n > 1 and np.ptp(array, axis=0).max() <= TOL.identical_rel * max(1.0, biggest):
        raise InputError(f"{name}: all {n} points are identical")
    return array


def is_planar(points: np.ndarray, rel_tol: float = 1e-4) -> bool:
    """Whether ``points`` (n, 3) lie in a plane (or on a line, or at a point).

    True when the smallest principal extent (standard deviation along the weakest principal axis) is
    below ``rel_tol`` times the largest.
    """
    extents = _principal_extents(points)
    return bool(extents[2] == 0 or extents[0] < rel_tol * extents[2])


def is_colinear(points: np.ndarray, rel_tol: float = 1e-4) -> bool:
    """Whether ``points`` (n, 3) lie on a line (or at a point): the middle principal extent is below
    ``rel_tol`` times the largest."""
    extents = _principal_extents(points)
    return bool(extents[2] == 0 or extents[1] < rel_tol * extents[2])


def _principal_extents(points: np.ndarray) -> np.ndarray:
    """Standard deviations (3,) of ``points`` (n, 3) along their principal axes, ascending."""
    centred = np.asarray(points, dtype=np.float64)
    centred = centred - centred.mean(axis=0)
    variances = np.linalg.eigvalsh(centred.T @ centred / max(len(centred), 1))
    return np.sqrt(np.clip(variances, 0.0, None))


def _readable_file(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a scan file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    if path.suffix.lower() not in _READERS:
        raise InputError(f"{path}: unsupported format '{path.suffix}' (supported: {' '.join(POINT_FORMATS)})")
    return path


def _read(path: Path) -> RawGeometry:
    """The reader's raw geometry; any failure below it becomes an InputError naming the file."""
    try:
        return _READERS[path.suffix.lower()](path)
    except ReconError:
        raise
    except Exception as error:  # a reader may fail in any way on a corrupt file
        problem = " ".join(f"{type(error).__name__}: {error}".split())[:200]
        raise fail(path, f"cannot read this {path.suffix.lower()[1:].upper()} file ({problem})") from error


def _normals_of_shape(normals: np.ndarray | None, shape: tuple[int, ...], path: Path) -> np.ndarray | None:
    if normals is None:
        return None
    normals = np.asarray(normals, dtype=np.float64)
    if normals.shape != shape:
        log.warning("%s: normals have shape %s, points %s; ignoring the normals", path, normals.shape, shape)
        return None
    return normals


def _checked_faces(faces: np.ndarray, n_points: int, path: Path) -> np.ndarray:
    """``faces`` as (m, 3) int64, or an InputError naming the file when they are malformed."""
    problem = _face_problem(faces, n_points)
    if problem:
        raise fail(path, problem)
    return np.asarray(faces, dtype=np.int64)


def _face_problem(faces: np.ndarray, n_points: int) -> str | None:
    """Why ``faces`` is not an (m, 3) integer array addressing ``n_points`` points, or None."""
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        return f"faces must be an (m, 3) integer array, got {faces.dtype} {faces.shape}"
    if len(faces) and (faces.min() < 0 or faces.max() >= n_points):
        bad = int(faces.max()) if faces.max() >= n_points else int(faces.min())
        return f"faces reference vertex {bad} but there are {n_points} vertices (wrong vertex count?)"
    return None


def _tidy_mesh(mesh: RawGeometry) -> RawGeometry:
    """The mesh with duplicate vertices merged, degenerate faces dropped and unused vertices removed."""
    merged = merge_duplicate_vertices(mesh)
    faces = drop_degenerate_faces(merged.faces)
    if len(faces) == 0:
        return RawGeometry(merged.points, merged.normals, None)
    return drop_unreferenced_vertices(RawGeometry(merged.points, merged.normals, faces))


def _writable_path(path: str | os.PathLike, writers: dict, force: bool) -> Path:
    path = Path(path).expanduser()
    if path.suffix.lower() not in writers:
        raise InputError(f"{path}: cannot write '{path.suffix}' files (supported: {' '.join(writers)})")
    if path.is_dir():
        raise InputError(f"{path}: is a directory")
    if path.exists() and not force:
        raise RunDirError(f"{path} already exists; pass force=True (--force) to overwrite it")
    return path


def _finite_vectors(values: np.ndarray, what: str, n: int | None = None) -> np.ndarray:
    """``values`` as an (n, 3) float32 or float64 array; ValueError on a wrong shape or non-finite entries."""
    array = np.asarray(values)
    array = array if array.dtype == np.float32 else array.astype(np.float64)
    if array.ndim != 2 or array.shape[1] != 3 or (n is not None and len(array) != n):
        raise ValueError(f"{what} must have shape ({'n' if n is None else n}, 3), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return array
