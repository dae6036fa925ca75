"""Wavefront OBJ: vertices, vertex normals and (polygonal) faces; materials and texture coordinates are ignored."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from recon.io.common import RawGeometry, fail, fan_triangulate, triangles_from_ragged


def read_obj(path: Path) -> RawGeometry:
    """Points, vertex normals and fan-triangulated faces of an OBJ file.

    Normals come from the ``vn`` entries the faces point at (averaged over a vertex's corners); an OBJ
    without faces whose ``vn`` count equals its ``v`` count (a point cloud with normals) uses them in order.
    """
    data = path.read_bytes()
    v_lines = _statements(data, b"v")
    if not v_lines:
        raise fail(path, "OBJ file has no vertices ('v' lines)")
    points = _vectors(v_lines, path, "vertex")
    vn_lines = _statements(data, b"vn")
    file_normals = _vectors(vn_lines, path, "normal") if vn_lines else None
    f_lines = _statements(data, b"f")
    if not f_lines:
        normals = file_normals if file_normals is not None and len(file_normals) == len(points) else None
        return RawGeometry(points, normals, None)
    faces, normal_refs = _face_corners(f_lines, data, path)
    normals = None
    if normal_refs is not None and file_normals is not None:
        normals = _corner_normals_per_vertex(faces, normal_refs, file_normals, len(points), path)
    return RawGeometry(points, normals, faces)


def _statements(data: bytes, keyword: bytes) -> list[bytes]:
    """The text after ``keyword`` on every line that starts with it."""
    return re.findall(rb"^[ \t]*" + keyword + rb"[ \t]+([^\n]*)", data, re.MULTILINE)


def _defined_before_faces(data: bytes, keyword: bytes) -> np.ndarray:
    """(m, 1) how many ``keyword`` lines precede each face line (for OBJ's negative, relative indices)."""
    starts = [m.start() for m in re.finditer(rb"^[ \t]*" + keyword + rb"[ \t]", data, re.MULTILINE)]
    faces = [m.start() for m in re.finditer(rb"^[ \t]*f[ \t]", data, re.MULTILINE)]
    return np.searchsorted(np.array(starts), np.array(faces))[:, None]


def write_obj(path: Path, points: np.ndarray, normals: np.ndarray | None, faces: np.ndarray | None) -> None:
    """Write an OBJ with ``v``, optional ``vn`` (one per vertex) and triangle ``f`` lines."""
    digits = "%.17g"  # exact for float64, and for float32 values read back as float64
    with open(path, "w") as f:
        f.write("# written by recon\n")
        np.savetxt(f, points, fmt="v " + " ".join([digits] * 3))
        if normals is not None:
            np.savetxt(f, normals, fmt="vn %.9g %.9g %.9g")
        if faces is not None:
            one_based = faces + 1
            if normals is not None:
                one_based = np.repeat(one_based, 2, axis=1)
                np.savetxt(f, one_based, fmt="f %d//%d %d//%d %d//%d")
            else:
                np.savetxt(f, one_based, fmt="f %d %d %d")


def _vectors(lines: list[bytes], path: Path, what: str) -> np.ndarray:
    """(n, 3) float64 from the first three numbers of each statement."""
    try:
        return np.loadtxt(lines, usecols=(0, 1, 2), dtype=np.float64, ndmin=2, comments="#")
    except (ValueError, IndexError) as error:
        raise fail(path, f"bad OBJ {what} line: {error}") from None


def _face_corners(f_lines: list[bytes], data: bytes, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Triangles (m, 3) of zero-based vertex indices and, if every corner names one, their normal indices."""
    first_corner = f_lines[0].split()[0]
    fields = first_corner.count(b"/") + 1
    has_normals = fields == 3 and not first_corner.endswith(b"/")
    try:
        spaced = b"\n".join(f_lines).replace(b"//", b"/0/").replace(b"/", b" ").split(b"\n")
        table = np.loadtxt(spaced, dtype=np.int64, ndmin=2, comments="#")
    except ValueError:
        table = None
    if table is None or table.shape[1] % fields or table.shape[1] // fields < 3:
        return _ragged_corners(f_lines, data, path)
    corners = table.reshape(len(table), -1, fields)
    vertex = _zero_based(corners[..., 0], data, b"v", path)
    normal = _zero_based(corners[..., 2], data, b"vn", path) if has_normals else None
    return fan_triangulate(vertex), None if normal is None else fan_triangulate(normal)


def _ragged_corners(f_lines: list[bytes], data: bytes, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Like :func:`_face_corners` for files whose faces have varying corner counts or formats."""
    sizes, vertex_refs, normal_refs = [], [], []
    for line in f_lines:
        corners = [corner.split(b"/") for corner in line.split(b"#")[0].split()]
        try:
            vertex_refs.extend(int(c[0]) for c in corners)
            normal_refs.extend(int(c[2]) if len(c) == 3 and c[2] else 0 for c in corners)
        except ValueError:
            raise fail(path, f"bad OBJ face line {line.decode(errors='replace').strip()!r}") from None
        sizes.append(len(corners))
    sizes = np.array(sizes)
    splits = np.cumsum(sizes)[:-1]
    vertex = _zero_based(np.array(vertex_refs)[:, None], data, b"v", path, sizes)[:, 0]
    faces = triangles_from_ragged(np.split(vertex, splits))
    normal_refs = np.array(normal_refs)
    if (normal_refs == 0).any():
        return faces, None
    normal = _zero_based(normal_refs[:, None], data, b"vn", path, sizes)[:, 0]
    return faces, triangles_from_ragged(np.split(normal, splits))


def _zero_based(
    indices: np.ndarray, data: bytes, keyword: bytes, path: Path, repeats: np.ndarray | None = None
) -> np.ndarray:
    """OBJ indices (1-based, or negative counting back from the latest definition) made zero-based.

    ``indices`` has one row per face, or per corner with ``repeats`` giving each face's corner count.
    """
    if (indices == 0).any():
        raise fail(path, "OBJ face uses index 0 (OBJ indices start at 1)")
    if not (indices < 0).any():
        return indices - 1
    defined = _defined_before_faces(data, keyword)
    if repeats is not None:
        defined = np.repeat(defined, repeats, axis=0)
    return np.where(indices < 0, indices + defined, indices - 1)


def _corner_normals_per_vertex(
    faces: np.ndarray, normal_refs: np.ndarray, normals: np.ndarray, n_points: int, path: Path
) -> np.ndarray:
    """(n_points, 3) sum of the normals that the corners at each vertex reference."""
    if normal_refs.min() < 0 or normal_refs.max() >= len(normals):
        raise fail(path, f"OBJ face references normal {int(normal_refs.max()) + 1} of {len(normals)}")
    per_corner = normals[normal_refs.ravel()]
    summed = np.zeros((n_points, 3))
    for c in range(3):
        summed[:, c] = np.bincount(faces.ravel(), weights=per_corner[:, c], minlength=n_points)
    return summed
