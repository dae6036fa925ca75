"""Object File Format (Geomview OFF, also NOFF / COFF / CNOFF): vertices, optional normals, polygons."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.io.common import RawGeometry, fail, fan_triangulate, triangles_from_ragged


def read_off(path: Path) -> RawGeometry:
    """Points, vertex normals (NOFF) and fan-triangulated faces of an OFF file."""
    lines = [line.split(b"#")[0].strip() for line in path.read_bytes().split(b"\n")]
    lines = [line for line in lines if line]
    if not lines:
        raise fail(path, "OFF file has no content")
    keyword, *rest = lines[0].split()
    keyword = keyword.decode(errors="replace")
    if not keyword.endswith("OFF") or "4" in keyword or "n" in keyword:
        raise fail(path, f"not a 3D OFF file (header {keyword!r})")
    counts = rest or (lines[1].split() if len(lines) > 1 else [])
    body = lines[1:] if rest else lines[2:]
    try:
        n_vertices, n_faces = int(counts[0]), int(counts[1])
    except (IndexError, ValueError):
        raise fail(path, "OFF header has no vertex and face counts") from None
    if len(body) < n_vertices + n_faces:
        raise fail(
            path,
            f"OFF file is truncated: header declares {n_vertices} vertices and {n_faces} faces, "
            f"{len(body)} data lines found",
        )
    columns = (0, 1, 2, 3, 4, 5) if "N" in keyword else (0, 1, 2)
    try:
        table = np.loadtxt(body[:n_vertices], usecols=columns, dtype=np.float64, ndmin=2)
    except ValueError as error:
        raise fail(path, f"bad OFF vertex line: {error}") from None
    normals = table[:, 3:6] if "N" in keyword else None
    faces = _faces(body[n_vertices : n_vertices + n_faces], path) if n_faces else None
    return RawGeometry(table[:, :3], normals, faces)


def write_off(path: Path, points: np.ndarray, normals: np.ndarray | None, faces: np.ndarray | None) -> None:
    """Write an OFF file with triangle faces (normals are not stored)."""
    faces = np.empty((0, 3), dtype=np.int64) if faces is None else faces
    digits = "%.17g"  # exact for float64, and for float32 values read back as float64
    with open(path, "w") as f:
        f.write(f"OFF\n{len(points)} {len(faces)} 0\n")
        np.savetxt(f, points, fmt=" ".join([digits] * 3))
        np.savetxt(f, faces, fmt="3 %d %d %d")


def _faces(lines: list[bytes], path: Path) -> np.ndarray:
    """Triangles (m, 3) int64 from OFF face lines ``k i1 ... ik [colour]``."""
    try:
        table = np.loadtxt(lines, dtype=np.float64, ndmin=2)
        k = int(table[0, 0])
        if (table[:, 0] == k).all() and table.shape[1] == k + 1:
            return fan_triangulate(_integers(table[:, 1:], path))
    except ValueError:
        pass
    polygons = []
    for line in lines:
        words = line.split()
        try:
            k = int(words[0])
            polygons.append(np.array([int(w) for w in words[1 : 1 + k]]))
        except (ValueError, IndexError):
            raise fail(path, f"bad OFF face line {line.decode(errors='replace')!r}") from None
        if len(polygons[-1]) != k:
            raise fail(path, f"bad OFF face line {line.decode(errors='replace')!r}")
    return triangles_from_ragged(polygons)


def _integers(values: np.ndarray, path: Path) -> np.ndarray:
    as_int = values.astype(np.int64)
    if not np.array_equal(as_int, values):
        raise fail(path, "OFF face indices are not integers")
    return as_int
