"""STL, binary and ascii: a triangle soup; shared corners are merged by the caller."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.io.common import RawGeometry, fail

_HEADER = 80
_RECORD = np.dtype([("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attribute", "<u2")])


def read_stl(path: Path) -> RawGeometry:
    """Corner points (3m, 3) and faces (m, 3) of an STL file; facet normals are not vertex normals."""
    data = path.read_bytes()
    if len(data) >= _HEADER + 4:
        n = int(np.frombuffer(data, dtype="<u4", count=1, offset=_HEADER)[0])
        if len(data) == _HEADER + 4 + n * _RECORD.itemsize:
            corners = np.frombuffer(data, dtype=_RECORD, count=n, offset=_HEADER + 4)["corners"]
            return _soup(corners.reshape(-1, 3))
    if data.lstrip()[:5].lower() == b"solid":
        return _soup(_ascii_corners(data, path))
    raise fail(
        path, "not a valid STL file (binary size does not match its triangle count, and it is not ascii)"
    )


def write_stl(path: Path, points: np.ndarray, normals: np.ndarray | None, faces: np.ndarray | None) -> None:
    """Write a binary STL with the faces' own unit normals (vertex normals are not stored)."""
    corners = points[faces]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    length = np.linalg.norm(cross, axis=1, keepdims=True)
    records = np.zeros(len(faces), dtype=_RECORD)
    records["normal"] = np.divide(cross, length, out=np.zeros_like(cross), where=length > 0)
    records["corners"] = corners
    with open(path, "wb") as f:
        f.write(b"binary STL written by recon".ljust(_HEADER, b" "))
        f.write(np.uint32(len(faces)).astype("<u4").tobytes())
        f.write(records.tobytes())


def _ascii_corners(data: bytes, path: Path) -> np.ndarray:
    tokens = np.array(data.split())
    at = np.flatnonzero(np.char.lower(tokens) == b"vertex")
    if len(at) == 0 or len(at) % 3 or at[-1] + 3 >= len(tokens):
        raise fail(path, "ascii STL has no complete triangles")
    try:
        return tokens[at[:, None] + np.arange(1, 4)].astype(np.float64)
    except ValueError as error:
        raise fail(path, f"bad ascii STL vertex: {error}") from None


def _soup(corners: np.ndarray) -> RawGeometry:
    return RawGeometry(corners, None, np.arange(len(corners), dtype=np.int64).reshape(-1, 3))
